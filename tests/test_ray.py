"""Ray Data on the real engine: a local cluster, real actors, real stores, the tiny model.

One cluster for the module (``ray.init(num_cpus=2)``, no dashboard). Stores:
embedded Qdrant through the writer actor, Chroma's own server (``chroma run``).
No Qdrant server binary is available here, so the Qdrant *server* path (a
client per write task, opened by URL) is exercised by the same ``Store``
code that the Chroma server path runs, and by URL against a closed port
(the driver's quick, clear error); only the client constructor differs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from qdrant_client import QdrantClient

from qwen3_embed_core import (
    ConfigurationError,
    ModelNotFoundError,
    ServerUnavailableError,
    content_hash,
    point_id,
)
from qwen3_embed_qdrant import ingest as qdrant_ingest
from qwen3_embed_ray import QdrantDatasink, Qwen3EmbedBatches, ingest_dataset
from qwen3_embed_ray._stage import actor_cpus

from .conftest import COS_MIN
from .stores import THREADS, chroma_server, free_port, local_embedder, tally

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster: 2 CPUs, no dashboard; workers import this checkout."""
    os.environ.pop("RAY_ADDRESS", None)  # never a cluster the environment points at
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'integrations'}",
                                       "ANONYMIZED_TELEMETRY": "False"}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def core(tiny_model):
    """The core embedder on the same file: the vectors the actors must reproduce."""
    yield from local_embedder(tiny_model)


@pytest.fixture(scope="module")
def chroma(tmp_path_factory):
    with chroma_server(tmp_path_factory.mktemp("chroma")) as (host, port):
        yield host, port


def _records(n, bad=()):
    """n records with ids; rows in ``bad`` have empty text (reported, never written)."""
    return [{"id": f"d{i}", "text": "" if i in bad else f"record {i} of the ray test, topic "
             f"{i % 11}", "lang": "en" if i % 2 else "fr", "n": i} for i in range(n)]


def _check_vectors(vectors, texts, core):
    expected = core.embed_documents(texts)
    cos = np.einsum("ij,ij->i", np.asarray(vectors, np.float64), expected.astype(np.float64))
    assert cos.min() >= COS_MIN, cos.min()


@contextlib.contextmanager
def local_embedder_ctx(model):
    gen = local_embedder(model)
    try:
        yield next(gen)
    finally:
        gen.close()


def _qdrant_points(folder, name):
    client = QdrantClient(path=str(folder))
    try:
        points, offset = [], None
        while True:
            page, offset = client.scroll(name, limit=1000, offset=offset, with_vectors=True)
            points += page
            if offset is None:
                return points, client.count(name, exact=True).count
    finally:
        client.close()


# -- the embedding stage ---------------------------------------------------------------


def test_stage_vectors_ids_threads_and_bad_rows(cluster, tiny_model, core):
    rows = _records(40, bad={7})
    ds = ray.data.from_items(rows).map_batches(
        Qwen3EmbedBatches, fn_constructor_kwargs={"model": str(tiny_model)},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=16, num_cpus=2)
    out = sorted(ds.take_all(), key=lambda r: r["n"])
    assert len(out) == 40
    good = [r for r in out if r["error"] is None]
    assert [r["n"] for r in out if r["error"]] == [7]
    assert "id 'd7'" in out[7]["error"] and "empty" in out[7]["error"]
    assert out[7]["embedding"] is None and out[7]["point_id"] is None
    assert [r["point_id"] for r in good] == [point_id(r["id"]) for r in good]
    stored = json.loads(good[0]["point"])
    assert stored["content_hash"] == content_hash(good[0]["text"])
    assert (stored["text"], stored["metadata"], stored["record_id"]) == (
        good[0]["text"], {"lang": "fr", "n": 0}, "d0")
    _check_vectors([r["embedding"] for r in good], [r["text"] for r in good], core)

    # llama.cpp's threads follow the CPUs Ray gives the actor.
    @ray.remote(num_cpus=2)
    def cpus():
        return actor_cpus()

    assert ray.get(cpus.remote()) == 2 and actor_cpus() is None  # None: not in an actor


