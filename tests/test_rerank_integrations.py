"""Qwen3-Reranker in every integration: LangChain, LlamaIndex, Qdrant, Chroma and the CLI.

Every score an adapter returns is the core reranker's score on the same
(query, documents) call, to 1e-6, and every order is the core's order. The
core's scores are checked against the numpy reference elsewhere; here one
check per flavour ties the two together.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import Document as LlamaDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.callbacks.schema import EventPayload
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import ValidationError
from qdrant_client import QdrantClient

import qwen3_embed_chroma
import qwen3_embed_qdrant
from qwen3_embed_cli import main
from qwen3_embed_core import (
    ConfigurationError,
    InvalidInputError,
    Qwen3Reranker,
)
from qwen3_embed_core.testing import RerankReference
from qwen3_embed_langchain import Qwen3Embeddings
from qwen3_embed_langchain import Qwen3Reranker as LangChainReranker
from qwen3_embed_llamaindex import Qwen3Embedding, Qwen3Rerank

from .stores import THREADS, local_embedder
from .texts import MIXED, SHORT, long_text

QUERY = "Which city is the capital of France?"
DOCS = [*SHORT, *MIXED[:3], long_text(40, seed=3)]
# Same inputs, same call: the adapters add no arithmetic of their own.
SAME = 1e-6
# The core against the float64 reference (llama.cpp computes in float32).
REF_TOL = 1e-3
CUSTOM = "Given a question about cells, retrieve passages about biology"


class Recorder:
    """A real reranking backend that also counts the calls reaching it."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def check_instruction(self, instruction: str) -> None:
        self.inner.check_instruction(instruction)

    def score(self, query, documents, instruction):
        self.calls.append(("score", list(documents)))
        return self.inner.score(query, documents, instruction)

    async def ascore(self, query, documents, instruction):
        self.calls.append(("ascore", list(documents)))
        return await self.inner.ascore(query, documents, instruction)

    def close(self) -> None:
        """The wrapped backend belongs to a module fixture."""

    async def aclose(self) -> None:
        """The wrapped backend belongs to a module fixture."""


@pytest.fixture(scope="module")
def rr(tiny_reranker):
    with Qwen3Reranker.local(tiny_reranker, n_threads=THREADS) as reranker:
        yield reranker


@pytest.fixture(scope="module")
def rr_plain(tiny_reranker_plain):
    with Qwen3Reranker.local(tiny_reranker_plain, n_threads=THREADS) as reranker:
        yield reranker


@pytest.fixture(scope="module", params=["head", "plain"])
def any_rr(request, rr, rr_plain, tiny_reranker, tiny_reranker_plain):
    """Both GGUF flavours: (reranker, its file)."""
    return (rr, tiny_reranker) if request.param == "head" else (rr_plain, tiny_reranker_plain)


@pytest.fixture(scope="module")
def emb(tiny_model):
    yield from local_embedder(tiny_model)


@pytest.fixture(autouse=True)
def _no_default_models(monkeypatch):
    monkeypatch.delenv("QWEN3_EMBED_MODEL", raising=False)
    monkeypatch.delenv("QWEN3_RERANK_MODEL", raising=False)


def expected(reranker, query, texts, top=None, instruction=None):
    """(index, score) best first, from the core's scores on exactly these texts."""
    scores = reranker.score(query, texts, instruction=instruction)
    order = sorted(range(len(texts)), key=lambda i: (-float(scores[i]), i))
    return [(i, float(scores[i])) for i in order[:top]]


def assert_same(got, want):
    """(index or text, score) pairs: the same items in the same order, scores to 1e-6."""
    assert [k for k, _ in got] == [k for k, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], atol=SAME, rtol=0)


# -- LangChain ---------------------------------------------------------------------


def lc_docs():
    return [Document(page_content=t, metadata={"n": i}, id=f"d{i}") for i, t in enumerate(DOCS)]


