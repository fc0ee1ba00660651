"""Datasinks: write the embedding stage's rows into a store, with ``ingest``'s sync rules.

Write tasks write chunks (new ones embedded by the stage, label changes
rewritten, the rest skipped) and report which chunks each source holds now.
When every task is done, the driver deletes what the sources no longer hold
(``cleanup``) and marks the synced sources, so a crash or a retried task can
leave old extra chunks, never a missing current one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from qwen3_embed_core import BadRecord, ConfigurationError, EmbedderSpec, IngestReport
from qwen3_embed_core.adapters import (
    Cleanup,
    Point,
    apply_points,
    check_cleanup,
    check_profile,
    check_scope,
    cleanup_sources,
    spec_record,
)
from qwen3_embed_core.stores import StoreURI

from ._store import (
    EMBEDDING,
    ERROR,
    POINT,
    start_writer,
    stop_writer,
    store_for,
    target,
    to_arrow,
    vectors_facts,
)

try:
    from ray.data import Datasink
except ImportError:  # pragma: no cover - ray without its data extra
    from ray.data.datasource import Datasink

COUNTS = ("seen", "embedded", "written", "updated", "skipped", "duplicates")


class StoreDatasink(Datasink[dict[str, Any]]):
    """Write ``Qwen3EmbedBatches`` rows into the collection a URI names, as ``ingest`` does.

    A server gets a client per write task; an embedded store (a folder, one
    process at a time) is written through one writer actor on the driver's
    node. ``on_write_start`` (on the driver) creates the collection for the
    vectors, or refuses one made with another model, size or instruction.
    ``report`` (an ``IngestReport``) is set when the write completes.

    Args:
        uri: the store (``qdrant+http://host:6333/docs``, ``chroma:./db/docs``...).
        spec: the model that made the vectors, if the dataset's schema no longer says.
        batch_size: points looked up and written per request.
        cleanup: None, ``"incremental"`` or ``"full"`` (as ``ingest``'s).
        scopes: with ``"full"``: the scopes whose absent sources are deleted.
        dry_run: write and delete nothing; ``report`` says what would be done.
        protect: sources seen but not read (unreadable files): never pruned.
    """

    def __init__(self, uri: str | StoreURI, *, spec: EmbedderSpec | Mapping[str, Any] | None = None,
                 batch_size: int = 256, cleanup: Cleanup | None = None,
                 scopes: Sequence[str] = (), dry_run: bool = False,
                 protect: Sequence[str] = ()) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.uri = target(uri)
        self.spec = (None if spec is None else spec if isinstance(spec, EmbedderSpec)
                     else EmbedderSpec.from_config(spec))
        self.batch_size, self.cleanup = batch_size, check_cleanup(cleanup)
        self.scopes, self.dry_run = [check_scope(s) for s in scopes], dry_run
        self.protect = list(protect)
        self.report: IngestReport | None = None
        self._owned_writer: Any = None

    # -- on the driver --------------------------------------------------------------------

    def on_write_start(self, schema: Any = None) -> None:
        """Create the collection for the dataset's vectors, or refuse one made differently."""
        profile = self._profile(schema)
        if self.uri.path is not None:
            writer, started = start_writer(self.uri, dry_run=self.dry_run)
            if started:
                self._owned_writer = writer
        store = store_for(self.uri)
        try:
            stored = store.profile()
            if self.dry_run:
                if stored:
                    check_profile(stored, profile, str(self.uri))
            else:
                store.ensure(profile)
        finally:
            store.close()

    def _profile(self, schema: Any) -> dict[str, Any]:
        """Which model made the vectors: the stage's note in the schema, else ``spec=``."""
        facts = vectors_facts(schema)
        if facts is not None and facts.get("as_queries"):
            raise ConfigurationError(
                "these vectors are queries (as_queries=True); a store holds documents")
        if facts is None:
            if self.spec is None:
                raise ConfigurationError(
                    "the dataset does not say which model made its vectors (Qwen3EmbedBatches "
                    "notes it in the schema; a later step dropped that): pass spec= to the "
                    "datasink")
            record = spec_record(self.spec)
            if record["dimensions"] is None:
                record["dimensions"] = getattr(schema.field(EMBEDDING).type, "list_size", None)
            return {**record, "embedder": self.spec.to_config()}
        if self.spec is not None:  # the sink's model must be the one that made the vectors
            given = spec_record(self.spec)
            if given["dimensions"] is None:
                given["dimensions"] = facts["record"]["dimensions"]
            check_profile(facts["record"], given, "the dataset's vectors")
        return {**facts["record"], "embedder": facts["embedder"]}

    def on_write_complete(self, write_result: Any) -> None:
        try:
            self.report = self._finish(write_result.write_returns)
        finally:
            self._stop()

    def on_write_failed(self, error: Exception) -> None:
        self._stop()

    def _finish(self, parts: Iterable[dict[str, Any]]) -> IngestReport:
        """Sum the tasks' counts; delete what the sources no longer hold; mark them synced."""
        report = IngestReport(dry_run=self.dry_run)
        kept: dict[str, set[str]] = {}
        seen: set[str] = set(self.protect)
        heads: dict[str, Point] = {}
        for counts in parts:
            for key in COUNTS:
                setattr(report, key, getattr(report, key) + int(counts[key]))
            report.bad.extend(BadRecord(-1, b["reason"], b["id"]) for b in counts["bad"])
            for source, ids in counts["kept"].items():
                kept.setdefault(source, set()).update(ids)
            seen.update(counts["seen_sources"])
            report.unchanged_sources += len(counts["unchanged"])
            heads.update((p["source_id"], _point(p)) for p in counts["heads"])
        report.sources = len(seen)
        store = store_for(self.uri)
        try:
            cleanup_sources(store, kept, report, cleanup=self.cleanup, scopes=self.scopes,
                            seen=seen, dry_run=self.dry_run)
            if self.cleanup is not None and not self.dry_run and heads:
                store.write([h.with_synced(h.source_hash) for h in heads.values()], None)
            if not self.dry_run and (report.written or report.deleted):
                store.finish()
        finally:
            store.close()
        return report

    def _stop(self) -> None:
        if self._owned_writer is not None:
            stop_writer(self._owned_writer)
            self._owned_writer = None

    # -- in each write task ---------------------------------------------------------------

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        """Write this task's blocks (a per-task client, or the embedded store's writer)."""
        report = IngestReport()
        kept: dict[str, list[str]] = {}
        out: dict[str, Any] = {"bad": [], "unchanged": [], "heads": [], "seen_sources": set()}
        store = store_for(self.uri)
        try:
            for block in blocks:
                self._write_block(store, to_arrow(block), report, kept, out)
        finally:
            store.close()
        return {**{k: getattr(report, k) for k in COUNTS}, **out, "kept": kept,
                "seen_sources": sorted(out["seen_sources"])}

    def _write_block(self, store: Any, table: Any, report: IngestReport,
                     kept: dict[str, list[str]], out: dict[str, Any]) -> None:
        column = table.column(EMBEDDING).combine_chunks()
        has = ~column.is_null().to_numpy(zero_copy_only=False)
        flat = column.flatten().to_numpy().reshape(int(has.sum()), column.type.list_size)
        points: list[Point] = []
        vectors: dict[str, np.ndarray] = {}
        k = 0
        for row, embedded in zip(table.select([POINT, ERROR]).to_pylist(), has, strict=True):
            info = json.loads(row[POINT])
            report.seen += 1
            if row[ERROR] is not None:
                out["bad"].append({"reason": row[ERROR], "id": info.get("id")})
                continue
            if "unchanged" in info or "empty" in info:
                name = info.get("unchanged") or info["empty"]
                out["seen_sources"].add(name)
                if "unchanged" in info:
                    out["unchanged"].append(name)
                else:
                    kept.setdefault(name, [])
                report.seen -= 1
                continue
            p = _point(info)
            if embedded:
                vectors[p.id] = flat[k]
                k += 1
                report.embedded += 1
            points.append(p)
            kept.setdefault(p.source, []).append(p.id)
            out["seen_sources"].add(p.source)
            if info.get("head"):
                out["heads"].append(info)
        apply_points(store, points, vectors, report, self.batch_size, dry_run=self.dry_run)

    def get_name(self) -> str:
        return f"{type(self).__name__}({self.uri})"


def _point(info: dict[str, Any]) -> Point:
    return Point.from_payload(info["id"], info)


class QdrantDatasink(StoreDatasink):
    """A :class:`StoreDatasink` for Qdrant: a server URL or an embedded store's folder.

    Args:
        url_or_path: ``http(s)://host:6333`` (a server) or a folder (embedded).
        collection: the collection name.
        options: :class:`StoreDatasink`'s (``spec``, ``batch_size``, ``cleanup``...).
    """

    def __init__(self, url_or_path: str, collection: str, **options: Any) -> None:
        sep = "+" if url_or_path.startswith(("http://", "https://")) else ":"
        super().__init__(f"qdrant{sep}{url_or_path.rstrip('/')}/{collection}", **options)


class ChromaDatasink(StoreDatasink):
    """A :class:`StoreDatasink` for Chroma: ``"host"`` (port 8000), ``http(s)://host:port``
    or a folder (a persistent store, written through one writer actor).

    Args:
        host_or_url: where the store is.
        collection: the collection name.
        options: :class:`StoreDatasink`'s (``spec``, ``batch_size``, ``cleanup``...).
    """

    def __init__(self, host_or_url: str, collection: str, **options: Any) -> None:
        where = host_or_url.rstrip("/")
        if where.startswith(("http://", "https://")):
            uri = f"chroma+{where}/{collection}"
        elif "/" in where or where.startswith((".", "~")):
            uri = f"chroma:{where}/{collection}"
        else:
            uri = f"chroma+http://{where if ':' in where else where + ':8000'}/{collection}"
        super().__init__(uri, **options)
