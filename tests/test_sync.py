"""Sync on every store of ``tests.stores.STORE_URIS``: collections stay true to their sources.

Real files, the real command line and the Python API, real stores (embedded Qdrant,
Chroma persistent, Chroma's own server). After every step the collection is counted
against the chunks of the current sources: 0 stale, 0 missing, 0 duplicated.
"""

from __future__ import annotations

import shutil

import pytest

from qwen3_embed_cli import main
from qwen3_embed_core import ConfigurationError, InvalidInputError, check_text
from qwen3_embed_core.adapters import Chunker, ingest_into
from qwen3_embed_core.stores import open_collection

from .stores import local_embedder, tally
from .texts import long_text

CHUNK, OVERLAP = 24, 4


@pytest.fixture(autouse=True)
def _no_default_model(monkeypatch):
    monkeypatch.delenv("QWEN3_EMBED_MODEL", raising=False)


@pytest.fixture(scope="module")
def emb(tiny_model):
    yield from local_embedder(tiny_model)


def cli(capsys, *argv):
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def expected(emb, root, namespace=None):
    """{source id: chunk texts} of every text file under ``root``, by the CLI's rule."""
    chunker = Chunker.of(emb, CHUNK, OVERLAP)
    ns = namespace or root.name
    out = {}
    for path in sorted(root.rglob("*")):
        if path.suffix in (".md", ".txt"):
            text = path.read_text(encoding="utf-8")
            if text.strip():
                out[f"{ns}/{path.relative_to(root).as_posix()}"] = chunker.cut(check_text(text))
    return out


def _folder(tmp_path, name="docs"):
    root = tmp_path / "proj" / name
    (root / "sub").mkdir(parents=True)
    (root / "keep.md").write_text(long_text(80, seed=1), encoding="utf-8")
    (root / "shrink.md").write_text(long_text(120, seed=2), encoding="utf-8")
    (root / "grow.md").write_text(long_text(30, seed=3), encoding="utf-8")
    (root / "sub" / "gone.txt").write_text(long_text(50, seed=4), encoding="utf-8")
    (root / "sub" / "moved.txt").write_text(long_text(40, seed=5), encoding="utf-8")
    return root


def _ingest(capsys, tiny_model, uri, *paths, extra=()):
    return cli(capsys, "ingest", *map(str, paths), "--into", uri, "--model", str(tiny_model),
               "--chunk-tokens", str(CHUNK), "--overlap-tokens", str(OVERLAP), "--no-progress",
               "--option", "n_threads=1", *extra)


def test_folder_edits_deletes_renames_and_prune(capsys, tmp_path, tiny_model, emb, store_uri):
    root = _folder(tmp_path)
    _ingest(capsys, tiny_model, store_uri, root)
    first = expected(emb, root)
    assert tally(store_uri, first).exact and len(first) == 5

    # Keep one file's chunk count with new words, shrink one, grow one.
    keep = root / "keep.md"
    words = keep.read_text().split()
    keep.write_text(" ".join(["EDITED", *words[1:]]), encoding="utf-8")
    (root / "shrink.md").write_text(long_text(20, seed=2), encoding="utf-8")
    (root / "grow.md").write_text(long_text(150, seed=3), encoding="utf-8")
    out = _ingest(capsys, tiny_model, store_uri, root)
    assert "5 sources (2 unchanged" in out, out
    t = tally(store_uri, expected(emb, root))
    assert (t.stale, t.missing, t.duplicated) == (0, 0, 0), t
    assert len(expected(emb, root)["docs/keep.md"]) == len(first["docs/keep.md"])

    # Delete a file and rename another: incremental keeps the gone sources...
    (root / "sub" / "gone.txt").unlink()
    (root / "sub" / "moved.txt").rename(root / "sub" / "renamed.txt")
    out = _ingest(capsys, tiny_model, store_uri, root)
    now = expected(emb, root)
    t = tally(store_uri, now)
    assert t.missing == t.duplicated == 0 and t.stale == len(first["docs/sub/gone.txt"]) + len(
        first["docs/sub/moved.txt"])
    # ...a dry run of --prune says what it would delete and deletes nothing...
    out = _ingest(capsys, tiny_model, store_uri, root, extra=["--prune", "--dry-run"])
    assert "dry run, nothing written" in out and f"{t.stale} deleted (2 sources removed)" in out
    assert tally(store_uri, now).stale == t.stale
    # ...and --prune removes them.
    out = _ingest(capsys, tiny_model, store_uri, root, extra=["--prune"])
    assert f"{t.stale} deleted (2 sources removed)" in out and "0 embedded" in out
    assert tally(store_uri, now).exact


