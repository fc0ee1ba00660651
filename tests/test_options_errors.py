"""Every way in checks options, stored configs and instruction text by one declaration.

Issue 18's reproducers, each through every surface that takes the value: the
core constructors, the specs (and stored configs), LangChain, LlamaIndex,
Chroma and the command line. Each must give a library error naming the
option (or field), or apply the value; never a raw exception, never a
silently dropped or silently replaced value.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import re

import numpy as np
import pytest
from pydantic import ValidationError

from qwen3_embed_core import (
    ConfigurationError,
    EmbedderSpec,
    Qwen3Embedder,
    Qwen3EmbedError,
    Qwen3Reranker,
    RerankerSpec,
)
from qwen3_embed_core._options import (
    DECLARED,
    LocalOptions,
    ModelRunnerOptions,
    check_options,
    describe_option,
    option_defaults,
    option_names,
)

from .conftest import COS_MIN

SERVER = "http://127.0.0.1:9/v1"  # never contacted: nothing is sent until the first call

# (option, bad value): each out of range, of the wrong type, or not finite.
BAD_LOCAL = [
    ("max_tokens", 1), ("max_tokens", 0), ("max_tokens", -1), ("max_tokens", 2**40),
    ("n_threads", 0), ("n_threads", -1), ("n_threads", True), ("n_threads", 1.5),
    ("n_threads", "4"), ("batch_tokens", 1), ("ubatch_tokens", 0), ("max_sequences", 0),
    ("n_gpu_layers", -1), ("truncate", "yes"), ("truncate", 1), ("repack", "no"),
]
BAD_HTTP = [
    ("timeout", float("nan")), ("timeout", float("inf")), ("timeout", 0), ("timeout", -1),
    ("timeout", True), ("timeout", "60"), ("timeout", 1e300), ("connect_timeout", float("nan")),
    ("connect_timeout", float("-inf")), ("connect_timeout", 0.0), ("backoff", float("nan")),
    ("backoff", -0.5), ("max_backoff", float("inf")), ("max_retries", -1),
    ("batch_size", 0), ("max_concurrency", 0), ("max_body_bytes", 10), ("verify", 5),
]


def _refuses(option: str, build) -> None:
    """``build()`` raises our error (pydantic's wrapping it, for the adapters) naming option."""
    with pytest.raises((ConfigurationError, ValidationError)) as info:
        build()
    assert f"{option}" in str(info.value), str(info.value)
    if isinstance(info.value, ValidationError):
        assert "ConfigurationError" in repr(info.value.errors()) or f"option {option}" in str(
            info.value)


def _surfaces(model: str, backend: str, kind: str):
    """Builders of each surface for one model, given options by name."""
    from qwen3_embed_chroma import Qwen3EmbeddingFunction
    from qwen3_embed_langchain import Qwen3Embeddings
    from qwen3_embed_langchain import Qwen3Reranker as LangChainReranker
    from qwen3_embed_llamaindex import Qwen3Embedding, Qwen3Rerank

    url = {} if backend == "local" else {"base_url": SERVER}
    core = Qwen3Embedder if kind == "embedder" else Qwen3Reranker
    spec = EmbedderSpec if kind == "embedder" else RerankerSpec

    def constructor(**o):
        if backend == "local":
            return core.local(model, **o)
        return core.model_runner(model, **url, **o)

    out = {
        "constructor": constructor,
        "spec": lambda **o: spec.from_options(backend, model=model, **url, **o),
        "spec options=": lambda **o: spec.from_options(backend, model=model, **url, options=o),
        "config": lambda **o: spec.from_config(
            {**spec.from_options(backend, model=model, **url).to_config(), "options": o}),
    }
    if kind == "embedder":
        out["langchain"] = lambda **o: Qwen3Embeddings(backend=backend, model=model, **url,
                                                       options=o)
        out["llamaindex"] = lambda **o: Qwen3Embedding(backend=backend, model=model, **url,
                                                       options=o)
        out["chroma"] = lambda **o: Qwen3EmbeddingFunction(model, backend=backend, **url, **o)
        out["chroma config"] = lambda **o: Qwen3EmbeddingFunction.build_from_config(
            {**spec.from_options(backend, model=model, **url).to_config(), "options": o})
    else:
        out["langchain"] = lambda **o: LangChainReranker(backend=backend, model=model, **url,
                                                         options=o)
        out["llamaindex"] = lambda **o: Qwen3Rerank(backend=backend, model=model, **url,
                                                    options=o)
    return out


def _cli(argv: list[str]) -> tuple[int, str]:
    from qwen3_embed_cli import main

    err = io.StringIO()
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(err):
        main(argv)
    return int(stop.value.code or 0), err.getvalue()


# -- "Silently wrong results" 4 and the raw exceptions: ranges and types ----------------


@pytest.mark.parametrize(("option", "value"), BAD_LOCAL, ids=repr)
@pytest.mark.parametrize("kind", ["embedder", "reranker"])
def test_bad_local_option_refused_by_every_surface(option, value, kind, tiny_model,
                                                   tiny_reranker):
    model = str(tiny_model if kind == "embedder" else tiny_reranker)
    for name, build in _surfaces(model, "local", kind).items():
        _refuses(option, lambda b=build: b(**{option: value}))
        assert name  # (the surface, in a failure's traceback)


@pytest.mark.parametrize(("option", "value"), BAD_HTTP, ids=repr)
@pytest.mark.parametrize("kind", ["embedder", "reranker"])
def test_bad_http_option_refused_by_every_surface(option, value, kind):
    model = "ai/qwen3-embedding" if kind == "embedder" else "ai/qwen3-reranker"
    for build in _surfaces(model, "model-runner", kind).values():
        _refuses(option, lambda b=build: b(**{option: value}))


def test_cli_flags_and_option_values_are_checked_by_the_declaration(tiny_model, tiny_reranker,
                                                                    monkeypatch):
    monkeypatch.delenv("QWEN3_EMBED_MODEL", raising=False)
    for argv, option in [
        (["embed", "x", "--model", str(tiny_model), "--max-tokens", "0"], "max_tokens"),
        (["embed", "x", "--model", str(tiny_model), "--option", "n_threads=-1"], "n_threads"),
        (["embed", "x", "--model", "ai/qwen3-embedding", "--option", "timeout=NaN"], "timeout"),
        (["rerank", "q", "d", "--model", str(tiny_reranker), "--max-tokens", "1"], "max_tokens"),
        (["rerank", "q", "d", "--model", str(tiny_reranker), "--option", "n_threads=0"],
         "n_threads"),
    ]:
        code, err = _cli(argv)
        assert code == 2 and option in err and "Traceback" not in err, (argv, err)


def test_a_ca_bundle_that_is_not_one_is_a_configuration_error(tmp_path):
    """Found by the property tests: verify=os.devnull raised a raw ssl.SSLError."""
    (tmp_path / "bad.pem").write_text("not a certificate")
    for path in (os.devnull, str(tmp_path / "bad.pem"), str(tmp_path)):
        with pytest.raises(ConfigurationError, match="verify="):
            Qwen3Embedder.model_runner(base_url=SERVER, verify=path)
        with pytest.raises(ConfigurationError, match="verify="):
            Qwen3Reranker.model_runner(base_url=SERVER, verify=path)


def test_max_tokens_1_no_longer_makes_every_text_eos_alone(tiny_model):
    """Reproducer: max_tokens=1, truncate=True gave two different texts cosine 1.0."""
    with pytest.raises(ConfigurationError, match=r"max_tokens=1 is out of range.*>= 2"):
        Qwen3Embedder.local(tiny_model, max_tokens=1, truncate=True)
    with pytest.raises(ConfigurationError, match=r"max_tokens=0 is out of range"):
        Qwen3Embedder.local(tiny_model, max_tokens=0)  # was: silently the context (8192)
    with pytest.raises(ConfigurationError, match=r"n_threads=0 is out of range"):
        Qwen3Embedder.local(tiny_model, n_threads=0)  # was: silently the physical cores


def test_max_tokens_must_hold_the_instruction_and_a_token(tiny_model, reference):
    """A limit under the query instruction would cut every query to the same tokens."""
    with pytest.raises(ConfigurationError, match=r"cannot hold the query instruction"):
        Qwen3Embedder.local(tiny_model, max_tokens=5, truncate=True)
    # A short instruction leaves room: the smallest limit embeds a token and EOS, exactly.
    with Qwen3Embedder.local(tiny_model, instruction="Q:", max_tokens=8, truncate=True) as emb:
        prefix = len(reference.tokenize("Q:"))  # its tokens and EOS
        assert prefix + 1 <= 8
        with pytest.warns(UserWarning, match="truncated"):
            docs = emb.embed_documents(["alpha beta gamma delta", "zeta eta theta iota"])
        assert float(docs[0] @ docs[1]) < 0.999  # not the same cut text
        cut = [*reference.tokenize("alpha beta gamma delta")[:7], reference.eos_id]
        assert float(docs[0] @ reference.embed_ids(cut)) >= COS_MIN
        with pytest.raises(ConfigurationError, match=r"shorter task in this call"):
            emb.embed_query("x", task="question_answering")


def test_none_means_the_default_on_every_constructor(tiny_reranker):
    """Reproducer: timeout=None was refused by Qwen3Embedder.model_runner only."""
    defaults = option_defaults("model-runner", "embedder")
    nones = dict.fromkeys(defaults)
    with Qwen3Embedder.model_runner(base_url=SERVER, **nones) as emb:
        assert emb.backend.config.timeout == defaults["timeout"] == 60.0
        assert emb.backend.batch_size == defaults["batch_size"]
    with Qwen3Reranker.model_runner(base_url=SERVER, timeout=None, connect_timeout=None) as rr:
        assert rr.backend.timeout == 60.0 and rr.backend.connect_timeout == 5.0
    spec = EmbedderSpec.from_options(base_url=SERVER, timeout=None, options={"backoff": None})
    assert dict(spec.options) == {}
    with Qwen3Reranker.local(tiny_reranker, **dict.fromkeys(option_names("local", "reranker"))) \
            as rr:
        assert rr.backend.engine.max_sequences >= 2  # type: ignore[attr-defined]


def test_numbers_keep_their_meaning_and_integers_come_back_as_int():
    spec = EmbedderSpec.from_options(base_url=SERVER, timeout=5, max_retries=np.int64(2))
    assert spec.options == {"timeout": 5.0, "max_retries": 2}
    assert type(spec.options["max_retries"]) is int  # JSON-serialisable, not numpy
    with Qwen3Embedder.model_runner(base_url=SERVER, timeout=0.25, max_retries=0) as emb:
        assert (emb.backend.timeout, emb.backend.max_retries) == (0.25, 0)


# -- options of the other backend, kind or nothing: the standard words ---------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_tokens": 5}, "max_tokens: only for backend='local', but the backend is 'model-runner'"),
    ({"n_threads": 2}, "n_threads: only for backend='local'"),
    ({"truncate": True}, "truncate: only for backend='local'"),
    ({"download": False}, "download: only for backend='local'"),
    ({"colour": 1}, "unknown option.* colour"),
])
def test_model_runner_constructors_refuse_local_options(kwargs, message):
    """Reproducer: a raw TypeError from HttpBackend.__init__."""
    with pytest.raises(ConfigurationError, match=message):
        Qwen3Embedder.model_runner(base_url=SERVER, **kwargs)
    with pytest.raises(ConfigurationError, match=message):
        Qwen3Reranker.model_runner(base_url=SERVER, **kwargs)


