"""``Qwen3Embedding``: LlamaIndex's ``BaseEmbedding`` over the qwen3_embed_core embedder."""

from __future__ import annotations

from typing import Any

from qwen3_embed_core import Qwen3Embedder, Task, check_texts
from qwen3_embed_core.adapters import embedder_from_fields, missing_dependency

from ._fields import ModelFields

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator
    from pydantic.json_schema import SkipJsonSchema  # a live object, not configuration
except ImportError as exc:  # pragma: no cover - depends on the install
    raise missing_dependency("llama-index-core", "llamaindex", exc) from exc


class _Query(str):
    """A query as LlamaIndex's embedding cache sees it.

    The cache keys queries and documents on their text, in one collection.
    This key is the text the model reads for the query less the document
    prefix, so it equals a document's key only when that document is read
    as the very same text (and so has the very same vector). ``raw`` is the
    user's query.
    """

    raw: str


class Qwen3Embedding(ModelFields, BaseEmbedding):
    """Qwen3-Embedding for LlamaIndex, from a local GGUF file or Docker Model Runner.

    Texts (nodes) are embedded bare; queries get the Qwen3 instruction
    (``Instruct: {task}\\nQuery:{query}``); vectors are unit length.

    >>> Settings.embed_model = Qwen3Embedding(model_path="Qwen3-Embedding-0.6B-Q8_0.gguf")
    >>> Settings.embed_model = Qwen3Embedding(model="ai/qwen3-embedding:0.6B-F16")

    Each batch of ``embed_batch_size`` texts is one backend call (one HTTP
    request for model-runner). Progress bars are LlamaIndex's own
    (``show_progress=`` on the index). Construction problems arrive as
    pydantic's ``ValidationError`` with the core's message; bad texts raise
    the core's :class:`~qwen3_embed_core.InvalidInputError` naming the index.
    """

    dimensions: int | None = Field(
        default=None, description="Matryoshka size, 32 up to the model's full size."
    )
    task: str | Task | None = Field(
        default=None, description="Query task: a preset name or a task description."
    )
    instruction: str | None = Field(
        default=None, description="A complete query prefix used verbatim instead of task."
    )
    embed_batch_size: int = Field(
        default=64, gt=0, le=2048, description="Texts per backend call (one HTTP request)."
    )
    embedder: SkipJsonSchema[Qwen3Embedder] | None = Field(
        default=None, exclude=True, description="An existing embedder to share."
    )

    _embedder: Qwen3Embedder = PrivateAttr()

    @model_validator(mode="after")
    def _build_embedder(self) -> Qwen3Embedding:
        self._embedder = embedder_from_fields(
            self._values(),
            explicit=self.model_fields_set, embedder=self.embedder,
            defaults={"batch_size": self.embed_batch_size},
        )
        if self.embedder is None:  # show what was inferred
            self.backend = self._embedder.backend.name  # type: ignore[assignment]
        self.model_name = self._embedder.model_name
        return self

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Embedding"

    @property
    def qwen3_embedder(self) -> Qwen3Embedder:
        """The core embedder in use (to share it, or to ``close()`` the model)."""
        return self._embedder

    # -- queries: the instruction is part of what the cache keys on ----------

    def _cache_key(self, query: str) -> _Query:
        prefix = self._embedder.instruction.document_prefix
        key = _Query(self._embedder.format_query(query)[len(prefix) :])
        key.raw = query
        return key

    def get_query_embedding(self, query: str) -> Embedding:
        return super().get_query_embedding(self._cache_key(query))

    async def aget_query_embedding(self, query: str) -> Embedding:
        return await super().aget_query_embedding(self._cache_key(query))

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embedder.embed_query(getattr(query, "raw", query)).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._embedder.aembed_query(getattr(query, "raw", query))).tolist()

    # -- texts: no instruction, one backend call per batch -------------------

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        if not isinstance(texts, (list, tuple)) or texts:
            check_texts(texts)  # before batching, so errors name the index in the whole list
        return super().get_text_embedding_batch(texts, show_progress, **kwargs)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        if not isinstance(texts, (list, tuple)) or texts:
            check_texts(texts)
        return await super().aget_text_embedding_batch(texts, show_progress, **kwargs)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embedder.embed_documents([text]).tolist()[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._embedder.aembed_documents([text])).tolist()[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embedder.embed_documents(texts).tolist() if texts else []

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return (await self._embedder.aembed_documents(texts)).tolist() if texts else []
