"""``ingest_dataset``: the embedding stage and a datasink, with ``ingest``'s guarantees."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from qwen3_embed_core import ConfigurationError, EmbedderSpec, IngestReport, Qwen3EmbedError
from qwen3_embed_core.adapters import OnError, embedder_record, spec_record

from ._sinks import ChromaDatasink, QdrantDatasink, _StoreDatasink
from ._stage import Qwen3EmbedBatches
from ._stores import Store, Target, check_facts, ray, start_writer, stop_writer

# Write tasks wait on the store, not the CPU: a small share keeps them from
# queueing behind the embedding actors when those hold every CPU.
WRITE_CPUS = 0.25


def ingest_dataset(
    ds: Any,
    uri: str,
    *,
    model: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    base_urls: Sequence[str] | None = None,
    api_key_env_var: str | None = None,
    dimensions: int | None = None,
    task: str | None = None,
    instruction: str | None = None,
    options: Mapping[str, Any] | None = None,
    spec: EmbedderSpec | Mapping[str, Any] | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    record_column: str | None = None,
    source_column: str | None = None,
    metadata_columns: Sequence[str] | None = None,
    chunk_tokens: int | None = None,
    overlap_tokens: int = 64,
    batch_size: int = 64,
    actors: int = 1,
    num_cpus: float | None = None,
    on_error: OnError = "skip",
    **named_options: Any,
) -> IngestReport:
    """Embed a Ray dataset and write it into a store; safe to re-run, safe to retry.

    Point ids and content hashes are ``ingest``'s, so a re-run looks records
    up before embedding and skips what is stored unchanged, and a task Ray
    retries rewrites the same points instead of adding new ones. The store
    and the model are checked on the driver first: an unreachable one is a
    clear error at once, not a stuck job.

    Args:
        ds: a ``ray.data.Dataset`` with a text column (or a JSON record column).
        uri: the store, as the CLI names it: ``qdrant+http://host:6333/docs``,
            ``chroma+http://host:8000/docs``, ``qdrant:./db/docs`` (embedded).
        model: which model (the core's one rule); None: the one the collection records.
        backend: ``"local"`` or ``"model-runner"`` (inferred when None).
        base_url: one server URL (model-runner).
        base_urls: several servers serving the model; each actor spreads over all.
        api_key_env_var: environment variable holding the server's API key
            (set it on the workers through ``runtime_env``).
        dimensions: Matryoshka size (None: the model's full size).
        task: a preset name or a task description (recorded with the collection).
        instruction: a complete query prefix instead of ``task``.
        options: backend options as a dict.
        spec: an ``EmbedderSpec`` or its config instead of the model options.
        text_column: the column holding the text.
        id_column: the column holding each record's own id (None: ids from the text).
        record_column: a column of JSON records instead of text/id columns.
        source_column: a column naming rows in error reports (int: the position).
        metadata_columns: columns stored as metadata (None: all the others).
        chunk_tokens: cut texts into chunks of at most this many tokens (None: don't).
        overlap_tokens: tokens each chunk repeats from the previous one.
        batch_size: rows per embedding call (``map_batches``' batch size).
        actors: embedding actors (one model each).
        num_cpus: CPUs per actor (default 1; a local model gets that many threads).
        on_error: ``"skip"`` (report bad rows) or ``"raise"`` (stop at the first).
        named_options: backend options by name (``n_threads``, ``timeout``...).
    """
    target = Target.parse(uri)
    model_options = dict(model=model, backend=backend, base_url=base_url, base_urls=base_urls,
                         api_key_env_var=api_key_env_var, dimensions=dimensions, task=task,
                         instruction=instruction, options=options, **named_options)
    named = spec is not None or any(v is not None for v in model_options.values())
    # A named model is checked before the store is opened; else the store says which.
    current = _preflight(_resolve(spec, model_options, None, target)) if named else None
    writer, started = (start_writer(target) if target.path is not None else (None, False))
    try:
        recorded = _recorded(target, writer)
        spec = _resolve(spec, model_options, recorded, target)
        check_facts(target, spec, current or _preflight(spec), recorded)
        stage = {"spec": spec.to_config(), "text_column": text_column, "id_column": id_column,
                 "record_column": record_column, "source_column": source_column,
                 "metadata_columns": metadata_columns, "chunk_tokens": chunk_tokens,
                 "overlap_tokens": overlap_tokens, "store": target.uri, "on_error": on_error}
        _check_cpus(actors, 1 if num_cpus is None else num_cpus)
        embedded = ds.map_batches(
            Qwen3EmbedBatches, fn_constructor_kwargs=stage,
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=batch_size, num_cpus=1 if num_cpus is None else num_cpus,
            batch_format="pyarrow")
        sink: _StoreDatasink = (QdrantDatasink if target.kind == "qdrant" else ChromaDatasink)(
            target.path or target.url or "", target.collection, spec=spec)
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


def _recorded(target: Target, writer: Any) -> dict[str, Any] | None:
    """The collection's record, read on the driver: the store must answer now."""
    if writer is not None:
        try:
            return ray.get(writer.recorded.remote())  # type: ignore[no-any-return]
        except Exception as exc:
            _reraise(exc)
    store = Store(target)
    try:
        return store.recorded()
    finally:
        store.close()


def _resolve(
    spec: EmbedderSpec | Mapping[str, Any] | None, given: dict[str, Any],
    recorded: dict[str, Any] | None, target: Target,
) -> EmbedderSpec:
    """The model to use: ``spec``, else the options, else the one the collection records."""
    named = {k: v for k, v in given.items() if v is not None}
    if spec is not None:
        if named:
            raise ConfigurationError(
                f"spec= already names the model; drop {', '.join(sorted(named))}")
        return spec if isinstance(spec, EmbedderSpec) else EmbedderSpec.from_config(spec)
    if named:
        return EmbedderSpec.from_options(**given)
    if recorded and "embedder" in recorded:
        return EmbedderSpec.from_config(recorded["embedder"])
    raise ConfigurationError(
        f"no model given and {target.uri} records none: pass model= (a GGUF path or a variant "
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
    total = ray.cluster_resources().get("CPU", 0)  # type: ignore[no-untyped-call]
    if actors * cpus >= total:
        warnings.warn(
            f"{actors} actors x {cpus} CPUs take all {total:g} CPUs of the cluster: if a stage "
            "before them runs as tasks (ray.data.read_*, map), it cannot be scheduled and "
            "the job waits; use fewer actors or num_cpus= below the cluster's CPUs",
            RuntimeWarning, stacklevel=3)


def _reraise(exc: BaseException) -> NoReturn:
    """Raise the library's own error found inside Ray's wrappers, else ``exc`` itself."""
    cause = _cause(exc)
    if cause is exc:
        raise exc
    raise cause from None  # Ray's wrappers add only their own frames


def _cause(exc: BaseException) -> BaseException:
    """The library's own error inside Ray's wrappers (task, actor, user-code errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Qwen3EmbedError):
            return current
        inner = getattr(current, "cause", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__
    return exc