def test_embedder_fields_on_a_reranker_are_refused_by_name(tiny_reranker):
    message = "dimensions: only for the embedder, but this is a reranker"
    with pytest.raises(ConfigurationError, match=message):
        Qwen3Reranker.model_runner(base_url=SERVER, dimensions=32)
    with pytest.raises(ConfigurationError, match=message):
        Qwen3Reranker.local(tiny_reranker, dimensions=32)
    with pytest.raises(ConfigurationError, match="timeout: only for backend='model-runner'"):
        Qwen3Reranker.local(tiny_reranker, timeout=5)


def test_reranker_download_and_cache_dir_are_refused_not_dropped(tiny_reranker, monkeypatch):
    """Reproducer: Qwen3Reranker.local(path, download=False, cache_dir="/nope") dropped both."""
    from qwen3_embed_langchain import Qwen3Reranker as LangChainReranker
    from qwen3_embed_llamaindex import Qwen3Rerank

    path = str(tiny_reranker)
    message = r"cache_dir, download: only for the embedder, but this is a reranker"
    builds = [
        lambda: Qwen3Reranker.local(path, download=False, cache_dir="/nope"),
        lambda: RerankerSpec.from_options(model=path, download=False, cache_dir="/nope"),
        lambda: RerankerSpec.from_options(model=path, options={"download": False,
                                                               "cache_dir": "/nope"}),
        lambda: RerankerSpec.from_config({**RerankerSpec.from_options(model=path).to_config(),
                                          "options": {"download": False, "cache_dir": "/nope"}}),
        lambda: LangChainReranker(model=path, options={"download": False, "cache_dir": "/nope"}),
        lambda: Qwen3Rerank(model=path, options={"download": False, "cache_dir": "/nope"}),
    ]
    for build in builds:
        with pytest.raises((ConfigurationError, ValidationError), match=message):
            build()
    monkeypatch.delenv("QWEN3_RERANK_MODEL", raising=False)
    code, err = _cli(["rerank", "q", "d", "--model", path, "--option", "download=false",
                      "--option", "cache_dir=/nope"])
    assert code == 2 and re.search(message, err), err
    # The embedder applies them: download=False is obeyed (nothing fetched, said so).
    with pytest.raises(Qwen3EmbedError, match=r"0\.6B-Q8_0"):
        Qwen3Embedder.local("0.6B-Q8_0", download=False, cache_dir="/nope")


