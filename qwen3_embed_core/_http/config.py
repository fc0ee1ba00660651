"""The settings an HTTP backend fixes at construction, validated once and frozen."""

from __future__ import annotations

import os
import ssl
import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

from .._errors import ConfigurationError
from .._options import MAX_SECONDS, declared_option, option_names

# An endpoint that refused a connection is tried last for this long (seconds).
DOWN_COOLDOWN = 30.0

Api = Literal["embeddings", "rerank"]


def _default(name: str) -> Any:
    return declared_option(name).default


@dataclass(frozen=True)
class HttpConfig:
    """What the request builders, the response checks and the flows read.

    The user's settings are the core's declared model-runner options
    (``_options.DECLARED``): their defaults and ranges come from there, and
    None takes the default.

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
    timeout: float = _default("timeout")
    connect_timeout: float = _default("connect_timeout")
    max_retries: int = _default("max_retries")
    batch_size: int = _default("batch_size")
    max_concurrency: int = _default("max_concurrency")
    max_body_bytes: int = _default("max_body_bytes")
    backoff: float = _default("backoff")
    max_backoff: float = _default("max_backoff")
    has_key: bool = False
    down_cooldown: float = DOWN_COOLDOWN

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(
                f"model= must be the served model's name, not {self.model!r}"
            )
        for f in fields(self):
            if f.name in OPTION_FIELDS:
                option = declared_option(f.name)
                value = option.check(getattr(self, f.name))
                object.__setattr__(self, f.name, option.default if value is None else value)
        cooldown = self.down_cooldown
        if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or not (
            0 <= cooldown <= MAX_SECONDS
        ):
            raise ConfigurationError("down_cooldown= must be a non-negative number of seconds")
        object.__setattr__(self, "down_cooldown", float(cooldown))

    @classmethod
    def build(cls, model: str, api: Api, *, has_key: bool = False, **settings: Any) -> HttpConfig:
        """A config from the backend's keywords, where None takes the declared default."""
        return cls(model, api, has_key=has_key,
                   **{k: v for k, v in settings.items() if v is not None})


# The fields of HttpConfig that are user options (verify is the TLS context, not a field).
OPTION_FIELDS = option_names("model-runner") - {"verify"}


def tls_setting(verify: object) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for the ``verify`` option, checked by its declaration (None: True)."""
    option = declared_option("verify")
    checked = option.check(verify)
    return ssl_verify(typing.cast("bool | str", option.default if checked is None else checked))


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
        try:
            return ssl.create_default_context(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"verify={path!r} is not a readable CA bundle ({exc}); pass a PEM file with "
                "the server's CA certificates, True or False"
            ) from None
    raise ConfigurationError(f"verify= must be True, False or a CA bundle path, not {verify!r}")


def check_api_key(api_key: object) -> str | None:
    """``api_key`` if it is None or a non-empty string; else a ConfigurationError."""
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ConfigurationError("api_key= must be a non-empty string or None")
    return api_key
