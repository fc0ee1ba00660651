"""``Qwen3Rerank``: LlamaIndex's ``BaseNodePostprocessor`` over the core's Qwen3-Reranker."""

from __future__ import annotations

from typing import Any

from qwen3_embed_core import Qwen3Reranker, RerankResult
from qwen3_embed_core.adapters import missing_dependency, reranker_from_fields

from ._fields import ModelFields

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
    from pydantic.json_schema import SkipJsonSchema  # a live object, not configuration
except ImportError as exc:  # pragma: no cover - depends on the install
    raise missing_dependency("llama-index-core", "llamaindex", exc) from exc

dispatcher = get_dispatcher(__name__)


class Qwen3Rerank(ModelFields, BaseNodePostprocessor):
    """Qwen3-Reranker as a LlamaIndex node postprocessor: the ``top_n`` most relevant nodes.

    Each returned node's ``score`` is its relevance to the query: P(yes) in
    [0, 1] from the model card's formula (the "yes" share of the softmax over
    the "yes"/"no" logits). Best first, ties in input order. The nodes are
    read as the embedder read them (``MetadataMode.EMBED``); the input
    ``NodeWithScore`` objects are not changed.

    >>> rerank = Qwen3Rerank(model="Qwen3-Reranker-0.6B-Q8_0.gguf", top_n=3)   # local GGUF
    >>> rerank = Qwen3Rerank(model="ai/qwen3-reranker:0.6B")                   # Model Runner
    >>> engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])
    """

    instruction: str | None = Field(
        default=None, description="What relevance means (default: the model card's instruction)."
    )
    top_n: int | None = Field(
        default=3, gt=0, description="Nodes kept, most relevant first (None: all, reordered)."
    )
    reranker: SkipJsonSchema[Qwen3Reranker] | None = Field(
        default=None, exclude=True, description="An existing core Qwen3Reranker to share."
    )

    _reranker: Qwen3Reranker = PrivateAttr()

    @model_validator(mode="after")
    def _build_reranker(self) -> Qwen3Rerank:
        self._reranker = reranker_from_fields(
            self._values(),
            explicit=self.model_fields_set, reranker=self.reranker,
        )
        if self.reranker is None:  # show what was inferred
            self.backend = self._reranker.backend.name  # type: ignore[assignment]
        return self

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Rerank"

    @property
    def qwen3_reranker(self) -> Qwen3Reranker:
        """The core reranker in use (to share it, or to ``close()`` the model)."""
        return self._reranker

    def _start(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str], int | None]:
        top = None if self.top_n is None else min(self.top_n, len(nodes))
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top or 0,
                                          model_name=self._reranker.model_name))
        if query_bundle is None:
            raise ValueError("Qwen3Rerank needs the query: pass query_bundle= or query_str=")
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        return query_bundle.query_str, texts, top

    def _event(self, nodes: list[NodeWithScore], query: str) -> Any:
        return self.callback_manager.event(CBEventType.RERANKING, payload={
            EventPayload.NODES: nodes, EventPayload.MODEL_NAME: self._reranker.model_name,
            EventPayload.QUERY_STR: query, EventPayload.TOP_K: self.top_n,
        })

    @staticmethod
    def _end(
        nodes: list[NodeWithScore], ranked: list[RerankResult], event: Any
    ) -> list[NodeWithScore]:
        out = [NodeWithScore(node=nodes[r.index].node, score=float(r.score)) for r in ranked]
        event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts, top = self._start(nodes, query_bundle)
        with self._event(nodes, query) as event:
            ranked = self._reranker.rerank(query, texts, top_n=top) if nodes else []
            return self._end(nodes, ranked, event)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts, top = self._start(nodes, query_bundle)
        with self._event(nodes, query) as event:
            ranked = await self._reranker.arerank(query, texts, top_n=top) if nodes else []
            return self._end(nodes, ranked, event)
