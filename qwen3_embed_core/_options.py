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

import math
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

from ._errors import ConfigurationError, ModelNotFoundError
from ._qwen3 import MODEL_RUNNER_MAX_BODY_BYTES, lookup_variant

BackendName = Literal["local", "model-runner"]
BACKENDS: tuple[BackendName, ...] = ("local", "model-runner")

# Read when no api_key is passed (model-runner only); adapters show it as their default.
API_KEY_ENV = "QWEN3_EMBED_API_KEY"

# A published variant is SIZE-QUANT ("0.6B-Q8_0", "4B-F16"): a bare name of that
# shape means a GGUF file, never a served model (served names carry a namespace).
_VARIANT_NAME = re.compile(r"(?i)\d+(?:\.\d+)?B-[A-Z0-9_]+")
_PATH_START = ("/", "./", "../", "~", "\\", ".\\", "..\\")


class LocalOptions(TypedDict, total=False):
    """Options of the local (llama.cpp, in-process) backends; each is described in
    :data:`DECLARED` (``describe_option(name)``), with its range and default."""

    n_threads: int
    batch_tokens: int
    ubatch_tokens: int
    max_sequences: int
    max_tokens: int
    truncate: bool
    share_prefixes: bool
    flash_attention: bool | None
    n_gpu_layers: int
    repack: bool | None
    download: bool
    cache_dir: str


class ModelRunnerOptions(TypedDict, total=False):
    """Options of the HTTP backends (Docker Model Runner, llama-server); each is described
    in :data:`DECLARED` (``describe_option(name)``), with its range and default."""

    timeout: float
    connect_timeout: float
    max_retries: int
    batch_size: int
    max_concurrency: int
    verify: bool | str
    max_body_bytes: int
    backoff: float
    max_backoff: float


Kind = Literal["embedder", "reranker"]
KINDS: tuple[Kind, ...] = ("embedder", "reranker")

# Sequences per llama.cpp decode unless max_sequences says otherwise.
DEFAULT_MAX_SEQUENCES = 64
# llama.cpp's integer parameters are C int32: a larger Python int would overflow in ctypes.
INT32_MAX = 2**31 - 1
# Longest accepted wait in seconds (a week): threading and asyncio overflow on huge
# timeouts, and nobody waits longer than that for one HTTP answer.
MAX_SECONDS = 7 * 24 * 3600.0
# The shortest text the local embedder can hold: one token and EOS.
MIN_MAX_TOKENS = 2
# A request body smaller than this cannot hold one text and the JSON around it.
MIN_BODY_BYTES = 1024


