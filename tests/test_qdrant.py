"""Qdrant: collections that record their model, re-runnable ingestion, search, the URL path."""

import itertools

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from qwen3_embed_core import (
    ConfigurationError,
    InvalidInputError,
    InvalidInputTypeError,
    Qwen3Embedder,
    ServerUnavailableError,
    point_id,
)
from qwen3_embed_qdrant import METADATA_KEY, check_collection, ensure_collection, ingest, search

from .conftest import COS_MIN
from .stores import REF_DOT_TOL, THREADS, free_port, local_embedder
from .texts import MIXED, SHORT

DOCS = [*SHORT, *MIXED[:3]]
RECORDS = [{"id": f"d{i}", "text": t, "metadata": {"n": i, "lang": "en" if i < 4 else "xx"}}
           for i, t in enumerate(DOCS)]


@pytest.fixture(scope="module")
def fast_embedder(tiny_model):
    yield from local_embedder(tiny_model)


@pytest.fixture
def client(tmp_path):
    c = QdrantClient(path=str(tmp_path / "qdrant"))
    yield c
    c.close()


def _stored(client, name):
    points, _ = client.scroll(name, limit=10_000, with_vectors=True, with_payload=True)
    return {str(p.id): p for p in points}


def test_ingest_stores_reference_vectors_and_payload(client, fast_embedder, reference):
    report = ingest(client, "docs", fast_embedder, RECORDS, batch_size=3)
    assert (report.seen, report.embedded, report.written, report.skipped) == (7, 7, 7, 0)
    stored = _stored(client, "docs")
    assert set(stored) == {point_id(r["id"]) for r in RECORDS}
    core = fast_embedder.embed_documents(DOCS)
    for i, rec in enumerate(RECORDS):
        p = stored[point_id(rec["id"])]
        vec = np.asarray(p.vector, np.float64)
        assert float(vec @ core[i]) >= COS_MIN
        assert float(vec @ reference.embed(rec["text"])) >= COS_MIN
        assert p.payload["text"] == rec["text"] and p.payload["metadata"] == rec["metadata"]
        assert p.payload["record_id"] == rec["id"] and len(p.payload["content_hash"]) == 64
    info = client.get_collection("docs")
    assert info.config.params.vectors.size == 64
    assert info.config.params.vectors.distance == models.Distance.COSINE
    record = info.config.metadata[METADATA_KEY]
    assert record["model"] == "tiny-eos.gguf" and record["dimensions"] == 64
    assert record["query_prefix"] == fast_embedder.instruction.query_prefix


def test_search_scores_are_reference_cosines(client, fast_embedder, reference):
    ingest(client, "docs", fast_embedder, RECORDS)
    query = "Which city is the capital of France?"
    hits = search(client, "docs", fast_embedder, query, limit=4)
    core = fast_embedder.embed_documents(DOCS) @ fast_embedder.embed_query(query)
    expected = sorted(zip(core, [r["id"] for r in RECORDS], strict=True), reverse=True)[:4]
    assert [h.record_id for h in hits] == [rid for _, rid in expected]
    assert np.allclose([h.score for h in hits], [s for s, _ in expected], atol=1e-5)
    q = reference.embed(fast_embedder.format_query(query))
    for hit in hits:
        assert abs(hit.score - float(q @ reference.embed(hit.text))) < REF_DOT_TOL
    assert hits[0].text == DOCS[[r["id"] for r in RECORDS].index(hits[0].record_id)]


def test_search_accepts_qdrant_filters(client, fast_embedder):
    ingest(client, "docs", fast_embedder, RECORDS)
    only = models.Filter(must=[models.FieldCondition(key="metadata.lang",
                                                     match=models.MatchValue(value="xx"))])
    hits = search(client, "docs", fast_embedder, "text", limit=10, query_filter=only)
    assert sorted(h.record_id for h in hits) == ["d4", "d5", "d6"]
    assert all(h.metadata["lang"] == "xx" for h in hits)