# -- instruction text -----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task": "\ud800"}, r"task= contains a lone surrogate '\\ud800' at character 0"),
    ({"task": "find \x00 it"}, r"task= contains a NUL byte at character 5"),
    ({"instruction": "Q\udfff:"}, r"instruction= contains a lone surrogate"),
])
def test_task_and_instruction_text_checked_at_construction(kwargs, message, tiny_model):
    """Reproducer: task="\\ud800" built, then embed_query raised a raw UnicodeEncodeError."""
    with pytest.raises(ConfigurationError, match=message):
        Qwen3Embedder.local(tiny_model, **kwargs)
    with pytest.raises(ConfigurationError, match=message):
        Qwen3Embedder.model_runner(base_url=SERVER, **kwargs)
    with pytest.raises(ConfigurationError, match=message):
        EmbedderSpec.from_options(model=str(tiny_model), **kwargs)


def test_per_call_task_text_checked(embedder):
    for call in (embedder.embed_query, embedder.format_query):
        with pytest.raises(ConfigurationError, match="lone surrogate"):
            call("hello", task="\ud800")
    with pytest.raises(ConfigurationError, match="lone surrogate"):
        embedder.embed_queries(["hello"], task="a\udc00")
    with pytest.raises(ConfigurationError, match="instruction= contains a lone surrogate"):
        RerankerSpec.from_options(base_url=SERVER, instruction="\ud800")


