"""Chroma: the embedding function, its config round trip, and reopening in a new process.

Reopening is tested the way users hit it: the collection is made and filled
in this process, then a *new* Python process opens it without passing any
embedding function and queries by text; Chroma must rebuild ours from the
stored config. Once against a PersistentClient folder, once against Chroma's
own server (``chroma run``) through HttpClient.
"""

import json
import subprocess
import sys
import textwrap

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from chromadb.utils.embedding_functions import known_embedding_functions

from qwen3_embed_chroma import NAME, Qwen3EmbeddingFunction, check_collection, ingest, search
from qwen3_embed_core import ConfigurationError, EmbedderSpec, ModelNotFoundError, point_id

from .conftest import COS_MIN
from .stores import REF_DOT_TOL, child_env, chroma_server
from .texts import MIXED, SHORT

DOCS = [*SHORT, *MIXED[:3]]
IDS = [f"d{i}" for i in range(len(DOCS))]
QUERY = "Which city is the capital of France?"
def _settings():
    return Settings(anonymized_telemetry=False)  # fresh: Chroma clients mutate the one given
DIMS, TASK = 48, "question_answering"  # not the defaults: the config must carry them


def _ref_doc(reference, text, d=None):
    return reference.embed(text, dimensions=d)


def _function(tiny_model, **kwargs):
    return Qwen3EmbeddingFunction(model_path=str(tiny_model), **kwargs)


@pytest.fixture(scope="module")
def ef(tiny_model):
    f = _function(tiny_model, dimensions=DIMS, task=TASK)
    yield f
    f.close()


# -- the function itself -----------------------------------------------------------


def test_registered_under_a_stable_name():
    assert Qwen3EmbeddingFunction.name() == NAME == "qwen3-embed"
    assert known_embedding_functions[NAME] is Qwen3EmbeddingFunction


def test_documents_and_queries_match_core_and_reference(ef, tiny_model, reference):
    docs = ef(DOCS)
    assert len(docs) == len(DOCS) and all(v.dtype == np.float32 and v.shape == (DIMS,)
                                          for v in docs)
    core = ef.embedder.embed_documents(DOCS)
    for got, want, text in zip(docs, core, DOCS, strict=True):
        assert float(got @ want) >= COS_MIN
        assert float(got @ _ref_doc(reference, text, DIMS)) >= COS_MIN
    (q,) = ef.embed_query([QUERY])
    formatted = ef.embedder.format_query(QUERY)
    assert formatted.startswith("Instruct: Given a question, retrieve relevant documents")
    assert float(q @ reference.embed(formatted, dimensions=DIMS)) >= COS_MIN
    assert float(q @ docs[0]) < COS_MIN  # the instruction is really there


def test_interface_facts(ef):
    assert ef.default_space() == "cosine"
    assert set(ef.supported_spaces()) == {"cosine", "ip", "l2"}
    assert ef.is_legacy() is False


def test_config_round_trip_rebuilds_the_same_function(ef, tiny_model):
    config = ef.get_config()
    json.dumps(config)  # Chroma stores it as JSON
    assert config["model"] == str(tiny_model.resolve()) and config["backend"] == "local"
    assert config["dimensions"] == DIMS and config["task"] == TASK
    rebuilt = Qwen3EmbeddingFunction.build_from_config(config)
    assert rebuilt.get_config() == config
    assert rebuilt._embedder is None  # nothing loaded until used
    assert float(rebuilt(["x y"])[0] @ ef(["x y"])[0]) >= COS_MIN
    rebuilt.close()


def test_server_config_keeps_the_key_out(monkeypatch):
    f = Qwen3EmbeddingFunction(model="ai/qwen3-embedding:0.6B-F16",
                               base_url="http://127.0.0.1:12434", api_key_env_var="QWEN3_KEY")
    config = f.get_config()
    assert config["backend"] == "model-runner" and config["api_key_env_var"] == "QWEN3_KEY"
    assert "secret" not in json.dumps(config) and "api_key" not in config
    assert Qwen3EmbeddingFunction.build_from_config(config).spec == f.spec
    monkeypatch.delenv("QWEN3_KEY", raising=False)
    with pytest.raises(ConfigurationError, match=r"\$QWEN3_KEY, which is not set"):
        f.spec.build()
    with pytest.raises(ConfigurationError, match="model= and model_path= name the same thing"):
        Qwen3EmbeddingFunction("a.gguf", model_path="b.gguf")
    for local_only in ("max_tokens", "truncate"):  # refused, not dropped
        with pytest.raises(ConfigurationError, match=f"{local_only}: only for backend='local'"):
            Qwen3EmbeddingFunction(model="ai/qwen3-embedding", **{local_only: 100})


def test_a_missing_model_file_is_named_at_once_but_not_on_reopen(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"no GGUF file at .*missing\.gguf"):
        Qwen3EmbeddingFunction(model_path=str(tmp_path / "missing.gguf"))
    # A stored config naming a file this machine lacks still opens the collection;
    # the error comes when something needs embedding (and names the file).
    config = {**EmbedderSpec.model_runner("m").to_config(), "backend": "local",
              "model": str(tmp_path / "missing.gguf")}
    f = Qwen3EmbeddingFunction.build_from_config(config)
    with pytest.raises(ModelNotFoundError, match=r"missing\.gguf"):
        f(["x"])


