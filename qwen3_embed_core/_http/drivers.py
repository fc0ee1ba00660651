"""The two drivers of the flows: threads over one ``httpx.Client``, and tasks over
one ``httpx.AsyncClient`` per event loop."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import httpx

from .._errors import Qwen3EmbedError
from .config import HttpConfig
from .deadline import bound_client, request_deadline
from .flows import Endpoint, Flow, Op, Outcome, Probe, Send, Sleep, count_send, within
from .responses import InputFault, Retry

T = TypeVar("T")


def _expired() -> httpx.TimeoutException:
    """The outcome of a request whose deadline passed (worded by ``responses.check``)."""
    return httpx.ReadTimeout("the request's deadline (timeout=) passed")


@dataclass
class _LoopState:
    """What belongs to one event loop: its async client, semaphores and probe locks."""

    client: httpx.AsyncClient
    sems: dict[int, asyncio.Semaphore]
    locks: dict[int, asyncio.Lock]


class Drivers:
    """Runs flows for one backend, sync or async; owns its connection pools.

    Args:
        config: the backend's settings (timeouts, concurrency).
        endpoints: the servers the flows send to.
        headers: sent with every request (content type, authorization).
        verify: httpx's TLS verification (bool or SSL context).
        transport: an httpx transport for the sync client (tests: ``httpx.MockTransport``).
        async_transport: one for the async clients; by default ``transport`` when it
            is also an async transport (as ``httpx.MockTransport`` is).
    """

    def __init__(
        self,
        config: HttpConfig,
        endpoints: Sequence[Endpoint],
        headers: dict[str, str],
        verify: bool | ssl.SSLContext,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._endpoints = list(endpoints)
        if async_transport is None and isinstance(transport, httpx.AsyncBaseTransport):
            async_transport = transport
        self._async_transport = async_transport
        self._headers = headers
        self._verify = verify
        self._timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout, pool=None)
        self._limits = httpx.Limits(
            max_connections=None,
            max_keepalive_connections=config.max_concurrency * len(self._endpoints),
        )
        self._client = httpx.Client(
            headers=headers,
            verify=verify,
            timeout=self._timeout,
            limits=self._limits,
            follow_redirects=False,
            transport=transport,
        )
        # httpx's timeouts are per operation; this bounds each request as a whole.
        self.bounded = bound_client(self._client)
        self._pool: ThreadPoolExecutor | None = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def workers(self) -> int:
        """Flows run at once: max_concurrency per endpoint."""
        return self._config.max_concurrency * len(self._endpoints)

    # -- sync ------------------------------------------------------------------

    def run(self, flow: Flow[T]) -> T:
        """Run one flow in this thread."""
        try:
            op = next(flow)
            while True:
                op = flow.send(self._do(op))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def run_all(self, flows: Sequence[Flow[T]]) -> list[T]:
        """Run flows concurrently on the thread pool; results in order."""
        if len(flows) == 1:
            return [self.run(flows[0])]
        pool = self._executor()
        futures = [pool.submit(self.run, flow) for flow in flows]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _deadline(self, op: Send) -> float:
        return time.monotonic() + self._config.timeout if op.deadline is None else op.deadline

    def _timeouts(self, left: float) -> httpx.Timeout:
        """httpx's per-operation timeouts, none longer than the ``left`` seconds."""
        return httpx.Timeout(
            min(self._config.timeout, left), connect=min(self._config.connect_timeout, left),
            pool=None,
        )

    def _do(self, op: Op) -> Outcome:
        if isinstance(op, Send):
            deadline = self._deadline(op)
            with op.endpoint.sem:
                left = deadline - time.monotonic()
                if left <= 0:
                    return _expired()
                count_send(op)
                try:
                    with request_deadline(deadline):
                        return self._client.post(
                            op.url, content=op.body, timeout=self._timeouts(left)
                        )
                except httpx.RequestError as exc:  # transport faults, undecodable bodies
                    return exc
        if isinstance(op, Sleep):
            time.sleep(op.seconds)
            return None
        return self._probe(op)

    def _probe(self, op: Probe) -> Outcome:
        ep = op.endpoint
        with ep.probe_lock:
            if ep.probed:
                return None
            try:
                self.run(within(op.flow(), op.deadline))
            except (Retry, InputFault, Qwen3EmbedError) as exc:
                return exc  # raised in the flow, which words it
        return None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.workers, thread_name_prefix="qwen3-embed-http"
                )
            return self._pool

    # -- async -----------------------------------------------------------------

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._loops.get(loop)
            if state is None:
                state = _LoopState(
                    httpx.AsyncClient(
                        headers=self._headers,
                        verify=self._verify,
                        timeout=self._timeout,
                        limits=self._limits,
                        follow_redirects=False,
                        transport=self._async_transport,
                    ),
                    {
                        id(ep): asyncio.Semaphore(self._config.max_concurrency)
                        for ep in self._endpoints
                    },
                    {id(ep): asyncio.Lock() for ep in self._endpoints},
                )
                self._loops[loop] = state
            return state

    async def arun_all(self, flows: Sequence[Flow[T]]) -> list[T]:
        """Run flows concurrently as tasks of this event loop; results in order."""
        state = self._loop_state()
        if len(flows) == 1:
            return [await self._arun(flows[0], state)]
        results: dict[int, T] = {}
        queue = iter(range(len(flows)))

        async def worker() -> None:
            for k in queue:  # shared iterator: each flow is taken once
                results[k] = await self._arun(flows[k], state)

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(len(flows), self.workers))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [results[k] for k in range(len(flows))]

    async def _arun(self, flow: Flow[T], state: _LoopState) -> T:
        try:
            op = next(flow)
            while True:
                op = flow.send(await self._ado(op, state))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def _ado(self, op: Op, state: _LoopState) -> Outcome:
        if isinstance(op, Send):
            deadline = self._deadline(op)
            async with state.sems[id(op.endpoint)]:
                left = deadline - time.monotonic()
                if left <= 0:
                    return _expired()
                count_send(op)
                try:
                    # wait_for cancels the request at the deadline, however the
                    # server trickles its answer.
                    return await asyncio.wait_for(
                        state.client.post(op.url, content=op.body, timeout=self._timeouts(left)),
                        left,
                    )
                except httpx.RequestError as exc:
                    return exc
                except asyncio.TimeoutError:
                    return _expired()
        if isinstance(op, Sleep):
            await asyncio.sleep(op.seconds)
            return None
        ep = op.endpoint
        async with state.locks[id(ep)]:
            if ep.probed:
                return None
            try:
                await self._arun(within(op.flow(), op.deadline), state)
            except (Retry, InputFault, Qwen3EmbedError) as exc:
                return exc
        return None

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pools and the worker threads."""
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
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
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

