"""Retries, failover and per-endpoint probes, written once as sans-IO generators.

A flow is a generator that yields operations (:class:`Send`, :class:`Sleep`,
:class:`Probe`) and receives their outcome; it never touches a socket or a
clock. The drivers in :mod:`.drivers` run the same flow with a thread-safe
``httpx.Client`` or an ``httpx.AsyncClient`` (httpx's auth flows use the same
pattern), so the retry logic exists once for sync and async, embeddings and
reranking.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx

from .._errors import InvalidInputError, Qwen3EmbedError
from .config import HttpConfig
from .responses import InputFault, Retry, check, input_error, noun
from .urls import redact_url

logger = logging.getLogger("qwen3_embed_core.http")

T = TypeVar("T")


class Endpoint:
    """One server, and what we learned about it.

    Args:
        url: the API root (ends in ``/v1``), possibly with credentials.
        max_concurrency: sync requests in flight to it at once.
    """

    def __init__(self, url: str, max_concurrency: int) -> None:
        self.url = url
        self.display = redact_url(url)  # the only form messages and logs may show
        # Set last by the probe: once True, what it learned is final.
        self.probed = False
        self.down_until = 0.0  # time.monotonic() until which it is tried last
        self.requests = 0
        self.failures = 0
        self.sem = threading.BoundedSemaphore(max_concurrency)
        self.probe_lock = threading.Lock()
        self.stats_lock = threading.Lock()

    def is_down(self, now: float) -> bool:
        return self.down_until > now


E = TypeVar("E", bound=Endpoint)


@dataclass
class Send:
    """POST ``body`` (JSON bytes) to ``url`` on ``endpoint``; the driver answers
    with the read ``httpx.Response`` or the ``httpx.RequestError`` raised.

    ``deadline``: the ``time.monotonic()`` instant by which the whole exchange must
    be over (set by :func:`retrying` for each attempt; None: ``timeout`` from now).
    """

    endpoint: Endpoint
    url: str
    body: bytes
    deadline: float | None = None


@dataclass
class Sleep:
    """Wait ``seconds``; the driver answers None."""

    seconds: float


@dataclass
class Probe:
    """Run ``flow()`` once for ``endpoint`` (under its lock, unless already
    probed); the driver answers None, or the exception the probe raised."""

    endpoint: Endpoint
    flow: Callable[[], Generator[Op, Any, None]]
    deadline: float | None = None  # for the probe's requests, as Send's


Op = Send | Sleep | Probe
Flow = Generator[Op, Any, T]
# What a driver answers to an operation.
Outcome = (
    httpx.Response | httpx.RequestError | Qwen3EmbedError
    | Retry | InputFault | None
)


def count_send(op: Send) -> None:
    """Count a request on its endpoint, and log it without credentials."""
    with op.endpoint.stats_lock:
        op.endpoint.requests += 1
    if logger.isEnabledFor(logging.DEBUG):  # redacting parses the URL: not on every request
        logger.debug("POST %s (%d bytes)", redact_url(op.url), len(op.body))


def backoff_delay(
    retry: int, base: float, cap: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first).

    Exponential (``base * 2**retry``, at most ``cap``) with jitter (a random
    50-100% of it) so clients that failed together don't retry together; at
    least the server's ``Retry-After`` (also capped).
    """
    delay = min(cap, base * 2.0**retry) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def rotation(endpoints: Sequence[E], first: int) -> list[E]:
    """The endpoints starting at ``first`` (round robin), live ones before down ones."""
    order = [endpoints[(first + k) % len(endpoints)] for k in range(len(endpoints))]
    now = time.monotonic()
    return sorted(order, key=lambda ep: ep.is_down(now))  # stable


