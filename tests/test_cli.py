"""The qwen3-embed command line: embed, ingest, search, and its error messages."""

import json
import re
import subprocess

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from qdrant_client import QdrantClient

from qwen3_embed_cli import main
from qwen3_embed_core import Qwen3Embedder
from qwen3_embed_core.stores import parse_uri

from .conftest import COS_MIN
from .stores import CLI, THREADS, child_env, chroma_server, free_port, local_embedder
from .texts import SHORT, long_text

CHUNK, OVERLAP = 24, 4


@pytest.fixture(autouse=True)
def _no_default_model(monkeypatch):
    monkeypatch.delenv("QWEN3_EMBED_MODEL", raising=False)


@pytest.fixture(scope="module")
def emb(tiny_model):
    yield from local_embedder(tiny_model)


@pytest.fixture
def corpus(tmp_path):
    """A folder of .md/.txt (one empty, one nested, one ignored .rst) and a JSONL file."""
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "paris.md").write_text("# Paris\n\n" + SHORT[0] + "\n", encoding="utf-8")
    (docs / "cells.txt").write_text(SHORT[2], encoding="utf-8")
    (docs / "nested" / "long.md").write_text(long_text(120, seed=5), encoding="utf-8")
    (docs / "empty.md").write_text("  \n", encoding="utf-8")
    (docs / "skip.rst").write_text("not a text file we read", encoding="utf-8")
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"id": "r1", "text": SHORT[1], "metadata": {"lang": "en"}}),
        "{not json",
        json.dumps({"id": "r2"}),
        json.dumps({"id": "r3", "text": long_text(60, seed=9)}),
        "",
    ]), encoding="utf-8")
    return docs, jsonl


