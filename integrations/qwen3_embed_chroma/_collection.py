"""``ChromaCollection``: the store protocol (``qwen3_embed_core.stores``) on Chroma.

Persistent (``chromadb.PersistentClient``) or a server (``HttpClient``). The
collection keeps its ``Qwen3EmbeddingFunction`` config (Chroma rebuilds it on
reopen) and our profile in its metadata (``"qwen3_embed"``, JSON). Point
fields are flat metadata keys; the record's own metadata is kept twice: as
flat keys for ``where`` filters (nested values as JSON text) and exactly, as
JSON under ``"qwen3_metadata"``, so what is read back equals what was written
(Chroma's floats would turn ``10**30`` into ``1e+30``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from qwen3_embed_core import ConfigurationError, EmbedderSpec, Hit, ServerUnavailableError
from qwen3_embed_core.adapters import spec_record
from qwen3_embed_core.stores import (
    HASH,
    PROFILE_KEY,
    RECORD_ID,
    SCOPE,
    SOURCE,
    SOURCE_HASH,
    SYNCED,
    Point,
    StoreURI,
    check_profile,
)

from ._function import Qwen3EmbeddingFunction, function_of

# The record's metadata, exactly, as JSON (flat keys can't hold nesting or big ints).
EXACT = "qwen3_metadata"
RESERVED = (HASH, RECORD_ID, SOURCE, SOURCE_HASH, SCOPE, SYNCED, EXACT)
PAGE = 1000  # ids per get/delete, rows per page (Chroma's limit is ~5,000)
INT64 = (-(2**63), 2**63 - 1)


def _flat(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):  # outside int64 Chroma would store a float: keep the digits
        return value if INT64[0] <= value <= INT64[1] else str(value)
    return json.dumps(value, ensure_ascii=False)


def flat_metadata(p: Point) -> dict[str, Any]:
    """The Chroma metadata of a point: filterable flat keys plus the exact fields."""
    meta = {k: _flat(v) for k, v in p.metadata.items() if v is not None}
    fields = {HASH: p.hash, RECORD_ID: p.record_id, SOURCE: p.source, SOURCE_HASH: p.source_hash,
              SCOPE: p.scope, SYNCED: p.synced,
              EXACT: json.dumps(p.metadata, ensure_ascii=False, sort_keys=True)}
    return {**meta, **{k: _flat(v) for k, v in fields.items() if v is not None}}


def point_of(point_id: str, meta: dict[str, Any] | None, text: str | None = None) -> Point:
    """The point a row's metadata describes (an earlier version's rows have no source fields)."""
    m = dict(meta or {})
    if EXACT in m:
        metadata = json.loads(m[EXACT])
    else:
        metadata = {k: v for k, v in m.items() if k not in RESERVED}
    rid = m.get(RECORD_ID)
    return Point(id=point_id, text=text or "", metadata=metadata, record_id=rid,
                 hash=m.get(HASH) or "", source=m.get(SOURCE) or "",
                 source_hash=m.get(SOURCE_HASH) or "", scope=m.get(SCOPE) or "",
                 synced=m.get(SYNCED))


def _parts(items: Sequence[Any], size: int = PAGE) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def client_for(uri: StoreURI) -> Any:
    """A Chroma client for ``uri``: persistent (a folder) or HTTP (a server)."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)  # never phone home
    if uri.path is not None:
        return chromadb.PersistentClient(str(uri.path), settings=settings)
    parts = urlsplit(uri.url or "")
    try:
        return chromadb.HttpClient(
            host=parts.hostname or "", ssl=parts.scheme == "https", settings=settings,
            port=parts.port or (443 if parts.scheme == "https" else 8000))
    except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
        raise ServerUnavailableError(f"cannot reach Chroma at {uri.url}: {exc}") from exc


