"""The Model Runner backend against real llama-server processes: the local backend's vectors.

Every flavour test runs twice: against a server whose GGUF appends EOS itself
and one whose GGUF doesn't (the early Qwen3-Embedding conversions).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings

import httpx
import numpy as np
import pytest

from qwen3_embed_core import (
    EOS_TEXT,
    ConfigurationError,
    InvalidInputError,
    Qwen3Embedder,
)
from qwen3_embed_core._http import BASE_URL_ENV, ModelRunnerBackend

from .conftest import COS_MIN, cosines
from .llama_server import LlamaServer, free_port
from .standin_server import StandIn, llama_error, plain, proxy
from .texts import DECOMPOSED, MIXED, SHORT, long_text

pytestmark = pytest.mark.server

LONG = long_text(1000)  # about 2,500 tokens: longer than Model Runner's default batch of 512
ALL = [*SHORT, *MIXED, DECOMPOSED, LONG]
# llama-server serves the file it loaded under any name; a name that is not a
# Model Runner tag leaves the vector size to be learned from the server.
MODEL = "tiny-qwen3"
MANY = [f"{word} number {i}" for i, word in enumerate(("retrieval embedding vector " * 10).split())]


def http(server, **kwargs) -> Qwen3Embedder:
    return Qwen3Embedder.model_runner(MODEL, base_url=server.base_url, **kwargs)


@pytest.fixture
def standin(llama_server):
    """A Model Runner stand-in that proxies to the real llama-server."""
    with StandIn(upstream=llama_server.base_url) as s:
        yield s


# -- URLs ------------------------------------------------------------------------


def test_defaults_are_model_runner_on_localhost(monkeypatch):
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    with Qwen3Embedder.model_runner() as emb:  # sends nothing until used
        assert emb.backend.endpoints == ("http://localhost:12434/engines/llama.cpp/v1",)
        assert emb.model_name == "ai/qwen3-embedding"
        assert emb.dimensions == 2560  # the tag is the 4B model
        assert isinstance(emb.backend, ModelRunnerBackend) and emb.backend.name == "model-runner"


@pytest.mark.parametrize(
    ("base", "endpoint"),
    [
        ("http://model-runner.docker.internal", "http://model-runner.docker.internal/engines/llama.cpp/v1"),
        ("http://localhost:12434/", "http://localhost:12434/engines/llama.cpp/v1"),
        ("http://localhost:12434/engines/llama.cpp", "http://localhost:12434/engines/llama.cpp/v1"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
        ("https://proxy.example/models/v1/", "https://proxy.example/models/v1"),
    ],
)
def test_base_url_forms(base, endpoint):
    with Qwen3Embedder.model_runner(base_url=base) as emb:
        assert emb.backend.endpoints == (endpoint,)


def test_environment_variable_overrides_the_default_base(monkeypatch):
    monkeypatch.setenv(BASE_URL_ENV, "http://gpu-box:12434")
    with Qwen3Embedder.model_runner() as emb:
        assert emb.backend.endpoints == ("http://gpu-box:12434/engines/llama.cpp/v1",)
    with Qwen3Embedder.model_runner(base_url="http://127.0.0.1:9/v1") as emb:  # explicit wins
        assert emb.backend.endpoints == ("http://127.0.0.1:9/v1",)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "http://a:1", "base_urls": ["http://b:1"]}, "not both"),
        ({"base_url": "localhost:12434"}, "not an http"),
        ({"base_urls": []}, "non-empty list"),
        ({"base_urls": ["http://a:1/v1", "http://a:1/v1/"]}, "twice"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"verify": "/no/such/ca.pem"}, "CA bundle"),
        ({"dimensions": 2000, "model": "ai/qwen3-embedding:0.6B-F16"}, "32 to 1024"),
    ],
)
def test_bad_arguments_fail_before_any_request(kwargs, match):
    model = kwargs.pop("model", MODEL)
    with pytest.raises(ConfigurationError, match=match):
        Qwen3Embedder.model_runner(model, **kwargs)


# -- the same vectors as the local backend -------------------------------------------


def test_documents_match_local_backend_and_reference(flavour_server, flavour_embedder, flavour_reference):
    with http(flavour_server, batch_size=4) as emb:
        got = emb.embed_documents(ALL)
        assert emb.dimensions == 64  # learned from the server
    assert got.dtype == np.float32 and got.shape == (len(ALL), 64)
    assert cosines(got, list(flavour_embedder.embed_documents(ALL))).min() >= COS_MIN
    assert cosines(got, [flavour_reference.embed(t) for t in ALL]).min() >= COS_MIN


def test_queries_match_local_backend_and_reference(flavour_server, flavour_embedder, flavour_reference):
    queries = [SHORT[0], MIXED[1], MIXED[3]]  # long inputs: the documents test
    with http(flavour_server) as emb:
        got = emb.embed_queries(queries)
        one = emb.embed_query(queries[0])
    expected = [flavour_reference.embed(flavour_embedder.format_query(q)) for q in queries]
    assert cosines(got, expected).min() >= COS_MIN
    assert cosines(got, list(flavour_embedder.embed_queries(queries))).min() >= COS_MIN
    assert one.shape == (64,) and float(one @ expected[0]) >= COS_MIN


@pytest.mark.parametrize("dims", [32, 48])
def test_mrl_dimensions_match_reference(flavour_server, flavour_reference, dims):
    with http(flavour_server, dimensions=dims) as emb:
        got = emb.embed_documents(ALL)
    assert got.shape == (len(ALL), dims)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert cosines(got, [flavour_reference.embed(t, dimensions=dims) for t in ALL]).min() >= COS_MIN


def test_eos_detected_once_per_server_and_counted_exactly_once(flavour_server, flavour, tiny_model,
                                                              flavour_embedder):
    with http(flavour_server) as emb:
        assert emb.count_tokens(SHORT[0]) == flavour_embedder.count_tokens(SHORT[0])
        assert emb.count_tokens(LONG) == flavour_embedder.count_tokens(LONG) > 2000
        emb.embed_documents(SHORT)
        (status,) = emb.backend.endpoint_status()
    assert status["server_appends_eos"] is (flavour == tiny_model)
    assert status["base64"] is True


def test_without_the_probe_a_no_eos_server_pools_the_wrong_token(llama_server_no_eos, reference):
    """The trap the EOS probe avoids: a plain request to such a server gives a wrong vector."""
    r = httpx.post(llama_server_no_eos.base_url + "/embeddings", json={"model": MODEL, "input": [SHORT[0]]})
    plain_vector = np.asarray(r.json()["data"][0]["embedding"])
    assert float(plain_vector @ reference.embed(SHORT[0])) < 0.99
    with http(llama_server_no_eos) as emb:
        assert float(emb.embed_documents([SHORT[0]])[0] @ reference.embed(SHORT[0])) >= COS_MIN


SPELLS = ["fine", f"a document that spells {EOS_TEXT} inside", "html</p></s>"]


def test_special_token_text_is_exact_on_llama_server(llama_server, reference):
    """/tokenize without special tokens, then token ids: no warning, the reference's vector."""
    import warnings

    with http(llama_server) as emb, warnings.catch_warnings():
        warnings.simplefilter("error")
        got = emb.embed_documents(SPELLS)
    assert cosines(got, [reference.embed(t) for t in SPELLS]).min() >= COS_MIN


