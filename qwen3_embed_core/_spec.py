"""Serialisable descriptions of models: what a store records to rebuild them.

Vector stores outlive processes. A Chroma collection stores its embedding
function's config and rebuilds it on reopen; a Qdrant collection records
which model and instruction made its vectors. :class:`EmbedderSpec` and
:class:`RerankerSpec` are those records: JSON in, JSON out, never an API key
(only the name of the environment variable that holds one). How the model
and its options are read is :class:`~qwen3_embed_core._options.ModelSpec`'s
one rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._inputs import Instruction, resolve_instruction
from ._options import ModelSpec, model_id
from ._qwen3 import MODEL_RUNNER_MODEL, TASKS, Task, dimensions_for_model
from ._reranker import check_rerank_instruction

if TYPE_CHECKING:
    from ._embedder import Qwen3Embedder
    from ._reranker import Qwen3Reranker

@dataclass(frozen=True)
class EmbedderSpec(ModelSpec):
    """How to build a :class:`Qwen3Embedder`, as plain data.

    Build one with :meth:`from_options` (the rule every surface shares),
    :meth:`local`, :meth:`model_runner` or :meth:`from_config`.

    Args:
        backend: ``"local"`` or ``"model-runner"``.
        model: a GGUF path, a variant name or a served model name.
        base_urls: server URLs (model-runner; empty: Model Runner's default).
        api_key_env_var: environment variable holding the server's API key.
        options: backend options (``LocalOptions`` or ``ModelRunnerOptions``).
        dimensions: Matryoshka size, None for the model's full size.
        task: a preset name or a task description.
        task_symmetric: put a custom task's instruction on documents too.
        instruction: a complete query prefix instead of a task.
    """

    dimensions: int | None = None
    task: str | None = None
    task_symmetric: bool = False
    instruction: str | None = None

    DEFAULT_MODEL = MODEL_RUNNER_MODEL  # Model Runner's Qwen3-Embedding (4B Q4_K_M)
    KIND = "embedder"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.task_symmetric, bool):
            raise ConfigurationError(
                f"task_symmetric must be True or False, not {self.task_symmetric!r}"
            )
        if isinstance(self.task, Task):  # stored as text: a Task is its description and flag
            object.__setattr__(self, "task_symmetric", self.task.symmetric)
            object.__setattr__(self, "task", self.task.description)
        if self.dimensions is not None and (
            isinstance(self.dimensions, bool) or not isinstance(self.dimensions, int)
        ):
            raise ConfigurationError(f"dimensions must be an integer, not {self.dimensions!r}")
        self.prompts  # validates task/instruction now, not at first use  # noqa: B018

    @classmethod
    def local(cls, model: str | os.PathLike[str], **options: Any) -> EmbedderSpec:
        """A local spec (``backend="local"`` given to :meth:`from_options`)."""
        return cls.from_options("local", model=model, **options)

    @classmethod
    def model_runner(cls, model: str | None = None, **options: Any) -> EmbedderSpec:
        """A model-runner spec (``model`` defaults to ``ai/qwen3-embedding``)."""
        return cls.from_options("model-runner", model=model, **options)

    # -- facts -------------------------------------------------------------------

    @property
    def task_value(self) -> str | Task | None:
        """``task`` as the embedder takes it (a symmetric :class:`Task` when flagged)."""
        if self.task is not None and self.task_symmetric and self.task not in TASKS:
            return Task(self.task, symmetric=True)
        return self.task

    @property
    def prompts(self) -> Instruction:
        """The query and document prefixes this spec gives."""
        return resolve_instruction(self.task_value, self.instruction)

    # -- building ----------------------------------------------------------------

    def build(self, api_key: str | None = None) -> Qwen3Embedder:
        """Load the model (local) or set up the client (model-runner).

        Args:
            api_key: the server's key; default ``$api_key_env_var``, else
                ``$QWEN3_EMBED_API_KEY`` (model-runner only).
        """
        from ._embedder import Qwen3Embedder

        common: dict[str, Any] = {"dimensions": self.dimensions}
        if self.instruction is not None:
            common["instruction"] = self.instruction
        else:
            common["task"] = self.task_value
        key = self.api_key(api_key)
        if self.backend == "local":
            emb = Qwen3Embedder.local(self.model, **common, **self.options)
        else:
            emb = Qwen3Embedder.model_runner(
                self.model, api_key=key, **self.url_options(), **common, **self.options
            )
        emb.spec = self
        return emb


@dataclass(frozen=True)
class RerankerSpec(ModelSpec):
    """How to build a :class:`Qwen3Reranker`, as plain data (same rule as :class:`EmbedderSpec`).

    Args:
        backend: ``"local"`` or ``"model-runner"``.
        model: a GGUF path, a variant name or a served model name.
        base_urls: server URLs (model-runner; empty: Model Runner's default).
        api_key_env_var: environment variable holding the server's API key.
        options: backend options (``LocalOptions`` or ``ModelRunnerOptions``).
        instruction: the reranking instruction (None: the model card's default).
    """

    instruction: str | None = None

    DEFAULT_MODEL = "ai/qwen3-reranker"  # Model Runner's Qwen3-Reranker (4B F16)
    KIND = "reranker"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.instruction is not None:  # checked now, not when the model is loaded
            check_rerank_instruction(self.instruction)

    def build(self, api_key: str | None = None) -> Qwen3Reranker:
        """Load the reranker (local) or set up the client (model-runner).

        Args:
            api_key: the server's key; default ``$api_key_env_var``, else
                ``$QWEN3_EMBED_API_KEY`` (model-runner only).
        """
        from ._reranker import Qwen3Reranker

        key = self.api_key(api_key)
        if self.backend == "local":
            return Qwen3Reranker.local(self.model, instruction=self.instruction, **self.options)
        return Qwen3Reranker.model_runner(
            self.model, api_key=key, instruction=self.instruction, **self.url_options(),
            **self.options,
        )


# -- what a store records about the vectors it holds ------------------------------

def vector_record(model_name: str, dimensions: int | None, prompts: Instruction) -> dict[str, Any]:
    """The facts that make two sets of vectors comparable, as JSON."""
    return {
        "model": model_id(model_name),
        "dimensions": dimensions,
        "document_prefix": prompts.document_prefix,
        "query_prefix": prompts.query_prefix,
    }


def embedder_record(embedder: Qwen3Embedder) -> dict[str, Any]:
    """:func:`vector_record` for a built Qwen3Embedder.

    A server whose size is not known yet is asked once (a one-word probe).
    """
    try:
        dimensions = embedder.dimensions
    except Exception:  # a server's size is known after its first answer
        embedder.embed_documents(["dimensions probe"])
        dimensions = embedder.dimensions
    return vector_record(embedder.model_name, dimensions, embedder.instruction)


def spec_record(spec: EmbedderSpec) -> dict[str, Any]:
    """:func:`vector_record` for a spec, without loading anything.

    ``dimensions`` is the MRL size, else the variant's full size when the
    model is a known variant, else None (the model's full size, unknown).
    """
    dims = spec.dimensions if spec.dimensions is not None else dimensions_for_model(spec.model_id)
    return vector_record(spec.model, dims, spec.prompts)


def check_record(recorded: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Refuse to mix vectors: raise ConfigurationError if a recorded fact differs.

    ``where`` names the collection in the message, e.g. ``"Qdrant collection 'docs'"``.
    """
    problems = [
        f"{label}{show(recorded.get(key))} (this embedder: {show(current[key])})"
        for key, label, show in _RECORD_FACTS
        if recorded.get(key) != current[key]
    ]
    if problems:
        raise ConfigurationError(
            f"{where} was made with " + "; ".join(problems) + ". Vectors made differently are "
            "not comparable: use the same model, dimensions and task as the collection, "
            "or write into a new collection"
        )


def _dims(d: object) -> str:
    return "the model's full size" if d is None else f"{d} dimensions"


# Each fact of a vector_record, and how a mismatch message shows it.
_RECORD_FACTS = (
    ("model", "model ", repr),
    ("dimensions", "", _dims),
    ("document_prefix", "document instruction ", repr),
    ("query_prefix", "query instruction ", repr),
)
