"""One rule for naming a model, read identically by every surface.

Each case is given to the core (``EmbedderSpec.from_options``), LangChain,
LlamaIndex, Chroma (and its config round trip), the CLI and the Qdrant
collection record; each must land on the same backend and model, and each
conflict must be refused with the same words.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from pydantic import ValidationError

from qwen3_embed_core import ConfigurationError, EmbedderSpec, ModelNotFoundError, infer_backend
from qwen3_embed_core.adapters import spec_from_fields

SERVER = "http://127.0.0.1:9/v1"  # never contacted: model-runner sends nothing until used


def cases(tiny: str) -> list[tuple[dict, str, str]]:
    """(options, backend, model) — the README's table, row by row."""
    return [
        ({"model": tiny}, "local", tiny),
        ({"model_path": tiny}, "local", tiny),
        ({"model": "0.6B-Q8_0"}, "local", "0.6B-Q8_0"),
        ({"model": "ai/qwen3-embedding:0.6B-F16"}, "model-runner", "ai/qwen3-embedding:0.6B-F16"),
        ({}, "model-runner", "ai/qwen3-embedding"),
        ({"model": "served.gguf", "base_url": SERVER}, "model-runner", "served.gguf"),
        ({"base_urls": [SERVER, "http://127.0.0.1:10/v1"]}, "model-runner", "ai/qwen3-embedding"),
        ({"backend": "local", "model": tiny}, "local", tiny),
        ({"backend": "model-runner", "model": "0.6B-Q8_0"}, "model-runner", "0.6B-Q8_0"),
    ]


CONFLICTS = [
    ({"model": "a.gguf", "model_path": "b.gguf"}, "model= and model_path= name the same thing"),
    ({"backend": "local", "model": "0.6B-Q8_0", "base_url": SERVER},
     r"base_url\(s\): only for backend='model-runner', but the backend is 'local'"),
    ({"model": "ai/qwen3-embedding", "max_tokens": 100},
     "max_tokens: only for backend='local', but the backend is 'model-runner'"),
    ({"model": "0.6B-Q8_0", "timeout": 5.0},
     "timeout: only for backend='model-runner', but the backend is 'local'"),
    ({"backend": "gpu"}, "backend='gpu' is not one of"),
    ({"model": "ai/qwen3-embedding", "options": {"colour": 1}}, "unknown option"),
]

# Variants resolve through the Hugging Face cache; offline tests must not download.
NO_DOWNLOAD = {"options": {"download": False}}


def _local_ok(options: dict, model: str) -> dict:
    """Options that build without network: variants get download=False."""
    return {**options, **NO_DOWNLOAD} if model == "0.6B-Q8_0" and "backend" not in options \
        else options


# -- the core -----------------------------------------------------------------------


def test_core_rule(tiny_model):
    for options, backend, model in cases(str(tiny_model)):
        spec = EmbedderSpec.from_options(**options)
        assert (spec.backend, spec.model) == (backend, model), options
        assert EmbedderSpec.from_config(spec.to_config()) == spec
        kwargs = {k: v for k, v in options.items() if k in ("model", "base_url", "base_urls")}
        kwargs["model"] = kwargs.get("model", options.get("model_path"))
        assert infer_backend(options.get("backend"), **kwargs) == backend


def test_core_conflicts():
    for options, message in CONFLICTS:
        with pytest.raises(ConfigurationError, match=message):
            EmbedderSpec.from_options(**options)


def test_a_missing_path_is_named_and_options_keep_their_types(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"no GGUF file at .*gone\.gguf"):
        EmbedderSpec.from_options(model=str(tmp_path / "gone.gguf"))
    with pytest.raises(ConfigurationError, match=r"n_threads='four' has the wrong type"):
        EmbedderSpec.from_options(model="0.6B-Q8_0", n_threads="four")
    spec = EmbedderSpec.from_options(model="0.6B-Q8_0", options={"n_threads": 2}, truncate=True)
    assert dict(spec.options) == {"n_threads": 2, "truncate": True}