class ChromaCollection:
    """A Chroma collection as the store layer sees it (see ``qwen3_embed_core.stores``).

    Args:
        client: a Chroma client (or None with ``collection``).
        name: the collection name.
        uri: the URI it is known by.
        collection: an already opened collection.
    """

    def __init__(self, client: Any, name: str, uri: StoreURI | None = None,
                 collection: Any = None) -> None:
        self.client, self.name = client, name
        self.uri = uri or StoreURI("chroma", name, url="chroma")
        self._col = collection
        self._owns = client is not None  # a collection handed in keeps its function open

    @classmethod
    def open(cls, uri: StoreURI, *, create: bool) -> ChromaCollection:
        if uri.path is not None and not create and not uri.path.is_dir():
            raise ConfigurationError(f"no chroma store at {uri.path} (ingest into it first)")
        return cls(client_for(uri), uri.collection, uri)

    @classmethod
    def of(cls, collection: Any) -> ChromaCollection:
        """The store-layer view of an opened Chroma collection."""
        return cls(None, collection.name, StoreURI("chroma", collection.name, url="chroma"),
                   collection)

    @property
    def label(self) -> str:
        return f"Chroma collection {self.name!r}"

    def collection(self) -> Any:
        """The Chroma collection, or None while it does not exist."""
        if self._col is None:
            from chromadb.errors import NotFoundError

            try:
                self._col = self.client.get_collection(self.name)
            except NotFoundError:
                return None
        return self._col

    def _need(self) -> Any:
        col = self.collection()
        if col is None:
            raise ConfigurationError(f"{self.uri} has no collection {self.name!r}")
        return col

    # -- the profile ---------------------------------------------------------------------

    def profile(self) -> dict[str, Any] | None:
        col = self.collection()
        if col is None:
            return None
        raw = (col.metadata or {}).get(PROFILE_KEY)
        if raw:
            stored: dict[str, Any] = json.loads(raw)
            return stored
        ef = (col.configuration or {}).get("embedding_function")
        if not isinstance(ef, Qwen3EmbeddingFunction):
            return {}
        # An earlier version's collection: the function's spec; its size from a vector.
        record = {**spec_record(ef.spec), "embedder": ef.spec.to_config()}
        if record["dimensions"] is None:
            got = col.get(limit=1, include=["embeddings"])
            if len(got["ids"]):
                record["dimensions"] = len(got["embeddings"][0])
        return record

    def ensure(self, profile: dict[str, Any]) -> dict[str, Any]:
        if "embedder" not in profile:
            raise ConfigurationError(
                "a Chroma collection keeps the embedding function that rebuilds its model, "
                "and this embedder does not say how it was built: make it with "
                "Qwen3Embedder.local/model_runner or EmbedderSpec(...).build()")
        spec = EmbedderSpec.from_config(profile["embedder"])
        text = json.dumps(profile, sort_keys=True)
        col = self.collection()
        if col is None:
            ef = Qwen3EmbeddingFunction(spec=spec)
            self._col = self.client.get_or_create_collection(
                self.name, embedding_function=ef, metadata={PROFILE_KEY: text})
            function_of(self._col)  # a racing creator with another model is refused
            return profile
        function_of(col)  # refuses another embedding function or model
        stored = self.profile()
        assert stored is not None
        if stored.get("dimensions") is None:  # empty, made by an earlier version
            stored = {**stored, "dimensions": profile["dimensions"]}
        check_profile(stored, profile, self.label)
        if PROFILE_KEY not in (col.metadata or {}):  # upgrade: record the full profile
            col.modify(metadata={**(col.metadata or {}), PROFILE_KEY: json.dumps(
                {**profile, **stored}, sort_keys=True)})
        return stored

    # -- points --------------------------------------------------------------------------

    def lookup(self, ids: Sequence[str]) -> dict[str, Point]:
        col = self._need()
        out: dict[str, Point] = {}
        for part in _parts(list(dict.fromkeys(ids))):  # Chroma refuses repeated ids
            got = col.get(ids=part, include=["metadatas"])
            out.update((i, point_of(i, m)) for i, m in zip(got["ids"], got["metadatas"],
                                                           strict=True))
        return out

    def write(self, points: Sequence[Point], vectors: np.ndarray | None) -> None:
        col = self._need()
        for start in range(0, len(points), PAGE):
            part = list(points[start : start + PAGE])
            ids = [p.id for p in part]
            before = col.get(ids=ids, include=["metadatas"])
            old = dict(zip(before["ids"], before["metadatas"], strict=True))
            metas = []
            for p in part:  # Chroma merges metadata: None deletes the keys no longer there
                new = flat_metadata(p)
                metas.append({**{k: None for k in (old.get(p.id) or {}) if k not in new}, **new})
            if vectors is None:
                col.update(ids=ids, metadatas=metas)
            else:
                col.upsert(ids=ids, embeddings=np.asarray(vectors[start : start + PAGE]),
                           documents=[p.text for p in part], metadatas=metas)

    def delete(self, ids: Sequence[str]) -> None:
        col = self._need()
        for part in _parts(list(dict.fromkeys(ids))):
            col.delete(ids=part)

    def _rows(self, where: dict[str, Any] | None, documents: bool) -> Iterator[Point]:
        col = self._need()
        include = ["metadatas", "documents"] if documents else ["metadatas"]
        offset = 0
        while True:
            got = col.get(where=where, include=include, limit=PAGE, offset=offset)
            docs = got["documents"] if documents else [None] * len(got["ids"])
            for i, m, d in zip(got["ids"], got["metadatas"], docs, strict=True):
                yield point_of(i, m, d)
            if len(got["ids"]) < PAGE:
                return
            offset += PAGE

    def source_points(self, sources: Sequence[str]) -> dict[str, dict[str, Point]]:
        out: dict[str, dict[str, Point]] = {}
        if self.collection() is None:
            return out
        for part in _parts(list(dict.fromkeys(sources)), 256):
            for p in self._rows({SOURCE: {"$in": part}}, False):
                out.setdefault(p.source, {})[p.id] = p
        return out

    def sources(self, scope: str) -> set[str]:
        if self.collection() is None:
            return set()
        return {p.source for p in self._rows({SCOPE: scope}, False)}

    def points(self, scope: str | None = None) -> Iterator[Point]:
        yield from self._rows(None if scope is None else {SCOPE: scope}, True)

    def count(self) -> int:
        return int(self._need().count())

    def search(self, vector: np.ndarray, limit: int, where: Any = None) -> list[Hit]:
        col = self._need()
        result = col.query(query_embeddings=[np.asarray(vector)], n_results=limit, where=where,
                           include=["documents", "metadatas", "distances"])
        space = ((col.configuration or {}).get("hnsw") or {}).get("space") or "cosine"
        hits = []
        for i, text, meta, dist in zip(result["ids"][0], result["documents"][0],
                                       result["metadatas"][0], result["distances"][0],
                                       strict=True):
            # Chroma returns distances; for unit vectors each maps back to the cosine.
            score = 1.0 - dist / 2.0 if space == "l2" else 1.0 - dist
            p = point_of(i, meta, text)
            hits.append(Hit(id=i, score=float(score), text=p.text, metadata=p.metadata,
                            record_id=p.record_id))
        return hits

    def finish(self) -> None:
        """Nothing to do: Chroma indexes as it writes."""

    def close(self) -> None:
        if not self._owns:
            return
        col = self._col
        ef = getattr(col, "_embedding_function", None) if col is not None else None
        if isinstance(ef, Qwen3EmbeddingFunction):
            ef.close()
