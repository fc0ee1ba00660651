"""Qwen3-Embedding for Qdrant: collections that know their model, re-runnable ingestion.

>>> from qdrant_client import QdrantClient
>>> from qwen3_embed_core import Qwen3Embedder, Qwen3Reranker
>>> from qwen3_embed_qdrant import ensure_collection, ingest, search
>>> client = QdrantClient(path="./db")          # or QdrantClient(url="http://host:6333")
>>> emb = Qwen3Embedder.local("Qwen3-Embedding-0.6B-Q8_0.gguf")
>>> report = ingest(client, "docs", emb, ["Paris is the capital of France."])
>>> hits = search(client, "docs", emb, "capital of France?", limit=5)
>>> rr = Qwen3Reranker.local("Qwen3-Reranker-0.6B-Q8_0.gguf")      # two-stage retrieval:
>>> hits = search(client, "docs", emb, "capital of France?", limit=5, rerank=rr, candidates=50)

The collection records the model, dimensions and instructions in Qdrant's
collection metadata (``CollectionInfo.config.metadata["qwen3_embed"]``):
the same place on an embedded store and on a server, invisible to point
counts, scrolls and searches. Every call checks it, so a collection made with
another model or size is refused instead of silently compared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from qwen3_embed_core import (
    ConfigurationError,
    EmbedderSpec,
    Hit,
    IngestReport,
    Qwen3Embedder,
    ServerError,
    ServerUnavailableError,
)
from qwen3_embed_core.adapters import (
    BatchCallback,
    OnError,
    Record,
    check_record,
    embedder_record,
    missing_dependency,
    rerank_candidates,
    rerank_hits,
    run_ingest,
)

if TYPE_CHECKING:
    from qwen3_embed_core import Qwen3Reranker

try:
    from qdrant_client import QdrantClient, models
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
except ImportError as exc:  # pragma: no cover - the qdrant extra is missing
    raise missing_dependency("qdrant-client", "qdrant", exc) from exc

from ._collection import QdrantCollection
from ._copy import copy_points
from ._edge import EdgeCollection, EdgeError

__all__ = [
    "METADATA_KEY", "check_collection", "collection_record", "ensure_collection", "ingest",
    "ingest_steps", "search", "store_errors",
]
__all__ += ["EdgeCollection", "EdgeError", "QdrantCollection", "copy_points"]

# Collection-metadata key of our record; the payload keys of every point.
METADATA_KEY = "qwen3_embed"
TEXT, METADATA, RECORD_ID, HASH = "text", "metadata", "record_id", "content_hash"


def _where(client: QdrantClient) -> str:
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
            f"cannot reach {_where(client)}: {exc.source!r}. Is the server running and the URL "
            "right? (an embedded store needs QdrantClient(path=...))"
        ) from exc
    except UnexpectedResponse as exc:
        body = exc.content.decode("utf-8", "replace")[:500]
        raise ServerError(
            f"{_where(client)} answered {exc.status_code}: {body}", exc.status_code or 0, body
        ) from exc


def _record(client: QdrantClient, name: str) -> tuple[Any, dict[str, Any] | None]:
    """(collection info, our record or None) of an existing collection."""
    info = client.get_collection(name)
    meta = info.config.metadata or {}
    return info, meta.get(METADATA_KEY)


def collection_record(client: QdrantClient, name: str) -> dict[str, Any] | None:
    """The qwen3-embed record of collection ``name``: None if there is no such collection,
    ``{}`` if it exists without one. ``record["embedder"]``, when present, is the
    ``EmbedderSpec`` config that rebuilds the embedder that made its vectors."""
    with store_errors(client):
        if not client.collection_exists(name):
            return None
        return _record(client, name)[1] or {}


def _check_vectors(info: Any, name: str, dimensions: int) -> None:
    params = info.config.params.vectors
    if not isinstance(params, models.VectorParams):
        raise ConfigurationError(
            f"Qdrant collection {name!r} has named vectors {sorted(params or {})}; "
            "qwen3_embed_qdrant writes one unnamed vector per point: use another collection"
        )
    if params.size != dimensions:
        raise ConfigurationError(
            f"Qdrant collection {name!r} holds {params.size}-dimensional vectors but the "
            f"embedder makes {dimensions}; use the collection's model and dimensions "
            "(Qwen3Embedder(..., dimensions=...)) or a new collection"
        )
    if params.distance != models.Distance.COSINE:
        raise ConfigurationError(
            f"Qdrant collection {name!r} uses {params.distance.value} distance; Qwen3 vectors "
            "are compared by cosine: create the collection with ensure_collection()"
        )


def ensure_collection(
    client: QdrantClient,
    name: str,
    embedder: Qwen3Embedder | None,
    *,
    spec: EmbedderSpec | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create ``name`` for ``embedder``'s vectors, or check that an existing one fits them.

    New: ``VectorParams(size=dimensions, distance=COSINE)`` and a record of
    model, dimensions and instructions in the collection metadata (plus
    ``spec``, how to rebuild the embedder: by default the spec the embedder
    was built from, when it was). Existing: size,
    distance and record must match, else :class:`ConfigurationError`; an
    empty collection without a record is adopted. Returns the record.
    ``record``: the vectors' facts (``embedder_record``) when the embedder
    lives elsewhere (a Ray driver); ``embedder`` is None then.
    """
    if record is None and embedder is None:
        raise ConfigurationError("ensure_collection needs the embedder or its record")
    current = record if record is not None else embedder_record(embedder)  # type: ignore[arg-type]
    spec = spec if spec is not None else getattr(embedder, "spec", None)
    # What a new or adopted collection records: the vectors' facts, and how to rebuild.
    new_record = {**current, **({"embedder": spec.to_config()} if spec else {})}
    with store_errors(client):
        if not client.collection_exists(name):
            client.create_collection(
                name,
                vectors_config=models.VectorParams(
                    size=current["dimensions"], distance=models.Distance.COSINE
                ),
                metadata={METADATA_KEY: new_record},
            )
            if _record(client, name)[1] is None:  # a server too old to keep it
                raise ConfigurationError(
                    f"{_where(client)} did not keep the collection metadata that records the "
                    "model; qwen3_embed_qdrant needs a Qdrant with collection metadata (1.16+)"
                )
            return new_record
        info, record = _record(client, name)
        _check_vectors(info, name, current["dimensions"])
        if record is None:
            if client.count(name, exact=True).count:
                raise ConfigurationError(
                    f"Qdrant collection {name!r} has points but no record of the model that "
                    "made them (it was not created by qwen3-embed); cannot check they match: "
                    "use a new collection"
                )
            client.update_collection(name, metadata={METADATA_KEY: new_record})
            return new_record
    check_record(record, current, f"Qdrant collection {name!r}")
    return record


