"""One measurement in a fresh process, printed as JSON on the last line.

    python benchmarks/_worker.py WAY CORPUS MODEL [--n N] [key=value ...]

WAY: ``each`` (llama-cpp-python, one ``embed()`` per text), ``list`` (one
``embed(list)`` for all), ``ours`` (Qwen3Embedder.local). A fresh process per
measurement gives each way a clean peak RSS and no shared llama.cpp state.
Extra ``key=value`` pairs go to ``Qwen3Embedder.local`` (ints) for ``ours``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import mixed_documents, short_queries

# llama-cpp-python's context for the baselines: big enough for every text
# (n_batch is also Llama.embed's packing budget for the list way).
BASELINE_CTX = 4096


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    way, corpus, model = sys.argv[1:4]
    extra = dict(a.split("=", 1) for a in sys.argv[4:] if "=" in a)
    n = int(extra.pop("n", 0)) or None
    threads = int(extra.pop("threads", 0)) or None
    texts = mixed_documents() if corpus == "docs" else short_queries()
    texts = texts[:n] if n else texts
    if way == "ours":
        from qwen3_embed_core import Qwen3Embedder

        emb = Qwen3Embedder.local(
            model, n_threads=threads, **{k: int(v) for k, v in extra.items()}
        )
        tokens = sum(emb.count_tokens(t) for t in texts)
        emb.embed_documents(texts[:4])  # warm-up: context, graphs, page cache
        start = time.perf_counter()
        emb.embed_documents(texts)
        seconds = time.perf_counter() - start
    else:
        import llama_cpp

        llm = llama_cpp.Llama(
            model, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST,
            n_ctx=BASELINE_CTX, n_batch=BASELINE_CTX, n_ubatch=512, verbose=False,
            n_threads=threads, n_threads_batch=threads,
        )
        tokens = sum(len(llm.tokenize(t.encode(), add_bos=True)) for t in texts)
        llm.embed(texts[:4])
        start = time.perf_counter()
        if way == "each":
            for t in texts:
                llm.embed(t)
        else:
            llm.embed(texts)
        seconds = time.perf_counter() - start
    print(json.dumps({"way": way, "corpus": corpus, "texts": len(texts), "tokens": tokens,
                      "seconds": seconds, "peak_rss_mib": _rss_mib()}))


if __name__ == "__main__":
    main()