def test_none_means_the_default_for_every_option(tiny_model, tiny_reranker):
    """``n_threads=args.threads`` with no ``--threads`` given: the backend's default, not an error."""
    from qwen3_embed_core import Qwen3Embedder, Qwen3Reranker
    from qwen3_embed_core._engine import physical_cores
    from qwen3_embed_core._options import check_options

    assert check_options("local", {"n_threads": None, "repack": None, "truncate": True}) == {
        "truncate": True}
    assert check_options("model-runner", {"timeout": None}) == {}
    with Qwen3Embedder.local(tiny_model, n_threads=None, max_tokens=None) as emb:
        assert emb.backend.n_threads == physical_cores()  # type: ignore[attr-defined]
        assert emb.backend.max_tokens == emb.backend.context_tokens  # type: ignore[attr-defined]
    with Qwen3Reranker.local(tiny_reranker, n_threads=None) as rr:
        assert rr.backend.engine.n_threads == physical_cores()  # type: ignore[attr-defined]
    spec = EmbedderSpec.from_options(model=str(tiny_model), options={"n_threads": None})
    assert dict(spec.options) == {}


def test_format_1_configs_still_load(tiny_model):
    """Collections written by qwen3-embed 0.1 stored model_path and local options as fields."""
    old = {"backend": "local", "model_path": str(tiny_model), "model": None, "base_urls": [],
           "api_key_env_var": None, "dimensions": 32, "task": None, "task_symmetric": False,
           "instruction": None, "max_tokens": 100, "truncate": True, "format": 1}
    spec = EmbedderSpec.from_config(old)
    assert (spec.backend, spec.model, spec.dimensions) == ("local", str(tiny_model), 32)
    assert dict(spec.options) == {"max_tokens": 100, "truncate": True}


# -- every surface reads it the same way ------------------------------------------------


def _surfaces():
    from qwen3_embed_chroma import Qwen3EmbeddingFunction
    from qwen3_embed_langchain import Qwen3Embeddings
    from qwen3_embed_llamaindex import Qwen3Embedding

    def langchain(options):
        emb = Qwen3Embeddings(**options)
        return emb.backend, emb.qwen3_embedder

    def llamaindex(options):
        emb = Qwen3Embedding(**options)
        return emb.backend, emb.qwen3_embedder

    def chroma(options):
        spec = Qwen3EmbeddingFunction(**options).spec
        again = Qwen3EmbeddingFunction.build_from_config(
            Qwen3EmbeddingFunction(spec=spec).get_config()).spec
        assert again == spec
        return spec.backend, spec.build()

    return {"langchain": langchain, "llamaindex": llamaindex, "chroma": chroma}


@pytest.mark.parametrize("surface", ["langchain", "llamaindex", "chroma"])
def test_adapters_read_the_rule_like_the_core(surface, tiny_model):
    read = _surfaces()[surface]
    for options, backend, model in cases(str(tiny_model)):
        if model == "0.6B-Q8_0" and backend == "local":
            # Built locally, so it goes to the Hugging Face cache (and finds nothing).
            with pytest.raises((ModelNotFoundError, ValidationError), match=r"Q8_0\.gguf"):
                read(_local_ok(options, model))
            continue
        got_backend, emb = read(options)
        try:
            assert got_backend == backend, (surface, options)
            assert emb.backend.name == backend
            if backend == "model-runner":
                assert emb.model_name == model
            else:
                assert emb.backend.path.resolve() == tiny_model.resolve()
        finally:
            emb.close()


@pytest.mark.parametrize("surface", ["langchain", "llamaindex", "chroma"])
def test_adapters_refuse_conflicts_in_the_core_words(surface):
    read = _surfaces()[surface]
    for options, message in CONFLICTS:
        if options.get("backend") == "gpu" and surface != "chroma":
            message = "Input should be 'local' or 'model-runner'"  # pydantic's Literal check
        with pytest.raises((ConfigurationError, ValidationError), match=message):
            read(options)


