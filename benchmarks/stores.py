"""The embedded vector stores side by side: write, reopen, one query, peak memory.

    python benchmarks/stores.py [--points 100000,1000000] [--dim 1024]
                                [--stores qdrant-local,chroma,qdrant-edge]
                                [--batch 1000] [--queries 20] [--no-chunks]

Part 1, raw points: ``--points`` random unit vectors of ``--dim`` dimensions
(1024: Qwen3-Embedding-0.6B's size) with a small payload shaped like ours
(text, source id, content hash, record id, metadata), written in batches of
``--batch`` into each embedded store, each store in fresh processes:

- write: every batch upserted, then what the store needs to serve queries
  fast (Qdrant Edge: ``optimize()``, its HNSW and payload indexes; printed
  apart as "+ index");
- reopen: a new process opens the store on disk (until the first query can run);
- query: the first top-10 query after reopening, then (after 100 warm-up
  queries) the median wall time of ``--queries`` more, each a stored vector
  plus noise, at the stores' default search settings (which the library
  keeps), and whether its own point is in its top 10: at 100,000 points 80%
  must be (a store that answers fast but wrong fails the run), and at any
  size at some search beam below;
- search beam: for each HNSW search beam ``ef`` (the candidates a search
  keeps), and for Qdrant Edge its exact (brute-force) search, the same in a
  process of its own on points of its own: how many found their own point and
  the median time, recall against latency at this size;
- peak RSS: the process's peak resident memory (``ru_maxrss``), writing
  (the index build included) and reopening + querying;
- and, under each row, the CPU time of the same steps (all threads): on a
  loaded machine wall times grow with the load, CPU times much less.

Stores: ``qdrant-local`` is qdrant-client's local mode (``QdrantClient(path=)``,
a pure-Python stand-in that holds every point in memory and searches by brute
force); ``chroma`` is ``chromadb.PersistentClient``; ``qdrant-edge`` is Qdrant
Edge (``qdrant-edge-py``, the Qdrant engine in-process). A size whose
estimated memory (the smaller size's peak, scaled) exceeds 80% of this
machine's available memory is skipped, and the table says so.

Part 2, real chunks: this repository's README and docs ingested with the tiny
test model into each store by the command line (``qwen3-embed ingest ...
--into qdrant:|chroma:|qdrant-edge:PATH/NAME``): the ingestion, an unchanged
re-run and one search, each a whole command; every store must hold the same
number of chunks.

Targets, Qdrant Edge at 100,000 points: a query <= 5 ms, reopen <= 1 s, peak
RSS <= 2 GiB, write + index no slower than Chroma's write. Exit status 0 only
when all are met.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
STORES = ("qdrant-local", "chroma", "qdrant-edge")
LABELS = {"qdrant-local": "qdrant-client local mode (path=)", "chroma": "Chroma persistent",
          "qdrant-edge": "Qdrant Edge (qdrant-edge-py)"}
NAME = "bench"
SEED = 20
NOISE = 0.05  # query = stored vector + this much noise per component, renormalised
# Targets for Qdrant Edge at TARGET_POINTS points (issue: "an embedded Qdrant that scales").
TARGET_POINTS = 100_000
TARGET_QUERY_MS = 5.0
TARGET_REOPEN_S = 1.0
TARGET_RSS_MIB = 2048
MEMORY_SHARE = 0.8  # of MemAvailable a size may be estimated to need
# Share of queries whose own point must be in their top 10: the HNSW stores are
# approximate, and random 1024-dimensional points are their hardest case (no clusters).
MIN_FOUND = 0.8
WARM_UP = 100  # queries run after the first and before the timed ones
# HNSW's search beam (ef: the candidates a search keeps; 100 is both engines' default),
# measured after the main queries: recall against latency at each size. Qdrant Edge
# adds "exact", its brute-force search, the ground truth's cost.
SWEEP = (100, 200, 400, 800, 1600)


# -- the data: deterministic, generated batch by batch (the stream is not held) ------------

def batch_vectors(start: int, count: int, dim: int) -> np.ndarray:
    """Unit vectors ``start .. start+count-1``; the same for every store and process."""
    out = np.empty((count, dim), np.float32)
    for i in range(count):  # seeded per point: any point is rebuilt alone for its query
        out[i] = np.random.default_rng((SEED, start + i)).standard_normal(dim, np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def point_id(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-{i}"))


def payload(i: int) -> dict:
    """Shaped like the library's points: text, source, content hash, record id, metadata."""
    return {"text": f"Chunk {i} of a benchmark document about topic {i % 97}, with some words.",
            "source": f"docs/file-{i // 20}.md", "source_hash": f"{(i // 20) * 2654435761:016x}",
            "record_id": f"docs/file-{i // 20}.md#{i % 20}", "content_hash": f"{i:032x}",
            "metadata": {"chunk": i % 20, "lang": "en"}}