def test_rerun_leaves_each_record_once_without_embedding(client, fast_embedder):
    ingest(client, "docs", fast_embedder, RECORDS)
    again = ingest(client, "docs", fast_embedder, RECORDS)
    assert (again.embedded, again.written, again.skipped) == (0, 0, 7)
    assert client.count("docs", exact=True).count == 7


def test_a_partly_stored_batch_embeds_only_the_missing_records(client, fast_embedder):
    # What a crash in the middle of a batch leaves behind (points are written one by one).
    ingest(client, "docs", fast_embedder, RECORDS[:3])
    report = ingest(client, "docs", fast_embedder, RECORDS, batch_size=100)
    assert (report.embedded, report.written, report.skipped) == (4, 4, 3)
    assert client.count("docs", exact=True).count == 7


def test_records_without_ids_are_keyed_by_text(client, fast_embedder):
    report = ingest(client, "docs", fast_embedder, [*DOCS, DOCS[0]], batch_size=100)
    assert report.duplicates == 1 and report.embedded == 7
    ingest(client, "docs", fast_embedder, DOCS[:2])
    assert client.count("docs", exact=True).count == 7
    assert set(_stored(client, "docs")) == {point_id(None, t) for t in DOCS}


def test_edited_text_is_reembedded_and_edited_metadata_rewritten(
    client, fast_embedder, reference
):
    ingest(client, "docs", fast_embedder, RECORDS)
    edited = [dict(r) for r in RECORDS]
    edited[1] = {**edited[1], "text": "An entirely new second document."}
    edited[2] = {**edited[2], "metadata": {"n": 2, "lang": "fr"}}
    report = ingest(client, "docs", fast_embedder, edited)
    assert (report.embedded, report.written, report.updated, report.skipped) == (1, 2, 2, 5)
    assert ingest(client, "docs", fast_embedder, edited).skipped == 7  # stored exactly
    stored = _stored(client, "docs")
    p1 = stored[point_id("d1")]
    assert p1.payload["text"] == "An entirely new second document."
    assert float(np.asarray(p1.vector) @ reference.embed(p1.payload["text"])) >= COS_MIN
    p2 = stored[point_id("d2")]
    assert p2.payload["metadata"] == {"n": 2, "lang": "fr"}
    assert float(np.asarray(p2.vector) @ reference.embed(DOCS[2])) >= COS_MIN  # vector kept
    assert client.count("docs", exact=True).count == 7


def test_bad_records_are_reported_or_raised_never_dropped(client, fast_embedder):
    bad = [RECORDS[0], {"id": "x"}, {"text": 42}, {"text": "  "}, "", 7, RECORDS[1]]
    report = ingest(client, "docs", fast_embedder, bad)
    assert [b.position for b in report.bad] == [1, 2, 3, 4, 5]
    assert "no 'text' field" in report.bad[0].reason and report.bad[0].record_id == "x"
    assert "the text is int" in report.bad[1].reason
    assert "empty" in report.bad[2].reason and "empty" in report.bad[3].reason
    assert "record 5 is int" in report.bad[4].reason
    assert report.seen == report.written + report.skipped + len(report.bad) == 7
    with pytest.raises(InvalidInputError, match="record 1 has no 'text'") as info:
        ingest(client, "other", fast_embedder, bad, on_error="raise")
    assert info.value.index == 1


def test_ingest_streams_in_batches(client, fast_embedder):
    consumed = itertools.count()

    def stream():
        for i in range(25):
            next(consumed)
            yield f"streamed record number {i}"

    seen_at_batch = []
    ingest(client, "docs", fast_embedder, stream(), batch_size=10,
           on_batch=lambda r: seen_at_batch.append((r.seen, r.written)))
    # The first batch was written after reading 10 records, not the whole stream.
    assert seen_at_batch == [(10, 10), (20, 20), (25, 25)]
    assert next(consumed) == 25


