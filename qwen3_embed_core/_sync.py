"""The sync engine: keep a collection true to its sources, on any store of the protocol.

A *source* (a file, or the records a caller groups under one ``source``) owns
its chunks. Each run, per group of sources:

1. the heads (first chunk) of the sources are looked up in one call: a source
   whose head says it was synced with the same source hash is unchanged and
   is not chunked, embedded or written;
2. for the others, the stored points of those sources are listed in one call,
   and any ``source_synced`` marker among them is cleared first;
3. their chunks are compared with what is stored, by id and content hash:
   new or edited text is embedded and written, label-only changes rewritten,
   the rest skipped;
4. with ``cleanup``, the stored chunks of those sources that are not in the
   new chunk set are deleted, and only then is each head marked synced.

A crash at any point leaves old extra chunks and unmarked heads, never a
missing current chunk; the next run finishes the job. ``cleanup="full"``
then deletes every source of the run's scopes that the run did not see.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ._errors import ConfigurationError, InvalidInputError, InvalidInputTypeError
from ._records import (
    BadRecord,
    BatchCallback,
    IngestReport,
    OnError,
    Progress,
    Record,
    prepare_record,
)
from .stores import DEFAULT_SCOPE, Cleanup, Collection, Point

CLEANUPS = (None, "incremental", "full")


@dataclass
class Source:
    """A source to sync: its id, content hash, scope and (lazily) its chunk records.

    ``head``: the point id of its first chunk when known before chunking
    (None: always chunked). ``chunks()``: its validated chunk records, in order,
    called only when the source changed; it may append to the run's report
    (bad records). ``alone``: a record that is its own source (its only point
    is its head, so nothing is listed). ``failed``: it could not be read: it
    counts as seen (never pruned) but is left as stored. ``size``: its number
    of records when known without chunking (counted as skipped when unchanged).
    """

    id: str
    hash: str
    chunks: Callable[[], Iterable[Record]]
    scope: str = DEFAULT_SCOPE
    head: str | None = None
    alone: bool = False
    failed: bool = False
    size: int | None = None


def source_hash(*parts: object) -> str:
    """SHA-256 (hex) of a source's content and how it is chunked, as canonical JSON."""
    data = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def check_cleanup(cleanup: object) -> Cleanup | None:
    """``cleanup`` checked: None, ``"incremental"`` or ``"full"``."""
    if cleanup not in CLEANUPS:
        raise ConfigurationError(
            f"cleanup must be None (add or update only), 'incremental' (also delete a changed "
            f"source's old chunks) or 'full' (also delete sources absent from the input), not "
            f"{cleanup!r}")
    return cleanup  # type: ignore[return-value]


def check_scope(scope: object) -> str:
    """A scope (namespace) checked: a str; None is the default scope."""
    if scope is None:
        return DEFAULT_SCOPE
    if not isinstance(scope, str):
        raise ConfigurationError(f"scope must be a str naming a namespace, not {scope!r}")
    return scope