def test_stage_refuses_what_it_would_overwrite(tiny_model):
    stage = Qwen3EmbedBatches(str(tiny_model), n_threads=THREADS)
    with pytest.raises(ConfigurationError, match=r"'point_id'.* would be overwritten"):
        stage({"text": np.array(["a"]), "point_id": np.array(["x"])})
    with pytest.raises(ConfigurationError, match=r"'body'.* not in the dataset"):
        Qwen3EmbedBatches(str(tiny_model), text_column="body", n_threads=THREADS)(
            {"text": np.array(["a"])})
    with pytest.raises(ConfigurationError, match="drop model"):
        Qwen3EmbedBatches(str(tiny_model), spec={"backend": "local", "model": str(tiny_model)})


# -- ingestion: embedded Qdrant through the writer actor, Chroma's server ---------------


def test_ingest_dataset_embedded_qdrant_then_rerun_skips(cluster, tiny_model, core, tmp_path):
    rows = _records(120, bad={5, 77})
    uri = f"qdrant:{tmp_path}/db/docs"
    ds = ray.data.from_items(rows)
    # The record shape of qwen3_embed_qdrant.ingest: an 'id' column is the records' id.
    report = ingest_dataset(ds, uri, model=str(tiny_model), actors=2, batch_size=16)
    assert (report.seen, report.embedded, report.written, report.skipped) == (120, 118, 118, 0)
    assert sorted(b.record_id for b in report.bad) == ["d5", "d77"]
    assert all("empty" in b.reason for b in report.bad)

    points, count = _qdrant_points(tmp_path / "db", "docs")
    expected = {point_id(f"d{i}") for i in range(120) if i not in (5, 77)}
    assert count == len(points) == 118 and {str(p.id) for p in points} == expected
    _check_vectors([p.vector for p in points], [p.payload["text"] for p in points], core)
    assert points[0].payload["metadata"].keys() == {"lang", "n"}

    # Again, one text edited: every record is looked up before embedding; only the
    # edited one is embedded (and replaces its point), the rest are skipped.
    rows[3]["text"] += " (edited)"
    again = ingest_dataset(ray.data.from_items(rows), uri, model=str(tiny_model), actors=1,
                           batch_size=16)
    assert (again.embedded, again.written, again.updated, again.skipped) == (1, 1, 1, 117)
    assert len(again.bad) == 2
    points, count = _qdrant_points(tmp_path / "db", "docs")
    assert count == 118
    edited = next(p for p in points if str(p.id) == point_id("d3"))
    assert edited.payload["text"].endswith("(edited)")
    _check_vectors([edited.vector], [edited.payload["text"]], core)
    # The same records through the Python API: nothing to do (same ids, hashes, sources).
    client = QdrantClient(path=str(tmp_path / "db"))
    try:
        with local_embedder_ctx(tiny_model) as emb:
            plain = qdrant_ingest(client, "docs", emb, rows, cleanup="incremental")
        assert (plain.embedded, plain.written, plain.deleted) == (0, 0, 0)
    finally:
        client.close()
    # The collection records the model: another size is refused on the driver at once.
    t0 = time.monotonic()
    with pytest.raises(ConfigurationError, match="dimensions"):
        ingest_dataset(ds, uri, model=str(tiny_model), dimensions=32)
    assert time.monotonic() - t0 < 30  # the writer actor starts, no embedding actor does


def test_ingest_dataset_chroma_server(cluster, tiny_model, core, chroma):
    import chromadb

    host, port = chroma
    rows = _records(60)
    uri = f"chroma+http://{host}:{port}/docs"
    ds = ray.data.from_items(rows)
    report = ingest_dataset(ds, uri, model=str(tiny_model), actors=2, batch_size=16)
    assert (report.seen, report.embedded, report.written) == (60, 60, 60)
    col = chromadb.HttpClient(host=host, port=port).get_collection("docs")
    got = col.get(include=["embeddings", "documents", "metadatas"])
    assert sorted(got["ids"]) == sorted(point_id(f"d{i}") for i in range(60))
    _check_vectors(got["embeddings"], got["documents"], core)
    assert got["metadatas"][0]["lang"] in ("en", "fr")
    # Chroma keeps the function's config: another size is refused before embedding.
    with pytest.raises(ConfigurationError, match="dimensions"):
        ingest_dataset(ds, uri, model=str(tiny_model), dimensions=32)


