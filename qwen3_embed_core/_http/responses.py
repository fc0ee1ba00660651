"""Classifying answers: plain functions over an :class:`HttpConfig`.

:func:`check` sorts every outcome of a request into a success, a retryable
failure (:class:`Retry`), a rejected input (:class:`InputFault`, which the
flow locates) or a final error whose message names the next step.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .._errors import (
    BadResponseError,
    InvalidInputError,
    ModelNotFoundError,
    Qwen3EmbedError,
    ServerError,
    ServerUnavailableError,
    TextTooLongError,
)
from .._qwen3 import (
    LLAMA_SERVER_BATCH_SIZE,
    LLAMA_SERVER_EMPTY_INPUT,
    LLAMA_SERVER_EXCEEDS_CONTEXT,
    LLAMA_SERVER_NO_RERANKING,
    LLAMA_SERVER_TOO_LARGE,
    MODEL_RUNNER_BODY_TOO_LARGE,
    MODEL_RUNNER_CONTAINER_URL,
    MODEL_RUNNER_ENABLE_TCP,
    MODEL_RUNNER_ENGINE_PATH,
    MODEL_RUNNER_LOAD_FAILED,
    MODEL_RUNNER_MODEL,
    MODEL_RUNNER_MODEL_NOT_FOUND,
    MODEL_RUNNER_MODEL_REQUIRED,
    MODEL_RUNNER_RERANK_PATH,
    MODEL_RUNNER_URL,
    RERANKER_MODEL_RUNNER_MODEL,
)
from .config import Api, HttpConfig

# Statuses worth another try: rate limiting, and a gateway or server that is
# busy or restarting. Every other 4xx/5xx is about the request and is final.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class _ApiWords:
    """What messages say about one API."""

    noun: str  # what an input is called: "text at index 3"
    start: str  # how to start a llama-server for it
    example: str  # a Model Runner tag for it
    small: str  # a smaller Model Runner tag, for "could not load"


_WORDS: dict[Api, _ApiWords] = {
    "embeddings": _ApiWords(
        "text", "llama-server --embeddings --pooling last", MODEL_RUNNER_MODEL,
        "ai/qwen3-embedding:0.6B-F16",
    ),
    "rerank": _ApiWords(
        "document", "llama-server --reranking", RERANKER_MODEL_RUNNER_MODEL,
        f"{RERANKER_MODEL_RUNNER_MODEL}:0.6B",
    ),
}


def noun(config: HttpConfig) -> str:
    """What one input of ``config``'s API is called in messages ("text", "document")."""
    return _WORDS[config.api].noun


class Retry(Exception):
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


