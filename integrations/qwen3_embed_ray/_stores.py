"""Vector stores as Ray tasks and actors see them: open by URI, look up, write rows.

Every write goes through the store adapters' own ``ingest_steps`` and the
core's ``run_ingest``, so ids, hashes, skips, relabels and reports are
exactly ``ingest``'s; only the vectors come from the rows (the embedding
stage made them). An embedded store (a folder) allows one process, so it is
opened by one writer actor on the driver's node and every task talks to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qwen3_embed_core import ConfigurationError, EmbedderSpec, IngestReport
from qwen3_embed_core.adapters import (
    Record,
    check_record,
    missing_dependency,
    run_ingest,
    spec_record,
)

try:
    import pyarrow as pa
    import ray
except ImportError as exc:  # pragma: no cover - the ray extra is missing
    raise missing_dependency("ray[data]", "ray", exc) from exc

__all__ = [
    "EMBEDDING", "ERROR", "HASH", "ID", "OUTPUT_COLUMNS", "RECORD", "SCHEMA_KEY", "Store",
    "Target", "add_counts", "apply_rows", "check_facts", "pa", "ray", "records_report",
    "start_writer", "stop_writer", "to_arrow", "vectors_facts", "writer_of",
]

# Columns the embedding stage adds (and the datasinks read).
ID, RECORD, HASH, EMBEDDING, ERROR = "id", "record", "content_hash", "embedding", "error"
OUTPUT_COLUMNS = (ID, RECORD, HASH, EMBEDDING, ERROR)
# Schema-metadata key: which model made the vectors (the stage writes it, the sinks read it).
SCHEMA_KEY = b"qwen3_embed"


@dataclass(frozen=True)
class Target:
    """A store and collection, named by a URI as the command line names them."""

    uri: str
    kind: str  # "qdrant" | "chroma"
    collection: str
    path: str | None = None  # embedded store (one process: the writer actor)
    url: str | None = None  # server (every task opens its own client)

    @classmethod
    def parse(cls, uri: str) -> Target:
        from qwen3_embed_cli import parse_uri

        parsed = parse_uri(uri)
        if parsed.path is None:
            return cls(str(parsed), parsed.kind, parsed.collection, url=parsed.url)
        # Absolute: actors resolve the URI again, from another working directory.
        path = parsed.path.resolve()
        return cls(f"{parsed.kind}:{path}/{parsed.collection}", parsed.kind, parsed.collection,
                   path=str(path))

    @property
    def writer_name(self) -> str:
        """The writer actor's name: one per embedded store folder (its file lock)."""
        return f"qwen3-embed-writer:{self.kind}:{self.path}"