def record_sources(
    records: Iterable[object], report: IngestReport, *, scope: str = DEFAULT_SCOPE,
    on_error: OnError = "skip",
) -> Iterator[Source]:
    """The sources of a record stream: consecutive records with the same ``source``
    form one source; a record without one is its own source (keyed by its point id).

    Records are validated here (bad ones go to ``report.bad`` or are raised);
    a source whose records are not consecutive is refused (its later records are bad).
    """
    if on_error not in ("skip", "raise"):
        raise ConfigurationError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    if isinstance(records, (str, bytes, dict)) or not isinstance(records, Iterable):
        raise InvalidInputTypeError(
            f"records must be an iterable of records (str or {{'id'?, 'text', 'metadata'?, "
            f"'source'?}}), not {type(records).__name__}; wrap a single record in a list")
    done: set[str] = set()
    group: list[Record] = []

    def close() -> Source:
        recs = list(group)
        group.clear()
        name = recs[0].source
        assert name is not None
        done.add(name)
        digest = source_hash("records", [(r.id, r.text, r.metadata) for r in recs])
        return Source(name, digest, _fixed(recs), scope, head=recs[0].id, size=len(recs))

    for position, raw in enumerate(records):
        report.seen += 1
        try:
            rec = prepare_record(position, raw)
            if rec.source is not None and rec.source in done and (
                    not group or group[0].source != rec.source):
                raise InvalidInputError(
                    f"record {position}: the records of source {rec.source!r} are not "
                    "consecutive; give each source's records together", position)
        except (InvalidInputError, InvalidInputTypeError) as exc:
            if on_error == "raise":
                raise
            rid = raw.get("id") if isinstance(raw, dict) else None
            report.bad.append(BadRecord(position, str(exc), rid))
            continue
        if group and group[0].source != rec.source:
            yield close()
        if rec.source is None:
            yield Source(rec.id, source_hash("record", rec.text, rec.metadata, rec.record_id),
                         _fixed([rec]), scope, head=rec.id, alone=True, size=1)
        else:
            group.append(rec)
    if group:
        yield close()


def _fixed(records: list[Record]) -> Callable[[], Iterable[Record]]:
    return lambda: records


def _point(rec: Record, src: Source) -> Point:
    # A record that is its own source can hold no stale chunk: it is synced once written.
    return Point(id=rec.id, text=rec.text, metadata=rec.metadata, record_id=rec.record_id,
                 hash=rec.hash, source=src.id, source_hash=src.hash, scope=src.scope,
                 synced=src.hash if src.alone else None)


def _groups(items: Iterable[Source], size: int) -> Iterator[list[Source]]:
    group: list[Source] = []
    for item in items:
        group.append(item)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def sync(
    collection: Collection | None,
    sources: Iterable[Source],
    *,
    embed: Callable[[list[str]], np.ndarray],
    cleanup: Cleanup | None = None,
    scopes: Sequence[str] = (),
    dry_run: bool = False,
    batch_size: int = 64,
    report: IngestReport | None = None,
    progress: bool = False,
    on_batch: BatchCallback | None = None,
    total: int | None = None,
) -> IngestReport:
    """Write ``sources`` into ``collection`` and, with ``cleanup``, delete what they no longer hold.

    Args:
        collection: the collection (its profile already ensured); None for a
            dry run on a collection that does not exist yet (everything is new).
        sources: the run's sources, read lazily (see :func:`record_sources`).
        embed: document vectors for texts.
        cleanup: None (add or update), ``"incremental"`` (a changed source ends
            with exactly its new chunks) or ``"full"`` (also delete the sources of
            ``scopes`` absent from this run).
        scopes: with ``"full"``: the scopes this run covers (never touches another).
        dry_run: write and delete nothing (and embed nothing); count what would be.
        batch_size: chunks embedded and written at a time (and sources per lookup).
        report: the report to add to (one is made when None).
        progress: a tqdm bar over chunks.
        on_batch: called with the running report after each written batch.
        total: records expected, for the progress bar (None: unknown).
    """
    cleanup = check_cleanup(cleanup)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be a positive integer, not {batch_size!r}")
    report = report if report is not None else IngestReport()
    report.dry_run = dry_run
    run = _Run(collection, embed, cleanup, dry_run, batch_size, report, on_batch)
    bar = Progress(progress, total)
    run.bar = bar
    seen: set[str] = set()
    try:
        for group in _groups(sources, batch_size):
            run.group(group, seen)
        if cleanup == "full" and collection is not None:
            run.prune(scopes, seen)
        if run.changed_store and not dry_run and collection is not None:
            bar.note(getattr(collection, "finishing", None))  # e.g. Qdrant Edge's optimize()
            collection.finish()
    finally:
        bar.close(report)
    return report