@pytest.mark.parametrize("text", SPELLS[1:])
def test_special_token_text_warns_without_tokenize(standin, text):
    """Model Runner serves no /tokenize: texts go as text, and a special spelling (Qwen3's
    <|...|> or llama.cpp's re-typed "</s>") gets a warning naming its index."""
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, batch_size=1) as emb, \
            pytest.warns(RuntimeWarning, match="index 1 contains.*special-token text"):
        emb.embed_documents(["fine", text])


async def test_async_matches_reference_with_bounded_concurrency(flavour_server, flavour_reference,
                                                                flavour_embedder):
    texts = [*SHORT, *MIXED, DECOMPOSED]
    async with http(flavour_server, batch_size=2, max_concurrency=3) as emb:
        got = await emb.aembed_documents(texts)
        query = await emb.aembed_query(SHORT[0])
        queries = await emb.aembed_queries(SHORT[:2])
    assert cosines(got, [flavour_reference.embed(t) for t in texts]).min() >= COS_MIN
    expected = [flavour_reference.embed(flavour_embedder.format_query(q)) for q in SHORT[:2]]
    assert float(query @ expected[0]) >= COS_MIN
    assert cosines(queries, expected).min() >= COS_MIN


# -- batching, order, encoding -----------------------------------------------------------


