"""Datasinks: write the embedding stage's rows into Qdrant or Chroma, exactly as ``ingest``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qwen3_embed_core import ConfigurationError, EmbedderSpec, IngestReport
from qwen3_embed_core.adapters import check_record, spec_record

from ._stores import (
    Store,
    Target,
    check_facts,
    ray,
    records_report,
    start_writer,
    stop_writer,
    to_arrow,
    vectors_facts,
    writer_of,
)

try:
    from ray.data import Datasink
except ImportError:  # pragma: no cover - ray without its data extra
    from ray.data.datasource import Datasink


class _StoreDatasink(Datasink[dict[str, Any]]):
    """Shared by both stores: driver-side collection check, per-task writes, the report."""

    def __init__(
        self, target: Target, spec: EmbedderSpec | Mapping[str, Any] | None, batch_size: int
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.target = target
        self.spec = (None if spec is None else spec if isinstance(spec, EmbedderSpec)
                     else EmbedderSpec.from_config(spec))
        self.batch_size = batch_size
        self.report: IngestReport | None = None
        self._owned_writer: Any = None

    # -- on the driver --------------------------------------------------------------------

    def on_write_start(self, schema: Any = None) -> None:
        """Create the collection for the dataset's vectors, or refuse one made differently."""
        facts = self._facts(schema)
        spec = EmbedderSpec.from_config(facts["embedder"])
        if self.target.path is not None:
            writer, started = start_writer(self.target)
            if started:
                self._owned_writer = writer
            check_facts(self.target, spec, facts["record"], ray.get(writer.recorded.remote()))
            ray.get(writer.ensure.remote(facts["record"], spec.to_config()))
            return
        store = Store(self.target)
        try:
            check_facts(self.target, spec, facts["record"], store.recorded())
            store.ensure(facts["record"], spec)
        finally:
            store.close()

    def _facts(self, schema: Any) -> dict[str, Any]:
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
                record["dimensions"] = getattr(schema.field("embedding").type, "list_size", None)
            return {"embedder": self.spec.to_config(), "record": record}
        if self.spec is not None:  # the sink's model must be the one that made the vectors
            given = spec_record(self.spec)
            if given["dimensions"] is None:
                given["dimensions"] = facts["record"]["dimensions"]
            check_record(facts["record"], given, "the dataset's vectors")
        return facts

    def on_write_complete(self, write_result: Any) -> None:
        self.report = records_report(write_result.write_returns)
        self._stop()

    def on_write_failed(self, error: Exception) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._owned_writer is not None:
            stop_writer(self._owned_writer)
            self._owned_writer = None

    # -- in each write task ---------------------------------------------------------------

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        """Write this task's blocks (a per-task client, or the embedded store's writer)."""
        parts = []
        if self.target.path is not None:
            writer = writer_of(self.target)
            for block in blocks:
                parts.append(ray.get(writer.apply.remote(to_arrow(block), self.batch_size)))
        else:
            store = Store(self.target)
            try:
                parts = [store.apply(to_arrow(block), self.batch_size) for block in blocks]
            finally:
                store.close()
        total = records_report(parts)
        return {"seen": total.seen, "embedded": total.embedded, "written": total.written,
                "updated": total.updated, "skipped": total.skipped,
                "duplicates": total.duplicates,
                "bad": [{"position": b.position, "reason": b.reason, "record_id": b.record_id}
                        for b in total.bad]}

    def get_name(self) -> str:
        return f"{type(self).__name__}({self.target.uri})"


class QdrantDatasink(_StoreDatasink):
    """Write ``Qwen3EmbedBatches`` rows into a Qdrant collection, as ``qwen3_embed_qdrant.ingest``.

    A server URL gets a client per write task; a folder (embedded Qdrant, one
    process at a time) is written through one writer actor on the driver's node.
    ``on_write_start`` (on the driver) creates the collection with the model's
    record, or refuses one made with another model, size or instruction.
    ``report`` (an ``IngestReport``) is set when the write completes.

    Args:
        url_or_path: ``http(s)://host:6333`` (a server) or a folder (embedded).
        collection: the collection name.
        spec: the model that made the vectors, if the dataset's schema no longer says.
        batch_size: points looked up and upserted per request.
    """

    def __init__(
        self,
        url_or_path: str,
        collection: str,
        *,
        spec: EmbedderSpec | Mapping[str, Any] | None = None,
        batch_size: int = 256,
    ) -> None:
        sep = "+" if url_or_path.startswith(("http://", "https://")) else ":"
        super().__init__(Target.parse(f"qdrant{sep}{url_or_path.rstrip('/')}/{collection}"),
                         spec, batch_size)


class ChromaDatasink(_StoreDatasink):
    """Write ``Qwen3EmbedBatches`` rows into a Chroma collection, as ``qwen3_embed_chroma.ingest``.

    The collection is created on the driver with ``Qwen3EmbeddingFunction``
    (so Chroma stores how to rebuild the model), or refused if made otherwise.

    Args:
        host_or_url: ``"chroma-host"`` (port 8000), ``http(s)://host:port``, or a
            folder (an embedded store, written through one writer actor).
        collection: the collection name.
        spec: the model that made the vectors, if the dataset's schema no longer says.
        batch_size: records looked up and upserted per request.
    """

    def __init__(
        self,
        host_or_url: str,
        collection: str,
        *,
        spec: EmbedderSpec | Mapping[str, Any] | None = None,
        batch_size: int = 256,
    ) -> None:
        where = host_or_url.rstrip("/")
        if where.startswith(("http://", "https://")):
            uri = f"chroma+{where}/{collection}"
        elif "/" in where or where.startswith((".", "~")):
            uri = f"chroma:{where}/{collection}"
        else:
            uri = f"chroma+http://{where if ':' in where else where + ':8000'}/{collection}"
        super().__init__(Target.parse(uri), spec, batch_size)
