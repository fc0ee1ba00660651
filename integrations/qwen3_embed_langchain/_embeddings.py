"""``Qwen3Embeddings``: LangChain's ``Embeddings`` over the qwen3_embed_core embedder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from qwen3_embed_core import Qwen3Embedder, Task, check_texts
from qwen3_embed_core.adapters import embedder_from_fields, missing_dependency

from ._fields import ModelFields

try:
    from langchain_core.embeddings import Embeddings
    from pydantic import Field, PrivateAttr, model_validator
    from pydantic.json_schema import SkipJsonSchema  # a live object, not configuration
except ImportError as exc:  # pragma: no cover - depends on the install
    raise missing_dependency("langchain-core", "langchain", exc) from exc


class Qwen3Embeddings(ModelFields, Embeddings):
    """Qwen3-Embedding vectors for LangChain, from a local GGUF file or Docker Model Runner.

    Documents are embedded bare; queries get the Qwen3 instruction
    (``Instruct: {task}\\nQuery:{query}``). Vectors are unit length, so
    cosine and dot product agree. ``model``/``backend``/``base_url`` are read
    by the core's one rule (README, "Naming a model").

    >>> emb = Qwen3Embeddings(model="Qwen3-Embedding-0.6B-Q8_0.gguf")       # local GGUF
    >>> emb = Qwen3Embeddings(model="ai/qwen3-embedding:0.6B-F16", dimensions=512)  # Model Runner
    >>> emb = Qwen3Embeddings(model="0.6B-Q8_0", options={"n_threads": 4})  # any core option
    >>> emb = Qwen3Embeddings(embedder=shared_qwen3_embedder)

    ``embed_documents([])`` returns ``[]`` (LangChain's convention: vector
    stores call it with empty batches); an empty *text* raises
    :class:`~qwen3_embed_core.InvalidInputError` naming its index.
    Construction problems (a dimension out of range, options for the wrong
    backend) arrive as pydantic's ``ValidationError`` carrying the core's
    message; the API key is never shown in it or in ``repr``.
    """

    dimensions: int | None = None
    """Matryoshka size of the vectors, 32 up to the model's full size (default: full)."""
    task: str | Task | None = None
    """Query task: a preset name (``"question_answering"``) or a task description."""
    instruction: str | None = None
    """A complete query prefix used verbatim instead of ``task``."""
    batch_size: int = Field(default=64, gt=0)
    """Texts per HTTP request, and per progress-bar step."""
    show_progress: bool = False
    """Show a tqdm bar over batches in ``embed_documents``."""
    embedder: SkipJsonSchema[Qwen3Embedder] | None = Field(default=None, exclude=True)
    """An existing embedder to share (one loaded model for several adapters)."""

    _embedder: Qwen3Embedder = PrivateAttr()

    @model_validator(mode="after")
    def _build_embedder(self) -> Qwen3Embeddings:
        self._embedder = embedder_from_fields(
            self._values(),
            explicit=self.model_fields_set, embedder=self.embedder,
            defaults={"batch_size": self.batch_size},
        )
        if self.embedder is None:  # show what was inferred
            self.backend = self._embedder.backend.name  # type: ignore[assignment]
        return self

    @property
    def qwen3_embedder(self) -> Qwen3Embedder:
        """The core embedder in use (to share it, or to ``close()`` the model)."""
        return self._embedder

    def _chunks(self, texts: list[str]) -> Iterator[list[str]]:
        return (texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size))

    def _bar(self, texts: list[str]) -> Any:
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:
            raise missing_dependency("tqdm", "langchain", exc) from exc
        steps = -(-len(texts) // self.batch_size)
        return tqdm(total=steps, desc="Embedding", unit="batch")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (bare; symmetric tasks add the instruction): floats per text."""
        if isinstance(texts, (list, tuple)) and not texts:
            return []
        if not self.show_progress:
            return self._embedder.embed_documents(texts).tolist()
        texts = check_texts(texts)  # errors name the index in the whole list
        out: list[list[float]] = []
        with self._bar(texts) as bar:
            for chunk in self._chunks(texts):
                out.extend(self._embedder.embed_documents(chunk).tolist())
                bar.update(1)
        return out

    def embed_query(self, text: str) -> list[float]:
        """Embed a query with the instruction: a list of ``dimensions`` floats."""
        return self._embedder.embed_query(text).tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`: native httpx for model-runner, a worker
        thread for local (the event loop stays free)."""
        if isinstance(texts, (list, tuple)) and not texts:
            return []
        if not self.show_progress:
            return (await self._embedder.aembed_documents(texts)).tolist()
        texts = check_texts(texts)
        out: list[list[float]] = []
        with self._bar(texts) as bar:
            for chunk in self._chunks(texts):
                out.extend((await self._embedder.aembed_documents(chunk)).tolist())
                bar.update(1)
        return out

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return (await self._embedder.aembed_query(text)).tolist()