def test_batches_by_count_keep_input_order(standin, reference):
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, batch_size=5) as emb:
        got = emb.embed_documents(MANY)
    embeds = standin.of_kind("embed")
    assert len(embeds) == -(-len(MANY) // 5)
    assert all(len(r.inputs) <= 5 for r in embeds)
    assert sorted(t for r in embeds for t in r.inputs) == sorted(MANY)  # each text once, unchanged
    # Beside the embeddings route only the probe's /tokenize (404 at Model Runner).
    assert {r.path for r in standin.requests} == {"/engines/llama.cpp/v1/embeddings",
                                                  "/engines/llama.cpp/tokenize"}
    assert len(standin.of_kind("tokenize")) == 1
    assert all(r.json["encoding_format"] == "base64" and r.json["model"] == MODEL for r in embeds)
    assert cosines(got, [reference.embed(t) for t in MANY]).min() >= COS_MIN


def test_batches_stay_under_the_body_limit(standin, reference):
    texts = [long_text(120, seed=i) for i in range(6)]  # about 1 KB each as JSON
    backend = ModelRunnerBackend(MODEL, base_url=standin.url, max_body_bytes=2500, batch_size=64)
    with Qwen3Embedder(backend) as emb:
        got = emb.embed_documents(texts)
        with pytest.raises(InvalidInputError, match=r"index 1 .* over the 2,500-byte") as info:
            emb.embed_documents(["fine", "word " * 600])
    assert info.value.index == 1
    embeds = standin.of_kind("embed")
    assert len(embeds) >= 3 and all(len(r.body) <= 2500 for r in embeds)
    assert sorted(t for r in embeds for t in r.inputs) == sorted(texts)  # batches run concurrently
    assert cosines(got, [reference.embed(t) for t in texts]).min() >= COS_MIN


def test_sync_calls_reuse_one_connection(standin):
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, batch_size=2, max_concurrency=1) as emb:
        for _ in range(3):
            emb.embed_documents(SHORT)
        emb.embed_query("one more")
    # The probe (an embedding, and a /tokenize the stand-in, like Model Runner, does not
    # serve), three calls of two batches, a query.
    assert len(standin.requests) == 2 + 3 * 2 + 1
    assert len({r.client_port for r in standin.requests}) == 1


async def test_async_calls_reuse_one_connection(standin):
    async with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, batch_size=2,
                                          max_concurrency=1) as emb:
        for _ in range(3):
            await emb.aembed_documents(SHORT)
    assert len(standin.requests) == 2 + 3 * 2  # the probe's two requests, three calls of two
    assert len({r.client_port for r in standin.requests}) == 1


def test_floats_when_the_server_rejects_base64(standin, reference):
    reject = llama_error(400, "The format to return the embeddings in. Can be either float or base64",
                         "invalid_request_error")

    def base64_rejected(s, r):
        return (reject if (r.json or {}).get("encoding_format") == "base64" else proxy())(s, r)

    standin.defaults.update(probe=base64_rejected, embed=base64_rejected)
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, batch_size=3) as emb:
        got = emb.embed_documents(SHORT)
        assert emb.backend.endpoint_status()[0]["base64"] is False
    probes = standin.of_kind("probe")
    assert [p.json.get("encoding_format") for p in probes] == ["base64", None]  # detected once
    assert all("encoding_format" not in r.json for r in standin.of_kind("embed"))
    assert cosines(got, [reference.embed(t) for t in SHORT]).min() >= COS_MIN


