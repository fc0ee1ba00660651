"""Shared by the benchmarks: the real-shape model files and the two corpora."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

from qwen3_embed_core._inputs import resolve_instruction
from qwen3_embed_core.testing import _TRAINING_TEXT, REAL_0_6B, build_model, cache_dir

WORDS = sorted(set(re.findall(r"\w+", _TRAINING_TEXT)))
REPO = Path(__file__).resolve().parent.parent
# File types of the real-shape model: what the gguf package writes, and what
# llama-quantize makes from the F16 file (the gguf package cannot write k-quants).
GGUF_DTYPES = ("F16", "Q8_0")
QUANTIZER_DTYPES = ("BF16", "Q4_K_M")
__all__ = ["REAL_0_6B", "corpus", "llama_tool", "mixed_documents", "real_shape_model",
           "short_queries"]


def llama_tool(target: str) -> Path:
    """A llama.cpp tool built from the binding's llama.cpp tree (cached; minutes the first time)."""
    script = REPO / ".ci" / "build-llama-tool"
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run([str(script), target], env=env, check=True, capture_output=True,
                         text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def real_shape_model(dtype: str = "F16") -> Path:
    """Qwen3-Embedding-0.6B's shape and real vocabulary, random weights, cached outside the repo.

    ``dtype``: ``"F16"`` or ``"Q8_0"`` (written by the gguf package), or
    ``"Q4_K_M"`` or ``"BF16"`` (llama.cpp's ``llama-quantize`` run on the F16
    file, as published Q4_K_M files are made; BF16 rounds the random F16
    weights, where a BF16 file of the real model holds its published weights
    unrounded).
    """
    # "qwen3vocab": Qwen3's real vocabulary (REAL_0_6B.vocabulary); files with the old
    # learned 3,000-merge vocabulary had no such part in their names.
    path = cache_dir() / "bench" / f"qwen3-0.6b-shape-qwen3vocab-{dtype.lower()}.gguf"
    if path.is_file():
        return path
    if dtype in GGUF_DTYPES:
        print(f"building {path} (once; about a minute) ...", flush=True)
        build_model(path, shape=REAL_0_6B, dtype=dtype, seed=1)
    elif dtype in QUANTIZER_DTYPES:
        source = real_shape_model("F16")
        print(f"building llama-quantize and {path} (once; several minutes) ...", flush=True)
        tool = llama_tool("llama-quantize")
        tmp = path.with_suffix(".part")
        subprocess.run([str(tool), str(source), str(tmp), dtype], check=True,
                       capture_output=True)
        os.replace(tmp, path)
    else:
        raise ValueError(f"dtype must be one of {GGUF_DTYPES + QUANTIZER_DTYPES}, not {dtype!r}")
    return path


def _texts(n: int, low: int, high: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
        out.append(" ".join(words).capitalize() + ".")
    return out


def mixed_documents(n: int = 60, seed: int = 1) -> list[str]:
    """Documents of 20 to 400 words, deterministic."""
    return _texts(n, 20, 400, seed)


def short_queries(n: int = 300, seed: int = 2) -> list[str]:
    """Queries of 6 to 30 words, deterministic."""
    return _texts(n, 6, 30, seed)


def corpus(name: str, n: int | None = None) -> list[str]:
    """The exact strings the model sees: ``"docs"`` bare, ``"queries"`` with the
    default web-search instruction (one task), first ``n`` of each."""
    if name == "docs":
        texts = mixed_documents()
    elif name == "queries":
        prompts = resolve_instruction(None, None)
        texts = [prompts.query(q) for q in short_queries()]
    else:
        raise ValueError(f"corpus must be 'docs' or 'queries', not {name!r}")
    return texts[:n] if n else texts
