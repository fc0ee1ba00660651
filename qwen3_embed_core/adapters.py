"""What framework adapters build on: the public surface for integrations.

An adapter (LangChain, LlamaIndex, Chroma, Qdrant, Ray, the CLI, or your
own) needs four things from the core, all here:

* **Options → model.** :func:`embedder_from_fields` and
  :func:`reranker_from_fields` turn an adapter's flat fields into a model
  through :meth:`EmbedderSpec.from_options` — the one rule for ``model``,
  ``backend``, ``base_url`` and backend options — so every adapter reads them
  identically and refuses conflicts in the same words.
* **Records.** :class:`Record`, :func:`prepare_record`: the ids, hashes and
  bad-record rules every store shares.
* **Collection records.** :func:`embedder_record`, :func:`spec_record`,
  :func:`check_record`: the facts that make vectors comparable, and the
  refusal to mix them.
* **Reranked search.** :func:`rerank_candidates` and :func:`rerank_hits`: the
  two-stage search (candidates by vector, the best by the reranker) every store shares.
* **The store layer.** :func:`ingest_into`, :func:`search_in`, :func:`sync`,
  :func:`file_sources`, :func:`chunk_record`: sync ingestion and search on
  any :class:`~qwen3_embed_core.stores.Collection`, and the one chunking rule.
* **Errors.** :func:`missing_dependency` for an optional package that is absent.
"""

from __future__ import annotations

from collections.abc import Collection as Names
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from ._embedder import Qwen3Embedder
from ._errors import ConfigurationError, missing_dependency
from ._options import (
    API_KEY_ENV,
    BACKENDS,
    BackendName,
    LocalOptions,
    ModelRunnerOptions,
    ModelSpec,
    infer_backend,
    option_names,
)
from ._records import (
    BatchCallback,
    Hit,
    IngestReport,
    OnError,
    Record,
    prepare_record,
    total_of,
)
from ._reranker import Qwen3Reranker
from ._sources import Chunker, Inputs, chunk_record, file_roots, file_sources, text_source
from ._spec import (
    EmbedderSpec,
    RerankerSpec,
    check_record,
    embedder_record,
    spec_record,
    vector_record,
)
from ._sync import (
    Source,
    apply_points,
    check_cleanup,
    check_scope,
    cleanup_sources,
    record_sources,
    source_hash,
    sync,
)
from .stores import Cleanup, Collection, Point, check_profile

__all__ = [
    "API_KEY_ENV",
    "BACKENDS",
    "MODEL_ARGUMENTS",
    "BackendName",
    "BatchCallback",
    "Chunker",
    "Cleanup",
    "Collection",
    "EmbedderSpec",
    "Inputs",
    "LocalOptions",
    "ModelRunnerOptions",
    "OnError",
    "Point",
    "Record",
    "RerankerSpec",
    "Source",
    "apply_points",
    "check_cleanup",
    "check_limit",
    "check_record",
    "check_scope",
    "chunk_record",
    "cleanup_sources",
    "embedder_from_fields",
    "embedder_profile",
    "embedder_record",
    "file_roots",
    "file_sources",
    "infer_backend",
    "ingest_into",
    "missing_dependency",
    "model_from_fields",
    "prepare_record",
    "record_sources",
    "rerank_candidates",
    "rerank_hits",
    "reranker_from_fields",
    "search_in",
    "source_hash",
    "spec_from_fields",
    "spec_of_profile",
    "spec_record",
    "sync",
    "text_source",
    "vector_record",
]

# The arguments of ModelSpec.from_options that name the model and where it runs.
MODEL_ARGUMENTS = frozenset(
    {"backend", "model", "model_path", "base_url", "base_urls", "api_key_env_var", "options"}
)

S = TypeVar("S", bound=ModelSpec)


def _accepted(spec_type: type[ModelSpec]) -> frozenset[str]:
    own = set(spec_type.__dataclass_fields__) - set(ModelSpec.__dataclass_fields__)
    return MODEL_ARGUMENTS | own | option_names("local") | option_names("model-runner")


def spec_from_fields(
    spec_type: type[S],
    values: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
) -> S:
    """The spec an adapter's fields describe (fields it does not know are ignored).

    Args:
        spec_type: :class:`EmbedderSpec` or :class:`RerankerSpec`.
        values: the adapter's fields by name (None: the default).
        defaults: options applied only when the inferred backend takes them.
    """
    # A key in defaults is the adapter's own field (a batch size it also uses itself).
    accepted = _accepted(spec_type) - set(defaults or ())
    kwargs = {k: v for k, v in values.items() if k in accepted and v is not None}
    return spec_type.from_options(**kwargs, defaults=defaults)