class _Run:
    """One sync run's state (see :func:`sync`)."""

    def __init__(self, collection: Collection | None, embed: Callable[[list[str]], np.ndarray],
                 cleanup: Cleanup | None, dry_run: bool, batch_size: int,
                 report: IngestReport, on_batch: BatchCallback | None) -> None:
        self.col, self.embed, self.cleanup, self.dry = collection, embed, cleanup, dry_run
        self.batch_size, self.report, self.on_batch = batch_size, report, on_batch
        self.changed_store = False
        self.bar: Progress | None = None

    def _write(self, points: list[Point], vectors: np.ndarray | None) -> None:
        if points and not self.dry:
            assert self.col is not None
            self.col.write(points, vectors)
            self.changed_store = True

    def _delete(self, ids: list[str]) -> None:
        if ids and not self.dry:
            assert self.col is not None
            self.col.delete(ids)
            self.changed_store = True

    def group(self, group: list[Source], seen: set[str]) -> None:
        report, col = self.report, self.col
        report.sources += len(group)
        seen.update(s.id for s in group)
        live = [s for s in group if not s.failed]
        heads = col.lookup([s.head for s in live if s.head]) if col is not None and live else {}
        changed = []
        for s in live:
            head = heads.get(s.head) if s.head else None
            if head is not None and head.synced == s.hash and head.source == s.id:
                report.unchanged_sources += 1
                report.skipped += s.size or 0  # a record stream's, counted when read
                continue
            changed.append(s)
        if not changed:
            self._progress()
            return
        # What the changed sources hold now, in one call; their markers are cleared first.
        stored: dict[str, dict[str, Point]] = {}
        listed = [s.id for s in changed if not s.alone]
        if col is not None and listed:
            stored = col.source_points(listed)
        marked = [p.with_synced(None) for pts in stored.values() for p in pts.values()
                  if p.synced is not None]
        self._write(marked, None)
        known = {i: p.with_synced(None) for pts in stored.values() for i, p in pts.items()}
        for s in changed:
            if s.alone and s.head in heads:
                known[s.head] = heads[s.head]  # type: ignore[index]

        new_ids: dict[str, list[str]] = {}
        firsts: dict[str, Point] = {}
        batch: dict[str, Point] = {}
        for s in changed:
            ids = new_ids.setdefault(s.id, [])
            for rec in s.chunks():
                point = _point(rec, s)
                if s.id not in firsts:
                    firsts[s.id] = point
                if point.id in batch:
                    report.duplicates += 1
                    del batch[point.id]  # re-insert: the last occurrence wins
                batch[point.id] = point
                ids.append(point.id)
                if s.size is None:
                    report.seen += 1
                if len(batch) >= self.batch_size:
                    self._flush(list(batch.values()), known)
                    batch = {}
        if batch:
            self._flush(list(batch.values()), known)

        if self.cleanup is not None:
            keep = {i for ids in new_ids.values() for i in ids}
            stale = [i for sid in new_ids for i in stored.get(sid, {}) if i not in keep]
            self._delete(stale)
            report.deleted += len(stale)
            self._write([firsts[s.id].with_synced(s.hash) for s in changed
                         if s.id in firsts and not s.alone], None)
        self._progress()

    def _flush(self, points: list[Point], known: dict[str, Point]) -> None:
        """Write one batch of chunks: embed new or edited text, relabel, skip the rest."""
        report = self.report
        unknown = [p.id for p in points if p.id not in known]
        stored = dict(known)
        if unknown and self.col is not None:
            stored.update(self.col.lookup(unknown))
        todo, relabel = [], []
        for p in points:
            prev = stored.get(p.id)
            if prev is None or prev.hash != p.hash:
                todo.append(p)
            elif prev.labels() != p.labels():
                relabel.append(p)
            else:
                report.skipped += 1
        if todo:
            report.embedded += len(todo)
            vectors = None if self.dry else self.embed([p.text for p in todo])
            if vectors is not None:
                self._write(todo, np.asarray(vectors))
        self._write(relabel, None)
        report.written += len(todo) + len(relabel)
        report.updated += len(relabel) + sum(p.id in stored for p in todo)
        self._progress()
        if self.on_batch is not None:
            self.on_batch(report)

    def _progress(self) -> None:
        if self.bar is not None:
            self.bar.update(self.report)

    def prune(self, scopes: Sequence[str], seen: set[str]) -> None:
        """``cleanup="full"``: delete the sources of ``scopes`` that this run did not see."""
        assert self.col is not None
        for scope in dict.fromkeys(scopes):
            absent = sorted(self.col.sources(scope) - seen)
            for start in range(0, len(absent), 256):
                part = absent[start : start + 256]
                found = self.col.source_points(part)
                ids = [i for pts in found.values() for i, p in pts.items() if p.scope == scope]
                self._delete(ids)
                self.report.deleted += len(ids)
                self.report.deleted_sources += len(found)


