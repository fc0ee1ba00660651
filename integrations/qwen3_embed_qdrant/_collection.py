"""``QdrantCollection``: the store protocol (``qwen3_embed_core.stores``) on Qdrant.

One class for the embedded store (``QdrantClient(path=...)``) and a server
(``QdrantClient(url=...)``). The profile is kept in Qdrant's collection
metadata (``config.metadata["qwen3_embed"]``); each point's payload is
``Point.payload()``. On a server, keyword payload indexes on the source and
scope fields keep the sync filters from scanning (the embedded store has no
payload indexes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qwen3_embed_core import ConfigurationError, Hit, ServerError, ServerUnavailableError
from qwen3_embed_core.adapters import missing_dependency
from qwen3_embed_core.stores import (
    FIELDS,
    PROFILE_KEY,
    SCOPE,
    SOURCE,
    TEXT,
    Point,
    StoreURI,
    check_profile,
)

from ._edge import is_edge_shard

try:
    from qdrant_client import QdrantClient, models
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
except ImportError as exc:  # pragma: no cover - the qdrant extra is missing
    raise missing_dependency("qdrant-client", "qdrant", exc) from exc

# Ids per retrieve/delete request and points per scroll page: big enough that a large
# collection costs few round trips, small enough to keep each request quick.
PAGE = 1000
_NO_TEXT = [f for f in FIELDS if f != TEXT]  # what lookups need: everything but the text


def where_of(client: QdrantClient) -> str:
    """The store, for messages: ``Qdrant at URL`` or ``the embedded Qdrant store at PATH``."""
    inner = client._client  # QdrantRemote (rest_uri) or QdrantLocal (location)
    remote = getattr(inner, "rest_uri", None)
    return f"Qdrant at {remote}" if remote else f"the embedded Qdrant store at {inner.location}"


@contextlib.contextmanager
def store_errors(client: QdrantClient) -> Iterator[None]:
    """Turn transport failures into the core's errors, naming the server."""
    try:
        yield
    except ResponseHandlingException as exc:
        raise ServerUnavailableError(
            f"cannot reach {where_of(client)}: {exc.source!r}. Is the server running and the "
            "URL right? (an embedded store needs QdrantClient(path=...))"
        ) from exc
    except UnexpectedResponse as exc:
        body = exc.content.decode("utf-8", "replace")[:500]
        raise ServerError(
            f"{where_of(client)} answered {exc.status_code}: {body}", exc.status_code or 0, body
        ) from exc