def batches(n: int, size: int, dim: int) -> Iterator[tuple[list[str], np.ndarray, list[dict]]]:
    for start in range(0, n, size):
        count = min(size, n - start)
        idx = range(start, start + count)
        yield [point_id(i) for i in idx], batch_vectors(start, count, dim), [payload(i)
                                                                              for i in idx]


def query_targets(n: int, q: int) -> list[int]:
    rng = np.random.default_rng(SEED + 1)
    return [int(i) for i in rng.choice(n, size=q, replace=False)]


def query_vector(i: int, dim: int) -> np.ndarray:
    v = batch_vectors(i, 1, dim)[0]
    v = v + NOISE * np.random.default_rng((SEED + 2, i)).standard_normal(dim, np.float32) / dim**0.5
    return v / np.linalg.norm(v)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- the stores: write all, then open afresh and query --------------------------------------

def chroma_client(folder: str) -> Any:  # chromadb: imported here only
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(folder, settings=Settings(anonymized_telemetry=False))


def flat(p: dict) -> dict:
    """Chroma metadata holds scalars only: the nested metadata flattened."""
    out = {k: v for k, v in p.items() if k not in ("metadata", "text")}
    out.update({f"metadata.{k}": v for k, v in p["metadata"].items()})
    return out


def write(store: str, folder: str, n: int, dim: int, size: int) -> dict:
    out: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if store == "qdrant-local":
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=folder)
        client.create_collection(NAME, vectors_config=models.VectorParams(
            size=dim, distance=models.Distance.COSINE))
        for ids, vecs, pays in batches(n, size, dim):
            client.upsert(NAME, points=[models.PointStruct(id=i, vector=v.tolist(), payload=p)
                                        for i, v, p in zip(ids, vecs, pays, strict=True)])
        client.close()
        out["write_s"], out["write_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    elif store == "chroma":
        col = chroma_client(folder).create_collection(NAME, configuration={"hnsw": {
            "space": "cosine"}}, embedding_function=None)
        for ids, vecs, pays in batches(n, size, dim):
            col.upsert(ids=ids, embeddings=vecs, metadatas=[flat(p) for p in pays],
                       documents=[p["text"] for p in pays])
        out["write_s"], out["write_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    else:
        import qdrant_edge as qe

        shard = qe.EdgeShard.create(folder, qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)))
        for field in ("source", "record_id"):  # what a sync filters on
            shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))
        for ids, vecs, pays in batches(n, size, dim):
            shard.update(qe.UpdateOperation.upsert_points(
                [qe.Point(id=i, vector=v.tolist(), payload=p)
                 for i, v, p in zip(ids, vecs, pays, strict=True)]))
        out["write_s"], out["write_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        t1, c1 = time.perf_counter(), time.process_time()
        shard.optimize()
        shard.flush()
        out["index_s"], out["index_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
        info = shard.info()
        out.update(points=info.points_count, indexed=info.indexed_vectors_count,
                   segments=info.segments_count)
        shard.close()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def _timed(top10: Any, targets: list[int], queries: list[list[float]]) -> dict:
    """Each query once: median wall and CPU time, and how many found their own point."""
    times, cpu, top1, found = [], [], 0, 0
    for i, v in zip(targets, queries, strict=True):
        t, c = time.perf_counter(), time.process_time()
        ids = top10(v)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        top1 += ids[:1] == [point_id(i)]
        found += point_id(i) in ids
    return {"query_ms": 1000 * statistics.median(times),
            "query_cpu_ms": 1000 * statistics.median(cpu), "top1": top1, "found": found}


def beams(store: str) -> list[int | str]:
    """The search beams measured for ``store`` (none for the brute-force local mode)."""
    return [*SWEEP, "exact"] if store == "qdrant-edge" else [*SWEEP] if store == "chroma" else []


def read(store: str, folder: str, n: int, dim: int, q: int, beam: int = -1) -> dict:
    """In a fresh process: open the store, warm it up, time ``q`` queries.

    ``beam``: -1 for the store's default search settings, else the index in
    :func:`beams` of the beam to search with. Each gets points of its own: a
    query repeated in another run would find its path already paged in.
    """
    every = beams(store)
    picked = query_targets(n, min(n, WARM_UP + q * (1 + len(every))))
    warm = [query_vector(i, dim).tolist() for i in picked[q : q + WARM_UP]]
    targets = picked[:q] if beam < 0 else picked[q + WARM_UP + beam * q :][:q]
    if len(targets) < q:  # a collection too small for points of its own
        return {}
    queries = [query_vector(i, dim).tolist() for i in targets]
    ef = None if beam < 0 else every[beam]
    t0, c0 = time.perf_counter(), time.process_time()
    if store == "qdrant-local":
        from qdrant_client import QdrantClient

        client = QdrantClient(path=folder)
        count = client.count(NAME, exact=True).count

        def top10(v: list[float]) -> list[str]:
            return [str(p.id) for p in client.query_points(NAME, query=v, limit=10).points]
    elif store == "chroma":
        col = chroma_client(folder).get_collection(NAME, embedding_function=None)
        if ef is not None:  # ef_search is read when the index loads: set it, then reopen
            from chromadb.api.client import SharedSystemClient

            col.modify(configuration={"hnsw": {"ef_search": ef}})
            SharedSystemClient.clear_system_cache()
            col = chroma_client(folder).get_collection(NAME, embedding_function=None)
        count = col.count()

        def top10(v: list[float]) -> list[str]:
            return col.query(query_embeddings=[v], n_results=10, include=[])["ids"][0]
    else:
        import qdrant_edge as qe

        shard = qe.EdgeShard.load(folder)
        count = shard.info().points_count
        # None: what EdgeCollection.search uses by default, Qdrant's own (ef_construct, 100)
        params = None if ef is None else qe.SearchParams(exact=True) if ef == "exact" \
            else qe.SearchParams(hnsw_ef=ef)

        def top10(v: list[float]) -> list[str]:
            return [str(p.id) for p in shard.query(qe.QueryRequest(
                limit=10, query=qe.Query.Nearest(v), with_payload=True, params=params))]
    reopen, reopen_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    top10(queries[0])
    first = time.perf_counter() - t0
    for v in warm:  # other points: pages in what queries touch
        top10(v)
    return {"reopen_s": reopen, "reopen_cpu_s": reopen_cpu, "first_query_ms": 1000 * first,
            "count": count, **_timed(top10, targets, queries), "peak_rss_mib": peak_rss_mib()}


def _child(args: list[str]) -> dict:
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{args[:3]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(store: str, n: int, args: argparse.Namespace, scratch: str) -> dict:
    folder = tempfile.mkdtemp(prefix=f"{store}-{n}-", dir=scratch)
    try:
        row = _child(["write", store, folder, str(n), str(args.dim), str(args.batch)])
        reading = [str(n), str(args.dim), str(args.queries)]
        got = _child(["read", store, folder, *reading])
        row.update({k: v for k, v in got.items() if k != "peak_rss_mib"},
                   write_rss_mib=row.pop("peak_rss_mib"), read_rss_mib=got["peak_rss_mib"])
        sweep = {}
        for k, ef in enumerate(beams(store)):  # each in a process of its own, as above
            got = _child(["read", store, folder, *reading, str(k)])
            if got:
                sweep[str(ef)] = [got["found"], round(got["query_ms"], 2)]
        if sweep:
            row["sweep"] = sweep
        row["disk_mib"] = sum(f.stat().st_size for f in Path(folder).rglob("*")
                              if f.is_file()) / 2**20
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write(row: dict, kind: str) -> str:
    text = f"{row['write' + kind + '_s']:.1f} s"
    return text + (f" + {row['index' + kind + '_s']:.1f} s" if "index_s" in row else "")


def available_mib() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 1024


def raw_table(args: argparse.Namespace, scratch: str) -> tuple[dict, bool]:
    sizes = sorted(int(s) for s in args.points.split(","))
    stores = [s for s in args.stores.split(",") if s]
    rows: dict[tuple[str, int], dict] = {}
    for store in stores:
        for n in sizes:
            smaller = [m for m in sizes if m < n and (store, m) in rows and "skipped" not in
                       rows[store, m]]
            if smaller:  # memory grows with the points: scale the largest measured size
                m = smaller[-1]
                need = max(rows[store, m]["write_rss_mib"], rows[store, m]["read_rss_mib"])
                need *= n / m
                if need > MEMORY_SHARE * available_mib():
                    rows[store, n] = {"skipped": f"needs ~{need / 1024:.0f} GiB (scaled from "
                                      f"{m:,} points), {available_mib() / 1024:.0f} GiB "
                                      "available"}
                    print(f"{store} at {n:,}: skipped, {rows[store, n]['skipped']}", flush=True)
                    continue
            print(f"{store} at {n:,} x {args.dim} ...", flush=True)
            rows[store, n] = measure(store, n, args, scratch)
            print("   ", json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                     for k, v in rows[store, n].items()}), flush=True)

    print(f"\n{'embedded store':34}{'points':>10}{'write (+ index)':>20}{'reopen':>9}"
          f"{'1st query':>11}{'query top10':>13}{'found':>7}{'peak RSS write/read':>22}"
          f"{'disk':>10}")
    ok = True
    for (store, n), row in rows.items():
        if "skipped" in row:
            print(f"{LABELS[store]:34}{n:>10,}   skipped: {row['skipped']}")
            continue
        print(f"{LABELS[store]:34}{n:>10,}{_write(row, ''):>20}{row['reopen_s']:>7.2f} s"
              f"{row['first_query_ms']:>8.1f} ms{row['query_ms']:>10.1f} ms"
              f"{row['found']:>4}/{args.queries:<2}"
              f"{row['write_rss_mib']:>11,.0f} /{row['read_rss_mib']:>6,.0f} MiB"
              f"{row['disk_mib']:>7,.0f} MiB")
        print(f"{'  CPU time (all threads)':34}{'':>10}{_write(row, '_cpu'):>20}"
              f"{row['reopen_cpu_s']:>7.2f} s{'':>11}{row['query_cpu_ms']:>10.1f} ms")
        if "sweep" in row:
            print(f"{'  found, query by search beam ef':34}{'':>10}   " + ",  ".join(
                f"{ef}: {found}/{args.queries} {ms:,.1f} ms"
                for ef, (found, ms) in row["sweep"].items()))
        enough = [ef for ef, (found, _) in row.get("sweep", {}).items()
                  if found >= MIN_FOUND * args.queries]
        if row["count"] != n or (row["found"] < MIN_FOUND * args.queries and (
                n == TARGET_POINTS or not enough)):
            ok = False
            print(f"  FAIL {store} at {n:,}: {row['count']:,} points stored, "
                  f"{row['found']} of {args.queries} queries found their own point"
                  + ("" if enough else " (and no search beam found enough)"))
        elif row["found"] < MIN_FOUND * args.queries:
            print(f"  NOTE {store} at {n:,}: at the default beam {row['found']} of "
                  f"{args.queries} found their own point; ef={enough[0]} finds enough")
    print("write: all batches upserted (+ Qdrant Edge's optimize(): HNSW and payload indexes);"
          " reopen: a new process opens it;\n1st query: the first after reopening; query: "
          f"median of {args.queries} top-10 queries after {WARM_UP} others;\nfound: how many "
          f"found their own point in their top 10 ({MIN_FOUND:.0%} must at {TARGET_POINTS:,});\n"
          "peak RSS: ru_maxrss of each process (file-backed "
          "pages of memory-mapped files included). Load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: wall times grow with the load, "
          "CPU times much less.")
    edge, chroma = rows.get(("qdrant-edge", TARGET_POINTS)), rows.get(("chroma", TARGET_POINTS))
    if edge and "skipped" not in edge:
        total = edge["write_s"] + edge["index_s"]
        rss = max(edge["write_rss_mib"], edge["read_rss_mib"])
        checks = [(f"query {edge['query_ms']:.2f} ms <= {TARGET_QUERY_MS:g} ms",
                   edge["query_ms"] <= TARGET_QUERY_MS),
                  (f"reopen {edge['reopen_s']:.2f} s <= {TARGET_REOPEN_S:g} s",
                   edge["reopen_s"] <= TARGET_REOPEN_S),
                  (f"peak RSS {rss:,.0f} MiB <= {TARGET_RSS_MIB:,} MiB", rss <= TARGET_RSS_MIB)]
        if chroma and "skipped" not in chroma:
            checks.append((f"write + index {total:.1f} s <= Chroma's write "
                           f"{chroma['write_s']:.1f} s", total <= chroma["write_s"]))
        for text, good in checks:
            print(f"{'PASS' if good else 'FAIL'} Qdrant Edge at {TARGET_POINTS:,}: {text}")
            ok &= good
    return rows, ok


# -- part 2: real chunks, tiny model, through the command line's store URIs ---------------

def chunk_ingest(args: argparse.Namespace, scratch: str) -> bool:
    """``qwen3-embed ingest README.md docs --into URI`` (tiny model) into each store."""
    from qwen3_embed_core.testing import cached_tiny_model

    model = str(cached_tiny_model())
    print(f"\nreal chunks: qwen3-embed ingest README.md docs/ --into KIND:PATH/NAME, tiny model "
          f"{Path(model).name}, then the same again (unchanged: nothing embedded), then a search:")
    schemes = {"qdrant-local": "qdrant", "chroma": "chroma", "qdrant-edge": "qdrant-edge"}
    corpus = Path(scratch) / "corpus"  # a copy: every store ingests the same text
    shutil.copytree(HERE.parent / "docs", corpus / "docs")
    shutil.copy(HERE.parent / "README.md", corpus / "README.md")
    rows = {}
    for store in [s for s in args.stores.split(",") if s]:
        folder = tempfile.mkdtemp(prefix=f"chunks-{store}-", dir=scratch)
        try:
            rows[store] = _child(["chunks", schemes[store], folder, model, str(corpus)])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    counts = {row["points"] for row in rows.values()}
    ok = len(counts) == 1 and all(r["hits"] > 0 for r in rows.values())
    print(f"  {'store':34}{'points':>8}{'ingest':>10}{'re-run':>9}{'search':>9}{'peak RSS':>11}")
    for store, row in rows.items():
        print(f"  {LABELS[store]:34}{row['points']:>8,}{row['ingest_s']:>8.1f} s"
              f"{row['rerun_s']:>7.1f} s{row['search_s']:>7.1f} s{row['peak_rss_mib']:>7,.0f} MiB")
    if not ok:
        print(f"  FAIL: the stores hold different point counts or found nothing: {rows}")
    print("  (each a whole command: process start, model load, chunking, embedding, writing,"
          " and Qdrant Edge's index build; peak RSS of the ingest command)")
    return ok


def chunks(scheme: str, folder: str, model: str, corpus: str) -> dict:
    """In a fresh process: the CLI on the repository's docs, timed, and the store counted."""
    from qwen3_embed_core.stores import open_collection

    cli = [sys.executable, "-m", "qwen3_embed_cli"]
    uri = f"{scheme}:{folder}/{NAME}"
    files = [str(Path(corpus) / "README.md"), str(Path(corpus) / "docs")]

    def run(*argv: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        done = subprocess.run([*cli, *argv], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{argv[:1]} into {uri} failed:\n{done.stderr[-3000:]}")
        return time.perf_counter() - t0, done.stdout

    ingest_s, _ = run("ingest", *files, "--into", uri, "--model", model)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rerun_s, _ = run("ingest", *files, "--into", uri, "--model", model)
    search_s, out = run("search", "how do I ingest a folder into a store?", "--in", uri,
                        "--limit", "5")
    col = open_collection(uri)
    try:
        points = col.count()
    finally:
        col.close()
    return {"points": points, "ingest_s": ingest_s, "rerun_s": rerun_s, "search_s": search_s,
            "hits": sum(1 for line in out.splitlines() if line.strip()), "peak_rss_mib": rss}


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("qdrant-client", "chromadb", "qdrant-edge-py"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} missing")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default=f"{TARGET_POINTS},1000000",
                        help="comma-separated collection sizes")
    parser.add_argument("--dim", type=int, default=1024, help="vector dimensions")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated")
    parser.add_argument("--batch", type=int, default=1000, help="points per write")
    parser.add_argument("--queries", type=int, default=20, help="queries timed (median)")
    parser.add_argument("--no-chunks", action="store_true", help="skip part 2")
    parser.add_argument("--no-raw", action="store_true", help="skip part 1")
    parser.add_argument("--scratch", help="folder for the stores (default: a temp folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        what, store, folder, *rest = args.child
        if what == "write":
            out = write(store, folder, *(int(x) for x in rest))
        elif what == "read":
            out = read(store, folder, *(int(x) for x in rest))
        else:
            out = chunks(store, folder, *rest)
        print(json.dumps(out))
        return 0
    unknown = set(args.stores.split(",")) - set(STORES) - {""}
    if unknown:
        parser.error(f"unknown store(s) {sorted(unknown)}; choose from {', '.join(STORES)}")
    print(f"embedded stores, {args.dim}-dimensional points in batches of {args.batch}, "
          f"{os.cpu_count()} CPUs, {available_mib() / 1024:.0f} GiB available; " + versions())
    scratch = tempfile.mkdtemp(prefix="qwen3-stores-", dir=args.scratch)
    try:
        ok = True
        if not args.no_raw:
            ok &= raw_table(args, scratch)[1]
        if not args.no_chunks:
            ok &= chunk_ingest(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
