"""Qwen3-Embedding for Qdrant: collections that know their model and stay true to their sources.

>>> from qdrant_client import QdrantClient
>>> from qwen3_embed_core import Qwen3Embedder, Qwen3Reranker
>>> from qwen3_embed_qdrant import ingest, search
>>> client = QdrantClient(path="./db")          # or QdrantClient(url="http://host:6333")
>>> emb = Qwen3Embedder.local("Qwen3-Embedding-0.6B-Q8_0.gguf")
>>> docs = [{"id": "p1", "text": "Paris is the capital of France.", "source": "notes.md"}]
>>> report = ingest(client, "docs", emb, docs, cleanup="incremental")
>>> hits = search(client, "docs", emb, "capital of France?", limit=5)
>>> rr = Qwen3Reranker.local("Qwen3-Reranker-0.6B-Q8_0.gguf")      # two-stage retrieval:
>>> hits = search(client, "docs", emb, "capital of France?", limit=5, rerank=rr, candidates=50)

The collection records the model, dimensions, instructions and the spec that
rebuilds the embedder in Qdrant's collection metadata
(``CollectionInfo.config.metadata["qwen3_embed"]``). Every call checks it, so
a collection made with another model or size is refused instead of silently
compared. :class:`QdrantCollection` is this store in the core's store layer
(``qwen3_embed_core.stores``), which the command line and Ray use too.

:class:`EdgeCollection` is Qdrant Edge (``qdrant-edge-py``, the Qdrant engine
in-process) in the same layer, for ``qdrant-edge:PATH/NAME`` URIs; and
:func:`copy_points` moves a collection between Qdrant Edge, the embedded
store and a server with its vectors (nothing re-embedded).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from qwen3_embed_core import ConfigurationError, EmbedderSpec, Hit, IngestReport, Qwen3Embedder
from qwen3_embed_core.adapters import (
    BatchCallback,
    Cleanup,
    OnError,
    check_limit,
    check_profile,
    embedder_profile,
    embedder_record,
    ingest_into,
    search_in,
)
from qwen3_embed_core.stores import PROFILE_KEY

from ._collection import QdrantClient, QdrantCollection, models, store_errors, where_of
from ._copy import copy_points
from ._edge import EdgeCollection, EdgeError

if TYPE_CHECKING:
    from qwen3_embed_core import Qwen3Reranker

__all__ = [
    "METADATA_KEY", "QdrantCollection", "check_collection", "collection_record",
    "ensure_collection", "ingest", "search", "store_errors",
]
__all__ += ["EdgeCollection", "EdgeError", "copy_points"]  # qdrant-edge: URIs (Qdrant Edge)

# Collection-metadata key of the profile (kept for earlier imports).
METADATA_KEY = PROFILE_KEY


def collection_record(client: QdrantClient, name: str) -> dict[str, Any] | None:
    """The qwen3-embed record of collection ``name``: None if there is no such collection,
    ``{}`` if it exists without one. ``record["embedder"]``, when present, is the
    ``EmbedderSpec`` config that rebuilds the embedder that made its vectors."""
    return QdrantCollection(client, name).profile()


def ensure_collection(
    client: QdrantClient,
    name: str,
    embedder: Qwen3Embedder | None,
    *,
    spec: EmbedderSpec | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create ``name`` for ``embedder``'s vectors, or check that an existing one fits them.

    New: ``VectorParams(size=dimensions, distance=COSINE)`` and the profile
    (model, dimensions, instructions, and ``spec``: by default the spec the
    embedder was built from). Existing: size, distance and profile must match,
    else :class:`ConfigurationError`; an empty collection without a record is
    adopted. Returns the record. ``record``: the vectors' facts when the
    embedder lives elsewhere (``embedder`` is None then).
    """
    if record is None and embedder is None:
        raise ConfigurationError("ensure_collection needs the embedder or its record")
    profile = (embedder_profile(embedder, spec) if embedder is not None
               else {**record, **({"embedder": spec.to_config()} if spec else {})})  # type: ignore[dict-item]
    return QdrantCollection(client, name).ensure(profile)


def check_collection(client: QdrantClient, name: str, embedder: Qwen3Embedder) -> dict[str, Any]:
    """Like :func:`ensure_collection` but never creates or changes anything."""
    col = QdrantCollection(client, name)
    stored = col.profile()
    if stored is None:
        raise ConfigurationError(f"{where_of(client)} has no collection {name!r}")
    with store_errors(client):
        info = client.get_collection(name)
    current = embedder_record(embedder)
    col.check_vectors(info, current["dimensions"])
    if not stored:
        raise ConfigurationError(
            f"Qdrant collection {name!r} has no qwen3-embed record; it was not made by "
            "ensure_collection()/ingest()")
    check_profile(stored, current, f"Qdrant collection {name!r}")
    return stored


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
    cleanup: Cleanup | None = None,
    scope: str | None = None,
    dry_run: bool = False,
) -> IngestReport:
    """Embed and write ``records``, creating the collection if needed; safe to re-run.

    Point ids are ``uuid5`` of the record's id, else of its text; unchanged
    records (and sources) are skipped without embedding, edited text is
    re-embedded, edited metadata rewritten.

    Args:
        client: an embedded (``path=``) or server (``url=``) Qdrant client.
        name: the collection.
        embedder: makes the document vectors.
        records: any iterable (read lazily) of ``str`` or ``{"id"?, "text",
            "metadata"?, "source"?}``. ``source`` names the source that owns the
            record (consecutive records share it); a record without one is its own.
        batch_size: records embedded and written at a time.
        on_error: ``"skip"`` reports bad records in ``report.bad`` and goes on;
            ``"raise"`` stops at the first.
        progress: show a tqdm bar (the ``cli`` extra).
        on_batch: called with the running report after each batch is written.
        spec: how to rebuild the embedder, recorded in the collection
            (default: the spec the embedder was built from).
        cleanup: None (add or update), ``"incremental"`` (a changed source keeps
            exactly its new records: the others are deleted after the new ones
            are written) or ``"full"`` (also delete every source of ``scope``
            absent from ``records``).
        scope: the namespace these sources belong to (None: the default one);
            ``"full"`` never touches another scope.
        dry_run: count what would be written and deleted; write nothing.
    """
    return ingest_into(QdrantCollection(client, name), embedder, records, spec=spec,
                       batch_size=batch_size, on_error=on_error, progress=progress,
                       on_batch=on_batch, cleanup=cleanup, scope=scope, dry_run=dry_run)


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
    check_limit(limit)
    check_collection(client, name, embedder)
    return search_in(QdrantCollection(client, name), embedder, query, limit, query_filter,
                     rerank=rerank, candidates=candidates)
