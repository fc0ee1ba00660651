"""HTTP backends: Docker Model Runner, or any llama.cpp server.

* :mod:`.urls` — base URLs, API roots and routes.
* :mod:`.config` — the frozen settings every part reads.
* :mod:`.responses` — classifying answers: retry, locate the input, or a final error.
* :mod:`.answers` — request bodies, and parsing answers onto the right input.
* :mod:`.flows` — retries, failover and probes as sans-IO generators.
* :mod:`.drivers` — the sync (threads) and async (tasks) drivers of the flows.
* :mod:`.base` — what both backends share: the constructor, read-only settings, lifetime.
* :mod:`.embed` / :mod:`.rerank` — the embedding and reranking backends.
"""

from __future__ import annotations

from .config import DOWN_COOLDOWN, HttpConfig
from .embed import ModelRunnerBackend
from .flows import backoff_delay
from .rerank import ModelRunnerRerankBackend
from .responses import RETRY_STATUSES
from .urls import BASE_URL_ENV, endpoint_url, redact_url, rerank_url, resolve_endpoints

__all__ = [
    "BASE_URL_ENV",
    "DOWN_COOLDOWN",
    "RETRY_STATUSES",
    "HttpConfig",
    "ModelRunnerBackend",
    "ModelRunnerRerankBackend",
    "backoff_delay",
    "endpoint_url",
    "redact_url",
    "rerank_url",
    "resolve_endpoints",
]