def _secret(value: object) -> str | None:
    """Text of an API key given as text or as a secret (pydantic's ``SecretStr``)."""
    if value is None:
        return None
    reveal = getattr(value, "get_secret_value", None)
    return str(reveal()) if reveal is not None else str(value)


def model_from_fields(
    spec_type: type[S],
    values: Mapping[str, Any],
    *,
    explicit: Names[str],
    shared: Any = None,
    shared_name: str = "embedder",
    defaults: Mapping[str, Any] | None = None,
) -> tuple[S | None, Any]:
    """(spec, built model) for an adapter's fields, or (None, ``shared``) when one is shared.

    Args:
        spec_type: :class:`EmbedderSpec` or :class:`RerankerSpec`.
        values: the adapter's fields by name; ``api_key`` as text or a secret.
        explicit: the field names the user set. A key that came from the
            environment is not refused by the local backend, and options set
            next to a ``shared`` model are refused instead of ignored.
        shared: an already built model to use as is.
        shared_name: the adapter's name for ``shared``, for messages.
        defaults: options applied only when the inferred backend takes them.
    """
    if shared is not None:
        settable = (_accepted(spec_type) | {"api_key"}) - set(defaults or ())
        clash = sorted(k for k in explicit if k in settable and values.get(k) is not None)
        if clash:
            raise ConfigurationError(
                f"{shared_name}= is already configured; drop {', '.join(clash)} "
                "(set them when building it)"
            )
        return None, shared
    spec = spec_from_fields(spec_type, values, defaults=defaults)
    key = _secret(values.get("api_key"))
    if spec.backend == "local" and "api_key" not in explicit:
        key = None  # an environment default only matters to HTTP
    return spec, spec.build(api_key=key)  # type: ignore[attr-defined]


