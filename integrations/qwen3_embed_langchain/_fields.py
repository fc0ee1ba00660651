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
        use_attribute_docstrings=True,  # a subclass's own fields: their docstrings
    )

    # What each field means (and, for the backend options, its type, range and default)
    # is the core's one declaration (describe_option, check_option), not a copy kept here.
    model: str | None = Field(default=None, description=describe_option("model"))
    model_path: str | None = Field(default=None, description=describe_option("model_path"))
    backend: Literal["local", "model-runner"] | None = Field(
        default=None, description=describe_option("backend")
    )
    base_url: str | None = Field(default=None, description=describe_option("base_url"))
    base_urls: list[str] | None = Field(default=None, description=describe_option("base_urls"))
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(API_KEY_ENV, default=None),
        description=describe_option("api_key"),
    )
    timeout: float | None = Field(default=None, description=describe_option("timeout"))
    connect_timeout: float | None = Field(
        default=None, description=describe_option("connect_timeout")
    )
    n_threads: int | None = Field(default=None, description=describe_option("n_threads"))
    max_tokens: int | None = Field(default=None, description=describe_option("max_tokens"))
    truncate: bool | None = Field(default=None, description=describe_option("truncate"))
    # Like langchain-openai's model_kwargs.
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

    def __repr_args__(self) -> Any:  # unset options would bury the ones that matter
        return [(k, v) for k, v in super().__repr_args__() if v is not None]
