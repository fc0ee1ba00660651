"""Kill an ingestion with SIGKILL midway, run it again: nothing lost, nothing twice, nothing re-embedded.

The ingesting process is a real child process writing an embedded Qdrant
store. It reports each written batch on stdout; the test kills it once a
third of the records are written, opens the store (the dead process's file
lock must not block it), then re-runs the same ingestion to the end.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from qdrant_client import QdrantClient

from qwen3_embed_core import point_id

from .conftest import COS_MIN
from .stores import THREADS, child_env

N = 3000
BATCH = 50
KILL_AFTER = N // 3

# The child: ingest N records, counting every text the model really embeds.
CHILD = textwrap.dedent(f"""
    import json, sys
    from qdrant_client import QdrantClient
    from qwen3_embed_core import Qwen3Embedder
    from qwen3_embed_qdrant import ingest

    model, store = sys.argv[1:3]
    emb = Qwen3Embedder.local(model, n_threads={THREADS})
    sent = [0]
    embed = emb.backend.embed
    def counting(texts):  # what reaches llama.cpp, not what ingest() says it did
        sent[0] += len(texts)
        return embed(texts)
    emb.backend.embed = counting

    def records():
        for i in range({N}):
            yield {{"id": f"rec-{{i}}", "text": f"record {{i}} of the crash test, topic {{i % 37}}",
                   "metadata": {{"i": i}}}}

    client = QdrantClient(path=store)
    report = ingest(client, "crash", emb, records(), batch_size={BATCH},
                    on_batch=lambda r: print(json.dumps({{"written": r.written}}), flush=True))
    client.close()
    print(json.dumps({{"done": True, "seen": report.seen, "embedded": report.embedded,
                      "written": report.written, "skipped": report.skipped,
                      "bad": len(report.bad), "sent": sent[0]}}), flush=True)
""")


def _run_child(script, model, store):
    return subprocess.Popen([sys.executable, str(script), str(model), str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())


def _stored_ids(store):
    client = QdrantClient(path=str(store))  # fails if a dead process still held the lock
    try:
        points, offset, ids = [], None, []
        while True:
            points, offset = client.scroll("crash", limit=1000, offset=offset)
            ids.extend(str(p.id) for p in points)
            if offset is None:
                return ids, client.count("crash", exact=True).count
    finally:
        client.close()


# Kill at once after a batch is reported (the child is embedding the next one), or a
# little later: wherever it then is, embedding or writing points one by one (on this
# machine 0.1 s and 0.2 s land inside a batch's writes: 1,039 and 1,078 points stored).
# The assertions hold wherever the kill lands.
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.2])
def test_sigkill_midway_then_rerun_completes_exactly_once(tmp_path, tiny_model, reference, delay):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    store = tmp_path / "store"

    child = _run_child(script, tiny_model, store)
    written = 0
    for line in child.stdout:
        written = json.loads(line)["written"]
        if written >= KILL_AFTER:
            time.sleep(delay)
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    assert KILL_AFTER <= written < N

    survivors, count = _stored_ids(store)
    assert len(set(survivors)) == len(survivors) == count
    assert written <= count < N  # what was reported written is there; the rest is not yet

    rerun = _run_child(script, tiny_model, store)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["done"] and final["seen"] == N and final["bad"] == 0
    assert final["skipped"] == count  # everything that survived was recognised...
    assert final["embedded"] == final["sent"] == N - count  # ...and not embedded again
    assert final["written"] == N - count

    ids, total = _stored_ids(store)
    expected = {point_id(f"rec-{i}") for i in range(N)}
    assert total == len(ids) == N  # nothing duplicated
    assert set(ids) == expected  # nothing lost
    print(f"\ncrash-resume: {N} records, killed {delay} s after {written} reported written, "
          f"{count} stored at the kill, re-run embedded {final['embedded']}, "
          f"skipped {final['skipped']}; final {total} points, "
          f"lost {len(expected - set(ids))}, duplicated {total - len(set(ids))}")

    # Vectors written before and after the kill are right.
    client = QdrantClient(path=str(store))
    try:
        sample = [0, KILL_AFTER // 2, count - 1, count, N - 1]
        points = client.retrieve("crash", [point_id(f"rec-{i}") for i in sample],
                                 with_vectors=True, with_payload=True)
        for p in points:
            vec = np.asarray(p.vector, np.float64)
            assert float(vec @ reference.embed(p.payload["text"])) >= COS_MIN
    finally:
        client.close()
