"""The embedding stage: a callable class for ``Dataset.map_batches``, one model per actor."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qwen3_embed_core import (
    ConfigurationError,
    EmbedderSpec,
    InvalidInputError,
    InvalidInputTypeError,
    Qwen3Embedder,
    chunk_text,
)
from qwen3_embed_core.adapters import OnError, Record, embedder_record, prepare_record

from ._stores import (
    EMBEDDING,
    ERROR,
    HASH,
    ID,
    OUTPUT_COLUMNS,
    RECORD,
    SCHEMA_KEY,
    Store,
    Target,
    pa,
    ray,
    to_arrow,
    writer_of,
)


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


class Qwen3EmbedBatches:
    """Embed a column of texts in ``ds.map_batches``: one embedder per actor.

    >>> ds = ds.map_batches(Qwen3EmbedBatches, fn_constructor_kwargs={"model": "0.6B-Q8_0"},
    ...                     concurrency=4, batch_size=64, num_cpus=4)

    The actor rebuilds its embedder from a serialisable spec (never a pickled
    model or an API key: a server key is read from ``api_key_env_var``, set
    through Ray's ``runtime_env``). A local model gets ``n_threads`` = the
    actor's CPUs unless given. Each output row gets ``id`` (the point id
    ``ingest`` gives the record), ``record`` (the record as stored, JSON),
    ``content_hash``, ``embedding`` (float32; null when not embedded) and
    ``error`` (why a bad row was skipped, else null); the input columns stay.

    Args:
        model: a GGUF path, a variant name or a Model Runner tag (the core's one rule).
        text_column: the column holding each row's text.
        id_column: the column holding each row's own id (None: ids from the text).
        record_column: instead of text/id columns, a column holding each record
            as JSON (``{"id"?, "text", "metadata"?}`` or a string), e.g. JSONL lines.
        source_column: a column naming each row in error reports: an int is its
            position, text a name (``file:line``); with ``record_column`` a string
            record is a whole file whose chunks are ``{source}#{i}``, as the CLI names them.
        metadata_columns: the columns stored as metadata (None: every other column).
        as_queries: embed queries (with the task's instruction) instead of documents.
        task: a preset name or a task description.
        dimensions: Matryoshka size (None: the model's full size).
        chunk_tokens: cut each text into chunks of at most this many tokens (None: don't).
        overlap_tokens: tokens each chunk repeats from the previous one.
        store: a store URI (``qdrant+http://host:6333/docs``...): rows stored there
            with the same content are not embedded again (their embedding is null).
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
        id_column: str | None = None,
        record_column: str | None = None,
        source_column: str | None = None,
        metadata_columns: Sequence[str] | None = None,
        as_queries: bool = False,
        task: str | None = None,
        dimensions: int | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int = 64,
        store: str | None = None,
        on_error: OnError = "skip",
        spec: EmbedderSpec | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.spec = _spec(spec, model=model, task=task, dimensions=dimensions, **options)
        if on_error not in ("skip", "raise"):
            raise ConfigurationError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
        if chunk_tokens is not None:
            chunk_text("", len, chunk_tokens, overlap_tokens)  # checks the two sizes now
        if as_queries and store is not None:
            raise ConfigurationError("as_queries=True embeds search queries; a store holds "
                                     "documents: drop store= or as_queries")
        self.text_column, self.id_column = text_column, id_column
        self.record_column, self.source_column = record_column, source_column
        self.metadata_columns = None if metadata_columns is None else list(metadata_columns)
        self.as_queries, self.on_error = as_queries, on_error
        self.chunk_tokens, self.overlap_tokens = chunk_tokens, overlap_tokens
        build = self.spec
        if build.backend == "local" and "n_threads" not in build.options:
            cpus = actor_cpus()
            if cpus is not None:  # llama.cpp's threads: the CPUs Ray reserved for this actor
                build = EmbedderSpec.from_config(
                    {**build.to_config(), "options": {**build.options, "n_threads": cpus}})
        self.embedder: Qwen3Embedder = build.build()
        record = embedder_record(self.embedder)  # a server is asked once for its size
        self.dimensions: int = record["dimensions"]
        self._facts = json.dumps({"embedder": self.spec.to_config(), "record": record,
                                  "as_queries": as_queries}).encode()
        self._lookup: Any = None
        if store is not None:
            target = Target.parse(store)
            if target.path is not None:  # embedded: ask the writer actor that holds it
                writer = writer_of(target)
                self._lookup = lambda recs: ray.get(writer.stored_hashes.remote(recs))
            else:
                self._lookup = Store(target).stored_hashes
        self._checked = False

    # -- one batch ---------------------------------------------------------------------

    def __call__(self, batch: Any) -> pa.Table:
        """Embed one batch (Arrow, pandas or a dict of numpy arrays); returns an Arrow table."""
        table = to_arrow(batch)
        if not self._checked:
            self._check_columns(table.column_names)
            self._checked = True
        rows = table.to_pylist()
        take: list[int] = []
        out: list[tuple[Record | None, str | None, str | None]] = []  # (record, error, bad info)
        for i, row in enumerate(rows):
            for rec, error, info in self._records(row):
                take.append(i)
                out.append((rec, error, info))
        stored = self._lookup([r for r, _, _ in out if r is not None]) if self._lookup else {}
        todo = [k for k, (r, _, _) in enumerate(out) if r is not None
                and stored.get(r.id) != r.hash]
        vectors = np.zeros((len(out), self.dimensions), np.float32)
        if todo:
            texts = [out[k][0].text for k in todo]  # type: ignore[union-attr]
            made = (self.embedder.embed_queries(texts) if self.as_queries
                    else self.embedder.embed_documents(texts))
            vectors[todo] = made
        missing = np.ones(len(out), bool)
        missing[todo] = False
        result = table.take(pa.array(take, pa.int64())) if take else table.slice(0, 0)
        drop = [c for c in OUTPUT_COLUMNS if c in result.column_names]
        result = result.drop_columns(drop)
        if self.record_column is None and self.text_column in result.column_names:
            texts_out = [r.text if r is not None else row_text
                         for (r, _, _), row_text in zip(
                             out, result.column(self.text_column).to_pylist(), strict=True)]
            position = result.column_names.index(self.text_column)
            result = result.set_column(position, self.text_column, pa.array(texts_out, pa.string()))
        columns = {
            ID: pa.array([r.id if r else None for r, _, _ in out], pa.string()),
            RECORD: pa.array([_stored_form(r) if r else info for r, _, info in out], pa.string()),
            HASH: pa.array([r.hash if r else None for r, _, _ in out], pa.string()),
            EMBEDDING: pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel()), self.dimensions, mask=pa.array(missing)),
            ERROR: pa.array([e for _, e, _ in out], pa.string()),
        }
        for name, column in columns.items():
            result = result.append_column(name, column)
        return result.replace_schema_metadata({**(result.schema.metadata or {}),
                                               SCHEMA_KEY: self._facts})

    def _check_columns(self, names: list[str]) -> None:
        wanted = [c for c in (self.record_column,) if c] or [self.text_column]
        wanted += [c for c in (self.id_column, self.source_column) if c]
        wanted += self.metadata_columns or []
        absent = [c for c in wanted if c not in names]
        if absent:
            raise ConfigurationError(
                f"column(s) {', '.join(map(repr, absent))} not in the dataset (its columns: "
                f"{', '.join(names)}); name the text with text_column= or record_column=")
        own = {self.id_column, self.record_column}
        clash = [c for c in OUTPUT_COLUMNS if c in names and c not in own]
        if clash:
            hint = " (pass id_column='id' if it is the records' own id)" if ID in clash else ""
            raise ConfigurationError(
                f"column(s) {', '.join(map(repr, clash))} would be overwritten by the embedding "
                f"stage's output{hint}; rename them first (ds.rename_columns)")

    def _records(self, row: dict[str, Any]) -> list[tuple[Record | None, str | None, str | None]]:
        """The row's records (several when chunked), or one (None, error, info) if it is bad."""
        source = row.get(self.source_column) if self.source_column else None
        position = source if isinstance(source, int) and not isinstance(source, bool) else -1
        raw, whole_file = self._raw(row)
        rid = raw.get("id") if isinstance(raw, Mapping) else None
        where = (None if position >= 0 else str(source) if source is not None
                 else f"a row (id {rid!r})" if rid is not None else "a row")
        try:
            if isinstance(raw, _BadJSON):
                raise InvalidInputError(f"{where or f'record {position}'}: {raw.reason}", position)
            rec = prepare_record(max(position, 0), raw, where=where)
        except (InvalidInputError, InvalidInputTypeError) as exc:
            if self.on_error == "raise":
                raise
            info = json.dumps({"position": position, "id": rid}, default=str)
            return [(None, str(exc), info)]
        if self.chunk_tokens is None:
            return [(rec, None, None)]
        from qwen3_embed_cli import chunk_record

        named = str(source) if self.record_column and source is not None else None
        chunks = chunk_record(rec, named, whole_file and named is not None,
                              self.embedder.count_tokens, self.chunk_tokens, self.overlap_tokens)
        return [(prepare_record(rec.position, c, where=where), None, None) for c in chunks]

    def _raw(self, row: dict[str, Any]) -> tuple[object, bool]:
        """(the row as ``ingest`` takes a record, whether it is a whole text)."""
        if self.record_column is not None:
            value = row.get(self.record_column)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    return _BadJSON(f"not valid JSON ({exc.msg})"), False
            return value, isinstance(value, str)
        skip = {self.text_column, self.id_column}
        keep = self.metadata_columns if self.metadata_columns is not None else [
            c for c in row if c not in skip]
        raw: dict[str, Any] = {c: row[c] for c in keep if c not in skip}
        raw["text"] = row.get(self.text_column)
        if self.id_column is not None:
            raw["id"] = row.get(self.id_column)
        return raw, False


class _BadJSON:
    """A record column value that is not JSON (reported like any bad record)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _stored_form(rec: Record) -> str:
    """The record as the datasinks store it (``ingest``'s record form), as JSON."""
    return json.dumps({"id": rec.record_id, "text": rec.text, "metadata": rec.metadata},
                      ensure_ascii=False)


def _spec(
    spec: EmbedderSpec | Mapping[str, Any] | None, **options: Any
) -> EmbedderSpec:
    """The stage's spec: ``spec`` (an EmbedderSpec or its config), else the options."""
    if spec is None:
        return EmbedderSpec.from_options(**options)
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ConfigurationError(
            f"spec= already names the model; drop {', '.join(given)} (or drop spec=)")
    return spec if isinstance(spec, EmbedderSpec) else EmbedderSpec.from_config(spec)