@pytest.mark.parametrize("kind", ["qdrant", "qdrant-edge"])  # embedded: one writer actor
def test_sync_on_ray_keeps_sources_exact(cluster, tiny_model, tmp_path, kind):
    """Sources on Ray: a shrunk source loses its old chunks, --prune drops a gone one."""
    uri = f"{kind}:{tmp_path}/db/docs"

    def rows(spec):
        return [{"id": f"{s}-{i}", "text": f"{s} part {i} of {n}", "source": s}
                for s, n in spec.items() for i in range(n)]

    def expected(spec):
        return {s: [f"{s} part {i} of {n}" for i in range(n)] for s, n in spec.items()}

    first = {"a": 5, "b": 3, "c": 2}
    # A dry run into a store that does not exist counts the work and creates nothing.
    dry = ingest_dataset(ray.data.from_items(rows(first)), uri, model=str(tiny_model),
                         cleanup="incremental", dry_run=True)
    assert (dry.dry_run, dry.written, dry.deleted) == (True, 10, 0)
    assert not (tmp_path / "db").exists()
    ingest_dataset(ray.data.from_items(rows(first)), uri, model=str(tiny_model),
                   cleanup="incremental")
    assert tally(uri, expected(first)).exact
    second = {"a": 2, "b": 4}  # a shrinks, b grows and changes, c is gone
    dry = ingest_dataset(ray.data.from_items(rows(second)), uri, model=str(tiny_model),
                         cleanup="full", dry_run=True)
    assert dry.dry_run and dry.deleted == 3 + 2 and dry.deleted_sources == 1  # a's 3, c's 2
    assert tally(uri, expected(first)).exact  # the dry run changed nothing
    report = ingest_dataset(ray.data.from_items(rows(second)), uri, model=str(tiny_model),
                            cleanup="full")
    assert (report.deleted, report.deleted_sources) == (5, 1)
    t = tally(uri, expected(second))
    assert (t.stale, t.missing, t.duplicated, t.points) == (0, 0, 0, 6)


@pytest.mark.server
def test_stage_on_several_model_runner_endpoints(cluster, llama_server, tiny_model, core,
                                                 tmp_path):
    """Actors spread their requests over every URL: two llama-servers with the same file."""
    from .llama_server import LlamaServer

    rows = _records(30)
    with LlamaServer(tiny_model, tmp_path, name="second") as second:
        urls = [llama_server.base_url, second.base_url]
        ds = ray.data.from_items(rows).map_batches(
            Qwen3EmbedBatches, fn_constructor_kwargs={"model": "tiny", "base_urls": urls},
            compute=ray.data.ActorPoolStrategy(size=2), batch_size=8, num_cpus=0.5)
        out = ds.take_all()
    assert sorted(r["point_id"] for r in out) == sorted(point_id(r["id"]) for r in rows)
    _check_vectors([r["embedding"] for r in out], [r["text"] for r in out], core)


# -- faults ----------------------------------------------------------------------------