def test_adapters_reach_every_core_option(tiny_model):
    from qwen3_embed_chroma import Qwen3EmbeddingFunction
    from qwen3_embed_langchain import Qwen3Embeddings
    from qwen3_embed_llamaindex import Qwen3Embedding

    lc = Qwen3Embeddings(model="ai/qwen3-embedding", base_url=SERVER,
                         options={"max_retries": 0, "max_concurrency": 2, "verify": False})
    li = Qwen3Embedding(model="ai/qwen3-embedding", base_url=SERVER,
                        options={"max_retries": 0, "max_concurrency": 2, "verify": False})
    for backend in (lc.qwen3_embedder.backend, li.qwen3_embedder.backend):
        assert (backend.max_retries, backend.max_concurrency) == (0, 2)
    ef = Qwen3EmbeddingFunction(str(tiny_model), n_threads=1, options={"max_sequences": 3})
    assert ef.get_config()["options"] == {"n_threads": 1, "max_sequences": 3}
    assert (ef.embedder.backend.n_threads, ef.embedder.backend.max_sequences) == (1, 3)
    ef.close()


def test_spec_from_fields_ignores_adapter_only_fields(tiny_model):
    spec = spec_from_fields(EmbedderSpec, {"model": str(tiny_model), "show_progress": True,
                                           "batch_size": 8}, defaults={"batch_size": 8})
    assert spec.backend == "local" and dict(spec.options) == {}


# -- the CLI ------------------------------------------------------------------------------


def _cli_args(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        if key == "options":
            args += [a for k, v in value.items() for a in ("--option", f"{k}={v}")]
        elif key == "base_urls":
            args += [a for url in value for a in ("--base-url", url)]
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def test_cli_reads_the_rule_like_the_core(tiny_model, monkeypatch):
    from qwen3_embed_cli import build_parser, spec_from_args

    monkeypatch.delenv("QWEN3_EMBED_MODEL", raising=False)
    parser = build_parser()
    for options, _, _ in cases(str(tiny_model)):
        args = parser.parse_args(["embed", "x", *_cli_args(options)])
        spec = spec_from_args(args)
        if not options:
            assert spec is None  # no model at all: ingest/search use the store's record
            continue
        assert spec == EmbedderSpec.from_options(**options), options


def test_cli_refuses_conflicts_in_the_core_words(capsys, monkeypatch):
    from qwen3_embed_cli import main

    monkeypatch.delenv("QWEN3_EMBED_MODEL", raising=False)
    for options, message in CONFLICTS:
        if "backend" in options and options["backend"] not in ("local", "model-runner"):
            continue  # argparse's own choices check says it
        if "max_tokens" in options or "timeout" in options:
            options = {k: v for k, v in options.items() if k not in ("max_tokens", "timeout")}
            key = "max_tokens=100" if message.startswith("max_tokens") else "timeout=5.0"
            argv = ["embed", "x", *_cli_args(options), "--option", key]
        else:
            argv = ["embed", "x", *_cli_args(options)]
        with pytest.raises(SystemExit) as stop, contextlib.redirect_stdout(io.StringIO()):
            main(argv)
        assert stop.value.code == 2, argv
        assert re.search(message, capsys.readouterr().err), argv


# -- the Qdrant collection record ----------------------------------------------------------


def test_qdrant_record_rebuilds_by_the_same_rule(tiny_model, tmp_path):
    from qdrant_client import QdrantClient

    from qwen3_embed_qdrant import collection_record, ingest

    spec = EmbedderSpec.from_options(model=str(tiny_model), dimensions=32,
                                     options={"n_threads": 1})
    client = QdrantClient(path=str(tmp_path / "q"))
    with spec.build() as emb:
        ingest(client, "docs", emb, ["Paris is the capital of France."])
    record = collection_record(client, "docs")
    client.close()
    assert record is not None
    again = EmbedderSpec.from_config(record["embedder"])
    assert again == spec and again.backend == "local"
    assert collection_record.__module__ == "qwen3_embed_qdrant"
