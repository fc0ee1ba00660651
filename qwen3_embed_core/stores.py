"""The store layer: vector collections named by URI, one protocol every store implements.

Everything that writes or reads a vector store (``qwen3_embed_qdrant``,
``qwen3_embed_chroma``, ``qwen3_embed_ray``, the ``qwen3-embed`` command line)
goes through this module: the URI forms, the :class:`Collection` protocol,
the point fields, the registry that opens a collection by URI, and (from
:mod:`qwen3_embed_core._sync`) the sync engine and the chunking rule. A new
store is one class in its integration package plus one :func:`register_store`
line here; nothing else changes.

URIs
====

``KIND:PATH/COLLECTION``
    an embedded store in folder ``PATH`` (``qdrant:./db/docs``,
    ``chroma:/data/chroma/docs``, ``qdrant-edge:./edge/docs``). ``PATH`` must
    name a folder other than the working directory itself, and
    ``COLLECTION`` must not be empty (``qdrant:./db1/`` is refused).
``KIND+http(s)://HOST[:PORT]/COLLECTION``
    a server (``qdrant+http://localhost:6333/docs``,
    ``chroma+https://chroma.example/docs``); one path segment, the collection.

:func:`parse_uri` turns text into a :class:`StoreURI` (or raises
:class:`StoreURIError`); :func:`open_collection` imports the store's
integration lazily (a missing package is a ``MissingDependencyError`` naming
the extra) and returns its :class:`Collection`.

Points
======

One point per chunk: a vector and these fields (:class:`Point`)::

    text           the chunk's text
    metadata       the record's metadata (JSON object)
    record_id      the caller's own id of the record, or None
    content_hash   SHA-256 of the text: equal hashes mean the stored vector holds
    source_id      the source the chunk belongs to (a file, a record...)
    source_hash    the source's content hash (of the whole source, before chunking)
    source_scope   the scope (namespace) the source was ingested in
    source_synced  on a source's *head* point only (the first chunk of the
                   source, in input order): the source hash once the sync of
                   that source finished (its new chunks written and its stale
                   ones deleted); None on every other point and while a sync
                   of the source is in progress

Qdrant-like stores keep exactly :meth:`Point.payload` as the payload
(``metadata`` nested; field names above), so filters such as
``metadata.lang`` work and every Qdrant flavour reads the others' points.
Other stores may keep another layout but must give the same :class:`Point`
back. A point written by an earlier version (no source fields) reads back
with ``source=""``, ``source_hash=""``, ``scope=""``, ``synced=None``.

The collection protocol
=======================

A store class (``QdrantCollection``, ``ChromaCollection``, ``EdgeCollection``)
provides these; every error a user can see is a ``Qwen3EmbedError``
(transport failures: ``ServerUnavailableError``/``ServerError``, a collection
that does not fit: ``ConfigurationError``).

``cls.open(uri: StoreURI, *, create: bool) -> Collection`` (classmethod)
    Connect to the store. ``create=False`` (search): an embedded store whose
    folder does not exist raises ``ConfigurationError("no <kind> store at
    PATH ...")``; nothing is created on disk. ``create=True`` (ingestion) may
    create the folder. Never creates the *collection* (that is ``ensure``).
``uri: StoreURI``
    The URI it was opened with (for messages).
``profile() -> dict | None``
    The collection's profile (what its vectors are): ``None`` when there is
    no such collection, ``{}`` when it exists without one (not made by this
    library). A profile is :func:`vector_record`'s four facts (``model``,
    ``dimensions``, ``document_prefix``, ``query_prefix``) plus, when known,
    ``"embedder"``: the ``EmbedderSpec.to_config()`` that rebuilds the
    embedder (never a secret). Read-only.
``ensure(profile: dict) -> dict``
    Create-or-validate. Absent: create it for ``profile["dimensions"]``-wide
    vectors compared by cosine, storing ``profile``; return it. Present: its
    vectors must have that size and cosine distance, else
    ``ConfigurationError`` saying which; the stored profile's four facts must
    equal ``profile``'s (use :func:`check_profile`). A stored profile without
    ``"embedder"`` gains ``profile``'s (collections of earlier versions are
    upgraded, never refused for that). A collection without a profile is
    adopted if empty, refused (``ConfigurationError``) if it holds points.
    Returns the stored profile (after any upgrade).
``lookup(ids: Sequence[str]) -> dict[str, Point]``
    The stored points among ``ids`` (absent ids are simply missing from the
    result), in one round trip (or a few: never one per id). ``Point.text``
    may be ``""`` (not needed); every other field must be as stored.
``write(points: Sequence[Point], vectors: numpy.ndarray | None) -> None``
    Upsert by id. With ``vectors`` (float32, shape ``(len(points), dims)``):
    whole points, text included. With ``None``: the points exist with the
    same text and vector; replace every field but ``text`` (``metadata``,
    ``record_id``, ``content_hash`` and the source fields) and keep the text
    and vector as stored (``Point.text`` may then be ``""``: ignore it).
    Returns when the write is durable as far as the store offers (Qdrant:
    ``wait=True``).
``delete(ids: Sequence[str]) -> None``
    Delete these points (ids not stored are ignored), batched, not one call
    per id.
``source_points(sources: Sequence[str]) -> dict[str, dict[str, Point]]``
    For a set of source ids, in one batched call (or a few): ``{source id:
    {point id: Point}}`` of every stored point of those sources (a source
    with no points is absent). ``text`` may be ``""``.
``sources(scope: str) -> set[str]``
    The ids of every source with at least one point in ``scope``.
``points(scope: str | None = None) -> Iterator[Point]``
    Every stored point (of ``scope``, or all), text included, each once;
    paged, not all in memory at once. Tests count collections with it.
``count() -> int``
    The exact number of points.
``search(vector: numpy.ndarray, limit: int, where: object = None) -> list[Hit]``
    The ``limit`` nearest points to a query vector, best first; ``Hit.score``
    is the cosine similarity; ``Hit.metadata`` the record's metadata (none of
    the fields above mixed in); ``where``: a store-native filter or None.
``finish() -> None``
    Called once at the end of every ingestion that wrote or deleted
    something, after its last write and delete (an index build, a flush...).
    May do nothing. A class whose ``finish`` takes long says what it does in a
    ``finishing`` class attribute (str), which the progress bar shows meanwhile.
``close() -> None``
    Release the store (connections, an embedded store's file lock). Idempotent.

Sync (``qwen3_embed_core.adapters.sync``, the engine every surface runs on
these methods): a source's new chunks are
written first, then its stale ones deleted, then its head's
``source_synced`` set; a later run skips a source whose head says it is
synced with the same hash, without chunking or embedding it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import numpy as np

from ._errors import ConfigurationError, missing_dependency
from ._records import Hit
from ._spec import check_record, vector_record
from ._version import pip_install

__all__ = [
    "DEFAULT_SCOPE",
    "FIELDS",
    "HASH",
    "METADATA",
    "PROFILE_KEY",
    "RECORD_ID",
    "SCOPE",
    "SOURCE",
    "SOURCE_HASH",
    "SYNCED",
    "TEXT",
    "URI_HELP",
    "Cleanup",
    "Collection",
    "Point",
    "StoreURI",
    "StoreURIError",
    "check_profile",
    "collection_class",
    "open_collection",
    "parse_uri",
    "register_store",
    "store_kinds",
    "vector_record",
]

# -- point fields -------------------------------------------------------------------

# Payload keys of every point (Qdrant payload; Chroma metadata keys). Changing one
# orphans the points already stored under it.
TEXT, METADATA, RECORD_ID, HASH = "text", "metadata", "record_id", "content_hash"
SOURCE, SOURCE_HASH, SCOPE, SYNCED = "source_id", "source_hash", "source_scope", "source_synced"
FIELDS = (TEXT, METADATA, RECORD_ID, HASH, SOURCE, SOURCE_HASH, SCOPE, SYNCED)
# Where a collection keeps its profile (Qdrant: collection metadata key).
PROFILE_KEY = "qwen3_embed"
# The scope of a Python ingestion that names none.
DEFAULT_SCOPE = ""

Cleanup = Literal["incremental", "full"]


@dataclass(frozen=True)
class Point:
    """A chunk as stored, without its vector (the fields are described in the module doc).

    ``id``: the point id (``point_id``'s UUID string).
    """

    id: str
    text: str
    metadata: dict[str, Any]
    record_id: str | int | None
    hash: str
    source: str = ""
    source_hash: str = ""
    scope: str = DEFAULT_SCOPE
    synced: str | None = None

    def payload(self) -> dict[str, Any]:
        """The point's fields as the Qdrant-like stores keep them (``metadata`` nested)."""
        return {TEXT: self.text, METADATA: self.metadata, RECORD_ID: self.record_id,
                HASH: self.hash, SOURCE: self.source, SOURCE_HASH: self.source_hash,
                SCOPE: self.scope, SYNCED: self.synced}

    @classmethod
    def from_payload(cls, point_id: str, payload: Mapping[str, Any] | None) -> Point:
        """A stored point from :meth:`payload`'s form (missing fields: an earlier version's)."""
        p = payload or {}
        return cls(id=str(point_id), text=p.get(TEXT) or "", metadata=p.get(METADATA) or {},
                   record_id=p.get(RECORD_ID), hash=p.get(HASH) or "",
                   source=p.get(SOURCE) or "", source_hash=p.get(SOURCE_HASH) or "",
                   scope=p.get(SCOPE) or DEFAULT_SCOPE, synced=p.get(SYNCED))

    def labels(self) -> tuple[Any, ...]:
        """Everything but the text and vector: equal labels need no rewrite."""
        return (self.metadata, self.record_id, self.source, self.source_hash, self.scope,
                self.synced)

    def with_synced(self, synced: str | None) -> Point:
        """This point with ``source_synced`` set (the head of a synced source) or cleared."""
        return replace(self, synced=synced)


# -- URIs -----------------------------------------------------------------------------

URI_HELP = (
    "chroma:PATH/COLLECTION, qdrant:PATH/COLLECTION, qdrant-edge:PATH/COLLECTION "
    "(embedded stores in folder PATH), qdrant+http://HOST:PORT/COLLECTION or "
    "chroma+http://HOST:PORT/COLLECTION (servers)"
)


class StoreURIError(ConfigurationError):
    """A store URI that does not parse, or names a store that does not exist."""


@dataclass(frozen=True)
class StoreURI:
    """A parsed store URI: ``kind`` (``qdrant``, ``chroma``, ``qdrant-edge``...), the
    collection, and either ``path`` (an embedded store's folder) or ``url`` (a server)."""

    kind: str
    collection: str
    path: Path | None = None
    url: str | None = None

    def __str__(self) -> str:
        where = self.url if self.url else str(self.path)
        return f"{self.kind}{'+' if self.url else ':'}{where}/{self.collection}"

    @property
    def embedded(self) -> bool:
        """True for a store in a folder (one process at a time), False for a server."""
        return self.path is not None

    def absolute(self) -> StoreURI:
        """The same store with an absolute folder (for another process or working directory)."""
        if self.path is None:
            return self
        return replace(self, path=self.path.expanduser().resolve())


def parse_uri(text: str | StoreURI) -> StoreURI:
    """Parse ``chroma:./db/docs``, ``qdrant+http://host:6333/docs``...

    Raises :class:`StoreURIError` (a ``ConfigurationError``) naming what is
    wrong: an unknown kind, a server URI with more than one path segment, an
    embedded URI without a folder (``qdrant:docs``, ``qdrant:./docs``) or
    without a collection (``qdrant:./db1/``).
    """
    if isinstance(text, StoreURI):
        return text
    if not isinstance(text, str):
        raise StoreURIError(f"a store URI is text, not {type(text).__name__}: {URI_HELP}")
    scheme, sep, rest = text.partition(":")
    kind, plus, transport = scheme.partition("+")
    bad = StoreURIError(f"bad store URI {text!r}: expected {URI_HELP}")
    if not sep or kind not in _REGISTRY or not rest:
        raise bad
    if plus:
        if transport not in ("http", "https"):
            raise bad
        if not _REGISTRY[kind].server:
            raise StoreURIError(f"bad store URI {text!r}: {kind} is an embedded store only; "
                                f"name its folder: {kind}:PATH/COLLECTION")
        parts = urlsplit(f"{transport}:{rest}")
        segments = [s for s in parts.path.split("/") if s]
        if not parts.hostname or len(segments) != 1:
            raise StoreURIError(f"bad store URI {text!r}: a server URI is {kind}+{transport}://"
                                "HOST:PORT/COLLECTION (one path segment, the collection)")
        return StoreURI(kind, segments[0], url=f"{transport}://{parts.netloc}")
    folder, slash, collection = rest.rpartition("/")
    example = f"e.g. {kind}:./db/docs"
    if not collection:
        raise StoreURIError(f"bad store URI {text!r}: no collection after the last '/'; "
                            f"the path is FOLDER/COLLECTION, {example}")
    if not slash or not folder.strip() or Path(folder).expanduser() == Path("."):
        raise StoreURIError(f"bad store URI {text!r}: the path needs a folder for the store "
                            f"(not the working directory) and a collection, {example}")
    return StoreURI(kind, collection, path=Path(folder).expanduser())


# -- the collection protocol -----------------------------------------------------------


@runtime_checkable
class Collection(Protocol):
    """A vector collection; the module docstring says exactly what each method must do."""

    uri: StoreURI

    def profile(self) -> dict[str, Any] | None: ...

    def ensure(self, profile: dict[str, Any]) -> dict[str, Any]: ...

    def lookup(self, ids: Sequence[str]) -> dict[str, Point]: ...

    def write(self, points: Sequence[Point], vectors: np.ndarray | None) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def source_points(self, sources: Sequence[str]) -> dict[str, dict[str, Point]]: ...

    def sources(self, scope: str) -> set[str]: ...

    def points(self, scope: str | None = None) -> Iterator[Point]: ...

    def count(self) -> int: ...

    def search(self, vector: np.ndarray, limit: int, where: Any = None) -> list[Hit]: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def check_profile(stored: Mapping[str, Any], wanted: Mapping[str, Any], where: str) -> None:
    """Refuse to mix vectors: ConfigurationError if the four facts of two profiles differ.

    ``where`` names the collection in the message (``"Qdrant collection 'docs'"``).
    """
    check_record(dict(stored), dict(wanted), where)


# -- the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    target: str  # "module:attribute" of the collection class
    package: str  # the distribution to install
    extra: str  # qwen3-embed's extra that brings it
    server: bool  # whether KIND+http(s):// URIs exist
    aliases: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, _Kind] = {}


