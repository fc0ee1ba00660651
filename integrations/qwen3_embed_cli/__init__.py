"""The ``qwen3-embed`` command line: embed texts, ingest folders into a store, search it, rerank.

    qwen3-embed embed "some text" --model-path Qwen3-Embedding-0.6B-Q8_0.gguf
    qwen3-embed ingest docs/ --into qdrant:./db/docs --model-path model.gguf
    qwen3-embed ingest docs/ --into qdrant+http://host:6333/docs --model 0.6B-Q8_0 --ray
    qwen3-embed search "what is X?" --in qdrant:./db/docs
    qwen3-embed search "what is X?" --in qdrant:./db/docs --rerank reranker.gguf --candidates 50
    qwen3-embed rerank "what is X?" "first document" "second document" --model reranker.gguf

Stores are named by URI: ``chroma:PATH/COLLECTION``, ``qdrant:PATH/COLLECTION``
(embedded, on disk), ``qdrant+http://HOST:6333/COLLECTION`` and
``chroma+http://HOST:8000/COLLECTION`` (servers). Chroma and Qdrant are
imported only for the store you name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from qwen3_embed_core import (
    DISTRIBUTION,
    TASKS,
    ConfigurationError,
    EmbedderSpec,
    Hit,
    IngestReport,
    InvalidInputError,
    Qwen3EmbedError,
    RerankerSpec,
    ServerUnavailableError,
    __version__,
    chunk_text,
)
from qwen3_embed_core.adapters import Record, prepare_record

__all__ = ["StoreURI", "chunk_record", "chunk_records", "iter_sources", "main", "parse_uri"]

PROG = "qwen3-embed"
MODEL_ENV = "QWEN3_EMBED_MODEL"  # default --model
RERANK_MODEL_ENV = "QWEN3_RERANK_MODEL"  # default reranker (rerank --model, search --rerank)
TEXT_SUFFIXES = (".txt", ".md")
URI_HELP = (
    "chroma:PATH/COLLECTION, qdrant:PATH/COLLECTION (embedded stores on disk), "
    "qdrant+http://HOST:PORT/COLLECTION or chroma+http://HOST:PORT/COLLECTION (servers)"
)


class UsageError(Qwen3EmbedError):
    """A command-line mistake that argparse cannot see (bad URI, missing file...)."""


# -- store URIs ------------------------------------------------------------------


@dataclass(frozen=True)
class StoreURI:
    """A parsed store URI: ``kind`` chroma|qdrant, ``path`` (embedded) or ``url`` (server)."""

    kind: str
    collection: str
    path: Path | None = None
    url: str | None = None

    def __str__(self) -> str:
        where = self.url if self.url else str(self.path)
        return f"{self.kind}{'+' if self.url else ':'}{where}/{self.collection}"


def parse_uri(text: str) -> StoreURI:
    """Parse ``chroma:./db/docs``, ``qdrant+http://host:6333/docs``...; UsageError if malformed."""
    scheme, sep, rest = text.partition(":")
    kind, plus, transport = scheme.partition("+")
    bad = UsageError(f"bad store URI {text!r}: expected {URI_HELP}")
    if not sep or kind not in ("chroma", "qdrant") or not rest:
        raise bad
    if plus:
        if transport not in ("http", "https"):
            raise bad
        parts = urlsplit(f"{transport}:{rest}")
        segments = [s for s in parts.path.split("/") if s]
        if not parts.hostname or len(segments) != 1:
            raise UsageError(f"bad store URI {text!r}: a server URI is {kind}+{transport}://"
                             "HOST:PORT/COLLECTION (one path segment, the collection)")
        return StoreURI(kind, segments[0], url=f"{transport}://{parts.netloc}")
    folder, slash, collection = rest.rstrip("/").rpartition("/")
    if not slash or not folder or not collection:
        raise UsageError(f"bad store URI {text!r}: the path needs a folder and a collection, "
                         f"e.g. {kind}:./db/docs")
    return StoreURI(kind, collection, path=Path(folder).expanduser())


# -- stores ------------------------------------------------------------------------


