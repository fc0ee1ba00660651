"""Records for vector stores: validation, stable ids, content hashes, batches, reports.

Store adapters (Qdrant, Chroma) share this so that a record gets the same
id, hash and error everywhere:

* a record is a ``str`` or a mapping ``{"id"?, "text", "metadata"?, "source"?}``
  (other keys are kept as metadata); ``source`` names the source that owns
  the record (a file...), see :mod:`qwen3_embed_core.stores`;
* its id is ``uuid5`` of the record's own id or, absent one, of its text, so
  writing the same records twice leaves each one once;
* its content hash (SHA-256 of the text) tells an adapter whether the stored
  vector is still right, so a re-run embeds only what is new or edited;
* a bad record (no text, text not a string, empty text...) is reported with
  its position in the stream, then skipped or raised, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import (
    ConfigurationError,
    InvalidInputError,
    InvalidInputTypeError,
    missing_dependency,
)
from ._inputs import check_text

# Fixed namespace for point ids: changing it would re-key every stored record.
# FROZEN: it names the project's first distribution name on purpose; the
# rename to qwen3-embedding-kit must not (and does not) change it.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/qwen3-embed/records")

OnError = Literal["skip", "raise"]


def point_id(record_id: object = None, text: str | None = None) -> str:
    """The store id for a record: uuid5 of its own id, else of its text.

    ``record_id`` is compared as a string (``1`` and ``"1"`` are the same
    record); the two namespaces (``id:``/``text:``) never collide.
    """
    if record_id is not None:
        return str(uuid.uuid5(ID_NAMESPACE, f"id:{record_id}"))
    if text is None:
        raise ConfigurationError("a point id needs the record's id or its text")
    return str(uuid.uuid5(ID_NAMESPACE, f"text:{text}"))


def content_hash(text: str) -> str:
    """SHA-256 (hex) of the text: equal hashes mean the stored vector still holds."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Record:
    """A validated record, ready to embed and store.

    ``position``: its index in the input stream (0-based). ``id``: the store
    id (a UUID string). ``record_id``: the caller's own id, or None.
    ``metadata``: JSON-compatible, as it will be stored.
    """

    position: int
    id: str
    record_id: str | int | None
    text: str
    metadata: dict[str, Any]
    hash: str
    source: str | None = None


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be used: ``position`` in the stream and why.

    ``reason`` is the full message (it names the position); ``record_id`` is
    the record's own id when it had one.
    """

    position: int
    reason: str
    record_id: object = None

    def __str__(self) -> str:
        return self.reason


@dataclass
class IngestReport:
    """What an ingestion did.

    ``seen``: records read from the stream. ``embedded``: texts sent to the
    model. ``written``: points created or changed (``updated`` of them
    replaced an older version: edited text or metadata). ``skipped``:
    already stored with the same content (not embedded again).
    ``duplicates``: records repeating an id later in the same batch (the
    last one wins). ``bad``: records skipped as unusable, with positions.
    ``sources``: sources seen (files, records' ``source``), of which
    ``unchanged_sources`` were recognised by their hash and not read again.
    ``deleted``: stale points deleted (chunks no longer in their source, and
    with ``cleanup="full"`` every chunk of ``deleted_sources`` absent from
    the input). ``dry_run``: nothing was written; the counts say what would be.
    """

    seen: int = 0
    embedded: int = 0
    written: int = 0
    updated: int = 0
    skipped: int = 0
    duplicates: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    sources: int = 0
    unchanged_sources: int = 0
    deleted: int = 0
    deleted_sources: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        """One line for people: the counts (what would be done, for a dry run)."""
        text = (
            f"{self.seen} records: {self.embedded} embedded, {self.written} written "
            f"({self.updated} updated), {self.skipped} skipped as already present"
        )
        if self.duplicates:
            text += f", {self.duplicates} duplicate ids"
        if self.bad:
            text += f", {len(self.bad)} bad records skipped"
        if self.sources:
            text += (f"; {self.sources} sources ({self.unchanged_sources} unchanged, not read "
                     "again)")
        text += f"; {self.deleted} deleted"
        if self.deleted_sources:
            text += f" ({self.deleted_sources} sources removed)"
        return f"dry run, nothing written or deleted: {text}" if self.dry_run else text


@dataclass(frozen=True)
class Hit:
    """One search result, best first by ``score`` (higher is closer).

    ``score`` is the cosine similarity of the vector search, or, when the
    search reranked its candidates, the reranker's relevance score P(yes) in
    [0, 1]; ``vector_score`` then keeps the cosine (None when not reranked).
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    record_id: str | int | None = None
    vector_score: float | None = None


def _jsonable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    # Stores keep JSON: round-tripping now makes "is it unchanged?" comparable later.
    out: dict[str, Any] = json.loads(
        json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)
    )
    return out


