"""Vectors for the exactness figures of one model file, written as .npy files.

    python benchmarks/quality.py MODEL OUT_DIR [--n-docs 3] [--n-queries 8] [--no-reference]

Embeds a fixed sample (the first documents and instruction-carrying queries
of the benchmark corpora) with ``Qwen3Embedder.local`` with llama.cpp's
weight repacking off and on (``ours-repack0.npy``, ``ours-repack1.npy``), and
with the float64 numpy reference on the file's own weights, dequantized by
the gguf package (``reference.npy``). The caller computes the cosines (to the
reference on the same weights, and to the F16 file's vectors). A fresh
process per file keeps the reference's float64 weights (about 5 GB for the
0.6B shape) from adding up.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _worker import _ours
from common import corpus

try:
    from qwen3_embed_core._engine import physical_cores
except ImportError:  # before the engine was split out of the local backend
    from qwen3_embed_core._local import physical_cores
from qwen3_embed_core.testing import Reference


def sample(n_docs: int, n_queries: int) -> list[str]:
    return corpus("docs", n_docs) + corpus("queries", n_queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out", type=Path)
    parser.add_argument("--n-docs", type=int, default=3)
    parser.add_argument("--n-queries", type=int, default=8)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts = sample(args.n_docs, args.n_queries)
    for repack in (0, 1):
        emb = _ours(args.model, physical_cores(), {"repack": str(repack)})
        np.save(args.out / f"ours-repack{repack}.npy", emb.embed_documents(texts))
        emb.close()
        del emb
        gc.collect()
    if not args.no_reference:
        ref = Reference(args.model)
        np.save(args.out / "reference.npy", np.stack([ref.embed(t) for t in texts]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
