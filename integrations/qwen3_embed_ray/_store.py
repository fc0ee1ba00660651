"""Stores as Ray tasks and actors see them: the core's collections, opened by URI.

A server store (Qdrant or Chroma server) is opened by every task that needs
it. An embedded store (a folder) allows one process, so one writer actor on
the driver's node holds it open and every task reaches it through
:class:`StoreProxy`, which speaks the same ``Collection`` protocol.
"""

from __future__ import annotations

import json
from typing import Any

from qwen3_embed_core import ConfigurationError
from qwen3_embed_core.adapters import missing_dependency
from qwen3_embed_core.stores import Collection, StoreURI, open_collection, parse_uri

try:
    import pyarrow as pa
    import ray
except ImportError as exc:  # pragma: no cover - the ray extra is missing
    raise missing_dependency("ray[data]", "ray", exc) from exc

__all__ = [
    "EMBEDDING",
    "ERROR",
    "OUTPUT_COLUMNS",
    "POINT",
    "POINT_ID",
    "SCHEMA_KEY",
    "StoreProxy",
    "pa",
    "ray",
    "start_writer",
    "stop_writer",
    "store_for",
    "target",
    "to_arrow",
    "vectors_facts",
]

# Columns the embedding stage adds (and the datasinks read).
POINT_ID, POINT, EMBEDDING, ERROR = "point_id", "point", "embedding", "error"
OUTPUT_COLUMNS = (POINT_ID, POINT, EMBEDDING, ERROR)
# Schema-metadata key: which model made the vectors (the stage writes it, the sinks read it).
SCHEMA_KEY = b"qwen3_embed"


def target(uri: str | StoreURI) -> StoreURI:
    """The URI parsed, with an absolute folder: actors resolve it from another directory."""
    return parse_uri(uri).absolute()


def _writer_name(uri: StoreURI) -> str:
    return f"qwen3-embed-writer:{uri.kind}:{uri.path}"  # one per folder (its file lock)


# What a store that does not exist answers a dry run's reads (each a new empty value).
_ABSENT: dict[str, Any] = {"profile": lambda: None, "lookup": dict, "source_points": dict,
                           "sources": set, "points": list, "count": int}


class _Writer:
    """Holds an embedded store open; every task's calls go through :meth:`call`.

    A dry run into a folder that does not exist creates nothing, not even the
    folder (as the command line's): the writer then answers as an empty store.
    """

    def __init__(self, uri: StoreURI, dry_run: bool = False) -> None:
        assert uri.path is not None
        absent = dry_run and not uri.path.exists()
        self.collection = None if absent else open_collection(uri, create=True)

    def call(self, method: str, *args: Any) -> Any:
        if self.collection is None:
            if method not in _ABSENT:
                raise ConfigurationError(f"a dry run writes nothing (called {method})")
            return _ABSENT[method]()
        result = getattr(self.collection, method)(*args)
        return list(result) if method == "points" else result

    def close(self) -> None:
        if self.collection is not None:
            self.collection.close()


class StoreProxy:
    """The ``Collection`` protocol, answered by the writer actor of an embedded store."""

    def __init__(self, uri: StoreURI, actor: Any) -> None:
        self.uri, self._actor = uri, actor

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        actor = self._actor
        return lambda *args: ray.get(actor.call.remote(method, *args))

    def close(self) -> None:
        """The writer keeps the store; whoever started it stops it."""


def start_writer(uri: StoreURI, *, dry_run: bool = False) -> tuple[Any, bool]:
    """(the writer actor of ``uri``'s folder, whether this call started it).

    ``dry_run``: for a dry run (a folder that does not exist is not created).

    It runs on this (the driver's) node, where the folder is, takes no CPU
    slot (it waits on disk, and must not starve the embedding actors), and is
    restarted with its tasks retried if its process dies: writes are upserts
    by id and deletes come last, so a retried call repeats nothing wrongly.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        return ray.get_actor(_writer_name(uri)), False
    except ValueError:
        pass
    node = ray.get_runtime_context().get_node_id()
    actor: Any = ray.remote(_Writer).options(
        name=_writer_name(uri), get_if_exists=True, num_cpus=0, max_restarts=3,
        max_task_retries=3, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(uri, dry_run)
    ray.get(actor.__ray_ready__.remote())  # a locked folder fails here, on the driver
    return actor, True


def stop_writer(actor: Any) -> None:
    """Close the store (flush, release the folder's lock) and end the actor."""
    try:
        ray.get(actor.close.remote(), timeout=60)
    finally:
        ray.kill(actor)


def store_for(uri: StoreURI) -> Collection:
    """This process's way to the store: its own client (server), or the writer (embedded)."""
    if uri.path is None:
        return open_collection(uri, create=True)
    try:
        actor = ray.get_actor(_writer_name(uri))
    except ValueError:
        raise ConfigurationError(
            f"{uri} is an embedded store: one writer actor holds it, started on the driver "
            "by ingest_dataset() or the datasink's on_write_start; use those, or a store "
            "server") from None
    proxy: Collection = StoreProxy(uri, actor)  # type: ignore[assignment]
    return proxy


def vectors_facts(schema: Any) -> dict[str, Any] | None:
    """What the embedding stage wrote into the dataset's schema, or None."""
    raw = (getattr(schema, "metadata", None) or {}).get(SCHEMA_KEY)
    return json.loads(raw) if raw else None


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
