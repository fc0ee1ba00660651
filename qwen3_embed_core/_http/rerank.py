"""The reranking backend: llama-server ``--reranking`` or Docker Model Runner over HTTP.

llama-server's ``POST /v1/rerank`` (Model Runner: ``/engines/llama.cpp/rerank``)
takes a query and documents and answers ``{"results": [{"index",
"relevance_score"}]}`` sorted by score. For a Qwen3-Reranker GGUF with the
yes/no classifier head the score is P(yes), exactly what the local backend
computes, so it is returned as is, in input order. What the server cannot
do is refused with the reason instead of scored wrongly:

* **Another instruction.** The server fills the rerank template written into
  the GGUF at conversion time (the model card's default instruction); there
  is no field for another one. :meth:`check_instruction` refuses it.
* **A file that is not a Qwen3-Reranker conversion with the head.** llama.cpp
  then answers ~1e-20 for every pair (no ``cls.output`` head) or scores the bare
  query + document concatenation (no rerank template), with no error. Once per
  endpoint the backend scores the model card's own example pair, which every
  Qwen3 reranker rates near 1, and the same words split elsewhere between query
  and document, which the template scores differently; a server that fails
  either is refused.

Batching (``batch_size`` documents per request, under ``max_body_bytes``),
retries, timeouts, failover and error messages are the embedding backend's
(:mod:`.flows`, :mod:`.responses`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import httpx
import numpy as np

from .._errors import BackendError, ConfigurationError, InvalidInputError
from .._inputs import check_llama_cpp_unicode
from .._qwen3 import (
    DEFAULT_RERANK_INSTRUCTION,
    RERANK_HEAD_CONVERTER,
    RERANK_NO_HEAD_SCORE,
    RERANK_PROBE_DOCUMENT,
    RERANK_PROBE_QUERY,
    RERANK_PROBE_SPLIT,
    RERANK_SAME_SCORE,
    RERANKER_MODEL_RUNNER_MODEL,
)
from .answers import json_body, json_size, parse_rerank
from .base import HttpBackend
from .flows import Endpoint, Flow, Send, batches, locate
from .responses import InputFault, check
from .urls import rerank_url

logger = logging.getLogger("qwen3_embed_core.http")


class RerankEndpoint(Endpoint):
    """A reranking server; its probe checks the classifier head once."""

    def __init__(self, url: str, max_concurrency: int) -> None:
        super().__init__(url, max_concurrency)
        self.rerank_url = rerank_url(url)
        self.rerank_display = rerank_url(self.display)
        self.probe_score: float | None = None


class ModelRunnerRerankBackend(HttpBackend[RerankEndpoint]):
    """Scores (query, document) pairs through llama-server ``--reranking`` or Docker
    Model Runner.

    Takes :class:`HttpBackend`'s arguments (``model`` defaults to
    ``"ai/qwen3-reranker"``; ``batch_size`` counts documents). A llama-server
    is given by its API root ending in ``/v1`` (requests go to ``/v1/rerank``),
    Model Runner by its root (requests go to ``/engines/llama.cpp/rerank``).
    """

    API = "rerank"
    DEFAULT_MODEL = RERANKER_MODEL_RUNNER_MODEL

    def _endpoint(self, url: str, max_concurrency: int) -> RerankEndpoint:
        return RerankEndpoint(url, max_concurrency)

    @property
    def routes(self) -> tuple[str, ...]:
        """The rerank URLs requests go to, credentials redacted."""
        return tuple(ep.rerank_display for ep in self._endpoints)

    def _status(self, ep: RerankEndpoint, now: float) -> dict[str, object]:
        return {**super()._status(ep, now), "probe_score": ep.probe_score}

    def check_instruction(self, instruction: str) -> None:
        """Refuse any instruction but the one the server's GGUF fixes (the default)."""
        if instruction != DEFAULT_RERANK_INSTRUCTION:
            raise ConfigurationError(
                f"instruction {instruction!r} cannot be used over HTTP: llama-server (and "
                "Docker Model Runner) score with the instruction written into the GGUF's "
                "rerank template when it was converted, the model card's default "
                f"({DEFAULT_RERANK_INSTRUCTION!r}), and take no instruction in the request. "
                "For a custom instruction use the local backend on the same GGUF: "
                "Qwen3Reranker.local('<file>.gguf', instruction=...)"
            )

    # -- requests and answers ---------------------------------------------------

    def _body(self, query: str, documents: Sequence[str]) -> bytes:
        # top_n: every document, whatever a server's default.
        return json_body({"model": self.model_name, "query": query,
                          "documents": list(documents), "top_n": len(documents)})

    def _send(self, ep: RerankEndpoint, query: str, documents: Sequence[str]) -> Send:
        return Send(ep, ep.rerank_url, self._body(query, documents))

    def _check(self, ep: RerankEndpoint, out: httpx.Response | BaseException) -> httpx.Response:
        return check(self._config, out, ep.display, ep.rerank_display)

    def _probe_flow(self, ep: RerankEndpoint) -> Flow[None]:
        """Check once that ``ep`` computes the Qwen3 reranker's P(yes): the model card's
        pair must score above ~0 (the head), and the same words split elsewhere between
        query and document must score differently (the rerank template)."""
        query, document = RERANK_PROBE_QUERY, RERANK_PROBE_DOCUMENT
        out = yield self._send(ep, query, [document])
        score = float(parse_rerank(self._check(ep, out), ep.rerank_display, 1)[0])
        ep.probe_score = score
        if score < RERANK_NO_HEAD_SCORE:
            raise self._not_a_reranker(
                ep,
                f"scored the model card's example pair ({query!r}, {document!r}) {score:.3g}, "
                "where a Qwen3 reranker gives about 1: its GGUF lacks the yes/no classifier "
                "head (cls.output), so llama.cpp scores every pair ~0",
            )
        split_query, split_document = RERANK_PROBE_SPLIT
        out = yield self._send(ep, split_query, [split_document])
        other = float(parse_rerank(self._check(ep, out), ep.rerank_display, 1)[0])
        if abs(score - other) <= RERANK_SAME_SCORE * max(score, other):
            raise self._not_a_reranker(
                ep,
                f"gave the same score ({score:.6g}) to the same words split differently "
                f"between query and document ({query!r} + {document!r} and {split_query!r} "
                f"+ {split_document!r}): it scores their bare concatenation, because its GGUF "
                "has no Qwen3 rerank template (tokenizer.chat_template.rerank) and, being a "
                "plain causal-LM conversion, no yes/no classifier head (cls.output)",
            )
        ep.probed = True
        logger.info("%s: Qwen3 reranker head and template present", ep.display)

    def _not_a_reranker(self, ep: RerankEndpoint, finding: str) -> BackendError:
        return BackendError(
            f"{ep.display} {finding}. Serve a Qwen3-Reranker GGUF converted by "
            f"{RERANK_HEAD_CONVERTER} or later (Docker Model Runner: `docker model pull "
            f"{RERANKER_MODEL_RUNNER_MODEL}`), or score this file with the local backend, "
            "which reads the yes/no rows of its output layer: Qwen3Reranker.local('<file>.gguf')"
        )

    def _attempt(
        self, query: str, documents: list[str], start: int
    ) -> Callable[[RerankEndpoint], Flow[np.ndarray]]:
        def attempt(ep: RerankEndpoint) -> Flow[np.ndarray]:
            out = yield self._send(ep, query, documents)
            try:
                resp = self._check(ep, out)
            except InputFault as fault:
                raise (
                    yield from locate(
                        self._config, ep, [len(d) for d in documents], start, fault,
                        lambda i: self._send(ep, query, [documents[i]]), ep.rerank_display,
                    )
                ) from None
            return parse_rerank(resp, ep.rerank_display, len(documents))

        return attempt

    def _flows(
        self, query: str, documents: Sequence[str], instruction: str
    ) -> list[Flow[np.ndarray]]:
        self._check_open()
        self.check_instruction(instruction)
        documents = list(documents)
        check_llama_cpp_unicode([query], "the query")
        check_llama_cpp_unicode(documents, "document at index {}")
        self._warn_special([query], "the query", stacklevel=4)
        self._warn_special(documents, "document at index {}", stacklevel=4)
        overhead = len(self._body(query, []))
        if overhead + 64 > self._config.max_body_bytes:
            raise InvalidInputError(
                f"the query is {json_size(query):,} bytes as JSON, too long for the "
                f"{self._config.max_body_bytes:,}-byte request limit with any document; "
                "shorten it"
            )
        spans = batches(self._config, [json_size(d) + 1 for d in documents], overhead)
        first = next(self._turn)
        return [
            self._retrying(first + k, self._attempt(query, documents[a:b], a), self._probe_flow)
            for k, (a, b) in enumerate(spans)
        ]

    # -- calls -------------------------------------------------------------------

    def score(self, query: str, documents: Sequence[str], instruction: str) -> np.ndarray:
        """P(yes) per document, float32, in input order (inputs already validated)."""
        flows = self._flows(query, documents, instruction)
        if not flows:
            return np.empty(0, dtype=np.float32)
        return np.concatenate(self._drivers.run_all(flows))

    async def ascore(
        self, query: str, documents: Sequence[str], instruction: str
    ) -> np.ndarray:
        """Async :meth:`score`: batches run concurrently."""
        flows = self._flows(query, documents, instruction)
        if not flows:
            return np.empty(0, dtype=np.float32)
        return np.concatenate(await self._drivers.arun_all(flows))
