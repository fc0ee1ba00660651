"""The HTTP backends' flows in-process, through ``httpx.MockTransport``: fast and exact.

The fake servers answer in the documented shapes of llama-server (JSON errors
``{"error": {"code", "message", "type"}}``, ``/v1/embeddings`` and
``/v1/rerank`` bodies) and Docker Model Runner (plain-text errors). Vectors
and scores are a fixed function of the text sent, so every row can be checked
against the input it belongs to. The real-server tests are
test_model_runner*.py and test_rerank_http.py.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import json
import time
import zlib
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from qwen3_embed_core import (
    EOS_TEXT,
    BackendError,
    BadResponseError,
    ConfigurationError,
    InvalidInputError,
    ServerError,
    ServerUnavailableError,
    TextTooLongError,
)
from qwen3_embed_core._http import HttpConfig, ModelRunnerBackend, ModelRunnerRerankBackend
from qwen3_embed_core._http.flows import Endpoint, Send, Sleep, retrying
from qwen3_embed_core._http.responses import Retry, retry_after
from qwen3_embed_core._qwen3 import (
    DEFAULT_RERANK_INSTRUCTION,
    RERANK_PROBE_DOCUMENT,
    RERANK_PROBE_QUERY,
    RERANK_PROBE_SPLIT,
)

WIDTH = 8
PROBE_QUERIES = (RERANK_PROBE_QUERY, RERANK_PROBE_SPLIT[0])
FAST = {"backoff": 0.0, "max_backoff": 0.0}
A, B = "http://a.test:8080/v1", "http://b.test:8080/v1"


def vector_of(text: str) -> np.ndarray:
    """The fake model: a unit vector fixed by the text (what a row must equal)."""
    v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(WIDTH)
    return (v / np.linalg.norm(v)).astype(np.float32)


def fake_tokens(text: str) -> int:
    """The fake tokenizer: a token per word, EOS_TEXT one token wherever it is."""
    return len(text.replace(EOS_TEXT, f" {EOS_TEXT} ").split())


FAKE_EOS_ID = 7  # the fake vocabulary's EOS


def fake_ids(text: str, special: bool = False) -> list[int]:
    """The fake tokenizer's ids: a token per word; EOS_TEXT is FAKE_EOS_ID when read as
    special, else a word of its own."""
    words = text.replace(EOS_TEXT, f" {EOS_TEXT} ").split()
    return [FAKE_EOS_ID if special and w == EOS_TEXT else 100 + zlib.crc32(w.encode()) % 10**5
            for w in words]


def ids_vector(ids: list[int]) -> np.ndarray:
    """The fake model on token ids."""
    return vector_of(" ".join(map(str, ids)))


def score_of(query: str, document: str) -> float:
    """The fake reranker: a P(yes) in (0.01, 0.99) fixed by the pair."""
    return 0.01 + 0.98 * (zlib.crc32(f"{query}\x00{document}".encode()) % 10_000) / 10_000


def llama_error(status: int, message: str, type_: str, **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": message,
                                                  "type": type_, **extra}})


def plain(status: int, text: str, **headers: str) -> httpx.Response:
    """Docker Model Runner's own error (Go's http.Error)."""
    return httpx.Response(status, text=text + "\n",
                          headers={"Content-Type": "text/plain; charset=utf-8", **headers})


Rule = Callable[[httpx.Request, dict], "httpx.Response | None"]


class FakeServer:
    """llama-server's embeddings and rerank APIs; ``rules`` answer first (faults).

    ``appends_eos``: what the EOS probe's usage says; ``base64``: "yes", "ignored"
    or "rejected"; ``down``: hosts that refuse connections.
    """

    def __init__(self, appends_eos: bool = True, base64_mode: str = "yes",
                 tokenizes: bool = False) -> None:
        self.appends_eos = appends_eos
        self.base64_mode = base64_mode
        # llama-server's /tokenize; off: Model Runner's 404 (and vectors of the text as
        # sent). On, usage.prompt_tokens counts what it embedded (fake_tokens, EOS
        # appended as the file says) and vectors are of that sequence.
        self.tokenizes = tokenizes
        self.appends_to_ids = False
        self.tokenize_rule: Rule | None = None  # answers /tokenize first (faults)
        self.requests: list[tuple[str, str, dict]] = []  # (host, path, json)
        self.rules: list[Rule] = []
        self.down: set[str] = set()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def of(self, path_end: str, host: str | None = None) -> list[dict]:
        return [j for h, p, j in self.requests if p.endswith(path_end) and host in (None, h)]

    def handle(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        body = json.loads(request.content)
        self.requests.append((host, request.url.path, body))
        if request.url.path.endswith("/tokenize"):
            faulty = self.tokenize_rule and self.tokenize_rule(request, body)
            if faulty:
                return faulty
            if not self.tokenizes:
                return plain(404, "not found")
            # As llama-server: each string of a content list tokenized apart, numbers
            # taken as token ids, the tokens joined.
            content = body["content"]
            tokens: list[int] = []
            for piece in content if isinstance(content, list) else [content]:
                tokens += [piece] if isinstance(piece, int) else fake_ids(
                    piece, bool(body.get("parse_special", True)))
            if body.get("add_special") and self.appends_eos:
                tokens.append(FAKE_EOS_ID)
            return httpx.Response(200, json={"tokens": tokens})
        for rule in list(self.rules):
            answer = rule(request, body)
            if answer is not None:
                return answer
        if request.url.path.endswith("/embeddings"):
            return self.embeddings(body)
        if request.url.path.endswith("/rerank"):
            return self.rerank(body)
        return plain(404, "not found")

    def embeddings(self, body: dict) -> httpx.Response:
        texts = body["input"]
        wants_base64 = body.get("encoding_format") == "base64"
        if wants_base64 and self.base64_mode == "rejected":
            return llama_error(400, "unsupported encoding_format", "invalid_request_error")
        if texts and all(isinstance(t, list) for t in texts):
            return self.embed_ids(texts, wants_base64)
        data = []
        for i, text in enumerate(texts):
            v = vector_of(text + EOS_TEXT if self.tokenizes and self.appends_eos else text)
            value = (base64.b64encode(v.astype("<f4").tobytes()).decode()
                     if wants_base64 and self.base64_mode == "yes" else v.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = 1 + (1 if self.appends_eos else 0) if texts == [EOS_TEXT] else 7 * len(texts)
        if self.tokenizes:
            tokens = sum(fake_tokens(t) + self.appends_eos for t in texts)
        return httpx.Response(200, json={"object": "list", "data": data,
                                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def embed_ids(self, inputs: list[list[int]], wants_base64: bool) -> httpx.Response:
        """Token-id input, embedded as given, as llama-server does (``appends_to_ids``:
        a server that would append EOS to it too)."""
        data = []
        for i, ids in enumerate(inputs):
            ids = [*ids, FAKE_EOS_ID] if self.appends_to_ids else ids
            v = ids_vector(ids)
            value = (base64.b64encode(v.astype("<f4").tobytes()).decode()
                     if wants_base64 and self.base64_mode == "yes" else v.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(len(ids) + self.appends_to_ids for ids in inputs)
        return httpx.Response(200, json={"object": "list", "data": data,
                                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def rerank(self, body: dict) -> httpx.Response:
        docs = body["documents"]
        results = [{"index": i, "relevance_score": score_of(body["query"], d)}
                   for i, d in enumerate(docs)]
        results.sort(key=lambda r: -r["relevance_score"])  # llama-server sorts by score
        return httpx.Response(200, json={"model": body["model"], "object": "list",
                                         "usage": {"prompt_tokens": 9, "total_tokens": 9},
                                         "results": results[: body.get("top_n", len(docs))]})


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def embedder(server: FakeServer, urls: list[str] | None = None, **kwargs) -> ModelRunnerBackend:
    kwargs = {**FAST, "max_retries": 2, **kwargs}
    return ModelRunnerBackend("tiny", base_urls=urls or [A], transport=server.transport(),
                              **kwargs)


def reranker(server: FakeServer, urls: list[str] | None = None,
             **kwargs) -> ModelRunnerRerankBackend:
    kwargs = {**FAST, "max_retries": 2, **kwargs}
    return ModelRunnerRerankBackend("tiny-reranker", base_urls=urls or [A],
                                    transport=server.transport(), **kwargs)


def expected(texts: list[str]) -> np.ndarray:
    return np.stack([vector_of(t) for t in texts])


def once(response: httpx.Response, path_end: str = "", skip_probe: bool = True) -> Rule:
    """A rule that answers ``response`` to the next matching request, once."""
    used = []

    def rule(request: httpx.Request, body: dict) -> httpx.Response | None:
        is_probe = body.get("input") == [EOS_TEXT] or body.get("query") in PROBE_QUERIES
        if used or not request.url.path.endswith(path_end) or (skip_probe and is_probe):
            return None
        used.append(1)
        return response

    return rule


TEXTS = [f"text number {i}" for i in range(10)]


# -- settings ------------------------------------------------------------------------


def test_settings_are_read_only_and_validated_once():
    with ModelRunnerBackend("tiny", base_url=A, timeout=3, batch_size=5) as backend:
        assert (backend.timeout, backend.batch_size, backend.max_retries) == (3.0, 5, 3)
        for name in ("timeout", "connect_timeout", "max_concurrency", "batch_size",
                     "max_retries", "backoff", "max_backoff", "max_body_bytes"):
            with pytest.raises(AttributeError, match=f"pass {name}= to the constructor"):
                setattr(backend, name, 1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            backend.config.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="max_body_bytes=10 is out of range: it must be an integer >= 1024"):
        HttpConfig("m", max_body_bytes=10)
    with pytest.raises(ConfigurationError, match="connect_timeout=0 is out of range: it must be a finite number > 0"):
        ModelRunnerRerankBackend(base_url=A, connect_timeout=0)


# -- the retry flow, stepped by hand (no driver, no clock) -----------------------------


def step(flow, answers: list):
    """Drive ``flow`` feeding ``answers`` to its operations; (ops seen, result or error)."""
    ops = []
    try:
        op = next(flow)
        for answer in answers:
            ops.append(op)
            op = flow.send(answer)
        ops.append(op)
        return ops, None
    except StopIteration as stop:
        return ops, stop.value
    except Exception as exc:  # the outcome under test
        return ops, exc


def attempt_answering():
    def attempt(ep: Endpoint):
        out = yield Send(ep, ep.url + "/x", b"{}")
        if isinstance(out, Retry):
            raise out
        return (ep.display, out)

    return attempt


def busy(seconds: str | None = None) -> Retry:
    return Retry(ServerError("busy", 503), retry_after=float(seconds) if seconds else None)


def test_backoff_honours_retry_after_capped_by_max_backoff():
    config = HttpConfig("m", max_retries=3, backoff=0.5, max_backoff=4.0)
    eps = [Endpoint(A, 1)]
    flow = retrying(config, eps, 0, attempt_answering())
    ops, result = step(flow, [busy("3"), None, busy("60"), None, "ok"])
    sleeps = [op.seconds for op in ops if isinstance(op, Sleep)]
    assert sleeps[0] == 3.0  # Retry-After wins over the 0.25-0.5 s backoff
    assert sleeps[1] == 4.0  # ... but is capped by max_backoff
    assert result == (A, "ok")
    assert eps[0].failures == 2


def test_backoff_grows_exponentially_without_retry_after():
    config = HttpConfig("m", max_retries=4, backoff=1.0, max_backoff=100.0)
    flow = retrying(config, [Endpoint(A, 1)], 0, attempt_answering())
    ops, result = step(flow, [busy(), None, busy(), None, busy(), None, busy(), None, busy()])
    sleeps = [op.seconds for op in ops if isinstance(op, Sleep)]
    for k, s in enumerate(sleeps):
        assert 0.5 * 2**k <= s <= 2**k
    assert isinstance(result, ServerError) and "gave up after 5 attempt(s)" in str(result)


def test_a_round_tries_every_endpoint_before_sleeping():
    config = HttpConfig("m", max_retries=1, backoff=0.0, max_backoff=0.0)
    flow = retrying(config, [Endpoint(A, 1), Endpoint(B, 1)], 1, attempt_answering())
    ops, result = step(flow, [busy(), busy(), None, "ok"])
    assert [type(op).__name__ for op in ops] == ["Send", "Send", "Sleep", "Send"]
    assert [op.endpoint.url for op in ops if isinstance(op, Send)] == [B, A, B]  # starts at 1
    assert result == (B, "ok")


def test_retry_after_both_forms():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after(httpx.Headers({"Retry-After": when})) <= 31
    assert retry_after(httpx.Headers({"Retry-After": "2.5"})) == 2.5
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after(httpx.Headers({})) is None


def test_retry_after_is_waited_through_the_driver(server):
    server.rules.append(once(plain(429, "slow down", **{"Retry-After": "0.3"})))
    with embedder(server, max_backoff=5.0) as backend:
        start = time.monotonic()
        got = backend.embed(TEXTS[:2])
    assert 0.3 <= time.monotonic() - start < 2  # the backoff alone is 0 s
    np.testing.assert_array_equal(got, expected(TEXTS[:2]))


# -- retries and failover through the sync and async drivers -----------------------------


def test_503_twice_then_success(server):
    server.rules += [once(plain(503, "service unavailable")), once(plain(503, "busy"))]
    with embedder(server) as backend:
        got = backend.embed(TEXTS[:3])
        assert backend.endpoint_status()[0]["failures"] == 2
    np.testing.assert_array_equal(got, expected(TEXTS[:3]))


def test_gives_up_after_max_retries_with_the_count(server):
    server.rules.append(lambda r, b: None if b["input"] == [EOS_TEXT] else plain(503, "busy"))
    # (the fake serves no /tokenize by default, like Model Runner)
    with embedder(server, max_retries=3) as backend, pytest.raises(ServerError) as info:
        backend.embed(TEXTS[:1])
    assert info.value.status == 503 and "gave up after 4 attempt(s)" in str(info.value)
    assert len(server.of("/embeddings")) == 1 + 4


def test_final_errors_are_not_retried(server):
    server.rules.append(once(llama_error(422, "unprocessable", "invalid_request_error")))
    with embedder(server) as backend, pytest.raises(ServerError, match="answered 422"):
        backend.embed(TEXTS[:1])
    assert len(server.of("/embeddings")) == 2  # the probe and one try


def test_failover_to_the_live_endpoint(server):
    server.down.add("a.test")
    with embedder(server, urls=[A, B], batch_size=2) as backend:
        got = backend.embed(TEXTS)
        status = backend.endpoint_status()
    np.testing.assert_array_equal(got, expected(TEXTS))
    assert status[0]["down"] and status[0]["failures"] >= 1 and not status[0]["probed"]
    # The probe is an embedding and a /tokenize request (which this fake, like Model
    # Runner, does not serve), then the five batches.
    assert status[1]["requests"] == 2 + 5 and len(server.of("/embeddings", "b.test")) == 6


async def test_async_failover_and_order(server):
    server.down.add("b.test")
    server.rules.append(once(plain(503, "busy")))
    async with embedder(server, urls=[A, B], batch_size=3, max_concurrency=2) as backend:
        got = await backend.aembed(TEXTS)
        assert backend.endpoint_status()[1]["down"]
    np.testing.assert_array_equal(got, expected(TEXTS))


def test_every_endpoint_down_says_how_to_enable_model_runner(server):
    server.down |= {"a.test", "b.test"}
    with embedder(server, urls=[A, B], max_retries=1) as backend, \
            pytest.raises(ServerUnavailableError, match="enable model-runner --tcp") as info:
        backend.embed(TEXTS[:1])
    assert "gave up after 4 attempt(s)" in str(info.value)


# -- the EOS probe -------------------------------------------------------------------------


@pytest.mark.parametrize("appends", [True, False])
def test_eos_probe_decides_the_suffix_once(appends):
    server = FakeServer(appends_eos=appends)
    with embedder(server, batch_size=4) as backend:
        backend.embed(TEXTS)
        backend.embed(TEXTS[:1])
        assert backend.endpoint_status()[0]["server_appends_eos"] is appends
    probes = [j for j in server.of("/embeddings") if j["input"] == [EOS_TEXT]]
    sent = [t for j in server.of("/embeddings") if j["input"] != [EOS_TEXT] for t in j["input"]]
    assert len(probes) == 1
    # Batches go out concurrently, so the server sees them in any order.
    assert sorted(sent) == sorted(t if appends else t + EOS_TEXT for t in [*TEXTS, TEXTS[0]])


def test_unclear_probe_warns_and_sends_texts_unchanged(server):
    def odd_usage(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body["input"] != [EOS_TEXT]:
            return None
        resp = server.embeddings(body)
        payload = resp.json()
        payload["usage"] = {"prompt_tokens": 5, "total_tokens": 5}
        return httpx.Response(200, json=payload)

    server.rules.append(odd_usage)
    with embedder(server) as backend, pytest.warns(RuntimeWarning, match="could not tell"):
        backend.embed(TEXTS[:2])
    assert server.of("/embeddings")[1]["input"] == TEXTS[:2]


# -- base64 ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rejected", "ignored"])
def test_floats_when_base64_is_rejected_or_ignored(mode):
    server = FakeServer(base64_mode=mode)
    with embedder(server) as backend:
        got = backend.embed(TEXTS[:3])
        assert backend.endpoint_status()[0]["base64"] is False
    np.testing.assert_allclose(got, expected(TEXTS[:3]), atol=1e-7)
    later = [j for j in server.of("/embeddings") if j["input"] != [EOS_TEXT]]
    assert later and all("encoding_format" not in j for j in later)


# -- order and the faults that would shift vectors ----------------------------------------


def test_order_is_restored_from_index(server):
    def shuffled(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body["input"] == [EOS_TEXT]:
            return None
        payload = server.embeddings(body).json()
        payload["data"] = payload["data"][::-1]
        return httpx.Response(200, json=payload)

    server.rules.append(shuffled)
    with embedder(server) as backend:
        np.testing.assert_array_equal(backend.embed(TEXTS), expected(TEXTS))


def test_a_duplicate_index_is_an_error(server):
    def duplicated(request: httpx.Request, body: dict) -> httpx.Response | None:
        payload = server.embeddings(body).json()
        for item in payload["data"]:
            item["index"] = 0
        return None if body["input"] == [EOS_TEXT] else httpx.Response(200, json=payload)

    server.rules.append(duplicated)
    with embedder(server) as backend, pytest.raises(BadResponseError, match="index 0, but each"):
        backend.embed(TEXTS[:3])


# -- inputs the server rejects: which one -------------------------------------------------


def test_too_large_names_the_text_longest_first(server):
    long = "word " * 300

    def too_large(request: httpx.Request, body: dict) -> httpx.Response | None:
        if any(t.startswith(long) for t in body["input"]):
            return llama_error(500, "input (800 tokens) is too large to process. increase the "
                               "physical batch size (current batch size: 512)", "server_error")
        return None

    server.rules.append(too_large)
    texts = [TEXTS[0], TEXTS[1], long, TEXTS[2]]
    with embedder(server) as backend, pytest.raises(TextTooLongError) as info:
        backend.embed(texts)
    err = info.value
    assert (err.index, err.n_tokens, err.limit) == (2, 800, 512)
    assert "--ubatch-size 1024" in str(err)
    singles = [j["input"] for j in server.of("/embeddings")[2:]]
    assert singles == [[long]]  # the longest alone first: found in one request


def test_empty_names_the_text_shortest_first(server):
    odd = "\u200b"
    server.rules.append(lambda r, b: llama_error(400, "Input content cannot be empty",
                                                 "invalid_request_error")
                        if odd in b["input"] else None)
    with embedder(server) as backend, pytest.raises(InvalidInputError) as info:
        backend.embed([TEXTS[3], odd, TEXTS[4]])
    assert info.value.index == 1 and "rejected text at index 1 as empty" in str(info.value)


def test_body_limit_splits_batches_and_names_an_oversized_text(server):
    texts = [("x" * 300) + str(i) for i in range(8)]
    with embedder(server, max_body_bytes=1024, batch_size=64) as backend:
        np.testing.assert_array_equal(backend.embed(texts), expected(texts))
        with pytest.raises(InvalidInputError, match=r"text at index 1 is .* over the 1,024"):
            backend.embed(["ok", "y" * 2000])
    bodies = [len(json.dumps(j, ensure_ascii=False, separators=(",", ":")))
              for j in server.of("/embeddings")]
    assert len(bodies) >= 4 and max(bodies) <= 1024


# -- reranking -------------------------------------------------------------------------------


DOCS = [f"document {i} about {topic}" for i, topic in enumerate(
    ["cats", "rockets", "soup", "databases", "rivers", "music", "stone", "light"])]


def scores_of(query: str, docs: list[str]) -> np.ndarray:
    return np.array([score_of(query, d) for d in docs], dtype=np.float32)


def test_rerank_restores_input_order_and_batches(server):
    with reranker(server, batch_size=3) as backend:
        got = backend.score("which?", DOCS, DEFAULT_RERANK_INSTRUCTION)
    np.testing.assert_array_equal(got, scores_of("which?", DOCS))
    assert got.dtype == np.float32
    calls = server.of("/rerank")
    assert [c["query"] for c in calls[:2]] == list(PROBE_QUERIES)  # the checks, once
    assert [len(c["documents"]) for c in calls[2:]] == [3, 3, 2]
    assert all(c["top_n"] == len(c["documents"]) and c["model"] == "tiny-reranker"
               for c in calls)
    assert {p for _, p, _ in server.requests} == {"/v1/rerank"}


def test_rerank_goes_to_model_runners_engine_route(server):
    with ModelRunnerRerankBackend(base_url="http://mr.test:12434", transport=server.transport(),
                                  **FAST) as backend:
        assert backend.routes == ("http://mr.test:12434/engines/llama.cpp/rerank",)
        backend.score("q", DOCS[:2], DEFAULT_RERANK_INSTRUCTION)
    assert {p for _, p, _ in server.requests} == {"/engines/llama.cpp/rerank"}
    assert server.of("/rerank")[1]["model"] == "ai/qwen3-reranker"


async def test_async_rerank_fails_over(server):
    server.down.add("a.test")
    backend = reranker(server, urls=[A, B], batch_size=2)
    try:
        got = await backend.ascore("q", DOCS, DEFAULT_RERANK_INSTRUCTION)
    finally:
        await backend.aclose()
    np.testing.assert_array_equal(got, scores_of("q", DOCS))
    assert backend.endpoint_status()[0]["down"] and len(server.of("/rerank", "b.test")) == 2 + 4


def test_rerank_retries_503(server):
    server.rules.append(once(plain(503, "service unavailable"), "/rerank"))
    with reranker(server) as backend:
        got = backend.score("q", DOCS[:3], DEFAULT_RERANK_INSTRUCTION)
        assert backend.endpoint_status()[0]["failures"] == 1
    np.testing.assert_array_equal(got, scores_of("q", DOCS[:3]))


def test_custom_instruction_is_refused_before_any_request(server):
    with reranker(server) as backend:
        with pytest.raises(ConfigurationError, match=r"cannot be used over HTTP.*local"):
            backend.check_instruction("Given a code question, retrieve code")
        with pytest.raises(ConfigurationError, match="cannot be used over HTTP"):
            backend.score("q", DOCS, "Given a code question, retrieve code")
        backend.check_instruction(DEFAULT_RERANK_INSTRUCTION)
    assert server.requests == []


def test_server_without_reranking_says_start_it_with_reranking(server):
    server.rules.append(lambda r, b: llama_error(
        501, "This server does not support reranking. Start it with `--reranking`",
        "not_supported_error"))
    with reranker(server) as backend, pytest.raises(ServerError) as info:
        backend.score("q", DOCS[:2], DEFAULT_RERANK_INSTRUCTION)
    assert info.value.status == 501
    assert "--reranking" in str(info.value) and "docker model pull ai/qwen3-reranker" in str(
        info.value)
    assert len(server.requests) == 1  # not retried


def test_model_runner_without_the_route_says_so(server):
    with ModelRunnerRerankBackend(base_url="http://mr.test:12434",
                                  transport=httpx.MockTransport(lambda r: plain(404, "not found")),
                                  **FAST) as backend, pytest.raises(ServerError) as info:
        backend.score("q", DOCS[:2], DEFAULT_RERANK_INSTRUCTION)
    assert "does not support reranking" in str(info.value) and "v1.0.4" in str(info.value)


def test_model_not_pulled_says_docker_model_pull(server):
    server.rules.append(lambda r, b: plain(404, "model not found"))
    with ModelRunnerRerankBackend("ai/qwen3-reranker:0.6B", base_url="http://mr.test:12434",
                                  transport=server.transport(), **FAST) as backend, \
            pytest.raises(Exception, match=r"docker model pull ai/qwen3-reranker:0\.6B"):
        backend.score("q", DOCS[:2], DEFAULT_RERANK_INSTRUCTION)


def test_no_head_is_detected_by_the_probe(server):
    def no_head(request: httpx.Request, body: dict) -> httpx.Response:
        results = [{"index": i, "relevance_score": 3e-21} for i in range(len(body["documents"]))]
        return httpx.Response(200, json={"results": results, "usage": {}})

    server.rules.append(no_head)
    with reranker(server) as backend, pytest.raises(BackendError) as info:
        backend.score("q", DOCS, DEFAULT_RERANK_INSTRUCTION)
    message = str(info.value)
    assert "cls.output" in message and "b6578" in message and "Qwen3Reranker.local" in message
    assert [c["documents"] for c in server.of("/rerank")] == [[RERANK_PROBE_DOCUMENT]]


def test_no_rerank_template_is_detected_by_the_split_probe(server):
    """Without the template llama-server scores query + document run together."""

    def concatenating(request: httpx.Request, body: dict) -> httpx.Response:
        results = [{"index": i, "relevance_score": score_of("", body["query"] + d)}
                   for i, d in enumerate(body["documents"])]
        return httpx.Response(200, json={"results": results, "usage": {}})

    server.rules.append(concatenating)
    with reranker(server) as backend, pytest.raises(BackendError) as info:
        backend.score("q", DOCS, DEFAULT_RERANK_INSTRUCTION)
    message = str(info.value)
    assert "tokenizer.chat_template.rerank" in message and "Qwen3Reranker.local" in message
    assert [c["query"] for c in server.of("/rerank")] == list(PROBE_QUERIES)
    assert backend.endpoint_status()[0]["probed"] is False


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda rs: rs[:-1], "score 3 documents and got 2"),
        (lambda rs: [*rs, rs[0]], "and got 4"),
        (lambda rs: [{**r, "index": 0} for r in rs], "index 0, but each of 0 to 2"),
        (lambda rs: [{"index": r["index"], "score": 0.5} for r in rs], "relevance_score None"),
        (lambda rs: [{**r, "relevance_score": -1e6} for r in rs], "not a probability"),
        (lambda rs: [{**r, "relevance_score": 7.5} for r in rs], "not a probability"),
    ],
)
def test_wrong_rerank_answers_are_errors_not_guesses(server, mangle, match):
    def mangled(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body["query"] in PROBE_QUERIES:
            return None
        payload = server.rerank(body).json()
        payload["results"] = mangle(payload["results"])
        return httpx.Response(200, json=payload)

    server.rules.append(mangled)
    with reranker(server) as backend, pytest.raises(BadResponseError, match=match):
        backend.score("q", DOCS[:3], DEFAULT_RERANK_INSTRUCTION)


def test_rerank_context_error_names_the_document(server):
    long = "stone " * 500
    server.rules.append(lambda r, b: llama_error(
        400, "the request exceeds the available context size, try increasing it",
        "exceed_context_size_error", n_prompt_tokens=700, n_ctx=512)
        if any(d == long for d in b["documents"]) else None)
    with reranker(server) as backend, pytest.raises(TextTooLongError) as info:
        backend.score("q", [DOCS[0], long, DOCS[1]], DEFAULT_RERANK_INSTRUCTION)
    err = info.value
    assert err.index == 1 and (err.n_tokens, err.limit) == (700, 512)
    assert "document at index 1" in str(err) and "with the query and template" in str(err)


def test_rerank_body_limit(server):
    docs = [("z" * 300) + str(i) for i in range(6)]
    with reranker(server, max_body_bytes=1024) as backend:
        np.testing.assert_array_equal(backend.score("q", docs, DEFAULT_RERANK_INSTRUCTION),
                                      scores_of("q", docs))
        with pytest.raises(InvalidInputError, match="document at index 0 is"):
            backend.score("q", ["w" * 2000], DEFAULT_RERANK_INSTRUCTION)
        with pytest.raises(InvalidInputError, match="the query is"):
            backend.score("v" * 2000, ["a"], DEFAULT_RERANK_INSTRUCTION)


def test_special_token_text_warns_once(server):
    with reranker(server) as backend, pytest.warns(RuntimeWarning, match="document at index 1"):
        backend.score("q", ["fine", "ends <|im_end|> early"], DEFAULT_RERANK_INSTRUCTION)


def test_closed_backends_refuse_work(server):
    backend = reranker(server)
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.score("q", ["a"], DEFAULT_RERANK_INSTRUCTION)


# -- every answer's token count checked against /tokenize (issue 18, item 1) -------------


def eos_expected(texts: list[str]) -> np.ndarray:
    """What a right client gets from the tokenizing fake: each text's ids, then one EOS."""
    return np.stack([ids_vector([*fake_ids(t), FAKE_EOS_ID]) for t in texts])


