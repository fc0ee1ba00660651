"""Qwen3Reranker: the model card's relevance score, P(yes), over any rerank backend.

A Qwen3-Reranker is a causal LM asked whether a document meets a query's
requirements under an instruction. The prompt (the system turn, then
``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}``,
then the assistant turn opened with an empty think block) and the score (the
"yes" share of the softmax over the "yes" and "no" logits at the last token)
are in :mod:`._qwen3`; backends compute them (:mod:`._rerank_local` in this
process, ``_http.ModelRunnerRerankBackend`` over HTTP). This class validates
input, resolves the instruction and orders results.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from typing_extensions import Unpack

from ._errors import (
    BackendError,
    ConfigurationError,
    InvalidInputError,
    InvalidInputTypeError,
    ModelNotFoundError,
)
from ._inputs import check_text, check_texts
from ._options import LocalOptions, ModelRunnerOptions, resolve_options
from ._qwen3 import (
    DEFAULT_RERANK_INSTRUCTION,
    RERANKER_MODEL_RUNNER_MODEL,
    lookup_variant,
)
from ._tokenizer import qwen3_nfc


@dataclass(frozen=True)
class RerankResult:
    """One document's place in a ranking.

    ``index``: its position in the documents passed in; ``score``: P(yes)
    in [0, 1]; ``text``: the document as passed in.
    """

    index: int
    score: float
    text: str


@runtime_checkable
class RerankBackend(Protocol):
    """What :class:`Qwen3Reranker` needs from a backend.

    ``score`` receives a validated, NFC-normalised query and documents and
    the instruction, and returns float32 P(yes) per document in input order.
    ``check_instruction`` raises :class:`ConfigurationError` when the backend
    cannot score under that instruction (a server fixes it at conversion time).
    """

    name: str
    model_name: str

    def check_instruction(self, instruction: str) -> None: ...

    def score(self, query: str, documents: Sequence[str], instruction: str) -> np.ndarray: ...

    async def ascore(
        self, query: str, documents: Sequence[str], instruction: str
    ) -> np.ndarray: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def check_rerank_instruction(instruction: object) -> str:
    """A usable reranking instruction (None: the model card's default), NFC-normalised."""
    if instruction is None:
        return DEFAULT_RERANK_INSTRUCTION
    if not isinstance(instruction, str) or not instruction.strip():
        raise ConfigurationError(
            "instruction= must be a non-empty string, the task in `<Instruct>: {instruction}` "
            f"(default: {DEFAULT_RERANK_INSTRUCTION!r})"
        )
    if "\x00" in instruction:
        raise ConfigurationError("instruction= contains a NUL byte; remove it")
    try:
        instruction.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError("instruction= contains a lone surrogate; fix it") from None
    return qwen3_nfc(instruction)


def _query(query: object) -> str:
    try:
        return check_text(query)
    except (InvalidInputError, InvalidInputTypeError) as exc:
        raise type(exc)(str(exc).replace("the text", "the query", 1), None) from None


def _documents(documents: object) -> tuple[list[str], list[str]]:
    """The documents as passed in, and validated and NFC-normalised."""
    if isinstance(documents, str):
        raise InvalidInputTypeError(
            "documents must be a list of strings, got a single str; wrap it in a list"
        )
    if documents is None or isinstance(documents, (bytes, dict)) or not isinstance(
        documents, Iterable
    ):
        raise InvalidInputTypeError(
            f"documents must be a list of strings, got {type(documents).__name__}"
        )
    items = list(documents)
    return items, (check_texts(items) if items else [])


def _top_n(top_n: object, n: int) -> int:
    if top_n is None:
        return n
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)):
        raise ConfigurationError(f"top_n must be an integer, not {type(top_n).__name__}")
    if n and not 1 <= int(top_n) <= n:
        raise ConfigurationError(
            f"top_n={top_n} is out of range: it must be 1 to {n} (the number of documents), "
            "or None for all"
        )
    return int(top_n)