class _Store:
    """What the CLI does with a store; one subclass per database."""

    def __init__(self, uri: StoreURI, create: bool) -> None:
        if uri.path is not None and not create and not uri.path.is_dir():
            raise UsageError(f"no {uri.kind} store at {uri.path} (ingest into it first)")
        self.uri = uri
        self.create = create  # make the collection if it is missing (ingest), else refuse

    def embedder(self, spec: EmbedderSpec | None) -> Any: ...

    def ingest(self, records: Iterator[dict[str, Any]], batch_size: int, on_error: str,
               progress: bool) -> IngestReport: ...

    def search(self, query: str, limit: int, rerank: Any = None,
               candidates: int | None = None) -> list[Hit]: ...

    def close(self) -> None: ...


class _Qdrant(_Store):
    def __init__(self, uri: StoreURI, create: bool) -> None:
        super().__init__(uri, create)
        from qdrant_client import QdrantClient

        import qwen3_embed_qdrant

        self.q = qwen3_embed_qdrant
        try:
            self.client = (QdrantClient(url=uri.url, check_compatibility=False) if uri.url
                           else QdrantClient(path=str(uri.path)))
        except RuntimeError as exc:  # embedded Qdrant: one process at a time
            raise UsageError(f"{uri}: {exc}") from exc
        self.spec: EmbedderSpec | None = None
        self._emb: Any = None

    def embedder(self, spec: EmbedderSpec | None) -> Any:
        if spec is None:  # the collection may say how its vectors were made
            record = self._record()
            if record is None and not self.create:
                raise UsageError(f"{self.uri} has no collection {self.uri.collection!r}")
            if not record or "embedder" not in record:
                raise _no_model(self.uri)
            spec = EmbedderSpec.from_config(record["embedder"])
        self.spec, self._emb = spec, spec.build()
        return self._emb

    def _record(self) -> dict[str, Any] | None:
        return self.q.collection_record(self.client, self.uri.collection)

    def ingest(self, records: Iterator[dict[str, Any]], batch_size: int, on_error: str,
               progress: bool) -> IngestReport:
        return self.q.ingest(self.client, self.uri.collection, self._emb, records, batch_size,
                             on_error=on_error, progress=progress, spec=self.spec)

    def search(self, query: str, limit: int, rerank: Any = None,
               candidates: int | None = None) -> list[Hit]:
        return self.q.search(self.client, self.uri.collection, self._emb, query, limit,
                             rerank=rerank, candidates=candidates)

    def close(self) -> None:
        if self._emb is not None:
            self._emb.close()
        self.client.close()


class _Chroma(_Store):
    def __init__(self, uri: StoreURI, create: bool) -> None:
        super().__init__(uri, create)
        import chromadb
        from chromadb.config import Settings

        import qwen3_embed_chroma

        self.c = qwen3_embed_chroma
        settings = Settings(anonymized_telemetry=False)  # never phone home
        if uri.url:
            parts = urlsplit(uri.url)
            try:
                self.client = chromadb.HttpClient(
                    host=parts.hostname or "", ssl=parts.scheme == "https", settings=settings,
                    port=parts.port or (443 if parts.scheme == "https" else 8000))
            except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
                raise ServerUnavailableError(f"cannot reach Chroma at {uri.url}: {exc}") from exc
        else:
            self.client = chromadb.PersistentClient(str(uri.path), settings=settings)
        self.collection: Any = None
        self.function: Any = None

    def embedder(self, spec: EmbedderSpec | None) -> Any:
        name = self.uri.collection
        if spec is not None:
            ef = self.c.Qwen3EmbeddingFunction(spec=spec)
            self.collection = (
                self.client.get_or_create_collection(name, embedding_function=ef) if self.create
                else self._get(name, embedding_function=ef))
        else:  # no model given: the collection's own function, if it has one
            self.collection = self._get(name)
        self.function = self.c.function_of(self.collection)
        return self.function.embedder

    def _get(self, name: str, **kwargs: Any) -> Any:
        from chromadb.errors import NotFoundError

        try:
            return self.client.get_collection(name, **kwargs)
        except NotFoundError:
            raise UsageError(f"{self.uri} has no collection {name!r}") from None

    def ingest(self, records: Iterator[dict[str, Any]], batch_size: int, on_error: str,
               progress: bool) -> IngestReport:
        return self.c.ingest(self.collection, records, batch_size=batch_size,
                             on_error=on_error, progress=progress)

    def search(self, query: str, limit: int, rerank: Any = None,
               candidates: int | None = None) -> list[Hit]:
        return self.c.search(self.collection, query, limit, rerank=rerank, candidates=candidates)

    def close(self) -> None:
        if self.function is not None:
            self.function.close()