def test_a_dry_run_into_a_new_store_creates_nothing(capsys, tmp_path, tiny_model, monkeypatch):
    root = _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = _ingest(capsys, tiny_model, "qdrant:./db/docs", root, extra=["--dry-run"])
    assert out.startswith("would ingest into") and "dry run, nothing written or deleted" in out
    assert not (tmp_path / "db").exists()


def test_same_folder_from_two_working_directories(capsys, tmp_path, tiny_model, emb,
                                                  store_uri, monkeypatch):
    root = _folder(tmp_path)
    monkeypatch.chdir(tmp_path / "proj")
    _ingest(capsys, tiny_model, store_uri, "docs")
    monkeypatch.chdir(tmp_path)
    out = _ingest(capsys, tiny_model, store_uri, "proj/docs")
    assert "0 embedded, 0 written" in out and "(5 unchanged" in out
    out = _ingest(capsys, tiny_model, store_uri, root.resolve(), root / "keep.md")
    assert "0 embedded, 0 written" in out
    assert tally(store_uri, expected(emb, root)).exact
    # The folder moved elsewhere keeps its name: the same sources, nothing re-embedded.
    moved = tmp_path / "elsewhere" / "docs"
    moved.parent.mkdir()
    shutil.move(str(root), moved)
    out = _ingest(capsys, tiny_model, store_uri, moved, extra=["--prune"])
    assert "0 embedded, 0 written" in out and "0 deleted" in out
    assert tally(store_uri, expected(emb, moved)).exact


def test_two_scopes_in_one_collection(capsys, tmp_path, tiny_model, emb, store_uri):
    a = _folder(tmp_path, "alpha")
    b = tmp_path / "beta"
    b.mkdir()
    (b / "one.md").write_text(long_text(60, seed=9), encoding="utf-8")
    (b / "two.md").write_text(long_text(10, seed=8), encoding="utf-8")
    _ingest(capsys, tiny_model, store_uri, a, b)
    both = {**expected(emb, a), **expected(emb, b)}
    assert tally(store_uri, both).exact
    # A full sync of beta alone never touches alpha; beta's deleted file goes.
    (b / "two.md").unlink()
    out = _ingest(capsys, tiny_model, store_uri, b, extra=["--prune"])
    assert "(1 sources removed)" in out
    assert tally(store_uri, {**expected(emb, a), **expected(emb, b)}).exact
    # The same folder under another namespace is another scope: both coexist.
    _ingest(capsys, tiny_model, store_uri, b, extra=["--namespace", "gamma", "--prune"])
    t = tally(store_uri, {**expected(emb, a), **expected(emb, b),
                          **expected(emb, b, "gamma")})
    assert t.exact


def test_python_records_with_sources(tmp_path, emb, store_uri):
    def records(spec):
        return [{"id": f"{s}#{i}", "text": f"{s} chunk {i} of {n}", "source": s,
                 "metadata": {"i": i, "big": 10**30}} for s, n in spec.items() for i in range(n)]

    def want(spec):
        return {s: [f"{s} chunk {i} of {n}" for i in range(n)] for s, n in spec.items()}

    col = open_collection(store_uri, create=True)
    try:
        first = {"a": 4, "b": 2, "c": 3}
        r = ingest_into(col, emb, records(first), cleanup="incremental", scope="team")
        assert (r.embedded, r.sources, r.deleted) == (9, 3, 0)
        again = ingest_into(col, emb, records(first), cleanup="incremental", scope="team")
        # Unchanged sources are recognised by their head; big ints stay ints (issue 18).
        assert (again.embedded, again.written, again.updated, again.unchanged_sources,
                again.skipped) == (0, 0, 0, 3, 9)
        second = {"a": 2, "b": 5}
        r = ingest_into(col, emb, records(second), cleanup="full", scope="team")
        assert (r.embedded, r.deleted, r.deleted_sources) == (2 + 5, 2 + 3, 1)  # a shrank, c went
        # Another scope's sources are never pruned by this one's full sync.
        ingest_into(col, emb, records({"z": 2}), cleanup="full", scope="other")
        ingest_into(col, emb, records(second), cleanup="full", scope="team")
        assert col.sources("other") == {"z"}
        # cleanup=None only adds or updates: source a's other chunks stay.
        r = ingest_into(col, emb, [{"id": "a#9", "text": "an extra", "source": "a"}],
                        scope="team")
        assert (r.embedded, r.deleted) == (1, 0)
    finally:
        col.close()
    current = {**want(second), **want({"z": 2})}
    current["a"].append("an extra")
    t = tally(store_uri, current)
    assert t.exact, t
    with pytest.raises(ConfigurationError, match="cleanup must be None"):
        ingest_into(open_collection(store_uri), emb, ["x"], cleanup="all")


