"""``EdgeCollection``: the store protocol (``qwen3_embed_core.stores``) on Qdrant Edge.

Qdrant Edge (``qdrant-edge-py``) is the Qdrant engine in-process: segments,
HNSW, payload indexes and a write-ahead log, in a directory. The URI
``qdrant-edge:PATH/NAME`` is the shard directory ``PATH/NAME``; one shard is
one collection. What this module adds to the shard's own files:

- ``qwen3_embed.json``: the collection's profile (model, dimensions, prompts,
  the embedder's spec), written atomically beside the shard's
  ``edge_config.json``. A shard keeps no collection metadata of its own, and
  a file (not a special point) stays out of counts, scrolls and searches.
- ``qwen3_embed.lock``: an exclusive ``flock`` held while the shard is open.
  A shard has one owner: measured with qdrant-edge-py 0.9.0, a second
  ``EdgeShard.load`` of an open shard fails on the write-ahead log's lock
  *after* it has opened the segments, and the first owner's next ``flush()``
  then fails on a truncated payload-index journal. The lock refuses the
  second opener (another process, or this one) before it touches anything;
  the kernel drops it when its process dies, even by SIGKILL.

Writes go to the write-ahead log (durable against a killed process when
``update`` returns); the HNSW and payload indexes are built by ``optimize()``
in :meth:`EdgeCollection.finish`, once at the end of an ingestion, never per
batch. Until then new points are found by exact search.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qwen3_embed_core import ConfigurationError, Hit, Qwen3EmbedError
from qwen3_embed_core.adapters import missing_dependency
from qwen3_embed_core.stores import FIELDS, SCOPE, SOURCE, TEXT, Point, StoreURI, check_profile

PROFILE_FILE = "qwen3_embed.json"
LOCK_FILE = "qwen3_embed.lock"
CONFIG_FILE = "edge_config.json"  # the shard's own: its vector parameters
# Ids per retrieve/delete and points per scroll page or upsert: one engine call each.
PAGE = 1000
_NO_TEXT = [f for f in FIELDS if f != TEXT]  # what lookups need: everything but the text
# Payload fields the sync filters on: keyword indexes, so its lookups do not scan.
INDEXED = (SOURCE, SCOPE)


class EdgeError(Qwen3EmbedError, RuntimeError):
    """Qdrant Edge failed on a shard (its message, and the shard's directory)."""


def _engine() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:
        raise missing_dependency("qdrant-edge-py", "qdrant", exc) from exc
    return qdrant_edge


@contextlib.contextmanager
def _engine_errors(where: Path) -> Iterator[None]:
    """The engine raises bare ``Exception``s: give them a class and the shard's directory."""
    try:
        yield
    except Qwen3EmbedError:
        raise
    except Exception as exc:
        if type(exc) is not Exception:  # a Python error of ours, not the engine's
            raise
        raise EdgeError(f"Qdrant Edge shard {where}: {exc}") from exc


def _chunks(items: Sequence[Any], size: int = PAGE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_edge_shard(path: Path) -> bool:
    """Whether ``path`` is a Qdrant Edge shard directory (it has ``edge_config.json``)."""
    return (path / CONFIG_FILE).is_file()


def _other_format(directory: Path) -> str | None:
    """What else ``directory`` (or its folder) is, when Qdrant Edge cannot read it."""
    folder = directory.parent
    if (folder / "meta.json").is_file() and (folder / "collection").is_dir():
        return (f"{folder} is a qdrant-client local-mode store (QdrantClient(path=...)), "
                f"which Qdrant Edge cannot read: open it as qdrant:{folder}/{directory.name}, "
                "or copy it into Qdrant Edge with qwen3_embed_qdrant.copy_points()")
    if (folder / "chroma.sqlite3").is_file():
        return f"{folder} is a Chroma store: open it as chroma:{folder}/{directory.name}"
    return None


class EdgeCollection:
    """A Qdrant Edge shard as the store layer sees it (see ``qwen3_embed_core.stores``).

    Open it with ``open_collection("qdrant-edge:PATH/NAME")`` or
    :meth:`open`; the shard directory is ``PATH/NAME``.
    """

    # What the progress bar shows while finish() runs.
    finishing = "building the index (Qdrant Edge optimize)"
    # Qdrant's own default beam is the index's ef_construct, 100 (see ``search_ef``).
    _search_ef: int | None = None

    @property
    def search_ef(self) -> int | None:
        """HNSW's search beam (Qdrant's ``hnsw_ef``): candidates each segment's search keeps.

        None (the default) is Qdrant's own, the index's ``ef_construct`` (100).
        A wider beam finds more true neighbours and takes longer. Measured on
        random 1024-dimensional points, HNSW's hardest case (``benchmarks/stores.py``):
        at 100,000 points 100 found 18 to 20 of 20 queries' own points (3.2 ms);
        at 1,000,000, 6 to 9 of 20 (22-36 ms), 800 found 18 (23 ms) and 1,600
        all 20 (34 ms), where exact search took 177 ms. Real embeddings cluster,
        and need a narrower beam.
        """
        return self._search_ef

    @search_ef.setter
    def search_ef(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigurationError(f"search_ef={value!r} must be an int >= 1 (HNSW's search "
                                     "beam) or None (Qdrant's default)")
        self._search_ef = value

    def __init__(self, uri: StoreURI) -> None:
        if uri.path is None:
            raise ConfigurationError(f"{uri}: Qdrant Edge is an embedded store: "
                                     "qdrant-edge:PATH/COLLECTION")
        self.uri = uri
        self.directory = uri.path / uri.collection
        self.label = f"Qdrant Edge shard {str(self.directory)!r}"
        self._qe = _engine()
        self._lock: int | None = None
        self._shard: Any = None
        self._closed = False

    @classmethod
    def open(cls, uri: StoreURI, *, create: bool) -> EdgeCollection:
        """Open the shard of ``uri`` if it exists (``create=False``: its folder must exist)."""
        col = cls(uri)
        assert uri.path is not None
        if not create and not uri.path.is_dir():
            raise ConfigurationError(f"no qdrant-edge store at {uri.path} (ingest into it first)")
        if col.directory.exists() and not is_edge_shard(col.directory):
            other = _other_format(col.directory)
            ours = {LOCK_FILE, PROFILE_FILE}  # left by a run killed before the shard existed
            if other or any(p.name not in ours for p in col.directory.iterdir()):
                raise ConfigurationError(
                    f"{col.directory} is not a Qdrant Edge shard (no {CONFIG_FILE})"
                    + (f": {other}" if other else ""))
        if is_edge_shard(col.directory):
            col._take_lock()
            try:
                with _engine_errors(col.directory):
                    col._shard = col._qe.EdgeShard.load(str(col.directory))
            except BaseException:
                col.close()  # the lock with it
                raise
        elif other := _other_format(col.directory):  # never a shard inside another store
            raise ConfigurationError(f"no Qdrant Edge shard at {col.directory}: {other}")
        return col

    # -- the lock and the files beside the shard ----------------------------------------

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        path = self.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigurationError(
                f"{self.label} is open in another process (pid {holder}) or elsewhere in "
                "this one: a Qdrant Edge shard has one owner at a time. Wait for that "
                "ingestion or search to finish (or close it), or use a Qdrant server "
                "(qdrant+http://HOST:6333/NAME) for several processes") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd

    def _stored_profile(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.directory / PROFILE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{self.label}: unreadable {PROFILE_FILE}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"{self.label}: {PROFILE_FILE} is not a JSON object")
        return data

    def _save_profile(self, profile: dict[str, Any]) -> None:
        path = self.directory / PROFILE_FILE
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:  # whole or absent, never half written
            json.dump(profile, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _vector_params(self) -> dict[str, Any]:
        config = json.loads((self.directory / CONFIG_FILE).read_text(encoding="utf-8"))
        vectors: dict[str, Any] = config.get("vectors") or {}
        return vectors

    # -- the profile ---------------------------------------------------------------------

    def profile(self) -> dict[str, Any] | None:
        if self._shard is None:
            return None
        return self._stored_profile() or {}

    def _check_vectors(self, dimensions: int) -> None:
        vectors = self._vector_params()
        if set(vectors) != {""}:
            raise ConfigurationError(
                f"{self.label} has named vectors {sorted(vectors)}; qwen3-embed writes one "
                "unnamed vector per point: use another collection")
        size, distance = vectors[""].get("size"), vectors[""].get("distance")
        if size != dimensions:
            raise ConfigurationError(
                f"{self.label} holds {size}-dimensional vectors but the embedder makes "
                f"{dimensions} dimensions; use the collection's model and dimensions "
                "(Qwen3Embedder(..., dimensions=...)) or a new collection")
        if distance != "Cosine":
            raise ConfigurationError(
                f"{self.label} uses {distance} distance; Qwen3 vectors are compared by "
                "cosine: write into a new collection")

    def ensure(self, profile: dict[str, Any]) -> dict[str, Any]:
        qe = self._qe
        if self._shard is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(
                size=int(profile["dimensions"]), distance=qe.Distance.Cosine))
            with _engine_errors(self.directory):
                self._shard = qe.EdgeShard.create(str(self.directory), config)
                for key in INDEXED:
                    self._update(qe.UpdateOperation.create_field_index(
                        key, qe.PayloadSchemaType.Keyword))
            self._save_profile(profile)
            return profile
        self._check_vectors(int(profile["dimensions"]))
        stored = self._stored_profile()
        if stored is None:
            if self.count():
                raise ConfigurationError(
                    f"{self.label} has points but no {PROFILE_FILE} recording the model "
                    "that made them (it was not written by qwen3-embed, e.g. unpacked from a "
                    "server snapshot); cannot check they match: use a new collection")
            self._save_profile(profile)
            return profile
        check_profile(stored, profile, self.label)
        if "embedder" not in stored and "embedder" in profile:  # an earlier version's
            stored = {**stored, "embedder": profile["embedder"]}
            self._save_profile(stored)
        return stored

    # -- points --------------------------------------------------------------------------

    def _update(self, op: Any) -> None:
        with _engine_errors(self.directory):
            self._shard.update(op)

    def _scroll(self, flt: Any, payload: Any, *, with_vector: bool = False) -> Iterator[Any]:
        if self._shard is None:
            return
        offset = None
        while True:
            with _engine_errors(self.directory):
                page, offset = self._shard.scroll(self._qe.ScrollRequest(
                    offset=offset, limit=PAGE, filter=flt, with_payload=payload,
                    with_vector=with_vector))
            yield from page
            if offset is None:
                return

    def _match(self, key: str, values: Sequence[str]) -> Any:
        qe = self._qe
        return qe.Filter(must=[qe.FieldCondition(key=key, match=qe.MatchAny(list(values)))])

    def lookup(self, ids: Sequence[str]) -> dict[str, Point]:
        found: dict[str, Point] = {}
        if self._shard is None:
            return found
        for part in _chunks(list(ids)):
            with _engine_errors(self.directory):
                records = self._shard.retrieve(list(part), _NO_TEXT, False)
            for r in records:
                found[str(r.id)] = Point.from_payload(str(r.id), r.payload)
        return found

    def write(self, points: Sequence[Point], vectors: np.ndarray | None) -> None:
        if not points:
            return
        qe = self._qe
        if vectors is None:  # a relabel: top-level keys replaced whole; text and vector kept
            for p in points:
                self._update(qe.UpdateOperation.set_payload(
                    [p.id], {k: v for k, v in p.payload().items() if k != TEXT}))
            return
        vectors = np.asarray(vectors, np.float32)
        for start in range(0, len(points), PAGE):
            part = points[start : start + PAGE]
            self._update(qe.UpdateOperation.upsert_points(
                [qe.Point(id=p.id, vector=v.tolist(), payload=p.payload())
                 for p, v in zip(part, vectors[start : start + PAGE], strict=True)]))

    def delete(self, ids: Sequence[str]) -> None:
        if self._shard is None:
            return
        for part in _chunks(list(ids)):
            self._update(self._qe.UpdateOperation.delete_points(list(part)))

    def source_points(self, sources: Sequence[str]) -> dict[str, dict[str, Point]]:
        out: dict[str, dict[str, Point]] = {}
        for part in _chunks(list(dict.fromkeys(sources)), 256):
            for r in self._scroll(self._match(SOURCE, part), _NO_TEXT):
                point = Point.from_payload(str(r.id), r.payload)
                out.setdefault(point.source, {})[point.id] = point
        return out

    def sources(self, scope: str) -> set[str]:
        return {(r.payload or {}).get(SOURCE) or "" for r in self._scroll(
            self._match(SCOPE, [scope]), [SOURCE])}

    def points(self, scope: str | None = None) -> Iterator[Point]:
        flt = None if scope is None else self._match(SCOPE, [scope])
        for r in self._scroll(flt, True):
            yield Point.from_payload(str(r.id), r.payload)

    def count(self) -> int:
        if self._shard is None:
            return 0
        with _engine_errors(self.directory):
            return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def search(self, vector: np.ndarray, limit: int, where: Any = None) -> list[Hit]:
        """``where``: a ``qdrant_edge.Filter`` on the payload, e.g.
        ``Filter(must=[FieldCondition(key="metadata.lang", match=MatchValue("en"))])``."""
        qe = self._qe
        if where is not None and not isinstance(where, qe.Filter):
            raise ConfigurationError(
                f"a Qdrant Edge search filter is a qdrant_edge.Filter, not "
                f"{type(where).__name__} (qdrant_client's models.Filter is for qdrant: URIs)")
        if self._shard is None:
            raise ConfigurationError(f"no Qdrant Edge shard at {self.directory}")
        with _engine_errors(self.directory):
            found = self._shard.query(qe.QueryRequest(
                limit=limit, query=qe.Query.Nearest(np.asarray(vector, np.float32).tolist()),
                filter=where, with_payload=True, params=None if self._search_ef is None
                else qe.SearchParams(hnsw_ef=self._search_ef)))
        hits = []
        for r in found:
            point = Point.from_payload(str(r.id), r.payload)
            hits.append(Hit(id=point.id, score=float(r.score), text=point.text,
                            metadata=point.metadata, record_id=point.record_id))
        return hits

    def finish(self) -> None:
        """Build the HNSW and payload indexes (``optimize()``), then flush to disk."""
        if self._shard is None:
            return
        with _engine_errors(self.directory):
            self._shard.optimize()
            self._shard.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._shard is not None:
                with _engine_errors(self.directory):
                    self._shard.flush()
                    self._shard.close()
        finally:
            self._shard = None
            if self._lock is not None:
                os.close(self._lock)  # releases the flock
                self._lock = None

    def __enter__(self) -> EdgeCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
