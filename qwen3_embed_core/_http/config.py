"""The settings an HTTP backend fixes at construction, validated once and frozen."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigurationError
from .._qwen3 import MODEL_RUNNER_MAX_BODY_BYTES

# An endpoint that refused a connection is tried last for this long (seconds).
DOWN_COOLDOWN = 30.0

Api = Literal["embeddings", "rerank"]


@dataclass(frozen=True)
class HttpConfig:
    """What the request builders, the response checks and the flows read.

    Args:
        model: the served model's name, sent in every request body.
        api: which API the backend speaks; error messages name its route and fix.
        timeout: seconds to wait for an answer.
        connect_timeout: seconds to wait for a connection.
        max_retries: further rounds over the endpoints after a retryable failure.
        batch_size: texts (or documents) per request.
        max_concurrency: requests in flight per endpoint.
        max_body_bytes: largest request body in bytes.
        backoff: first retry delay in seconds (doubled each round, with jitter).
        max_backoff: longest retry delay in seconds.
        has_key: whether an API key is sent (messages say which fix applies).
        down_cooldown: seconds an endpoint that refused a connection is tried last.
    """

    model: str
    api: Api = "embeddings"
    timeout: float = 60.0
    connect_timeout: float = 5.0
    max_retries: int = 3
    batch_size: int = 64
    max_concurrency: int = 4
    max_body_bytes: int = MODEL_RUNNER_MAX_BODY_BYTES
    backoff: float = 0.5
    max_backoff: float = 20.0
    has_key: bool = False
    down_cooldown: float = DOWN_COOLDOWN

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(
                f"model= must be the served model's name, not {self.model!r}"
            )
        for arg, low in (
            ("batch_size", 1),
            ("max_concurrency", 1),
            ("max_retries", 0),
            ("max_body_bytes", 1024),
        ):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{arg}= must be an integer >= {low}, not {value!r}")
        for arg, zero_ok in (
            ("timeout", False),
            ("connect_timeout", False),
            ("backoff", True),  # 0: retry at once
            ("max_backoff", True),
            ("down_cooldown", True),
        ):
            value = getattr(self, arg)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value < 0
                or (value == 0 and not zero_ok)
            ):
                kind = "non-negative" if zero_ok else "positive"
                raise ConfigurationError(f"{arg}= must be a {kind} number of seconds")
            object.__setattr__(self, arg, float(value))


def ssl_verify(verify: bool | str | os.PathLike[str]) -> bool | ssl.SSLContext:
    """httpx's ``verify``: True/False, or an SSL context trusting the CA bundle at a path."""
    if isinstance(verify, bool):
        return verify
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ConfigurationError(
                f"verify={path!r}: no such CA bundle; pass a PEM file path, True or False"
            )
        return ssl.create_default_context(cafile=path)
    raise ConfigurationError(f"verify= must be True, False or a CA bundle path, not {verify!r}")


def check_api_key(api_key: object) -> str | None:
    """``api_key`` if it is None or a non-empty string; else a ConfigurationError."""
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ConfigurationError("api_key= must be a non-empty string or None")
    return api_key
