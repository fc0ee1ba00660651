"""Helpers shared by the vector-store tests (Chroma, Qdrant, the CLI, the crash test)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from qwen3_embed_core import Qwen3Embedder

# Chroma's client-side product telemetry: off, so nothing leaves the machine.
os.environ["ANONYMIZED_TELEMETRY"] = "False"

# One llama.cpp thread: tests share two cores with other work, and llama.cpp's
# threads spin-wait on each other when the cores are oversubscribed (measured
# 10x slower with 2 threads under load). The vectors are the same.
THREADS = 1

# Two unit vectors each within COS_MIN (0.9999) of the reference give a dot
# product within this of the reference's: |a.b - a'.b'| <= |a - a'| + |b - b'|.
REF_DOT_TOL = 2 * (2 * (1 - 0.9999)) ** 0.5

CLI = str(Path(sys.executable).with_name("qwen3-embed"))


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process: offline, no telemetry, this checkout importable."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root), str(root / "integrations"), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_embedder(model: Path, **options: object) -> Iterator[Qwen3Embedder]:
    """Body of a fixture: a local embedder with one thread (see THREADS), closed after."""
    emb = Qwen3Embedder.local(model, n_threads=THREADS, **options)
    yield emb
    emb.close()


@contextlib.contextmanager
def chroma_server(path: Path) -> Iterator[tuple[str, int]]:
    """Chroma's own server (``chroma run``) on a free local port; (host, port); stopped after."""
    port = free_port()
    chroma = str(Path(sys.executable).with_name("chroma"))
    proc = subprocess.Popen([chroma, "run", "--path", str(path), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=child_env())
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chroma run did not start: "
                                   + proc.stderr.read().decode()[-2000:])
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