def apply_points(
    collection: Collection, points: Sequence[Point], vectors: dict[str, np.ndarray],
    report: IngestReport, batch_size: int = 256, *, dry_run: bool = False,
) -> None:
    """Write chunks whose vectors were made elsewhere (Ray's stage), as :func:`sync` does.

    ``vectors``: by point id, for the chunks the stage embedded; a chunk
    without one was found stored unchanged by the stage and is checked again.
    ``dry_run``: write nothing; a chunk that would need a vector counts as embedded.
    """
    run = _Run(collection, _no_embedding, None, dry_run, batch_size, report, None)
    exists = collection.profile() is not None
    for start in range(0, len(points), batch_size):
        part = list(points[start : start + batch_size])
        stored = collection.lookup([p.id for p in part]) if exists else {}
        todo, relabel = [], []
        for p in part:
            prev = stored.get(p.id)
            if prev is None or prev.hash != p.hash:
                if dry_run:
                    report.embedded += 1
                elif p.id not in vectors:
                    raise ConfigurationError(
                        f"a chunk reached the store without a vector: the embedding stage "
                        f"found it stored unchanged, but the store no longer has it (deleted "
                        f"during the run?), e.g. {p.text[:60]!r}; run the ingestion again")
                todo.append(p)
            elif prev.labels() != p.labels():
                relabel.append(p)
            else:
                report.skipped += 1
        if todo and not dry_run:
            run._write(todo, np.stack([vectors[p.id] for p in todo]))
        run._write(relabel, None)
        report.written += len(todo) + len(relabel)
        report.updated += len(relabel) + sum(p.id in stored for p in todo)


def cleanup_sources(
    collection: Collection, kept: dict[str, set[str]], report: IngestReport, *,
    cleanup: Cleanup | None, scopes: Sequence[str] = (), seen: Iterable[str] = (),
    dry_run: bool = False,
) -> None:
    """Delete what a run's sources no longer hold, after all their chunks were written.

    ``kept``: ``{source id: ids of its chunks in this run}`` (Ray's driver
    gathers it from the write tasks). Incremental: each source's other chunks
    are deleted; full: also every source of ``scopes`` absent from ``kept``
    and ``seen`` (the sources found unchanged).
    """
    run = _Run(collection, _no_embedding, cleanup, dry_run, 256, report, None)
    if cleanup is None or collection.profile() is None:
        return
    names = sorted(kept)
    for start in range(0, len(names), 256):
        part = names[start : start + 256]
        stored = collection.source_points(part)
        stale = [i for sid in part for i in stored.get(sid, {}) if i not in kept[sid]]
        run._delete(stale)
        report.deleted += len(stale)
    if cleanup == "full":
        run.prune(scopes, set(kept) | set(seen))


def _no_embedding(texts: list[str]) -> np.ndarray:
    raise AssertionError("these writes carry their vectors")  # pragma: no cover
