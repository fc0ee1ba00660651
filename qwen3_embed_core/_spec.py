"""A serialisable description of an embedder: what a store records to rebuild it.

Vector stores outlive processes. A Chroma collection stores its embedding
function's config and rebuilds it on reopen; a Qdrant collection records
which model and instruction made its vectors. :class:`EmbedderSpec` is that
record: JSON in, JSON out, never an API key (only the name of the
environment variable that holds one).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._errors import ConfigurationError, ModelNotFoundError
from ._inputs import Instruction, resolve_instruction
from ._qwen3 import MODEL_RUNNER_MODEL, TASKS, Task, dimensions_for_model, lookup_variant

BackendName = Literal["local", "model-runner"]
BACKENDS = ("local", "model-runner")

# Bump when the config's meaning changes; from_config refuses newer formats.
SPEC_FORMAT = 1

_VARIANT_FILE = re.compile(r"(?i)qwen3-embedding-(.+?)(?:\.gguf)?")


def model_id(name: str) -> str:
    """A model's identity for compatibility checks: the variant name when known.

    ``"ai/qwen3-embedding:0.6B-F16"``, ``"Qwen3-Embedding-0.6B-f16.gguf"``,
    ``"/models/Qwen3-Embedding-0.6B-F16"`` and ``"0.6B-F16"`` are all
    ``"0.6B-F16"`` (the same weights). Other names are kept as their file
    name, so a model file moved to another folder is still the same model.
    """
    variant = lookup_variant(name)
    if variant is not None:
        return variant.name
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    match = _VARIANT_FILE.fullmatch(base)
    if match and (variant := lookup_variant(match[1])) is not None:
        return variant.name
    return base


@dataclass(frozen=True)
class EmbedderSpec:
    """How to build a :class:`Qwen3Embedder`, as plain data.

    ``backend``: ``"local"`` (a GGUF run in-process) or ``"model-runner"``
    (Docker Model Runner or any llama.cpp server over HTTP).
    ``model_path``: local only, a GGUF path or a variant name (``"0.6B-Q8_0"``).
    ``model``: model-runner only, the served model (``"ai/qwen3-embedding:0.6B-F16"``).
    ``base_urls``: model-runner only, server URLs (empty: Model Runner's default).
    ``api_key_env_var``: name of the environment variable holding an API key
    (the key itself is never stored). ``dimensions``: MRL size, None for full.
    ``task``: a preset name or task description; ``task_symmetric`` puts the
    instruction on documents too for a custom description; ``instruction``:
    a complete query prefix instead of a task. ``max_tokens``/``truncate``:
    the local backend's length limit and whether to cut longer texts.
    """

    backend: BackendName = "local"
    model_path: str | None = None
    model: str | None = None
    base_urls: tuple[str, ...] = field(default_factory=tuple)
    api_key_env_var: str | None = None
    dimensions: int | None = None
    task: str | None = None
    task_symmetric: bool = False
    instruction: str | None = None
    max_tokens: int | None = None
    truncate: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigurationError(
                f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}"
            )
        if self.backend == "local":
            if not self.model_path:
                raise ConfigurationError("the local backend needs model_path (a GGUF file)")
            if self.model or self.base_urls or self.api_key_env_var:
                raise ConfigurationError(
                    "model, base_url(s) and api_key_env_var are for the model-runner backend; "
                    "the local backend takes model_path"
                )
        else:
            if self.model_path:
                raise ConfigurationError(
                    "model_path is for the local backend; the model-runner backend takes "
                    "model= (the served model name) and base_url="
                )
            if self.max_tokens is not None or self.truncate:
                raise ConfigurationError("max_tokens and truncate are local-backend options")
        if self.dimensions is not None and (
            isinstance(self.dimensions, bool) or not isinstance(self.dimensions, int)
        ):
            raise ConfigurationError(f"dimensions must be an integer, not {self.dimensions!r}")
        object.__setattr__(self, "base_urls", tuple(self.base_urls))
        self.prompts  # validates task/instruction now, not at first use  # noqa: B018

    # -- constructors ----------------------------------------------------------

    @classmethod
    def local(cls, model_path: str | os.PathLike[str], **options: Any) -> EmbedderSpec:
        """A local spec; an existing file is stored as an absolute path (cwd-independent).

        A path that names no file is an error now (ModelNotFoundError), not
        at first use; a variant name is resolved when the model is built.
        """
        text = os.fspath(model_path)
        path = Path(text).expanduser()
        if path.is_file():
            text = str(path.resolve())
        elif text.endswith(".gguf") or os.sep in text or isinstance(model_path, os.PathLike):
            raise ModelNotFoundError(f"no GGUF file at {path}")
        return cls(backend="local", model_path=text, **options)

    @classmethod
    def model_runner(
        cls,
        model: str | None = None,
        *,
        base_url: str | None = None,
        base_urls: tuple[str, ...] | list[str] | None = None,
        **options: Any,
    ) -> EmbedderSpec:
        """A model-runner spec (``model`` defaults to ``ai/qwen3-embedding``)."""
        if base_url is not None and base_urls:
            raise ConfigurationError("pass either base_url= or base_urls=, not both")
        urls = (base_url,) if base_url is not None else tuple(base_urls or ())
        return cls(backend="model-runner", model=model or MODEL_RUNNER_MODEL, base_urls=urls,
                   **options)

    # -- facts -------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model as given (path, variant or served name)."""
        return (self.model_path if self.backend == "local" else self.model) or ""

    @property
    def model_id(self) -> str:
        """See :func:`model_id`: equal for the same weights wherever they live."""
        return model_id(self.model_name)

    @property
    def task_value(self) -> str | Task | None:
        if self.task is not None and self.task_symmetric and self.task not in TASKS:
            return Task(self.task, symmetric=True)
        return self.task

    @property
    def prompts(self) -> Instruction:
        """The query and document prefixes this spec gives."""
        return resolve_instruction(self.task_value, self.instruction)

    # -- JSON --------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """JSON-compatible config (no API key, only its variable's name)."""
        config = asdict(self)
        config["base_urls"] = list(self.base_urls)
        config["format"] = SPEC_FORMAT
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EmbedderSpec:
        """Rebuild from :meth:`to_config`'s output; unknown keys or a newer format are errors."""
        if not isinstance(config, dict):
            raise ConfigurationError(f"an embedder config is a dict, not {type(config).__name__}")
        data = dict(config)
        fmt = data.pop("format", SPEC_FORMAT)
        if not isinstance(fmt, int) or fmt > SPEC_FORMAT:
            raise ConfigurationError(
                f"this config was written by a newer qwen3-embed (format {fmt}); upgrade it"
            )
        if "api_key" in data:
            raise ConfigurationError(
                "configs never hold an API key; put it in an environment variable and "
                "give its name as api_key_env_var"
            )
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(f"unknown embedder config keys: {sorted(unknown)}")
        data["base_urls"] = tuple(data.get("base_urls") or ())
        return cls(**data)

    # -- building ----------------------------------------------------------------

    def build(self) -> Any:
        """Load the model (local) or set up the client (model-runner): a Qwen3Embedder."""
        from ._embedder import Qwen3Embedder

        common: dict[str, Any] = {"dimensions": self.dimensions}
        if self.instruction is not None:
            common["instruction"] = self.instruction
        else:
            common["task"] = self.task_value
        if self.backend == "local":
            return Qwen3Embedder.local(
                self.model_path or "", max_tokens=self.max_tokens, truncate=self.truncate,
                **common,
            )
        api_key = None
        if self.api_key_env_var:
            api_key = os.environ.get(self.api_key_env_var)
            if not api_key:
                raise ConfigurationError(
                    f"the API key is read from ${self.api_key_env_var}, which is not set"
                )
        urls: dict[str, Any] = {}
        if len(self.base_urls) == 1:
            urls["base_url"] = self.base_urls[0]
        elif self.base_urls:
            urls["base_urls"] = list(self.base_urls)
        return Qwen3Embedder.model_runner(
            self.model or MODEL_RUNNER_MODEL, api_key=api_key, **urls, **common
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


def embedder_record(embedder: Any) -> dict[str, Any]:
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
    return vector_record(spec.model_name, dims, spec.prompts)


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