def test_langchain_scores_are_the_core_scores_on_both_flavours(any_rr):
    reranker, path = any_rr
    docs = lc_docs()
    out = LangChainReranker(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    want = expected(reranker, QUERY, DOCS)
    assert_same([(d.metadata["n"], d.metadata["relevance_score"]) for d in out], want)
    assert all(type(d.metadata["relevance_score"]) is float for d in out)
    assert [d.id for d in out] == [f"d{i}" for i, _ in want]  # the documents themselves
    assert all(d.page_content == DOCS[d.metadata["n"]] for d in out)
    # Copies: the caller's documents keep their metadata.
    assert all(d.metadata == {"n": i} for i, d in enumerate(docs))
    # And the core's scores are the model card's formula on this file.
    ref = RerankReference(path)
    for d in out[:3]:
        assert abs(d.metadata["relevance_score"] - ref.score(QUERY, d.page_content)) < REF_TOL


def test_langchain_top_n_empty_input_and_one_backend_call(rr):
    rec = Recorder(rr.backend)
    compressor = LangChainReranker(reranker=Qwen3Reranker(rec), top_n=3)
    assert compressor.top_n == 3 and compressor.backend is None
    out = compressor.compress_documents(lc_docs(), QUERY)
    assert_same([(d.metadata["n"], d.metadata["relevance_score"]) for d in out],
                expected(rr, QUERY, DOCS, top=3))
    assert rec.calls == [("score", DOCS)]  # one call for all documents
    assert compressor.compress_documents([], QUERY) == []
    assert len(rec.calls) == 1  # nothing reached the model
    # top_n above the number of documents keeps them all.
    few = LangChainReranker(reranker=rr, top_n=10).compress_documents(lc_docs()[:2], QUERY)
    assert len(few) == 2
    with pytest.raises(ValidationError, match="greater than 0"):
        LangChainReranker(reranker=rr, top_n=0)
    bad = [*lc_docs()[:2], Document(page_content="   ")]
    with pytest.raises(InvalidInputError, match="index 2"):
        compressor.compress_documents(bad, QUERY)


def test_langchain_async_is_native_and_equal(rr):
    rec = Recorder(rr.backend)
    compressor = LangChainReranker(reranker=Qwen3Reranker(rec), top_n=4)
    out = asyncio.run(compressor.acompress_documents(lc_docs(), QUERY))
    assert_same([(d.metadata["n"], d.metadata["relevance_score"]) for d in out],
                expected(rr, QUERY, DOCS, top=4))
    assert [c for c, _ in rec.calls] == ["ascore"]  # the core's async path, not a thread
    assert asyncio.run(compressor.acompress_documents([], QUERY)) == []


def test_langchain_inside_contextual_compression_retriever(rr, emb):
    store = InMemoryVectorStore(Qwen3Embeddings(embedder=emb))
    store.add_documents(lc_docs())
    base = store.as_retriever(search_kwargs={"k": 6})
    retriever = ContextualCompressionRetriever(
        base_compressor=LangChainReranker(reranker=rr, top_n=3), base_retriever=base)
    candidates = base.invoke(QUERY)
    assert len(candidates) == 6
    texts = [d.page_content for d in candidates]
    want = [(texts[i], s) for i, s in expected(rr, QUERY, texts, top=3)]
    for got in (retriever.invoke(QUERY), asyncio.run(retriever.ainvoke(QUERY))):
        assert_same([(d.page_content, d.metadata["relevance_score"]) for d in got], want)
    # The reranker reorders: its best is not simply the nearest vector.
    assert [t for t, _ in want] != texts[:3]


def test_langchain_builds_its_own_reranker_from_options(tiny_reranker, rr):
    compressor = LangChainReranker(model_path=tiny_reranker, instruction=CUSTOM,
                                   n_threads=THREADS, top_n=None)
    try:
        assert compressor.backend == "local"
        assert compressor.qwen3_reranker.instruction == CUSTOM
        out = compressor.compress_documents(lc_docs()[:4], QUERY)
        want = expected(rr, QUERY, DOCS[:4], instruction=CUSTOM)
        assert_same([(d.metadata["n"], d.metadata["relevance_score"]) for d in out], want)
        # The instruction counts: the default one scores differently.
        assert np.abs(rr.score(QUERY, DOCS[:4]) - rr.score(QUERY, DOCS[:4], instruction=CUSTOM)
                      ).max() > 1e-3
    finally:
        compressor.qwen3_reranker.close()
    with pytest.raises(ValidationError, match="reranker= is already configured; drop model"):
        LangChainReranker(reranker=rr, model="other.gguf")
    assert "reranker" not in LangChainReranker(reranker=rr).model_dump()


# -- LlamaIndex --------------------------------------------------------------------


def li_nodes():
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5 - i / 100)
            for i, t in enumerate(DOCS)]


