"""examples/demo.py runs offline on the tiny models and prints the true cosines and
relevance scores: the embedder's nearest documents, then the reranker's best of them."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from qwen3_embed_core import Qwen3Embedder, Qwen3Reranker
from qwen3_embed_core.testing import build_reranker

from .stores import THREADS, child_env

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.py"
DOCS = ROOT / "examples" / "docs"
HIT = re.compile(r"^   ([123])\. (\d\.\d{3})  (\S+)$")
RERANKED = re.compile(r"^   ([123])\) (\d\.\d{4})  (\S+)  \(cosine (-?\d\.\d{3})\)$")
CANDIDATES = 5  # the demo's second stage reranks the 5 nearest


def _answers(out: str, pattern: re.Pattern[str] = HIT) -> dict[str, list[tuple]]:
    answers, query = {}, None
    for line in out.splitlines():
        if line.startswith("Q: "):
            query = line[3:]
            answers[query] = []
        elif (m := pattern.match(line)) and query is not None:
            assert int(m[1]) == len(answers[query]) + 1
            answers[query].append((float(m[2]), m[3], *map(float, m.groups()[3:])))
    return answers


def test_demo_runs_offline_and_prints_true_cosines(tmp_path):
    env = child_env(QWEN3_EMBED_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"))
    env.pop("QWEN3_EMBED_MODEL", None)
    env.pop("QWEN3_RERANK_MODEL", None)
    done = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rankings below are MEANINGLESS" in done.stdout
    assert "embedded 8 documents" in done.stdout

    answers = _answers(done.stdout)
    assert len(answers) == 4 and all(len(hits) == 3 for hits in answers.values())
    # The model the demo built, from its cache; the scores it printed are the core's cosines.
    (model,) = (tmp_path / "cache").rglob("*.gguf")
    files = sorted(p for p in DOCS.iterdir() if p.suffix in {".md", ".txt"})
    with Qwen3Embedder.local(model, n_threads=THREADS) as emb:
        docs = emb.embed_documents([p.read_text(encoding="utf-8") for p in files])
        for query, hits in answers.items():
            scores = docs @ emb.embed_query(query)
            top = np.argsort(-scores)[:3]
            assert [name for _, name in hits] == [files[i].name for i in top], query
            assert np.allclose([s for s, _ in hits], scores[top], atol=5.1e-4), query

    # Stage 2: the tiny reranker (the builder is deterministic: the demo's weights) on the
    # 5 nearest, in the store's order; its best 3 with their P(yes) and their cosines.
    assert "stage 1: the embedder (qwen3-tiny" in done.stdout
    assert "stage 2: the reranker (tiny-reranker.gguf)" in done.stdout
    reranked = _answers(done.stdout, RERANKED)
    assert reranked.keys() == answers.keys() and all(len(h) == 3 for h in reranked.values())
    with Qwen3Embedder.local(model, n_threads=THREADS) as emb, \
            Qwen3Reranker.local(build_reranker(tmp_path / "rr.gguf"), n_threads=THREADS) as rr:
        texts = [p.read_text(encoding="utf-8") for p in files]
        cos = emb.embed_documents(texts) @ np.stack([emb.embed_query(q) for q in reranked]).T
        for j, (query, hits) in enumerate(reranked.items()):
            nearest = np.argsort(-cos[:, j])[:CANDIDATES]
            best = rr.rerank(query, [texts[i] for i in nearest], top_n=3)
            assert [name for _, name, _ in hits] == [files[nearest[r.index]].name for r in best]
            assert np.allclose([s for s, _, _ in hits], [r.score for r in best], atol=5.1e-5)
            assert np.allclose([c for _, _, c in hits],
                               [cos[nearest[r.index], j] for r in best], atol=5.1e-4)
        # The reranker really reorders: not every query keeps the cosine order.
        assert any([n for _, n, _ in reranked[q]] != [n for _, n in answers[q]] for q in answers)
