"""Ingestion: memory over a long stream, what the store adds, and sync re-runs.

    python benchmarks/ingest.py [--records 100000] [--model tiny|real-shape|PATH]
                                [--stores qdrant,chroma] [--batch-size 64] [--threads N]
    python benchmarks/ingest.py --sync [--chunks 100000] [--stores qdrant,chroma]

``--sync``: a folder of files making ``--chunks`` chunks is ingested as
``qwen3-embed ingest`` does (the core's file sources and sync, incremental
cleanup), then ingested again unchanged, then again with 1% of its files
edited; prints each run's time against the first ingestion's. Target: the
unchanged re-run takes at most 10% of the first ingestion's time.

Prints, in one run, side by side for each store (embedded Qdrant at
``QdrantClient(path=...)``, persistent Chroma):

1. peak RSS growth while ingesting a generated stream of ``--records``
   records, relative to the process just before the stream starts (model
   loaded, store open): the stream is a generator, so a flat figure means
   ingestion holds one batch, not the stream; target 200 MiB;
2. wall time of the ingestion next to the time to embed the same texts with
   no store at all (``Qwen3Embedder.embed_documents`` in the same batches),
   and a re-run over the same stream (everything skipped: lookups only).

Each measurement runs in a fresh process. ``--model`` defaults to the tiny
test model; ``real-shape`` is Qwen3-Embedding-0.6B's shape with random weights
(benchmarks/common.py), or pass a GGUF path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_MIB = 200  # peak RSS growth allowed for the whole stream
TARGET_OVERHEAD = 0.10  # what a store may add to the pure embedding time
TARGET_RERUN = 0.10  # an unchanged re-run's time, as a share of the first ingestion's
SYNC_FILE_CHUNKS = 50  # chunks per file in --sync's corpus
SYNC_CHUNK_TOKENS = 32
WORDS = ("retrieval embedding vector query document passage answer capital France "
         "photosynthesis energy database index cell mitochondria river mountain city").split()


def records(n: int) -> Iterator[dict]:
    """A deterministic stream of records of 12 to 40 words, generated lazily."""
    for i in range(n):
        k = 12 + (i * 7) % 29
        words = [WORDS[(i * 31 + j * 17) % len(WORDS)] for j in range(k)]
        yield {"id": f"rec-{i}", "text": f"Record {i}: " + " ".join(words) + ".",
               "metadata": {"i": i, "group": i % 100}}


class PeakRSS:
    """Samples this process's RSS every 20 ms in a thread; ``peak`` in bytes."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start = self._proc.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def stop(self) -> float:
        """Growth over the start, in MiB."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        return (self.peak - self.start) / 2**20


def child(what: str, n: int, model: str, batch: int, threads: int | None, folder: str) -> dict:
    """One measurement, in this (fresh) process."""
    from qwen3_embed_core import Qwen3Embedder

    emb = Qwen3Embedder.local(model, n_threads=threads)
    emb.embed_documents(["warm up"])
    out: dict = {"what": what, "records": n}
    if what.endswith("-open"):  # the finished store's own footprint, opened afresh
        import chromadb
        from chromadb.config import Settings
        from qdrant_client import QdrantClient

        import qwen3_embed_chroma
        import qwen3_embed_qdrant

        meter = PeakRSS()  # after the imports: what the data costs, not the code
        if what == "qdrant-open":
            client = QdrantClient(path=folder)
            qwen3_embed_qdrant.search(client, "bench", emb, "query", limit=5)
        else:
            settings = Settings(anonymized_telemetry=False)
            ef = qwen3_embed_chroma.Qwen3EmbeddingFunction(model_path=model)
            ef._embedder = emb  # the model loaded above: count the store, not a second model
            col = chromadb.PersistentClient(folder, settings=settings).get_collection(
                "bench", embedding_function=ef)
            qwen3_embed_chroma.search(col, "query", limit=5)
        out.update(rss_growth_mib=meter.stop())
        return out
    if what == "embed":
        meter, t0 = PeakRSS(), time.perf_counter()
        chunk: list[str] = []
        for rec in records(n):
            chunk.append(rec["text"])
            if len(chunk) == batch:
                emb.embed_documents(chunk)
                chunk = []
        if chunk:
            emb.embed_documents(chunk)
        out.update(seconds=time.perf_counter() - t0, rss_growth_mib=meter.stop())
        return out
    if what == "qdrant":
        from qdrant_client import QdrantClient

        from qwen3_embed_qdrant import ingest

        client = QdrantClient(path=folder)

        def run() -> object:
            return ingest(client, "bench", emb, records(n), batch)
    else:
        import chromadb
        from chromadb.config import Settings

        from qwen3_embed_chroma import Qwen3EmbeddingFunction, ingest

        chroma = chromadb.PersistentClient(folder, settings=Settings(anonymized_telemetry=False))
        ef = Qwen3EmbeddingFunction(model_path=model)
        ef._embedder = emb  # the model already loaded above: same vectors, no second copy
        col = chroma.create_collection("bench", embedding_function=ef)

        def run() -> object:
            return ingest(col, records(n), batch_size=batch)

    meter, t0 = PeakRSS(), time.perf_counter()
    report = run()
    out.update(seconds=time.perf_counter() - t0, rss_growth_mib=meter.stop(),
               embedded=report.embedded, written=report.written)
    meter, t0 = PeakRSS(), time.perf_counter()
    again = run()  # the store is full now: what ingest itself holds, beyond the store
    out.update(rerun_seconds=time.perf_counter() - t0, rerun_skipped=again.skipped,
               rerun_growth_mib=meter.stop())
    return out


def write_corpus(folder: Path, chunks: int, count_tokens: object) -> int:
    """Files of about SYNC_FILE_CHUNKS chunks each, ``chunks`` in all; returns the file count."""
    files = max(1, chunks // SYNC_FILE_CHUNKS)
    sample = " ".join(f"{w}{i % 97}" for i, w in enumerate(WORDS * 10))
    per_word = count_tokens(sample) / len(WORDS * 10)  # type: ignore[operator]
    words_per_chunk = max(1, int((SYNC_CHUNK_TOKENS - 2) / per_word))  # EOS aside
    for f in range(files):
        words = [f"{WORDS[(f * 13 + j * 7) % len(WORDS)]}{(f + j) % 97}"
                 for j in range(SYNC_FILE_CHUNKS * words_per_chunk)]
        (folder / f"doc{f:05d}.md").write_text(" ".join(words), encoding="utf-8")
    return files


def sync_child(chunks: int, model: str, store: str, batch: int, threads: int | None,
               folder: str) -> dict:
    """First ingestion, unchanged re-run, 1%-edited re-run of a folder (in this process)."""
    from qwen3_embed_core import Qwen3Embedder
    from qwen3_embed_core.adapters import Chunker, Inputs, embedder_profile, file_sources, sync
    from qwen3_embed_core.stores import open_collection

    emb = Qwen3Embedder.local(model, n_threads=threads)
    docs = Path(folder) / "docs"
    docs.mkdir()
    files = write_corpus(docs, chunks, emb.count_tokens)
    uri = f"{store}:{folder}/db/bench"

    def run() -> tuple[float, object]:
        t0 = time.perf_counter()
        col = open_collection(uri, create=True)  # reopened each run, as the CLI does
        try:
            col.ensure(embedder_profile(emb))
            chunker = Chunker.of(emb, SYNC_CHUNK_TOKENS, 0)
            report = sync(col, file_sources([docs], chunker, Inputs()),
                          embed=emb.embed_documents, cleanup="incremental", batch_size=batch)
        finally:
            col.close()
        return time.perf_counter() - t0, report

    first, r1 = run()
    unchanged, r2 = run()
    edited_files = sorted(docs.iterdir())[:: max(1, files // max(1, files // 100))][: max(
        1, files // 100)]
    for path in edited_files:  # 1% of the sources: a word changed in every chunk's span
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("0 ", "0x ", SYNC_FILE_CHUNKS), encoding="utf-8")
    edited, r3 = run()
    return {"store": store, "files": files, "chunks": r1.written, "first": first,  # type: ignore[attr-defined]
            "unchanged": unchanged, "edited": edited, "edited_files": len(edited_files),
            "unchanged_embedded": r2.embedded, "unchanged_sources": r2.unchanged_sources,  # type: ignore[attr-defined]
            "edited_embedded": r3.embedded, "edited_deleted": r3.deleted}  # type: ignore[attr-defined]


def sync_main(args: argparse.Namespace, model: str) -> int:
    print(f"sync re-runs over a {args.chunks:,}-chunk folder ({SYNC_FILE_CHUNKS} chunks a "
          f"file, {SYNC_CHUNK_TOKENS} tokens a chunk), batch {args.batch_size}, model "
          f"{Path(model).name}")
    ok = True
    print(f"\n{'':26}{'first':>10}{'unchanged':>12}{'share':>8}{'1% edited':>12}{'share':>8}")
    for store in [s for s in args.stores.split(",") if s]:
        with tempfile.TemporaryDirectory(prefix=f"qwen3-sync-{store}-") as folder:
            cmd = [sys.executable, __file__, "--child", f"sync-{store}", "--chunks",
                   str(args.chunks), "--model", model, "--batch-size", str(args.batch_size),
                   "--folder", folder, *(["--threads", str(args.threads)] if args.threads
                                         else [])]
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
            if done.returncode != 0:
                raise SystemExit(f"{store} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
        share, eshare = row["unchanged"] / row["first"], row["edited"] / row["first"]
        name = {"qdrant": "Qdrant, embedded (path=)", "chroma": "Chroma, persistent"}.get(
            store, store)
        print(f"{name:26}{row['first']:>8.1f} s{row['unchanged']:>10.1f} s{share:>8.1%}"
              f"{row['edited']:>10.1f} s{eshare:>8.1%}")
        print(f"{'':26}{row['chunks']:,} chunks in {row['files']:,} files; unchanged re-run: "
              f"{row['unchanged_sources']:,} sources recognised, {row['unchanged_embedded']} "
              f"embedded; edited: {row['edited_files']} files, {row['edited_embedded']} chunks "
              f"embedded, {row['edited_deleted']} deleted")
        assert row["unchanged_embedded"] == 0 and row["unchanged_sources"] == row["files"], row
        ok &= share <= TARGET_RERUN
    verdict = "within" if ok else "OVER"
    print(f"\nunchanged re-run vs first ingestion: {verdict} the {TARGET_RERUN:.0%} target.")
    return 0 if ok else 1


def _run_child(what: str, args: argparse.Namespace, model: str, folder: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--records", str(args.records),
           "--model", model, "--batch-size", str(args.batch_size), "--folder", folder]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(what: str, args: argparse.Namespace, model: str) -> dict:
    """Ingest in one process, then open the finished store in another (its own footprint)."""
    with tempfile.TemporaryDirectory(prefix=f"qwen3-bench-{what}-") as folder:
        row = _run_child(what, args, model, folder)
        if what != "embed":
            row["store_mib"] = _run_child(f"{what}-open", args, model, folder)["rss_growth_mib"]
        return row


def resolve(model: str) -> str:
    if model == "tiny":
        from qwen3_embed_core.testing import cached_tiny_model

        return str(cached_tiny_model())
    if model == "real-shape":
        sys.path.insert(0, str(HERE))
        from common import real_shape_model

        return str(real_shape_model())
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records in the stream")
    parser.add_argument("--model", default="tiny", help="tiny, real-shape or a GGUF path")
    parser.add_argument("--stores", default="qdrant,chroma", help="comma-separated")
    parser.add_argument("--batch-size", type=int, default=64, help="records per batch")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: cores)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the embedding-only run (memory figures only)")
    parser.add_argument("--parallel", action="store_true",
                        help="measure the stores at the same time (use with --threads 1)")
    parser.add_argument("--sync", action="store_true",
                        help="measure sync re-runs (unchanged, 1%% edited) instead")
    parser.add_argument("--chunks", type=int, default=100_000, help="--sync: chunks in all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child and args.child.startswith("sync-"):
        print(json.dumps(sync_child(args.chunks, args.model, args.child[5:], args.batch_size,
                                    args.threads, args.folder)))
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.records, args.model, args.batch_size,
                               args.threads, args.folder)))
        return 0

    model = resolve(args.model)
    if args.sync:
        return sync_main(args, model)
    print(f"ingestion of a {args.records:,}-record stream, batch {args.batch_size}, "
          f"model {Path(model).name}")
    stores = [s for s in args.stores.split(",") if s]
    base = None if args.no_baseline else measure("embed", args, model)
    with ThreadPoolExecutor(max_workers=len(stores) if args.parallel else 1) as pool:
        # Each measurement is its own process: in parallel they share only the machine.
        rows = ([base] if base else []) + list(pool.map(lambda s: measure(s, args, model), stores))
    print(f"\n{'':26}{'peak RSS growth':>16}{'store alone':>13}{'time':>9}"
          f"{'vs embedding':>14}{'re-run: time':>14}{'growth':>11}")
    for row in rows:
        name = {"embed": "embedding only (no store)", "qdrant": "Qdrant, embedded (path=)",
                "chroma": "Chroma, persistent"}[row["what"]]
        ratio = f"{row['seconds'] / base['seconds']:.2f}x" if base else "-"
        store = f"{row['store_mib']:.1f} MiB" if "store_mib" in row else ""
        rerun = f"{row['rerun_seconds']:.1f} s" if "rerun_seconds" in row else ""
        regrow = f"{row['rerun_growth_mib']:.1f} MiB" if "rerun_growth_mib" in row else ""
        print(f"{name:26}{row['rss_growth_mib']:>12.1f} MiB{store:>13}{row['seconds']:>7.1f} s"
              f"{ratio:>14}{rerun:>14}{regrow:>11}")
    worst = max(r["rss_growth_mib"] for r in rows)
    verdict = "within" if worst <= TARGET_MIB else "OVER"
    print(f"\npeak RSS growth {worst:.1f} MiB: {verdict} the {TARGET_MIB} MiB target.\n"
          "store alone: the finished store opened afresh in a new process and searched once\n"
          "(embedded Qdrant keeps every point in memory by design: that part grows with the\n"
          "collection, not with the stream). re-run: the same stream again over the full store\n"
          "(all skipped): its growth is what ingestion holds beyond the store.")
    for row in rows:
        if row["what"] != "embed":
            assert row["embedded"] == row["written"] == args.records == row["rerun_skipped"], row
    ok = worst <= TARGET_MIB
    if base:
        over = max(r["seconds"] / base["seconds"] for r in rows) - 1
        ok &= over < TARGET_OVERHEAD
        verdict = "within" if over < TARGET_OVERHEAD else "OVER"
        print(f"ingestion adds at most {over:.1%} to the embedding time: {verdict} the "
              f"{TARGET_OVERHEAD:.0%} target (meaningful with the real-shape model, where "
              "embedding dominates).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
