"""The main job: embed a folder of documents into a store and answer queries.

    python examples/demo.py [--model PATH_OR_VARIANT] [--docs FOLDER] [--store FOLDER]

The store is an embedded Qdrant database on disk (a temporary folder unless
``--store`` names one; run it twice on the same folder and nothing is
embedded again).

Uses a real Qwen3-Embedding GGUF when one is available locally (``--model``,
``$QWEN3_EMBED_MODEL``, or any variant already in the Hugging Face cache) and
otherwise the tiny random-weight test model, whose rankings are meaningless.
Never touches the network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from qdrant_client import QdrantClient

from qwen3_embed_core import VARIANTS, ModelNotFoundError, Qwen3Embedder, resolve_model
from qwen3_embed_qdrant import ingest, search

HERE = Path(__file__).resolve().parent
QUERIES = [
    "What is the capital of France?",
    "How do plants turn sunlight into food?",
    "Which index makes nearest-neighbour search fast?",
    "Why does coffee keep me awake?",
]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF path, variant name (0.6B-Q8_0) or Model Runner tag")
    parser.add_argument("--docs", type=Path, default=HERE / "docs", help="folder of .md/.txt files")
    parser.add_argument("--store", type=Path, help="Qdrant folder to keep (default: temporary)")
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
        store = args.store or Path(tmp)
        client = QdrantClient(path=str(store))  # embedded Qdrant: no server
        try:
            report = ingest(client, "demo", emb, records)
            print(f"embedded {report.embedded} documents from {args.docs} into Qdrant at {store} "
                  f"({emb.dimensions} dimensions; {report.skipped} already there)\n")
            for query in QUERIES:
                print(f"Q: {query}")
                for rank, hit in enumerate(search(client, "demo", emb, query, limit=3), start=1):
                    print(f"   {rank}. {hit.score:.3f}  {hit.metadata['source']}")
                print()
        finally:
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