SPELLING = [f"a text that spells {EOS_TEXT} and </s>", f"{EOS_TEXT}"]


@pytest.mark.parametrize("first", [True, False])
def test_a_restart_with_the_other_eos_flavour_needs_no_probe(first):
    """Token ids go out with exactly one EOS of ours, which llama-server embeds as given:
    whether the file appends EOS to text no longer matters."""
    server = FakeServer(appends_eos=first, tokenizes=True)
    with embedder(server, batch_size=3) as backend:
        texts = [*TEXTS, *SPELLING]
        np.testing.assert_array_equal(backend.embed(texts), eos_expected(texts))
        assert backend.endpoint_status()[0]["checks_tokens"] is True
        server.appends_eos = not first  # restarted with the other file
        np.testing.assert_array_equal(backend.embed(texts), eos_expected(texts))
        assert backend.endpoint_status()[0]["reprobes"] == 0
    tokenized = server.of("/tokenize")[2:]  # after the probe's
    assert tokenized and all(j["add_special"] is False and j["parse_special"] is False
                             for j in tokenized)
    sent = [j["input"] for j in server.of("/embeddings") if j["input"] != [EOS_TEXT]]
    assert all(ids[-1] == FAKE_EOS_ID and FAKE_EOS_ID not in ids[:-1]
               for batch in sent for ids in batch)


