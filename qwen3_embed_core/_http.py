"""The Model Runner backend: Docker Model Runner, or any llama.cpp server, over HTTP.

It speaks the OpenAI-compatible ``POST {base}/embeddings`` API with httpx and
returns the same vectors as the local backend on the same model. What makes
that true over HTTP:

* **EOS.** The client cannot see the server's GGUF. llama-server parses
  special tokens in input text, so appending the literal ``<|endoftext|>``
  fixes a file that lacks ``add_eos_token`` and doubles EOS on a file that
  has it. Once per endpoint we embed exactly ``<|endoftext|>`` and read
  ``usage.prompt_tokens``: 2 means the server appends EOS itself, 1 means it
  doesn't and we append the literal text to every input.
* **No shifted vectors.** Each response must hold one vector per text, all
  of the model's width, each ``index`` exactly once; order is restored from
  ``index``. Anything else is an error.
* **Faults.** Retries with exponential backoff and jitter on connection
  errors, timeouts, 429, 502, 503 and 504, failing over to the other
  endpoints; clear errors with the next step for everything else.

Retries, failover and the EOS probe are written once, as generators that
yield operations (send, sleep, probe); a sync driver (one ``httpx.Client``,
a thread pool) and an async driver (one ``httpx.AsyncClient`` per event
loop) run them. httpx's own auth flows use the same pattern.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import itertools
import json
import logging
import os
import random
import re
import ssl
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from ._errors import (
    BackendError,
    BadResponseError,
    ConfigurationError,
    InvalidInputError,
    ModelNotFoundError,
    Qwen3EmbedError,
    ServerError,
    ServerUnavailableError,
    TextTooLongError,
)
from ._qwen3 import (
    EOS_PROBE_SERVER_APPENDS,
    EOS_PROBE_SERVER_DOES_NOT,
    EOS_TEXT,
    LLAMA_SERVER_BATCH_SIZE,
    LLAMA_SERVER_EMPTY_INPUT,
    LLAMA_SERVER_EXCEEDS_CONTEXT,
    LLAMA_SERVER_TOO_LARGE,
    MODEL_RUNNER_BODY_TOO_LARGE,
    MODEL_RUNNER_CONTAINER_URL,
    MODEL_RUNNER_ENABLE_TCP,
    MODEL_RUNNER_ENGINE_PATH,
    MODEL_RUNNER_LOAD_FAILED,
    MODEL_RUNNER_MAX_BODY_BYTES,
    MODEL_RUNNER_MODEL,
    MODEL_RUNNER_MODEL_NOT_FOUND,
    MODEL_RUNNER_MODEL_REQUIRED,
    MODEL_RUNNER_URL,
    SPECIAL_TOKEN_PATTERN,
    dimensions_for_model,
)

logger = logging.getLogger("qwen3_embed_core.http")

# Overrides the default base URL (an explicit base_url= still wins).
BASE_URL_ENV = "QWEN3_EMBED_BASE_URL"

# Statuses worth another try: rate limiting, and a gateway or server that is
# busy or restarting. Every other 4xx/5xx is about the request and is final.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# An endpoint that refused a connection is tried last for this long (seconds).
DOWN_COOLDOWN = 30.0

_EXCERPT_CHARS = 200

T = TypeVar("T")


# -- URLs --------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc="***@" + host))


def endpoint_url(base_url: str) -> str:
    """The OpenAI-compatible API root (ending in ``/v1``) for a base URL.

    A base that already ends in ``/v1`` (a plain llama-server) is used as is;
    otherwise it is Model Runner's root and its llama.cpp engine path is added.
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigurationError(f"a base URL must be a non-empty string, not {base_url!r}")
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"base URL {redact_url(base)!r} is not an http(s) URL; e.g. {MODEL_RUNNER_URL} "
            "(Docker Model Runner) or http://127.0.0.1:8080/v1 (llama-server)"
        )
    if parts.path.endswith("/v1"):
        return base
    engine = MODEL_RUNNER_ENGINE_PATH.rsplit("/v1", 1)[0]  # "/engines/llama.cpp"
    if parts.path.endswith((engine, "/engines")):
        return base + "/v1"
    return base + MODEL_RUNNER_ENGINE_PATH


