"""Helpers shared by the vector-store tests (Chroma, Qdrant, the CLI, the crash test)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from qwen3_embed_core import Qwen3Embedder
from qwen3_embed_core.stores import vector_record

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


def store_profile(emb: Qwen3Embedder) -> dict[str, object]:
    """The collection profile the store tests write for ``emb``: its vectors and a spec."""
    return {**vector_record(emb.model_name, emb.dimensions, emb.instruction),
            "embedder": {"backend": "local", "model": "tiny-eos.gguf"}}


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


# -- the stores every store-layer test runs on ---------------------------------------------
#
# One line per store: its name (the test id) and how to make a fresh URI for one test
# (``tmp``: that test's own folder; ``servers``: store servers started once a session).
# Tests that take the ``store_uri`` fixture run once per line.


class StoreServers:
    """Store servers started on first use and stopped at the end of the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stack = contextlib.ExitStack()
        self._chroma: tuple[str, int] | None = None

    def chroma(self) -> str:
        """``host:port`` of a Chroma server (``chroma run``)."""
        if self._chroma is None:
            self._chroma = self._stack.enter_context(chroma_server(self.root / "chroma"))
        host, port = self._chroma
        return f"{host}:{port}"

    def close(self) -> None:
        self._stack.close()


def _unique(tmp: Path) -> str:
    """A collection name unique to this test, valid everywhere (letters, digits, '-')."""
    name = "".join(c if c.isalnum() else "-" for c in tmp.name).strip("-")
    return f"c-{name}"[:60].rstrip("-")


STORE_URIS: dict[str, Callable[[Path, StoreServers], str]] = {
    "qdrant": lambda tmp, servers: f"qdrant:{tmp}/qdrant/docs",
    "chroma": lambda tmp, servers: f"chroma:{tmp}/chroma/docs",
    "chroma-server": lambda tmp, servers: f"chroma+http://{servers.chroma()}/{_unique(tmp)}",
    "qdrant-edge": lambda tmp, servers: f"qdrant-edge:{tmp}/edge/docs",
}


@pytest.fixture(scope="session")
def store_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServers]:
    servers = StoreServers(tmp_path_factory.mktemp("store-servers"))
    yield servers
    servers.close()


@pytest.fixture(params=list(STORE_URIS))
def store_uri(request: pytest.FixtureRequest, tmp_path: Path, store_servers: StoreServers) -> str:
    """A fresh collection URI on each store of STORE_URIS (conftest.py makes it a fixture)."""
    return STORE_URIS[request.param](tmp_path, store_servers)


@dataclass
class Tally:
    """A collection counted against the chunks it should hold."""

    points: int  # count() of the collection
    stale: int  # points whose (source, text) is not a current chunk
    missing: int  # current chunks not stored
    duplicated: int  # points beyond one per current chunk (same source and text, or same id)

    @property
    def exact(self) -> bool:
        return self.stale == self.missing == self.duplicated == 0


def tally(uri: str, expected: dict[str, list[str]], scope: str | None = None) -> Tally:
    """Count collection ``uri`` (of ``scope``, or all) against ``expected``:
    ``{source id: [its chunk texts]}``. Opened, read and closed through the store layer."""
    from qwen3_embed_core.stores import open_collection

    col = open_collection(uri)
    try:
        points = list(col.points(scope))
        total = col.count() if scope is None else len(points)
    finally:
        col.close()
    want = Counter((s, t) for s, texts in expected.items() for t in texts)
    have = Counter((p.source, p.text) for p in points)
    ids = Counter(p.id for p in points)
    stale = sum(n for key, n in have.items() if key not in want)
    missing = sum(max(0, n - have.get(key, 0)) for key, n in want.items())
    duplicated = sum(max(0, n - want[key]) for key, n in have.items() if key in want)
    duplicated += sum(n - 1 for n in ids.values() if n > 1) + (total - len(points))
    return Tally(total, stale, missing, duplicated)
