"""A deadline on a whole request, which httpx's own timeouts are not.

httpx's ``timeout=`` bounds each operation (connect, one read, one write), so
a server that sends one byte every half second never trips it: a request can
last as long as the server likes. The sync driver therefore sets a deadline
(``time.monotonic()`` instant) for the request running in its thread, and the
network streams under its ``httpx.Client`` clamp every connect, read and
write to the time left, failing with httpcore's own timeout errors (which
httpx maps to ``httpx.ConnectTimeout``/``ReadTimeout``/``WriteTimeout``) once
it has passed. The async driver needs none of this: ``asyncio.wait_for``
cancels the request at its deadline.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_local = threading.local()


@contextmanager
def request_deadline(deadline: float) -> Iterator[None]:
    """Bound the socket operations of this thread's request by ``deadline``."""
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = None


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` clamped to this thread's deadline; ``error`` once it has passed."""
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's deadline (timeout=) passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        ))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        ))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        ))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound_client(client: httpx.Client) -> bool:
    """Put the deadline under ``client``'s own transports (and any proxy mounts).

    httpx takes no network backend, so this sets httpcore's pool attribute that holds
    it (``_network_backend``, public as a ``ConnectionPool`` argument). True when every
    transport was reached; False when one is not httpx's (a test's ``MockTransport``)
    or httpx changed, so requests are bounded only per operation (the test of the
    deadline fails first).
    """
    transports = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    done = True
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, _Backend):
            continue
        if isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
        elif transport is not None:
            done = False
    return done
