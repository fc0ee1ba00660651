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

    # What each field means (and, for the backend options, its type, range and default)
    # is the core's one declaration (describe_option, check_option), not a copy kept here.
    model: str | None = Field(default=None, description=describe_option("model"))
    backend: Literal["local", "model-runner"] | None = Field(
        default=None, description=describe_option("backend")
    )
    model_path: str | None = Field(default=None, description=describe_option("model_path"))
    base_url: str | None = Field(default=None, description=describe_option("base_url"))
    base_urls: list[str] | None = Field(default=None, description=describe_option("base_urls"))
    api_key: SecretStr | None = Field(
        default=None, description=describe_option("api_key"), exclude=True
    )
    timeout: float | None = Field(default=None, description=describe_option("timeout"))
    connect_timeout: float | None = Field(
        default=None, description=describe_option("connect_timeout")
    )
    n_threads: int | None = Field(default=None, description=describe_option("n_threads"))
    max_tokens: int | None = Field(default=None, description=describe_option("max_tokens"))
    truncate: bool | None = Field(default=None, description=describe_option("truncate"))
    options: dict[str, Any] | None = Field(default=None, description=describe_option("options"))

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
