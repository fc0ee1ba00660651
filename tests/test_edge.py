"""Qdrant Edge (``qdrant-edge:`` URIs) on the real engine: what the shared store tests do
not cover. One owner per shard (a second process is refused, a killed one leaves no lock),
durability against SIGKILL, the profile file, and moving collections to and from
qdrant-client (the suite has no Qdrant server: qdrant-client's local mode stands in for
one; ``copy_points`` reaches both through the same client API, so what is tested is the
copy, the profile and the payloads; a server's HTTP transport is not exercised here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import closing

import numpy as np
import pytest
from qdrant_client import QdrantClient

from qwen3_embed_core import (
    DISTRIBUTION,
    ConfigurationError,
    MissingDependencyError,
    content_hash,
    point_id,
)
from qwen3_embed_core.stores import Point, open_collection
from qwen3_embed_qdrant import copy_points

from .stores import child_env, local_embedder, store_profile

TEXTS = [f"edge chunk {i}: a sentence about topic {i % 4} and more words" for i in range(40)]


@pytest.fixture(scope="module")
def emb(tiny_model):
    yield from local_embedder(tiny_model)


def _points(texts, source="docs/a.md", scope=""):
    return [Point(id=point_id(f"{source}#{i}"), text=t, metadata={"i": i, "lang": "en"},
                  record_id=f"{source}#{i}", hash=content_hash(t), source=source,
                  source_hash="h-" + source, scope=scope) for i, t in enumerate(texts)]


def _filled(uri, emb, texts=TEXTS):
    col = open_collection(uri, create=True)
    try:
        col.ensure(store_profile(emb))
        pts = _points(texts)
        col.write(pts, emb.embed_documents(texts))
        col.finish()
    finally:
        col.close()
    return pts


def test_profile_file_beside_the_shard_and_payload_indexes(tmp_path, emb):
    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    _filled(uri, emb)
    shard = tmp_path / "edge" / "docs"
    assert json.loads((shard / "qwen3_embed.json").read_text()) == store_profile(emb)
    assert (shard / "edge_config.json").is_file()
    col = open_collection(uri)
    try:
        # Keyword indexes on the fields the sync filters on.
        assert {"source_id", "source_scope"} <= set(col._shard.info().payload_schema)
        assert col.count() == len(TEXTS)
        with pytest.raises(ConfigurationError, match="made with"):
            col.ensure({**store_profile(emb), "query_prefix": "Instruct: other\nQuery:"})
    finally:
        col.close()


def test_a_shard_with_points_but_no_profile_is_refused(tmp_path, emb):
    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    _filled(uri, emb)
    (tmp_path / "edge" / "docs" / "qwen3_embed.json").unlink()
    with closing(open_collection(uri, create=True)) as col:
        assert col.profile() == {}
        with pytest.raises(ConfigurationError, match=r"no qwen3_embed\.json.*server snapshot"):
            col.ensure(store_profile(emb))


def test_search_filters_on_the_payload_with_edge_filters(tmp_path, emb):
    import qdrant_edge as qe

    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    pts = _filled(uri, emb)
    with closing(open_collection(uri)) as col:
        q = emb.embed_query(TEXTS[5])
        where = qe.Filter(must=[qe.FieldCondition(key="metadata.i", match=qe.MatchAny([5, 9]))])
        hits = col.search(q, 10, where)
        assert sorted(h.id for h in hits) == sorted([pts[5].id, pts[9].id])
        with pytest.raises(ConfigurationError, match=r"qdrant_edge\.Filter"):
            col.search(q, 3, {"metadata.i": 5})


def test_search_ef_is_checked_and_searches_stay_exact(tmp_path, emb):
    """With ``search_ef`` set a search gives numpy's hits and cosines; bad values are
    refused when set (the beam's effect on recall is measured in benchmarks/stores.py)."""
    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    pts = _filled(uri, emb)
    vecs = np.asarray(emb.embed_documents(TEXTS))
    q = np.asarray(emb.embed_query("a sentence about topic 3"))
    order = np.argsort(-(vecs @ q))[:5]
    with closing(open_collection(uri)) as col:
        assert col.search_ef is None  # Qdrant's own default
        col.search_ef = 200
        hits = col.search(q, 5)
        assert [h.id for h in hits] == [pts[i].id for i in order]
        np.testing.assert_allclose([h.score for h in hits], (vecs @ q)[order], atol=1e-5)
        for bad in (0, -1, 2.5, True, "100"):
            with pytest.raises(ConfigurationError, match="search_ef"):
                col.search_ef = bad
        assert col.search_ef == 200


OPEN_AND_HOLD = textwrap.dedent("""
    import sys, time
    from qwen3_embed_core.stores import open_collection
    col = open_collection(sys.argv[1])
    print("open", flush=True)
    if sys.argv[2] == "kill":
        time.sleep(60)  # killed here, the shard open and locked
    col.close()
""")


def test_a_second_opener_is_refused_until_the_first_closes(tmp_path, emb):
    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    _filled(uri, emb)
    script = tmp_path / "hold.py"
    script.write_text(OPEN_AND_HOLD)

    def second_process() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), uri, "close"], capture_output=True,
                              text=True, env=child_env(), timeout=120)

    first = open_collection(uri)
    try:
        # In this process too: a second shard on the same files would corrupt the first.
        with pytest.raises(ConfigurationError, match=f"open in another process \\(pid {os.getpid()}"):
            open_collection(uri)
        refused = second_process()
        assert refused.returncode != 0
        assert "a Qdrant Edge shard has one owner at a time" in refused.stderr
        assert first.count() == len(TEXTS)  # and the first is unharmed
        first.write(_points(["one more"], source="docs/b.md"), emb.embed_documents(["one more"]))
        first.finish()
    finally:
        first.close()
    done = second_process()
    assert done.returncode == 0 and done.stdout.strip() == "open", done.stderr