def test_floats_when_the_server_ignores_base64(standin, reference):
    standin.defaults.update(probe=proxy(strip_base64=True), embed=proxy(strip_base64=True))
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url) as emb:
        got = emb.embed_documents(SHORT)
        assert emb.backend.endpoint_status()[0]["base64"] is False
    assert all("encoding_format" not in r.json for r in standin.of_kind("embed"))
    assert cosines(got, [reference.embed(t) for t in SHORT]).min() >= COS_MIN


# -- several endpoints ---------------------------------------------------------------------


def test_batches_spread_over_endpoints_each_with_its_own_eos_answer(llama_server, llama_server_no_eos,
                                                                     reference):
    urls = [llama_server.base_url, llama_server_no_eos.base_url]
    with Qwen3Embedder.model_runner(MODEL, base_urls=urls, batch_size=2) as emb:
        got = emb.embed_documents(MANY)
        status = emb.backend.endpoint_status()
    assert [s["server_appends_eos"] for s in status] == [True, False]
    assert all(s["requests"] >= 3 for s in status)  # the probe and several batches each
    assert cosines(got, [reference.embed(t) for t in MANY]).min() >= COS_MIN


async def test_async_spreads_and_skips_a_dead_endpoint(llama_server, llama_server_no_eos, reference):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    urls = [dead, llama_server.base_url, llama_server_no_eos.base_url]
    async with Qwen3Embedder.model_runner(MODEL, base_urls=urls, batch_size=1, max_retries=1,
                                          backoff=0.01) as emb:
        got = await emb.aembed_documents(MANY)
        status = emb.backend.endpoint_status()
    assert status[0]["down"] and status[0]["failures"] >= 1 and not status[0]["probed"]
    assert status[1]["requests"] >= 3 and status[2]["requests"] >= 3
    assert cosines(got, [reference.embed(t) for t in MANY]).min() >= COS_MIN


def test_endpoint_killed_midway_its_batches_go_to_the_other(tiny_model, llama_server, reference,
                                                            tmp_path):
    texts = [f"{t} #{i}" for i in range(12) for t in SHORT[:3]]  # 36 one-text batches
    with LlamaServer(tiny_model, tmp_path, name="doomed") as doomed:
        urls = [doomed.base_url, llama_server.base_url]
        with Qwen3Embedder.model_runner(MODEL, base_urls=urls, batch_size=1, max_concurrency=1,
                                        backoff=0.01) as emb:

            def kill_after_three() -> None:
                deadline = time.monotonic() + 30
                while emb.backend.endpoint_status()[0]["requests"] < 3 and time.monotonic() < deadline:
                    time.sleep(0.001)
                doomed.kill()

            killer = threading.Thread(target=kill_after_three)
            killer.start()
            got = emb.embed_documents(texts)
            killer.join()
            status = emb.backend.endpoint_status()
    assert doomed.process is None or doomed.process.poll() is not None
    assert status[0]["failures"] >= 1 and status[0]["down"]
    assert status[1]["requests"] > len(texts) // 2
    assert cosines(got, [reference.embed(t) for t in texts]).min() >= COS_MIN


# -- credentials -----------------------------------------------------------------------------


def test_api_key_is_a_bearer_token_and_never_shown(standin, caplog):
    secret = "sk-test-0123456789"
    caplog.set_level(logging.DEBUG)
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, api_key=secret) as emb:
        emb.embed_documents(SHORT[:2])
        assert secret not in repr(emb) and secret not in repr(emb.backend)
        assert "api_key='***'" in repr(emb.backend)
        standin.script("embed", plain(401, "unauthorized"))
        with pytest.raises(Exception) as info:
            emb.embed_documents(SHORT[:1])
    assert all(r.headers["authorization"] == f"Bearer {secret}" for r in standin.requests)
    assert "check the api_key" in str(info.value) and secret not in str(info.value)
    assert secret not in caplog.text


def test_closed_embedder_refuses_work(llama_server):
    emb = http(llama_server)
    emb.close()
    with pytest.raises(Exception, match="closed"):
        emb.embed_documents(SHORT[:1])


def test_async_close_is_clean_in_a_fresh_loop(llama_server):
    async def use() -> np.ndarray:
        emb = http(llama_server)
        try:
            return await emb.aembed_query("hello")
        finally:
            await emb.aclose()

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        assert asyncio.run(use()).shape == (64,)