def test_llamaindex_scores_are_the_core_scores_on_both_flavours(any_rr):
    reranker, _ = any_rr
    nodes = li_nodes()
    debug = LlamaDebugHandler()
    post = Qwen3Rerank(reranker=reranker, top_n=None, callback_manager=CallbackManager([debug]))
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert_same([(int(n.node.node_id[1:]), n.score) for n in out], expected(reranker, QUERY, DOCS))
    assert all(type(n.score) is float for n in out)
    assert [n.score for n in nodes] == [0.5 - i / 100 for i in range(len(DOCS))]  # untouched
    # LlamaIndex's observers see a reranking event, like its own rerankers send.
    ((start, end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert start.payload[EventPayload.MODEL_NAME] == reranker.model_name
    assert start.payload[EventPayload.QUERY_STR] == QUERY
    assert end.payload[EventPayload.NODES] == out


def test_llamaindex_top_n_async_empty_and_missing_query(rr):
    rec = Recorder(rr.backend)
    post = Qwen3Rerank(reranker=Qwen3Reranker(rec), top_n=2)
    assert Qwen3Rerank.class_name() == "Qwen3Rerank" and post.top_n == 2
    bundle = QueryBundle(QUERY)
    want = expected(rr, QUERY, DOCS, top=2)
    sync = post.postprocess_nodes(li_nodes(), query_bundle=bundle)
    asyn = asyncio.run(post.apostprocess_nodes(li_nodes(), query_bundle=bundle))
    for out in (sync, asyn):
        assert_same([(int(n.node.node_id[1:]), n.score) for n in out], want)
    assert [c for c, _ in rec.calls] == ["score", "ascore"]
    assert post.postprocess_nodes([], query_str=QUERY) == []
    assert asyncio.run(post.apostprocess_nodes([], query_str=QUERY)) == []
    assert len(rec.calls) == 2
    assert len(Qwen3Rerank(reranker=rr, top_n=9).postprocess_nodes(li_nodes()[:3],
                                                                   query_str=QUERY)) == 3
    with pytest.raises(ValueError, match="needs the query"):
        post.postprocess_nodes(li_nodes())
    with pytest.raises(ValidationError):
        Qwen3Rerank(reranker=rr, top_n=0)


def test_llamaindex_in_a_query_engine_over_a_real_index(rr, emb, tiny_reranker):
    index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=t, id_=f"doc{i}") for i, t in enumerate(DOCS)],
        embed_model=Qwen3Embedding(embedder=emb))
    retriever = index.as_retriever(similarity_top_k=6)
    candidates = retriever.retrieve(QUERY)
    texts = [n.node.get_content() for n in candidates]
    want = [(texts[i], s) for i, s in expected(rr, QUERY, texts, top=3)]
    # An engine that needs no LLM: "no_text" returns the source nodes only.
    engine = RetrieverQueryEngine(retriever, response_synthesizer=NoText(llm=MockLLM()),
                                  node_postprocessors=[Qwen3Rerank(reranker=rr, top_n=3)])
    for response in (engine.query(QUERY), asyncio.run(engine.aquery(QUERY))):
        assert_same([(n.node.get_content(), n.score) for n in response.source_nodes], want)
    # Serialised like any LlamaIndex component, and rebuilt from it.
    own = Qwen3Rerank(model_path=str(tiny_reranker), n_threads=THREADS, top_n=2)
    again = Qwen3Rerank.from_json(own.to_json())
    try:
        assert again.model_path == str(tiny_reranker) and again.top_n == 2
        assert again.backend == "local" and "api_key" not in own.to_dict()
        out = again.postprocess_nodes(li_nodes()[:4], query_str=QUERY)
        assert_same([(int(n.node.node_id[1:]), n.score) for n in out],
                    expected(rr, QUERY, DOCS[:4], top=2))
    finally:
        own.qwen3_reranker.close()
        again.qwen3_reranker.close()


# -- Qdrant and Chroma: two-stage search ---------------------------------------------

RECORDS = [{"id": f"d{i}", "text": t, "metadata": {"n": i}} for i, t in enumerate(DOCS)]


@pytest.fixture
def qdrant(tmp_path, emb):
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    qwen3_embed_qdrant.ingest(client, "docs", emb, RECORDS)
    yield client
    client.close()


@pytest.fixture
def chroma(tmp_path, tiny_model):
    client = chromadb.PersistentClient(str(tmp_path / "chroma"),
                                       settings=Settings(anonymized_telemetry=False))
    ef = qwen3_embed_chroma.Qwen3EmbeddingFunction(model=str(tiny_model), n_threads=THREADS)
    col = client.create_collection("docs", embedding_function=ef)
    qwen3_embed_chroma.ingest(col, RECORDS)
    yield col
    ef.close()


