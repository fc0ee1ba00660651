"""The model fields LlamaIndex's embedding and reranker share, read by the core's one rule."""

from __future__ import annotations

import os
from typing import Any, Literal

from qwen3_embed_core.adapters import check_option, describe_option, missing_dependency

try:
    from llama_index.core.bridge.pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        SecretStr,
        ValidationInfo,
        field_validator,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise missing_dependency("llama-index-core", "llamaindex", exc) from exc


class ModelFields(BaseModel):
    """Which model, where it runs, and its backend options (README, "Naming a model")."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    model: str | None = Field(
        default=None,
        description="Which model: a GGUF path, a variant ('0.6B-Q8_0') or a Model Runner tag "
        "('ai/qwen3-embedding:0.6B-F16'; Model Runner's default with no model).",
    )
    backend: Literal["local", "model-runner"] | None = Field(
        default=None,
        description="Where it runs: 'local' (llama.cpp in this process) or 'model-runner' "
        "(HTTP); inferred from model/base_url when not given.",
    )
    model_path: str | None = Field(default=None, description="Alias of model.")
    base_url: str | None = Field(
        default=None, description="Model Runner or llama-server URL (default localhost:12434)."
    )
    base_urls: list[str] | None = Field(
        default=None, description="Several endpoints serving the same model."
    )
    api_key: SecretStr | None = Field(
        default=None, description="Bearer token (default $QWEN3_EMBED_API_KEY).", exclude=True
    )
    # The backend options every adapter names: type, range, default and meaning are the
    # core's one declaration (describe_option, check_option), not copies kept here.
    timeout: float | None = Field(default=None, description=describe_option("timeout"))
    connect_timeout: float | None = Field(
        default=None, description=describe_option("connect_timeout")
    )
    n_threads: int | None = Field(default=None, description=describe_option("n_threads"))
    max_tokens: int | None = Field(default=None, description=describe_option("max_tokens"))
    truncate: bool | None = Field(default=None, description=describe_option("truncate"))
    options: dict[str, Any] | None = Field(
        default=None,
        description="Any other backend option by name (LocalOptions/ModelRunnerOptions in the "
        "core: max_retries, verify, n_gpu_layers...).",
    )

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