def check_collection(client: QdrantClient, name: str, embedder: Qwen3Embedder) -> dict[str, Any]:
    """Like :func:`ensure_collection` but never creates or changes anything."""
    with store_errors(client):
        if not client.collection_exists(name):
            raise ConfigurationError(f"{_where(client)} has no collection {name!r}")
        info, record = _record(client, name)
    current = embedder_record(embedder)
    _check_vectors(info, name, current["dimensions"])
    if record is None:
        raise ConfigurationError(
            f"Qdrant collection {name!r} has no qwen3-embed record; it was not made by "
            "ensure_collection()/ingest()"
        )
    check_record(record, current, f"Qdrant collection {name!r}")
    return record


def ingest(
    client: QdrantClient,
    name: str,
    embedder: Qwen3Embedder,
    records: Iterable[object],
    batch_size: int = 64,
    *,
    on_error: OnError = "skip",
    progress: bool = False,
    on_batch: BatchCallback | None = None,
    spec: EmbedderSpec | None = None,
) -> IngestReport:
    """Embed and write ``records``, creating the collection if needed; safe to re-run.

    Point ids are ``uuid5`` of the record's id, else of its text. Per batch,
    stored points are looked up by id first: unchanged ones are skipped
    without embedding, edited text is re-embedded, edited metadata rewritten.

    Args:
        client: an embedded (``path=``) or server (``url=``) Qdrant client.
        name: the collection.
        embedder: makes the document vectors.
        records: any iterable (read lazily) of ``str`` or ``{"id"?, "text", "metadata"?}``.
        batch_size: records embedded and written at a time.
        on_error: ``"skip"`` reports bad records in ``report.bad`` and goes on;
            ``"raise"`` stops at the first.
        progress: show a tqdm bar (the ``cli`` extra).
        on_batch: called with the running report after each batch is written.
        spec: how to rebuild the embedder, recorded in a new collection
            (default: the spec the embedder was built from, if any).
    """
    ensure_collection(client, name, embedder, spec=spec)
    return run_ingest(
        records, embed=embedder.embed_documents, **ingest_steps(client, name),
        batch_size=batch_size, on_error=on_error, progress=progress, on_batch=on_batch,
    )


