"""Shared fixtures: the tiny Qwen3 GGUF in both flavours, its numpy reference, embedders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qwen3_embed_core import Qwen3Embedder
from qwen3_embed_core.testing import Reference, build_model

# The store fixtures (``store_uri``: once per store of tests.stores.STORE_URIS).
from .stores import store_servers, store_uri  # noqa: F401

# Cosine to the float64 numpy reference every vector must reach.
COS_MIN = 0.9999


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> Path:
    """Tiny GGUF with tokenizer.ggml.add_eos_token = true (current conversions)."""
    return build_model(model_dir / "tiny-eos.gguf", add_eos_token=True)


@pytest.fixture(scope="session")
def tiny_model_no_eos(model_dir: Path) -> Path:
    """Tiny GGUF without add_eos_token, like the early Qwen3-Embedding conversions."""
    return build_model(model_dir / "tiny-no-eos.gguf", add_eos_token=None)


@pytest.fixture(scope="session", params=["add_eos", "no_add_eos"])
def flavour(request: pytest.FixtureRequest, tiny_model: Path, tiny_model_no_eos: Path) -> Path:
    """Both GGUF flavours, one after the other."""
    return tiny_model if request.param == "add_eos" else tiny_model_no_eos


@pytest.fixture(scope="session")
def reference(tiny_model: Path) -> Reference:
    return Reference(tiny_model)


@pytest.fixture(scope="session")
def flavour_reference(flavour: Path) -> Reference:
    """The reference read from the flavour's own file."""
    return Reference(flavour)


@pytest.fixture(scope="session")
def embedder(tiny_model: Path):
    emb = Qwen3Embedder.local(tiny_model)
    yield emb
    emb.close()


@pytest.fixture(scope="session")
def flavour_embedder(flavour: Path):
    emb = Qwen3Embedder.local(flavour)
    yield emb
    emb.close()


def cosines(vectors: np.ndarray, expected: list[np.ndarray]) -> np.ndarray:
    """Row-wise cosine between our unit vectors and reference unit vectors."""
    return np.einsum("ij,ij->i", np.asarray(vectors, np.float64), np.stack(expected))


# -- real llama-server processes (the Model Runner backend's tests) -----------


@pytest.fixture(scope="session")
def llama_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real llama-server on 127.0.0.1 serving tiny_model (add_eos_token = true).

    Yields a ``tests.llama_server.LlamaServer``: ``.base_url`` (ends in /v1),
    ``.model_path``, ``.process``, ``.root``.
    """
    from .llama_server import LlamaServer

    server = LlamaServer(tiny_model, tmp_path_factory.mktemp("llama-server"), name="add-eos")
    with server:
        yield server


@pytest.fixture(scope="session")
def llama_server_no_eos(tiny_model_no_eos: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real llama-server serving the GGUF without add_eos_token."""
    from .llama_server import LlamaServer

    server = LlamaServer(tiny_model_no_eos, tmp_path_factory.mktemp("llama-server"), name="no-eos")
    with server:
        yield server


@pytest.fixture(scope="session")
def flavour_server(request: pytest.FixtureRequest, flavour: Path, tiny_model: Path):
    """The llama-server serving the current ``flavour``'s file."""
    return request.getfixturevalue("llama_server" if flavour == tiny_model else "llama_server_no_eos")


# -- Qwen3-Reranker test models and their servers --------------------------------------


@pytest.fixture(scope="session")
def tiny_reranker(model_dir: Path) -> Path:
    """Tiny Qwen3-Reranker GGUF as llama.cpp b6578+ converts it: cls.output, RANK, template."""
    from qwen3_embed_core.testing import build_reranker

    return build_reranker(model_dir / "tiny-reranker-head.gguf", head=True)


@pytest.fixture(scope="session")
def tiny_reranker_plain(model_dir: Path) -> Path:
    """Tiny Qwen3-Reranker GGUF as a plain causal LM (no cls.output, no rerank template)."""
    from qwen3_embed_core.testing import build_reranker

    return build_reranker(model_dir / "tiny-reranker-plain.gguf", head=False)


@pytest.fixture(scope="session")
def rerank_server(tiny_reranker: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real llama-server --reranking serving the headed tiny reranker (``.base_url``: /v1)."""
    from .llama_server import RERANK_ARGS, LlamaServer

    server = LlamaServer(tiny_reranker, tmp_path_factory.mktemp("llama-server"), RERANK_ARGS,
                         name="rerank-head")
    with server:
        yield server


@pytest.fixture(scope="session")
def rerank_server_plain(tiny_reranker_plain: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real llama-server --reranking serving the plain (headless) tiny reranker."""
    from .llama_server import RERANK_ARGS, LlamaServer

    server = LlamaServer(tiny_reranker_plain, tmp_path_factory.mktemp("llama-server"),
                         RERANK_ARGS, name="rerank-plain")
    with server:
        yield server