def _qdrant_search(client, emb, **kwargs):
    return qwen3_embed_qdrant.search(client, "docs", emb, QUERY, **kwargs)


def _chroma_search(col, _emb, **kwargs):
    return qwen3_embed_chroma.search(col, QUERY, **kwargs)


@pytest.mark.parametrize("kind", ["qdrant", "chroma"])
def test_store_search_reranks_the_vector_candidates(kind, request, rr, emb):
    store = request.getfixturevalue(kind)
    search = _qdrant_search if kind == "qdrant" else _chroma_search
    plain = search(store, emb, limit=5)  # the first stage on its own
    assert all(h.vector_score is None for h in plain)
    texts = [h.text for h in plain]
    hits = search(store, emb, limit=3, rerank=rr, candidates=5)
    want = [(plain[i].id, s) for i, s in expected(rr, QUERY, texts, top=3)]
    assert_same([(h.id, h.score) for h in hits], want)
    cosine = {h.id: h.score for h in plain}
    for hit in hits:  # the vector score is kept beside the relevance score
        assert abs(hit.vector_score - cosine[hit.id]) < SAME
        assert hit.record_id == f"d{hit.metadata['n']}" and hit.text == DOCS[hit.metadata["n"]]
    assert [h.id for h in hits] != [h.id for h in plain[:3]]  # it really reordered
    # Default candidates: max(4 x limit, 20), so all 8 documents here.
    every = search(store, emb, limit=len(DOCS))
    best = search(store, emb, limit=2, rerank=rr)
    want = [(every[i].id, s) for i, s in expected(rr, QUERY, [h.text for h in every], top=2)]
    assert_same([(h.id, h.score) for h in best], want)


@pytest.mark.parametrize("kind", ["qdrant", "chroma"])
def test_store_search_refuses_bad_candidates_and_keeps_the_record(kind, request, rr, emb):
    store = request.getfixturevalue(kind)
    search = _qdrant_search if kind == "qdrant" else _chroma_search
    with pytest.raises(ConfigurationError, match="pass rerank= too"):
        search(store, emb, limit=3, candidates=10)
    with pytest.raises(ConfigurationError, match=r"candidates=2 must be an int >= limit \(3\)"):
        search(store, emb, limit=3, rerank=rr, candidates=2)
    if kind == "qdrant":
        before = qwen3_embed_qdrant.collection_record(store, "docs")
        search(store, emb, limit=3, rerank=rr)
        assert qwen3_embed_qdrant.collection_record(store, "docs") == before
        assert "rerank" not in json.dumps(before)
    else:
        config = qwen3_embed_chroma.function_of(store).get_config()
        search(store, emb, limit=3, rerank=rr)
        assert qwen3_embed_chroma.function_of(store).get_config() == config
        assert "rerank" not in json.dumps(config)


def test_qdrant_reranked_search_with_a_filter_matching_nothing(qdrant, rr, emb):
    from qdrant_client import models

    nothing = models.Filter(must=[models.FieldCondition(key="metadata.n",
                                                        match=models.MatchValue(value=99))])
    assert _qdrant_search(qdrant, emb, limit=3, query_filter=nothing, rerank=rr) == []


# -- the command line ----------------------------------------------------------------