def register_store(kind: str, target: str, *, package: str, extra: str, server: bool) -> None:
    """Make URIs ``kind:...`` open ``target`` (``"module:Class"``, imported on first use).

    Args:
        kind: the URI scheme (``"qdrant"``).
        target: the collection class, as ``"package.module:ClassName"``.
        package: the distribution it needs (named in the error when missing).
        extra: the extra of this distribution that installs it.
        server: whether ``kind+http(s)://HOST/COLLECTION`` URIs exist.
    """
    _REGISTRY[kind] = _Kind(target, package, extra, server)


register_store("qdrant", "qwen3_embed_qdrant:QdrantCollection", package="qdrant-client",
               extra="qdrant", server=True)
register_store("chroma", "qwen3_embed_chroma:ChromaCollection", package="chromadb",
               extra="chroma", server=True)
register_store("qdrant-edge", "qwen3_embed_qdrant:EdgeCollection", package="qdrant-edge-py",
               extra="qdrant", server=False)


def store_kinds() -> list[str]:
    """The URI kinds known (registered), in registration order."""
    return list(_REGISTRY)


def collection_class(kind: str) -> Any:
    """The collection class of a URI kind, imported now.

    Raises ``MissingDependencyError`` naming the extra when its package is
    absent, ``ConfigurationError`` when the installed integration lacks it.
    """
    try:
        entry = _REGISTRY[kind]
    except KeyError:
        raise StoreURIError(f"unknown store kind {kind!r}: expected {URI_HELP}") from None
    module_name, _, attribute = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise missing_dependency(entry.package, entry.extra, exc) from exc
    cls = getattr(module, attribute, None)
    if cls is None:
        raise ConfigurationError(
            f"{kind}: URIs open {module_name}.{attribute}, which this installation of "
            f"{module_name} lacks; reinstall it at this version: {pip_install(entry.extra)}"
        )
    return cls


def open_collection(uri: str | StoreURI, *, create: bool = False) -> Collection:
    """Open the collection a URI names (``create``: for writing; see ``Collection.open``)."""
    parsed = parse_uri(uri)
    collection: Collection = collection_class(parsed.kind).open(parsed, create=create)
    return collection