class Qwen3Reranker:
    """Qwen3-Reranker relevance scores: P(yes) that a document meets the query.

    Build one with :meth:`local` (a GGUF file, in this process) or
    :meth:`model_runner` (Docker Model Runner or llama-server); any object
    that follows :class:`RerankBackend` works too.

    Args:
        backend: the backend that computes the scores.
        instruction: the task in ``<Instruct>: ...`` (None: the model card's
            default, for web search).
    """

    def __init__(self, backend: RerankBackend, *, instruction: str | None = None) -> None:
        self._backend = backend
        self._instruction = check_rerank_instruction(instruction)
        backend.check_instruction(self._instruction)

    # -- constructors --------------------------------------------------------

    @classmethod
    def local(
        cls,
        model: str | os.PathLike[str],
        *,
        instruction: str | None = None,
        **options: Unpack[LocalOptions],
    ) -> Qwen3Reranker:
        """Rerank in-process with llama.cpp from a Qwen3-Reranker GGUF file.

        Both flavours work: files with the 2-row ``cls.output`` head (llama.cpp
        b6578+) and plain causal-LM conversions; anything else is refused.

        Args:
            model: the path of a Qwen3-Reranker ``.gguf`` file.
            instruction: the task in ``<Instruct>: ...`` (None: the model card's default).
            options: backend options, each described in :class:`LocalOptions`
                (``n_threads``, ``max_tokens``, ``truncate``, ``batch_tokens``...).
        """
        from ._rerank_local import LocalRerankBackend

        check_rerank_instruction(instruction)
        # Every local option of a reranker (download and cache_dir are refused: a
        # reranker is given as a file), checked, at its value or its default.
        tuning = resolve_options("local", options, "reranker")
        if not isinstance(model, (str, os.PathLike)):
            raise ConfigurationError(
                f"model must be the path of a GGUF file, not {type(model).__name__}"
            )
        path = Path(os.fspath(model)).expanduser()
        if not path.is_file():
            if isinstance(model, str) and lookup_variant(model) is not None:
                raise ConfigurationError(
                    f"{model!r} names a Qwen3-Embedding file, not a reranker; pass the path of "
                    "a Qwen3-Reranker GGUF (converted by llama.cpp b6578 or later, or any "
                    "plain conversion)"
                )
            raise ModelNotFoundError(f"no GGUF file at {path}")
        backend = LocalRerankBackend(path, **tuning)
        try:
            return cls(backend, instruction=instruction)
        except BaseException:
            backend.close()
            raise

    @classmethod
    def model_runner(
        cls,
        model: str = RERANKER_MODEL_RUNNER_MODEL,
        *,
        base_url: str | None = None,
        base_urls: Sequence[str] | None = None,
        api_key: str | None = None,
        instruction: str | None = None,
        **options: Unpack[ModelRunnerOptions],
    ) -> Qwen3Reranker:
        """Rerank through Docker Model Runner or a llama-server started with ``--reranking``.

        Args:
            model: the served model (Model Runner tags ``ai/qwen3-reranker:0.6B``, ``:4B``
                (= latest), ``:8B``; a plain llama-server accepts any name).
            base_url: Model Runner's root, or a llama-server API root ending in ``/v1``.
            base_urls: several such endpoints; requests are spread and failed over.
            api_key: sent as a bearer token, never logged.
            instruction: the task in ``<Instruct>: ...`` (None: the model card's default).
            options: backend options, each described in :class:`ModelRunnerOptions`.
        """
        from ._http import ModelRunnerRerankBackend

        check_rerank_instruction(instruction)
        settings = resolve_options("model-runner", options, "reranker")
        backend = ModelRunnerRerankBackend(
            model, base_url=base_url, base_urls=base_urls, api_key=api_key, **settings
        )
        try:
            return cls(backend, instruction=instruction)
        except BaseException:
            backend.close()
            raise

    # -- facts ---------------------------------------------------------------

    @property
    def backend(self) -> RerankBackend:
        """The backend object."""
        return self._backend

    @property
    def model_name(self) -> str:
        """The model: a file name or served model id."""
        return self._backend.model_name

    @property
    def instruction(self) -> str:
        """The instruction scores are computed under unless a call passes another."""
        return self._instruction

    def _instruction_for(self, instruction: str | None) -> str:
        if instruction is None:
            return self._instruction
        checked = check_rerank_instruction(instruction)
        self._backend.check_instruction(checked)
        return checked

    # -- scoring -------------------------------------------------------------

    def _finish(self, raw: np.ndarray, n: int) -> np.ndarray:
        scores = np.asarray(raw, dtype=np.float32)
        if scores.shape != (n,):
            raise BackendError(f"backend returned {scores.shape} scores for {n} documents")
        bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise BackendError(
                f"backend returned {scores[i]!r} for the document at index {i}, not a "
                "probability; the model file may be corrupt"
            )
        return scores

    def score(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> np.ndarray:
        """P(yes) per document, float32 in [0, 1], in input order.

        Args:
            query: what the documents should answer.
            documents: the candidates (``[]`` gives an empty array).
            instruction: this call's task instead of the reranker's.
        """
        q, (_, docs) = _query(query), _documents(documents)
        instr = self._instruction_for(instruction)
        if not docs:
            return np.empty(0, dtype=np.float32)
        return self._finish(self._backend.score(q, docs, instr), len(docs))

    async def ascore(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> np.ndarray:
        """Async :meth:`score`."""
        q, (_, docs) = _query(query), _documents(documents)
        instr = self._instruction_for(instruction)
        if not docs:
            return np.empty(0, dtype=np.float32)
        return self._finish(await self._backend.ascore(q, docs, instr), len(docs))

    @staticmethod
    def _ranked(documents: list[str], scores: np.ndarray, top_n: int) -> list[RerankResult]:
        order = sorted(range(len(documents)), key=lambda i: (-float(scores[i]), i))
        return [RerankResult(i, float(scores[i]), documents[i]) for i in order[:top_n]]

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
    ) -> list[RerankResult]:
        """Documents by relevance, best first (ties by input order).

        Args:
            query: what the documents should answer.
            documents: the candidates (``[]`` gives ``[]``).
            top_n: how many to return, 1 to len(documents) (None: all).
            instruction: this call's task instead of the reranker's.
        """
        q, (originals, docs) = _query(query), _documents(documents)
        instr = self._instruction_for(instruction)
        n = _top_n(top_n, len(docs))
        if not docs:
            return []
        scores = self._finish(self._backend.score(q, docs, instr), len(docs))
        return self._ranked(originals, scores, n)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`."""
        q, (originals, docs) = _query(query), _documents(documents)
        instr = self._instruction_for(instruction)
        n = _top_n(top_n, len(docs))
        if not docs:
            return []
        scores = self._finish(await self._backend.ascore(q, docs, instr), len(docs))
        return self._ranked(originals, scores, n)

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Free the model (local) or the connection pools (HTTP)."""
        self._backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._backend.aclose()

    def __enter__(self) -> Qwen3Reranker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Qwen3Reranker:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Qwen3Reranker({self._backend.name}, model={self.model_name!r})"
