"""Build a Qwen3Embedder from flat options, as framework adapters receive them.

Adapters (LangChain, LlamaIndex, Chroma, the CLI) expose the same handful of
options as plain fields; this module turns them into a :class:`Qwen3Embedder`
with one set of rules, so every adapter infers the backend and refuses
contradictory options in the same words.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from ._embedder import Qwen3Embedder
from ._errors import ConfigurationError
from ._inputs import TaskLike
from ._qwen3 import MODEL_RUNNER_TAGS, lookup_variant
from ._spec import BACKENDS, BackendName

# Read when no api_key is passed (model-runner); adapters show it as their default.
API_KEY_ENV = "QWEN3_EMBED_API_KEY"


def infer_backend(
    backend: str | None = None,
    *,
    model: str | None = None,
    model_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    base_urls: Sequence[str] | None = None,
) -> BackendName:
    """The backend the options ask for.

    An explicit ``backend`` wins. Otherwise: ``model_path`` or a variant name
    (``"0.6B-Q8_0"``) or a ``.gguf`` path in ``model`` means ``"local"``;
    anything else (a Model Runner tag, a base URL, or nothing at all) means
    ``"model-runner"``, whose defaults are ``ai/qwen3-embedding`` on
    ``$QWEN3_EMBED_BASE_URL`` or ``http://localhost:12434``.
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}"
            )
        return backend  # type: ignore[return-value]
    if model_path is not None:
        return "local"
    if base_url is None and not base_urls and model is not None:
        is_variant = lookup_variant(model) is not None and model not in MODEL_RUNNER_TAGS
        if is_variant or model.endswith(".gguf"):
            return "local"
    return "model-runner"


def _refuse(given: dict[str, object], backend: str, other: str) -> None:
    wrong = [name for name, value in given.items() if value is not None]
    if wrong:
        raise ConfigurationError(
            f"{', '.join(wrong)}: only for backend={other!r}, but the backend is {backend!r}; "
            f"drop {'it' if len(wrong) == 1 else 'them'} or pass backend={other!r}"
        )


def build_embedder(
    backend: str | None = None,
    *,
    model: str | None = None,
    model_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    base_urls: Sequence[str] | None = None,
    api_key: str | None = None,
    dimensions: int | None = None,
    task: TaskLike | None = None,
    instruction: str | None = None,
    timeout: float | None = None,
    connect_timeout: float | None = None,
    batch_size: int | None = None,
    n_threads: int | None = None,
    max_tokens: int | None = None,
    truncate: bool | None = None,
) -> Qwen3Embedder:
    """A :class:`Qwen3Embedder` for flat adapter options (None means "the default").

    ``model``: a variant name or Model Runner tag (local: resolved through the
    Hugging Face cache; model-runner: the served model). ``model_path``: a
    GGUF file (local). ``base_url``/``base_urls``/``api_key``/``timeout``/
    ``connect_timeout`` (seconds) apply to model-runner only, ``n_threads``/
    ``max_tokens``/``truncate`` to local only; mixing them raises
    :class:`ConfigurationError` rather than silently ignoring one.
    ``batch_size``: texts per HTTP request (the local backend packs by tokens
    and ignores it). ``api_key`` falls back to ``$QWEN3_EMBED_API_KEY``.
    """
    kind = infer_backend(
        backend, model=model, model_path=model_path, base_url=base_url, base_urls=base_urls
    )
    common = {"dimensions": dimensions, "task": task, "instruction": instruction}
    if kind == "local":
        _refuse(
            {"base_url": base_url, "base_urls": base_urls, "api_key": api_key,
             "timeout": timeout, "connect_timeout": connect_timeout},
            kind, "model-runner",
        )
        if (model is None) == (model_path is None):
            raise ConfigurationError(
                "the local backend needs exactly one of model_path= (a GGUF file) or "
                "model= (a variant name such as '0.6B-Q8_0')"
            )
        local = {"n_threads": n_threads, "max_tokens": max_tokens, "truncate": truncate}
        return Qwen3Embedder.local(
            model_path if model_path is not None else model,  # type: ignore[arg-type]
            **common,
            **{k: v for k, v in local.items() if v is not None},
        )
    _refuse(
        {"model_path": model_path, "n_threads": n_threads, "max_tokens": max_tokens,
         "truncate": truncate},
        kind, "local",
    )
    remote = {
        "base_url": base_url,
        "base_urls": base_urls,
        "api_key": api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None,
        "timeout": timeout,
        "connect_timeout": connect_timeout,
        "batch_size": batch_size,
    }
    if model is not None:
        remote["model"] = model
    return Qwen3Embedder.model_runner(
        **common, **{k: v for k, v in remote.items() if v is not None}
    )


# The options build_embedder takes, as adapters name their fields.
BUILD_OPTIONS = (
    "backend", "model", "model_path", "base_url", "base_urls", "api_key", "dimensions",
    "task", "instruction", "timeout", "connect_timeout", "n_threads", "max_tokens", "truncate",
)


def embedder_for(
    fields: object,
    *,
    explicit: Collection[str],
    embedder: Qwen3Embedder | None = None,
    batch_size: int | None = None,
) -> Qwen3Embedder:
    """The embedder an adapter's fields describe, or the shared ``embedder``.

    ``fields``: the adapter, whose attributes named in :data:`BUILD_OPTIONS`
    hold its options (None = default; ``api_key`` as text or as a secret with
    ``get_secret_value()``, such as pydantic's ``SecretStr``). ``explicit``:
    the names the user set, so a key that came from the environment is not
    refused by the local backend, and options given next to a shared
    ``embedder`` are refused instead of silently ignored.
    """
    if embedder is not None:
        clash = [name for name in BUILD_OPTIONS if name in explicit]
        if clash:
            raise ConfigurationError(
                f"embedder= is already configured; drop {', '.join(clash)} "
                "(set them when building the Qwen3Embedder)"
            )
        return embedder
    kwargs = {name: getattr(fields, name) for name in BUILD_OPTIONS}
    if hasattr(kwargs["api_key"], "get_secret_value"):
        kwargs["api_key"] = kwargs["api_key"].get_secret_value()
    kind = infer_backend(
        kwargs["backend"], model=kwargs["model"], model_path=kwargs["model_path"],
        base_url=kwargs["base_url"], base_urls=kwargs["base_urls"],
    )
    if kind == "local" and "api_key" not in explicit:
        kwargs["api_key"] = None  # an environment default only matters to HTTP
    return build_embedder(**{**kwargs, "backend": kind}, batch_size=batch_size)
