"""Model resolution: paths, variant names, Model Runner tags, the Hugging Face cache.

The download itself is exercised against a local stand-in for the hub that
answers the two requests ``hf_hub_download`` makes (HEAD for metadata with
the hub's headers, GET for the bytes); nothing here reaches the internet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qwen3_embed_core import ConfigurationError, ModelNotFoundError, Qwen3Embedder, resolve_model

from .conftest import COS_MIN

REPO = "Qwen/Qwen3-Embedding-0.6B-GGUF"
FILE = "Qwen3-Embedding-0.6B-Q8_0.gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Hub:
    """Serves one file the way huggingface.co's resolve endpoint does."""

    def __init__(self, payload: bytes | None) -> None:
        self.payload = payload
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                if hub.payload is None or self.path != f"/{REPO}/resolve/main/{FILE}":
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = hashlib.sha256(hub.payload).hexdigest()
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Content-Length", str(len(hub.payload)))
                self.end_headers()
                if body:
                    self.wfile.write(hub.payload)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _hf_cache_with(cache: Path, model: Path, repo: str = REPO, filename: str = FILE) -> Path:
    """Lay a file out the way the hub's cache stores a download."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    shutil.copy(model, snapshot / filename)
    return snapshot / filename


def test_a_path_is_used_as_is(tiny_model):
    assert resolve_model(tiny_model) == (tiny_model, None)
    assert resolve_model(str(tiny_model)) == (tiny_model, None)


def test_a_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no GGUF file at"):
        resolve_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelNotFoundError, match="no GGUF file at"):
        Qwen3Embedder.local(tmp_path / "nope.gguf")


def test_an_unknown_name_lists_the_variants():
    with pytest.raises(ConfigurationError, match=r"0\.6B-Q8_0, 0\.6B-F16, 4B-Q4_K_M"):
        resolve_model("qwen3-embedding-large")


def test_variants_and_tags_resolve_through_the_hf_cache(tmp_path, tiny_model, reference):
    cached = _hf_cache_with(tmp_path, tiny_model)
    f16 = _hf_cache_with(tmp_path, tiny_model, "Qwen/Qwen3-Embedding-4B-GGUF",
                         "Qwen3-Embedding-4B-f16.gguf")
    assert resolve_model("0.6B-Q8_0", cache_dir=tmp_path, download=False)[0] == cached
    assert resolve_model("ai/qwen3-embedding:4B-F16", cache_dir=tmp_path, download=False)[0] == f16
    with Qwen3Embedder.local("0.6B-Q8_0", cache_dir=tmp_path, download=False) as emb:
        assert emb.model_name == "Qwen3-Embedding-0.6B-Q8_0"
        assert float(emb.embed_documents(["cached"])[0] @ reference.embed("cached")) >= COS_MIN


def test_variant_dimensions_are_checked_before_loading(tmp_path):
    # Nothing is cached or downloadable: the range error must come first.
    with pytest.raises(ConfigurationError, match="32 to 1024"):
        Qwen3Embedder.local("0.6B-Q8_0", dimensions=2048, cache_dir=tmp_path, download=False)


def test_not_cached_and_download_off_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("0.6B-Q8_0", cache_dir=tmp_path, download=False)
    msg = str(info.value)
    assert f"hf download {REPO} {FILE}" in msg
    assert f"https://huggingface.co/{REPO}/blob/main/{FILE}" in msg
    assert "Qwen3Embedder.local('/path/to/" in msg


def test_download_through_a_standin_hub(tmp_path, tiny_model):
    payload = tiny_model.read_bytes()
    hub = _Hub(payload)
    try:
        got, variant = resolve_model("0.6B-Q8_0", cache_dir=tmp_path, endpoint=hub.url)
    finally:
        hub.close()
    assert variant is not None and variant.filename == FILE
    assert got.read_bytes() == payload
    assert tmp_path in got.resolve().parents  # stored in the cache we named
    assert any(r.startswith("GET ") for r in hub.requests)
    # Now cached: found without asking anyone.
    assert resolve_model("0.6B-Q8_0", cache_dir=tmp_path, download=False)[0].read_bytes() == payload


def test_a_404_from_the_hub_is_a_clear_error(tmp_path):
    hub = _Hub(None)
    try:
        with pytest.raises(ModelNotFoundError, match=f"could not be downloaded from {REPO}"):
            resolve_model("0.6B-Q8_0", cache_dir=tmp_path, endpoint=hub.url)
    finally:
        hub.close()


def test_an_unreachable_hub_fails_with_instructions(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ModelNotFoundError, match="hf download"):
        resolve_model("0.6B-Q8_0", cache_dir=tmp_path, endpoint=dead)


def test_offline_mode_errors_instead_of_hanging(tmp_path):
    """HF_HUB_OFFLINE is read when huggingface_hub is imported: use a fresh process."""
    code = (
        "from qwen3_embed_core import Qwen3Embedder, ModelNotFoundError\n"
        "try:\n"
        f"    Qwen3Embedder.local('ai/qwen3-embedding:0.6B-F16', cache_dir={str(tmp_path)!r})\n"
        "except ModelNotFoundError as e:\n"
        "    print('ERROR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.startswith("ERROR")
    assert "hf download Qwen/Qwen3-Embedding-0.6B-GGUF Qwen3-Embedding-0.6B-f16.gguf" in out