def test_progress_bar_on_request(client, fast_embedder, capsys):
    ingest(client, "docs", fast_embedder, DOCS, progress=True)
    err = capsys.readouterr().err
    assert "ingest" in err and "7/7" in err
    ingest(client, "docs", fast_embedder, DOCS)
    assert capsys.readouterr().err == ""


def test_reopened_collection_refuses_another_size_model_or_task(
    tmp_path, fast_embedder, tiny_model, tiny_model_no_eos
):
    path = str(tmp_path / "q")
    c = QdrantClient(path=path)
    ingest(c, "docs", fast_embedder, DOCS)
    c.close()
    others = {
        "holds 64-dimensional vectors but the embedder makes 32":
            dict(model=tiny_model, dimensions=32),
        "made with model 'tiny-eos.gguf'": dict(model=tiny_model_no_eos),
        "query instruction": dict(model=tiny_model, task="question_answering"),
    }
    c = QdrantClient(path=path)  # a new client: the record comes from disk
    assert check_collection(c, "docs", fast_embedder)["dimensions"] == 64
    for message, kwargs in others.items():
        with Qwen3Embedder.local(kwargs.pop("model"), n_threads=THREADS, **kwargs) as other:
            with pytest.raises(ConfigurationError, match=message):
                ensure_collection(c, "docs", other)
            with pytest.raises(ConfigurationError, match=message):
                search(c, "docs", other, "q")
            with pytest.raises(ConfigurationError, match=message):
                ingest(c, "docs", other, ["x"])
    assert c.count("docs", exact=True).count == 7
    c.close()


def test_foreign_collections(client, fast_embedder):
    client.create_collection("dot", vectors_config=models.VectorParams(
        size=64, distance=models.Distance.DOT))
    with pytest.raises(ConfigurationError, match="uses Dot distance"):
        ensure_collection(client, "dot", fast_embedder)
    client.create_collection("named", vectors_config={"a": models.VectorParams(
        size=64, distance=models.Distance.COSINE)})
    with pytest.raises(ConfigurationError, match="named vectors"):
        ensure_collection(client, "named", fast_embedder)
    client.create_collection("plain", vectors_config=models.VectorParams(
        size=64, distance=models.Distance.COSINE))
    assert ensure_collection(client, "plain", fast_embedder)["model"] == "tiny-eos.gguf"  # adopted
    client.create_collection("used", vectors_config=models.VectorParams(
        size=64, distance=models.Distance.COSINE))
    client.upsert("used", [models.PointStruct(id=1, vector=[1.0] * 64)])
    with pytest.raises(ConfigurationError, match="no record of the model"):
        ensure_collection(client, "used", fast_embedder)
    with pytest.raises(ConfigurationError, match="has no collection 'missing'"):
        search(client, "missing", fast_embedder, "q")


def test_server_url_path_reports_an_unreachable_qdrant(fast_embedder):
    # No Qdrant server binary exists on this machine: the URL code path is the
    # same client calls; against a closed port it must say clearly what failed.
    url = f"http://127.0.0.1:{free_port()}"
    client = QdrantClient(url=url, timeout=5, check_compatibility=False)
    for call in (lambda: ensure_collection(client, "docs", fast_embedder),
                 lambda: ingest(client, "docs", fast_embedder, DOCS),
                 lambda: search(client, "docs", fast_embedder, "q")):
        with pytest.raises(ServerUnavailableError, match=f"cannot reach Qdrant at {url}"):
            call()
    client.close()


def test_wrong_arguments_are_our_errors(client, fast_embedder):
    # Issue 18: records=None raised TypeError, limit=0 a raw ValueError.
    with pytest.raises(InvalidInputTypeError, match="records must be an iterable"):
        ingest(client, "x", fast_embedder, None)
    ingest(client, "docs", fast_embedder, DOCS)
    for limit in (0, -1, 2.5, True):
        with pytest.raises(ConfigurationError, match="must be an int >= 1"):
            search(client, "docs", fast_embedder, "q", limit=limit)
    with pytest.raises(ConfigurationError, match="cleanup must be None"):
        ingest(client, "docs", fast_embedder, DOCS, cleanup="yes")
