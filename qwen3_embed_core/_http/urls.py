"""Base URLs, API roots and routes: what the user passes, and where requests go."""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from .._errors import ConfigurationError
from .._qwen3 import (
    LLAMA_SERVER_RERANK_PATH,
    MODEL_RUNNER_ENGINE_PATH,
    MODEL_RUNNER_RERANK_PATH,
    MODEL_RUNNER_URL,
)

# Overrides the default base URL (an explicit base_url= still wins).
BASE_URL_ENV = "QWEN3_EMBED_BASE_URL"

# "/engines/llama.cpp": Model Runner's llama.cpp engine, without its OpenAI "/v1".
_ENGINE = MODEL_RUNNER_ENGINE_PATH.rsplit("/v1", 1)[0]


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc="***@" + host))


def endpoint_url(base_url: str) -> str:
    """The OpenAI-compatible API root (ending in ``/v1``) for a base URL.

    A base that already ends in ``/v1`` (a plain llama-server) is used as is;
    otherwise it is Model Runner's root and its llama.cpp engine path is added.
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigurationError(f"a base URL must be a non-empty string, not {base_url!r}")
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"base URL {redact_url(base)!r} is not an http(s) URL; e.g. {MODEL_RUNNER_URL} "
            "(Docker Model Runner) or http://127.0.0.1:8080/v1 (llama-server)"
        )
    if parts.path.endswith("/v1"):
        return base
    if parts.path.endswith((_ENGINE, "/engines")):
        return base + "/v1"
    return base + MODEL_RUNNER_ENGINE_PATH


def resolve_endpoints(base_url: str | None, base_urls: Sequence[str] | None) -> list[str]:
    """API roots from ``base_url``, ``base_urls``, $QWEN3_EMBED_BASE_URL or the default."""
    if base_url is not None and base_urls is not None:
        raise ConfigurationError("pass either base_url= or base_urls=, not both")
    if base_urls is not None:
        if isinstance(base_urls, str) or not base_urls:
            raise ConfigurationError("base_urls= must be a non-empty list of URLs")
        urls = [endpoint_url(u) for u in base_urls]
        if len(set(urls)) != len(urls):
            raise ConfigurationError(f"base_urls= lists the same endpoint twice: {urls}")
        return urls
    return [endpoint_url(base_url or os.environ.get(BASE_URL_ENV) or MODEL_RUNNER_URL)]


def embeddings_url(api_root: str) -> str:
    """``POST`` target for embeddings under an API root from :func:`endpoint_url`."""
    return api_root + "/embeddings"


def tokenize_url(api_root: str) -> str:
    """llama-server's ``/tokenize``, served at its root beside ``/v1``."""
    return api_root[: -len("/v1")] + "/tokenize"


def rerank_url(api_root: str) -> str:
    """``POST`` target for reranking under an API root from :func:`endpoint_url`.

    Model Runner routes reranking beside its engine's ``/v1``, not under it
    (``/engines/llama.cpp/rerank``); llama-server serves ``/v1/rerank``.
    """
    root = api_root[: -len("/v1")]
    if root.endswith(_ENGINE):
        return root[: -len(_ENGINE)] + MODEL_RUNNER_RERANK_PATH
    if root.endswith("/engines"):  # Model Runner's engine-agnostic route, /engines/rerank
        return root + "/rerank"
    return api_root + LLAMA_SERVER_RERANK_PATH
