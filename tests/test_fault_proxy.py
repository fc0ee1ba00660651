"""The Model Runner backend behind a fault-injecting proxy, in front of a real llama-server.

The property: every call gives vectors equal to the reference (cosine >= 0.9999
to ``testing.Reference``) or raises a ``Qwen3EmbedError`` subclass, and it is over
within its bound: ``(max_retries + 1)`` attempts of at most ``timeout`` each, plus
the backoff sleeps between them, plus scheduling slack. Faults: resets (before
the request reaches the server, or mid-answer), stalls, truncation, drips (some
finish in time, some don't), a ``gzip`` label on a plain body, values of the
wrong JSON type, deeply nested JSON, a shifted ``usage.prompt_tokens``, a 503,
and a switch to the other GGUF flavour between any two requests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3_embed_core import Qwen3Embedder, Qwen3EmbedError, ServerUnavailableError
from qwen3_embed_core._http import ModelRunnerBackend

from .conftest import COS_MIN, cosines
from .fault_proxy import Fault, FaultProxy
from .texts import SHORT

pytestmark = pytest.mark.server

MODEL = "tiny-qwen3"
TIMEOUT = 0.6  # seconds: each attempt's deadline
BACKOFF = 0.01
MAX_BACKOFF = 0.05
SLACK = 2.0  # seconds of scheduling slack on 2 busy cores
POOL = [*SHORT[:4], "naïve café 東京 🙂", "a\u0301 combining", "x " * 300]


@pytest.fixture(scope="module")
def proxy(llama_server, llama_server_no_eos):
    """In front of the add_eos_token server; a ``switch`` fault moves it to the server of
    the same weights without add_eos_token (and back), like a restart with another file."""
    with FaultProxy(llama_server.port, llama_server_no_eos.port) as p:
        yield p


def backend(url: str, **kwargs) -> ModelRunnerBackend:
    return ModelRunnerBackend(MODEL, base_url=url, timeout=TIMEOUT, backoff=BACKOFF,
                              max_backoff=MAX_BACKOFF, **kwargs)


# -- the reproducer: a server that drips its answer (issue 18) -------------------------------


@pytest.mark.parametrize("use_async", [False, True])
def test_timeout_bounds_a_dripping_answer(proxy, use_async):
    """timeout=1, max_retries=0, one byte every 0.5 s: was 231 s, now about 1 s."""
    proxy.default = Fault("drip", seconds=0.5, size=1)
    try:
        emb = Qwen3Embedder(ModelRunnerBackend(MODEL, base_url=proxy.url, timeout=1,
                                               max_retries=0))
        start = time.monotonic()
        with emb, pytest.raises(ServerUnavailableError, match=r"within 1 s \(timeout="):
            if use_async:
                asyncio.run(emb.aembed_documents(["hello"]))
            else:
                emb.embed_documents(["hello"])
        assert time.monotonic() - start < 1 + SLACK
    finally:
        proxy.default = Fault("none")


def test_a_drip_that_finishes_in_time_gives_the_right_vectors(proxy, reference):
    proxy.default = Fault("drip", seconds=0.002, size=64)
    try:
        with Qwen3Embedder(backend(proxy.url, max_retries=0)) as emb:
            got = emb.embed_documents(SHORT[:2])
    finally:
        proxy.default = Fault("none")
    assert cosines(got, [reference.embed(t) for t in SHORT[:2]]).min() >= COS_MIN


# -- the property ------------------------------------------------------------------------------

VALUES = [True, False, "1", "0.5", None, math.nan, math.inf, 1e39, [0.1], {"x": 1}]

faults = st.one_of(
    st.just(Fault("none")),
    st.just(Fault("reset")),
    st.integers(1, 5000).map(lambda n: Fault("reset_late", size=n)),
    st.just(Fault("stall", seconds=TIMEOUT + 0.3)),
    st.integers(0, 5000).map(lambda n: Fault("truncate", size=n)),
    st.tuples(st.sampled_from([1, 7, 64, 400]), st.sampled_from([0.0005, 0.005, 0.05])).map(
        lambda a: Fault("drip", size=a[0], seconds=a[1])),
    st.just(Fault("gzip")),
    st.sampled_from(VALUES).map(lambda v: Fault("wrong_type", value=v)),
    st.sampled_from([2_000, 200_000]).map(lambda n: Fault("nested", size=n)),
    st.sampled_from([-2, -1, 1, 3]).map(lambda n: Fault("usage", size=n)),
    st.just(Fault("status")),
    st.just(Fault("switch")),
)


def test_every_call_is_right_or_our_error_and_bounded(proxy, reference):
    refs: dict[str, np.ndarray] = {}
    stats: Counter[str] = Counter()
    proxy.injected.clear()
    proxy.requests = 0
    worst = -math.inf  # the slowest call's time minus its bound (seconds)

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(
        plan=st.lists(faults, max_size=6),
        texts=st.lists(st.sampled_from(POOL), min_size=1, max_size=4),
        max_retries=st.integers(0, 2),
        batch_size=st.sampled_from([1, 2, 64]),
        use_async=st.booleans(),
    )
    def one_call(plan, texts, max_retries, batch_size, use_async):
        nonlocal worst
        proxy.faults.clear()
        proxy.faults.extend(plan)
        emb = Qwen3Embedder(backend(proxy.url, max_retries=max_retries, batch_size=batch_size))
        # Batches beyond max_concurrency (4) would wait their turn: at most 4 here.
        bound = (max_retries + 1) * TIMEOUT + max_retries * MAX_BACKOFF + SLACK
        start = time.monotonic()
        try:
            with emb:
                if use_async:
                    got = asyncio.run(emb.aembed_documents(texts))
                else:
                    got = emb.embed_documents(texts)
        except Qwen3EmbedError as exc:
            stats[f"error: {type(exc).__name__}"] += 1
            got = None
        elapsed = time.monotonic() - start
        worst = max(worst, elapsed - bound)
        stats["calls"] += 1
        assert elapsed <= bound, (elapsed, bound, plan)
        if got is not None:
            for t in texts:
                if t not in refs:
                    refs[t] = reference.embed(t)
            good = cosines(got, [refs[t] for t in texts]).min() >= COS_MIN
            stats["right vectors" if good else "WRONG vectors"] += 1
            assert good, plan

    try:
        one_call()
    finally:
        proxy.faults.clear()
        faults_by_kind = {k: v for k, v in sorted(proxy.injected.items()) if k != "none"}
        print(f"\nfault proxy: {stats['calls']} calls, {proxy.requests} requests, "
              f"faults injected {sum(faults_by_kind.values())}: {faults_by_kind}; "
              f"outcomes {dict(stats)}; wrong vectors: {stats['WRONG vectors']}; "
              f"slowest call {worst:+.2f} s against its bound")
    assert stats["WRONG vectors"] == 0
    assert stats["right vectors"] > 10 and sum(faults_by_kind.values()) > 50
