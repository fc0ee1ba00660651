"""``Qwen3EmbeddingFunction``: Chroma's embedding function for Qwen3, rebuilt on reopen."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from qwen3_embed_core import ConfigurationError, EmbedderSpec, Qwen3Embedder
from qwen3_embed_core.adapters import check_record, missing_dependency, spec_record

try:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
    from chromadb.utils.embedding_functions import register_embedding_function
except ImportError as exc:  # pragma: no cover - the chroma extra is missing
    raise missing_dependency("chromadb", "chroma", exc) from exc

# The name Chroma stores with a collection: changing it orphans existing collections.
NAME = "qwen3-embed"


@register_embedding_function
class Qwen3EmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function: documents bare, queries with the Qwen3 instruction.

    ``Qwen3EmbeddingFunction("Qwen3-Embedding-0.6B-Q8_0.gguf")`` or ``("0.6B-Q8_0")``
    runs locally; ``Qwen3EmbeddingFunction("ai/qwen3-embedding:0.6B-F16",
    base_url="http://localhost:12434")`` asks a server. ``model``/``backend``/
    ``base_url`` are read by the core's one rule (README, "Naming a model").
    The model loads on first use.

    Args:
        model: a GGUF path, a variant name or a Model Runner tag.
        model_path: alias of ``model``.
        backend: ``"local"`` or ``"model-runner"`` (inferred when None).
        base_url: one server URL (model-runner).
        base_urls: several server URLs serving the same model.
        api_key_env_var: environment variable holding the server's API key
            (the key itself is never stored).
        dimensions: Matryoshka size, 32 to the model's full size (None: full).
        task: a preset name or a task description.
        task_symmetric: put a custom task's instruction on documents too.
        instruction: a complete query prefix instead of ``task``.
        options: any backend option by name (``LocalOptions``/``ModelRunnerOptions``).
        spec: a ready :class:`EmbedderSpec` instead of all of the above.
        named_options: backend options by name (``max_tokens=``, ``timeout=``...).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        model_path: str | None = None,
        backend: str | None = None,
        base_url: str | None = None,
        base_urls: Sequence[str] | None = None,
        api_key_env_var: str | None = None,
        dimensions: int | None = None,
        task: str | None = None,
        task_symmetric: bool = False,
        instruction: str | None = None,
        options: dict[str, Any] | None = None,
        spec: EmbedderSpec | None = None,
        **named_options: Any,
    ) -> None:
        if spec is None:
            spec = EmbedderSpec.from_options(
                backend, model=model, model_path=model_path, base_url=base_url,
                base_urls=base_urls, api_key_env_var=api_key_env_var, dimensions=dimensions,
                task=task, task_symmetric=task_symmetric or None, instruction=instruction,
                options=options, **named_options,
            )
        self.spec = spec
        self._embedder: Qwen3Embedder | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Qwen3Embedder:
        """The core embedder, built on first use (Chroma may rebuild a function it never uses)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = self.spec.build()
            return self._embedder

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents (no instruction, unless the task is symmetric)."""
        return list(self.embedder.embed_documents(input))

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed queries with the instruction ``Instruct: {task}\\nQuery:{query}``."""
        return list(self.embedder.embed_queries(input))

    @staticmethod
    def name() -> str:
        return NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        # Unit-length vectors: cosine, inner product and L2 rank identically.
        return ["cosine", "ip", "l2"]

    def is_legacy(self) -> bool:
        # Chroma's default builds a second instance to find out; we know.
        return False

    def get_config(self) -> dict[str, Any]:
        """Everything needed to rebuild this function (never an API key)."""
        return self.spec.to_config()

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> Qwen3EmbeddingFunction:
        """Rebuild from :meth:`get_config` (no model is loaded until the first embedding)."""
        Qwen3EmbeddingFunction.validate_config(config)
        return Qwen3EmbeddingFunction(spec=EmbedderSpec.from_config(config))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Raise ValueError (ConfigurationError) if ``config`` cannot describe an embedder."""
        EmbedderSpec.from_config(config)

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Refuse a change of model, dimensions or instruction: stored vectors would not match."""
        old = spec_record(EmbedderSpec.from_config(old_config))
        new = spec_record(EmbedderSpec.from_config({**old_config, **new_config}))
        check_record(old, new, "this Chroma collection")

    def close(self) -> None:
        """Free the model (or connections) now; it is rebuilt if used again."""
        with self._lock:
            if self._embedder is not None:
                self._embedder.close()
                self._embedder = None

    def __repr__(self) -> str:
        return f"Qwen3EmbeddingFunction({self.spec.backend}, model={self.spec.model!r})"


def function_of(collection: Any) -> Qwen3EmbeddingFunction:
    """The collection's Qwen3EmbeddingFunction, checked against its stored config."""
    ef = getattr(collection, "_embedding_function", None)
    if not isinstance(ef, Qwen3EmbeddingFunction):
        ef = (collection.configuration or {}).get("embedding_function")
    if not isinstance(ef, Qwen3EmbeddingFunction):
        raise ConfigurationError(
            f"Chroma collection {collection.name!r} does not use Qwen3EmbeddingFunction "
            f"(its embedding function: {getattr(ef, 'name', lambda: None)() or 'none'}); "
            "write Qwen3 vectors into a collection made with it"
        )
    check_collection(collection, ef)  # a function passed to get_collection() may differ
    return ef


def check_collection(collection: Any, function: Qwen3EmbeddingFunction) -> None:
    """Refuse ``function`` if the collection was made with another model, size or instruction."""
    persisted = (collection.configuration or {}).get("embedding_function")
    if persisted is None:
        return
    if not isinstance(persisted, Qwen3EmbeddingFunction):
        name = persisted.name() if hasattr(persisted, "name") else type(persisted).__name__
        raise ConfigurationError(
            f"Chroma collection {collection.name!r} was made with the embedding function "
            f"{name!r}, not {NAME!r}; its vectors are not Qwen3 vectors"
        )
    check_record(
        spec_record(persisted.spec), spec_record(function.spec),
        f"Chroma collection {collection.name!r}",
    )