class InputFault(Exception):
    """The server rejected an input (too long, empty); the flow finds which."""

    def __init__(
        self, kind: str, message: str, n_tokens: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind  # "too_large" | "context" | "empty"
        self.message = message
        self.n_tokens = n_tokens
        self.limit = limit


# -- small helpers -----------------------------------------------------------------


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
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


def excerpt(text: str) -> str:
    """``text`` on one line, cut to a length a message can carry."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 1] + "…"


def error_fields(resp: httpx.Response) -> tuple[str, str | None, dict[str, Any]]:
    """(message, type, fields) of an error body: llama-server JSON or Model Runner plain text."""
    text = resp.text
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's parser
        return text.strip(), None, {}
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            etype = err.get("type")
            return str(err.get("message", "")), etype if isinstance(etype, str) else None, err
        if isinstance(err, str):
            return err, None, obj
        if "message" in obj:
            etype = obj.get("type")
            return str(obj["message"]), etype if isinstance(etype, str) else None, obj
    return text.strip(), None, {}


def _pow2_at_least(n: int) -> int:
    size = 512
    while size < n:
        size *= 2
    return size


# -- classifying ------------------------------------------------------------------


def transport_error(config: HttpConfig, where: str, exc: BaseException) -> Exception:
    """A :class:`Retry` (or a final error) for a request that got no answer."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "SSL" in detail:
        # A certificate (or a protocol mismatch) will not fix itself on retry.
        return ServerUnavailableError(
            f"the TLS connection to {where} failed ({detail}): for a server with a private "
            "CA pass verify='/path/to/ca.pem' (verify=False turns checking off; only for "
            "tests); for a server that speaks plain HTTP use an http:// URL"
        )
    if isinstance(exc, httpx.ConnectError):
        return Retry(
            ServerUnavailableError(
                f"could not connect to {where} ({detail}). For Docker Model Runner on this "
                f"machine, enable its TCP port: `{MODEL_RUNNER_ENABLE_TCP}` (from a container "
                f"use {MODEL_RUNNER_CONTAINER_URL}); otherwise no server is running at that "
                f"address: start one ({_WORDS[config.api].start}) or fix base_url"
            ),
            down=True,
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return Retry(
            ServerUnavailableError(
                f"{where} did not accept a connection within {config.connect_timeout:g} s "
                "(connect_timeout): is the host up and the address right?"
            ),
            down=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        return Retry(
            ServerUnavailableError(
                f"{where} did not answer within {config.timeout:g} s (timeout=, which bounds "
                "an attempt from connecting to the answer's last byte): the server may "
                "be overloaded, still loading the model, or sending its answer too slowly; "
                "raise timeout=, lower batch_size=, or add endpoints"
            )
        )
    if isinstance(exc, httpx.DecodingError):
        # Often a proxy's fault, and a broken transfer can be: worth another try.
        return Retry(
            BadResponseError(
                f"{where} answered a body that does not decode as its Content-Encoding "
                f"header says ({detail}): a proxy or gateway between here and the server "
                "may be mangling answers"
            )
        )
    return Retry(
        ServerUnavailableError(
            f"{where} closed the connection without a complete answer ({detail}); "
            "the server may have crashed or restarted"
        )
    )


def check(
    config: HttpConfig, out: httpx.Response | BaseException, where: str, route: str
) -> httpx.Response:
    """The response if it is a success; raises Retry, InputFault, or a final error.

    ``where`` is the endpoint and ``route`` the URL asked, both without credentials.
    """
    if isinstance(out, BaseException):
        raise transport_error(config, where, out)
    status = out.status_code
    if 200 <= status < 300:
        return out
    message, etype, fields = error_fields(out)
    cut = excerpt(message or out.text) or "(empty body)"
    if status in RETRY_STATUSES:
        what = {
            429: "is rate limiting requests",
            502: "is behind a gateway that could not reach it",
            503: "is busy or still starting",
            504: "is behind a gateway that timed out waiting for it",
        }[status]
        raise Retry(
            ServerError(
                f"{where} {what} ({status} {cut}); raise max_retries= or lower "
                "max_concurrency= if this persists",
                status,
                cut,
            ),
            retry_after=retry_after(out.headers),
        )
    too_large = re.search(LLAMA_SERVER_TOO_LARGE, message)
    if too_large:
        batch = re.search(LLAMA_SERVER_BATCH_SIZE, message)
        raise InputFault(
            "too_large", message, int(too_large[1]), int(batch[1]) if batch else None
        )
    if etype == LLAMA_SERVER_EXCEEDS_CONTEXT:
        n, limit = fields.get("n_prompt_tokens"), fields.get("n_ctx")
        raise InputFault(
            "context",
            message,
            n if isinstance(n, int) else None,
            limit if isinstance(limit, int) else None,
        )
    if LLAMA_SERVER_EMPTY_INPUT in message.lower():
        raise InputFault("empty", message)
    raise status_error(config, where, route, status, message.lower(), cut)


def status_error(
    config: HttpConfig, where: str, route: str, status: int, low: str, cut: str
) -> Qwen3EmbedError:
    """The final error for an error status, with the next step."""
    model, words = config.model, _WORDS[config.api]
    if status == 404 and MODEL_RUNNER_MODEL_NOT_FOUND in low:
        return ModelNotFoundError(
            f"{where} does not have the model {model!r} (404 {cut}): pull it with "
            f"`docker model pull {model}`, then retry"
        )
    if config.api == "rerank" and (status == 404 or LLAMA_SERVER_NO_RERANKING in low):
        return ServerError(
            f"{route} answered {status} ({cut}): this server does not support reranking. "
            "For llama-server, start it with --reranking on a Qwen3-Reranker GGUF (and pass "
            f"http://HOST:PORT/v1); for Docker Model Runner (v1.0.4 or later) pass its root "
            f"(e.g. {MODEL_RUNNER_URL}; the route {MODEL_RUNNER_RERANK_PATH} is added for "
            f"you) and pull the reranker: `docker model pull {RERANKER_MODEL_RUNNER_MODEL}`",
            status,
            cut,
        )
    if status == 404:
        return ServerError(
            f"{route} answered 404 ({cut}): there is no embeddings API at that URL. For "
            f"Docker Model Runner pass its base URL (e.g. {MODEL_RUNNER_URL}; the engine path "
            f"{MODEL_RUNNER_ENGINE_PATH} is added for you); for llama-server pass "
            "http://HOST:PORT/v1 and start it with --embeddings",
            status,
            cut,
        )
    if status == 400 and MODEL_RUNNER_MODEL_REQUIRED in low:
        return ServerError(
            f"{where} answered 400 ({cut}): pass the served model's name as model=, "
            f"e.g. {words.example!r}",
            status,
            cut,
        )
    if status == 413 or (status == 400 and MODEL_RUNNER_BODY_TOO_LARGE in low):
        return ServerError(
            f"{where} refused the request body as too large ({status} {cut}): lower "
            f"batch_size= (now {config.batch_size}) or max_body_bytes= "
            f"(now {config.max_body_bytes})",
            status,
            cut,
        )
    if status in (401, 403):
        hint = "check the api_key= you passed" if config.has_key else "pass api_key="
        return ServerError(
            f"{where} refused the request ({status} {cut}): it wants credentials; "
            f"{hint} (sent as a bearer token)",
            status,
            cut,
        )
    if status == 500 and MODEL_RUNNER_LOAD_FAILED in low:
        return ServerError(
            f"Docker Model Runner at {where} could not start {model!r} ({cut}): see "
            "`docker model logs`; the machine may lack memory for it, so try a smaller tag "
            f"such as {words.small}",
            status,
            cut,
        )
    return ServerError(f"{route} answered {status}: {cut}", status, cut)


def input_error(
    config: HttpConfig,
    where: str,
    fault: InputFault,
    index: int | None,
    span: tuple[int, int] | None,
) -> Qwen3EmbedError:
    """The error for an input the server at ``where`` rejected (index or span when known)."""
    thing = noun(config)
    if index is not None:
        which = f"{thing} at index {index}"
    elif span is not None:
        which = f"one of the {thing}s at indices {span[0]} to {span[1]}"
    else:
        which = f"a {thing}"
    n, limit, model = fault.n_tokens, fault.limit, config.model
    # A reranking prompt is the template, the query and the document together.
    counted = "EOS included" if config.api == "embeddings" else "with the query and template"
    size = _pow2_at_least(n or 0)
    pooling = " --pooling last" if config.api == "embeddings" else " --reranking"
    if fault.kind == "too_large":
        return TextTooLongError(
            f"{which} has {n} tokens ({counted}), more than {where} processes at "
            f"once (its physical batch: {limit} tokens), and it cannot split this input "
            f"({fault.message}). Raise the batch for Docker Model Runner: `docker model "
            f"configure --context-size {size} {model} -- --ubatch-size {size} --batch-size "
            f"{size}` (llama-server: --ubatch-size {size} --batch-size {size}, with{pooling}); "
            f"or split the {thing} into chunks",
            index,
            n or 0,
            limit or 0,
        )
    if fault.kind == "context":
        return TextTooLongError(
            f"{which} has {n} tokens ({counted}), more than the {limit}-token context "
            f"{where} gives a request ({fault.message}). Raise it for Docker Model "
            f"Runner: `docker model configure --context-size {size} {model}` (llama-server: "
            f"--ctx-size {size}, shared by its --parallel slots); or split the {thing} into "
            "chunks",
            index,
            n or 0,
            limit or 0,
        )
    return InvalidInputError(
        f"{where} rejected {which} as empty ({fault.message}); remove it or give it "
        "some content",
        index,
    )
