"""``ingest_dataset`` and ``ingest_files``: the embedding stage and a datasink, as ``ingest``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from qwen3_embed_core import ConfigurationError, EmbedderSpec, IngestReport, Qwen3EmbedError
from qwen3_embed_core.adapters import (
    Chunker,
    Cleanup,
    OnError,
    check_cleanup,
    check_profile,
    check_scope,
    embedder_record,
    file_roots,
    spec_of_profile,
    spec_record,
)

from ._sinks import StoreDatasink
from ._stage import Qwen3EmbedBatches, check_columns
from ._store import ray, start_writer, stop_writer, store_for, target

# Write tasks wait on the store, not the CPU: a small share keeps them from
# queueing behind the embedding actors when those hold every CPU.
WRITE_CPUS = 0.25


def ingest_dataset(
    ds: Any,
    uri: str,
    *,
    model: str | None = None,
    spec: EmbedderSpec | Mapping[str, Any] | None = None,
    text_column: str = "text",
    chunk_tokens: int | None = None,
    overlap_tokens: int = 64,
    batch_size: int = 64,
    actors: int = 1,
    num_cpus: float | None = None,
    cleanup: Cleanup | None = None,
    scope: str | None = None,
    dry_run: bool = False,
    on_error: OnError = "skip",
    **model_options: Any,
) -> IngestReport:
    """Embed a Ray dataset of records and sync it into a store; safe to re-run and retry.

    Rows are records, the shape ``qwen3_embed_qdrant.ingest`` takes: ``text``,
    optionally ``id``, ``metadata``, ``source`` (other columns become
    metadata). Point ids, hashes, skips and ``cleanup`` are ``ingest``'s: a
    re-run embeds only what changed, a task Ray retries rewrites the same
    points, and stale chunks are deleted on the driver after every write.
    The dataset's schema, the store and the model are checked on the driver
    before any actor starts.

    Args:
        ds: a ``ray.data.Dataset`` of records.
        uri: the store: ``qdrant+http://host:6333/docs``, ``chroma+http://host:8000/docs``,
            ``qdrant:./db/docs`` (embedded: written through one actor).
        model: which model (the core's one rule); None: the one the collection records.
        spec: an ``EmbedderSpec`` or its config instead of the model options.
        text_column: the column holding the text.
        chunk_tokens: cut texts into chunks of at most this many tokens (None: don't).
        overlap_tokens: tokens each chunk repeats from the previous one.
        batch_size: rows per embedding call (``map_batches``' batch size).
        actors: embedding actors (one model each).
        num_cpus: CPUs per actor (default 1; a local model gets that many threads).
        cleanup: None, ``"incremental"`` or ``"full"`` (``ingest``'s meaning).
        scope: the namespace of the records' sources (None: the default one).
        dry_run: embed, write and delete nothing; the report says what would be done.
        on_error: ``"skip"`` (report bad rows) or ``"raise"`` (stop at the first).
        model_options: ``backend``, ``base_url(s)``, ``api_key_env_var``,
            ``dimensions``, ``task``, ``instruction``, ``options`` and any backend
            option by name (``n_threads``, ``timeout``...).
    """
    scope = check_scope(scope)
    check_columns(list(ds.schema().names), text_column)
    return _run(ds, uri, model, spec, model_options, stage={"text_column": text_column,
                "scope": scope}, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens,
                batch_size=batch_size, actors=actors, num_cpus=num_cpus, cleanup=cleanup,
                scopes=[scope], dry_run=dry_run, on_error=on_error)


def ingest_files(
    paths: Sequence[str | Path],
    uri: str,
    *,
    spec: EmbedderSpec | None = None,
    namespace: str | None = None,
    chunk_tokens: int = 512,
    overlap_tokens: int = 64,
    batch_size: int = 64,
    actors: int = 1,
    num_cpus: float | None = None,
    cleanup: Cleanup | None = "incremental",
    dry_run: bool = False,
    on_error: OnError = "skip",
) -> tuple[IngestReport, list[str]]:
    """Files and folders (as ``qwen3-embed ingest`` reads them) chunked and embedded on Ray.

    The driver reads each file (one row per source: the same source ids,
    scopes and hashes as without Ray); the actors skip unchanged files, chunk
    and embed the others. Returns the report and the problems met reading.
    """
    Chunker(None, chunk_tokens, overlap_tokens)  # checks the sizes before reading
    rows, problems, scopes, unread = [], [], [], []
    seen: set[str] = set()
    for root, files, ns, is_dir in file_roots(paths, namespace):
        if is_dir:
            scopes.append(ns)
            if not files:
                problems.append(f"{root}: no .txt or .md files in this folder")
        for path in files:
            sid = f"{ns}/{path.relative_to(root).as_posix()}"
            if sid in seen:  # a file given twice (alone and in its folder) is one source
                continue
            seen.add(sid)
            try:
                content = path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{sid}: cannot read it as UTF-8 text ({exc})")
                unread.append(sid)
                continue
            kind = "jsonl" if path.suffix.lower() == ".jsonl" else "text"
            rows.append({"source": sid, "scope": ns, "kind": kind, "content": content})
    report = IngestReport(dry_run=dry_run)
    if rows:
        report = _run(ray.data.from_items(rows), uri, None, spec, {}, stage={"files": True},
                      chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens,
                      batch_size=batch_size, actors=actors, num_cpus=num_cpus,
                      cleanup=cleanup, scopes=scopes, dry_run=dry_run, on_error=on_error,
                      unread=unread)
    return report, problems


def _run(ds: Any, uri: str, model: str | None, spec: Any, options: dict[str, Any], *,
         stage: dict[str, Any], chunk_tokens: int | None, overlap_tokens: int,
         batch_size: int, actors: int, num_cpus: float | None, cleanup: Cleanup | None,
         scopes: list[str], dry_run: bool, on_error: OnError,
         unread: Sequence[str] = ()) -> IngestReport:
    where = target(uri)
    check_cleanup(cleanup)
    if chunk_tokens is not None:
        Chunker(None, chunk_tokens, overlap_tokens)
    given = {"model": model, **options}
    named = spec is not None or any(v is not None for v in given.values())
    # A named model is checked before the store is opened; else the store says which.
    current = _preflight(_resolve(spec, given, None, where)) if named else None
    writer, started = (start_writer(where, dry_run=dry_run) if where.path is not None
                       else (None, False))
    try:
        store = store_for(where)
        try:
            recorded = _call(store.profile)
        finally:
            store.close()
        spec = _resolve(spec, given, recorded, where)
        if recorded:
            record = current or _preflight(spec)
            if record["dimensions"] is None:  # a file's size is known once loaded
                record = {**record, "dimensions": recorded["dimensions"]}
            check_profile(recorded, record, f"{where.kind} collection {where.collection!r}")
        cpus = 1 if num_cpus is None else num_cpus
        _check_cpus(actors, cpus)
        kwargs = {"spec": spec.to_config(), "chunk_tokens": chunk_tokens,
                  "overlap_tokens": overlap_tokens, "store": str(where), "dry_run": dry_run,
                  "on_error": on_error, **stage}
        embedded = ds.map_batches(Qwen3EmbedBatches, fn_constructor_kwargs=kwargs,
                                  compute=ray.data.ActorPoolStrategy(size=actors),
                                  batch_size=batch_size, num_cpus=cpus, batch_format="pyarrow")
        sink = StoreDatasink(where, spec=spec, cleanup=cleanup, scopes=scopes, dry_run=dry_run,
                             protect=unread)
        # The library's own errors (a bad option, a refused collection) reach the driver
        # as themselves, not as Ray's "UDF failed" wrapper; the dataset's setting is restored.
        context = embedded.context
        original = context.raise_original_map_exception
        context.raise_original_map_exception = True
        try:
            embedded.write_datasink(sink, ray_remote_args={"num_cpus": WRITE_CPUS})
        except Exception as exc:
            _reraise(exc)
        finally:
            context.raise_original_map_exception = original
        assert sink.report is not None
        return sink.report
    finally:
        if started:
            stop_writer(writer)


def _call(method: Any) -> Any:
    try:
        return method()
    except Exception as exc:
        _reraise(exc)


def _resolve(spec: EmbedderSpec | Mapping[str, Any] | None, given: dict[str, Any],
             recorded: dict[str, Any] | None, where: Any) -> EmbedderSpec:
    """The model to use: ``spec``, else the options, else the one the collection records."""
    named = {k: v for k, v in given.items() if v is not None}
    if spec is not None:
        if named:
            raise ConfigurationError(
                f"spec= already names the model; drop {', '.join(sorted(named))}")
        return spec if isinstance(spec, EmbedderSpec) else EmbedderSpec.from_config(spec)
    if named:
        return EmbedderSpec.from_options(**given)
    found = spec_of_profile(recorded)
    if found is not None:
        return found
    raise ConfigurationError(
        f"no model given and {where} records none: pass model= (a GGUF path or a variant "
        "such as '0.6B-Q8_0' runs on each actor; a Model Runner tag or base_urls= asks servers)")


def _preflight(spec: EmbedderSpec) -> dict[str, Any]:
    """The vectors' record, failing fast on the driver if the model cannot be reached.

    A server is asked once, without retries; a local file's existence was
    checked when the spec was made (loading it here would double the memory).
    """
    if spec.backend == "local":
        return spec_record(spec)
    probe = EmbedderSpec.from_config(
        {**spec.to_config(), "options": {**spec.options, "max_retries": 0}})
    with probe.build() as emb:
        return embedder_record(emb)


def _check_cpus(actors: int, cpus: float) -> None:
    """Warn when the actors would take every CPU: upstream tasks (reads) could never run."""
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ConfigurationError(f"actors must be an int >= 1, not {actors!r}")
    total = ray.cluster_resources().get("CPU", 0)  # type: ignore[no-untyped-call]
    if actors * cpus >= total:
        warnings.warn(
            f"{actors} actors x {cpus} CPUs take all {total:g} CPUs of the cluster: if a stage "
            "before them runs as tasks (ray.data.read_*, map), it cannot be scheduled and "
            "the job waits; use fewer actors or num_cpus= below the cluster's CPUs",
            RuntimeWarning, stacklevel=4)


def _reraise(exc: BaseException) -> NoReturn:
    """Raise the library's own error found inside Ray's wrappers, else ``exc`` itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Qwen3EmbedError):
            raise current from None  # Ray's wrappers add only their own frames
        inner = getattr(current, "cause", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__
    raise exc