def retrying(
    config: HttpConfig,
    endpoints: Sequence[E],
    first: int,
    attempt: Callable[[E], Flow[T]],
    probe: Callable[[E], Flow[None]] | None = None,
) -> Flow[T]:
    """Run ``attempt`` on an endpoint; on a retryable failure try the next one,
    and after a full round wait (backoff) and go round again, up to max_retries.

    ``probe`` runs once per endpoint before its first attempt (see :class:`Probe`).
    Each attempt, its probe included, must be over within ``config.timeout``
    seconds: its requests share that deadline. So a call lasts at most
    ``(max_retries + 1) * len(endpoints) * timeout`` seconds plus the backoff
    sleeps between rounds.
    """
    last: Retry | None = None
    tries = 0
    for round_ in range(config.max_retries + 1):
        if round_:
            assert last is not None
            yield Sleep(
                backoff_delay(round_ - 1, config.backoff, config.max_backoff, last.retry_after)
            )
        for ep in rotation(endpoints, first):
            tries += 1
            deadline = time.monotonic() + config.timeout
            try:
                if probe is not None and not ep.probed:
                    failure = yield Probe(ep, _bind(probe, ep), deadline)
                    if failure is not None:
                        raise failure
                return (yield from within(attempt(ep), deadline))
            except Retry as retry:
                last = retry
                with ep.stats_lock:
                    ep.failures += 1
                if retry.down:
                    ep.down_until = time.monotonic() + config.down_cooldown
                logger.info("attempt %d failed: %s", tries, retry.error)
            except InputFault as fault:  # one the attempt could not pin on an input
                raise input_error(config, ep.display, fault, None, None) from None
    assert last is not None
    raise last.exhausted(tries, config.max_retries)


def within(flow: Flow[T], deadline: float | None) -> Flow[T]:
    """``flow`` with ``deadline`` on each of its requests (and probes) that has none."""
    try:
        op = next(flow)
        while True:
            if isinstance(op, (Send, Probe)) and op.deadline is None:
                op = replace(op, deadline=deadline)
            op = flow.send((yield op))
    except StopIteration as stop:
        result: T = stop.value
        return result


def _bind(probe: Callable[[E], Flow[None]], ep: E) -> Callable[[], Flow[None]]:
    return lambda: probe(ep)


def locate(
    config: HttpConfig,
    ep: Endpoint,
    sizes: Sequence[int],
    start: int,
    fault: InputFault,
    request: Callable[[int], Send],
    route: str,
) -> Flow[Qwen3EmbedError]:
    """The error for the input the server rejected in a batch, found by sending
    inputs alone (longest first for "too long", shortest first for "empty");
    bounded by the batch. ``request(i)`` sends input ``i`` of the batch alone."""
    if len(sizes) == 1:
        return input_error(config, ep.display, fault, start, None)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i], reverse=fault.kind != "empty")
    for i in order:
        out = yield request(i)
        try:
            check(config, out, ep.display, route)
        except InputFault as single:
            if single.kind == fault.kind:
                return input_error(config, ep.display, single, start + i, None)
        except (Retry, Qwen3EmbedError):
            break
    return input_error(config, ep.display, fault, None, (start, start + len(sizes) - 1))


def batches(config: HttpConfig, sizes: Sequence[int], overhead: int) -> list[tuple[int, int]]:
    """(start, stop) spans of inputs per request: at most batch_size inputs, and a body
    of at most max_body_bytes given each input's JSON ``sizes`` and the fixed ``overhead``."""
    budget = config.max_body_bytes - overhead - 64
    spans: list[tuple[int, int]] = []
    start = total = 0
    for i, n in enumerate(sizes):
        if n > budget:
            raise InvalidInputError(
                f"{noun(config)} at index {i} is {n:,} bytes as JSON, over the "
                f"{config.max_body_bytes:,}-byte request limit (Docker Model Runner refuses "
                "bodies over 10 MiB); split it into chunks",
                i,
            )
        if i > start and (i - start >= config.batch_size or total + n > budget):
            spans.append((start, i))
            start, total = i, 0
        total += n
    if start < len(sizes):
        spans.append((start, len(sizes)))
    return spans
