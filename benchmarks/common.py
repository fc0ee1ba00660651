"""Shared by the benchmarks: the real-shape model files and the two corpora."""

from __future__ import annotations

import random
import re
from pathlib import Path

from qwen3_embed_core.testing import _TRAINING_TEXT, REAL_0_6B, build_model, cache_dir

WORDS = sorted(set(re.findall(r"\w+", _TRAINING_TEXT)))


def real_shape_model(dtype: str = "F16") -> Path:
    """Qwen3-Embedding-0.6B's shape with random weights, cached outside the repo."""
    path = cache_dir() / "bench" / f"qwen3-0.6b-shape-{dtype.lower()}.gguf"
    if not path.is_file():
        print(f"building {path} (once; about a minute) ...", flush=True)
        build_model(path, shape=REAL_0_6B, dtype=dtype, seed=1)
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