def run(capsys, *argv):
    """main() in this process: (exit status, stdout, stderr)."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_rerank_help(capsys):
    status, out, _ = run(capsys, "rerank", "--help")
    assert status == 0
    for option in ("--model ", "--model-path", "--backend", "--base-url", "--instruction",
                   "--option", "--top-n", "--format {text,json}", "$QWEN3_RERANK_MODEL"):
        assert option in out, option
    status, out, _ = run(capsys, "search", "--help")
    assert status == 0 and all(o in out for o in ("--rerank [MODEL]", "--candidates K"))


def test_cli_rerank_json_and_text(capsys, rr, tiny_reranker):
    docs = DOCS[:5]
    status, out, err = run(capsys, "rerank", QUERY, *docs, "--model", tiny_reranker,
                           "--option", f"n_threads={THREADS}", "--format", "json")
    assert status == 0, err
    got = json.loads(out)
    assert_same([(r["index"], r["score"]) for r in got], expected(rr, QUERY, docs))
    assert [r["text"] for r in got] == [docs[r["index"]] for r in got]

    status, out, err = run(capsys, "rerank", QUERY, *docs, "--model", tiny_reranker,
                           "--instruction", CUSTOM, "--top-n", "2",
                           "--option", f"n_threads={THREADS}")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for rank, (line, (i, score)) in enumerate(
            zip(lines, expected(rr, QUERY, docs, top=2, instruction=CUSTOM), strict=True), 1):
        m = re.match(r"^ *(\d+)\. (\d\.\d{4})  \[(\d+)\] (.+)$", line)
        assert m and int(m[1]) == rank and int(m[3]) == i, line
        assert float(m[2]) == pytest.approx(score, abs=5e-5)
        assert m[4] == " ".join(docs[i].split())[:100] or m[4].endswith("...")


def test_cli_rerank_model_from_environment_and_errors(capsys, monkeypatch, tmp_path, rr,
                                                      tiny_reranker):
    status, _, err = run(capsys, "rerank", QUERY, "a document")
    assert status == 2 and "no reranker given" in err and "$QWEN3_RERANK_MODEL" in err
    status, _, err = run(capsys, "rerank", QUERY, "--model", tiny_reranker)
    assert status == 2 and "nothing to rerank" in err
    monkeypatch.setenv("QWEN3_RERANK_MODEL", str(tiny_reranker))
    listing = tmp_path / "docs.txt"
    listing.write_text("\n".join(DOCS[:3]) + "\n", encoding="utf-8")
    status, out, err = run(capsys, "rerank", QUERY, "--file", listing, "--format", "json",
                           "--option", f"n_threads={THREADS}")
    assert status == 0, err
    assert_same([(r["index"], r["score"]) for r in json.loads(out)],
                expected(rr, QUERY, DOCS[:3]))
    status, _, err = run(capsys, "rerank", QUERY, "   ", "x")
    assert status == 1 and "index 0" in err
    status, _, err = run(capsys, "rerank", QUERY, "x", "--top-n", "0")
    assert status == 2 and "--top-n" in err


def test_cli_search_with_rerank(capsys, monkeypatch, tmp_path, rr, emb, tiny_model,
                                tiny_reranker):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, text in enumerate(DOCS):
        (folder / f"doc{i}.txt").write_text(text.strip(), encoding="utf-8")
    db = f"qdrant:{tmp_path}/db/docs"
    status, _, err = run(capsys, "ingest", folder, "--into", db, "--model", tiny_model,
                         "--option", f"n_threads={THREADS}", "--no-progress")
    assert status == 0, err
    # The first stage by hand: the 4 nearest files, then the core reranker on them.
    texts = [t.strip() for t in DOCS]
    cos = emb.embed_documents(texts) @ emb.embed_query(QUERY)
    nearest = [int(i) for i in np.argsort(-cos)[:4]]
    want = [(f"doc{nearest[i]}.txt", s)
            for i, s in expected(rr, QUERY, [texts[i] for i in nearest], top=2)]
    status, out, err = run(capsys, "search", QUERY, "--in", db, "--limit", "2",
                           "--rerank", tiny_reranker, "--candidates", "4",
                           "--rerank-option", f"n_threads={THREADS}")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("candidates by tiny-eos.gguf (cosine), reranked by ")
    hits = [re.match(r"^ *(\d)\. (\d\.\d{3})  \(cosine (-?\d\.\d{3})\)  (\S+)$", line)
            for line in lines[1::2]]
    assert all(hits) and len(hits) == 2, out
    names = [Path(m[4]).name for m in hits]
    assert names == [name for name, _ in want]
    assert np.allclose([float(m[2]) for m in hits], [s for _, s in want], atol=5.1e-4)
    assert np.allclose([float(m[3]) for m in hits], [cos[int(n[3:-4])] for n in names],
                       atol=5.1e-4)

    status, _, err = run(capsys, "search", QUERY, "--in", db, "--rerank")
    assert status == 2 and "$QWEN3_RERANK_MODEL" in err
    status, _, err = run(capsys, "search", QUERY, "--in", db, "--candidates", "9")
    assert status == 2 and "add --rerank" in err
    monkeypatch.setenv("QWEN3_RERANK_MODEL", str(tiny_reranker))
    status, out2, err = run(capsys, "search", QUERY, "--in", db, "--limit", "2",
                            "--candidates", "4", "--rerank")
    assert status == 0, err
    assert out2.splitlines()[1:] == lines[1:]  # same hits from the environment's model