class Store:
    """One process's connection to a target (a write task, a stage actor, the writer)."""

    def __init__(self, target: Target) -> None:
        from qwen3_embed_cli import StoreURI, open_store

        self.target = target
        where = {"path": target.path} if target.path else {"url": target.url}
        self._cli = open_store(StoreURI(target.kind, target.collection, **where), create=True)
        self.client: Any = getattr(self._cli, "client")  # noqa: B009 - both stores have one
        self._collection: Any = None  # Chroma: the collection, once it exists
        self._ready: dict[str, Any] | None = None  # the ingest steps, once it exists

    # -- what the collection records ----------------------------------------------

    def recorded(self) -> dict[str, Any] | None:
        """The collection's record (``{"embedder": spec config, ...}``), None if none yet.

        Also proves the store is reachable: this is the driver's first call.
        """
        if self.target.kind == "qdrant":
            import qwen3_embed_qdrant

            return qwen3_embed_qdrant.collection_record(self.client, self.target.collection)
        col = self._chroma()
        if col is None:
            return None
        import qwen3_embed_chroma

        spec = qwen3_embed_chroma.function_of(col).spec  # Chroma keeps the function's config
        return {**spec_record(spec), "embedder": spec.to_config()}

    def ensure(self, record: dict[str, Any], spec: EmbedderSpec) -> None:
        """Create the collection for these vectors, or refuse one made differently."""
        if self.target.kind == "qdrant":
            import qwen3_embed_qdrant

            qwen3_embed_qdrant.ensure_collection(
                self.client, self.target.collection, None, spec=spec, record=record
            )
            return
        import qwen3_embed_chroma

        ef = qwen3_embed_chroma.Qwen3EmbeddingFunction(spec=spec)
        col = self.client.get_or_create_collection(self.target.collection, embedding_function=ef)
        qwen3_embed_chroma.function_of(col)  # refuses another model, size or instruction
        self._collection = col

    def _chroma(self) -> Any:
        if self._collection is None:
            from chromadb.errors import NotFoundError

            try:
                self._collection = self.client.get_collection(self.target.collection)
            except NotFoundError:
                return None
        return self._collection

    def _steps(self) -> dict[str, Any] | None:
        """The store adapter's ingest steps, or None while the collection does not exist."""
        if self._ready is None:
            if self.target.kind == "qdrant":
                import qwen3_embed_qdrant

                name = self.target.collection
                if qwen3_embed_qdrant.collection_record(self.client, name) is not None:
                    self._ready = qwen3_embed_qdrant.ingest_steps(self.client, name)
            elif (col := self._chroma()) is not None:
                import qwen3_embed_chroma

                self._ready = qwen3_embed_chroma.ingest_steps(col)
        return self._ready

    # -- reading and writing ----------------------------------------------------------

    def stored_hashes(self, records: list[Record]) -> dict[str, object]:
        """``{id: content hash}`` of the records already stored (none before the first write)."""
        steps = self._steps()
        if steps is None or not records:
            return {}
        return {i: h for i, (h, _) in steps["lookup"](records).items()}

    def apply(self, table: pa.Table, batch_size: int) -> dict[str, Any]:
        """Write the stage's rows (``ingest``'s rules); return the counts as plain data."""
        steps = self._steps()
        if steps is None:
            raise ConfigurationError(
                f"{self.target.uri}: the collection does not exist; the datasink's "
                "on_write_start creates it (write with Dataset.write_datasink)"
            )
        return apply_rows(table, steps, batch_size)

    def close(self) -> None:
        self._cli.close()


