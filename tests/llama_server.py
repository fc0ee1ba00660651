"""Start and stop a real llama-server (built from llama-cpp-python's own llama.cpp tree).

``.ci/build-llama-server`` prints the cached binary's path and builds it when
it is absent (several minutes on 2 cores); tests never skip for want of it.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

# Big enough for the >2,000-token test texts in one physical batch, so the
# fixture does not depend on llama.cpp's ability to split last-token pooling
# (Model Runner's default batch of 512 is what the fault tests imitate).
# Flash attention off: its half-precision accumulation costs cosine on long
# texts, and the local backend runs without it too.
DEFAULT_ARGS = (
    "--embeddings", "--pooling", "last",
    "--ctx-size", "8192", "--batch-size", "4096", "--ubatch-size", "4096",
    "--parallel", "2", "--threads", "1", "--flash-attn", "off",
)

# A Qwen3 reranker: --reranking is --embeddings with RANK pooling (the cls.output head
# and a softmax over [yes, no]); the /v1/rerank route answers P(yes) per document.
RERANK_ARGS = (
    "--reranking",
    "--ctx-size", "8192", "--batch-size", "4096", "--ubatch-size", "4096",
    "--parallel", "2", "--threads", "1", "--flash-attn", "off",
)


@functools.cache
def binary() -> Path:
    """The llama-server binary, built once if absent."""
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        [str(ROOT / ".ci" / "build-llama-server")],
        env=env, capture_output=True, text=True, timeout=3600, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"building llama-server failed:\n{done.stderr[-4000:]}")
    path = Path(done.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise RuntimeError(f".ci/build-llama-server printed {path}, which does not exist")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """A llama-server process on 127.0.0.1 serving one GGUF file.

    ``base_url`` ends in ``/v1`` (the OpenAI-compatible root); ``root`` is
    the server root (``/health``, ``/tokenize``). ``args`` replaces the
    embedding defaults (``RERANK_ARGS`` for a reranker); ``extra_args`` are
    appended to them.
    """

    def __init__(self, model_path: Path, log_dir: Path, args: tuple[str, ...] = DEFAULT_ARGS,
                 name: str = "llama-server", extra_args: tuple[str, ...] = ()) -> None:
        self.model_path = Path(model_path)
        self.args = (*args, *extra_args)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def start(self, timeout: float = 60.0, port: int | None = None) -> LlamaServer:
        """Start it on a free port, or on ``port`` (a restart on the same URL)."""
        last = ""
        for _ in range(3):  # another process may grab the free port first
            self.port = free_port() if port is None else port
            cmd = [str(binary()), "-m", str(self.model_path), "--host", "127.0.0.1",
                   "--port", str(self.port), *self.args]
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_healthy(timeout):
                return self
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"llama-server did not become healthy; log tail:\n{last}")

    def _wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(self.root + "/health", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        return False

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def kill(self) -> None:
        """Kill it at once, like a crash (connections drop, the port closes)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
