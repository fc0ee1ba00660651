"""Qwen3-Embedding for Chroma 1.x: an embedding function that survives reopening.

>>> import chromadb
>>> from qwen3_embed_chroma import Qwen3EmbeddingFunction, ingest, search
>>> client = chromadb.PersistentClient("./db")
>>> col = client.get_or_create_collection(
...     "docs", embedding_function=Qwen3EmbeddingFunction(model_path="model.gguf"))
>>> col.add(ids=["1"], documents=["Paris is the capital of France."])
>>> col.query(query_texts=["capital of France?"])   # the query gets the instruction
>>> ingest(col, [{"text": "...", "source": "notes.md"}], cleanup="incremental")
>>> search(col, "capital of France?", limit=5, rerank=Qwen3Reranker.local("reranker.gguf"))

Chroma stores :meth:`Qwen3EmbeddingFunction.get_config` with the collection
and rebuilds the function from it in a new process (``import
qwen3_embed_chroma`` first, so the name ``"qwen3-embed"`` is registered).
:func:`ingest` and :func:`search` are the store layer's sync ingestion and
scored hits (optionally reranked); :class:`ChromaCollection` is this store in
the core's store layer (``qwen3_embed_core.stores``), which the command line
and Ray use too. Reranking happens at search time only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from qwen3_embed_core import Hit, IngestReport
from qwen3_embed_core.adapters import (
    BatchCallback,
    Cleanup,
    OnError,
    check_limit,
    ingest_into,
    search_in,
)

from ._collection import ChromaCollection
from ._function import NAME, Qwen3EmbeddingFunction, check_collection, function_of

if TYPE_CHECKING:
    from qwen3_embed_core import Qwen3Reranker

__all__ = [
    "NAME", "ChromaCollection", "Qwen3EmbeddingFunction", "check_collection", "function_of",
    "ingest", "search",
]


def ingest(
    collection: Any,
    records: Iterable[object],
    *,
    batch_size: int = 64,
    on_error: OnError = "skip",
    progress: bool = False,
    on_batch: BatchCallback | None = None,
    cleanup: Cleanup | None = None,
    scope: str | None = None,
    dry_run: bool = False,
) -> IngestReport:
    """Write records into a collection made with :class:`Qwen3EmbeddingFunction`.

    Same records, ids, sync and report as ``qwen3_embed_qdrant.ingest``: a
    re-run embeds only new or edited texts; metadata-only edits are updated
    without embedding. ``records``: ``str`` or ``{"id"?, "text", "metadata"?,
    "source"?}``. ``cleanup``: None (add or update), ``"incremental"`` (a
    changed source keeps exactly its new records) or ``"full"`` (also delete
    the sources of ``scope`` absent from ``records``). ``dry_run``: count,
    write nothing.
    """
    function = function_of(collection)
    return ingest_into(ChromaCollection.of(collection), function.embedder, records,
                       spec=function.spec, batch_size=batch_size, on_error=on_error,
                       progress=progress, on_batch=on_batch, cleanup=cleanup, scope=scope,
                       dry_run=dry_run)


def search(
    collection: Any,
    query: str,
    limit: int = 5,
    where: dict[str, Any] | None = None,
    *,
    rerank: Qwen3Reranker | None = None,
    candidates: int | None = None,
) -> list[Hit]:
    """The ``limit`` nearest documents to ``query``, best first; ``score`` is the cosine.

    Two-stage retrieval with ``rerank=`` (a ``Qwen3Reranker``): the
    ``candidates`` nearest documents (default ``max(4 * limit, 20)``) are
    reranked against the bare query and the ``limit`` most relevant are
    returned; ``Hit.score`` is then the relevance score P(yes) in [0, 1] and
    ``Hit.vector_score`` the cosine.
    """
    check_limit(limit)
    embedder = function_of(collection).embedder
    return search_in(ChromaCollection.of(collection), embedder, query, limit, where,
                     rerank=rerank, candidates=candidates)