async def test_async_token_ids():
    server = FakeServer(appends_eos=False, tokenizes=True)
    async with embedder(server, batch_size=2) as backend:
        np.testing.assert_array_equal(await backend.aembed(TEXTS[:4]), eos_expected(TEXTS[:4]))
        server.appends_eos = True
        np.testing.assert_array_equal(await backend.aembed(TEXTS), eos_expected(TEXTS))


def test_count_tokens_counts_the_ids_sent():
    server = FakeServer(tokenizes=True)
    with embedder(server) as backend:
        assert backend.count_tokens(SPELLING[0]) == len(fake_ids(SPELLING[0])) + 1


def test_a_server_that_appends_eos_to_token_ids_is_probed_again_then_refused():
    """The counts would show a second EOS: refused, never returned."""
    server = FakeServer(appends_eos=True, tokenizes=True)
    server.appends_to_ids = True
    with embedder(server, max_retries=1) as backend, pytest.raises(BadResponseError) as info:
        backend.embed(TEXTS[:2])
    message = str(info.value)
    assert "sent as" in message and "restarted with different GGUF" in message
    assert "gave up after 2 attempt(s)" in message
    assert backend.endpoint_status()[0]["reprobes"] == 4


def test_an_answer_without_usage_is_probed_again_then_refused():
    server = FakeServer(appends_eos=True, tokenizes=True)

    def no_usage(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body.get("input") in (None, [EOS_TEXT]):
            return None
        payload = server.embeddings(body).json()
        del payload["usage"]
        return httpx.Response(200, json=payload)

    server.rules.append(no_usage)
    with embedder(server, max_retries=0) as backend, pytest.raises(BadResponseError):
        backend.embed(TEXTS[:2])
    assert backend.endpoint_status()[0]["reprobes"] == 2


@pytest.mark.parametrize("tokens", [[1, 2], [1, FAKE_EOS_ID, 2, FAKE_EOS_ID, 3], "x",
                                    [1, True], [1, -2], [1.5]])
def test_a_tokenize_answer_that_does_not_cut_into_the_texts_is_refused(tokens):
    server = FakeServer(tokenizes=True)
    def wrong(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body.get("parse_special"):
            return None  # the probe's
        return httpx.Response(200, json={"tokens": tokens})

    server.tokenize_rule = wrong
    with embedder(server, max_retries=0) as backend, pytest.raises(BadResponseError):
        backend.embed(TEXTS[:2])


def test_a_server_that_stops_serving_tokenize_is_probed_again():
    server = FakeServer(appends_eos=True, tokenizes=True)
    with embedder(server) as backend:
        backend.embed(TEXTS[:2])
        server.tokenizes = False  # now Model Runner-like: 404, vectors of the text sent
        server.appends_eos = True
        got = backend.embed(TEXTS[:2])
        assert backend.endpoint_status()[0]["checks_tokens"] is False
        assert backend.endpoint_status()[0]["reprobes"] == 1
    np.testing.assert_array_equal(got, expected(TEXTS[:2]))


# -- answers that are not what the API promises (issue 18) ---------------------------------


def answer(status: int, content: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=content,
                          headers={"Content-Type": "application/json", **headers})


def test_a_body_that_is_not_the_gzip_it_says_is_retried_then_our_error(server):
    def bad() -> httpx.Response:  # a stream, so httpx decodes it when the client reads it
        return httpx.Response(200, headers={"Content-Type": "application/json",
                                            "Content-Encoding": "gzip"},
                              stream=httpx.ByteStream(b'{"not": "gzip"}'))

    used = []
    server.rules.append(lambda r, b: None if used or b.get("input") == [EOS_TEXT]
                        else used.append(1) or bad())
    with embedder(server) as backend:  # once: retried, then right
        np.testing.assert_array_equal(backend.embed(TEXTS[:2]), expected(TEXTS[:2]))
    server.rules = [lambda r, b: bad() if b.get("input") != [EOS_TEXT] else None]
    with embedder(server, max_retries=1) as backend, pytest.raises(BadResponseError) as info:
        backend.embed(TEXTS[:2])
    assert "Content-Encoding" in str(info.value) and "gave up after 2 attempt(s)" in str(info.value)


@pytest.mark.parametrize("status, exc", [(200, BadResponseError), (500, ServerError)])
def test_deeply_nested_json_is_our_error(server, status, exc):
    server.rules.append(once(answer(status, b"[" * 200_000 + b"]" * 200_000), "/embeddings"))
    with embedder(server) as backend, pytest.raises(exc):
        backend.embed(TEXTS[:2])


@pytest.mark.parametrize(
    "value, match",
    [
        (True, r"holding True \(bool\), not a number"),
        ("1", r"holding '1' \(str\), not a number"),
        (None, r"holding None"),
        (float("nan"), "non-finite"),
        (float("inf"), "non-finite"),
        (1e39, "non-finite"),  # past float32
        (10**400, "non-finite"),  # past float64
    ],
)
def test_vectors_of_anything_but_finite_numbers_are_refused(value, match):
    server = FakeServer(base64_mode="ignored")  # vectors as JSON lists

    def mangled(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body.get("input") == [EOS_TEXT]:
            return None
        payload = server.embeddings(body).json()
        payload["data"][1]["embedding"][3] = value
        return answer(200, json.dumps(payload).encode())  # NaN and Infinity as Python writes

    server.rules.append(mangled)
    with embedder(server) as backend, pytest.raises(BadResponseError, match=match):
        backend.embed(TEXTS[:2])


def test_non_finite_base64_vectors_are_refused(server):
    nan = base64.b64encode(np.full(WIDTH, np.nan, "<f4").tobytes()).decode()

    def mangled(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body.get("input") == [EOS_TEXT]:
            return None
        payload = server.embeddings(body).json()
        payload["data"][0]["embedding"] = nan
        return httpx.Response(200, json=payload)

    server.rules.append(mangled)
    with embedder(server) as backend, pytest.raises(BadResponseError, match="non-finite"):
        backend.embed(TEXTS[:2])


def test_after_an_unclear_probe_the_counts_still_decide():
    """A probe answer that says neither 1 nor 2 (a fault on the way) warns; where the
    server tokenizes, token ids with one EOS of ours make it moot."""
    server = FakeServer(appends_eos=False, tokenizes=True)
    odd = [1]

    def unclear_once(request: httpx.Request, body: dict) -> httpx.Response | None:
        if body.get("input") != [EOS_TEXT] or not odd:
            return None
        odd.pop()
        payload = server.embeddings(body).json()
        payload["usage"]["prompt_tokens"] = 7
        return httpx.Response(200, json=payload)

    server.rules.append(unclear_once)
    with embedder(server) as backend, pytest.warns(RuntimeWarning, match="could not tell"):
        np.testing.assert_array_equal(backend.embed(TEXTS[:3]), eos_expected(TEXTS[:3]))
        assert backend.endpoint_status()[0]["server_appends_eos"] is None


def test_rerank_answers_nested_too_deep_or_undecodable_are_our_errors(server):
    deep = answer(200, b"[" * 200_000 + b"]" * 200_000)
    server.rules.append(lambda r, b: deep if b.get("query") not in PROBE_QUERIES else None)
    with reranker(server) as backend, pytest.raises(BadResponseError, match="not JSON"):
        backend.score("q", ["a", "b"], DEFAULT_RERANK_INSTRUCTION)
    server.rules = [lambda r, b: httpx.Response(
        200, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        stream=httpx.ByteStream(b"{}")) if b.get("query") not in PROBE_QUERIES else None]
    with reranker(server, max_retries=1) as backend, \
            pytest.raises(BadResponseError, match="Content-Encoding"):
        backend.score("q", ["a", "b"], DEFAULT_RERANK_INSTRUCTION)
