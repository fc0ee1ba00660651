"""Qwen3Embedder: instructions, dimensions and normalisation over any backend."""

from __future__ import annotations

import os
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from typing_extensions import Unpack

from ._errors import BackendError, ConfigurationError
from ._inputs import Instruction, TaskLike, check_text, check_texts, resolve_instruction
from ._options import LocalOptions, ModelRunnerOptions, check_options
from ._qwen3 import MIN_DIMENSIONS, MODEL_RUNNER_MODEL, dimensions_for_model, lookup_variant

if TYPE_CHECKING:
    from ._spec import EmbedderSpec


@runtime_checkable
class Backend(Protocol):
    """What the embedder needs from an inference backend.

    ``embed`` receives texts that are validated and already formatted (the
    instruction is in them) and returns raw last-token states, one row per
    text, ``full_dimensions`` wide, in input order. ``full_dimensions`` may be
    None until the first call when the backend cannot know it earlier.
    ``aembed``/``aclose`` are the async forms: native for HTTP; an in-process
    backend runs ``embed`` in a worker thread so the event loop stays free.
    """

    @property
    def name(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    @property
    def full_dimensions(self) -> int | None: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    async def aembed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def check_dimensions(dimensions: object, full: int | None, model: str) -> int | None:
    """Validate an MRL size against the model's full size (when known)."""
    if dimensions is None:
        return None
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise ConfigurationError(
            f"dimensions must be an integer, not {type(dimensions).__name__}"
        )
    d = int(dimensions)
    upper = full if full is not None else max(4096, d)
    if not MIN_DIMENSIONS <= d <= upper:
        allowed = f"{MIN_DIMENSIONS} to {full}" if full else f"at least {MIN_DIMENSIONS}"
        raise ConfigurationError(
            f"dimensions={d} is out of range for {model}: Qwen3 embeddings can be shortened "
            f"to {allowed} (Matryoshka prefixes); pass None for the full size"
        )
    return d


class Qwen3Embedder:
    """Qwen3-Embedding vectors for documents and queries.

    Queries are formatted ``Instruct: {task}\\nQuery:{query}``; documents go
    in bare (or with the same instruction for symmetric tasks). Vectors are
    float32, unit length, and ``dimensions`` wide: the first ``dimensions``
    components of the model's output, renormalised (Matryoshka).

    Build one with :meth:`local` or :meth:`model_runner` (or from options
    with ``EmbedderSpec.from_options(...).build()``); any object that follows
    :class:`Backend` works too.

    Args:
        backend: the inference backend (``LocalBackend``, ``ModelRunnerBackend``...).
        dimensions: Matryoshka size, 32 to the model's full size (None: full).
        task: a preset name from ``TASKS``, a task description, or a :class:`Task`.
        instruction: a complete custom query prefix instead of ``task``.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        dimensions: int | None = None,
        task: TaskLike | None = None,
        instruction: str | None = None,
    ) -> None:
        self._backend = backend
        self._instruction = resolve_instruction(task, instruction)
        self._dimensions = check_dimensions(dimensions, self.full_dimensions, backend.model_name)
        # The spec this embedder was built from, when it was (EmbedderSpec.build sets it):
        # stores record it so a collection can rebuild its embedder.
        self.spec: EmbedderSpec | None = None

    # -- constructors --------------------------------------------------------

    @classmethod
    def local(
        cls,
        model: str | os.PathLike[str],
        *,
        dimensions: int | None = None,
        task: TaskLike | None = None,
        instruction: str | None = None,
        **options: Unpack[LocalOptions],
    ) -> Qwen3Embedder:
        """Embed in-process with llama.cpp from a GGUF file.

        Args:
            model: a ``.gguf`` path, a variant name (``"0.6B-Q8_0"``, ``"4B-Q4_K_M"``...)
                or a Model Runner tag, resolved through the Hugging Face cache.
            dimensions: Matryoshka size, 32 to the model's full size (None: full).
            task: a preset name from ``TASKS``, a task description, or a :class:`Task`.
            instruction: a complete custom query prefix instead of ``task``.
            options: backend options, each described in :class:`LocalOptions`
                (``n_threads``, ``max_tokens``, ``truncate``, ``batch_tokens``...).
        """
        from . import _local
        from ._hub import resolve_model

        # Check what can be checked before downloading or loading gigabytes.
        resolve_instruction(task, instruction)
        known = lookup_variant(model) if isinstance(model, str) else None
        if known is not None:
            check_dimensions(dimensions, known.dimensions, known.name)
        tuning = dict(check_options("local", options))
        path, variant = resolve_model(
            model,
            download=bool(tuning.pop("download", True)),
            cache_dir=typing.cast("str | None", tuning.pop("cache_dir", None)),
        )
        backend = _local.LocalBackend(
            path,
            model_name=f"Qwen3-Embedding-{variant.name}" if variant else None,
            **tuning,  # type: ignore[arg-type]  # checked against LocalOptions above
        )
        try:
            emb = cls(backend, dimensions=dimensions, task=task, instruction=instruction)
        except BaseException:
            backend.close()
            raise
        emb.spec = _spec_of("local", model, dimensions, task, instruction, dict(options))
        return emb

    @classmethod
    def model_runner(
        cls,
        model: str = MODEL_RUNNER_MODEL,
        *,
        base_url: str | None = None,
        base_urls: Sequence[str] | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        task: TaskLike | None = None,
        instruction: str | None = None,
        **options: Unpack[ModelRunnerOptions],
    ) -> Qwen3Embedder:
        """Embed through Docker Model Runner or any llama.cpp server (OpenAI embeddings API).

        Nothing is sent until the first call.

        Args:
            model: the served model's name; a Model Runner tag by default
                (``"ai/qwen3-embedding"`` is the 4B Q4_K_M; ``":0.6B-F16"``...);
                a plain llama-server accepts any name.
            base_url: Model Runner's root (default ``$QWEN3_EMBED_BASE_URL``, else
                ``http://localhost:12434``; its engine path is added), or an API root
                ending in ``/v1`` used as is (``http://127.0.0.1:8080/v1`` for llama-server).
            base_urls: several such endpoints; batches are spread over them and a
                failing one's batches retried on the others.
            api_key: sent as a bearer token (endpoints behind a proxy), never logged.
            dimensions: Matryoshka size, as in :meth:`local`.
            task: the query task, as in :meth:`local`.
            instruction: a complete custom query prefix, as in :meth:`local`.
            options: backend options, each described in :class:`ModelRunnerOptions`
                (``timeout``, ``max_retries``, ``batch_size``, ``verify``...).
        """
        from ._http import ModelRunnerBackend

        backend = ModelRunnerBackend(
            model, base_url=base_url, base_urls=base_urls, api_key=api_key, **options
        )
        try:
            emb = cls(backend, dimensions=dimensions, task=task, instruction=instruction)
        except BaseException:
            backend.close()
            raise
        urls = {"base_url": base_url, "base_urls": base_urls}
        emb.spec = _spec_of("model-runner", model, dimensions, task, instruction,
                            {**urls, **options})
        return emb

    # -- facts ---------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend object (``LocalBackend`` or ``ModelRunnerBackend``)."""
        return self._backend

    @property
    def model_name(self) -> str:
        """The model: a file name, variant, or served model id."""
        return self._backend.model_name

    @property
    def full_dimensions(self) -> int | None:
        """The model's own embedding size (None until known for a remote model)."""
        return self._backend.full_dimensions or dimensions_for_model(self._backend.model_name)

    @property
    def dimensions(self) -> int:
        """Width of the vectors returned (the MRL size, or the full size)."""
        if self._dimensions is not None:
            return self._dimensions
        full = self.full_dimensions
        if full is None:
            raise BackendError(
                "the model's size is not known until the server has answered once; "
                "embed something first or pass dimensions="
            )
        return full

    @property
    def instruction(self) -> Instruction:
        """The query and document prefixes in use."""
        return self._instruction

    def _prompts(self, task: TaskLike | None) -> Instruction:
        return self._instruction if task is None else resolve_instruction(task)

    def format_query(self, text: str, *, task: TaskLike | None = None) -> str:
        """The exact string the model sees for a query."""
        return self._prompts(task).query(check_text(text))

    def format_document(self, text: str, *, task: TaskLike | None = None) -> str:
        """The exact string the model sees for a document."""
        return self._prompts(task).document(check_text(text))

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a document, EOS included."""
        return self._backend.count_tokens(self.format_document(text))

    # -- embedding -----------------------------------------------------------

    def _finish(self, raw: np.ndarray, n: int) -> np.ndarray:
        if raw.ndim != 2 or raw.shape[0] != n:
            raise BackendError(f"backend returned {raw.shape} for {n} texts")
        full = raw.shape[1]
        d = self._dimensions or full
        if d > full:
            raise ConfigurationError(
                f"dimensions={d} is larger than the model's {full}; pass {full} or less"
            )
        vectors = np.asarray(raw[:, :d], dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
        if bad.any():
            raise BackendError(
                f"the model produced a zero or non-finite vector for text at index "
                f"{int(np.argmax(bad))}; the model file may be corrupt"
            )
        return np.ascontiguousarray(vectors / norms, dtype=np.float32)

    def _embed(self, formatted: list[str]) -> np.ndarray:
        return self._finish(self._backend.embed(formatted), len(formatted))

    async def _aembed(self, formatted: list[str]) -> np.ndarray:
        return self._finish(await self._backend.aembed(formatted), len(formatted))

    def _documents(self, texts: Sequence[str], task: TaskLike | None) -> list[str]:
        prompts = self._prompts(task)
        return [prompts.document(t) for t in check_texts(texts)]

    def _queries(self, texts: Sequence[str], task: TaskLike | None) -> list[str]:
        prompts = self._prompts(task)
        return [prompts.query(t) for t in check_texts(texts)]

    def embed_documents(
        self, texts: Sequence[str], *, task: TaskLike | None = None
    ) -> np.ndarray:
        """Embed documents: float32 array of shape (len(texts), dimensions), unit rows.

        ``task`` overrides the embedder's task for this call (it only changes
        documents for symmetric tasks).
        """
        return self._embed(self._documents(texts, task))

    def embed_queries(self, texts: Sequence[str], *, task: TaskLike | None = None) -> np.ndarray:
        """Embed queries with the instruction: shape (len(texts), dimensions)."""
        return self._embed(self._queries(texts, task))

    def embed_query(self, text: str, *, task: TaskLike | None = None) -> np.ndarray:
        """Embed one query with the instruction: shape (dimensions,)."""
        row: np.ndarray = self._embed([self._prompts(task).query(check_text(text))])[0]
        return row

    async def aembed_documents(
        self, texts: Sequence[str], *, task: TaskLike | None = None
    ) -> np.ndarray:
        """Async :meth:`embed_documents` (native for HTTP, a worker thread for local)."""
        return await self._aembed(self._documents(texts, task))

    async def aembed_queries(
        self, texts: Sequence[str], *, task: TaskLike | None = None
    ) -> np.ndarray:
        """Async :meth:`embed_queries`."""
        return await self._aembed(self._queries(texts, task))

    async def aembed_query(self, text: str, *, task: TaskLike | None = None) -> np.ndarray:
        """Async :meth:`embed_query`."""
        row: np.ndarray = (await self._aembed([self._prompts(task).query(check_text(text))]))[0]
        return row

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Free the model (local) or the connection pools (HTTP)."""
        self._backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close`; also closes an HTTP backend's async connection pool."""
        await self._backend.aclose()

    async def __aenter__(self) -> Qwen3Embedder:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> Qwen3Embedder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        d = self._dimensions or self.full_dimensions
        return f"Qwen3Embedder({self._backend.name}, model={self.model_name!r}, dimensions={d})"


def _spec_of(backend: Any, model: Any, dimensions: int | None, task: TaskLike | None,
             instruction: str | None, options: dict[str, Any]) -> EmbedderSpec | None:
    """The spec a constructor's arguments describe, so a store can record how to rebuild
    the embedder however it was built (None if they cannot be written down)."""
    from ._errors import Qwen3EmbedError
    from ._spec import EmbedderSpec

    try:
        return EmbedderSpec.from_options(
            backend, model=str(model) if isinstance(model, os.PathLike) else model,
            dimensions=dimensions, task=task, instruction=instruction,
            **{k: v for k, v in options.items() if v is not None})
    except (Qwen3EmbedError, TypeError):
        return None
