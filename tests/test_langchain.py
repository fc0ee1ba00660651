"""LangChain: the standard suites on both backends, vectors against the reference, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import ValidationError

from qwen3_embed_core import (
    InvalidInputError,
    InvalidInputTypeError,
    Qwen3Embedder,
    infer_backend,
)
from qwen3_embed_langchain import Qwen3Embeddings

from .conftest import COS_MIN, cosines
from .framework_helpers import RecordingBackend, run_example, run_watching_the_loop, unit
from .texts import MIXED, SHORT

QUERY_PRESET = "Given a question, retrieve relevant documents that best answer the question"


# -- the standard suites, nothing overridden ---------------------------------
# The suites build the model from class-level ``embedding_model_params``; the
# session's model file and server URL reach it through an autouse fixture,
# which runs before the suites' own ``model`` fixture and test bodies.


class _Suite:
    params: dict

    @property
    def embeddings_class(self) -> type[Qwen3Embeddings]:
        return Qwen3Embeddings

    @property
    def embedding_model_params(self) -> dict:
        return self.params


class _Local(_Suite):
    @pytest.fixture(autouse=True)
    def _params(self, tiny_model: Path) -> None:
        self.params = {"model_path": str(tiny_model)}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        # A key in the environment is read, and does not stop a local model.
        return (
            {"QWEN3_EMBED_API_KEY": "sk-from-env"},
            self.params,
            {"api_key": "sk-from-env", "backend": "local"},
        )


class _Server(_Suite):
    @pytest.fixture(autouse=True)
    def _params(self, llama_server) -> None:
        self.params = {"backend": "model-runner", "model": "tiny", "base_url": llama_server.base_url}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return (
            {"QWEN3_EMBED_API_KEY": "sk-from-env"},
            self.params,
            {"api_key": "sk-from-env", "backend": "model-runner", "base_url": self.params["base_url"]},
        )


class TestLocalUnit(_Local, EmbeddingsUnitTests):
    pass


class TestLocalIntegration(_Local, EmbeddingsIntegrationTests):
    pass


@pytest.mark.server
class TestServerUnit(_Server, EmbeddingsUnitTests):
    pass


@pytest.mark.server
class TestServerIntegration(_Server, EmbeddingsIntegrationTests):
    pass


# -- vectors -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_embedder(llama_server):
    emb = Qwen3Embedder.model_runner("tiny", base_url=llama_server.base_url)
    yield emb
    emb.close()


def recorded(embedder: Qwen3Embedder) -> tuple[Qwen3Embedder, RecordingBackend]:
    rec = RecordingBackend(embedder.backend)
    return Qwen3Embedder(rec), rec


def test_vectors_equal_reference(embedder, reference):
    emb = Qwen3Embeddings(embedder=embedder)
    docs = emb.embed_documents(SHORT + MIXED)
    assert all(type(x) is float for row in docs for x in row)
    assert cosines(np.array(docs), [reference.embed(t) for t in SHORT + MIXED]).min() >= COS_MIN
    query = emb.embed_query("capital of France?")
    assert all(type(x) is float for x in query)
    expected = reference.embed(embedder.format_query("capital of France?"))
    assert float(np.dot(query, expected)) >= COS_MIN
    # The instruction made a difference: the bare text is another vector.
    assert float(np.dot(query, reference.embed("capital of France?"))) < 0.99


def test_model_path_options_reach_the_model(tiny_model, reference):
    emb = Qwen3Embeddings(model_path=tiny_model, dimensions=32, task="question_answering")
    assert emb.backend == "local"
    query = emb.embed_query("Why is the sky blue?")
    assert len(query) == 32
    formatted = f"Instruct: {QUERY_PRESET}\nQuery:Why is the sky blue?"
    assert emb.qwen3_embedder.format_query("Why is the sky blue?") == formatted
    assert float(np.dot(query, reference.embed(formatted, dimensions=32))) >= COS_MIN
    doc = emb.embed_documents(["Rayleigh scattering."])[0]
    assert float(np.dot(doc, reference.embed("Rayleigh scattering.", dimensions=32))) >= COS_MIN


async def test_async_local_keeps_the_event_loop_free(embedder, reference):
    core, rec = recorded(embedder)
    emb = Qwen3Embeddings(embedder=core)
    docs, ticks = await run_watching_the_loop(emb.aembed_documents(SHORT * 20))
    docs = docs[: len(SHORT)]
    query = await emb.aembed_query("capital of France?")
    assert rec.methods() == ["aembed", "aembed"]
    assert ticks > 10  # the loop kept running while the texts were embedded
    assert cosines(np.array(docs), [reference.embed(t) for t in SHORT]).min() >= COS_MIN
    assert query == emb.embed_query("capital of France?")


@pytest.mark.server
async def test_async_model_runner_is_native(server_embedder, embedder):
    core, rec = recorded(server_embedder)
    emb = Qwen3Embeddings(embedder=core, batch_size=2)
    docs = await emb.aembed_documents(SHORT)
    query = await emb.aembed_query("capital of France?")
    assert set(rec.methods()) == {"aembed"}  # httpx async, never the sync path in a thread
    assert cosines(np.array(docs), list(embedder.embed_documents(SHORT))).min() >= COS_MIN
    assert float(np.dot(query, embedder.embed_query("capital of France?"))) >= COS_MIN


def test_empty_list_is_empty_result(embedder):
    core, rec = recorded(embedder)
    emb = Qwen3Embeddings(embedder=core)
    assert emb.embed_documents([]) == []
    assert Qwen3Embeddings(embedder=core, show_progress=True).embed_documents([]) == []
    assert rec.calls == []


async def test_empty_list_is_empty_result_async(embedder):
    assert await Qwen3Embeddings(embedder=embedder).aembed_documents([]) == []


def test_show_progress_steps_over_batches(embedder, capsys):
    core, rec = recorded(embedder)
    emb = Qwen3Embeddings(embedder=core, show_progress=True, batch_size=2)
    texts = SHORT + MIXED[:1]
    vectors = emb.embed_documents(texts)
    assert "3/3" in capsys.readouterr().err
    assert [len(c.texts) for c in rec.calls] == [2, 2, 1]
    assert cosines(np.array(vectors), list(embedder.embed_documents(texts))).min() >= COS_MIN


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize("show_progress", [False, True])
async def test_bad_text_is_the_core_error_with_its_index(embedder, show_progress):
    emb = Qwen3Embeddings(embedder=embedder, show_progress=show_progress, batch_size=2)
    with pytest.raises(InvalidInputError, match="index 3 is empty") as err:
        emb.embed_documents(["a", "b", "c", "  "])
    assert err.value.index == 3
    with pytest.raises(InvalidInputTypeError, match="index 2 is NoneType") as err:
        await emb.aembed_documents(["a", "b", None])
    assert err.value.index == 2
    with pytest.raises(InvalidInputTypeError, match="single str"):
        emb.embed_documents("one string")
    with pytest.raises(InvalidInputError, match="empty"):
        emb.embed_query("")
    with pytest.raises(InvalidInputError, match="NUL byte"):
        await emb.aembed_query("a\x00b")


def test_construction_errors_are_clear(tiny_model, embedder):
    with pytest.raises(ValidationError, match=r"dimension\n.*Extra inputs are not permitted"):
        Qwen3Embeddings(model_path=tiny_model, dimension=32)
    with pytest.raises(ValidationError, match="dimensions=16 is out of range"):
        Qwen3Embeddings(model_path=tiny_model, dimensions=16)
    with pytest.raises(ValidationError, match="embedder= is already configured; drop dimensions"):
        Qwen3Embeddings(embedder=embedder, dimensions=32)
    with pytest.raises(ValidationError, match=r"base_url\(s\): only for backend='model-runner'"):
        Qwen3Embeddings(backend="local", model_path=tiny_model, base_url="http://127.0.0.1:9")
    with pytest.raises(ValidationError, match="n_threads: only for backend='local'"):
        Qwen3Embeddings(base_url="http://127.0.0.1:9", n_threads=2)
    with pytest.raises(ValidationError, match="the local backend needs model="):
        Qwen3Embeddings(backend="local")


@pytest.mark.parametrize(
    ("options", "backend"),
    [
        ({"model_path": "x.gguf"}, "local"),
        ({"model": "0.6B-Q8_0"}, "local"),  # a variant: a GGUF from the Hugging Face cache
        ({"model": "models/x.gguf"}, "local"),
        ({"model": "ai/qwen3-embedding:0.6B-F16"}, "model-runner"),  # a tag: the server's
        ({"model": "0.6B-Q8_0", "base_url": "http://h:1/v1"}, "model-runner"),
        ({"model": "/models/Qwen3-Embedding-0.6B"}, "local"),  # a path, even without .gguf
        ({"base_urls": ["http://a:1", "http://b:1"]}, "model-runner"),
        ({}, "model-runner"),  # Model Runner's defaults
        ({"backend": "local", "model": "ai/qwen3-embedding"}, "local"),
    ],
)
def test_backend_inference(options, backend):
    if "model_path" in options:
        options["model"] = options.pop("model_path")  # an alias
    assert infer_backend(options.pop("backend", None), **options) == backend


def test_every_field_is_documented():
    schema = Qwen3Embeddings.model_json_schema()["properties"]
    assert set(schema) == set(Qwen3Embeddings.model_fields) - {"embedder"}
    assert all(field.description for field in Qwen3Embeddings.model_fields.values())


def test_api_key_is_never_shown(tiny_model):
    secret = "sk-secret-7f3a"
    emb = Qwen3Embeddings(model="tiny", base_url="http://127.0.0.1:9/v1", api_key=secret)
    assert emb.backend == "model-runner"
    assert emb.api_key is not None and emb.api_key.get_secret_value() == secret
    for shown in (repr(emb), str(emb), emb.model_dump_json()):
        assert secret not in shown
    with pytest.raises(ValidationError) as err:  # the local backend refuses the key...
        Qwen3Embeddings(model_path=tiny_model, api_key=secret)
    assert "api_key: only for backend='model-runner'" in str(err.value)
    assert secret not in str(err.value)  # ...without printing it


# -- end to end: a vector store search ----------------------------------------


def test_in_memory_vector_store_uses_the_instruction(embedder, reference):
    core, rec = recorded(embedder)
    store = InMemoryVectorStore.from_texts(SHORT, embedding=Qwen3Embeddings(embedder=core))
    docs = embedder.embed_documents(SHORT)
    stored = {r["text"]: np.array(r["vector"]) for r in store.store.values()}
    assert cosines(np.stack([stored[t] for t in SHORT]), list(docs)).min() >= COS_MIN

    query = "What is the capital of France?"
    rec.calls.clear()
    hits = store.similarity_search_with_score(query, k=len(SHORT))
    formatted = embedder.format_query(query)
    assert [c.texts for c in rec.calls] == [[formatted]]  # the model read the instruction
    used = unit(rec.calls[0].raw[0])
    q_core = embedder.embed_query(query)
    assert float(used @ q_core) >= COS_MIN
    assert float(used @ reference.embed(formatted)) >= COS_MIN
    # The scores the store reports are those of the core's query vector.
    expected = {t: float(d @ q_core) for t, d in zip(SHORT, docs, strict=True)}
    assert len(hits) == len(SHORT)
    for doc, score in hits:
        assert score == pytest.approx(expected[doc.page_content], abs=1e-5)
    assert [d.page_content for d, _ in hits] == sorted(SHORT, key=lambda t: -expected[t])

    retriever = store.as_retriever(search_kwargs={"k": 2})
    assert [d.page_content for d in retriever.invoke(query)] == [
        d.page_content for d, _ in hits[:2]
    ]


# -- the example ---------------------------------------------------------------


def test_example_runs_offline_with_the_tiny_model(tmp_path):
    out = run_example("langchain_retrieval.py", cache=tmp_path)
    assert "random weights" in out and "MEANINGLESS" in out
    assert (tmp_path / "tiny").is_dir()  # it built the tiny model itself
    assert "Q: What is the capital of France?" in out
    assert out.count("  1. ") == out.count("Q: ") >= 3
    assert "Answer the question using only this context" in out  # the chain's prompt


@pytest.mark.server
def test_example_runs_against_a_server(llama_server, tmp_path):
    out = run_example(
        "langchain_retrieval.py", "--model", "tiny", "--base-url", llama_server.base_url,
        cache=tmp_path,
    )
    assert "model: tiny (model-runner)" in out
    assert "Q: What is the capital of France?" in out
