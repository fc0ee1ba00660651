"""Every store of ``tests.stores.STORE_URIS`` against the Collection protocol, on real storage.

What ``qwen3_embed_core.stores`` promises of each method, checked on each store with
real vectors (the tiny model's): profiles, create-or-validate, lookups, writes with and
without vectors, deletes, a source's points, scopes, search scores and reopening.
"""

from __future__ import annotations

import numpy as np
import pytest

from qwen3_embed_core import ConfigurationError, content_hash, point_id
from qwen3_embed_core.stores import (
    DEFAULT_SCOPE,
    Collection,
    Point,
    StoreURIError,
    open_collection,
    parse_uri,
)

from .stores import STORE_URIS, local_embedder, store_profile

TEXTS = [f"chunk {i} of the protocol test, about topic {i % 3}" for i in range(12)]


@pytest.fixture(scope="module")
def emb(tiny_model):
    yield from local_embedder(tiny_model)


def _points(source="s1", scope=DEFAULT_SCOPE, texts=TEXTS[:4], source_hash="h1"):
    return [Point(id=point_id(f"{source}#{i}"), text=t, metadata={"i": i, "tags": ["a"]},
                  record_id=f"{source}#{i}", hash=content_hash(t), source=source,
                  source_hash=source_hash, scope=scope) for i, t in enumerate(texts)]


def test_uri_forms():
    assert parse_uri("qdrant:./db/docs").path.as_posix() == "db"
    assert parse_uri("qdrant-edge:/x/edge/docs").collection == "docs"
    server = parse_uri("chroma+https://h.example:8000/docs")
    assert (server.url, server.collection, server.embedded) == ("https://h.example:8000",
                                                                "docs", False)
    for bad in ("mongo:./db/docs", "qdrant:docs", "qdrant:./docs", "qdrant:./db1/",
                "qdrant+ftp://h/docs", "qdrant+http://h:1/a/b", "chroma:",
                "qdrant-edge+http://h:1/docs"):
        with pytest.raises(StoreURIError, match="bad store URI"):
            parse_uri(bad)


def test_collection_protocol(store_uri, emb, reference):
    col = open_collection(store_uri, create=True)
    try:
        assert isinstance(col, Collection)
        assert col.profile() is None
        profile = store_profile(emb)
        assert col.ensure(profile)["dimensions"] == emb.dimensions
        assert col.profile()["embedder"] == profile["embedder"]
        assert col.ensure(profile)["model"] == profile["model"]  # validate, no change
        with pytest.raises(ConfigurationError, match="dimensions"):
            col.ensure({**profile, "dimensions": 32})

        pts = _points() + _points("s2", "other", TEXTS[4:7], "h2")
        vectors = emb.embed_documents([p.text for p in pts])
        col.write(pts, vectors)
        assert col.count() == 7
        got = col.lookup([p.id for p in pts[:3]] + [point_id("absent")])
        assert set(got) == {p.id for p in pts[:3]}
        for p in pts[:3]:
            g = got[p.id]
            assert (g.hash, g.metadata, g.record_id, g.source, g.source_hash, g.scope,
                    g.synced) == (p.hash, p.metadata, p.record_id, "s1", "h1", "", None)

        # Fields without vectors: the vector is kept.
        head = pts[0].with_synced("h1")
        col.write([head], None)
        assert col.lookup([head.id])[head.id].synced == "h1"
        hits = col.search(emb.embed_query(TEXTS[0]), 3)
        q = emb.embed_query(TEXTS[0])
        best = sorted(range(7), key=lambda k: -float(vectors[k] @ q))[:3]
        assert [h.id for h in hits] == [pts[k].id for k in best]
        assert np.allclose([h.score for h in hits], [float(vectors[k] @ q) for k in best],
                           atol=1e-5)
        assert hits[0].text and isinstance(hits[0].metadata, dict)
        assert "source_id" not in hits[0].metadata and "content_hash" not in hits[0].metadata

        by_source = col.source_points(["s1", "s2", "nope"])
        assert set(by_source) == {"s1", "s2"}
        assert set(by_source["s1"]) == {p.id for p in pts[:4]}
        assert set(by_source["s2"]) == {p.id for p in pts[4:]}
        assert col.sources(DEFAULT_SCOPE) == {"s1"} and col.sources("other") == {"s2"}
        listed = list(col.points("other"))
        assert sorted(p.text for p in listed) == sorted(TEXTS[4:7])
        assert len(list(col.points())) == 7

        col.delete([pts[1].id, pts[5].id, point_id("absent")])
        assert col.count() == 5
        assert set(col.source_points(["s1"])["s1"]) == {pts[0].id, pts[2].id, pts[3].id}
        col.finish()
    finally:
        col.close()
    col.close()  # idempotent

    again = open_collection(store_uri)  # reopened: what was written is there
    try:
        assert again.count() == 5 and again.profile()["dimensions"] == emb.dimensions
        stored = {p.id: p for p in again.points()}
        assert stored[pts[0].id].text == TEXTS[0] and stored[pts[0].id].synced == "h1"
    finally:
        again.close()


@pytest.mark.parametrize("kind", [k for k in STORE_URIS if "server" not in k])
def test_an_embedded_store_that_does_not_exist_is_not_created(tmp_path, kind, store_servers):
    uri = parse_uri(STORE_URIS[kind](tmp_path, store_servers))
    assert uri.embedded
    with pytest.raises(ConfigurationError, match=f"no {uri.kind} store at"):
        open_collection(uri)
    assert not uri.path.exists()