def open_store(uri: StoreURI, create: bool) -> _Store:
    """Open the store a URI names (``create``: for writing; else it must exist)."""
    return (_Qdrant if uri.kind == "qdrant" else _Chroma)(uri, create)


def _no_model(uri: StoreURI | None) -> UsageError:
    where = f" and {uri} records none" if uri else ""
    return UsageError(
        f"no model given{where}: pass --model (a GGUF path or a variant such as 0.6B-Q8_0 "
        f"runs locally; a Model Runner tag or --base-url asks a server), or set ${MODEL_ENV}"
    )


# -- backend options ---------------------------------------------------------------


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from --option; VALUE is read as JSON when it parses (numbers, true)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def spec_from_args(args: argparse.Namespace) -> EmbedderSpec | None:
    """The embedder the model options describe (the core's one rule), or None when none
    were given (ingest/search then use the model the store records)."""
    model = args.model
    if model is None and args.model_path is None and not args.base_url and args.backend is None:
        model = os.environ.get(MODEL_ENV) or None
        if model is None:
            if any(v is not None for v in (args.dimensions, args.task, args.max_tokens)) \
                    or args.option:
                raise _no_model(None)
            return None
    try:
        return EmbedderSpec.from_options(
            args.backend, model=model, model_path=args.model_path,
            base_urls=args.base_url or None, api_key_env_var=args.api_key_env,
            dimensions=args.dimensions, task=args.task, options=dict(args.option or ()),
            max_tokens=args.max_tokens,
        )
    except ConfigurationError as exc:  # a contradiction on the command line
        raise UsageError(str(exc)) from None