def run(capsys, *argv):
    """main() in this process: (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


# -- help and the console script ----------------------------------------------------


@pytest.mark.parametrize("command", [[], ["embed"], ["ingest"], ["search"]])
def test_console_script_help_is_complete(command):
    done = subprocess.run([CLI, *command, "--help"], capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    if command:
        for option in ("--model-path", "--model ", "--backend", "--base-url", "--option",
                       "--dimensions", "--task"):
            assert option in done.stdout, option
    else:
        assert all(c in done.stdout for c in ("embed", "ingest", "search", "qdrant+http://"))
    assert {"embed": "--format {json,npy}", "ingest": "--chunk-tokens",
            "search": "--limit"}.get(command[0] if command else "", "") in done.stdout


# -- embed ----------------------------------------------------------------------------


def test_embed_prints_core_vectors_as_json(capsys, tiny_model, emb, reference):
    status, out, _ = run(capsys, "embed", *SHORT[:2], "--model-path", str(tiny_model))
    assert status == 0
    got = np.array(json.loads(out))
    assert np.allclose(got, emb.embed_documents(SHORT[:2]), atol=1e-6)
    assert all(float(g @ reference.embed(t)) >= COS_MIN for g, t in zip(got, SHORT, strict=False))


def test_embed_queries_with_task_and_dimensions(capsys, tiny_model, reference):
    status, out, _ = run(capsys, "embed", SHORT[0], "--query", "--task", "question_answering",
                         "--dimensions", "32", "--model-path", str(tiny_model))
    assert status == 0
    (got,) = np.array(json.loads(out))
    with Qwen3Embedder.local(tiny_model, dimensions=32, task="question_answering",
                             n_threads=THREADS) as other:
        assert np.allclose(got, other.embed_query(SHORT[0]), atol=1e-6)
        assert float(got @ reference.embed(other.format_query(SHORT[0]), dimensions=32)) >= COS_MIN


def test_embed_file_to_npy(capsys, tmp_path, tiny_model, emb):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SHORT) + "\n", encoding="utf-8")
    out_file = tmp_path / "v.npy"
    status, _, _ = run(capsys, "embed", "--file", str(src), "--format", "npy", "-o",
                       str(out_file), "--model-path", str(tiny_model))
    assert status == 0
    assert np.allclose(np.load(out_file), emb.embed_documents(SHORT), atol=1e-6)
    src.write_text("one\n\nthree\n", encoding="utf-8")
    status, _, err = run(capsys, "embed", "--file", str(src), "--model-path", str(tiny_model))
    assert status == 2 and f"{src}:2 is empty" in err


def test_embed_needs_a_model_and_texts(capsys, tiny_model):
    status, _, err = run(capsys, "embed", "hello")
    assert status == 2 and "no model given: pass --model" in err
    status, _, err = run(capsys, "embed", "--model-path", str(tiny_model))
    assert status == 2 and "nothing to embed" in err
    status, _, err = run(capsys, "embed", "x", "--model", str(tiny_model), "--backend", "local",
                         "--base-url", "http://h")
    assert status == 2 and "base_url(s): only for backend='model-runner'" in err
    status, _, err = run(capsys, "embed", "x", "--model", str(tiny_model), "--option",
                         "timeout=5")
    assert status == 2 and "timeout: only for backend='model-runner'" in err
    status, _, err = run(capsys, "embed", "", "--model-path", str(tiny_model))
    assert status == 1 and "text at index 0 is empty" in err


# -- ingest and search ---------------------------------------------------------------


def _stored_chunks(kind, uri_path):
    """{id: (text, metadata)} read straight from the store."""
    if kind == "qdrant":
        client = QdrantClient(path=str(uri_path))
        points, _ = client.scroll("docs", limit=10_000, with_payload=True)
        client.close()
        return {str(p.id): (p.payload["text"], p.payload["metadata"]) for p in points}
    client = chromadb.PersistentClient(str(uri_path), settings=Settings(anonymized_telemetry=False))
    got = client.get_collection("docs").get(include=["documents", "metadatas"])
    return {i: (t, m) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"],
                                         strict=True)}


def _hits(out):
    """(score, source) pairs from search output."""
    return [(float(m[1]), m[2]) for m in re.finditer(r"^ *\d+\. (\d\.\d{3})  (\S+)$", out, re.M)]


@pytest.mark.parametrize("kind", ["qdrant", "chroma"])
def test_ingest_then_search(capsys, tmp_path, monkeypatch, corpus, tiny_model, emb, kind):
    docs, jsonl = corpus
    monkeypatch.chdir(tmp_path)  # sources are shown relative to here
    uri = f"{kind}:./db/docs"
    args = ["ingest", str(docs), str(jsonl), "--into", uri, "--chunk-tokens", str(CHUNK),
            "--overlap-tokens", str(OVERLAP), "--model-path", str(tiny_model)]
    status, out, err = run(capsys, *args)
    assert status == 0, err
    stored = _stored_chunks(kind, tmp_path / "db")
    n = len(stored)
    assert f"{n} embedded, {n} written" in out and "0 skipped" in out
    assert "ingest:" in err  # the progress bar
    # Every problem is named, with its file (and line); nothing else is dropped.
    assert "3 inputs skipped" in out
    assert "docs/empty.md: the text is empty" in out
    assert "records.jsonl:2: not valid JSON" in out
    assert "records.jsonl:3 has no 'text' field" in out
    jsonl_source = f"{tmp_path.name}/records.jsonl"  # a file alone: under its folder's name
    for text, meta in stored.values():
        assert emb.count_tokens(text) <= CHUNK
        assert meta["source"].startswith(("docs/", jsonl_source))
    sources = {m["source"] for _, m in stored.values()}
    assert sources == {"docs/paris.md", "docs/cells.txt", "docs/nested/long.md", jsonl_source}
    assert {m["line"] for _, m in stored.values() if m["source"] == jsonl_source} == {1, 4}
    long_chunks = [m for _, m in stored.values() if m["source"] == "docs/nested/long.md"]
    assert len(long_chunks) == long_chunks[0]["chunks"] > 3

    # Again: the three files with chunks are recognised unchanged without being chunked;
    # the JSONL file's records are looked up and skipped; nothing is written or deleted.
    status, out, _ = run(capsys, *args, "--no-progress")
    assert status == 0 and "0 embedded, 0 written (0 updated)" in out, out
    assert "5 sources (3 unchanged" in out and "0 deleted" in out
    assert _stored_chunks(kind, tmp_path / "db") == stored

    # Search with no model option: the store says which model made it.
    query = "What is the capital of France?"
    status, out, err = run(capsys, "search", query, "--in", uri, "--limit", "3")
    assert status == 0, err
    hits = _hits(out)
    q = emb.embed_query(query)
    texts = {(m["source"] + (f"#{m['chunk']}" if m["chunks"] > 1 else "")): t
             for t, m in stored.values()}
    expected = sorted(((float(q @ emb.embed_documents([t])[0]), s) for s, t in texts.items()),
                      reverse=True)[:3]
    assert [s for _, s in hits] == [s for _, s in expected]
    assert np.allclose([h for h, _ in hits], [e for e, _ in expected], atol=6e-4)  # 3 decimals


def test_ingest_into_chroma_server_by_url(capsys, tmp_path, corpus, tiny_model):
    docs, _ = corpus
    with chroma_server(tmp_path / "server") as (host, port):
        uri = f"chroma+http://{host}:{port}/docs"
        status, out, err = run(capsys, "ingest", str(docs), "--into", uri, "--no-progress",
                               "--model-path", str(tiny_model))
        assert status == 0, err
        assert "ingested into chroma+http://" in out
        status, out, err = run(capsys, "search", "cells", "--in", uri)
        assert status == 0, err
        assert len(_hits(out)) == 3  # three files, one chunk each (512 tokens)


def test_on_error_raise_stops_at_the_first_bad_input(capsys, tmp_path, corpus, tiny_model):
    _, jsonl = corpus
    status, _, err = run(capsys, "ingest", str(jsonl), "--into", f"qdrant:{tmp_path}/db/docs",
                         "--on-error", "raise", "--model-path", str(tiny_model))
    assert status == 1 and "records.jsonl:2: not valid JSON" in err  # the first bad line


@pytest.mark.parametrize("uri", ["mongo:./db/docs", "qdrant:docs", "qdrant+ftp://h/docs",
                                 "qdrant:./db1/", "qdrant:./db1", "chroma:/abs/db/docs/",
                                 "qdrant+http://h:1/a/b", "chroma:", "qdrant+http:///docs"])
def test_bad_uris_are_refused(capsys, uri, tiny_model, tmp_path, monkeypatch, corpus):
    status, _, err = run(capsys, "search", "q", "--in", uri, "--model-path", str(tiny_model))
    assert status == 2 and f"bad store URI {uri!r}" in err
    # Issue 18: `--into qdrant:./db1/` wrote a store into the working directory.
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    status, _, err = run(capsys, "ingest", str(corpus[0]), "--into", uri, "--model-path",
                         str(tiny_model))
    assert status == 2 and f"bad store URI {uri!r}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_uri_parsing():
    assert parse_uri("qdrant:./db/docs").path.as_posix() == "db"
    assert parse_uri("chroma:/abs/db/docs").collection == "docs"
    server = parse_uri("qdrant+https://h.example:6333/docs")
    assert (server.url, server.collection) == ("https://h.example:6333", "docs")


def test_missing_inputs_and_stores(capsys, tmp_path, tiny_model):
    model = ["--model-path", str(tiny_model)]
    status, _, err = run(capsys, "ingest", str(tmp_path / "nope"), "--into",
                         f"qdrant:{tmp_path}/db/docs", *model)
    assert status == 2 and "nope: no such file or folder" in err
    assert not (tmp_path / "db").exists()  # nothing created for a failed command
    for kind in ("qdrant", "chroma"):
        status, _, err = run(capsys, "search", "q", "--in", f"{kind}:{tmp_path}/none/docs", *model)
        assert status == 2 and f"no {kind} store at {tmp_path}/none" in err
    status, _, err = run(capsys, "embed", "x", "--model-path", str(tmp_path / "m.gguf"))
    assert status == 1 and "no GGUF file at" in err


@pytest.mark.parametrize("kind", ["qdrant", "chroma"])
def test_a_store_made_with_another_size_is_refused(capsys, tmp_path, corpus, tiny_model, kind):
    docs, _ = corpus
    uri = f"{kind}:{tmp_path}/db/docs"
    base = ["--into", uri, "--no-progress", "--model-path", str(tiny_model)]
    assert run(capsys, "ingest", str(docs), *base)[0] == 0
    status, _, err = run(capsys, "ingest", str(docs), *base, "--dimensions", "32")
    assert status == 1 and re.search(r"made with (64 dimensions|the model.s full size)|holds 64-dim", err), err
    status, _, err = run(capsys, "search", "q", "--in", uri, "--model-path", str(tiny_model),
                         "--task", "question_answering")
    assert status == 1 and "query instruction" in err


@pytest.mark.parametrize("kind", ["qdrant", "chroma"])
def test_unreachable_servers_are_named(capsys, tiny_model, kind):
    url = f"http://127.0.0.1:{free_port()}"
    status, _, err = run(capsys, "search", "q", "--in", f"{kind}+{url}/docs",
                         "--model-path", str(tiny_model))
    assert status == 1 and f"cannot reach {kind.capitalize()} at {url}" in err


def test_ingest_through_a_server_then_search_locally(capsys, tmp_path, corpus, tiny_model,
                                                     emb, llama_server):
    docs, _ = corpus
    uri = f"qdrant:{tmp_path}/db/docs"
    # The server serves the same file under its own name: the same model to the store.
    status, out, err = run(capsys, "ingest", str(docs), "--into", uri, "--no-progress",
                           "--base-url", llama_server.base_url, "--model", tiny_model.name)
    assert status == 0, err
    client = QdrantClient(path=f"{tmp_path}/db")
    points, _ = client.scroll("docs", limit=100, with_vectors=True, with_payload=True)
    record = client.get_collection("docs").config.metadata["qwen3_embed"]
    client.close()
    assert record["embedder"]["backend"] == "model-runner"
    assert len(points) == 3
    for p in points:  # served vectors equal the local core's
        assert float(np.asarray(p.vector) @ emb.embed_documents([p.payload["text"]])[0]) >= COS_MIN
    for extra in ([], ["--model-path", str(tiny_model)]):  # recorded server, or the local file
        status, out, err = run(capsys, "search", "cells", "--in", uri, *extra)
        assert status == 0, err
        assert len(_hits(out)) == 3


def test_search_names_a_missing_collection(capsys, tmp_path, corpus, tiny_model):
    docs, _ = corpus
    for kind in ("qdrant", "chroma"):
        assert run(capsys, "ingest", str(docs), "--into", f"{kind}:{tmp_path}/{kind}/docs",
                   "--no-progress", "--model-path", str(tiny_model))[0] == 0
        for extra in ([], ["--model-path", str(tiny_model)]):
            status, _, err = run(capsys, "search", "q", "--in", f"{kind}:{tmp_path}/{kind}/other",
                                 *extra)
            assert status in (1, 2) and "no collection 'other'" in err, err


def test_files_that_are_not_utf8_and_bad_limits_are_clear_errors(capsys, tmp_path, tiny_model,
                                                                corpus):
    # Issue 18: tracebacks for non-UTF-8 --file and JSONL input, and for --limit 0.
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    model = ["--model-path", str(tiny_model)]
    for argv in (["embed", "--file", str(latin)], ["rerank", "q", "--file", str(latin)]):
        status, _, err = run(capsys, *argv, *model)
        assert status == 2 and f"{latin} is not UTF-8 text" in err and "Traceback" not in err
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    uri = f"qdrant:{tmp_path}/db/docs"
    status, out, err = run(capsys, "ingest", str(jsonl), "--into", uri, "--no-progress", *model)
    assert status == 0 and "latin1.jsonl: cannot read it as UTF-8 text" in out, err
    assert run(capsys, "ingest", str(corpus[0]), "--into", uri, "--no-progress", *model)[0] == 0
    for limit in ("0", "-2", "many"):
        status, _, err = run(capsys, "search", "q", "--in", uri, "--limit", limit)
        assert status == 2 and "expected a whole number >= 1" in err and "Traceback" not in err