def test_a_killed_owner_leaves_its_writes_and_no_lock(tmp_path, emb):
    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    script = tmp_path / "write_then_die.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        import numpy as np
        from qwen3_embed_core import content_hash, point_id
        from qwen3_embed_core.stores import Point, open_collection
        col = open_collection(sys.argv[1], create=True)
        col.ensure(dict(model="m", dimensions=8, document_prefix="", query_prefix="q"))
        for b in range(10):  # written, never flushed nor optimized: the WAL holds them
            pts = [Point(id=point_id(f"r{b}-{i}"), text=f"t{b}-{i}", metadata={}, record_id=None,
                         hash=content_hash(f"t{b}-{i}")) for i in range(100)]
            col.write(pts, np.random.default_rng(b).standard_normal((100, 8)).astype("f4"))
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    child = subprocess.run([sys.executable, str(script), uri], capture_output=True, text=True,
                           env=child_env(), timeout=120)
    assert child.returncode == -signal.SIGKILL and child.stdout == "written\n", child.stderr
    with closing(open_collection(uri)) as col:  # the dead process's lock is gone with it
        assert col.count() == 1000
        assert {p.id for p in col.points()} == {point_id(f"r{b}-{i}") for b in range(10)
                                                for i in range(100)}


def test_copy_points_edge_to_qdrant_and_back_without_reembedding(tmp_path, emb):
    edge, local = f"qdrant-edge:{tmp_path}/edge/docs", f"qdrant:{tmp_path}/qdrant/docs"
    pts = _filled(edge, emb)
    assert copy_points(edge, local) == len(TEXTS)
    assert copy_points(edge, local) == len(TEXTS)  # re-run: the same ids, overwritten

    client = QdrantClient(path=str(tmp_path / "qdrant"))  # what a Qdrant user sees
    try:
        assert client.count("docs", exact=True).count == len(TEXTS)
        info = client.get_collection("docs")
        assert info.config.metadata["qwen3_embed"] == store_profile(emb)
        got = {str(p.id): p for p in client.retrieve(
            "docs", [p.id for p in pts], with_payload=True, with_vectors=True)}
    finally:
        client.close()
    vectors = emb.embed_documents(TEXTS)
    for p, v in zip(pts, vectors, strict=True):
        assert got[p.id].payload == p.payload()
        assert np.allclose(got[p.id].vector, v, atol=1e-6)

    back = f"qdrant-edge:{tmp_path}/edge2/docs"
    assert copy_points(local, back) == len(TEXTS)
    q = emb.embed_query(TEXTS[3])
    with (closing(open_collection(edge)) as a, closing(open_collection(local)) as b,
          closing(open_collection(back)) as c):
        ranked = [[(h.id, round(h.score, 5)) for h in col.search(q, 5)] for col in (a, b, c)]
        assert ranked[0] == ranked[1] == ranked[2]
    best = np.argsort(-(vectors @ q))[:5]  # the exact cosine ranking of the stored vectors
    assert [i for i, _ in ranked[0]] == [pts[k].id for k in best]


