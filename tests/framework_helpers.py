"""Helpers for the framework tests: a recording pass-through backend, running examples."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class Call:
    method: str  # "embed" or "aembed"
    texts: list[str]  # exactly what the model read (instruction included)
    raw: np.ndarray  # what the backend returned, before MRL and normalisation
    thread: int


class RecordingBackend:
    """Delegates every call to a real backend and keeps a log of ``embed`` calls.

    ``aembed`` awaits the wrapped backend's own ``aembed``, so the core takes
    the same route it would take with the real backend.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[Call] = []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def full_dimensions(self) -> int | None:
        return self.inner.full_dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = self.inner.embed(texts)
        self.calls.append(Call("embed", list(texts), np.array(out), threading.get_ident()))
        return out

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        out = await self.inner.aembed(texts)
        self.calls.append(Call("aembed", list(texts), np.array(out), threading.get_ident()))
        return out

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        """The wrapped backend belongs to a session fixture: leave it open."""

    async def aclose(self) -> None:
        """As :meth:`close`."""

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (what the core does to a full-size backend output)."""
    rows = np.asarray(rows, np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str, cache: Path) -> str:
    """Run ``examples/<name>`` offline in a fresh process; its stdout (it must succeed)."""
    env = {**os.environ, "QWEN3_EMBED_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def run_watching_the_loop(awaitable: Awaitable[T]) -> tuple[T, int]:
    """(result, ticks): how often another coroutine ran on this loop meanwhile.

    An in-process backend that blocked the event loop would leave ticks at 0.
    """
    ticks = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.ensure_future(heartbeat())
    try:
        result = await awaitable
    finally:
        done.set()
        await beat
    return result, ticks