def embedder_from_fields(
    values: Mapping[str, Any],
    *,
    explicit: Names[str],
    embedder: Qwen3Embedder | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Qwen3Embedder:
    """The :class:`Qwen3Embedder` an adapter's fields describe, or the shared ``embedder``.

    Args:
        values: the adapter's fields by name (``model``, ``backend``, ``dimensions``,
            backend options, ``options``...; others are ignored).
        explicit: the field names the user set.
        embedder: an embedder to share instead of building one.
        defaults: options applied only when the inferred backend takes them.
    """
    _, built = model_from_fields(
        EmbedderSpec, values, explicit=explicit, shared=embedder, defaults=defaults
    )
    assert isinstance(built, Qwen3Embedder)
    return built


def reranker_from_fields(
    values: Mapping[str, Any],
    *,
    explicit: Names[str],
    reranker: Qwen3Reranker | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Qwen3Reranker:
    """The ``Qwen3Reranker`` an adapter's fields describe, or the shared ``reranker``.

    Args:
        values: the adapter's fields by name (``model``, ``backend``, ``instruction``,
            backend options, ``options``...; others are ignored).
        explicit: the field names the user set.
        reranker: a reranker to share instead of building one.
        defaults: options applied only when the inferred backend takes them.
    """
    _, built = model_from_fields(
        RerankerSpec, values, explicit=explicit, shared=reranker, shared_name="reranker",
        defaults=defaults,
    )
    assert isinstance(built, Qwen3Reranker)
    return built


# -- reranked search: candidates by vector, the best of them by the reranker ----------

# Candidates a reranked search fetches when none are named. The reranker can
# only reorder what the vector search found, so it sees several times what is
# kept (the usual retrieve-then-rerank setting: a few dozen for a handful).
RERANK_CANDIDATES_FACTOR, RERANK_CANDIDATES_MIN = 4, 20


def rerank_candidates(limit: int, rerank: object, candidates: int | None) -> int:
    """How many hits a search fetches by vector, with its arguments checked.

    Args:
        limit: hits the search returns.
        rerank: the reranker, or None for a plain vector search.
        candidates: hits to fetch for the reranker (None: ``max(4 * limit, 20)``).
    """
    if rerank is None:
        if candidates is not None:
            raise ConfigurationError(
                "candidates= sets the first stage of a reranked search; pass rerank= too, "
                "or drop candidates="
            )
        return limit
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"limit={limit!r} must be an int >= 1")
    if candidates is None:
        return max(RERANK_CANDIDATES_FACTOR * limit, RERANK_CANDIDATES_MIN)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < limit:
        raise ConfigurationError(
            f"candidates={candidates!r} must be an int >= limit ({limit}): the reranker "
            "keeps the best limit of the candidates"
        )
    return candidates


def rerank_hits(
    reranker: Qwen3Reranker, query: str, hits: Sequence[Hit], limit: int
) -> list[Hit]:
    """The ``limit`` best of a vector search's ``hits`` by the reranker, best first.

    Each returned hit's ``score`` is the relevance score P(yes) in [0, 1] and
    its ``vector_score`` the cosine it was found with.

    Args:
        reranker: the ``Qwen3Reranker`` that orders the candidates.
        query: the search query, as the user wrote it (no embedding instruction).
        hits: the vector search's candidates.
        limit: hits to keep.
    """
    if not hits:
        return []
    ranked = reranker.rerank(query, [h.text for h in hits], top_n=min(limit, len(hits)))
    return [
        replace(hits[r.index], score=float(r.score), vector_score=hits[r.index].score)
        for r in ranked
    ]


# -- the store layer: profiles, ingestion and search on any Collection -----------------


def embedder_profile(embedder: Qwen3Embedder, spec: EmbedderSpec | None = None) -> dict[str, Any]:
    """What a collection records about ``embedder``'s vectors: the four facts of
    :func:`embedder_record` and, when known, ``"embedder"``: the spec that rebuilds it
    (``spec``, else the one it was built from). Never a secret."""
    spec = spec if spec is not None else embedder.spec
    record = embedder_record(embedder)
    return {**record, **({"embedder": spec.to_config()} if spec is not None else {})}


def ingest_into(
    collection: Collection,
    embedder: Qwen3Embedder,
    records: Iterable[object],
    *,
    spec: EmbedderSpec | None = None,
    batch_size: int = 64,
    on_error: OnError = "skip",
    progress: bool = False,
    on_batch: BatchCallback | None = None,
    cleanup: Cleanup | None = None,
    scope: str | None = None,
    dry_run: bool = False,
) -> IngestReport:
    """Sync ``records`` into ``collection`` (created for ``embedder``'s vectors if needed).

    The body of every store's ``ingest``: records are grouped into sources
    (their ``source`` key; a record without one is its own source), and
    ``cleanup``/``scope``/``dry_run`` mean what they mean in ``sync``.
    """
    check_cleanup(cleanup)
    scope = check_scope(scope)
    profile = embedder_profile(embedder, spec)
    target: Collection | None = collection
    if dry_run:  # validate, never create
        stored = collection.profile()
        if stored:
            check_profile(stored, profile, f"{collection.uri}")
        elif stored is None:
            target = None
    else:
        collection.ensure(profile)
    report = IngestReport()
    sources = record_sources(records, report, scope=scope, on_error=on_error)
    return sync(target, sources, embed=embedder.embed_documents, cleanup=cleanup,
                scopes=[scope], dry_run=dry_run, batch_size=batch_size, report=report,
                progress=progress, on_batch=on_batch, total=total_of(records))


def check_limit(limit: object) -> int:
    """A search's ``limit`` checked: an int >= 1."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"limit={limit!r} must be an int >= 1 (hits to return)")
    return limit


def search_in(
    collection: Collection,
    embedder: Qwen3Embedder,
    query: str,
    limit: int = 5,
    where: Any = None,
    *,
    rerank: Qwen3Reranker | None = None,
    candidates: int | None = None,
) -> list[Hit]:
    """The ``limit`` best hits for ``query`` in ``collection`` (reranked with ``rerank=``).

    The collection must have been made for ``embedder``'s vectors (its profile is checked).
    """
    check_limit(limit)
    fetch = rerank_candidates(limit, rerank, candidates)
    stored = collection.profile()
    if stored is None:
        raise ConfigurationError(
            f"{collection.uri} has no collection {collection.uri.collection!r}")
    if not stored:
        raise ConfigurationError(
            f"{collection.uri} has no qwen3-embed record; it was not made by qwen3-embed's "
            "ingest: cannot check its vectors match this embedder")
    check_profile(stored, embedder_record(embedder), f"collection {collection.uri.collection!r}")
    hits = collection.search(embedder.embed_query(query), fetch, where)
    return hits if rerank is None else rerank_hits(rerank, query, hits, limit)


def spec_of_profile(profile: Mapping[str, Any] | None) -> EmbedderSpec | None:
    """The spec a collection's profile records (None: it records none)."""
    if not profile or "embedder" not in profile:
        return None
    return EmbedderSpec.from_config(profile["embedder"])
