"""What the embedding and reranking HTTP backends share: settings, endpoints, drivers."""

from __future__ import annotations

import itertools
import re
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, overload

import httpx

from .._errors import BackendError, ConfigurationError
from .._qwen3 import LLAMA_CPP_CONTROL_SPELLINGS, SPECIAL_TOKEN_PATTERN
from .config import Api, HttpConfig, check_api_key, tls_setting
from .drivers import Drivers
from .flows import E, Flow, retrying
from .urls import resolve_endpoints

# Text a llama.cpp server reads as a special token: Qwen3's <|name|> tokens, and the
# ordinary Qwen3 tokens llama.cpp re-types as control (longest first).
SPECIAL_SPELLING = re.compile(
    SPECIAL_TOKEN_PATTERN + "|" + "|".join(
        map(re.escape, sorted(LLAMA_CPP_CONTROL_SPELLINGS, key=len, reverse=True)))
)

T = TypeVar("T")
V = TypeVar("V")
S = TypeVar("S", bound="HttpBackend[Any]")


class _Setting(Generic[V]):
    """A setting read from the backend's frozen config; assigning it is an error,
    because the clients were built with it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Setting[V]: ...

    @overload
    def __get__(self, obj: HttpBackend[Any], owner: type) -> V: ...

    def __get__(self, obj: HttpBackend[Any] | None, owner: type) -> V | _Setting[V]:
        if obj is None:
            return self
        value: V = getattr(obj.config, self._name)
        return value

    def __set__(self, obj: HttpBackend[Any], value: object) -> None:
        raise AttributeError(
            f"{self._name} is fixed when the backend is built (its HTTP clients use it); "
            f"pass {self._name}= to the constructor instead"
        )


class HttpBackend(Generic[E]):
    """Endpoints, connection pools and read-only settings of one HTTP backend.

    Thread-safe; sync calls share one ``httpx.Client`` and a thread pool, async
    calls one ``httpx.AsyncClient`` per event loop. Nothing is sent until the
    first call. Every setting is fixed at construction and readable as a
    property (``timeout``, ``batch_size``... and ``config``, all of them).
    """

    name = "model-runner"
    # Which API the subclass speaks, and the served model when none is named.
    API: ClassVar[Api]
    DEFAULT_MODEL: ClassVar[str]

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        base_urls: Sequence[str] | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        verify: bool | str | None = None,
        max_body_bytes: int | None = None,
        backoff: float | None = None,
        max_backoff: float | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Set up the clients; nothing is sent until the first call.

        Every setting is a declared model-runner option (the core's ``_options.DECLARED``
        gives its range and default); None takes the default.

        Args:
            model: the served model's name (None: the class's Model Runner tag;
                llama-server serves its file under any name).
            base_url: Model Runner's root (its engine path is added) or an API root
                ending in /v1 (llama-server); default $QWEN3_EMBED_BASE_URL, else
                http://localhost:12434.
            base_urls: several such endpoints instead; requests are spread and failed over.
            api_key: sent as a bearer token, never logged or shown.
            timeout: seconds one attempt may take in all, from connecting to the last
                byte of the answer (with the endpoint's one-time probe, and the
                /tokenize request that checks the answer, on llama-server). It is a
                deadline of our own: httpx's timeouts bound each read, so a server
                that trickles bytes would hold a call for ever. Retries add to it: a
                call lasts at most (max_retries + 1) x len(endpoints) x timeout, plus
                the backoff sleeps between rounds (each at most max_backoff), plus
                waits for a free slot when it has more batches than
                max_concurrency x len(endpoints).
            connect_timeout: seconds to wait for a connection (within timeout).
            max_retries: further rounds over the endpoints after a retryable failure.
            batch_size: inputs (texts or documents) per request.
            max_concurrency: requests in flight per endpoint.
            verify: TLS certificate checking: True, False, or a CA bundle path (PEM).
            max_body_bytes: largest request body in bytes (Model Runner refuses over 10 MiB).
            backoff: first retry delay in seconds, doubled each round, with jitter.
            max_backoff: longest retry delay in seconds (also caps Retry-After).
            transport: an httpx transport for the sync client (tests: httpx.MockTransport).
            async_transport: one for the async clients (default: ``transport`` when it
                is async too, as httpx.MockTransport is).
        """
        model = self.DEFAULT_MODEL if model is None else model
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(
                f"model= must be the served model's name, e.g. {self.DEFAULT_MODEL!r}"
            )
        check_api_key(api_key)
        config = HttpConfig.build(
            model, self.API, timeout=timeout, connect_timeout=connect_timeout,
            max_retries=max_retries, batch_size=batch_size, max_concurrency=max_concurrency,
            max_body_bytes=max_body_bytes, backoff=backoff, max_backoff=max_backoff,
            has_key=api_key is not None,
        )
        tls = tls_setting(verify)
        self.model_name = model
        self._config = config
        self._endpoints = [
            self._endpoint(url, config.max_concurrency)
            for url in resolve_endpoints(base_url, base_urls)
        ]
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._drivers = Drivers(config, self._endpoints, headers, tls, transport, async_transport)
        self._turn = itertools.count()
        self._warned_special = False
        self._closed = False
        self._init_state()

    def _endpoint(self, url: str, max_concurrency: int) -> E:
        """The subclass's endpoint object for an API root."""
        raise NotImplementedError

    def _init_state(self) -> None:
        """Set up what the subclass learns while it runs (nothing by default)."""

    # -- settings, fixed at construction ---------------------------------------

    @property
    def config(self) -> HttpConfig:
        """Every setting, frozen."""
        return self._config

    timeout: _Setting[float] = _Setting()  # seconds one attempt may take, all of it
    connect_timeout: _Setting[float] = _Setting()  # seconds to wait for a connection
    max_retries: _Setting[int] = _Setting()  # further rounds after a retryable failure
    batch_size: _Setting[int] = _Setting()  # inputs per request
    max_concurrency: _Setting[int] = _Setting()  # requests in flight per endpoint
    max_body_bytes: _Setting[int] = _Setting()  # largest request body in bytes
    backoff: _Setting[float] = _Setting()  # first retry delay in seconds
    max_backoff: _Setting[float] = _Setting()  # longest retry delay in seconds

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The API roots in use (each ends in ``/v1``), credentials redacted."""
        return tuple(ep.display for ep in self._endpoints)

    def _status(self, ep: E, now: float) -> dict[str, object]:
        return {
            "url": ep.display,
            "probed": ep.probed,
            "requests": ep.requests,
            "failures": ep.failures,
            "down": ep.is_down(now),
        }

    def endpoint_status(self) -> list[dict[str, object]]:
        """What each endpoint has shown so far: ``requests``/``failures`` (counts),
        ``probed``, and ``down`` (refused a connection recently: tried last)."""
        now = time.monotonic()
        return [self._status(ep, now) for ep in self._endpoints]

    def __repr__(self) -> str:
        key = ", api_key='***'" if self._config.has_key else ""
        return (
            f"{type(self).__name__}(model={self.model_name!r}, "
            f"endpoints={list(self.endpoints)!r}{key})"
        )

    # -- helpers for the backends ------------------------------------------------

    def _retrying(
        self,
        first: int,
        attempt: Callable[[E], Flow[T]],
        probe: Callable[[E], Flow[None]] | None,
    ) -> Flow[T]:
        return retrying(self._config, self._endpoints, first, attempt, probe)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"this {type(self).__name__} is closed")

    def _warn_special(
        self, texts: Sequence[str], what: str, stacklevel: int, start: int = 0
    ) -> None:
        """Warn once when an input spells a special token, which servers read as the token.

        ``what`` names input ``{}`` ("text at index {}"); ``start``: the index of
        ``texts[0]`` in the caller's list.
        """
        if self._warned_special:
            return
        for i, text in enumerate(texts, start):
            found = SPECIAL_SPELLING.search(text)
            if found:
                self._warned_special = True
                warnings.warn(
                    f"{what.format(i)} contains {found[0]!r}: "
                    "llama.cpp servers read special-token text sent as text as the token "
                    "itself (texts go as text to servers without /tokenize, such as Docker "
                    "Model Runner, and to rerank routes), so the result differs from "
                    "Qwen3's tokenizer's and the local backend's, which read it as plain "
                    "text; use the local backend for such texts",
                    RuntimeWarning,
                    stacklevel=stacklevel + 1,
                )
                return

    # -- lifetime ----------------------------------------------------------------

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close the connection pools and the worker threads."""
        self._closed = True
        self._drivers.close()

    async def aclose(self) -> None:
        """Close the pools, awaiting this event loop's async client."""
        self._closed = True
        await self._drivers.aclose()
