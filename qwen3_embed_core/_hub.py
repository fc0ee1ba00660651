"""Resolve a model argument (a path, a variant name, a Model Runner tag) to a GGUF file."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import ConfigurationError, ModelNotFoundError
from ._qwen3 import VARIANTS, Variant, lookup_variant
from ._version import pip_install

# Seconds to wait for the hub's metadata answer before giving up: a missing
# network must produce an error, not a hang.
HUB_TIMEOUT_S = 10.0


def _how_to_get(variant: Variant) -> str:
    return (
        f"Download it with `hf download {variant.repo_id} {variant.filename}` "
        f"(or from {variant.url}), or pass the path of a GGUF file you already have: "
        f"Qwen3Embedder.local('/path/to/{variant.filename}')"
    )


def resolve_model(
    model: str | os.PathLike[str],
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
) -> tuple[Path, Variant | None]:
    """Return the GGUF path for ``model`` and the variant it is, if known.

    ``model``: a path to a ``.gguf`` file, a variant name (``"0.6B-Q8_0"``) or
    a Model Runner tag (``"ai/qwen3-embedding:0.6B-F16"``). Variants are looked
    up in the Hugging Face cache first and downloaded only if ``download`` is
    true and the hub is reachable; ``cache_dir`` and ``endpoint`` override the
    hub's defaults (``HF_HOME``, ``HF_ENDPOINT``).
    """
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigurationError(
            f"model must be a path or a variant name, not {type(model).__name__}"
        )
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_file():
        return path, None
    variant = lookup_variant(text) if isinstance(model, str) else None
    if variant is None:
        if isinstance(model, os.PathLike) or text.endswith(".gguf") or os.sep in text:
            raise ModelNotFoundError(f"no GGUF file at {path}")
        raise ConfigurationError(
            f"{text!r} is neither a GGUF file nor a known variant; variants: "
            f"{', '.join(VARIANTS)} (and the Model Runner tags ai/qwen3-embedding:*)"
        )
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ModelNotFoundError(
            f"variant {variant.name} is resolved through the Hugging Face cache, but "
            f"huggingface-hub is not installed ({pip_install('hub')}). "
            + _how_to_get(variant)
        ) from exc
    folder = os.fspath(cache_dir) if cache_dir is not None else None
    cached = huggingface_hub.try_to_load_from_cache(
        variant.repo_id, variant.filename, cache_dir=folder
    )
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached), variant
    if not download:
        raise ModelNotFoundError(
            f"{variant.filename} is not in the Hugging Face cache and download=False. "
            + _how_to_get(variant)
        )
    try:
        # One metadata request without the hub client's retries: offline, the
        # client would back off for ~25 s before failing.
        url = huggingface_hub.hf_hub_url(variant.repo_id, variant.filename, endpoint=endpoint)
        huggingface_hub.get_hf_file_metadata(url, timeout=HUB_TIMEOUT_S)
        got = huggingface_hub.hf_hub_download(
            variant.repo_id,
            variant.filename,
            cache_dir=folder,
            endpoint=endpoint,
            etag_timeout=HUB_TIMEOUT_S,
        )
    except Exception as exc:  # transport errors differ by hub version (requests, httpx, httpx2)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(
            f"{variant.filename} is not in the Hugging Face cache and could not be downloaded "
            f"from {variant.repo_id} ({reason}). " + _how_to_get(variant)
        ) from exc
    return Path(got), variant