def reranker_spec(
    model: str | None, *, model_path: str | None = None, backend: str | None = None,
    base_urls: Sequence[str] | None = None, api_key_env: str | None = None,
    instruction: str | None = None, max_tokens: int | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> RerankerSpec:
    """The reranker these options describe (the core's one rule); no model and no server:
    ``$QWEN3_RERANK_MODEL``, else a UsageError saying what to pass."""
    if not model and model_path is None and not base_urls and backend is None:
        model = os.environ.get(RERANK_MODEL_ENV) or None
        if model is None:
            raise UsageError(
                "no reranker given: name one (a Qwen3-Reranker GGUF path runs locally; a "
                f"Model Runner tag such as {RerankerSpec.DEFAULT_MODEL}:0.6B or a server URL "
                f"asks a server), or set ${RERANK_MODEL_ENV}")
    try:
        return RerankerSpec.from_options(
            backend, model=model or None, model_path=model_path, base_urls=base_urls or None,
            api_key_env_var=api_key_env, instruction=instruction, options=dict(options or ()),
            max_tokens=max_tokens,
        )
    except ConfigurationError as exc:  # a contradiction on the command line
        raise UsageError(str(exc)) from None


# -- sources -----------------------------------------------------------------------


def iter_sources(
    paths: Sequence[str], problems: list[str]
) -> Iterator[tuple[str, object, bool]]:
    """(source name, raw record, is a file) for every text file and JSONL line under ``paths``.

    Unreadable files and JSONL lines that are not JSON objects are added to
    ``problems`` (named by file and line), not silently dropped.
    """
    for arg in paths:
        root = Path(arg).expanduser()
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file()
                           and p.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                problems.append(f"{root}: no .txt or .md files in this folder")
        elif root.is_file():
            files = [root]
        else:
            raise UsageError(f"{arg}: no such file or folder")
        for path in files:
            name = _display(path)
            if path.suffix.lower() == ".jsonl":
                yield from _jsonl(path, name, problems)
                continue
            try:
                yield name, path.read_text(encoding="utf-8"), True
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{name}: cannot read it as UTF-8 text ({exc})")


def _jsonl(path: Path, name: str, problems: list[str]) -> Iterator[tuple[str, object, bool]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield f"{name}:{number}", json.loads(line), False
            except json.JSONDecodeError as exc:
                problems.append(f"{name}:{number}: not valid JSON ({exc.msg})")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def chunk_records(
    sources: Iterator[tuple[str, object, bool]], count_tokens: Any, chunk_tokens: int,
    overlap_tokens: int, problems: list[str], on_error: str,
) -> Iterator[dict[str, Any]]:
    """Validate each source record, cut its text into token chunks, yield one record per chunk.

    A file's chunks are ``{source}#{i}``; a JSONL record keeps its id when it
    fits in one chunk, else ``{id}#{i}``. Metadata gains ``source``,
    ``chunk`` and ``chunks``.
    """
    for source, raw, is_file in sources:
        try:
            rec = prepare_record(0, raw, where=source)
        except (InvalidInputError, TypeError) as exc:
            if on_error == "raise":
                raise
            problems.append(str(exc))
            continue
        yield from chunk_record(rec, source, is_file, count_tokens, chunk_tokens, overlap_tokens)


def chunk_record(
    rec: Record, source: str | None, is_file: bool, count_tokens: Any, chunk_tokens: int,
    overlap_tokens: int,
) -> list[dict[str, Any]]:
    """One validated record cut into token chunks, each a record (the rule of
    :func:`chunk_records`, shared with ``qwen3_embed_ray``).

    ``source``: where the record came from, kept as metadata ``source`` (None:
    not recorded); ``is_file``: a whole file, whose chunks are ``{source}#{i}``.
    """
    chunks = chunk_text(rec.text, count_tokens, chunk_tokens, overlap_tokens)
    out = []
    for i, chunk in enumerate(chunks):
        if is_file:
            rid: object = f"{source}#{i}"
        elif rec.record_id is not None:
            rid = rec.record_id if len(chunks) == 1 else f"{rec.record_id}#{i}"
        else:
            rid = None
        named = {"source": rec.metadata.get("source", source)} if source is not None else {}
        meta = {**rec.metadata, **named, "chunk": i, "chunks": len(chunks)}
        out.append({"id": rid, "text": chunk, "metadata": meta})
    return out


# -- commands ----------------------------------------------------------------------


def cmd_embed(args: argparse.Namespace) -> int:
    texts = list(args.texts)
    if args.file:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        with stream:
            for number, line in enumerate(stream, start=1):
                line = line.rstrip("\n")
                if not line.strip():
                    raise UsageError(f"{args.file}:{number} is empty; one text per line, "
                                     "no blank lines (each line gets one vector)")
                texts.append(line)
    if not texts:
        raise UsageError("nothing to embed: give TEXT arguments or --file F")
    spec = spec_from_args(args)
    if spec is None:
        raise _no_model(None)
    with spec.build() as emb:
        vectors = emb.embed_queries(texts) if args.query else emb.embed_documents(texts)
    if args.format == "npy":
        if args.output in (None, "-"):
            if sys.stdout.isatty():
                raise UsageError("--format npy writes binary: redirect stdout or pass -o FILE")
            np.save(sys.stdout.buffer, vectors)
            sys.stdout.buffer.flush()
        else:
            np.save(args.output, vectors)
        return 0
    body = "[\n" + ",\n".join(json.dumps([float(x) for x in row]) for row in vectors) + "\n]\n"
    if args.output in (None, "-"):
        sys.stdout.write(body)
    else:
        Path(args.output).write_text(body, encoding="utf-8")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    for arg in args.paths:  # fail before opening anything
        if not Path(arg).expanduser().exists():
            raise UsageError(f"{arg}: no such file or folder")
    uri = parse_uri(args.into)
    spec = spec_from_args(args)
    if args.ray is not None:
        return _ingest_on_ray(args, uri, spec)
    store = open_store(uri, create=True)
    problems: list[str] = []
    try:
        emb = store.embedder(spec)
        records = chunk_records(iter_sources(args.paths, problems), emb.count_tokens,
                                args.chunk_tokens, args.overlap_tokens, problems, args.on_error)
        report = store.ingest(records, args.batch_size, args.on_error, args.progress)
        model = f"{emb.model_name} ({emb.dimensions} dimensions)"
    finally:
        store.close()
    return _report(f"ingested into {uri} with {model}", report, problems)


def _report(done: str, report: IngestReport, problems: list[str]) -> int:
    """Print what an ingestion did (counted in chunks) and every input it skipped."""
    print(f"{done}: {report.summary().replace(' records:', ' chunks:', 1)}")
    if problems or report.bad:
        print(f"{len(problems) + len(report.bad)} inputs skipped:")
        for line in [*problems, *map(str, report.bad)]:
            print(f"  {line}")
    return 0


def _ingest_on_ray(args: argparse.Namespace, uri: StoreURI, spec: EmbedderSpec | None) -> int:
    """``ingest --ray``: the same records, ids and report, embedded by Ray actors.

    Sources are read here (file names and JSONL lines, as without --ray); the
    actors chunk and embed them (see ``qwen3_embed_ray.ingest_dataset``).
    """
    import logging

    try:
        import ray

        from qwen3_embed_ray import ingest_dataset
    except ImportError as exc:
        raise UsageError(
            f"--ray needs Ray Data: pip install '{DISTRIBUTION}[ray]' ({exc})"
        ) from exc
    if args.actors < 1:
        raise UsageError(f"--actors must be at least 1, not {args.actors}")
    problems: list[str] = []
    rows = [  # a JSONL line holding a bare string is a record, not a whole file
        {"source": name, "record": json.dumps(
            {"text": raw} if isinstance(raw, str) and not is_file else raw, ensure_ascii=False)}
        for name, raw, is_file in iter_sources(args.paths, problems)
    ]
    started = not ray.is_initialized()  # a program calling main() may have a cluster already
    if started:  # ADDRESS, else $RAY_ADDRESS, else a new local cluster
        ray.init(address=args.ray or None, logging_level=logging.WARNING)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = args.progress
        report = ingest_dataset(
            ray.data.from_items(rows), str(uri), spec=spec, record_column="record",
            source_column="source", chunk_tokens=args.chunk_tokens,
            overlap_tokens=args.overlap_tokens, batch_size=args.batch_size, actors=args.actors,
            on_error=args.on_error)
    finally:
        if started:
            ray.shutdown()
    return _report(f"ingested into {uri} on Ray ({args.actors} actors)", report, problems)


def cmd_search(args: argparse.Namespace) -> int:
    uri = parse_uri(args.within)
    spec = spec_from_args(args)
    if args.rerank is None and args.candidates is not None:
        raise UsageError("--candidates sets how many hits --rerank reorders: add --rerank [MODEL]")
    rerank = None if args.rerank is None else reranker_spec(
        args.rerank, base_urls=args.rerank_base_url, api_key_env=args.api_key_env,
        instruction=args.rerank_instruction, options=args.rerank_option)
    store = open_store(uri, create=False)
    try:
        emb = store.embedder(spec)
        reranker = rerank.build() if rerank is not None else None
        try:
            hits = store.search(args.query, args.limit, rerank=reranker,
                                candidates=args.candidates)
        finally:
            if reranker is not None:
                reranker.close()
    finally:
        store.close()
    if reranker is not None:
        print(f"candidates by {emb.model_name} (cosine), reranked by {reranker.model_name} "
              "(relevance P(yes))")
    if not hits:
        print(f"no results in {uri}")
    for rank, hit in enumerate(hits, start=1):
        source = hit.metadata.get("source") or hit.record_id or hit.id
        chunk = hit.metadata.get("chunk")
        where = f"{source}#{chunk}" if chunk is not None and hit.metadata.get("chunks", 1) > 1 \
            else str(source)
        snippet = " ".join(hit.text.split())
        cosine = "" if hit.vector_score is None else f"  (cosine {hit.vector_score:.3f})"
        print(f"{rank:>2}. {hit.score:.3f}{cosine}  {where}")
        print(f"    {snippet[:117] + '...' if len(snippet) > 120 else snippet}")
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    docs = list(args.documents)
    if args.file:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        with stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    raise UsageError(f"{args.file}:{number} is empty; one document per line, "
                                     "no blank lines")
                docs.append(line.rstrip("\n"))
    if not docs:
        raise UsageError("nothing to rerank: give DOC arguments or --file F (one per line)")
    spec = reranker_spec(args.model, model_path=args.model_path, backend=args.backend,
                         base_urls=args.base_url, api_key_env=args.api_key_env,
                         instruction=args.instruction, max_tokens=args.max_tokens,
                         options=args.option)
    with spec.build() as rr:
        top = None if args.top_n is None else min(args.top_n, len(docs))
        results = rr.rerank(args.query, docs, top_n=top)
    if args.format == "json":
        print(json.dumps([{"index": r.index, "score": float(r.score), "text": r.text}
                          for r in results], ensure_ascii=False, indent=1))
        return 0
    for rank, r in enumerate(results, start=1):
        snippet = " ".join(r.text.split())
        snippet = snippet[:97] + "..." if len(snippet) > 100 else snippet
        print(f"{rank:>2}. {r.score:.4f}  [{r.index}] {snippet}")
    return 0


# -- argument parsing --------------------------------------------------------------


def _model_arguments(group: Any, model_help: str) -> None:
    """The options that name a model and where it runs (the core's one rule), on ``group``."""
    group.add_argument("--model", metavar="MODEL", help=model_help)
    group.add_argument("--model-path", metavar="MODEL", help="alias of --model")
    group.add_argument("--backend", choices=("local", "model-runner"),
                       help="where the model runs (default: inferred from --model/--base-url)")
    group.add_argument("--base-url", metavar="URL", action="append",
                       help="server URL (default Model Runner's http://localhost:12434); "
                            "repeat for replicas")
    group.add_argument("--api-key-env", metavar="VAR",
                       help="environment variable holding the server's API key")


def build_parser() -> argparse.ArgumentParser:
    backend = argparse.ArgumentParser(add_help=False)
    group = backend.add_argument_group(
        "model (shared by every command)",
        f"--model names the model: a GGUF path or a variant (0.6B-Q8_0) runs in-process with "
        f"llama.cpp; a Model Runner tag (ai/qwen3-embedding:0.6B-F16) or --base-url asks a "
        f"server. --backend overrides that choice. Without a model: ${MODEL_ENV}, else "
        f"(ingest/search) the model the store records.")
    _model_arguments(group, "GGUF path, variant name (0.6B-Q8_0, 4B-Q4_K_M...) or Model "
                            "Runner tag / served model name (default ai/qwen3-embedding on a "
                            "server)")
    group.add_argument("--dimensions", type=int, metavar="D",
                       help="MRL size: keep the first D dimensions (32 to the model's full size)")
    group.add_argument("--task", metavar="T",
                       help=f"query instruction: a preset ({', '.join(TASKS)}) or a task "
                            "description (default web_search)")
    group.add_argument("--max-tokens", type=int, metavar="N",
                       help="local model: longest text accepted, in tokens (default: its context)")
    group.add_argument("--option", metavar="KEY=VALUE", action="append", type=_option,
                       help="any other backend option (n_threads=4, timeout=120, "
                            "max_retries=5...); repeatable")

    parser = argparse.ArgumentParser(
        prog=PROG, description="Qwen3-Embedding from the command line: embed texts, ingest "
        "documents into Chroma or Qdrant, search them; rerank with Qwen3-Reranker.",
        epilog=f"Stores: {URI_HELP}. Run '{PROG} COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} ({DISTRIBUTION})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("embed", parents=[backend], help="print the vectors of texts",
                       description="Embed texts and print their vectors (unit length, float32).")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    p.add_argument("--file", metavar="F", help="read texts from F, one per line ('-': stdin)")
    p.add_argument("--query", action="store_true",
                   help="embed as search queries (with the task instruction); default: documents")
    p.add_argument("--format", choices=("json", "npy"), default="json",
                   help="json: an array of arrays (default); npy: a numpy .npy file")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("ingest", parents=[backend], help="add documents to a store",
                       description="Chunk .txt/.md files (folders are searched recursively) and "
                       "JSONL records ({'id'?, 'text', 'metadata'?} per line) by tokens, embed "
                       "them and write them into a store. Re-running skips what is stored and "
                       "unchanged.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="folder, .txt/.md file or .jsonl file")
    p.add_argument("--into", required=True, metavar="URI", help=f"the store: {URI_HELP}")
    p.add_argument("--chunk-tokens", type=int, default=512, metavar="N",
                   help="tokens per chunk, as the model counts them (default 512)")
    p.add_argument("--overlap-tokens", type=int, default=64, metavar="N",
                   help="tokens each chunk repeats from the previous one (default 64)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B",
                   help="chunks embedded and written at a time (default 64)")
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                   help="bad input (empty text, bad JSON...): skip and report it (default), or "
                        "stop at the first")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar on stderr")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="embed on a Ray cluster: ADDRESS (ray://HOST:10001 or auto), else "
                        "$RAY_ADDRESS, else a local one (needs the ray extra)")
    p.add_argument("--actors", type=int, default=1, metavar="N",
                   help="with --ray: embedding actors, one model each (default 1)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", parents=[backend], help="query a store",
                       description="Print the chunks nearest to a query, best first, with "
                       "cosine scores and sources.")
    p.add_argument("query", metavar="QUERY", help="the search query")
    p.add_argument("--in", dest="within", required=True, metavar="URI",
                   help=f"the store: {URI_HELP}")
    p.add_argument("--limit", type=int, default=5, metavar="K", help="hits to show (default 5)")
    group = p.add_argument_group(
        "reranking", "Two-stage search: fetch --candidates hits by vector, reorder them with a "
        "Qwen3-Reranker and show the --limit most relevant (score: P(yes) in [0, 1]; the "
        "cosine beside it). --api-key-env serves both servers.")
    group.add_argument("--rerank", nargs="?", const="", metavar="MODEL",
                       help=f"rerank with MODEL: a Qwen3-Reranker GGUF path (local) or a Model "
                            f"Runner tag (ai/qwen3-reranker:0.6B); no MODEL: ${RERANK_MODEL_ENV}")
    group.add_argument("--candidates", type=_positive, metavar="K",
                       help="hits fetched by vector for --rerank (default max(4 x limit, 20))")
    group.add_argument("--rerank-base-url", metavar="URL", action="append",
                       help="server of the reranker (implies model-runner); repeat for replicas")
    group.add_argument("--rerank-instruction", metavar="I",
                       help="what relevance means (default: the model card's web-search one)")
    group.add_argument("--rerank-option", metavar="KEY=VALUE", action="append", type=_option,
                       help="a backend option of the reranker (n_threads=4...); repeatable")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("rerank", parents=[_rerank_parent()],
                       help="order documents by relevance to a query",
                       description="Score each document against the query with a Qwen3-Reranker "
                       "(P(yes) in [0, 1], the model card's formula) and print them best first.")
    p.add_argument("query", metavar="QUERY", help="the query")
    p.add_argument("documents", nargs="*", metavar="DOC", help="documents to rerank")
    p.add_argument("--file", metavar="F", help="read documents from F, one per line ('-': stdin)")
    p.add_argument("--top-n", type=_positive, metavar="N", help="show the N best (default: all)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: rank, score, [index] and text (default); json: [{index, score, "
                        "text}] best first")
    p.set_defaults(func=cmd_rerank)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text}")
    return value


def _rerank_parent() -> argparse.ArgumentParser:
    """The reranker's model options (the rule of --model, without the embedder's options)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "reranker", f"--model names a Qwen3-Reranker: a GGUF path runs in-process; "
        f"a Model Runner tag (ai/qwen3-reranker:0.6B) or --base-url asks a server (Model Runner, "
        f"or llama-server --reranking). Without one: ${RERANK_MODEL_ENV}.")
    _model_arguments(group, "GGUF path or Model Runner tag")
    group.add_argument("--instruction", metavar="I",
                       help="what relevance means (default: the model card's web-search one)")
    group.add_argument("--max-tokens", type=int, metavar="N",
                       help="local model: longest (query, document) prompt, in tokens")
    group.add_argument("--option", metavar="KEY=VALUE", action="append", type=_option,
                       help="any other backend option (n_threads=4, timeout=120...); repeatable")
    return parent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        parser.exit(2, f"{PROG}: error: {exc}\n")
    except (Qwen3EmbedError, OSError) as exc:
        parser.exit(1, f"{PROG}: error: {exc}\n")
    except Exception as exc:
        if not type(exc).__module__.startswith(("chromadb", "qdrant_client")):
            raise  # a bug: keep the traceback
        parser.exit(1, f"{PROG}: error: {type(exc).__name__}: {exc}\n")  # the store refused
    except KeyboardInterrupt:
        parser.exit(130, f"{PROG}: interrupted\n")
    return 0  # pragma: no cover - parser.exit raised


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