def resolve_endpoints(base_url: str | None, base_urls: Sequence[str] | None) -> list[str]:
    """API roots from ``base_url``, ``base_urls``, $QWEN3_EMBED_BASE_URL or the default."""
    if base_url is not None and base_urls is not None:
        raise ConfigurationError("pass either base_url= or base_urls=, not both")
    if base_urls is not None:
        if isinstance(base_urls, str) or not base_urls:
            raise ConfigurationError("base_urls= must be a non-empty list of URLs")
        urls = [endpoint_url(u) for u in base_urls]
        if len(set(urls)) != len(urls):
            raise ConfigurationError(f"base_urls= lists the same endpoint twice: {urls}")
        return urls
    return [endpoint_url(base_url or os.environ.get(BASE_URL_ENV) or MODEL_RUNNER_URL)]


# -- small helpers -----------------------------------------------------------


def backoff_delay(
    retry: int, base: float, cap: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first).

    Exponential (``base * 2**retry``, at most ``cap``) with jitter (a random
    50-100% of it) so clients that failed together don't retry together; at
    least the server's ``Retry-After`` (also capped).
    """
    delay = min(cap, base * 2**retry) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 1] + "…"


def _error_fields(resp: httpx.Response) -> tuple[str, str | None, dict[str, Any]]:
    """(message, type, fields) of an error body: llama-server JSON or Model Runner plain text."""
    text = resp.text
    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip(), None, {}
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            return str(err.get("message", "")), err.get("type"), err
        if isinstance(err, str):
            return err, None, obj
        if "message" in obj:
            return str(obj["message"]), obj.get("type"), obj
    return text.strip(), None, {}


def _pow2_at_least(n: int) -> int:
    size = 512
    while size < n:
        size *= 2
    return size


# -- internal signals between the flows and their drivers ----------------------


@dataclass
class _Send:
    """POST ``body`` (JSON bytes) to ``url`` on ``endpoint``; the driver answers
    with the read ``httpx.Response`` or the ``httpx.TransportError`` raised."""

    endpoint: _Endpoint
    url: str
    body: bytes


@dataclass
class _Sleep:
    seconds: float


@dataclass
class _Probe:
    """Run the EOS/encoding probe for ``endpoint`` once (under a lock); the
    driver answers None, or the exception the probe raised."""

    endpoint: _Endpoint


_Op = _Send | _Sleep | _Probe
Flow = Generator[_Op, Any, T]


class _Retry(Exception):
    """A failure worth retrying, elsewhere or later; ``error`` is what the user
    gets when the retries run out."""

    def __init__(
        self, error: Qwen3EmbedError, retry_after: float | None = None, down: bool = False
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.down = down

    def exhausted(self, attempts: int, max_retries: int) -> Qwen3EmbedError:
        err = self.error
        err.args = (
            f"{err.args[0]} [gave up after {attempts} attempt(s); max_retries={max_retries}]",
            *err.args[1:],
        )
        return err


class _InputFault(Exception):
    """The server rejected an input text (too long, empty); the flow finds which."""

    def __init__(
        self, kind: str, message: str, n_tokens: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind  # "too_large" | "context" | "empty"
        self.message = message
        self.n_tokens = n_tokens
        self.limit = limit


def _count_send(op: _Send) -> None:
    """Count a request on its endpoint, and log it without credentials."""
    with op.endpoint.stats_lock:
        op.endpoint.requests += 1
    if logger.isEnabledFor(logging.DEBUG):  # redacting parses the URL: not on every request
        logger.debug("POST %s (%d bytes)", redact_url(op.url), len(op.body))


class _Endpoint:
    """One server, and what we learned about it."""

    def __init__(self, url: str, max_concurrency: int) -> None:
        self.url = url  # the API root, ending in /v1
        self.display = redact_url(url)
        self.embeddings_url = url + "/embeddings"
        # llama-server serves /tokenize at its root, beside /v1.
        self.tokenize_url = url[: -len("/v1")] + "/tokenize"
        # The same URLs without credentials: the only forms messages may show.
        self.embeddings_display = self.display + "/embeddings"
        self.tokenize_display = redact_url(self.tokenize_url)
        self.appends_eos: bool | None = None  # None: not probed, or no clear answer
        self.base64 = True
        # Set last by the probe: once True, the two facts above are final.
        self.probed = False
        self.down_until = 0.0  # time.monotonic() until which it is tried last
        self.requests = 0
        self.failures = 0
        self.sem = threading.BoundedSemaphore(max_concurrency)  # sync requests in flight
        self.probe_lock = threading.Lock()
        self.stats_lock = threading.Lock()

    @property
    def suffix(self) -> str:
        """Appended to every text: EOS when the server does not add it itself."""
        return EOS_TEXT if self.appends_eos is False else ""

    def is_down(self, now: float) -> bool:
        return self.down_until > now


@dataclass
class _LoopState:
    """What belongs to one event loop: its async client, semaphores and probe locks."""

    client: httpx.AsyncClient
    sems: dict[int, asyncio.Semaphore]
    locks: dict[int, asyncio.Lock]


# -- the backend -------------------------------------------------------------


class ModelRunnerBackend:
    """Embeds already-formatted texts through Docker Model Runner or llama-server.

    Thread-safe; sync calls share one ``httpx.Client`` and a thread pool, async
    calls one ``httpx.AsyncClient`` per event loop. Nothing is sent until the
    first call. See :meth:`Qwen3Embedder.model_runner` for the arguments;
    ``backoff``/``max_backoff`` (seconds) shape the retry delays and
    ``max_body_bytes`` caps a request body (Model Runner refuses more than 10 MiB).
    All of these are also attributes that can be changed later.
    """

    name = "model-runner"

    def __init__(
        self,
        model: str = MODEL_RUNNER_MODEL,
        *,
        base_url: str | None = None,
        base_urls: Sequence[str] | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 3,
        batch_size: int = 64,
        max_concurrency: int = 4,
        verify: bool | str = True,
        max_body_bytes: int = MODEL_RUNNER_MAX_BODY_BYTES,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(
                f"model= must be the served model's name, e.g. {MODEL_RUNNER_MODEL!r}"
            )
        for arg, value, low in (
            ("batch_size", batch_size, 1),
            ("max_concurrency", max_concurrency, 1),
            ("max_retries", max_retries, 0),
            ("max_body_bytes", max_body_bytes, 1024),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{arg}= must be an integer >= {low}, not {value!r}")
        for arg, value, zero_ok in (
            ("timeout", timeout, False),
            ("connect_timeout", connect_timeout, False),
            ("backoff", backoff, True),  # 0: retry at once
            ("max_backoff", max_backoff, True),
        ):
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                    or (value == 0 and not zero_ok)):
                kind = "non-negative" if zero_ok else "positive"
                raise ConfigurationError(f"{arg}= must be a {kind} number of seconds")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ConfigurationError("api_key= must be a non-empty string or None")
        self.model_name = model
        self.full_dimensions: int | None = dimensions_for_model(model)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_body_bytes = max_body_bytes
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.down_cooldown = DOWN_COOLDOWN
        self._endpoints = [
            _Endpoint(url, max_concurrency) for url in resolve_endpoints(base_url, base_urls)
        ]
        self._has_key = api_key is not None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client_kwargs: dict[str, Any] = {
            "headers": headers,
            "verify": _ssl_verify(verify),
            "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout, pool=None),
            "limits": httpx.Limits(
                max_connections=None,
                max_keepalive_connections=max_concurrency * len(self._endpoints),
            ),
            "follow_redirects": False,
        }
        self._client = httpx.Client(**self._client_kwargs)
        self._pool: ThreadPoolExecutor | None = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._warned_special = False
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- facts ---------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The API roots in use (each ends in ``/v1``), credentials redacted."""
        return tuple(ep.display for ep in self._endpoints)

    def endpoint_status(self) -> list[dict[str, Any]]:
        """What each endpoint has shown so far.

        ``server_appends_eos``: True/False once probed (None before, or when
        the server's answer was unclear); ``base64``: whether vectors come
        base64-encoded; ``requests``/``failures``: counts; ``down``: refused
        a connection recently, so it is tried last.
        """
        now = time.monotonic()
        return [
            {
                "url": ep.display,
                "probed": ep.probed,
                "server_appends_eos": ep.appends_eos,
                "base64": ep.base64 if ep.probed else None,
                "requests": ep.requests,
                "failures": ep.failures,
                "down": ep.is_down(now),
            }
            for ep in self._endpoints
        ]

    def __repr__(self) -> str:
        key = ", api_key='***'" if self._has_key else ""
        return (
            f"ModelRunnerBackend(model={self.model_name!r}, "
            f"endpoints={list(self.endpoints)!r}{key})"
        )

    # -- requests and answers -----------------------------------------------

    def _body(self, texts: Sequence[str], use_base64: bool) -> bytes:
        payload: dict[str, Any] = {"model": self.model_name, "input": list(texts)}
        if use_base64:
            payload["encoding_format"] = "base64"
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def _transport_error(self, ep: _Endpoint, exc: BaseException) -> Exception:
        detail = str(exc) or type(exc).__name__
        where = ep.display
        if isinstance(exc, httpx.ConnectError) and "SSL" in detail:
            # A certificate (or a protocol mismatch) will not fix itself on retry.
            return ServerUnavailableError(
                f"the TLS connection to {where} failed ({detail}): for a server with a private "
                "CA pass verify='/path/to/ca.pem' (verify=False turns checking off; only for "
                "tests); for a server that speaks plain HTTP use an http:// URL"
            )
        if isinstance(exc, httpx.ConnectError):
            return _Retry(
                ServerUnavailableError(
                    f"could not connect to {where} ({detail}). For Docker Model Runner on this "
                    f"machine, enable its TCP port: `{MODEL_RUNNER_ENABLE_TCP}` (from a container "
                    f"use {MODEL_RUNNER_CONTAINER_URL}); otherwise no server is running at that "
                    "address: start one (llama-server --embeddings --pooling last) or fix base_url"
                ),
                down=True,
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return _Retry(
                ServerUnavailableError(
                    f"{where} did not accept a connection within {self.connect_timeout:g} s "
                    "(connect_timeout): is the host up and the address right?"
                ),
                down=True,
            )
        if isinstance(exc, httpx.TimeoutException):
            return _Retry(
                ServerUnavailableError(
                    f"{where} did not answer within {self.timeout:g} s (timeout): the server may "
                    "be overloaded or still loading the model; raise timeout=, lower batch_size=, "
                    "or add endpoints"
                )
            )
        return _Retry(
            ServerUnavailableError(
                f"{where} closed the connection without a complete answer ({detail}); "
                "the server may have crashed or restarted"
            )
        )

    def _check(self, ep: _Endpoint, out: httpx.Response | BaseException) -> httpx.Response:
        """The response if it is a success; raises _Retry, _InputFault, or a final error."""
        if isinstance(out, BaseException):
            raise self._transport_error(ep, out)
        status = out.status_code
        if 200 <= status < 300:
            return out
        message, etype, fields = _error_fields(out)
        excerpt = _excerpt(message or out.text) or "(empty body)"
        low = message.lower()
        where = ep.display
        if status in RETRY_STATUSES:
            what = {
                429: "is rate limiting requests",
                502: "is behind a gateway that could not reach it",
                503: "is busy or still starting",
                504: "is behind a gateway that timed out waiting for it",
            }[status]
            raise _Retry(
                ServerError(
                    f"{where} {what} ({status} {excerpt}); raise max_retries= or lower "
                    "max_concurrency= if this persists",
                    status,
                    excerpt,
                ),
                retry_after=_retry_after(out.headers),
            )
        too_large = re.search(LLAMA_SERVER_TOO_LARGE, message)
        if too_large:
            batch = re.search(LLAMA_SERVER_BATCH_SIZE, message)
            raise _InputFault(
                "too_large", message, int(too_large[1]), int(batch[1]) if batch else None
            )
        if etype == LLAMA_SERVER_EXCEEDS_CONTEXT:
            n, limit = fields.get("n_prompt_tokens"), fields.get("n_ctx")
            raise _InputFault(
                "context",
                message,
                n if isinstance(n, int) else None,
                limit if isinstance(limit, int) else None,
            )
        if LLAMA_SERVER_EMPTY_INPUT in low:
            raise _InputFault("empty", message)
        raise self._status_error(ep, status, low, excerpt)

    def _status_error(self, ep: _Endpoint, status: int, low: str, excerpt: str) -> Exception:
        where, model = ep.display, self.model_name
        if status == 404 and MODEL_RUNNER_MODEL_NOT_FOUND in low:
            return ModelNotFoundError(
                f"{where} does not have the model {model!r} (404 {excerpt}): pull it with "
                f"`docker model pull {model}`, then retry"
            )
        if status == 404:
            return ServerError(
                f"{ep.embeddings_display} answered 404 ({excerpt}): there is no embeddings API at "
                f"that URL. For Docker Model Runner pass its base URL (e.g. {MODEL_RUNNER_URL}; "
                f"the engine path {MODEL_RUNNER_ENGINE_PATH} is added for you); for llama-server "
                "pass http://HOST:PORT/v1 and start it with --embeddings",
                status,
                excerpt,
            )
        if status == 400 and MODEL_RUNNER_MODEL_REQUIRED in low:
            return ServerError(
                f"{where} answered 400 ({excerpt}): pass the served model's name as model=, "
                f"e.g. {MODEL_RUNNER_MODEL!r}",
                status,
                excerpt,
            )
        if status == 413 or (status == 400 and MODEL_RUNNER_BODY_TOO_LARGE in low):
            return ServerError(
                f"{where} refused the request body as too large ({status} {excerpt}): lower "
                f"batch_size= (now {self.batch_size}) or max_body_bytes= "
                f"(now {self.max_body_bytes})",
                status,
                excerpt,
            )
        if status in (401, 403):
            hint = "check the api_key= you passed" if self._has_key else "pass api_key="
            return ServerError(
                f"{where} refused the request ({status} {excerpt}): it wants credentials; "
                f"{hint} (sent as a bearer token)",
                status,
                excerpt,
            )
        if status == 500 and MODEL_RUNNER_LOAD_FAILED in low:
            return ServerError(
                f"Docker Model Runner at {where} could not start {model!r} ({excerpt}): see "
                "`docker model logs`; the machine may lack memory for it, so try a smaller tag "
                "such as ai/qwen3-embedding:0.6B-F16",
                status,
                excerpt,
            )
        return ServerError(
            f"{ep.embeddings_display} answered {status}: {excerpt}", status, excerpt
        )

    def _input_error(
        self, ep: _Endpoint, fault: _InputFault, index: int | None, span: tuple[int, int] | None
    ) -> Qwen3EmbedError:
        if index is not None:
            where = f"text at index {index}"
        elif span is not None:
            where = f"one of the texts at indices {span[0]} to {span[1]}"
        else:
            where = "a text"
        n, limit, model = fault.n_tokens, fault.limit, self.model_name
        size = _pow2_at_least(n or 0)
        if fault.kind == "too_large":
            return TextTooLongError(
                f"{where} has {n} tokens (EOS included), more than {ep.display} processes at "
                f"once (its physical batch: {limit} tokens), and it cannot split this input "
                f"({fault.message}). Raise the batch for Docker Model Runner: `docker model "
                f"configure --context-size {size} {model} -- --ubatch-size {size} --batch-size "
                f"{size}` (llama-server: --ubatch-size {size} --batch-size {size}, with --pooling "
                "last); or split the text into chunks",
                index,
                n or 0,
                limit or 0,
            )
        if fault.kind == "context":
            return TextTooLongError(
                f"{where} has {n} tokens (EOS included), more than the {limit}-token context "
                f"{ep.display} gives a request ({fault.message}). Raise it for Docker Model "
                f"Runner: `docker model configure --context-size {size} {model}` (llama-server: "
                f"--ctx-size {size}, shared by its --parallel slots); or split the text into "
                "chunks",
                index,
                n or 0,
                limit or 0,
            )
        return InvalidInputError(
            f"{ep.display} rejected {where} as empty ({fault.message}); remove it or give it "
            "some content",
            index,
        )

    def _vector(self, ep: _Endpoint, value: object, index: int) -> np.ndarray:
        where = f"{ep.display} answered an embedding (item {index} of the request)"
        if isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise BadResponseError(f"{where} that is not valid base64") from None
            if not raw or len(raw) % 4:
                raise BadResponseError(
                    f"{where} of {len(raw)} bytes, not a whole number of float32 values"
                )
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if isinstance(value, list) and value and isinstance(value[0], list):
            raise BadResponseError(
                f"{where} with one vector per token: the server is not pooling. Start "
                "llama-server with --pooling last (Qwen3-Embedding pools the last token)"
            )
        if isinstance(value, list) and value:
            try:
                vec = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                vec = None
            if vec is not None and vec.ndim == 1:
                return vec
        raise BadResponseError(
            f"{where} that is {_excerpt(repr(value))[:60]}, not a list of numbers or base64"
        )

    def _learn_dimensions(self, ep: _Endpoint, dims: int) -> None:
        with self._lock:
            if self.full_dimensions is None:
                self.full_dimensions = dims
                return
            if dims != self.full_dimensions:
                raise BadResponseError(
                    f"{ep.display} answered {dims}-dimensional vectors, but {self.model_name!r} "
                    f"has {self.full_dimensions}: the server (or another of base_urls) is "
                    "running a different model"
                )

    def _parse(self, ep: _Endpoint, resp: httpx.Response, n: int) -> tuple[np.ndarray, dict]:
        """(vectors in input order, the JSON payload) for ``n`` texts, or BadResponseError."""
        status, where = resp.status_code, ep.embeddings_display
        try:
            payload = json.loads(resp.content)
        except ValueError:
            raise BadResponseError(
                f"{where} answered {status} with a body that is not JSON: "
                f"{_excerpt(resp.text)!r}"
            ) from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise BadResponseError(
                f"{where} answered {status} without a 'data' list of embeddings: "
                f"{_excerpt(resp.text)!r}"
            )
        if len(data) != n:
            raise BadResponseError(
                f"asked {where} for {n} embeddings and got {len(data)}; refusing to guess which "
                "vector belongs to which text"
            )
        rows: list[np.ndarray | None] = [None] * n
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            if (
                not isinstance(index, int)
                or isinstance(index, bool)
                or not 0 <= index < n
                or rows[index] is not None
            ):
                raise BadResponseError(
                    f"{where} answered an embedding with index {index!r}, but each of 0 to "
                    f"{n - 1} must appear once; refusing to guess the order"
                )
            rows[index] = self._vector(ep, item.get("embedding"), index)
        sizes = sorted({len(r) for r in rows if r is not None})
        if len(sizes) != 1:
            raise BadResponseError(f"{where} answered vectors of different sizes {sizes}")
        self._learn_dimensions(ep, sizes[0])
        return np.stack(rows), payload  # type: ignore[arg-type]

    # -- flows: retries, failover and the probe, written once -----------------

    def _rotation(self, first: int) -> list[_Endpoint]:
        eps = self._endpoints
        order = [eps[(first + k) % len(eps)] for k in range(len(eps))]
        now = time.monotonic()
        return sorted(order, key=lambda ep: ep.is_down(now))  # stable: live ones first

    def _retrying(self, first: int, attempt: Callable[[_Endpoint], Flow[T]]) -> Flow[T]:
        """Run ``attempt`` on an endpoint; on a retryable failure try the next one,
        and after a full round wait (backoff) and go round again, up to max_retries."""
        last: _Retry | None = None
        tries = 0
        for round_ in range(self.max_retries + 1):
            if round_:
                assert last is not None
                yield _Sleep(
                    backoff_delay(round_ - 1, self.backoff, self.max_backoff, last.retry_after)
                )
            for ep in self._rotation(first):
                tries += 1
                try:
                    if not ep.probed:
                        failure = yield _Probe(ep)
                        if failure is not None:
                            raise failure
                    return (yield from attempt(ep))
                except _Retry as retry:
                    last = retry
                    with ep.stats_lock:
                        ep.failures += 1
                    if retry.down:
                        ep.down_until = time.monotonic() + self.down_cooldown
                    logger.info("attempt %d failed: %s", tries, retry.error)
                except _InputFault as fault:
                    raise self._input_error(ep, fault, None, None) from None
        assert last is not None
        raise last.exhausted(tries, self.max_retries)

    def _probe_flow(self, ep: _Endpoint) -> Flow[None]:
        """Learn whether ``ep`` appends EOS itself, speaks base64, and the vector size."""
        out = yield _Send(ep, ep.embeddings_url, self._body([EOS_TEXT], True))
        use_base64 = True
        if isinstance(out, httpx.Response) and out.status_code in (400, 422):
            # Some OpenAI-compatible servers reject encoding_format; ask in floats.
            out = yield _Send(ep, ep.embeddings_url, self._body([EOS_TEXT], False))
            use_base64 = False
        _, payload = self._parse(ep, self._check(ep, out), 1)
        if not isinstance(payload["data"][0].get("embedding"), str):
            use_base64 = False  # the server ignored encoding_format
        usage = payload.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if tokens == EOS_PROBE_SERVER_APPENDS:
            appends: bool | None = True
        elif tokens == EOS_PROBE_SERVER_DOES_NOT:
            appends = False
        else:
            appends = None
            msg = (
                f"could not tell whether {ep.display} appends the EOS token: for the input "
                f"{EOS_TEXT!r} it reported usage.prompt_tokens={tokens!r} (expected 1 or 2). "
                "Texts are sent unchanged; if the server's GGUF lacks "
                "tokenizer.ggml.add_eos_token, its vectors will be wrong"
            )
            logger.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        ep.appends_eos = appends
        ep.base64 = use_base64
        ep.probed = True
        logger.info(
            "%s: server appends EOS: %s; base64: %s", ep.display, appends, use_base64
        )

    def _embed_attempt(
        self, texts: list[str], start: int
    ) -> Callable[[_Endpoint], Flow[np.ndarray]]:
        def attempt(ep: _Endpoint) -> Flow[np.ndarray]:
            suffix = ep.suffix
            body = self._body([t + suffix for t in texts], ep.base64)
            out = yield _Send(ep, ep.embeddings_url, body)
            try:
                resp = self._check(ep, out)
            except _InputFault as fault:
                raise (yield from self._locate(ep, texts, start, fault)) from None
            return self._parse(ep, resp, len(texts))[0]

        return attempt

    def _locate(
        self, ep: _Endpoint, texts: list[str], start: int, fault: _InputFault
    ) -> Flow[Qwen3EmbedError]:
        """The error for the text the server rejected, found by sending texts alone
        (longest first for "too long", shortest first for "empty"); bounded by the batch."""
        if len(texts) == 1:
            return self._input_error(ep, fault, start, None)
        suffix = ep.suffix
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]),
                       reverse=fault.kind != "empty")
        for i in order:
            out = yield _Send(ep, ep.embeddings_url, self._body([texts[i] + suffix], ep.base64))
            try:
                self._check(ep, out)
            except _InputFault as single:
                if single.kind == fault.kind:
                    return self._input_error(ep, single, start + i, None)
            except (_Retry, Qwen3EmbedError):
                break
        return self._input_error(ep, fault, None, (start, start + len(texts) - 1))

    def _count_attempt(self, text: str) -> Callable[[_Endpoint], Flow[int]]:
        def attempt(ep: _Endpoint) -> Flow[int]:
            content = text + ep.suffix
            body = json.dumps(
                {"content": content, "add_special": True, "parse_special": True},
                ensure_ascii=False,
            ).encode("utf-8")
            out = yield _Send(ep, ep.tokenize_url, body)
            if isinstance(out, httpx.Response) and out.status_code in (404, 405, 501):
                raise BackendError(
                    f"count_tokens needs llama-server's /tokenize endpoint, which "
                    f"{ep.tokenize_display} does not serve ({out.status_code} "
                    f"{_excerpt(out.text)}); Docker Model Runner does not expose it. Count "
                    "locally instead: Qwen3Embedder.local(<the same GGUF>).count_tokens(text)"
                )
            resp = self._check(ep, out)
            try:
                tokens = json.loads(resp.content)["tokens"]
                if not isinstance(tokens, list):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise BadResponseError(
                    f"{ep.tokenize_display} answered {resp.status_code} without a "
                    f"'tokens' list: {_excerpt(resp.text)!r}"
                ) from None
            return len(tokens)

        return attempt

    # -- batching ------------------------------------------------------------

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        if self._closed:
            raise BackendError("this embedder is closed")
        texts = list(texts)
        if not self._warned_special:
            for i, t in enumerate(texts):
                found = re.search(SPECIAL_TOKEN_PATTERN, t)
                if found:
                    self._warned_special = True
                    warnings.warn(
                        f"text at index {i} contains {found[0]!r}: llama.cpp servers read "
                        "special-token text as the token itself, so its vector differs from the "
                        "local backend's (which reads it as plain text)",
                        RuntimeWarning,
                        stacklevel=5,
                    )
                    break
        return texts

    def _batches(self, texts: list[str]) -> list[tuple[int, list[str]]]:
        """(start index, texts) per request: at most batch_size texts and max_body_bytes."""
        budget = self.max_body_bytes - len(self._body([], True)) - 64
        eos_bytes = len(EOS_TEXT)  # a suffix we may append
        batches: list[tuple[int, list[str]]] = []
        current: list[str] = []
        size = start = 0
        for i, text in enumerate(texts):
            n = len(json.dumps(text, ensure_ascii=False).encode("utf-8")) + eos_bytes + 1
            if n > budget:
                raise InvalidInputError(
                    f"text at index {i} is {n:,} bytes as JSON, over the {self.max_body_bytes:,}"
                    "-byte request limit (Docker Model Runner refuses bodies over 10 MiB); "
                    "split it into chunks",
                    i,
                )
            if current and (len(current) >= self.batch_size or size + n > budget):
                batches.append((start, current))
                current, size, start = [], 0, i
            current.append(text)
            size += n
        if current:
            batches.append((start, current))
        return batches

    def _flows(self, texts: list[str]) -> list[Flow[np.ndarray]]:
        first = next(self._turn)  # spread single-batch calls over the endpoints too
        return [
            self._retrying(first + k, self._embed_attempt(batch, start))
            for k, (start, batch) in enumerate(self._batches(texts))
        ]

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.full_dimensions or 0), dtype=np.float32)

    # -- sync driver -----------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        try:
            op = next(flow)
            while True:
                op = flow.send(self._do(op))
        except StopIteration as stop:
            return stop.value

    def _do(self, op: _Op) -> Any:
        if isinstance(op, _Send):
            with op.endpoint.sem:
                _count_send(op)
                try:
                    return self._client.post(op.url, content=op.body)
                except httpx.TransportError as exc:
                    return exc
        if isinstance(op, _Sleep):
            time.sleep(op.seconds)
            return None
        ep = op.endpoint
        with ep.probe_lock:
            if ep.probed:
                return None
            try:
                self._run(self._probe_flow(ep))
            except (_Retry, Qwen3EmbedError) as exc:
                return exc
        return None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_concurrency * len(self._endpoints),
                    thread_name_prefix="qwen3-embed-http",
                )
            return self._pool

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, shape (len(texts), full_dimensions), in input order."""
        texts = self._prepare(texts)
        if not texts:
            return self._empty()
        flows = self._flows(texts)
        if len(flows) == 1:
            return self._run(flows[0])
        futures = [self._executor().submit(self._run, flow) for flow in flows]
        try:
            parts = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return np.concatenate(parts, axis=0)

    def count_tokens(self, text: str) -> int:
        """Tokens the server sees for ``text``, EOS included (llama-server's /tokenize)."""
        if self._closed:
            raise BackendError("this embedder is closed")
        return self._run(self._retrying(next(self._turn), self._count_attempt(text)))

    # -- async driver --------------------------------------------------------

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._loops.get(loop)
            if state is None:
                state = _LoopState(
                    httpx.AsyncClient(**self._client_kwargs),
                    {id(ep): asyncio.Semaphore(self.max_concurrency) for ep in self._endpoints},
                    {id(ep): asyncio.Lock() for ep in self._endpoints},
                )
                self._loops[loop] = state
            return state

    async def _arun(self, flow: Flow[T], state: _LoopState) -> T:
        try:
            op = next(flow)
            while True:
                op = flow.send(await self._ado(op, state))
        except StopIteration as stop:
            return stop.value

    async def _ado(self, op: _Op, state: _LoopState) -> Any:
        if isinstance(op, _Send):
            async with state.sems[id(op.endpoint)]:
                _count_send(op)
                try:
                    return await state.client.post(op.url, content=op.body)
                except httpx.TransportError as exc:
                    return exc
        if isinstance(op, _Sleep):
            await asyncio.sleep(op.seconds)
            return None
        ep = op.endpoint
        async with state.locks[id(ep)]:
            if ep.probed:
                return None
            try:
                await self._arun(self._probe_flow(ep), state)
            except (_Retry, Qwen3EmbedError) as exc:
                return exc
        return None

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """Async :meth:`embed`: batches run concurrently, at most ``max_concurrency``
        requests in flight per endpoint."""
        texts = self._prepare(texts)
        if not texts:
            return self._empty()
        state = self._loop_state()
        flows = self._flows(texts)
        if len(flows) == 1:
            return await self._arun(flows[0], state)
        results: list[np.ndarray | None] = [None] * len(flows)
        queue = iter(range(len(flows)))

        async def worker() -> None:
            for k in queue:  # shared iterator: each batch is taken once
                results[k] = await self._arun(flows[k], state)

        workers = min(len(flows), self.max_concurrency * len(self._endpoints))
        tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return np.concatenate(results, axis=0)  # type: ignore[arg-type]

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pools and the worker threads."""
        self._closed = True
        self._client.close()
        with self._lock:
            pool, self._pool = self._pool, None
            states = list(self._loops.items())
            self._loops.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for loop, state in states:
            self._close_async_client(loop, state.client)

    def _close_async_client(
        self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
    ) -> None:
        if loop.is_closed():
            return  # its sockets went with the loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(client.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        else:
            loop.run_until_complete(client.aclose())

    async def aclose(self) -> None:
        """Close the pools, awaiting this event loop's async client."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._loops.pop(loop, None)
        if state is not None:
            await state.client.aclose()
        self.close()


def _ssl_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's ``verify``: True/False, or an SSL context trusting the CA bundle at a path."""
    if isinstance(verify, bool):
        return verify
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ConfigurationError(
                f"verify={path!r}: no such CA bundle; pass a PEM file path, True or False"
            )
        return ssl.create_default_context(cafile=path)
    raise ConfigurationError(f"verify= must be True, False or a CA bundle path, not {verify!r}")
