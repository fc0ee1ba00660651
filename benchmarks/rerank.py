"""Reranking throughput: one query against 50 documents, side by side, with targets.

On Qwen3-Reranker-0.6B's real shape (random weights, the headed flavour
llama.cpp's converter writes since b6578), F16, one query and 50 documents of
100 to 300 words, it prints documents/s for:

(a) each (query, document) prompt scored on its own: one llama.cpp call per
    document, nothing shared (``share_prefixes=False``, one document a call);
(b) ours: ``Qwen3Reranker.score(query, documents)``, which decodes the prompt
    prefix (system turn, instruction, query) once and packs the documents;
(c) llama-server's ``/v1/rerank`` on the same file with the same threads
    (the binary built by ``.ci/build-llama-server``), all 50 documents in one
    request, at its best ``--parallel`` of a small sweep.

Targets: (b) >= 1.2x (a) and (b) >= 1.0x (c), each printed PASS or FAIL; the
scores of (a) and (c) are also compared with (b). The first run builds and
caches the model file (about a minute). Exit status 0 only when both targets
are met.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import REAL_0_6B, WORDS  # noqa: E402

from qwen3_embed_core._engine import physical_cores  # noqa: E402
from qwen3_embed_core._reranker import Qwen3Reranker  # noqa: E402
from qwen3_embed_core.testing import build_reranker, cache_dir  # noqa: E402

TARGET_VS_ALONE = 1.2
TARGET_VS_SERVER = 1.0
N_DOCS, LOW, HIGH = 50, 100, 300
QUERY = "Which passage explains how retrieval systems embed documents and queries?"


def reranker_file() -> Path:
    """Qwen3-Reranker-0.6B's shape and real vocabulary, random weights, F16, with the head.

    Cached outside the repo.
    """
    path = cache_dir() / "bench" / "qwen3-reranker-0.6b-shape-qwen3vocab-f16.gguf"
    if not path.is_file():
        print(f"building {path} (once; about a minute) ...", flush=True)
        build_reranker(path, head=True, shape=REAL_0_6B, dtype="F16", seed=1)
    return path


def documents(n: int = N_DOCS, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(LOW, HIGH))).capitalize() + "."
        for _ in range(n)
    ]


def timed(fn, repeats: int, warm_up=None) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs after a warm-up call, and the last result."""
    result = (warm_up or fn)()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def server_scores(path: Path, docs: list[str], threads: int, parallel: int,
                  repeats: int) -> tuple[float, np.ndarray]:
    from tests.llama_server import LlamaServer

    args = (
        "--reranking", "--ctx-size", str(1024 * parallel), "--batch-size", "2048",
        "--ubatch-size", "512", "--parallel", str(parallel), "--threads", str(threads),
        "--threads-batch", str(threads), "--flash-attn", "off",
    )
    log_dir = cache_dir() / "bench" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with LlamaServer(path, log_dir, args, name=f"rerank-bench-p{parallel}") as server:
        body = {"model": "bench", "query": QUERY, "documents": docs, "top_n": len(docs)}

        def call() -> np.ndarray:
            r = httpx.post(server.base_url + "/rerank", json=body, timeout=7200)
            r.raise_for_status()
            scores = np.empty(len(docs), dtype=np.float32)
            for item in r.json()["results"]:
                scores[item["index"]] = item["relevance_score"]
            return scores

        body_one = {**body, "documents": docs[:1], "top_n": 1}
        seconds, scores = timed(call, repeats, lambda: httpx.post(
            server.base_url + "/rerank", json=body_one, timeout=600))
    return seconds, np.asarray(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after a warm-up")
    parser.add_argument("--docs", type=int, default=N_DOCS,
                        help="documents against the query (the target is stated for 50)")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4],
                        help="llama-server --parallel values to try (its best is reported)")
    args = parser.parse_args()

    path = reranker_file()
    docs = documents(args.docs)
    print(f"model: {path.name} (Qwen3-Reranker-0.6B shape, random weights, F16, cls.output head)")
    print(f"query + {len(docs)} documents of {LOW}-{HIGH} words; {args.threads} threads; "
          f"best of {args.repeats} runs after a warm-up\n")

    rows: dict[str, tuple[float, np.ndarray]] = {}
    with Qwen3Reranker.local(path, n_threads=args.threads, share_prefixes=False) as alone:
        rows["(a) each prompt on its own"] = timed(
            lambda: np.concatenate([alone.score(QUERY, [d]) for d in docs]), args.repeats,
            lambda: alone.score(QUERY, docs[:1]),
        )
    print(f"(a) each prompt on its own: {len(docs) / rows['(a) each prompt on its own'][0]:.3f} "
          "documents/s", flush=True)
    with Qwen3Reranker.local(path, n_threads=args.threads) as ours:
        stats = ours.backend.engine.stats
        ours.score(QUERY, docs[:2])  # warm-up
        before = stats.tokens_decoded, stats.tokens_shared
        rows["(b) ours, shared prefix"] = timed(lambda: ours.score(QUERY, docs), args.repeats,
                                                lambda: None)
        per_call = (stats.tokens_decoded - before[0]) / args.repeats
        shared = (stats.tokens_shared - before[1]) / args.repeats
    print(f"(b) ours, shared prefix: {len(docs) / rows['(b) ours, shared prefix'][0]:.3f} "
          "documents/s", flush=True)
    best_server: tuple[float, np.ndarray] | None = None
    for parallel in args.parallel:
        seconds, scores = server_scores(path, docs, args.threads, parallel, args.repeats)
        print(f"(c) llama-server --parallel {parallel}: {len(docs) / seconds:.3f} documents/s",
              flush=True)
        if best_server is None or seconds < best_server[0]:
            best_server, best_parallel = (seconds, scores), parallel
    assert best_server is not None
    rows[f"(c) llama-server /v1/rerank (--parallel {best_parallel})"] = best_server

    ours_s, ours_scores = rows["(b) ours, shared prefix"]
    print(f"\n(b) decodes {per_call:.0f} tokens a call; the shared prefix saves {shared:.0f}\n")
    print(f"{'':48s} {'docs/s':>8s} {'s/call':>8s} {'ours x':>7s} {'max |d score|':>14s}")
    for name, (seconds, scores) in rows.items():
        diff = float(np.abs(np.asarray(scores) - ours_scores).max())
        print(f"{name:48s} {len(docs) / seconds:8.3f} {seconds:8.2f} {seconds / ours_s:7.2f} "
              f"{diff:14.2e}")
    alone_s = rows["(a) each prompt on its own"][0]
    ok_alone = alone_s / ours_s >= TARGET_VS_ALONE
    ok_server = best_server[0] / ours_s >= TARGET_VS_SERVER
    print(f"\n{'PASS' if ok_alone else 'FAIL'}  ours >= {TARGET_VS_ALONE}x each prompt on its own "
          f"({alone_s / ours_s:.2f}x)")
    print(f"{'PASS' if ok_server else 'FAIL'}  ours >= {TARGET_VS_SERVER}x llama-server /v1/rerank "
          f"({best_server[0] / ours_s:.2f}x)")
    return 0 if ok_alone and ok_server else 1


if __name__ == "__main__":
    sys.exit(main())