def test_validate_config_and_updates(ef, tiny_model, tiny_model_no_eos):
    old = ef.get_config()
    Qwen3EmbeddingFunction.validate_config(old)
    with pytest.raises(ValueError, match="unknown model config keys"):
        Qwen3EmbeddingFunction.validate_config({**old, "colour": "blue"})
    with pytest.raises(ValueError, match="never hold an API key"):
        Qwen3EmbeddingFunction.validate_config({**old, "api_key": "x"})
    ef.validate_config_update(old, old)  # same function: fine
    moved = {**old, "model": "/elsewhere/tiny-eos.gguf"}
    ef.validate_config_update(old, moved)  # same file, another folder: same model
    refused = {
        "was made with 48 dimensions": {"dimensions": 32},
        "was made with model 'tiny-eos.gguf'": {"model": str(tiny_model_no_eos)},
        "query instruction": {"task": "web_search"},
    }
    for message, change in refused.items():
        with pytest.raises(ConfigurationError, match=message):
            ef.validate_config_update(old, {**old, **change})


def test_bad_input_gets_the_cores_errors(ef):
    with pytest.raises(ValueError, match="text at index 1 is empty"):
        ef(["fine", "  "])
    with pytest.raises(TypeError, match="text at index 0 is int"):
        ef.embed_query([3])


# -- a persisted collection, reopened by a new process ------------------------------

REOPEN = textwrap.dedent("""
    import json, sys
    import chromadb
    from chromadb.config import Settings
    import qwen3_embed_chroma  # registers "qwen3-embed" with Chroma

    where, query = sys.argv[1], sys.argv[2]
    settings = Settings(anonymized_telemetry=False)
    if where.startswith("http://"):
        host, port = where[7:].split(":")
        client = chromadb.HttpClient(host=host, port=int(port), settings=settings)
    else:
        client = chromadb.PersistentClient(where, settings=settings)
    col = client.get_collection("docs")  # no embedding function passed
    ef = col.configuration["embedding_function"]
    res = col.query(query_texts=[query], n_results=4, include=["distances", "documents"])
    print(json.dumps({"function": type(ef).__name__, "config": ef.get_config(),
                      "space": col.configuration["hnsw"]["space"],
                      "ids": res["ids"][0], "distances": res["distances"][0]}))
""")


def _fill(client, ef):
    col = client.create_collection("docs", embedding_function=ef)
    col.add(ids=IDS, documents=DOCS)
    return col