def test_a_text_starting_with_a_combining_mark_composes_with_the_instruction(tiny_model,
                                                                             reference):
    """Qwen3's tokenizer normalises the whole input: "e" + U+0301 is "é"."""
    with Qwen3Embedder.local(tiny_model, instruction="Query: cafe") as emb:
        assert emb.format_query("\u0301 au lait") == "Query: caf\u00e9 au lait"
        got = emb.embed_query("\u0301 au lait")
        assert float(got @ reference.embed("Query: cafe\u0301 au lait")) >= COS_MIN


# -- stored configs and spec fields ----------------------------------------------------------


@pytest.mark.parametrize(("build", "field"), [
    (lambda: EmbedderSpec.from_options(model=123), "model"),
    (lambda: EmbedderSpec.from_options(model_path=1.5), "model_path"),
    (lambda: EmbedderSpec.from_options(base_url=SERVER, options=[1]), "options"),
    (lambda: EmbedderSpec.from_options(base_url=SERVER, options="x"), "options"),
    (lambda: EmbedderSpec.from_options(base_url=5), "base_url"),
    (lambda: EmbedderSpec.from_options(base_urls=[SERVER, 5]), "base_urls"),
    (lambda: EmbedderSpec.from_options(base_url=SERVER, api_key_env_var=7), "api_key_env_var"),
    (lambda: EmbedderSpec.from_options(base_url=SERVER, options={1: 2}), "option names"),
    (lambda: EmbedderSpec.from_config({"options": 5}), "options"),
    (lambda: EmbedderSpec.from_config({"options": [1]}), "options"),
    (lambda: EmbedderSpec.from_config({"base_urls": "http://x"}), "base_urls"),
    (lambda: EmbedderSpec.from_config({"base_urls": [1]}), "base_urls"),
    (lambda: EmbedderSpec.from_config({"model": 5}), "model"),
    (lambda: EmbedderSpec.from_config({"format": "2"}), "format"),
    (lambda: EmbedderSpec.from_config({"format": 0}), "format"),
    (lambda: EmbedderSpec.from_config({1: 2}), "unknown model config keys"),
    (lambda: EmbedderSpec.from_config({"task_symmetric": "yes"}), "task_symmetric"),
    (lambda: EmbedderSpec.from_config({"api_key_env_var": ["K"]}), "api_key_env_var"),
    (lambda: EmbedderSpec.from_config({"dimensions": "64"}), "dimensions"),
    (lambda: EmbedderSpec.from_config({"backend": ["local"]}), "backend"),
    (lambda: RerankerSpec.from_config({"instruction": 5}), "instruction"),
    (lambda: RerankerSpec.from_config({"options": {"timeout": float("nan")}}), "timeout"),
])
def test_spec_fields_and_configs_give_configuration_errors(build, field):
    """Reproducers: AttributeError, TypeError and ValueError from the specs."""
    with pytest.raises(ConfigurationError, match=re.escape(field)):
        build()


