"""``Qwen3Reranker``: LangChain's ``BaseDocumentCompressor`` over the core's Qwen3-Reranker."""

from __future__ import annotations

from collections.abc import Sequence

from qwen3_embed_core import Qwen3Reranker as CoreReranker
from qwen3_embed_core import RerankResult
from qwen3_embed_core.adapters import missing_dependency, reranker_from_fields

from ._fields import ModelFields

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import Field, PrivateAttr, model_validator
    from pydantic.json_schema import SkipJsonSchema  # a live object, not configuration
except ImportError as exc:  # pragma: no cover - depends on the install
    raise missing_dependency("langchain-core", "langchain", exc) from exc

# The metadata key LangChain's rerankers (Cohere, FlashRank, Jina...) put the score under.
SCORE_KEY = "relevance_score"


class Qwen3Reranker(ModelFields, BaseDocumentCompressor):
    """Qwen3-Reranker as a LangChain document compressor: the ``top_n`` most relevant documents.

    Each returned document is a copy of the input one whose metadata gains
    ``relevance_score``: P(yes) in [0, 1] from the model card's formula (the
    "yes" share of the softmax over the "yes"/"no" logits). Best first, ties
    in input order. The input documents are not changed. ``model``/
    ``backend``/``base_url`` are read by the core's one rule (README, "Naming a
    model").

    >>> rr = Qwen3Reranker(model="Qwen3-Reranker-0.6B-Q8_0.gguf", top_n=3)   # local GGUF
    >>> rr = Qwen3Reranker(model="ai/qwen3-reranker:0.6B")                   # Docker Model Runner
    >>> retriever = ContextualCompressionRetriever(
    ...     base_compressor=rr, base_retriever=store.as_retriever(search_kwargs={"k": 20}))

    ``compress_documents([])`` returns ``[]``; an empty document raises
    :class:`~qwen3_embed_core.InvalidInputError` naming its index.
    """

    instruction: str | None = None
    """What relevance means (default: the model card's web-search instruction)."""
    top_n: int | None = Field(default=3, gt=0)
    """Documents kept, the most relevant first (None: all of them, reordered)."""
    reranker: SkipJsonSchema[CoreReranker] | None = Field(default=None, exclude=True)
    """An existing core ``Qwen3Reranker`` to share (one loaded model for several adapters)."""

    _reranker: CoreReranker = PrivateAttr()

    @model_validator(mode="after")
    def _build_reranker(self) -> Qwen3Reranker:
        self._reranker = reranker_from_fields(
            self._values(),
            explicit=self.model_fields_set, reranker=self.reranker,
        )
        if self.reranker is None:  # show what was inferred
            self.backend = self._reranker.backend.name  # type: ignore[assignment]
        return self

    @property
    def qwen3_reranker(self) -> CoreReranker:
        """The core reranker in use (to share it, or to ``close()`` the model)."""
        return self._reranker

    def _top(self, documents: Sequence[Document]) -> int | None:
        return None if self.top_n is None else min(self.top_n, len(documents))

    @staticmethod
    def _scored(documents: Sequence[Document], ranked: list[RerankResult]) -> list[Document]:
        return [
            documents[r.index].model_copy(
                update={"metadata": {**documents[r.index].metadata, SCORE_KEY: float(r.score)}}
            )
            for r in ranked
        ]

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The ``top_n`` documents most relevant to ``query``, best first, each a copy with
        ``metadata["relevance_score"]``."""
        documents = list(documents)
        if not documents:
            return []
        texts = [d.page_content for d in documents]
        return self._scored(
            documents, self._reranker.rerank(query, texts, top_n=self._top(documents))
        )

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: native httpx for model-runner, a worker thread
        for local (the event loop stays free)."""
        documents = list(documents)
        if not documents:
            return []
        texts = [d.page_content for d in documents]
        return self._scored(
            documents, await self._reranker.arerank(query, texts, top_n=self._top(documents))
        )