def ingest_steps(client: QdrantClient, name: str) -> dict[str, Any]:
    """The store's side of ``run_ingest`` for collection ``name``: its ``lookup``,
    ``labels``, ``write`` and ``relabel`` keyword arguments. :func:`ingest` and
    ``qwen3_embed_ray`` (whose vectors are made elsewhere) both write through these."""

    def lookup(batch: list[Record]) -> dict[str, tuple[object, object]]:
        with store_errors(client):
            found = client.retrieve(name, ids=[r.id for r in batch],
                                    with_payload=[HASH, METADATA, RECORD_ID], with_vectors=False)
        return {str(p.id): ((p.payload or {}).get(HASH), _labels(p.payload or {})) for p in found}

    def write(recs: list[Record], vectors: Any) -> None:
        points = [models.PointStruct(id=r.id, vector=v.tolist(), payload=_payload(r))
                  for r, v in zip(recs, vectors, strict=True)]
        with store_errors(client):
            client.upsert(name, points=points, wait=True)

    def relabel(recs: list[Record]) -> None:
        ops = [models.SetPayloadOperation(set_payload=models.SetPayload(
            payload={METADATA: r.metadata, RECORD_ID: r.record_id}, points=[r.id])) for r in recs]
        with store_errors(client):
            client.batch_update_points(name, ops)

    return {"lookup": lookup, "labels": lambda r: _labels(_payload(r)), "write": write,
            "relabel": relabel}


def _labels(payload: dict[str, Any]) -> tuple[object, object]:
    return payload.get(METADATA), payload.get(RECORD_ID)


def _payload(rec: Record) -> dict[str, Any]:
    return {TEXT: rec.text, METADATA: rec.metadata, RECORD_ID: rec.record_id, HASH: rec.hash}


def search(
    client: QdrantClient,
    name: str,
    embedder: Qwen3Embedder,
    query: str,
    limit: int = 5,
    query_filter: models.Filter | None = None,
    *,
    rerank: Qwen3Reranker | None = None,
    candidates: int | None = None,
) -> list[Hit]:
    """The ``limit`` nearest points to ``query`` (embedded with the instruction), best first.

    ``query_filter``: a ``qdrant_client.models.Filter`` on the payload, e.g.
    ``Filter(must=[FieldCondition(key="metadata.lang", match=MatchValue(value="en"))])``.
    ``Hit.score`` is the cosine similarity.

    Two-stage retrieval with ``rerank=`` (a ``Qwen3Reranker``): the
    ``candidates`` nearest points (default ``max(4 * limit, 20)``) are
    reranked against the bare query and the ``limit`` most relevant are
    returned; ``Hit.score`` is then the relevance score P(yes) in [0, 1] and
    ``Hit.vector_score`` the cosine.
    """
    fetch = rerank_candidates(limit, rerank, candidates)
    check_collection(client, name, embedder)
    vector = embedder.embed_query(query)
    with store_errors(client):
        result = client.query_points(
            name, query=vector.tolist(), limit=fetch, query_filter=query_filter, with_payload=True
        )
    hits = [
        Hit(
            id=str(p.id), score=float(p.score), text=(p.payload or {}).get(TEXT, ""),
            metadata=(p.payload or {}).get(METADATA) or {},
            record_id=(p.payload or {}).get(RECORD_ID),
        )
        for p in result.points
    ]
    return hits if rerank is None else rerank_hits(rerank, query, hits, limit)