def _reopen_elsewhere(tmp_path, where):
    script = tmp_path / "reopen.py"
    script.write_text(REOPEN)
    done = subprocess.run([sys.executable, str(script), where, QUERY], capture_output=True,
                          text=True, timeout=300, env=child_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_answer(got, ef, reference):
    """The other process answered with our function, exactly as the core computes."""
    assert got["function"] == "Qwen3EmbeddingFunction" and got["config"] == ef.get_config()
    assert got["space"] == "cosine"
    core = dict(zip(IDS, np.stack(ef(DOCS)) @ ef.embed_query([QUERY])[0], strict=True))
    best = sorted(core, key=core.get, reverse=True)[:4]
    assert got["ids"] == best
    assert np.allclose(got["distances"], [1 - core[i] for i in best], atol=1e-5)
    q = reference.embed(ef.embedder.format_query(QUERY), dimensions=DIMS)
    ref = [1 - float(q @ _ref_doc(reference, DOCS[IDS.index(i)], DIMS)) for i in best]
    assert np.allclose(got["distances"], ref, atol=REF_DOT_TOL)


def test_persistent_collection_reopened_in_a_new_process(tmp_path, ef, reference):
    path = str(tmp_path / "chroma")
    client = chromadb.PersistentClient(path, settings=_settings())
    _fill(client, ef)
    del client  # the child opens the folder itself
    _check_answer(_reopen_elsewhere(tmp_path, path), ef, reference)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as address:
        yield address


def test_server_collection_reopened_in_a_new_process(tmp_path, ef, reference, server):
    host, port = server
    client = chromadb.HttpClient(host=host, port=port, settings=_settings())
    _fill(client, ef)
    _check_answer(_reopen_elsewhere(tmp_path, f"http://{host}:{port}"), ef, reference)


def test_modify_refuses_another_dimension(tmp_path, ef, tiny_model):
    client = chromadb.PersistentClient(str(tmp_path / "c"), settings=_settings())
    col = _fill(client, ef)
    with pytest.raises(ConfigurationError, match="48 dimensions"):
        col.modify(configuration={"embedding_function": _function(
            tiny_model, dimensions=32, task=TASK)})
    assert col.configuration["embedding_function"].spec.dimensions == DIMS


# -- ingest/search helpers (what the CLI uses) --------------------------------------


def test_ingest_is_rerunnable_and_search_scores_are_cosines(tmp_path, ef, reference):
    client = chromadb.PersistentClient(str(tmp_path / "c"), settings=_settings())
    col = client.create_collection("docs", embedding_function=ef)
    records = [{"id": i, "text": t, "metadata": {"tags": ["a", "b"], "n": n}}
               for n, (i, t) in enumerate(zip(IDS, DOCS, strict=True))]
    first = ingest(col, [*records, {"text": ""}])
    assert (first.embedded, first.written, [b.position for b in first.bad]) == (7, 7, [7])
    again = ingest(col, records)
    assert (again.embedded, again.written, again.skipped) == (0, 0, 7)
    records[0] = {**records[0], "text": "Edited first document."}
    records[1] = {**records[1], "metadata": {"n": 99}}
    edit = ingest(col, records)
    assert (edit.embedded, edit.written, edit.updated, edit.skipped) == (1, 2, 2, 5)
    assert ingest(col, records).skipped == 7  # the edits are stored exactly
    assert col.count() == 7
    stored = col.get(ids=[point_id("d0")], include=["embeddings", "metadatas"])
    assert float(stored["embeddings"][0] @ reference.embed("Edited first document.",
                                                           dimensions=DIMS)) >= COS_MIN
    hits = search(col, QUERY, limit=3)
    q = reference.embed(ef.embedder.format_query(QUERY), dimensions=DIMS)
    q_core = ef.embed_query([QUERY])[0]
    for hit in hits:
        assert abs(hit.score - float(q_core @ ef([hit.text])[0])) < 1e-5
        assert abs(hit.score - float(q @ reference.embed(hit.text, dimensions=DIMS))) < REF_DOT_TOL
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    by_id = {h.record_id: h for h in search(col, QUERY, limit=7)}
    assert by_id["d1"].metadata == {"n": 99} and by_id["d2"].metadata["tags"] == ["a", "b"]  # exact, not JSON text


def test_ingest_refuses_a_collection_of_another_model(tmp_path, ef, tiny_model):
    client = chromadb.PersistentClient(str(tmp_path / "c"), settings=_settings())
    client.create_collection("docs", embedding_function=ef)
    other = _function(tiny_model, dimensions=32, task=TASK)
    col = client.get_collection("docs", embedding_function=other)  # Chroma checks names only
    with pytest.raises(ConfigurationError, match="48 dimensions"):
        check_collection(col, other)
    with pytest.raises(ConfigurationError, match="48 dimensions"):
        ingest(col, ["x"])
    plain = client.create_collection("plain", embedding_function=None)
    with pytest.raises(ConfigurationError, match="does not use Qwen3EmbeddingFunction"):
        ingest(plain, ["x"])
    assert isinstance(EmbedderSpec.from_config(ef.get_config()), EmbedderSpec)


# -- the server backend (a real llama-server) ----------------------------------------


def test_server_backend_config_rebuilds_in_a_new_process(tmp_path, reference, llama_server):
    ef = Qwen3EmbeddingFunction(model=llama_server.model_path.name,
                                base_url=llama_server.base_url, dimensions=DIMS, task=TASK)
    assert ef.get_config()["base_urls"] == [llama_server.base_url]
    for got, text in zip(ef(DOCS), DOCS, strict=True):
        assert float(got @ _ref_doc(reference, text, DIMS)) >= COS_MIN
    path = str(tmp_path / "chroma")
    _fill(chromadb.PersistentClient(path, settings=_settings()), ef)
    _check_answer(_reopen_elsewhere(tmp_path, path), ef, reference)
    ef.close()


def test_wrong_arguments_are_our_errors(tmp_path, ef):
    from qwen3_embed_core import InvalidInputTypeError

    client = chromadb.PersistentClient(str(tmp_path / "c"), settings=_settings())
    col = client.create_collection("docs", embedding_function=ef)
    with pytest.raises(InvalidInputTypeError, match="records must be an iterable"):
        ingest(col, None)
    # Issue 18: one record with metadata {"": "v"} aborted the whole ingestion.
    report = ingest(col, [{"text": "a"}, {"text": "b", "metadata": {"": "v"}}, {"text": "c"}])
    assert [b.position for b in report.bad] == [1] and report.written == 2
    assert "metadata keys must be non-empty" in report.bad[0].reason
    # Issue 18: integers beyond int64 came back as floats, so every re-run "updated" them.
    big = [{"id": "big", "text": "d", "metadata": {"n": 10**30, "m": -(2**70)}}]
    assert ingest(col, big).written == 1
    again = ingest(col, big)
    assert (again.written, again.updated, again.skipped) == (0, 0, 1)
    hit = next(h for h in search(col, "d", limit=4) if h.record_id == "big")
    assert hit.metadata == {"n": 10**30, "m": -(2**70)}
    for limit in (0, -3):
        with pytest.raises(ConfigurationError, match="must be an int >= 1"):
            search(col, "q", limit=limit)
