"""LlamaIndex: instruction on queries only, real batching, the cache, end to end."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.callbacks.schema import EventPayload
from llama_index.core.storage.kvstore import SimpleKVStore
from pydantic import ValidationError

from qwen3_embed_core import InvalidInputError, InvalidInputTypeError, Qwen3Embedder
from qwen3_embed_llamaindex import Qwen3Embedding

from .conftest import COS_MIN, cosines
from .framework_helpers import RecordingBackend, run_example, run_watching_the_loop, unit
from .texts import MIXED, SHORT


def recorded(embedder: Qwen3Embedder, **options) -> tuple[Qwen3Embedding, RecordingBackend]:
    rec = RecordingBackend(embedder.backend)
    return Qwen3Embedding(embedder=Qwen3Embedder(rec), **options), rec


@pytest.fixture(scope="module")
def server_embedder(llama_server):
    emb = Qwen3Embedder.model_runner("tiny", base_url=llama_server.base_url)
    yield emb
    emb.close()


def test_identity(tiny_model):
    emb = Qwen3Embedding(model_path=tiny_model, embed_batch_size=8)
    assert Qwen3Embedding.class_name() == "Qwen3Embedding"
    assert emb.model_name == tiny_model.name == emb.qwen3_embedder.model_name
    assert emb.backend == "local" and emb.embed_batch_size == 8
    data = emb.to_dict()
    assert data["class_name"] == "Qwen3Embedding" and "api_key" not in data
    own = set(Qwen3Embedding.model_fields) - set(BaseEmbedding.model_fields) | {"embed_batch_size"}
    assert all(Qwen3Embedding.model_fields[name].description for name in own)
    assert "dimensions" in Qwen3Embedding.model_json_schema()["properties"]
    # LlamaIndex serialises components to JSON and rebuilds them from it.
    again = Qwen3Embedding.from_json(emb.to_json())
    assert again.model_name == emb.model_name and again.model_path == str(tiny_model)


def test_query_gets_the_instruction_texts_do_not(embedder, reference):
    emb = Qwen3Embedding(embedder=embedder)
    q = "capital of France?"
    formatted = embedder.format_query(q)
    for vector in (emb._get_query_embedding(q), emb.get_query_embedding(q)):
        assert all(type(x) is float for x in vector)
        assert float(np.dot(vector, reference.embed(formatted))) >= COS_MIN
    texts = SHORT + MIXED
    expected = [reference.embed(t) for t in texts]
    assert float(np.dot(emb._get_text_embedding(texts[0]), expected[0])) >= COS_MIN
    assert float(np.dot(emb.get_text_embedding(texts[0]), expected[0])) >= COS_MIN
    assert cosines(np.array(emb._get_text_embeddings(texts)), expected).min() >= COS_MIN
    assert cosines(np.array(emb.get_text_embedding_batch(texts)), expected).min() >= COS_MIN
    # The bare text is another vector: the instruction really went in.
    assert float(np.dot(emb.get_query_embedding(q), reference.embed(q))) < 0.99


def test_options_reach_the_model(tiny_model, reference):
    emb = Qwen3Embedding(model_path=tiny_model, dimensions=32, task="question_answering")
    formatted = emb.qwen3_embedder.format_query("Why is the sky blue?")
    assert formatted.startswith("Instruct: Given a question, retrieve relevant documents")
    vector = emb.get_query_embedding("Why is the sky blue?")
    assert len(vector) == 32
    assert float(np.dot(vector, reference.embed(formatted, dimensions=32))) >= COS_MIN


def test_one_backend_call_per_batch(embedder):
    emb, rec = recorded(embedder, embed_batch_size=3)
    texts = SHORT + MIXED[:3]  # 7 texts
    vectors = emb.get_text_embedding_batch(texts)
    assert [c.texts for c in rec.calls] == [texts[0:3], texts[3:6], texts[6:7]]
    assert cosines(np.array(vectors), list(embedder.embed_documents(texts))).min() >= COS_MIN


async def test_async_batches_run_off_the_event_loop(embedder):
    emb, rec = recorded(embedder, embed_batch_size=3)
    texts = SHORT + MIXED[:3]
    vectors, ticks = await run_watching_the_loop(emb.aget_text_embedding_batch(texts))
    query = await emb.aget_query_embedding("capital of France?")
    single = await emb.aget_text_embedding(texts[0])
    assert sorted(len(c.texts) for c in rec.calls) == [1, 1, 1, 3, 3]
    assert ticks > 0  # llama.cpp ran off the event loop
    assert cosines(np.array(vectors), list(embedder.embed_documents(texts))).min() >= COS_MIN
    assert float(np.dot(query, embedder.embed_query("capital of France?"))) >= COS_MIN
    assert float(np.dot(single, vectors[0])) >= COS_MIN


@pytest.mark.server
async def test_model_runner_batches_and_async(server_embedder, embedder):
    emb, rec = recorded(server_embedder, embed_batch_size=3)
    texts = SHORT + MIXED[:3]
    vectors = emb.get_text_embedding_batch(texts)
    assert [len(c.texts) for c in rec.calls] == [3, 3, 1] and set(rec.methods()) == {"embed"}
    rec.calls.clear()
    avectors = await emb.aget_text_embedding_batch(texts)
    query = await emb.aget_query_embedding("capital of France?")
    assert set(rec.methods()) == {"aembed"}  # native httpx async
    local = list(embedder.embed_documents(texts))
    assert cosines(np.array(vectors), local).min() >= COS_MIN
    assert cosines(np.array(avectors), local).min() >= COS_MIN
    assert float(np.dot(query, embedder.embed_query("capital of France?"))) >= COS_MIN


@pytest.mark.server
def test_model_runner_construction(llama_server):
    emb = Qwen3Embedding(model="tiny", base_url=llama_server.base_url, embed_batch_size=5)
    assert emb.backend == "model-runner" and emb.model_name == "tiny"
    assert len(emb.get_query_embedding("hello")) == 64


# -- the cache: a query equal to a document keeps its own vector ------------------


@pytest.mark.parametrize("order", ["document first", "query first"])
def test_cache_keeps_query_and_document_apart(embedder, order):
    emb, rec = recorded(embedder, embeddings_cache=SimpleKVStore())
    text = "Paris is the capital of France."
    if order == "document first":
        doc = emb.get_text_embedding_batch([text])[0]
        query = emb.get_query_embedding(text)
    else:
        query = emb.get_query_embedding(text)
        doc = emb.get_text_embedding_batch([text])[0]
    assert len(rec.calls) == 2  # neither was answered from the other's cache entry
    assert float(np.dot(query, embedder.embed_query(text))) >= COS_MIN
    assert float(np.dot(doc, embedder.embed_documents([text])[0])) >= COS_MIN
    assert float(np.dot(query, doc)) < 0.99
    # And the cache is really on: asking again calls nothing.
    assert emb.get_query_embedding(text) == query
    assert emb.get_text_embedding(text) == doc
    assert len(rec.calls) == 2


async def test_cache_async_and_exact_collisions(embedder):
    emb, rec = recorded(embedder, embeddings_cache=SimpleKVStore())
    text = "Paris is the capital of France."
    doc = (await emb.aget_text_embedding_batch([text]))[0]
    query = await emb.aget_query_embedding(text)
    assert float(np.dot(query, doc)) < 0.99 and len(rec.calls) == 2
    assert await emb.aget_query_embedding(text) == query and len(rec.calls) == 2
    # A document whose text is exactly what the model reads for the query has
    # the same vector, so sharing the entry is right.
    assert emb.get_text_embedding(embedder.format_query(text)) == query
    assert len(rec.calls) == 2


def test_cache_with_a_symmetric_task(tiny_model):
    emb = Qwen3Embedding(
        model_path=tiny_model, task="semantic_similarity", embeddings_cache=SimpleKVStore()
    )
    core = emb.qwen3_embedder
    text = "A cat sits on the mat."
    doc = emb.get_text_embedding(text)
    # Same instruction on both sides: query and document are the same input.
    assert float(np.dot(emb.get_query_embedding(text), doc)) >= COS_MIN
    # A document that starts with the instruction is not mistaken for the query.
    tricky = core.format_query("A dog.")
    assert float(np.dot(emb.get_text_embedding(tricky), core.embed_documents([tricky])[0])) >= COS_MIN
    assert float(np.dot(emb.get_query_embedding("A dog."), core.embed_query("A dog."))) >= COS_MIN


# -- errors ----------------------------------------------------------------------


async def test_bad_input_is_the_core_error_with_its_index(embedder):
    emb = Qwen3Embedding(embedder=embedder, embed_batch_size=2)
    with pytest.raises(InvalidInputError, match="index 3 is empty") as err:
        emb.get_text_embedding_batch(["a", "b", "c", " "])
    assert err.value.index == 3
    with pytest.raises(InvalidInputTypeError, match="index 2 is NoneType") as err:
        await emb.aget_text_embedding_batch(["a", "b", None])
    assert err.value.index == 2
    with pytest.raises(InvalidInputTypeError, match="single str"):
        emb.get_text_embedding_batch("one string")
    with pytest.raises(InvalidInputError, match="empty"):
        emb.get_query_embedding("")
    with pytest.raises(InvalidInputError, match="NUL byte"):
        await emb.aget_query_embedding("a\x00b")
    assert emb.get_text_embedding_batch([]) == []


def test_construction_errors(tiny_model, embedder):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Qwen3Embedding(model_path=tiny_model, dimension=32)
    with pytest.raises(ValidationError, match="embedder= is already configured; drop task"):
        Qwen3Embedding(embedder=embedder, task="web_search")
    with pytest.raises(ValidationError) as err:
        Qwen3Embedding(model_path=tiny_model, api_key="sk-secret-9c1d")
    assert "api_key: only for backend='model-runner'" in str(err.value)
    assert "sk-secret-9c1d" not in str(err.value)
    emb = Qwen3Embedding(model="tiny", base_url="http://127.0.0.1:9/v1", api_key="sk-secret-9c1d")
    assert emb.backend == "model-runner"
    for shown in (repr(emb), str(emb), emb.to_json()):
        assert "sk-secret-9c1d" not in shown


# -- end to end: an index and its retriever ------------------------------------------


@pytest.fixture
def llama_settings(monkeypatch):
    """Settings as a fresh process has them, restored afterwards."""
    for name in ("_llm", "_embed_model", "_callback_manager"):
        monkeypatch.setattr(Settings, name, None)
    return Settings


def test_vector_store_index_retrieves_with_the_instruction(embedder, reference, llama_settings):
    debug = LlamaDebugHandler(print_trace_on_end=False)
    emb, rec = recorded(embedder)
    llama_settings.llm = None  # no LLM: retrieval only
    llama_settings.callback_manager = CallbackManager([debug])
    llama_settings.embed_model = emb

    index = VectorStoreIndex.from_documents([Document(text=t) for t in SHORT])
    stored = index.vector_store.data.embedding_dict
    docs = embedder.embed_documents(SHORT)
    assert len(stored) == len(SHORT)
    by_text = {index.docstore.get_node(i).get_content(): np.array(v) for i, v in stored.items()}
    assert cosines(np.stack([by_text[t] for t in SHORT]), list(docs)).min() >= COS_MIN

    query = "What is the capital of France?"
    rec.calls.clear()
    debug.flush_event_logs()
    hits = index.as_retriever(similarity_top_k=len(SHORT)).retrieve(query)
    formatted = embedder.format_query(query)
    assert [c.texts for c in rec.calls] == [[formatted]]  # the model read the instruction
    # The vector LlamaIndex reports for the query is the core's query vector.
    (_start, end), = debug.get_event_pairs(CBEventType.EMBEDDING)
    used = np.array(end.payload[EventPayload.EMBEDDINGS][0])
    q_core = embedder.embed_query(query)
    assert float(used @ q_core) >= COS_MIN
    assert float(used @ reference.embed(formatted)) >= COS_MIN
    assert float(unit(rec.calls[0].raw[0]) @ q_core) >= COS_MIN
    # And the retriever's scores are those of that vector.
    expected = {t: float(d @ q_core) for t, d in zip(SHORT, docs, strict=True)}
    assert len(hits) == len(SHORT)
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.node.get_content()], abs=1e-5)
    assert [h.node.get_content() for h in hits] == sorted(SHORT, key=lambda t: -expected[t])


# -- the example ------------------------------------------------------------------


def test_example_runs_offline_with_the_tiny_model(tmp_path):
    out = run_example("llamaindex_retrieval.py", cache=tmp_path)
    assert "random weights" in out and "MEANINGLESS" in out
    assert (tmp_path / "tiny").is_dir()
    assert "Q: What is the capital of France?" in out
    assert out.count("  1. ") == out.count("Q: ") >= 3
    assert "score" in out


@pytest.mark.server
def test_example_runs_against_a_server(llama_server, tmp_path):
    out = run_example(
        "llamaindex_retrieval.py", "--model", "tiny", "--base-url", llama_server.base_url,
        cache=tmp_path,
    )
    assert "model: tiny (model-runner)" in out
    assert "Q: What is the capital of France?" in out
