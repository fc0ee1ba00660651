"""The embedding stage: a callable class for ``Dataset.map_batches``, one model per actor."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from qwen3_embed_core import (
    ConfigurationError,
    EmbedderSpec,
    InvalidInputError,
    InvalidInputTypeError,
    Qwen3Embedder,
)
from qwen3_embed_core.adapters import (
    Chunker,
    OnError,
    Point,
    check_scope,
    chunk_record,
    embedder_record,
    prepare_record,
    source_hash,
    text_source,
)

from ._store import (
    EMBEDDING,
    ERROR,
    OUTPUT_COLUMNS,
    POINT,
    POINT_ID,
    SCHEMA_KEY,
    pa,
    ray,
    store_for,
    target,
    to_arrow,
)

# The columns of a files dataset (one row per file, as ``ingest_files`` reads them).
FILE_COLUMNS = ("source", "scope", "kind", "content")


def actor_cpus() -> int | None:
    """CPUs Ray gave this actor (``num_cpus`` of ``map_batches``), None outside an actor."""
    if not ray.is_initialized():
        return None
    try:
        resources = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call]
        cpus = resources.get("CPU")
    except Exception:  # the driver, or an old Ray: leave llama.cpp's default
        return None
    return max(1, int(cpus)) if cpus else None


def check_columns(names: list[str], text_column: str = "text", files: bool = False) -> None:
    """Refuse a dataset the stage cannot read, or whose columns its output would overwrite."""
    wanted = list(FILE_COLUMNS) if files else [text_column]
    absent = [c for c in wanted if c not in names]
    if absent:
        raise ConfigurationError(
            f"column(s) {', '.join(map(repr, absent))} not in the dataset (its columns: "
            f"{', '.join(names)}); rows are records: 'text', and optionally 'id', 'metadata', "
            "'source' (other columns become metadata); name the text with text_column=")
    clash = [c for c in OUTPUT_COLUMNS if c in names]
    if clash:
        raise ConfigurationError(
            f"column(s) {', '.join(map(repr, clash))} would be overwritten by the embedding "
            "stage's output; rename them first (ds.rename_columns)")


class Qwen3EmbedBatches:
    """Embed records in ``ds.map_batches``: one embedder per actor.

    >>> ds = ds.map_batches(Qwen3EmbedBatches, fn_constructor_kwargs={"model": "0.6B-Q8_0"},
    ...                     concurrency=4, batch_size=64, num_cpus=4)

    Each row is a record, the shape ``qwen3_embed_qdrant.ingest`` takes: a
    ``text`` column, optionally ``id``, ``metadata`` and ``source`` (other
    columns become metadata). The actor rebuilds its embedder from a
    serialisable spec (never a pickled model or an API key). Each output row
    (one per chunk) keeps the input columns and gets ``point_id``, ``point``
    (the point as stored, JSON), ``embedding`` (float32; null when the store
    already holds it, or the row is bad) and ``error`` (why a bad row was skipped).

    Args:
        model: a GGUF path, a variant name or a Model Runner tag (the core's one rule).
        text_column: the column holding each record's text.
        as_queries: embed queries (with the task's instruction) instead of documents.
        task: a preset name or a task description.
        dimensions: Matryoshka size (None: the model's full size).
        chunk_tokens: cut each text into chunks of at most this many tokens (None: don't).
        overlap_tokens: tokens each chunk repeats from the previous one.
        store: a store URI: rows stored there with the same content are not
            embedded again, and unchanged files (``files=True``) not even chunked.
        scope: the namespace of the records' sources (None: the default one).
        files: rows are files (``source``, ``scope``, ``kind``, ``content``), as
            ``ingest_files`` reads them; each is one source, chunked by the CLI's rule.
        dry_run: embed nothing (the datasink counts what would be written).
        on_error: ``"skip"`` reports a bad row in ``error``; ``"raise"`` fails the batch.
        spec: an ``EmbedderSpec`` or its config dict, instead of the model options.
        options: backend, base_url(s), api_key_env_var, instruction, options= and
            any backend option by name (``n_threads``, ``timeout``...).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        text_column: str = "text",
        as_queries: bool = False,
        task: str | None = None,
        dimensions: int | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int = 64,
        store: str | None = None,
        scope: str | None = None,
        files: bool = False,
        dry_run: bool = False,
        on_error: OnError = "skip",
        spec: EmbedderSpec | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.spec = _spec(spec, model=model, task=task, dimensions=dimensions, **options)
        if on_error not in ("skip", "raise"):
            raise ConfigurationError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
        if as_queries and store is not None:
            raise ConfigurationError("as_queries=True embeds search queries; a store holds "
                                     "documents: drop store= or as_queries")
        self.text_column, self.as_queries, self.on_error = text_column, as_queries, on_error
        self.scope, self.files, self.dry_run = check_scope(scope), files, dry_run
        build = self.spec
        if build.backend == "local" and "n_threads" not in build.options:
            cpus = actor_cpus()
            if cpus is not None:  # llama.cpp's threads: the CPUs Ray reserved for this actor
                build = EmbedderSpec.from_config(
                    {**build.to_config(), "options": {**build.options, "n_threads": cpus}})
        self.embedder: Qwen3Embedder = build.build()
        self.chunker = Chunker.of(self.embedder, chunk_tokens, overlap_tokens)
        record = embedder_record(self.embedder)  # a server is asked once for its size
        self.dimensions: int = record["dimensions"]
        self._facts = json.dumps({"embedder": self.spec.to_config(), "record": record,
                                  "as_queries": as_queries}).encode()
        self._store = store_for(target(store)) if store is not None else None
        self._checked = False

    # -- one batch ---------------------------------------------------------------------

    def __call__(self, batch: Any) -> pa.Table:
        """Embed one batch (Arrow, pandas or a dict of numpy arrays); returns an Arrow table."""
        table = to_arrow(batch)
        if not self._checked:
            check_columns(table.column_names, self.text_column, self.files)
            self._checked = True
        rows = table.to_pylist()
        out: list[tuple[int, dict[str, Any], Point | None, str | None]] = []
        if self.files:
            self._file_rows(rows, out)
        else:
            for i, row in enumerate(rows):
                self._record_row(i, row, out)
        points = [p for _, _, p, _ in out if p is not None]
        stored = self._stored(points)
        todo = [k for k, (_, _, p, _) in enumerate(out)
                if p is not None and (stored.get(p.id) != p.hash)]
        vectors = np.zeros((len(out), self.dimensions), np.float32)
        if todo and not self.dry_run:
            texts = [out[k][2].text for k in todo]  # type: ignore[union-attr]
            vectors[todo] = (self.embedder.embed_queries(texts) if self.as_queries
                             else self.embedder.embed_documents(texts))
        missing = np.ones(len(out), bool)
        if not self.dry_run:
            missing[todo] = False
        take = [i for i, _, _, _ in out]
        result = table.take(pa.array(take, pa.int64())) if take else table.slice(0, 0)
        columns = {
            POINT_ID: pa.array([p.id if p else None for _, _, p, _ in out], pa.string()),
            POINT: pa.array([json.dumps(info, ensure_ascii=False) for _, info, _, _ in out],
                            pa.string()),
            EMBEDDING: pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel()), self.dimensions, mask=pa.array(missing)),
            ERROR: pa.array([e for _, _, _, e in out], pa.string()),
        }
        for name, column in columns.items():
            result = result.append_column(name, column)
        return result.replace_schema_metadata({**(result.schema.metadata or {}),
                                               SCHEMA_KEY: self._facts})

    def _stored(self, points: list[Point]) -> dict[str, str]:
        if self._store is None or not points or self._store.profile() is None:
            return {}
        return {i: p.hash for i, p in self._store.lookup([p.id for p in points]).items()}

    def _emit(self, i: int, out: list[Any], points: list[Point], head: bool) -> None:
        for k, p in enumerate(points):
            out.append((i, {**p.payload(), "id": p.id, "head": head and k == 0}, p, None))

    def _bad(self, i: int, out: list[Any], reason: str, rid: object = None) -> None:
        if self.on_error == "raise":
            raise InvalidInputError(reason)
        out.append((i, {"bad": True, "id": rid}, None, reason))

    def _record_row(self, i: int, row: dict[str, Any], out: list[Any]) -> None:
        raw = {k: v for k, v in row.items() if k != self.text_column and v is not None}
        raw["text"] = row.get(self.text_column)
        rid = raw.get("id")
        where = f"a row (id {rid!r})" if rid is not None else "a row"
        try:
            rec = prepare_record(0, raw, where=where)
        except (InvalidInputError, InvalidInputTypeError) as exc:
            self._bad(i, out, str(exc), rid)
            return
        chunks = chunk_record(rec, self.chunker) if self.chunker.chunk_tokens else [rec]
        alone = rec.source is None
        sid = rec.source or rec.id
        digest = (source_hash("record", rec.text, rec.metadata, rec.record_id) if alone
                  else source_hash("records", [(rec.id, rec.text, rec.metadata)]))
        single = alone and len(chunks) == 1
        points = [Point(c.id, c.text, c.metadata, c.record_id, c.hash, sid, digest, self.scope,
                        digest if single else None) for c in chunks]
        self._emit(i, out, points, head=alone and not single)

    def _file_rows(self, rows: list[dict[str, Any]], out: list[Any]) -> None:
        problems: list[str] = []
        sources = [text_source(r["source"], r["kind"], r["content"], self.chunker, problems,
                               scope=r["scope"], on_error=self.on_error) for r in rows]
        heads = {}
        if self._store is not None and self._store.profile() is not None:
            heads = self._store.lookup([s.head for s in sources if s.head])
        for i, src in enumerate(sources):
            head = heads.get(src.head) if src.head else None
            if head is not None and head.synced == src.hash and head.source == src.id:
                out.append((i, {"unchanged": src.id}, None, None))
                continue
            before = len(problems)
            chunks = list(src.chunks())
            for reason in problems[before:]:
                self._bad(i, out, reason)
            points = [Point(c.id, c.text, c.metadata, c.record_id, c.hash, src.id, src.hash,
                            src.scope) for c in chunks]
            if not points:  # an emptied file: seen, its old chunks are stale
                out.append((i, {"empty": src.id}, None, None))
            self._emit(i, out, points, head=src.head is not None)


def _spec(spec: EmbedderSpec | Mapping[str, Any] | None, **options: Any) -> EmbedderSpec:
    """The stage's spec: ``spec`` (an EmbedderSpec or its config), else the options."""
    if spec is None:
        return EmbedderSpec.from_options(**options)
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ConfigurationError(
            f"spec= already names the model; drop {', '.join(given)} (or drop spec=)")
    return spec if isinstance(spec, EmbedderSpec) else EmbedderSpec.from_config(spec)