def _chunks(items: Sequence[Any], size: int = PAGE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _match(key: str, values: Sequence[str]) -> models.Filter:
    condition = models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
    return models.Filter(must=[condition])


class QdrantCollection:
    """A Qdrant collection as the store layer sees it (see ``qwen3_embed_core.stores``).

    Args:
        client: an embedded (``path=``) or server (``url=``) client.
        name: the collection.
        uri: the URI it is known by (default: made from the client).
        owns_client: close the client in :meth:`close`.
    """

    def __init__(self, client: QdrantClient, name: str, uri: StoreURI | None = None,
                 *, owns_client: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a Qdrant collection name is a non-empty str, not {name!r}")
        self.client, self.name, self._owns = client, name, owns_client
        inner = client._client
        self.remote = getattr(inner, "rest_uri", None) is not None
        self.uri = uri or (StoreURI("qdrant", name, url=inner.rest_uri) if self.remote
                           else StoreURI("qdrant", name, path=Path(str(inner.location))))
        self._closed = False

    @classmethod
    def open(cls, uri: StoreURI, *, create: bool) -> QdrantCollection:
        """Connect to the store of ``uri`` (``create=False``: its folder must exist)."""
        if uri.path is not None:
            if is_edge_shard(uri.path / uri.collection):  # qdrant-client would start afresh
                raise ConfigurationError(
                    f"{uri.path / uri.collection} is a Qdrant Edge shard, which qdrant-client "
                    f"cannot read: open it as qdrant-edge:{uri.path}/{uri.collection} (or copy "
                    "it with qwen3_embed_qdrant.copy_points())")
            if not create and not uri.path.is_dir():
                raise ConfigurationError(f"no qdrant store at {uri.path} (ingest into it first)")
            try:
                client = QdrantClient(path=str(uri.path))
            except RuntimeError as exc:  # embedded Qdrant: one process at a time
                raise ConfigurationError(f"{uri}: {exc}") from exc
        else:
            client = QdrantClient(url=uri.url, check_compatibility=False)
        return cls(client, uri.collection, uri, owns_client=True)

    @property
    def label(self) -> str:
        return f"Qdrant collection {self.name!r}"

    # -- the profile ---------------------------------------------------------------------

    def _info(self) -> tuple[Any, dict[str, Any] | None]:
        info = self.client.get_collection(self.name)
        return info, (info.config.metadata or {}).get(PROFILE_KEY)

    def profile(self) -> dict[str, Any] | None:
        with store_errors(self.client):
            if not self.client.collection_exists(self.name):
                return None
            return self._info()[1] or {}

    def check_vectors(self, info: Any, dimensions: int) -> None:
        """Refuse named vectors, another size or another distance."""
        params = info.config.params.vectors
        if not isinstance(params, models.VectorParams):
            raise ConfigurationError(
                f"{self.label} has named vectors {sorted(params or {})}; qwen3-embed writes "
                "one unnamed vector per point: use another collection")
        if params.size != dimensions:
            raise ConfigurationError(
                f"{self.label} holds {params.size}-dimensional vectors but the embedder makes "
                f"{dimensions}; use the collection's model and dimensions "
                "(Qwen3Embedder(..., dimensions=...)) or a new collection")
        if params.distance != models.Distance.COSINE:
            raise ConfigurationError(
                f"{self.label} uses {params.distance.value} distance; Qwen3 vectors are "
                "compared by cosine: create the collection with ensure_collection()")

    def ensure(self, profile: dict[str, Any]) -> dict[str, Any]:
        with store_errors(self.client):
            if not self.client.collection_exists(self.name):
                self.client.create_collection(
                    self.name, vectors_config=models.VectorParams(
                        size=profile["dimensions"], distance=models.Distance.COSINE),
                    metadata={PROFILE_KEY: profile})
                if self._info()[1] is None:  # a server too old to keep it
                    raise ConfigurationError(
                        f"{where_of(self.client)} did not keep the collection metadata that "
                        "records the model; qwen3-embed needs Qdrant 1.16+")
                if self.remote:  # the sync filters: source and scope (embedded: no indexes)
                    for key in (SOURCE, SCOPE):
                        self.client.create_payload_index(self.name, key, "keyword")
                return profile
            info, stored = self._info()
            self.check_vectors(info, profile["dimensions"])
            if stored is None:
                if self.client.count(self.name, exact=True).count:
                    raise ConfigurationError(
                        f"{self.label} has points but no record of the model that made them "
                        "(it was not created by qwen3-embed); cannot check they match: use a "
                        "new collection")
                self.client.update_collection(self.name, metadata={PROFILE_KEY: profile})
                return profile
            check_profile(stored, profile, self.label)
            if "embedder" not in stored and "embedder" in profile:  # an earlier version's
                stored = {**stored, "embedder": profile["embedder"]}
                self.client.update_collection(self.name, metadata={PROFILE_KEY: stored})
            return stored

    # -- points --------------------------------------------------------------------------

    def lookup(self, ids: Sequence[str]) -> dict[str, Point]:
        found: dict[str, Point] = {}
        with store_errors(self.client):
            for part in _chunks(list(ids)):
                for p in self.client.retrieve(self.name, ids=list(part), with_payload=_NO_TEXT,
                                              with_vectors=False):
                    found[str(p.id)] = Point.from_payload(str(p.id), p.payload)
        return found

    def write(self, points: Sequence[Point], vectors: np.ndarray | None) -> None:
        if not points:
            return
        with store_errors(self.client):
            if vectors is None:
                # Top-level keys are replaced whole (metadata too); the text is kept.
                ops = [models.SetPayloadOperation(set_payload=models.SetPayload(
                    payload={k: v for k, v in p.payload().items() if k != TEXT}, points=[p.id]))
                    for p in points]
                for part in _chunks(ops):
                    self.client.batch_update_points(self.name, list(part), wait=True)
                return
            structs = [models.PointStruct(id=p.id, vector=np.asarray(v).tolist(),
                                          payload=p.payload())
                       for p, v in zip(points, vectors, strict=True)]
            for part in _chunks(structs, 256):
                self.client.upsert(self.name, points=list(part), wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        with store_errors(self.client):
            for part in _chunks(list(ids)):
                self.client.delete(self.name, points_selector=models.PointIdsList(
                    points=list(part)), wait=True)

    def _scroll(self, flt: models.Filter | None, payload: Any) -> Iterator[Any]:
        offset = None
        with store_errors(self.client):
            while True:
                page, offset = self.client.scroll(self.name, scroll_filter=flt, limit=PAGE,
                                                  offset=offset, with_payload=payload,
                                                  with_vectors=False)
                yield from page
                if offset is None:
                    return

    def source_points(self, sources: Sequence[str]) -> dict[str, dict[str, Point]]:
        out: dict[str, dict[str, Point]] = {}
        for part in _chunks(list(dict.fromkeys(sources)), 256):
            for p in self._scroll(_match(SOURCE, part), _NO_TEXT):
                point = Point.from_payload(str(p.id), p.payload)
                out.setdefault(point.source, {})[point.id] = point
        return out

    def sources(self, scope: str) -> set[str]:
        return {(p.payload or {}).get(SOURCE) or "" for p in self._scroll(
            _match(SCOPE, [scope]), [SOURCE])}

    def points(self, scope: str | None = None) -> Iterator[Point]:
        flt = None if scope is None else _match(SCOPE, [scope])
        for p in self._scroll(flt, True):
            yield Point.from_payload(str(p.id), p.payload)

    def count(self) -> int:
        with store_errors(self.client):
            return int(self.client.count(self.name, exact=True).count)

    def search(self, vector: np.ndarray, limit: int, where: Any = None) -> list[Hit]:
        with store_errors(self.client):
            result = self.client.query_points(
                self.name, query=np.asarray(vector).tolist(), limit=limit, query_filter=where,
                with_payload=True)
        hits = []
        for p in result.points:
            point = Point.from_payload(str(p.id), p.payload)
            hits.append(Hit(id=point.id, score=float(p.score), text=point.text,
                            metadata=point.metadata, record_id=point.record_id))
        return hits

    def finish(self) -> None:
        """Nothing to do: Qdrant indexes as it writes."""

    def close(self) -> None:
        if self._owns and not self._closed:
            self.client.close()
        self._closed = True