def _once(marker: str) -> bool:
    """True for the first caller across every process (the marker file is created once)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


class CrashingStage(Qwen3EmbedBatches):
    """Kills its actor's process once, at its third batch (Ray restarts it, retries)."""

    def __init__(self, *args, marker, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker, self.calls = marker, 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 3 and _once(self.marker):
            os._exit(1)
        return super().__call__(batch)


class CrashingSink(QdrantDatasink):
    """Kills its write task's process once, after half a block is written (Ray retries)."""

    def __init__(self, *args, marker, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = marker

    def write(self, blocks, ctx):
        blocks = list(blocks)
        if _once(self.marker):
            half = blocks[0].slice(0, blocks[0].num_rows // 2)
            super().write([half], ctx)
            os._exit(1)
        return super().write(blocks, ctx)


def test_killed_actor_and_write_task_leave_every_record_once(cluster, tiny_model, tmp_path):
    n = 200
    rows = [{"text": f"fault record {i}, topic {i % 13}"} for i in range(n)]  # no ids
    ds = ray.data.from_items(rows).map_batches(
        CrashingStage, fn_constructor_kwargs={"model": str(tiny_model),
                                              "marker": str(tmp_path / "stage-died")},
        compute=ray.data.ActorPoolStrategy(size=2), batch_size=10, num_cpus=1)
    sink = CrashingSink(str(tmp_path / "db"), "faults", marker=str(tmp_path / "write-died"))
    ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
    assert (tmp_path / "stage-died").exists() and (tmp_path / "write-died").exists()

    points, count = _qdrant_points(tmp_path / "db", "faults")
    ids = [str(p.id) for p in points]
    expected = {point_id(None, r["text"]) for r in rows}
    lost, duplicated = len(expected - set(ids)), count - len(set(ids))
    print(f"\nray faults: {n} records, 1 embedding actor and 1 write task killed; "
          f"{count} points, lost {lost}, duplicated {duplicated}")
    assert (count, lost, duplicated) == (n, 0, 0) and set(ids) == expected
    assert sink.report is not None and sink.report.seen == n


def test_unreachable_store_or_model_fails_fast_on_the_driver(cluster, tiny_model, tmp_path):
    ds = ray.data.from_items(_records(4))
    closed = free_port()
    cases = [
        ({"uri": f"qdrant+http://127.0.0.1:{closed}/docs", "model": str(tiny_model)},
         ServerUnavailableError, "Qdrant"),
        ({"uri": f"chroma+http://127.0.0.1:{closed}/docs", "model": str(tiny_model)},
         ServerUnavailableError, "Chroma"),
        ({"uri": f"qdrant:{tmp_path}/docs", "model": "served",
          "base_url": f"http://127.0.0.1:{closed}/v1"}, ServerUnavailableError, str(closed)),
        ({"uri": f"qdrant:{tmp_path}/docs", "model": str(tmp_path / "missing.gguf")},
         ModelNotFoundError, "missing.gguf"),
    ]
    for kwargs, error, words in cases:
        t0 = time.monotonic()
        with pytest.raises(error, match=words):
            ingest_dataset(ds, kwargs.pop("uri"), **kwargs)
        assert time.monotonic() - t0 < 15, kwargs
    # The dataset's schema is checked on the driver, before any actor starts.
    with pytest.raises(ConfigurationError, match=r"'embedding'.* would be overwritten"):
        ingest_dataset(ray.data.from_items([{"embedding": 1, "text": "a"}]),
                       f"qdrant:{tmp_path}/db/x", model=str(tiny_model))
    # An error raised on an actor reaches the driver as the library's own, not as Ray's
    # "UDF failed" wrapper: here a bad option, refused when the actor builds its model.
    with pytest.raises(ConfigurationError):
        ingest_dataset(ray.data.from_items([{"id": 1, "text": "a"}]), f"qdrant:{tmp_path}/db/y",
                       model=str(tiny_model), n_threads="many")


# -- the command line ------------------------------------------------------------------


def test_cli_ingest_on_ray_matches_plain_ingest(cluster, tiny_model, tmp_path, capsys,
                                               monkeypatch):
    from qwen3_embed_cli import main

    monkeypatch.chdir(tmp_path)  # a relative store path: the actors run elsewhere

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(" ".join(f"word{i}" for i in range(60)), encoding="utf-8")
    (docs / "b.md").write_text("A short file.", encoding="utf-8")
    (tmp_path / "r.jsonl").write_text(
        '{"id": "j1", "text": "a json record", "metadata": {"k": 1}}\n{"text": ""}\n"bare"\n',
        encoding="utf-8")
    store = "qdrant:db/docs"
    common = ["ingest", str(docs), str(tmp_path / "r.jsonl"), "--into", store, "--model", str(tiny_model),
              "--chunk-tokens", "16", "--overlap-tokens", "4", "--no-progress"]
    assert main([*common, "--ray", "--actors", "2"]) == 0
    out = capsys.readouterr().out
    assert "on Ray (2 actors)" in out and "1 inputs skipped" in out and "r.jsonl:2" in out
    # Without --ray, over what --ray wrote: the same ids, hashes and labels, so nothing to do.
    assert main([*common, "--option", f"n_threads={THREADS}"]) == 0
    out = capsys.readouterr().out
    assert " 0 embedded, 0 written" in out and "0 deleted" in out, out
    assert "(2 unchanged" in out, out  # the text files: recognised without chunking
