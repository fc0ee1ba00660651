"""The main job: embed a folder of documents into a store, answer queries, rerank the answers.

    python examples/demo.py [--model PATH_OR_VARIANT] [--rerank-model PATH]
                            [--docs FOLDER] [--store FOLDER]

The store is Qdrant Edge, the Qdrant engine running in this process, on disk
(Chroma when qdrant-edge-py is not installed; a temporary folder unless
``--store`` names one; run it twice on the same folder and nothing is
embedded again). Each query is answered in two stages: the embedder finds
the nearest documents by cosine, then the reranker scores the nearest
``CANDIDATES`` against the query and keeps the most relevant.

Uses a real Qwen3-Embedding GGUF when one is available locally (``--model``,
``$QWEN3_EMBED_MODEL``, or any variant already in the Hugging Face cache) and
a real Qwen3-Reranker GGUF when one is named (``--rerank-model``,
``$QWEN3_RERANK_MODEL``); otherwise the tiny random-weight test models, whose
rankings are meaningless. Never touches the network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from qwen3_embed_core import (
    VARIANTS,
    ModelNotFoundError,
    Qwen3Embedder,
    Qwen3Reranker,
    resolve_model,
)
from qwen3_embed_core.adapters import ingest_into, search_in
from qwen3_embed_core.stores import open_collection

HERE = Path(__file__).resolve().parent
QUERIES = [
    "What is the capital of France?",
    "How do plants turn sunlight into food?",
    "Which index makes nearest-neighbour search fast?",
    "Why does coffee keep me awake?",
]
SHOWN, CANDIDATES = 3, 5  # hits shown per stage; documents the reranker scores


def find_model(requested: str | None) -> tuple[str, bool]:
    """A GGUF path and whether it is a real Qwen3-Embedding model."""
    name = requested or os.environ.get("QWEN3_EMBED_MODEL")
    if name:
        return str(resolve_model(name, download=False)[0]), True
    for variant in VARIANTS:  # smallest first
        try:
            return str(resolve_model(variant, download=False)[0]), True
        except ModelNotFoundError:
            continue
    from qwen3_embed_core.testing import cached_tiny_model

    return str(cached_tiny_model()), False


def store_kind() -> tuple[str, str]:
    """The embedded store to use: Qdrant Edge (the real engine) if installed, else Chroma."""
    try:
        import qdrant_edge  # noqa: F401 - only asking whether it is there
    except ImportError:
        return "chroma", "Chroma"
    return "qdrant-edge", "Qdrant Edge"


def find_reranker(requested: str | None, folder: Path) -> tuple[str, bool]:
    """A reranker GGUF path and whether it is a real Qwen3-Reranker (else the tiny one,
    built into ``folder``)."""
    name = requested or os.environ.get("QWEN3_RERANK_MODEL")
    if name:
        return name, True
    from qwen3_embed_core.testing import build_reranker

    return str(build_reranker(folder / "tiny-reranker.gguf")), False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF path, variant name (0.6B-Q8_0) or Model Runner tag")
    parser.add_argument("--rerank-model", help="Qwen3-Reranker GGUF path")
    parser.add_argument("--docs", type=Path, default=HERE / "docs", help="folder of .md/.txt files")
    parser.add_argument("--store", type=Path, help="store folder to keep (default: temporary)")
    args = parser.parse_args(argv)

    path, real = find_model(args.model)
    if real:
        print(f"model: {path}")
    else:
        print("model: no Qwen3-Embedding GGUF found locally; using the tiny test model.")
        print("       Its weights are random, so the rankings below are MEANINGLESS.")
        print("       Pass --model /path/to/Qwen3-Embedding-0.6B-Q8_0.gguf for real results.")

    files = sorted(p for p in args.docs.iterdir() if p.suffix in {".md", ".txt"})
    records = [
        {"id": p.name, "text": p.read_text(encoding="utf-8"), "metadata": {"source": p.name}}
        for p in files
    ]
    with tempfile.TemporaryDirectory(prefix="qwen3-embed-demo-") as tmp, \
            Qwen3Embedder.local(path) as emb:
        rerank_path, real_rerank = find_reranker(args.rerank_model, Path(tmp))
        if real_rerank:
            print(f"reranker: {rerank_path}")
        else:
            print("reranker: no Qwen3-Reranker GGUF given; using the tiny test reranker, whose")
            print("          weights are random too. Pass --rerank-model "
                  "/path/to/Qwen3-Reranker-0.6B-Q8_0.gguf.")
        kind, label = store_kind()
        store = args.store or Path(tmp) / kind
        col = open_collection(f"{kind}:{store}/demo", create=True)  # embedded: no server
        try:
            with Qwen3Reranker.local(rerank_path) as rr:
                report = ingest_into(col, emb, records)
                print(f"embedded {report.embedded} documents from {args.docs} into {label} at "
                      f"{store} ({emb.dimensions} dimensions; {report.skipped} already there)")
                print(f"stage 1: the embedder ({emb.model_name}) finds the nearest documents "
                      "by cosine")
                print(f"stage 2: the reranker ({rr.model_name}) scores the {CANDIDATES} nearest "
                      f"against the query (P(yes)) and keeps the {SHOWN} best\n")
                for query in QUERIES:
                    print(f"Q: {query}")
                    print("   nearest by cosine (embedder):")
                    for rank, hit in enumerate(search_in(col, emb, query, limit=SHOWN), start=1):
                        print(f"   {rank}. {hit.score:.3f}  {hit.metadata['source']}")
                    print(f"   most relevant of the {CANDIDATES} nearest (reranker):")
                    reranked = search_in(col, emb, query, limit=SHOWN, rerank=rr,
                                         candidates=CANDIDATES)
                    for rank, hit in enumerate(reranked, start=1):
                        print(f"   {rank}) {hit.score:.4f}  {hit.metadata['source']}  "
                              f"(cosine {hit.vector_score:.3f})")
                    print()
        finally:
            col.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
