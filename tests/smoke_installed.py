"""Smoke test of the installed wheel, as a user who did not clone the repository gets it.

    python smoke_installed.py REPO

``.ci/smoke`` runs it with a fresh virtualenv's python, from a temporary
folder, after installing the wheel (not editable) with its extras into that
virtualenv; REPO is the source tree, read for README.md, examples/demo.py and
examples/docs only. Not a pytest module (pytest collects ``test_*.py``): it
must not import anything from the source tree, and it checks that it does not.

Steps, each printed with its time:
1. every package imports from the virtualenv, ships ``py.typed``, and the
   installed metadata's version is ``__version__``;
2. the README's quick-start lines, on the tiny model and reranker;
3. ``qwen3-embed --help`` and ``--version``, one ``ingest`` and one ``search``;
4. ``python examples/demo.py``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PACKAGES = [
    "qwen3_embed_core",
    "qwen3_embed_langchain",
    "qwen3_embed_llamaindex",
    "qwen3_embed_chroma",
    "qwen3_embed_qdrant",
    "qwen3_embed_cli",
    "qwen3_embed_ray",
]
# The file names the README's quick start uses, replaced by the tiny models.
EMBED_FILE = "Qwen3-Embedding-0.6B-Q8_0.gguf"
RERANK_FILE = "Qwen3-Reranker-0.6B-Q8_0.gguf"


def step(name: str, fn: Callable[[], None]) -> None:
    start = time.perf_counter()
    fn()
    print(f"smoke: {name}: ok ({time.perf_counter() - start:.1f}s)", flush=True)


def run(*cmd: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"smoke: {' '.join(cmd)} exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def main() -> None:
    repo = Path(sys.argv[1]).resolve()
    venv = Path(sys.prefix).resolve()
    if venv == Path(sys.base_prefix).resolve():
        raise SystemExit("smoke: run me with a virtualenv's python")
    work = Path(tempfile.mkdtemp(prefix="qwen3-smoke-"))
    env = {**os.environ, "QWEN3_EMBED_CACHE": str(work / "cache"), "HF_HOME": str(work / "hf"),
           "ANONYMIZED_TELEMETRY": "False", "HOME": str(work)}
    for name in ("PYTHONPATH", "QWEN3_EMBED_MODEL", "QWEN3_RERANK_MODEL"):
        env.pop(name, None)

    def imports() -> None:
        for name in PACKAGES:
            module = importlib.import_module(name)
            path = Path(module.__file__ or "").resolve()
            if venv not in path.parents or repo in path.parents:
                raise SystemExit(f"smoke: {name} imported from {path}, not from {venv}")
            if not (path.parent / "py.typed").is_file():
                raise SystemExit(f"smoke: {name} has no py.typed in the wheel")
        core = importlib.import_module("qwen3_embed_core")
        installed = importlib.metadata.version(core.DISTRIBUTION)
        if installed != core.__version__:
            raise SystemExit(f"smoke: metadata says {installed}, __version__ {core.__version__}")

    models: dict[str, Path] = {}

    def quick_start() -> None:
        import numpy as np

        testing = importlib.import_module("qwen3_embed_core.testing")

        models["embed"] = testing.cached_tiny_model()
        models["rerank"] = testing.build_reranker(work / "tiny-reranker.gguf")
        readme = (repo / "README.md").read_text(encoding="utf-8")
        code = re.search(r"## Quick start\n+```python\n(.*?)```", readme, re.S)[1]
        # The imports and the paragraphs that name a GGUF file run as written; the
        # others need a server, the Hugging Face cache or an event loop.
        runnable = [p for p in code.split("\n\n")
                    if EMBED_FILE in p or RERANK_FILE in p or p.startswith("from ")]
        if len(runnable) < 3:
            raise SystemExit("smoke: the README's quick start no longer names the model files")
        source = "\n\n".join(runnable).replace(EMBED_FILE, str(models["embed"]))
        source = source.replace(RERANK_FILE, str(models["rerank"]))
        scope: dict[str, object] = {}
        exec(compile(source, "README quick start", "exec"), scope)
        scores, hits = np.asarray(scope["scores"]), scope["hits"]
        assert scores.shape == (2,) and np.all(np.abs(scores) <= 1.0 + 1e-6), scores
        assert len(hits) == 1 and 0.0 <= hits[0].score <= 1.0, hits  # type: ignore[arg-type]

    cli = str(venv / "bin" / "qwen3-embed")

    def command_line() -> None:
        from qwen3_embed_core import Qwen3Embedder, __version__

        assert "ingest" in run(cli, "--help", cwd=work, env=env)
        assert __version__ in run(cli, "--version", cwd=work, env=env)
        docs = repo / "examples" / "docs"
        out = run(cli, "ingest", str(docs), "--into", "qdrant:./db/notes", "--model",
                  str(models["embed"]), "--no-progress", cwd=work, env=env)
        n = len(list(docs.glob("*.md")))
        assert f"{n} embedded, {n} written" in out, out
        query = "What is the capital of France?"
        out = run(cli, "search", query, "--in", "qdrant:./db/notes", "--limit", "3",
                  cwd=work, env=env)
        hits = re.findall(r"^ *\d+\. (-?\d\.\d{3})  (\S+)$", out, re.M)
        assert len(hits) == 3, out
        # The CLI's scores are the library's cosines (each document is one chunk).
        with Qwen3Embedder.local(models["embed"]) as emb:
            q = emb.embed_query(query)
            for score, source in hits:
                # One chunk per document: its text stripped of surrounding whitespace.
                text = (docs / Path(source).name).read_text(encoding="utf-8").strip()
                cosine = float(emb.embed_documents([text])[0] @ q)
                assert abs(cosine - float(score)) <= 6e-4, (source, score, cosine)

    def demo() -> None:
        out = run(sys.executable, str(repo / "examples" / "demo.py"), cwd=work, env=env)
        assert "embedded 8 documents" in out and "stage 2: the reranker" in out, out

    start = time.perf_counter()
    step("every package imports from the virtualenv", imports)
    step("README quick start on the tiny models", quick_start)
    step("qwen3-embed --help, --version, ingest, search", command_line)
    step("python examples/demo.py", demo)
    print(f"smoke: passed in {time.perf_counter() - start:.1f}s ({venv})")


if __name__ == "__main__":
    main()