def test_copy_refuses_a_target_made_with_another_model(tmp_path, emb):
    edge = f"qdrant-edge:{tmp_path}/edge/docs"
    _filled(edge, emb)
    other = open_collection(f"qdrant:{tmp_path}/qdrant/docs", create=True)
    try:
        other.ensure({**store_profile(emb), "model": "another-model"})
    finally:
        other.close()
    with pytest.raises(ConfigurationError, match="another-model"):
        copy_points(edge, f"qdrant:{tmp_path}/qdrant/docs")


def test_each_format_opened_as_the_other_says_which_it_is(tmp_path, emb):
    local = f"qdrant:{tmp_path}/db/docs"
    _filled(local, emb)
    with pytest.raises(ConfigurationError, match=r"qdrant-client local-mode store.*qdrant:"):
        open_collection(f"qdrant-edge:{tmp_path}/db/docs")
    with pytest.raises(ConfigurationError, match="qdrant-client local-mode store"):
        open_collection(f"qdrant-edge:{tmp_path}/db/notes", create=True)
    (tmp_path / "junk" / "docs").mkdir(parents=True)
    (tmp_path / "junk" / "docs" / "file.txt").write_text("x")
    with pytest.raises(ConfigurationError, match="not a Qdrant Edge shard"):
        open_collection(f"qdrant-edge:{tmp_path}/junk/docs", create=True)

    edge = f"qdrant-edge:{tmp_path}/edge/docs"
    _filled(edge, emb)
    with pytest.raises(ConfigurationError, match=f"Qdrant Edge shard.*qdrant-edge:{tmp_path}"):
        open_collection(f"qdrant:{tmp_path}/edge/docs")
    assert not (tmp_path / "edge" / "meta.json").exists()  # nothing written beside it


def test_missing_engine_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "qdrant_edge", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=rf"qdrant-edge-py.*{DISTRIBUTION}\[qdrant\]"):
        open_collection(f"qdrant-edge:{tmp_path}/edge/docs", create=True)
    assert not (tmp_path / "edge").exists()


# -- through the sync (the ingestion every entry point runs) ---------------------------------

def _records(n, per_source=6, edited=False):
    """``n`` records in sources of ``per_source``. ``edited``: every source rewritten, new
    chunk ids and texts, one chunk fewer (its old chunks are stale until deleted)."""
    for i in range(n):
        s, k = divmod(i, per_source)
        if edited and k == per_source - 1:
            continue
        v = "-v2" if edited else ""
        yield {"id": f"rec-{i}{v}", "text": f"record {i}{v} of source {s}, topic {i % 13}",
               "metadata": {"i": i}, "source": f"src-{s}"}


def _expected(n, per_source=6, edited=False):
    out: dict[str, list[str]] = {}
    for r in _records(n, per_source, edited):
        out.setdefault(r["source"], []).append(r["text"])
    return out


