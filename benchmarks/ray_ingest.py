"""Ray Data ingestion against single-process ``ingest``: records/s and memory per actor.

    python benchmarks/ray_ingest.py [--records 320] [--model real-shape|tiny|PATH]
                                    [--batch-size 32] [--threads 1]

The same generated stream (benchmarks/ingest.py's records) goes into a fresh
embedded Qdrant store three ways, each model copy with ``--threads`` llama.cpp
threads (default 1: on a shared 2-core machine two threads spin-wait on each
other and run several times slower, which would measure the machine, not Ray):

1. ``qwen3_embed_qdrant.ingest`` in one process;
2. ``qwen3_embed_ray.ingest_dataset`` with 1 actor (``num_cpus=threads``);
3. the same with 2 actors: twice the cores, as a second node would add.

Each figure is end to end (model loads, actor start-up, the store's writes),
on a local cluster started once (its start-up is printed apart). Peak memory
per actor is the largest RSS of each embedding actor's process, sampled every
50 ms. ``--model`` defaults to Qwen3-Embedding-0.6B's shape in Q8_0 with random
weights (benchmarks/common.py), where embedding dominates as with the real model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ingest import records  # noqa: E402  (the same stream as the ingestion benchmark)

# Ray on one machine may cost this much against one process (start-up, transfers).
TARGET_ONE_ACTOR = 0.75
# Two actors on twice the cores: the second copy of the model should add most of its rate.
TARGET_TWO_ACTORS = 1.5


def single(n: int, model: str, batch: int, cpus: int, folder: str) -> dict:
    """Child process: plain ingest() into an embedded store; seconds from process start."""
    from qdrant_client import QdrantClient

    from qwen3_embed_core import Qwen3Embedder
    from qwen3_embed_qdrant import ingest

    t0 = time.perf_counter()
    emb = Qwen3Embedder.local(model, n_threads=cpus)
    client = QdrantClient(path=folder)
    report = ingest(client, "bench", emb, records(n), batch_size=batch)
    client.close()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": seconds, "written": report.written, "peak_mib": peak}


class ActorMemory:
    """Largest RSS per embedding actor process (Ray titles them ray::MapWorker(...))."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.05):
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                title = " ".join(proc.info["cmdline"] or ())
                if "MapWorker" in title and proc.info["memory_info"] is not None:
                    rss = proc.info["memory_info"].rss
                    self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return sorted(v / 2**20 for v in self.peak.values())


def on_ray(n: int, model: str, batch: int, threads: int, actors: int) -> dict:
    import ray

    from qwen3_embed_ray import ingest_dataset

    ds = ray.data.from_items(list(records(n)))
    with tempfile.TemporaryDirectory(prefix="qwen3-ray-bench-") as folder:
        memory = ActorMemory()
        t0 = time.perf_counter()
        report = ingest_dataset(ds, f"qdrant:{folder}/bench", model=model, actors=actors,
                                num_cpus=threads, batch_size=batch)
        seconds = time.perf_counter() - t0
        peaks = memory.stop()[-actors:]  # the pool's actors (a worker Ray pre-started is small)
    return {"seconds": seconds, "written": report.written, "actor_peaks_mib": peaks}


def resolve(model: str) -> str:
    if model == "tiny":
        from qwen3_embed_core.testing import cached_tiny_model

        return str(cached_tiny_model())
    if model == "real-shape":
        from common import real_shape_model

        return str(real_shape_model("Q8_0"))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=320, help="records in the stream")
    parser.add_argument("--model", default="real-shape", help="real-shape, tiny or a GGUF path")
    parser.add_argument("--batch-size", type=int, default=32, help="records per batch")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads per model copy (one process or actor)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model = resolve(args.model)
    if args.child:
        print(json.dumps(single(args.records, model, args.batch_size, args.threads,
                                args.folder)))
        return 0

    print(f"{args.records:,} records, batch {args.batch_size}, {args.threads} thread(s) per "
          f"model copy, {os.cpu_count()} cores, model {Path(model).name}")
    with tempfile.TemporaryDirectory(prefix="qwen3-ray-bench-") as folder:
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--records", str(args.records), "--model",
             model, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
             "--folder", folder], capture_output=True, text=True, check=True)
    base = json.loads(out.stdout.strip().splitlines()[-1])

    import ray

    t0 = time.perf_counter()
    # Logical CPUs: both actors' threads, and a share for the write tasks (they wait on disk).
    ray.init(num_cpus=2 * args.threads + 1, include_dashboard=False,
             logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter() - t0
    try:
        runs = {a: on_ray(args.records, model, args.batch_size, args.threads, a) for a in (1, 2)}
    finally:
        ray.shutdown()

    rate = {"single": args.records / base["seconds"]}
    print(f"\nlocal Ray cluster start-up: {started:.1f} s (once; not in the figures below)\n")
    print(f"{'':34}{'records/s':>10}{'time':>9}{'vs ingest':>11}   peak memory")
    print(f"{'ingest(), one process':34}{rate['single']:>10.1f}{base['seconds']:>7.1f} s"
          f"{'1.00x':>11}   {base['peak_mib']:.0f} MiB (the process)")
    for actors, run in runs.items():
        rate[actors] = args.records / run["seconds"]
        assert run["written"] == args.records == base["written"], (run, base)
        peaks = ", ".join(f"{p:.0f}" for p in run["actor_peaks_mib"]) or "not seen"
        name = f"Ray, {actors} actor{'s' if actors > 1 else ''} x {args.threads} CPU"
        print(f"{name:34}{rate[actors]:>10.1f}{run['seconds']:>7.1f} s"
              f"{rate[actors] / rate['single']:>10.2f}x   {peaks} MiB per actor")
    one, two = rate[1] / rate["single"], rate[2] / rate[1]
    ok_one, ok_two = one >= TARGET_ONE_ACTOR, two >= TARGET_TWO_ACTORS
    print(f"\n1 actor reaches {one:.2f}x single-process ingest: "
          f"{'PASS' if ok_one else 'FAIL'} (target {TARGET_ONE_ACTOR:.2f}x)")
    print(f"2 actors reach {two:.2f}x 1 actor (twice the cores): "
          f"{'PASS' if ok_two else 'FAIL'} (target {TARGET_TWO_ACTORS:.2f}x)")
    print("Embedding is per-record work: each actor adds its cores' rate, here or on another "
          "node.\nShared by all actors: the store's writes (one writer actor for an embedded "
          "store),\nthe driver's read of the source, and each actor's start-up and model load.")
    return 0 if ok_one and ok_two else 1


if __name__ == "__main__":
    sys.exit(main())
