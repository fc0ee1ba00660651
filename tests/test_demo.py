"""examples/demo.py runs offline on the tiny model and prints the store's true cosines."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from qwen3_embed_core import Qwen3Embedder

from .stores import THREADS, child_env

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.py"
DOCS = ROOT / "examples" / "docs"
HIT = re.compile(r"^   ([123])\. (\d\.\d{3})  (\S+)$")


def _answers(out: str) -> dict[str, list[tuple[float, str]]]:
    answers, query = {}, None
    for line in out.splitlines():
        if line.startswith("Q: "):
            query = line[3:]
            answers[query] = []
        elif (m := HIT.match(line)) and query is not None:
            assert int(m[1]) == len(answers[query]) + 1
            answers[query].append((float(m[2]), m[3]))
    return answers


def test_demo_runs_offline_and_prints_true_cosines(tmp_path):
    env = child_env(QWEN3_EMBED_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"))
    env.pop("QWEN3_EMBED_MODEL", None)
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
