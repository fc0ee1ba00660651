"""One measurement in a fresh process, printed as JSON on the last line.

    python benchmarks/_worker.py WAY CORPUS MODEL [key=value ...]

WAY: ``each`` (llama-cpp-python, one ``embed()`` per text), ``list`` (one
``embed(list)`` for all), ``ours`` (Qwen3Embedder.local), ``transformers``
or ``onnx`` (peers.py; MODEL is the F16 GGUF their weights come from).
CORPUS: ``docs`` or ``queries`` (common.corpus: queries carry the instruction).
A fresh process per measurement gives each way a clean peak RSS and no
shared llama.cpp state.

Keys: ``n`` (first n texts), ``threads``, ``save`` (write the unit vectors to
this .npy path), ``repeat`` (timed runs after the warm-up; the figure is the
fastest, as ``timeit`` reports: on a shared VM a slow run measures the
neighbours, not the code); for ``ours``: ``repack`` and ``share_prefixes`` (0/1) and any
other int option of ``Qwen3Embedder.local``; for the peers: ``batch`` (texts
per forward pass), or ``sweep`` (comma-separated batch sizes timed on the
first ``n_docs`` documents and ``n_queries`` queries; prints {corpus: {batch:
tokens/s}}; CORPUS is then ignored).
"""

from __future__ import annotations

import inspect
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import corpus

try:
    from qwen3_embed_core._engine import physical_cores
except ImportError:  # before the engine was split out of the local backend
    from qwen3_embed_core._local import physical_cores

# llama-cpp-python's context for the baselines: big enough for every text
# (n_batch is also Llama.embed's packing budget for the list way).
BASELINE_CTX = 4096
BOOL_OPTIONS = ("repack", "share_prefixes", "flash_attention")


def _rss_mib() -> float:
    """This process's peak resident memory in MiB.

    VmHWM, not ``ru_maxrss``: Linux carries ``ru_maxrss`` across ``exec``, so a
    worker started by a big parent would report at least the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ours(model: str, threads: int, options: dict[str, str]):
    from qwen3_embed_core import Qwen3Embedder
    from qwen3_embed_core._local import LocalBackend

    kw: dict[str, int | bool] = {
        k: bool(int(v)) if k in BOOL_OPTIONS else int(v) for k, v in options.items()
    }
    params = inspect.signature(Qwen3Embedder.local).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if takes_all or all(k in params for k in kw):
        return Qwen3Embedder.local(model, n_threads=threads, **kw)
    # Options the public constructor does not pass on yet go to the backend itself.
    return Qwen3Embedder(LocalBackend(model, n_threads=threads, **kw))


def _peer(way: str, model: str, threads: int):
    import peers

    if way == "transformers":
        return peers.TransformersEmbedder(peers.hf_model_dir(model), threads)
    return peers.OnnxEmbedder(model, threads)


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` timed calls, in seconds, and the last call's result."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def _token_counts(model: str, texts: list[str]) -> list[int]:
    from qwen3_embed_core._local import LocalBackend

    backend = LocalBackend(model, n_threads=1, repack=False)  # no weight copy: tokens only
    try:
        return [backend.count_tokens(t) for t in texts]
    finally:
        backend.close()


def main() -> None:
    way, name, model = sys.argv[1:4]
    extra = dict(a.split("=", 1) for a in sys.argv[4:] if "=" in a)
    n = int(extra.pop("n", 0)) or None
    threads = int(extra.pop("threads", 0)) or physical_cores()
    save = extra.pop("save", None)
    repeat = int(extra.pop("repeat", 1))
    texts = corpus(name, n)
    result: dict[str, object] = {"way": way, "corpus": name, "texts": len(texts),
                                 "repeat": repeat}
    if way in ("transformers", "onnx") and "sweep" in extra:
        peer = _peer(way, model, threads)
        sizes = [int(b) for b in extra["sweep"].split(",")]
        sweep: dict[str, dict[int, float]] = {}
        for corpus_name in ("docs", "queries"):
            sample = corpus(corpus_name, int(extra[f"n_{corpus_name}"]))
            tokens = sum(peer.count_tokens(sample))
            peer.embed(sample[:2], 2)  # warm-up
            sweep[corpus_name] = {}
            for b in sizes:
                start = time.perf_counter()
                peer.embed(sample, b)
                sweep[corpus_name][b] = tokens / (time.perf_counter() - start)
        print(json.dumps({"way": way, "sweep": sweep, "peak_rss_mib": _rss_mib()}))
        return
    if way == "ours":
        tokens = sum(_token_counts(model, texts))
        emb = _ours(model, threads, extra)
        emb.embed_documents(texts[:4])  # warm-up: context, graphs, page cache
        # Queries already carry their instruction.
        seconds, vectors = best_of(repeat, lambda: emb.embed_documents(texts))
    elif way in ("transformers", "onnx"):
        peer = _peer(way, model, threads)
        tokens = sum(peer.count_tokens(texts))
        batch = int(extra["batch"])
        result["batch"] = batch
        peer.embed(texts[:4], batch)
        seconds, vectors = best_of(repeat, lambda: peer.embed(texts, batch))
    else:
        import llama_cpp

        tokens = sum(_token_counts(model, texts))
        llm = llama_cpp.Llama(
            model, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST,
            n_ctx=BASELINE_CTX, n_batch=BASELINE_CTX, n_ubatch=512, verbose=False,
            n_threads=threads, n_threads_batch=threads,
        )
        llm.embed(texts[:4])
        start = time.perf_counter()
        if way == "each":
            raw = [llm.embed(t) for t in texts]
        else:
            raw = llm.embed(texts)
        seconds = time.perf_counter() - start
        vectors = np.asarray(raw, dtype=np.float32)  # Llama.embed normalises already
    if save:
        np.save(save, np.asarray(vectors, dtype=np.float32))
    # The machine's 1-minute load average as the measurement ends: above the core
    # count, other processes shared the CPU and the figure is low.
    result.update(tokens=tokens, seconds=seconds, peak_rss_mib=_rss_mib(),
                  load=os.getloadavg()[0])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
