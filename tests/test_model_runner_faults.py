"""The Model Runner backend through every fault: a clear error with the next step, or a retry.

Faults a real llama-server produces (too long for its batch or context) come
from real llama-server processes; the rest come from the stand-in server,
which answers exactly as Model Runner and llama-server document.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
import warnings

import numpy as np
import pytest

from qwen3_embed_core import (
    EOS_TEXT,
    BackendError,
    BadResponseError,
    ConfigurationError,
    InvalidInputError,
    ModelNotFoundError,
    Qwen3Embedder,
    ServerError,
    ServerUnavailableError,
    TextTooLongError,
)
from qwen3_embed_core._http import ModelRunnerBackend, backoff_delay

from .conftest import COS_MIN, cosines
from .llama_server import LlamaServer, free_port
from .standin_server import StandIn, drop, llama_error, plain, proxy, reply, slow, when
from .texts import SHORT, long_text

pytestmark = pytest.mark.server

MODEL = "tiny-qwen3"
TEXTS = SHORT[:3]


@pytest.fixture
def standin(llama_server):
    """A Model Runner stand-in; requests it has no script for go to the real llama-server."""
    with StandIn(upstream=llama_server.base_url) as s:
        yield s


def http_embedder(base_url: str, model: str = MODEL, **kwargs) -> Qwen3Embedder:
    """An HTTP embedder whose retries wait milliseconds, not seconds."""
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("max_backoff", 0.05)
    return Qwen3Embedder(ModelRunnerBackend(model, base_url=base_url, **kwargs))


def assert_right(vectors: np.ndarray, texts: list[str], reference) -> None:
    assert cosines(vectors, [reference.embed(t) for t in texts]).min() >= COS_MIN


# -- no server -------------------------------------------------------------------


def test_connection_refused_says_how_to_enable_model_runner_tcp():
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with http_embedder(url) as emb, pytest.raises(ServerUnavailableError) as info:
        emb.embed_documents(TEXTS)
    message = str(info.value)
    assert "docker desktop enable model-runner --tcp 12434" in message
    assert "no server is running" in message and url in message
    assert "3 attempt(s)" in message  # max_retries=2: bounded
    assert time.monotonic() - start < 5


async def test_connection_refused_async():
    with pytest.raises(ServerUnavailableError, match="enable model-runner --tcp"):
        async with http_embedder(f"http://127.0.0.1:{free_port()}/v1") as emb:
            await emb.aembed_documents(TEXTS)


# -- Model Runner's plain-text errors -------------------------------------------------------


def test_plain_text_404_model_not_found_says_docker_model_pull(standin):
    standin.script("probe", plain(404, "model not found"))
    with http_embedder(standin.url, "ai/qwen3-embedding:0.6B-F16") as emb:
        with pytest.raises(ModelNotFoundError, match=r"docker model pull ai/qwen3-embedding:0\.6B-F16"):
            emb.embed_documents(TEXTS)
    assert len(standin.requests) == 1  # not retried


def test_unknown_path_404_points_at_base_url(standin):
    with http_embedder(standin.url + "/wrong/v1") as emb, pytest.raises(ServerError) as info:
        emb.embed_documents(TEXTS)
    assert info.value.status == 404 and "no embeddings API at that URL" in str(info.value)
    assert "http://localhost:12434" in str(info.value)
    assert len(standin.requests) == 1


def test_400_model_is_required(standin):
    standin.defaults.update(probe=plain(400, "model is required"), embed=plain(400, "model is required"))
    with http_embedder(standin.url) as emb, pytest.raises(ServerError, match="pass the served model's name"):
        emb.embed_documents(TEXTS)
    assert len(standin.requests) == 2  # the base64 probe, then the plain one; no retries


def test_500_unable_to_load_runner(standin):
    standin.script("probe", plain(500, "unable to load runner: error waiting for runner to be ready: "
                                       "llama.cpp terminated unexpectedly"))
    with http_embedder(standin.url) as emb, pytest.raises(ServerError) as info:
        emb.embed_documents(TEXTS)
    assert info.value.status == 500 and "docker model logs" in str(info.value)
    assert "llama.cpp terminated" in info.value.body
    assert len(standin.requests) == 1


def test_body_over_the_cap_400_request_too_large(standin):
    standin.script("embed", plain(400, "request too large"))
    with http_embedder(standin.url) as emb, pytest.raises(ServerError, match="lower batch_size="):
        emb.embed_documents(TEXTS)


def test_count_tokens_without_tokenize_endpoint(standin):
    with http_embedder(standin.url) as emb, pytest.raises(BackendError, match="does not expose it"):
        emb.count_tokens("hello")
    assert standin.of_kind("tokenize")[0].path == "/engines/llama.cpp/tokenize"


# -- retried statuses --------------------------------------------------------------------


def test_503_busy_then_success(standin, reference):
    standin.script("embed", plain(503, "service unavailable"), plain(503, "service unavailable"))
    with http_embedder(standin.url) as emb:
        got = emb.embed_documents(TEXTS)
        assert emb.backend.endpoint_status()[0]["failures"] == 2
    assert len(standin.of_kind("embed")) == 3
    assert_right(got, TEXTS, reference)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retried_statuses_give_up_after_max_retries(standin, status):
    standin.defaults["embed"] = plain(status, "try later")
    with http_embedder(standin.url, max_retries=3) as emb, pytest.raises(ServerError) as info:
        emb.embed_documents(TEXTS)
    assert info.value.status == status and "gave up after 4 attempt(s)" in str(info.value)
    assert len(standin.of_kind("embed")) == 4


def test_429_retry_after_is_honoured(standin, reference):
    standin.script("embed", plain(429, "slow down", headers={"Retry-After": "1"}))
    with http_embedder(standin.url, max_backoff=5.0) as emb:  # Retry-After is capped by it
        start = time.monotonic()
        got = emb.embed_documents(TEXTS)
        waited = time.monotonic() - start
    assert 0.9 <= waited < 3  # backoff alone would be 0.01 s
    assert_right(got, TEXTS, reference)


def test_backoff_is_exponential_with_jitter_and_capped():
    for retry in range(6):
        for _ in range(20):
            d = backoff_delay(retry, 0.5, 4.0)
            assert 0.5 * min(4.0, 0.5 * 2**retry) <= d <= min(4.0, 0.5 * 2**retry)
    assert len({backoff_delay(2, 0.5, 4.0) for _ in range(10)}) > 1  # jitter
    assert backoff_delay(0, 0.5, 4.0, retry_after=3.0) == 3.0
    assert backoff_delay(0, 0.5, 4.0, retry_after=60.0) == 4.0


@pytest.mark.parametrize("arg", ["backoff", "max_backoff"])
def test_negative_backoff_is_refused_at_construction(arg):
    # Not at the first retry, where time.sleep would raise mid-call.
    with pytest.raises(ConfigurationError, match=f"option {arg}=-1.0 is out of range: it must be a finite number >= 0"):
        ModelRunnerBackend(MODEL, base_url="http://127.0.0.1:9/v1", **{arg: -1.0})
    ModelRunnerBackend(MODEL, base_url="http://127.0.0.1:9/v1", **{arg: 0}).close()


@pytest.mark.parametrize(
    "action",
    [
        llama_error(400, "\"input\" must not be empty", "invalid_request_error"),
        plain(401, "unauthorized"),
        plain(403, "forbidden"),
        llama_error(422, "unprocessable", "invalid_request_error"),
        llama_error(500, "[json.exception.parse_error.101] parse error", "server_error"),
        llama_error(501, "This server does not support embeddings. Start it with `--embeddings`",
                    "not_supported_error"),
    ],
)
def test_other_errors_are_not_retried(standin, action):
    standin.script("embed", action)
    with http_embedder(standin.url) as emb, pytest.raises(ServerError) as info:
        emb.embed_documents(TEXTS)
    assert len(standin.of_kind("embed")) == 1
    assert str(info.value.status) in str(info.value) and "gave up" not in str(info.value)


async def test_async_retries_503_and_dropped_connections(standin, reference):
    standin.script("embed", plain(503, "service unavailable"), drop())
    async with http_embedder(standin.url, batch_size=1) as emb:
        got = await emb.aembed_documents(TEXTS)
    assert len(standin.of_kind("embed")) == len(TEXTS) + 2
    assert_right(got, TEXTS, reference)


# -- timeouts and dropped connections ------------------------------------------------------


def test_slow_answer_times_out_then_the_retry_succeeds(standin, reference):
    standin.script("embed", slow(2.0))
    with http_embedder(standin.url, timeout=0.3) as emb:
        start = time.monotonic()
        got = emb.embed_documents(TEXTS)
    assert 0.3 <= time.monotonic() - start < 3
    assert_right(got, TEXTS, reference)


def test_always_slow_gives_up_with_the_timeout_in_the_message(standin):
    standin.defaults["embed"] = slow(2.0)
    start = time.monotonic()
    with http_embedder(standin.url, timeout=0.2, max_retries=1) as emb, \
            pytest.raises(ServerUnavailableError, match=r"did not answer within 0\.2 s"):
        emb.embed_documents(TEXTS)
    assert time.monotonic() - start < 3
    assert len(standin.of_kind("embed")) == 2


def test_dropped_connection_is_retried(standin, reference):
    standin.script("embed", drop())
    with http_embedder(standin.url) as emb:
        got = emb.embed_documents(TEXTS)
    assert len(standin.of_kind("embed")) == 2
    assert_right(got, TEXTS, reference)


def test_always_dropped_gives_up(standin):
    standin.defaults["embed"] = drop()
    with http_embedder(standin.url) as emb, pytest.raises(ServerUnavailableError, match="closed the connection"):
        emb.embed_documents(TEXTS)
    assert len(standin.of_kind("embed")) == 3


# -- answers that would shift vectors ------------------------------------------------------------


def with_data(fn):
    return proxy(mangle=lambda j: {**j, "data": fn(j["data"])})


def test_order_is_restored_from_each_index(standin, reference):
    standin.script("embed", with_data(lambda d: d[::-1]))
    with http_embedder(standin.url) as emb:
        got = emb.embed_documents(TEXTS)
    assert_right(got, TEXTS, reference)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda d: d[:-1], "asked .* for 3 embeddings and got 2"),
        (lambda d: [*d, d[0]], "for 3 embeddings and got 4"),
        (lambda d: [{**x, "index": 0} for x in d], "index 0, but each of 0 to 2"),
        (lambda d: [{k: v for k, v in x.items() if k != "index"} for x in d], "index None"),
        (lambda d: [{**d[0], "embedding": d[0]["embedding"][:63]}, *d[1:]], "different sizes"),
        (lambda d: [{**x, "embedding": x["embedding"][:32]} for x in d], "32-dimensional .* has 64"),
        (lambda d: [{**x, "embedding": [x["embedding"]] * 3} for x in d], "--pooling last"),
        (lambda d: [{**x, "embedding": "AAA="} for x in d], "not a whole number of float32"),
        (lambda d: [{**x, "embedding": "not base64!"} for x in d], "not valid base64"),
        (lambda d: [{**x, "embedding": None} for x in d], "not a list of numbers"),
    ],
)
def test_wrong_vectors_are_errors_not_guesses(standin, mangle, match):
    standin.script("embed", with_data(mangle))
    with http_embedder(standin.url) as emb, pytest.raises(BadResponseError, match=match):
        emb.embed_documents(TEXTS)
    assert len(standin.of_kind("embed")) == 1  # a broken answer is not retried


@pytest.mark.parametrize(
    ("status", "body", "exc", "match"),
    [
        (200, "<html><body>Gateway says hi</body></html>", BadResponseError, "200 .*not JSON.*Gateway says hi"),
        (200, '{"object": "list"}', BadResponseError, "without a 'data' list"),
        (500, "Internal Server Error: upstream crashed", ServerError, "500: Internal Server Error: upstream"),
    ],
)
def test_malformed_bodies_name_the_status_and_an_excerpt(standin, status, body, exc, match):
    standin.script("embed", reply(status, body, "text/html"))
    with http_embedder(standin.url) as emb, pytest.raises(exc, match=match):
        emb.embed_documents(TEXTS)


def test_long_excerpts_are_cut(standin):
    standin.script("embed", reply(500, "x" * 5000, "text/plain"))
    with http_embedder(standin.url) as emb, pytest.raises(ServerError) as info:
        emb.embed_documents(TEXTS)
    assert len(info.value.body) <= 200 and len(str(info.value)) < 500


@pytest.mark.parametrize(
    "path, fault, exc",
    [
        ("/wrong/v1", None, ServerError),  # 404: no embeddings API there
        ("", reply(500, "upstream crashed", "text/plain"), ServerError),
        ("", reply(200, "<html>proxy page</html>", "text/html"), BadResponseError),
    ],
)
def test_credentials_in_the_url_stay_out_of_errors_and_logs(standin, caplog, path, fault, exc):
    if fault is not None:
        standin.script("embed", fault)
    url = standin.url.replace("http://", "http://user:s3cret@") + path
    caplog.set_level("DEBUG", logger="qwen3_embed_core.http")
    with http_embedder(url) as emb, pytest.raises(exc) as info:
        emb.embed_documents(TEXTS)
    assert "user:s3cret" not in str(info.value) and "***@127.0.0.1" in str(info.value)
    with http_embedder(url) as emb, pytest.raises(BackendError) as info:
        emb.count_tokens("hello")  # the stand-in, like Model Runner, has no /tokenize
    assert "user:s3cret" not in str(info.value) and "***@127.0.0.1" in str(info.value)
    assert "POST http://***@127.0.0.1" in caplog.text and "s3cret" not in caplog.text


# -- the EOS probe's answers ---------------------------------------------------------------------


def usage_tokens(n):
    return proxy(mangle=lambda j: {**j, "usage": {"prompt_tokens": n, "total_tokens": n}})


def test_probe_answer_1_appends_the_eos_text(standin):
    standin.script("probe", usage_tokens(1))
    with http_embedder(standin.url) as emb:
        emb.embed_documents(TEXTS)
        emb.embed_query("q")
    sent = [t for r in standin.of_kind("embed") for t in r.inputs]
    assert len(sent) == 4 and all(t.endswith(EOS_TEXT) and t.count(EOS_TEXT) == 1 for t in sent)
    assert len(standin.of_kind("probe")) == 1  # once per endpoint


@pytest.mark.parametrize("tokens", [9, 0, None])
def test_unclear_probe_answer_warns_once_and_sends_text_unchanged(standin, tokens):
    standin.script("probe", usage_tokens(tokens))
    with http_embedder(standin.url) as emb:
        with pytest.warns(RuntimeWarning, match="could not tell whether"):
            emb.embed_documents(TEXTS)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second warning
            emb.embed_documents(TEXTS)
        assert emb.backend.endpoint_status()[0]["server_appends_eos"] is None
    assert len(standin.of_kind("probe")) == 1
    assert [t for r in standin.of_kind("embed") for t in r.inputs] == TEXTS * 2


# -- texts the server rejects: which one, and what to do ------------------------------------------


def test_400_empty_input_names_the_index(standin):
    odd = "\u200b"  # passes our checks; a server may tokenize it to nothing
    rejecting = when(lambda r: odd in r.inputs, llama_error(400, "Input content cannot be empty",
                                                           "invalid_request_error"))
    standin.defaults["embed"] = rejecting
    with http_embedder(standin.url) as emb, pytest.raises(InvalidInputError) as info:
        emb.embed_documents([SHORT[0], SHORT[1], odd, SHORT[2]])
    assert info.value.index == 2 and "rejected text at index 2 as empty" in str(info.value)


@pytest.fixture(scope="module")
def small_batch_server(tiny_model, tmp_path_factory):
    """A real llama-server with a 128-token physical batch that cannot split inputs.

    This llama.cpp splits long inputs for last-token pooling, so the real
    "too large" error needs a pooling that can't (mean); the error path is
    the one Model Runner users hit with the default batch of 512.
    """
    args = ("--embeddings", "--pooling", "mean", "--ubatch-size", "128", "--batch-size", "128",
            "--parallel", "1", "--threads", "1")
    with LlamaServer(tiny_model, tmp_path_factory.mktemp("small"), args, "small-batch") as server:
        yield server


@pytest.fixture(scope="module")
def small_context_server(tiny_model, tmp_path_factory):
    """A real llama-server whose context holds 512 tokens."""
    args = ("--embeddings", "--pooling", "last", "--ctx-size", "512", "--parallel", "1",
            "--threads", "1")
    with LlamaServer(tiny_model, tmp_path_factory.mktemp("small"), args, "small-ctx") as server:
        yield server


def test_real_500_too_large_names_the_text_and_docker_model_configure(small_batch_server, embedder):
    texts = [SHORT[0], SHORT[1], long_text(120), SHORT[2]]
    n = embedder.count_tokens(texts[2])
    assert n > 128
    with Qwen3Embedder.model_runner(MODEL, base_url=small_batch_server.base_url) as emb:
        with pytest.raises(TextTooLongError) as info:
            emb.embed_documents(texts)
    err = info.value
    assert err.index == 2 and err.n_tokens == n and err.limit == 128
    assert "text at index 2" in str(err)
    assert f"docker model configure --context-size 512 {MODEL} -- --ubatch-size 512" in str(err)


def test_real_400_over_context_names_the_text(small_context_server, embedder):
    texts = [SHORT[0], long_text(300)]
    with Qwen3Embedder.model_runner(MODEL, base_url=small_context_server.base_url) as emb:
        with pytest.raises(TextTooLongError) as info:
            emb.embed_documents(texts)
    err = info.value
    assert err.index == 1 and err.limit == 512 and err.n_tokens == embedder.count_tokens(texts[1])
    assert f"docker model configure --context-size 1024 {MODEL}" in str(err)


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture
def tls_standin(llama_server, tmp_path):
    """The stand-in behind HTTPS with a self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    assert openssl, "the TLS tests need the openssl command"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with StandIn(upstream=llama_server.base_url, tls=ctx) as s:
        yield s, cert