@dataclass(frozen=True)
class Option:
    """One backend option: its name, backend, type, range and default, declared once.

    Every way in (the constructors, the specs and stored configs, the adapters'
    fields, ``--option`` on the command line) validates a value with
    :meth:`check`; the backends receive the checked value or :attr:`default`.

    Args:
        name: the keyword.
        backend: which backend takes it.
        hint: its type (``int``, ``float``, ``bool``, ``str``, or a union of them).
        default: the value when not given; None where the backend works it out
            (the doc says how).
        doc: what it means, its unit and its default, in one sentence.
        low: the smallest accepted value (numbers).
        high: the largest accepted value (numbers).
        above: True when ``low`` itself is refused (``timeout > 0``).
        kinds: the model kinds that take it (``download`` is for embedders only).
    """

    name: str
    backend: BackendName
    hint: Any
    default: object
    doc: str
    low: float | None = None
    high: float | None = None
    above: bool = False
    kinds: tuple[Kind, ...] = KINDS

    def describe_range(self) -> str:
        """The accepted values, in words (``"an integer from 1 to 2147483647"``)."""
        kind = "an integer" if self.hint is int else "a finite number" if self.hint is float \
            else _hint_words(self.hint)
        if self.low is None:
            return kind
        low = f"> {_num(self.low)}" if self.above else f">= {_num(self.low)}"
        if self.high is None:
            return f"{kind} {low}"
        return f"{kind} {low} and <= {_num(self.high)}"

    def check(self, value: object) -> object:
        """``value`` checked against the declaration (ints as int, numbers as float).

        None is the default's spelling and is returned as is; anything else of
        the wrong type or out of range is a :class:`ConfigurationError` naming
        the option and what it accepts.
        """
        if value is None:
            return None
        given = value
        if isinstance(value, os.PathLike) and _matches("", self.hint):
            value = os.fspath(value)
        if self.hint is int and isinstance(value, numbers.Integral) and not isinstance(
            value, bool
        ):
            value = int(value)
        elif self.hint is float and isinstance(value, numbers.Real) and not isinstance(
            value, bool
        ):
            value = float(value)
            if not math.isfinite(value):
                raise ConfigurationError(
                    f"option {self.name}={value!r} is not {self.describe_range()}; "
                    f"{self._fix()}"
                )
        if not _matches(value, self.hint):
            raise ConfigurationError(
                f"option {self.name}={_show(value)} has the wrong type; expected "
                f"{self.describe_range()} ({self._fix()})"
            )
        if self.low is not None and isinstance(value, (int, float)) and not isinstance(
            value, bool
        ):
            low_bad = value <= self.low if self.above else value < self.low
            if low_bad or (self.high is not None and value > self.high):
                raise ConfigurationError(
                    f"option {self.name}={given!r} is out of range: it must be "
                    f"{self.describe_range()} ({self._fix()})"
                )
        if isinstance(value, str) and not _clean(value):
            raise ConfigurationError(
                f"option {self.name}={_show(value)} contains a NUL byte or a lone surrogate; "
                "pass a valid path or text"
            )
        return value

    def _fix(self) -> str:
        return f"{self.name}: {self.doc}; pass None for the default"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _hint_words(hint: object) -> str:
    words = {bool: "True or False", str: "a string", type(None): "None", int: "an integer",
             float: "a number"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(words.get(a, str(a)) for a in typing.get_args(hint)
                           if a is not type(None))
    return str(words.get(hint, hint))  # type: ignore[call-overload]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _clean(text: str) -> bool:
    """No NUL and no lone surrogate: text that can reach a file system, a URL or C."""
    return "\x00" not in text and _encodable(text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _count(name: str, backend: BackendName, default: int | None, low: int, doc: str,
           high: int = INT32_MAX) -> Option:
    return Option(name, backend, int, default, doc, low=low, high=high)


def _seconds(name: str, default: float, doc: str, *, above: bool = False) -> Option:
    return Option(name, "model-runner", float, default, doc, low=0, high=MAX_SECONDS, above=above)


DECLARED: tuple[Option, ...] = (
    # -- local (llama.cpp in this process) --
    _count("n_threads", "local", None, 1,
           "CPU threads for llama.cpp (default: the physical cores)"),
    _count("batch_tokens", "local", None, 2,
           "Tokens per llama.cpp decode, the packing budget (default: from the model's shape)"),
    _count("ubatch_tokens", "local", None, 1,
           "llama.cpp's physical batch in tokens (default: batch_tokens)"),
    _count("max_sequences", "local", DEFAULT_MAX_SEQUENCES, 1,
           f"Texts per decode (default {DEFAULT_MAX_SEQUENCES})"),
    _count("max_tokens", "local", None, MIN_MAX_TOKENS,
           "Longest accepted text in tokens, EOS included, at least one token and EOS "
           "(default: the model's context)"),
    Option("truncate", "local", bool, False,
           "Cut longer texts (with a warning) instead of raising TextTooLongError "
           "(default False)"),
    Option("share_prefixes", "local", bool, True,
           "Decode token prefixes shared by texts of one pack once (default True; exact)"),
    Option("flash_attention", "local", bool | None, None,
           "llama.cpp's CPU flash attention (default: for embeddings, on for F16, BF16 and "
           "quantized files, where it is as exact and faster, off for F32; off for the "
           "reranker)"),
    _count("n_gpu_layers", "local", 0, 0,
           "Layers to offload on a GPU build of llama.cpp (default 0)"),
    Option("repack", "local", bool | None, None,
           "llama.cpp's weight repacking for its AMX/AVX kernels (default: on where it was "
           "measured faster and safe for the file type and CPU)"),
    Option("download", "local", bool, True,
           "Fetch a variant missing from the Hugging Face cache (default True; embedders "
           "only: a reranker is given as a file)", kinds=("embedder",)),
    Option("cache_dir", "local", str, None,
           "Hugging Face cache folder (default: the hub's own; embedders only: a reranker "
           "is given as a file)", kinds=("embedder",)),
    # -- model-runner (HTTP) --
    _seconds("timeout", 60.0, "Seconds to wait for an answer (default 60)", above=True),
    _seconds("connect_timeout", 5.0, "Seconds to wait for a connection (default 5)",
             above=True),
    _count("max_retries", "model-runner", 3, 0,
           "Further rounds over the endpoints after retryable failures (default 3)"),
    _count("batch_size", "model-runner", 64, 1, "Texts (or documents) per request (default 64)"),
    # More connections than this per endpoint is a mistake, not a setting (threads, sockets).
    _count("max_concurrency", "model-runner", 4, 1,
           "Requests in flight per endpoint, at most 1024 (default 4)", high=1024),
    Option("verify", "model-runner", bool | str, True,
           "TLS certificate checking: True, False, or a CA bundle path (default True)"),
    _count("max_body_bytes", "model-runner", MODEL_RUNNER_MAX_BODY_BYTES, MIN_BODY_BYTES,
           "Largest request body in bytes (default 10 MiB, Model Runner's limit)"),
    _seconds("backoff", 0.5,
             "First retry delay in seconds, doubled each round (default 0.5; 0: retry at once)"),
    _seconds("max_backoff", 20.0, "Longest retry delay in seconds (default 20)"),
)
"""Every backend option, once: what each constructor, spec, adapter and CLI flag checks."""

_BY_NAME: dict[str, Option] = {o.name: o for o in DECLARED}
_TYPED: dict[BackendName, type[Any]] = {"local": LocalOptions, "model-runner": ModelRunnerOptions}

# The fields of one model kind that are not backend options, and which kind has them:
# given to the other kind, they are refused by name rather than as unknown.
KIND_FIELDS: dict[str, Kind] = {"dimensions": "embedder", "task": "embedder"}


def _agree() -> None:
    """The TypedDicts (for type checkers) must list exactly the declared options."""
    for backend, typed in _TYPED.items():
        hints = typing.get_type_hints(typed)
        declared = {o.name: o.hint for o in DECLARED if o.backend == backend}
        if hints != declared:
            raise AssertionError(f"{typed.__name__} and DECLARED disagree: {hints} {declared}")


_agree()


def declared_option(name: str) -> Option:
    """The declaration of option ``name`` (KeyError if there is none)."""
    return _BY_NAME[name]


# What the fields that name a model mean, for every adapter that takes them (the
# backend options' meanings are in DECLARED).
NAMING_DOCS: dict[str, str] = {
    "model": "Which model: a GGUF path, a variant ('0.6B-Q8_0') or a Model Runner tag "
    "('ai/qwen3-embedding:0.6B-F16'; Model Runner's default with no model).",
    "model_path": "Alias of model.",
    "backend": "Where it runs: 'local' (llama.cpp in this process) or 'model-runner' (HTTP); "
    "inferred from model/base_url when not given.",
    "base_url": "Model Runner or llama-server URL (default http://localhost:12434); a URL "
    "ending in /v1 is used as is.",
    "base_urls": "Several endpoints serving the same model: batches are spread across them.",
    "api_key": f"Bearer token for an endpoint behind a proxy (default ${API_KEY_ENV}).",
    "options": "Any other backend option by name (LocalOptions/ModelRunnerOptions in the core: "
    "max_retries, verify, n_gpu_layers...).",
}


def describe_option(name: str) -> str:
    """One line for an adapter field or a CLI flag: meaning, unit, default, backend.

    ``name`` is a backend option (:data:`DECLARED`) or a field that names the
    model (``model``, ``backend``, ``base_url``... :data:`NAMING_DOCS`).
    """
    if name in NAMING_DOCS:
        return NAMING_DOCS[name]
    o = _BY_NAME[name]
    return f"{o.doc} ({o.backend})"


def option_names(backend: BackendName, kind: Kind | None = None) -> frozenset[str]:
    """The option names ``backend`` takes (for ``kind`` of model, when given)."""
    return frozenset(
        o.name for o in DECLARED if o.backend == backend and (kind is None or kind in o.kinds)
    )


def option_defaults(backend: BackendName, kind: Kind) -> dict[str, object]:
    """Every option ``backend`` takes for ``kind``, at its declared default."""
    return {o.name: o.default for o in DECLARED if o.backend == backend and kind in o.kinds}


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
        return backend  # type: ignore[return-value]  # checked just above
    if base_url is not None or base_urls:
        return "model-runner"
    if model is None:
        return "model-runner"
    if isinstance(model, os.PathLike):
        return "local"
    if not isinstance(model, str):
        raise ConfigurationError(
            f"model= must be a GGUF path, a variant name or a served model name, not "
            f"{type(model).__name__}"
        )
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


def check_options(
    backend: BackendName, options: object, kind: Kind | None = None
) -> dict[str, object]:
    """Refuse options ``backend`` (for ``kind``) does not take, of the wrong type or out of
    range; return the given ones, checked, as a dict.

    An option given as None is left out: None means "the default" for every
    option (``n_threads=args.threads`` with no ``--threads`` given).

    Args:
        backend: ``"local"`` or ``"model-runner"``.
        options: option names to values.
        kind: ``"embedder"`` or ``"reranker"``; None takes the options of either.
    """
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"options= must be a dict of option names to values, not {type(options).__name__}"
        )
    odd = [k for k in options if not isinstance(k, str)]
    if odd:
        raise ConfigurationError(f"option names are strings, not {_show(odd[0])}")
    allowed = option_names(backend, kind)
    wrong = sorted(k for k in options if k not in allowed)
    if wrong:
        _refuse(backend, kind, wrong, allowed)
    return {
        key: checked
        for key, value in options.items()
        if (checked := _BY_NAME[key].check(value)) is not None
    }


def _refuse(
    backend: BackendName, kind: Kind | None, wrong: list[str], allowed: frozenset[str]
) -> typing.NoReturn:
    def them(names: list[str]) -> str:
        return "it" if len(names) == 1 else "them"

    other = next(b for b in BACKENDS if b != backend)
    theirs = [k for k in wrong if k in option_names(other)]
    if theirs:
        raise ConfigurationError(
            f"{', '.join(theirs)}: only for backend={other!r}, but the backend is "
            f"{backend!r}; drop {them(theirs)} or pass backend={other!r}"
        )
    kinds = {**{o.name: o.kinds for o in DECLARED}, **{k: (v,) for k, v in KIND_FIELDS.items()}}
    others = [k for k in wrong if k in kinds]
    if others and kind is not None:
        owner = kinds[others[0]][0]
        raise ConfigurationError(
            f"{', '.join(others)}: only for the {owner}, but this is a {kind}; "
            f"drop {them(others)}"
        )
    raise ConfigurationError(
        f"unknown option(s) {', '.join(wrong)} for backend={backend!r}; it takes: "
        f"{', '.join(sorted(allowed))}"
    )


def resolve_options(
    backend: BackendName, options: object, kind: Kind
) -> dict[str, Any]:
    """:func:`check_options`, then every other option of ``backend`` and ``kind`` at its
    declared default: what a constructor hands its backend, every value explicit."""
    return {**option_defaults(backend, kind), **check_options(backend, options, kind)}


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
    # The model kind whose options apply (None: either kind's).
    KIND: ClassVar[Kind | None] = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigurationError(
                f"backend must be one of {', '.join(BACKENDS)}, not {_show(self.backend)}"
            )
        if self.backend == "model-runner" and self.model == "":
            object.__setattr__(self, "model", self.DEFAULT_MODEL)
        if not isinstance(self.model, str) or not self.model.strip() or not _clean(self.model):
            raise ConfigurationError(
                (
                    "the local backend needs model= (a GGUF path or a variant name such as "
                    "'0.6B-Q8_0')" if self.backend == "local"
                    else "model= must be a served model name"
                ) + f", not {_show(self.model)}"
            )
        urls = self.base_urls
        if isinstance(urls, str) or not isinstance(urls, (list, tuple)) or not all(
            isinstance(u, str) and u.strip() and _clean(u) for u in urls
        ):
            raise ConfigurationError(
                f"base_urls must be a list of server URLs, not {_show(urls)}"
            )
        object.__setattr__(self, "base_urls", tuple(urls))
        env = self.api_key_env_var
        if env is not None and (not isinstance(env, str) or not env.strip() or not _clean(env)):
            raise ConfigurationError(
                f"api_key_env_var must name an environment variable, not {_show(env)}"
            )
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
        object.__setattr__(
            self, "options", check_options(self.backend, self.options, self.KIND)
        )

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
        for name, value in (("model", model), ("model_path", model_path)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigurationError(
                    f"{name}= must be a GGUF path, a variant name or a served model name, "
                    f"not {type(value).__name__}"
                )
        for name, value in (("base_url", base_url), ("api_key_env_var", api_key_env_var)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name}= must be a string, not {type(value).__name__}")
        if base_urls is not None and (
            isinstance(base_urls, str) or not isinstance(base_urls, Sequence)
        ):
            raise ConfigurationError(
                f"base_urls= must be a list of URLs, not {type(base_urls).__name__}"
            )
        for name, given in (("options", options), ("defaults", defaults)):
            if given is not None and not isinstance(given, Mapping):
                raise ConfigurationError(
                    f"{name}= must be a dict of option names to values, not "
                    f"{type(given).__name__}"
                )
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
            if v is not None and k in option_names(kind, cls.KIND):
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
        if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
            raise ConfigurationError(
                f"the model config's format must be a positive integer, not {_show(fmt)}"
            )
        if fmt > cls.FORMAT:
            raise ConfigurationError(
                f"this config was written by a newer qwen3-embed (format {fmt}); upgrade it"
            )
        if "api_key" in data:
            raise ConfigurationError(
                "configs never hold an API key; put it in an environment variable and "
                "give its name as api_key_env_var"
            )
        data = cls._upgrade(data, fmt)
        unknown = [k for k in data if k not in {f.name for f in fields(cls)}]
        if unknown:
            raise ConfigurationError(
                f"unknown model config keys: {sorted(map(str, unknown))}; it takes "
                f"{sorted(f.name for f in fields(cls))} and format"
            )
        urls, opts = data.get("base_urls"), data.get("options")
        if urls is not None and (isinstance(urls, str) or not isinstance(urls, (list, tuple))):
            raise ConfigurationError(
                f"the model config's base_urls must be a list of URLs, not {_show(urls)}"
            )
        if opts is not None and not isinstance(opts, Mapping):
            raise ConfigurationError(
                f"the model config's options must be a dict of option names to values, "
                f"not {_show(opts)}"
            )
        data["base_urls"] = tuple(urls or ())
        data["options"] = dict(opts or {})
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
