"""How a model is named, where it runs and with which options: one rule for every surface.

``Qwen3Embedder``, ``Qwen3Reranker``, the LangChain, LlamaIndex and Chroma
adapters, the Qdrant collection record, Ray and the command line all read
their model options through :meth:`ModelSpec.from_options`, so the same words
mean the same thing everywhere:

* ``model`` says *which* model: a ``.gguf`` path, a variant (``"0.6B-Q8_0"``)
  or a Model Runner tag (``"ai/qwen3-embedding:0.6B-F16"``). ``model_path``
  is an alias of ``model``.
* ``backend`` says *where* it runs, ``"local"`` (llama.cpp in this process) or
  ``"model-runner"`` (Docker Model Runner or llama-server over HTTP). When it
  is not given, :func:`infer_backend` decides, in this order:

  ==========================================================  ==============
  what is given                                               backend
  ==========================================================  ==============
  ``backend=``                                                that one
  ``base_url=`` or ``base_urls=``                             model-runner
  no model                                                    model-runner
  an existing file, a name ending in ``.gguf``, a path        local
  (``/``, ``./``, ``../``, ``~``), a ``PathLike``
  a bare variant (``0.6B-Q8_0``, ``4B-F16``)                  local
  anything else (``ai/qwen3-embedding:0.6B-F16``)             model-runner
  ==========================================================  ==============

* Every other backend option is declared once, in :class:`LocalOptions` or
  :class:`ModelRunnerOptions` (the keyword arguments of the backends'
  constructors). An option for the other backend is refused, never ignored.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

from ._errors import ConfigurationError, ModelNotFoundError
from ._qwen3 import lookup_variant

BackendName = Literal["local", "model-runner"]
BACKENDS: tuple[BackendName, ...] = ("local", "model-runner")

# Read when no api_key is passed (model-runner only); adapters show it as their default.
API_KEY_ENV = "QWEN3_EMBED_API_KEY"

# A published variant is SIZE-QUANT ("0.6B-Q8_0", "4B-F16"): a bare name of that
# shape means a GGUF file, never a served model (served names carry a namespace).
_VARIANT_NAME = re.compile(r"(?i)\d+(?:\.\d+)?B-[A-Z0-9_]+")
_PATH_START = ("/", "./", "../", "~", "\\", ".\\", "..\\")


class LocalOptions(TypedDict, total=False):
    """Options of the local (llama.cpp, in-process) backends, embedder and reranker alike."""

    n_threads: int
    """CPU threads for llama.cpp (default: the physical cores)."""
    batch_tokens: int
    """Tokens per llama.cpp decode, the packing budget (default: from the model's shape)."""
    ubatch_tokens: int
    """llama.cpp's physical batch in tokens (default: batch_tokens)."""
    max_sequences: int
    """Texts per decode (default 64)."""
    max_tokens: int
    """Longest accepted text in tokens, EOS included (default: the model's context)."""
    truncate: bool
    """Cut longer texts (with a warning) instead of raising TextTooLongError (default False)."""
    share_prefixes: bool
    """Decode token prefixes shared by texts of one pack once (default True; exact)."""
    flash_attention: bool | None
    """llama.cpp's CPU flash attention (None, the default: for embeddings, on for F16, BF16 and
    quantized files, where it is as exact and faster, off for F32; off for the reranker)."""
    n_gpu_layers: int
    """Layers to offload on a GPU build of llama.cpp (default 0)."""
    repack: bool | None
    """llama.cpp's weight repacking for its AMX/AVX kernels (None, the default: on where it
    was measured faster and safe for the file type and CPU)."""
    download: bool
    """Fetch a variant missing from the Hugging Face cache (default True)."""
    cache_dir: str
    """Hugging Face cache folder (default: the hub's own)."""


class ModelRunnerOptions(TypedDict, total=False):
    """Options of the HTTP backends (Docker Model Runner, llama-server)."""

    timeout: float
    """Seconds to wait for an answer (default 60)."""
    connect_timeout: float
    """Seconds to wait for a connection (default 5)."""
    max_retries: int
    """Further rounds over the endpoints after retryable failures (default 3)."""
    batch_size: int
    """Texts (or documents) per request (default 64)."""
    max_concurrency: int
    """Requests in flight per endpoint (default 4)."""
    verify: bool | str
    """TLS certificate checking: True, False, or a CA bundle path (default True)."""
    max_body_bytes: int
    """Largest request body in bytes (default 10 MiB, Model Runner's limit)."""
    backoff: float
    """First retry delay in seconds, doubled each round (default 0.5)."""
    max_backoff: float
    """Longest retry delay in seconds (default 20)."""


OPTIONS: dict[BackendName, type[Any]] = {"local": LocalOptions, "model-runner": ModelRunnerOptions}


def option_names(backend: BackendName) -> frozenset[str]:
    """The option names ``backend`` takes."""
    return frozenset(OPTIONS[backend].__annotations__)


def _looks_like_path(model: str) -> bool:
    return (
        model.lower().endswith(".gguf")
        or model.startswith(_PATH_START)
        or os.path.isabs(model)
        or os.path.isfile(model)
    )


def infer_backend(
    backend: str | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    base_urls: Sequence[str] | None = None,
) -> BackendName:
    """The backend the options ask for (the table in this module's docstring).

    Args:
        backend: ``"local"`` or ``"model-runner"``; wins when given.
        model: a path, a variant name or a served model name.
        base_url: one server URL (implies model-runner).
        base_urls: several server URLs (implies model-runner).
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}"
            )
        return backend
    if base_url is not None or base_urls:
        return "model-runner"
    if model is None:
        return "model-runner"
    if isinstance(model, os.PathLike):
        return "local"
    if _looks_like_path(model) or _VARIANT_NAME.fullmatch(model):
        return "local"
    return "model-runner"


def _matches(value: object, hint: object) -> bool:
    """Whether ``value`` fits a simple type hint (int, float, bool, str, None, unions)."""
    if hint is typing.Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def check_options(backend: BackendName, options: Mapping[str, object]) -> dict[str, object]:
    """Refuse options ``backend`` does not take, or of the wrong type; return them as a dict.

    An option given as None is left out: None means "the default" for every
    option (``n_threads=args.threads`` with no ``--threads`` given), as the
    backends' own keyword defaults do.
    """
    allowed = option_names(backend)
    hints = typing.get_type_hints(OPTIONS[backend])
    wrong = sorted(k for k in options if k not in allowed)
    if wrong:
        other = next(b for b in BACKENDS if b != backend)
        theirs = [k for k in wrong if k in option_names(other)]
        if theirs:
            raise ConfigurationError(
                f"{', '.join(theirs)}: only for backend={other!r}, but the backend is "
                f"{backend!r}; drop {'it' if len(theirs) == 1 else 'them'} or pass "
                f"backend={other!r}"
            )
        raise ConfigurationError(
            f"unknown option(s) {', '.join(wrong)} for backend={backend!r}; it takes: "
            f"{', '.join(sorted(allowed))}"
        )
    out: dict[str, object] = {}
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not _matches(value, hints[key]):
            raise ConfigurationError(
                f"option {key}={value!r} has the wrong type; expected {hints[key]}"
            )
        out[key] = value
    return out


_VARIANT_FILE = re.compile(r"(?i)qwen3-embedding-(.+?)(?:\.gguf)?")


def model_id(name: str) -> str:
    """A model's identity for compatibility checks: the variant name when known.

    ``"ai/qwen3-embedding:0.6B-F16"``, ``"Qwen3-Embedding-0.6B-f16.gguf"``,
    ``"/models/Qwen3-Embedding-0.6B-F16"`` and ``"0.6B-F16"`` are all
    ``"0.6B-F16"`` (the same weights). Other names are kept as their file
    name, so a model file moved to another folder is still the same model.
    """
    variant = lookup_variant(name)
    if variant is not None:
        return variant.name
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    match = _VARIANT_FILE.fullmatch(base)
    if match and (variant := lookup_variant(match[1])) is not None:
        return variant.name
    return base


S = TypeVar("S", bound="ModelSpec")


@dataclass(frozen=True)
class ModelSpec:
    """Which model, on which backend, with which options: plain, serialisable data.

    Never holds an API key, only the name of the environment variable that
    does. Subclasses add what their model kind needs (dimensions, tasks,
    instructions) and how to build it.

    Args:
        backend: ``"local"`` or ``"model-runner"``.
        model: the model as given (path, variant or served name).
        base_urls: server URLs (model-runner; empty: Model Runner's default).
        api_key_env_var: environment variable holding the server's API key.
        options: backend options (see :class:`LocalOptions`, :class:`ModelRunnerOptions`).
    """

    backend: BackendName = "model-runner"
    model: str = ""
    base_urls: tuple[str, ...] = ()
    api_key_env_var: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    # The served model used when none is named (model-runner); set per model kind.
    DEFAULT_MODEL: ClassVar[str] = ""
    # Bump when the config's meaning changes; from_config refuses newer formats.
    FORMAT: ClassVar[int] = 2

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigurationError(
                f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}"
            )
        if self.backend == "model-runner" and self.model == "":
            object.__setattr__(self, "model", self.DEFAULT_MODEL)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(
                "the local backend needs model= (a GGUF path or a variant name such as "
                "'0.6B-Q8_0')" if self.backend == "local" else "model= must be a served model name"
            )
        object.__setattr__(self, "base_urls", tuple(self.base_urls))
        if self.backend == "local":
            wrong = ["base_url(s)"] * bool(self.base_urls) + ["api_key_env_var"] * bool(
                self.api_key_env_var
            )
            if wrong:
                raise ConfigurationError(
                    f"{', '.join(wrong)}: only for backend='model-runner', but the backend is "
                    f"'local'; drop {'it' if len(wrong) == 1 else 'them'} or pass "
                    "backend='model-runner'"
                )
        object.__setattr__(self, "options", check_options(self.backend, self.options))

    # -- building from options ---------------------------------------------------

    @classmethod
    def from_options(
        cls: type[S],
        backend: str | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        model_path: str | os.PathLike[str] | None = None,
        base_url: str | None = None,
        base_urls: Sequence[str] | None = None,
        api_key_env_var: str | None = None,
        options: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        **named: Any,
    ) -> S:
        """A spec from flat options, as every surface receives them (None means "default").

        Args:
            backend: ``"local"`` or ``"model-runner"``; inferred when None (module docstring).
            model: which model: a GGUF path, a variant name or a Model Runner tag.
            model_path: an alias of ``model``.
            base_url: one server URL (model-runner).
            base_urls: several server URLs serving the same model (model-runner).
            api_key_env_var: environment variable holding the server's API key.
            options: backend options as a dict (the pass-through for any option).
            defaults: options applied only when the backend takes them (an
                adapter's own defaults, such as a batch size).
            named: the kind's own fields (``dimensions``, ``task``...) and backend
                options given by name; None values are dropped.
        """
        if model is not None and model_path is not None and os.fspath(model) != os.fspath(
            model_path
        ):
            raise ConfigurationError(
                "model= and model_path= name the same thing (model_path is an alias); pass one"
            )
        chosen = model if model is not None else model_path
        if base_url is not None and base_urls is not None:
            raise ConfigurationError("pass either base_url= or base_urls=, not both")
        if base_urls is not None and (isinstance(base_urls, str) or not base_urls):
            raise ConfigurationError("base_urls= must be a non-empty list of URLs")
        kind = infer_backend(backend, model=chosen, base_url=base_url, base_urls=base_urls)
        own = {f.name for f in fields(cls)} - {f.name for f in fields(ModelSpec)}
        kind_fields = {k: v for k, v in named.items() if k in own and v is not None}
        merged: dict[str, Any] = {}
        for k, v in (defaults or {}).items():
            if v is not None and k in option_names(kind):
                merged[k] = v
        given = dict(options or {})
        clash = sorted(k for k, v in named.items() if k not in own and v is not None and k in given)
        if clash:
            raise ConfigurationError(
                f"{', '.join(clash)} given both by name and in options=; pass each once"
            )
        merged.update(given)
        merged.update({k: v for k, v in named.items() if k not in own and v is not None})
        text = os.fspath(chosen) if chosen is not None else None
        if kind == "local":
            if text is None:
                raise ConfigurationError(
                    "the local backend needs model= (a GGUF path or a variant name such as "
                    "'0.6B-Q8_0')"
                )
            path = os.path.expanduser(text)
            if os.path.isfile(path):
                text = os.path.abspath(path)  # the same file from any working directory
            elif isinstance(chosen, os.PathLike) or _looks_like_path(text):
                # Said now, not at first use. A stored config (from_config) naming a
                # file this machine lacks still loads; building it names the file.
                raise ModelNotFoundError(f"no GGUF file at {path}")
        urls = (base_url,) if base_url is not None else tuple(base_urls or ())
        return cls(
            backend=kind, model=text or cls.DEFAULT_MODEL, base_urls=urls,
            api_key_env_var=api_key_env_var, options=merged, **kind_fields,
        )

    # -- what the backends need ------------------------------------------------

    @property
    def model_id(self) -> str:
        """See :func:`model_id`: equal for the same weights wherever they live."""
        return model_id(self.model)

    def api_key(self, explicit: str | None = None) -> str | None:
        """The API key to send: ``explicit``, else ``$api_key_env_var``, else the default variable.

        A named variable that is unset is an error (the config promised a key).
        """
        if self.backend == "local":
            if explicit is not None:
                raise ConfigurationError(
                    "api_key: only for backend='model-runner', but the backend is 'local'; "
                    "drop it or pass backend='model-runner'"
                )
            return None
        if explicit is not None:
            return explicit
        if self.api_key_env_var:
            key = os.environ.get(self.api_key_env_var)
            if not key:
                raise ConfigurationError(
                    f"the API key is read from ${self.api_key_env_var}, which is not set"
                )
            return key
        return os.environ.get(API_KEY_ENV) or None

    def url_options(self) -> dict[str, Any]:
        """``base_url``/``base_urls`` keywords for the HTTP backends (nothing: the default)."""
        if len(self.base_urls) == 1:
            return {"base_url": self.base_urls[0]}
        return {"base_urls": list(self.base_urls)} if self.base_urls else {}

    # -- JSON ----------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """JSON-compatible config (no API key, only its variable's name)."""
        config: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        config["base_urls"] = list(self.base_urls)
        config["options"] = dict(self.options)
        config["format"] = self.FORMAT
        return config

    @classmethod
    def from_config(cls: type[S], config: Mapping[str, Any]) -> S:
        """Rebuild from :meth:`to_config`'s output; unknown keys or a newer format are errors."""
        if not isinstance(config, Mapping):
            raise ConfigurationError(f"a model config is a dict, not {type(config).__name__}")
        data = dict(config)
        fmt = data.pop("format", cls.FORMAT)
        if not isinstance(fmt, int) or fmt > cls.FORMAT:
            raise ConfigurationError(
                f"this config was written by a newer qwen3-embed (format {fmt}); upgrade it"
            )
        if "api_key" in data:
            raise ConfigurationError(
                "configs never hold an API key; put it in an environment variable and "
                "give its name as api_key_env_var"
            )
        data = cls._upgrade(data, fmt)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown model config keys: {sorted(unknown)}")
        data["base_urls"] = tuple(data.get("base_urls") or ())
        data["options"] = dict(data.get("options") or {})
        return cls(**data)

    @classmethod
    def _upgrade(cls, data: dict[str, Any], fmt: int) -> dict[str, Any]:
        """Read an older format (1: ``model_path`` for local, options as fields)."""
        if fmt >= 2:
            return data
        path = data.pop("model_path", None)
        if path is not None:
            data["model"] = path
        data["options"] = {
            k: data.pop(k) for k in ("max_tokens", "truncate") if data.get(k) not in (None, False)
        }
        data.pop("max_tokens", None)
        data.pop("truncate", None)
        return data