def test_chroma_build_from_config_names_the_field():
    """Reproducer: Qwen3EmbeddingFunction.build_from_config({"options": 5}) TypeError."""
    from qwen3_embed_chroma import Qwen3EmbeddingFunction

    for config, field in [({"options": 5}, "options"), ({"options": {"timeout": "x"}}, "timeout"),
                          ({"base_urls": 3}, "base_urls")]:
        with pytest.raises(ConfigurationError, match=field):
            Qwen3EmbeddingFunction.build_from_config(config)
        with pytest.raises(ConfigurationError, match=field):
            Qwen3EmbeddingFunction.validate_config(config)


# -- one declaration ---------------------------------------------------------------------------


def test_one_declaration_feeds_every_backend_and_surface():
    """The TypedDicts, the backends' keywords, HttpConfig's defaults and the adapters' field
    descriptions are the declaration's, not copies that can drift."""
    from qwen3_embed_core._http import ModelRunnerBackend
    from qwen3_embed_core._http.base import HttpBackend
    from qwen3_embed_core._http.config import HttpConfig
    from qwen3_embed_core._local import LocalBackend
    from qwen3_embed_core._rerank_local import LocalRerankBackend
    from qwen3_embed_langchain import Qwen3Embeddings
    from qwen3_embed_llamaindex import Qwen3Embedding

    assert set(LocalOptions.__annotations__) == option_names("local")
    assert set(ModelRunnerOptions.__annotations__) == option_names("model-runner")
    for backend, kind in [(LocalBackend, "embedder"), (LocalRerankBackend, "reranker")]:
        takes = set(inspect.signature(backend).parameters)
        assert option_names("local", kind) - {"download", "cache_dir"} <= takes, backend
    assert option_names("model-runner") <= set(inspect.signature(HttpBackend).parameters)
    for name, value in option_defaults("model-runner", "embedder").items():
        if name != "verify":
            assert getattr(HttpConfig("m"), name) == value, name
            assert getattr(ModelRunnerBackend(base_url=SERVER), name) == value, name
    for adapter in (Qwen3Embeddings, Qwen3Embedding):
        for name in ("timeout", "connect_timeout", "n_threads", "max_tokens", "truncate",
                     "model", "model_path", "backend", "base_url", "base_urls", "api_key",
                     "options"):
            assert adapter.model_fields[name].description == describe_option(name)
    for option in DECLARED:
        assert option.doc and option.backend in ("local", "model-runner")
        assert option.check(option.default) == option.default  # every default is valid
        if option.hint in (int, float):
            assert option.low is not None and option.high is not None, option.name
            assert math.isfinite(option.high)


def test_check_options_refuses_non_dicts_and_keeps_none_as_default():
    assert check_options("local", {"n_threads": None, "truncate": True}) == {"truncate": True}
    for bad in ([1], "x", 5, None):
        with pytest.raises(ConfigurationError, match="options= must be a dict"):
            check_options("local", bad)