def test_bad_records_are_reported_per_store(emb, store_uri):
    col = open_collection(store_uri, create=True)
    try:
        # Issue 18: an empty metadata key aborted a whole Chroma ingestion.
        report = ingest_into(col, emb, [{"text": "fine"}, {"text": "x", "metadata": {"": "v"}},
                                        {"text": "y", "source": ""}])
        assert [b.position for b in report.bad] == [1, 2]
        assert "metadata keys must be non-empty" in report.bad[0].reason
        assert col.count() == 1
        with pytest.raises(InvalidInputError, match="record 1"):
            ingest_into(col, emb, [{"text": "ok"}, {"text": "x", "metadata": {"": 1}}],
                        on_error="raise")
        with pytest.raises(InvalidInputError, match="not consecutive"):
            ingest_into(col, emb, [{"text": "a", "source": "s"}, {"text": "b", "source": "t"},
                                   {"text": "c", "source": "s"}], on_error="raise")
    finally:
        col.close()


@pytest.mark.parametrize("kind", ["qdrant", "chroma"])
def test_collections_of_earlier_versions_open_and_upgrade(capsys, tmp_path, tiny_model, emb,
                                                          kind):
    """A collection as 0.2 wrote it: no source fields, a record without the spec."""
    from qwen3_embed_core import content_hash, point_id
    from qwen3_embed_core.adapters import embedder_record

    texts = ["Paris is the capital of France.", "Cells make energy."]
    ids = [point_id(f"r{i}") for i in range(2)]
    vectors = emb.embed_documents(texts)
    if kind == "qdrant":
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=str(tmp_path / "db"))
        client.create_collection("docs", vectors_config=models.VectorParams(
            size=64, distance=models.Distance.COSINE),
            metadata={"qwen3_embed": embedder_record(emb)})
        client.upsert("docs", [models.PointStruct(id=i, vector=v.tolist(), payload={
            "text": t, "metadata": {"n": k}, "record_id": f"r{k}", "content_hash": content_hash(t)})
            for k, (i, t, v) in enumerate(zip(ids, texts, vectors, strict=True))])
        client.close()
    else:
        import chromadb
        from chromadb.config import Settings

        from qwen3_embed_chroma import Qwen3EmbeddingFunction

        client = chromadb.PersistentClient(str(tmp_path / "db"),
                                           settings=Settings(anonymized_telemetry=False))
        col = client.create_collection("docs", embedding_function=Qwen3EmbeddingFunction(
            model_path=str(tiny_model)))
        col.add(ids=ids, embeddings=vectors, documents=texts, metadatas=[
            {"n": k, "record_id": f"r{k}", "content_hash": content_hash(t)}
            for k, t in enumerate(texts)])
        del client
    uri = f"{kind}:{tmp_path}/db/docs"
    col = open_collection(uri, create=True)
    try:
        records = [{"id": f"r{k}", "text": t, "metadata": {"n": k}} for k, t in enumerate(texts)]
        report = ingest_into(col, emb, records, cleanup="incremental")
        # Recognised by id and hash: relabelled with their source fields, not re-embedded.
        assert (report.embedded, report.written, report.deleted) == (0, 2, 0)
        assert "embedder" in col.profile()  # the record now says how to rebuild the model
        again = ingest_into(col, emb, records, cleanup="incremental")
        assert (again.embedded, again.written, again.unchanged_sources) == (0, 0, 2)
    finally:
        col.close()
    out = cli(capsys, "search", "capital of France", "--in", uri, "--limit", "1")
    assert out.startswith(" 1. ") and ("  r0\n" in out or "  r1\n" in out)  # no --model needed