def apply_rows(table: pa.Table, steps: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """``run_ingest`` over the stage's rows with the vectors they carry.

    A row without a vector was found stored unchanged by the stage; the
    store's own lookup skips it again here (or rewrites its labels).
    """
    vectors: dict[str, np.ndarray] = {}
    records: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    column = table.column(EMBEDDING).combine_chunks()
    has = ~column.is_null().to_numpy(zero_copy_only=False)
    flat = column.flatten().to_numpy().reshape(int(has.sum()), column.type.list_size)
    rows = table.select([RECORD, ERROR]).to_pylist()
    k = 0
    for row, embedded in zip(rows, has, strict=True):
        if row[ERROR] is not None:
            info = json.loads(row[RECORD] or "{}")
            bad.append({"position": info.get("position", -1), "reason": row[ERROR],
                        "record_id": info.get("id")})
            continue
        rec = json.loads(row[RECORD])
        if embedded:
            vectors[rec["text"]] = flat[k]  # documents: equal texts have equal vectors
            k += 1
        records.append(rec)

    def embed(texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in vectors]
        if missing:
            raise ConfigurationError(
                f"{len(missing)} record(s) reached the store without a vector: the embedding "
                "stage found them stored unchanged, but the store no longer has them (deleted "
                f"during the run?), e.g. {missing[0][:60]!r}; run the ingestion again"
            )
        return np.stack([vectors[t] for t in texts])

    report = run_ingest(records, embed=embed, batch_size=batch_size, on_error="raise", **steps)
    return {"seen": report.seen + len(bad), "embedded": int(has.sum()),
            "written": report.written, "updated": report.updated, "skipped": report.skipped,
            "duplicates": report.duplicates, "bad": bad}


def add_counts(report: IngestReport, counts: dict[str, Any]) -> None:
    """Add one write task's counts to ``report``."""
    from qwen3_embed_core import BadRecord

    for key in ("seen", "embedded", "written", "updated", "skipped", "duplicates"):
        setattr(report, key, getattr(report, key) + int(counts[key]))
    report.bad.extend(BadRecord(b["position"], b["reason"], b["record_id"]) for b in counts["bad"])


def vectors_facts(schema: Any) -> dict[str, Any] | None:
    """What the embedding stage wrote into the dataset's schema, or None."""
    raw = (getattr(schema, "metadata", None) or {}).get(SCHEMA_KEY)
    return json.loads(raw) if raw else None


def check_facts(
    target: Target, spec: EmbedderSpec, record: dict[str, Any], recorded: dict[str, Any] | None
) -> None:
    """Refuse, on the driver, a collection made with another model (before any write).

    Qdrant records the vectors' facts (``record``); Chroma keeps the function's
    spec, so there two specs' records are compared (``spec_record`` on both sides).
    """
    if not recorded or "model" not in recorded:
        return
    current = spec_record(spec) if target.kind == "chroma" else dict(record)
    if current["dimensions"] is None:  # a file's size is known once loaded (on the actors)
        current["dimensions"] = recorded["dimensions"]
    check_record(recorded, current, f"{target.kind} collection {target.collection!r}")


# -- the writer actor of an embedded store ----------------------------------------------


class _Writer:
    """Holds an embedded store open; every task's lookups and writes go through it."""

    def __init__(self, target: Target) -> None:
        self.store = Store(target)

    def recorded(self) -> dict[str, Any] | None:
        return self.store.recorded()

    def ensure(self, record: dict[str, Any], spec: dict[str, Any]) -> None:
        self.store.ensure(record, EmbedderSpec.from_config(spec))

    def stored_hashes(self, records: list[Record]) -> dict[str, object]:
        return self.store.stored_hashes(records)

    def apply(self, table: pa.Table, batch_size: int) -> dict[str, Any]:
        return self.store.apply(table, batch_size)

    def close(self) -> None:
        self.store.close()


def start_writer(target: Target) -> tuple[Any, bool]:
    """(the writer actor of ``target``'s folder, whether this call started it).

    It runs on this (the driver's) node, where the folder is, takes no CPU
    slot (it waits on disk, and must not starve the embedding actors), and
    is restarted with its tasks retried if its process dies: writes are
    upserts by id, so a retried write is an update.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        return ray.get_actor(target.writer_name), False
    except ValueError:
        pass
    node = ray.get_runtime_context().get_node_id()
    actor: Any = ray.remote(_Writer).options(
        name=target.writer_name, get_if_exists=True, num_cpus=0, max_restarts=3,
        max_task_retries=3,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(target)
    ray.get(actor.__ray_ready__.remote())  # a locked folder fails here, on the driver
    return actor, True


def writer_of(target: Target) -> Any:
    """The running writer actor of an embedded store (started by the driver)."""
    try:
        return ray.get_actor(target.writer_name)
    except ValueError:
        raise ConfigurationError(
            f"{target.uri} is an embedded store: one writer actor holds it, started on the "
            "driver by ingest_dataset() or the datasink's on_write_start; use ingest_dataset(), "
            "or a store server"
        ) from None


def stop_writer(actor: Any) -> None:
    """Close the store (flush, release the folder's lock) and end the actor."""
    try:
        ray.get(actor.close.remote(), timeout=60)
    finally:
        ray.kill(actor)


def to_arrow(block: Any) -> pa.Table:
    """A Ray block or batch (Arrow, pandas, dict of numpy) as an Arrow table."""
    if isinstance(block, pa.Table):
        return block
    if isinstance(block, dict):
        return pa.table({k: pa.array(list(v)) if getattr(v, "ndim", 1) > 1 else v
                         for k, v in block.items()})
    from ray.data.block import BlockAccessor

    table = BlockAccessor.for_block(block).to_arrow()
    assert isinstance(table, pa.Table)
    return table


def records_report(parts: Iterable[dict[str, Any]]) -> IngestReport:
    """An IngestReport summed over write tasks' counts."""
    report = IngestReport()
    for counts in parts:
        add_counts(report, counts)
    return report
