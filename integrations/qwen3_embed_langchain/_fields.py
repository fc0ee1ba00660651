"""The model fields LangChain's embedder and reranker share, read by the core's one rule."""

from __future__ import annotations

import os
from typing import Any, Literal

from qwen3_embed_core.adapters import (
    API_KEY_ENV,
    check_option,
    describe_option,
    missing_dependency,
)

try:
    from langchain_core.utils import secret_from_env
    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        SecretStr,
        ValidationInfo,
        field_validator,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise missing_dependency("langchain-core", "langchain", exc) from exc


class ModelFields(BaseModel):
    """Which model, where it runs, and its backend options (README, "Naming a model")."""

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        arbitrary_types_allowed=True,
        hide_input_in_errors=True,  # the input holds the API key
        use_attribute_docstrings=True,  # the docstrings below are the field descriptions
    )

    model: str | None = None
    """Which model: a GGUF path, a variant (``"0.6B-Q8_0"``) or a Model Runner tag
    (``"ai/qwen3-embedding:0.6B-F16"``; Model Runner's default with no model)."""
    model_path: str | None = None
    """Alias of ``model``."""
    backend: Literal["local", "model-runner"] | None = None
    """Where it runs: ``"local"`` (llama.cpp in this process) or ``"model-runner"`` (HTTP);
    inferred from ``model``/``base_url`` when not given."""
    base_url: str | None = None
    """Model Runner or llama-server URL (default ``http://localhost:12434``); a URL
    ending in ``/v1`` is used as is."""
    base_urls: list[str] | None = None
    """Several endpoints serving the same model: batches are spread across them."""
    api_key: SecretStr | None = Field(default_factory=secret_from_env(API_KEY_ENV, default=None))
    """Bearer token for an endpoint behind a proxy (default ``$QWEN3_EMBED_API_KEY``)."""
    # The backend options every adapter names: type, range, default and meaning are the
    # core's one declaration (describe_option, check_option), not copies kept here.
    timeout: float | None = Field(default=None, description=describe_option("timeout"))
    connect_timeout: float | None = Field(
        default=None, description=describe_option("connect_timeout")
    )
    n_threads: int | None = Field(default=None, description=describe_option("n_threads"))
    max_tokens: int | None = Field(default=None, description=describe_option("max_tokens"))
    truncate: bool | None = Field(default=None, description=describe_option("truncate"))
    options: dict[str, Any] | None = None
    """Any other backend option by name (``LocalOptions``/``ModelRunnerOptions`` in the core:
    ``max_retries``, ``verify``, ``n_gpu_layers``...), like langchain-openai's ``model_kwargs``."""

    @field_validator("timeout", "connect_timeout", "n_threads", "max_tokens", "truncate",
                     mode="before")
    @classmethod
    def _declared(cls, value: object, info: ValidationInfo) -> object:
        return check_option(str(info.field_name), value)

    @field_validator("model", "model_path", mode="before")
    @classmethod
    def _path_as_text(cls, value: object) -> object:  # accept pathlib paths, dump as text
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def _values(self) -> dict[str, Any]:
        """Every field by name, for the core's ``*_from_fields``."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    def __repr_args__(self) -> Any:  # unset options would bury the ones that matter
        return [(k, v) for k, v in super().__repr_args__() if v is not None]