def prepare_record(position: int, record: object, where: str | None = None) -> Record:
    """Validate one record; raise InvalidInputError/InvalidInputTypeError naming its position.

    ``where`` names the record in messages (default ``"record {position}"``).
    """
    where = where or f"record {position}"
    record_id: Any = None
    source: str | None = None
    metadata: Mapping[str, Any] = {}
    if isinstance(record, str):
        text: object = record
    elif isinstance(record, Mapping):
        record_id = record.get("id")
        if record_id is not None and (
            isinstance(record_id, bool) or not isinstance(record_id, (str, int))
        ):
            raise InvalidInputTypeError(
                f"{where}: id must be a str or an int, not {type(record_id).__name__}", position
            )
        if "text" not in record:
            raise InvalidInputError(
                f"{where} has no 'text' field (keys: {', '.join(map(str, record)) or 'none'})",
                position,
            )
        text = record["text"]
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise InvalidInputTypeError(
                f"{where}: metadata must be a mapping, not {type(metadata).__name__}", position
            )
        source = record.get("source")
        if source is not None and (not isinstance(source, str) or not source):
            raise InvalidInputTypeError(
                f"{where}: source must be a non-empty str naming the record's source, "
                f"not {source!r}", position)
        extra = {k: v for k, v in record.items()
                 if k not in ("id", "text", "metadata", "source")}
        if extra:  # JSONL rows often carry "title", "url"...: keep them as metadata
            metadata = {**extra, **metadata}
    else:
        raise InvalidInputTypeError(
            f"{where} is {type(record).__name__}; expected a str or a mapping "
            "{'id'?, 'text', 'metadata'?}",
            position,
        )
    try:
        clean = check_text(text)
    except (InvalidInputError, InvalidInputTypeError) as exc:
        raise type(exc)(f"{where}: {exc}", position) from None
    empty = [k for k in metadata if not isinstance(k, str) or not k.strip()]
    if empty:  # Chroma refuses them, and no filter can name them
        raise InvalidInputError(
            f"{where}: metadata keys must be non-empty strings, not {empty[0]!r}", position)
    try:
        stored = _jsonable(metadata)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{where}: metadata is not JSON-serialisable ({exc})", position
        ) from None
    return Record(
        position=position,
        id=point_id(record_id, clean),
        record_id=record_id,
        text=clean,
        metadata=stored,
        hash=content_hash(clean),
        source=source,
    )


class Progress:
    """A tqdm bar over records (``enabled``), or nothing; tqdm is imported only when asked."""

    def __init__(self, enabled: bool, total: int | None = None, desc: str = "ingest") -> None:
        self._bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError as exc:
                raise missing_dependency("tqdm", "cli", exc) from exc
            self._bar = tqdm(total=total, desc=desc, unit="rec", dynamic_ncols=True)

    def update(self, report: IngestReport) -> None:
        """Advance to ``report.seen`` records (bad and duplicate ones included)."""
        if self._bar is not None:
            self._bar.update(report.seen - self._bar.n)
            self._bar.set_postfix(
                embedded=report.embedded, skipped=report.skipped, bad=len(report.bad),
                refresh=False,
            )

    def note(self, text: str | None) -> None:
        """Show what runs after the last record (``text``, e.g. an index build) on the bar."""
        if self._bar is not None and text:
            self._bar.set_description_str(f"{self._bar.desc}: {text}", refresh=True)

    def close(self, report: IngestReport) -> None:
        """Count the records read after the last batch (bad ones), then close the bar."""
        if self._bar is not None:
            self.update(report)
            self._bar.close()


def total_of(records: Iterable[object]) -> int | None:
    """len(records) when it has one without consuming it (a list), else None."""
    try:
        return len(records)  # type: ignore[arg-type]
    except TypeError:
        return None


BatchCallback = Callable[[IngestReport], None]
