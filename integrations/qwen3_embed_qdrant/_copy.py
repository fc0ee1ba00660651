"""Move a collection between Qdrant flavours with its vectors: no re-embedding.

Qdrant Edge, qdrant-client's local mode and a Qdrant server keep the same
points (``Point.payload()`` payloads, one unnamed cosine vector) but not the
same files: a local-mode folder is SQLite and pickles, an Edge shard is the
engine's segments, and qdrant-edge-py 0.9 can unpack a server's shard
snapshot but cannot write one. So a collection moves by copying its points
through the two clients: :func:`copy_points` reads pages of points with their
vectors from one URI and writes them, with the profile, into another.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from qwen3_embed_core import ConfigurationError
from qwen3_embed_core.stores import Collection, Point, StoreURI, open_collection, parse_uri

from ._collection import QdrantCollection, store_errors
from ._edge import PAGE, EdgeCollection


def _pages(col: Collection) -> Iterator[tuple[list[Point], np.ndarray]]:
    """Every point of ``col`` with its vector, a page at a time."""
    if isinstance(col, EdgeCollection):
        records: Iterator[Any] = col._scroll(None, True, with_vector=True)
    elif isinstance(col, QdrantCollection):
        records = _qdrant_scroll(col)
    else:
        raise ConfigurationError(f"copy_points copies between Qdrant stores (qdrant:, "
                                 f"qdrant+http(s)://, qdrant-edge:), not {col.uri.kind}:")
    page: list[Any] = []
    for r in records:
        page.append(r)
        if len(page) == PAGE:
            yield _split(page)
            page = []
    if page:
        yield _split(page)


def _qdrant_scroll(col: QdrantCollection) -> Iterator[Any]:
    offset = None
    with store_errors(col.client):
        while True:
            page, offset = col.client.scroll(col.name, limit=PAGE, offset=offset,
                                             with_payload=True, with_vectors=True)
            yield from page
            if offset is None:
                return


def _split(records: list[Any]) -> tuple[list[Point], np.ndarray]:
    points = [Point.from_payload(str(r.id), r.payload) for r in records]
    vectors = [r.vector[""] if isinstance(r.vector, dict) else r.vector for r in records]
    return points, np.asarray(vectors, np.float32)


def copy_points(source: str | StoreURI, target: str | StoreURI) -> int:
    """Copy every point of collection ``source`` (vectors, payloads, profile) into ``target``.

    Both are Qdrant URIs: ``qdrant-edge:PATH/NAME``, ``qdrant:PATH/NAME``
    (qdrant-client's local mode) or ``qdrant+http(s)://HOST:PORT/NAME``. The
    target is created with the source's profile, or must already fit it (same
    model, dimensions and prompts: else ``ConfigurationError``); points with
    the same ids are overwritten, so a copy can be re-run. Returns the number
    of points copied. Nothing is embedded: moving a Qdrant Edge collection to
    a server is ``copy_points("qdrant-edge:./db/docs", "qdrant+http://host:6333/docs")``.
    """
    src_uri, dst_uri = parse_uri(source), parse_uri(target)
    if src_uri.absolute() == dst_uri.absolute():
        raise ConfigurationError(f"copy_points: {src_uri} is both the source and the target")
    src = open_collection(src_uri)
    try:
        profile = src.profile()
        if not profile:
            raise ConfigurationError(
                f"{src_uri} has no qwen3-embed collection to copy" if profile is None else
                f"{src_uri} has no qwen3-embed profile: it was not written by this library")
        dst = open_collection(dst_uri, create=True)
        try:
            dst.ensure(profile)
            copied = 0
            for points, vectors in _pages(src):
                dst.write(points, vectors)
                copied += len(points)
            dst.finish()
            return copied
        finally:
            dst.close()
    finally:
        src.close()