def test_tls_is_verified_by_default(tls_standin, reference):
    standin, cert = tls_standin
    with http_embedder(standin.url) as emb, pytest.raises(ServerUnavailableError, match="TLS") as info:
        emb.embed_documents(TEXTS)
    assert "verify=" in str(info.value) and "gave up" not in str(info.value)  # not retried
    assert standin.requests == []
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, verify=str(cert)) as emb:
        assert_right(emb.embed_documents(TEXTS), TEXTS, reference)
    with Qwen3Embedder.model_runner(MODEL, base_url=standin.url, verify=False) as emb:
        assert_right(emb.embed_documents(TEXTS), TEXTS, reference)


# -- a server restarted on the same URL with the other GGUF flavour (issue 18, item 1) ---------


@pytest.mark.parametrize("use_async", [False, True])
def test_a_restart_with_the_other_eos_flavour_keeps_vectors_right(
    tiny_model, tiny_model_no_eos, reference, tmp_path, use_async
):
    """Same weights, with and without add_eos_token, served in turn on one port: the
    client's vectors stay equal to the reference. llama-server serves /tokenize, so texts
    go as token ids ending in one EOS of ours, embedded as given whatever the file says."""
    texts = [*TEXTS, "naïve café 東京"]
    want = [reference.embed(t) for t in texts]
    files = [tiny_model, tiny_model_no_eos, tiny_model]
    first = LlamaServer(files[0], tmp_path, name="restart-0").start()
    port, server = first.port, first
    emb = http_embedder(first.base_url, max_retries=3)
    try:
        for k, path in enumerate(files):
            if k:
                server.stop()
                server = LlamaServer(path, tmp_path, name=f"restart-{k}").start(port=port)
            got = (asyncio.run(emb.aembed_documents(texts)) if use_async
                   else emb.embed_documents(texts))
            assert cosines(got, want).min() >= COS_MIN, path.name
            status = emb.backend.endpoint_status()[0]
            assert status["checks_tokens"] is True
        assert emb.backend.endpoint_status()[0]["reprobes"] == 0
    finally:
        emb.close()
        server.stop()
