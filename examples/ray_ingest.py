"""Embed a folder with Ray Data and write it into Qdrant, then run it again: nothing re-embedded.

    python examples/ray_ingest.py [--model PATH_OR_VARIANT] [--actors 1] [--store FOLDER]
                                  [--docs FOLDER]

Starts a local Ray cluster (or joins ``$RAY_ADDRESS``), reads the Markdown
files of ``examples/docs`` as a dataset (one row per file, with its name),
cuts them into token chunks on the actors, embeds them (one model per actor)
and writes them into an embedded Qdrant store through its writer actor. The
second pass over the same files finds every chunk stored and embeds nothing.
Runs offline: without ``--model`` it uses the tiny random-weight test model
(its rankings are meaningless; the pipeline is the same).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import ray
from qdrant_client import QdrantClient

from qwen3_embed_core import Qwen3Embedder
from qwen3_embed_core.testing import cached_tiny_model
from qwen3_embed_qdrant import search
from qwen3_embed_ray import ingest_dataset

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF path or variant (default: the tiny test model)")
    parser.add_argument("--actors", type=int, default=1,
                        help="embedding actors of one CPU each (default 1: on a 2-CPU machine "
                             "the other CPU reads the files)")
    parser.add_argument("--docs", default=str(HERE / "docs"), help="folder of .md files")
    parser.add_argument("--store", help="Qdrant folder (default: a temporary one)")
    args = parser.parse_args()
    model = args.model or str(cached_tiny_model())
    store = args.store or tempfile.mkdtemp(prefix="qwen3-ray-")
    uri = f"qdrant:{store}/docs"

    ray.init(logging_level=logging.WARNING)  # $RAY_ADDRESS if set, else a local cluster
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        files = sorted(str(p) for p in Path(args.docs).glob("*.md"))
        # One record per file (read by the workers): its name is its id and its source.
        ds = ray.data.read_binary_files(files, include_paths=True).map(
            lambda row: {"id": Path(row["path"]).name, "source": Path(row["path"]).name,
                         "text": row["bytes"].decode("utf-8")})
        for attempt in ("first pass", "second pass"):
            report = ingest_dataset(ds, uri, model=model, chunk_tokens=128, overlap_tokens=16,
                                    cleanup="incremental", actors=args.actors, batch_size=16)
            print(f"{attempt}: {report.summary()}")
    finally:
        ray.shutdown()

    client = QdrantClient(path=store)
    with Qwen3Embedder.local(model) as emb:
        for hit in search(client, "docs", emb, "What is the capital of France?", limit=3):
            print(f"  {hit.score:.3f}  {hit.record_id}")
    client.close()
    print(f"store: {store}")


if __name__ == "__main__":
    main()
