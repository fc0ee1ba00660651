"""The HTTP reranker against real llama-server processes started with --reranking.

A server on the headed tiny reranker must give the local backend's scores and
the numpy reference's; a server that cannot give them (no --reranking, a
file without the head) must be refused with the reason, never passed on.
The flows' faults are in test_http_flows.py (in-process) and the
Model Runner route in the stand-in test below.
"""

from __future__ import annotations

import numpy as np
import pytest

from qwen3_embed_core import BackendError, ConfigurationError, ServerError
from qwen3_embed_core._qwen3 import DEFAULT_RERANK_INSTRUCTION
from qwen3_embed_core._reranker import Qwen3Reranker
from qwen3_embed_core.testing import RerankReference

from .llama_server import free_port
from .standin_server import StandIn, plain
from .texts import DECOMPOSED, MIXED, SHORT, long_text

pytestmark = pytest.mark.server

MODEL = "tiny-qwen3-reranker"
# llama.cpp computes in float32; the reference in float64 (issue: within 1e-3).
TOL = 1e-3
QUERY = "What is the capital of France?"
DOCS = [*SHORT, MIXED[0], MIXED[2], DECOMPOSED, long_text(300), long_text(120, seed=3), "x"]
FAST = {"backoff": 0.01, "max_backoff": 0.05}


@pytest.fixture(scope="module")
def rerank_reference(tiny_reranker) -> RerankReference:
    return RerankReference(tiny_reranker)


@pytest.fixture(scope="module")
def expected(rerank_reference) -> np.ndarray:
    return np.array([rerank_reference.score(QUERY, d) for d in DOCS])


@pytest.fixture(scope="module")
def local_scores(tiny_reranker) -> np.ndarray:
    with Qwen3Reranker.local(tiny_reranker) as rr:
        return rr.score(QUERY, DOCS)


def http(server, **options) -> Qwen3Reranker:
    return Qwen3Reranker.model_runner(MODEL, base_url=server.base_url, **options)


def assert_same_order(got: np.ndarray, expected: np.ndarray) -> None:
    """Every pair the reference separates by more than 2e-3 is ordered alike."""
    for i in range(len(expected)):
        for j in range(len(expected)):
            if expected[i] - expected[j] > 2e-3:
                assert got[i] > got[j], (i, j)


def test_scores_are_p_yes_like_the_local_backend_and_the_reference(rerank_server, expected,
                                                                    local_scores):
    with http(rerank_server, batch_size=4) as rr:
        got = rr.score(QUERY, DOCS)
        status = rr.backend.endpoint_status()
        hits = rr.rerank(QUERY, DOCS, top_n=3)
    assert got.dtype == np.float32 and got.shape == (len(DOCS),)
    assert np.abs(got - expected).max() <= TOL
    assert np.abs(got - local_scores).max() <= TOL
    assert_same_order(got, expected)
    assert [h.index for h in hits] == [int(i) for i in np.argsort(-got, kind="stable")[:3]]
    assert [h.text for h in hits] == [DOCS[h.index] for h in hits]
    assert expected.std() > 0.05  # the scores spread: agreement is not by saturation
    assert status[0]["probed"] and status[0]["requests"] == 2 + 3  # two checks, three batches


async def test_async_batches_give_the_same_scores(rerank_server, expected):
    async with http(rerank_server, batch_size=2, max_concurrency=2) as rr:
        got = await rr.ascore(QUERY, DOCS)
        hits = await rr.arerank(QUERY, DOCS[:4])
    assert np.abs(got - expected).max() <= TOL
    assert [h.index for h in hits] == [int(i) for i in np.argsort(-expected[:4], kind="stable")]


def test_one_document_and_empty_list(rerank_server, rerank_reference):
    with http(rerank_server) as rr:
        (one,) = rr.score("capital", ["Paris is the capital of France."])
        assert rr.score("capital", []).shape == (0,)
    assert abs(one - rerank_reference.score("capital", "Paris is the capital of France.")) <= TOL


def test_model_runner_route_through_the_stand_in(rerank_server, expected):
    """Model Runner's root: requests go to /engines/llama.cpp/rerank (no /v1/rerank there)."""
    with StandIn(upstream=rerank_server.base_url) as standin:
        standin.script("rerank", plain(503, "service unavailable"))
        with Qwen3Reranker.model_runner(MODEL, base_url=standin.url, batch_size=5, **FAST) as rr:
            got = rr.score(QUERY, DOCS)
    assert np.abs(got - expected).max() <= TOL
    assert {r.path for r in standin.requests} == {"/engines/llama.cpp/rerank"}
    assert len(standin.of_kind("rerank")) == 1 + 2 + 2  # the 503, two checks, two batches


def test_failover_from_a_dead_endpoint(rerank_server, expected):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with Qwen3Reranker.model_runner(MODEL, base_urls=[dead, rerank_server.base_url],
                                    batch_size=3, max_retries=1, **FAST) as rr:
        got = rr.score(QUERY, DOCS)
        status = rr.backend.endpoint_status()
    assert np.abs(got - expected).max() <= TOL
    assert status[0]["down"] and not status[0]["probed"] and status[1]["probed"]


def test_a_server_without_reranking_says_start_it_with_reranking(llama_server):
    """The embedding server (no --reranking) answers 501 on /v1/rerank."""
    with http(llama_server) as rr, pytest.raises(ServerError) as info:
        rr.score(QUERY, DOCS[:2])
    message = str(info.value)
    assert info.value.status == 501 and "does not support reranking" in message
    assert "--reranking" in message and "docker model pull ai/qwen3-reranker" in message
    assert "gave up" not in message  # not retried


def test_a_file_without_the_head_is_refused(rerank_server_plain):
    with http(rerank_server_plain) as rr, pytest.raises(BackendError) as info:
        rr.score(QUERY, DOCS[:2])
    message = str(info.value)
    assert "cls.output" in message and "b6578" in message and "Qwen3Reranker.local" in message
    assert "docker model pull ai/qwen3-reranker" in message


def test_a_custom_instruction_is_refused_not_ignored(rerank_server):
    custom = "Given a code question, retrieve code that answers it"
    with pytest.raises(ConfigurationError, match=r"cannot be used over HTTP.*local backend"):
        http(rerank_server, instruction=custom)
    with http(rerank_server) as rr:
        with pytest.raises(ConfigurationError, match="cannot be used over HTTP"):
            rr.score(QUERY, DOCS[:2], instruction=custom)
        assert rr.backend.endpoint_status()[0]["requests"] == 0
        assert rr.instruction == DEFAULT_RERANK_INSTRUCTION