def test_the_index_is_built_once_at_the_end_of_an_ingestion(tmp_path, emb, monkeypatch):
    from qwen3_embed_core.adapters import ingest_into
    from qwen3_embed_qdrant import EdgeCollection

    calls: list[str] = []
    for name in ("write", "finish"):
        original = getattr(EdgeCollection, name)

        def spy(self, *args, _name=name, _original=original):
            calls.append(_name)
            return _original(self, *args)
        monkeypatch.setattr(EdgeCollection, name, spy)
    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    col = open_collection(uri, create=True)
    try:
        report = ingest_into(col, emb, _records(120), batch_size=16, cleanup="incremental")
        assert report.written == 120
        assert calls.count("finish") == 1 and calls[-1] == "finish"  # after the last write
        assert calls.count("write") >= 120 // 16
        calls.clear()
        again = ingest_into(col, emb, _records(120), batch_size=16, cleanup="incremental")
        assert again.embedded == 0 and "finish" not in calls  # nothing written: no rebuild
    finally:
        col.close()
    from .stores import tally

    assert tally(uri, _expected(120)).exact


N, BATCH = 300, 20
CRASH_CHILD = textwrap.dedent(f"""
    import json, sys
    from qwen3_embed_core import Qwen3Embedder
    from qwen3_embed_core.adapters import ingest_into
    from qwen3_embed_core.stores import open_collection
    sys.path.insert(0, sys.argv[4])
    from tests.test_edge import _records

    model, uri, edited = sys.argv[1], sys.argv[2], sys.argv[3] == "edited"
    emb = Qwen3Embedder.local(model, n_threads=1)
    sent = [0]
    embed = emb.backend.embed
    def counting(texts):  # what reaches llama.cpp, not what the report says
        sent[0] += len(texts)
        return embed(texts)
    emb.backend.embed = counting
    col = open_collection(uri, create=True)
    report = ingest_into(col, emb, _records({N}, edited=edited),
                         batch_size={BATCH}, cleanup="incremental",
                         on_batch=lambda r: print(json.dumps({{"written": r.written}}),
                                                  flush=True))
    col.close()
    print(json.dumps({{"done": True, "embedded": report.embedded, "sent": sent[0],
                      "skipped": report.skipped, "deleted": report.deleted}}), flush=True)
""")


def test_sigkill_mid_ingest_then_rerun_is_exact(tmp_path, tiny_model):
    """Killed a third of the way through a first ingestion, and again during an edit of
    every source: each re-run ends with 0 lost, 0 duplicated, 0 stale chunks."""
    import json as _json
    from pathlib import Path

    from .stores import tally

    script = tmp_path / "child.py"
    script.write_text(CRASH_CHILD)
    uri = f"qdrant-edge:{tmp_path}/edge/docs"
    root = str(Path(__file__).resolve().parents[1])

    def run(version: str, kill_after: int | None) -> dict:
        child = subprocess.Popen([sys.executable, str(script), str(tiny_model), uri, version,
                                  root], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=child_env())
        for line in child.stdout:
            msg = _json.loads(line)
            if kill_after is not None and msg.get("written", 0) >= kill_after:
                os.kill(child.pid, signal.SIGKILL)  # embedding the next batch, or writing
                child.wait(timeout=60)
                assert child.returncode == -signal.SIGKILL
                return msg
            if msg.get("done"):
                child.wait(timeout=60)
                return msg
        raise AssertionError(child.stderr.read()[-3000:])

    killed = run("first", N // 3)
    partial = tally(uri, _expected(N))
    assert partial.stale == partial.duplicated == 0 and partial.points >= killed["written"]
    done = run("first", None)
    assert done["sent"] == done["embedded"] == N - partial.points  # survivors not re-embedded
    assert tally(uri, _expected(N)).exact

    # Every source rewritten, killed midway: old chunks may linger, none twice.
    run("edited", N // 3)
    mid = tally(uri, _expected(N, edited=True))
    assert mid.duplicated == 0 and mid.stale > 0
    final = run("edited", None)
    t = tally(uri, _expected(N, edited=True))
    assert t.exact, t
    print(f"\nqdrant-edge crash test: first run killed after "
          f"{killed['written']} written, {partial.points} stored, re-run embedded "
          f"{done['embedded']}; edit run killed with {mid.stale} stale, {mid.missing} not yet "
          f"written; after its re-run {t.points} points: stale {t.stale}, missing "
          f"{t.missing}, duplicated {t.duplicated} (deleted {final['deleted']})")
