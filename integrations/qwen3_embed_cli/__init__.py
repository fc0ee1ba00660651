"""The ``qwen3-embed`` command line: embed texts, ingest folders into a store, search it, rerank.

    qwen3-embed embed "some text" --model-path Qwen3-Embedding-0.6B-Q8_0.gguf
    qwen3-embed ingest docs/ --into qdrant-edge:./db/docs --model-path model.gguf
    qwen3-embed ingest docs/ --into qdrant-edge:./db/docs --prune      # also drop deleted files
    qwen3-embed ingest docs/ --into qdrant+http://host:6333/docs --model 0.6B-Q8_0 --ray
    qwen3-embed search "what is X?" --in qdrant-edge:./db/docs
    qwen3-embed search "what is X?" --in qdrant-edge:./db/docs --rerank rr.gguf --candidates 50
    qwen3-embed rerank "what is X?" "first document" "second document" --model reranker.gguf

Stores are named by URI (``qwen3_embed_core.stores``): ``qdrant-edge:PATH/COLLECTION``
(Qdrant Edge, the engine in-process), ``chroma:PATH/COLLECTION``,
``qdrant:PATH/COLLECTION`` (embedded, on disk), ``qdrant+http://HOST:6333/COLLECTION``
and ``chroma+http://HOST:8000/COLLECTION`` (servers). Chroma and Qdrant are
imported only for the store you name. This module is argument parsing and
printing; what it runs is the core's store layer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qwen3_embed_core import (
    DISTRIBUTION,
    TASKS,
    ConfigurationError,
    EmbedderSpec,
    IngestReport,
    Qwen3EmbedError,
    RerankerSpec,
    __version__,
)
from qwen3_embed_core.adapters import (
    Chunker,
    Inputs,
    check_profile,
    embedder_profile,
    file_roots,
    file_sources,
    search_in,
    spec_of_profile,
    sync,
)
from qwen3_embed_core.stores import (
    URI_HELP,
    Collection,
    StoreURI,
    StoreURIError,
    open_collection,
    parse_uri,
)

__all__ = ["build_parser", "main"]

PROG = "qwen3-embed"
MODEL_ENV = "QWEN3_EMBED_MODEL"  # default --model
RERANK_MODEL_ENV = "QWEN3_RERANK_MODEL"  # default reranker (rerank --model, search --rerank)


class UsageError(Qwen3EmbedError):
    """A command-line mistake that argparse cannot see (bad URI, missing file...)."""


def _uri(text: str) -> StoreURI:
    try:
        return parse_uri(text)
    except StoreURIError as exc:
        raise UsageError(str(exc)) from None


def _open(uri: StoreURI, create: bool) -> Collection:
    """The collection of ``uri``; a store that does not exist is a usage error."""
    try:
        return open_collection(uri, create=create)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def _embedder_for(col: Collection | None, uri: StoreURI, spec: EmbedderSpec | None,
                  create: bool) -> tuple[Any, EmbedderSpec]:
    """(embedder, spec): the one given, else the one the collection records."""
    if spec is None:
        profile = col.profile() if col is not None else None
        if profile is None and not create:
            raise UsageError(f"{uri} has no collection {uri.collection!r}")
        spec = spec_of_profile(profile)
        if spec is None:
            raise _no_model(uri)
    return spec.build(), spec


def _no_model(uri: StoreURI | None) -> UsageError:
    where = f" and {uri} records none" if uri else ""
    return UsageError(
        f"no model given{where}: pass --model (a GGUF path or a variant such as 0.6B-Q8_0 "
        f"runs locally; a Model Runner tag or --base-url asks a server), or set ${MODEL_ENV}"
    )


def _lines(name: str, what: str) -> list[tuple[int, str]]:
    """(line number, line) of a text file or stdin ('-'), UTF-8; blank lines refused."""
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, "rb") as stream:
                text = stream.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "convert it first (iconv -t UTF-8)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            raise UsageError(f"{name}:{number} is empty; one {what} per line, no blank lines")
        out.append((number, line))
    return out


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


# -- commands ----------------------------------------------------------------------


def cmd_embed(args: argparse.Namespace) -> int:
    texts = list(args.texts)
    if args.file:
        texts += [line for _, line in _lines(args.file, "text (each line gets one vector)")]
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
    try:  # fail before opening anything
        file_roots(args.paths, args.namespace)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    uri = _uri(args.into)
    spec = spec_from_args(args)
    cleanup = "full" if args.prune else "incremental"
    if args.ray is not None:
        return _ingest_on_ray(args, uri, spec, cleanup)
    # A dry run creates nothing, not even the store's folder.
    absent = args.dry_run and uri.path is not None and not uri.path.exists()
    col = None if absent else _open(uri, create=True)
    inputs = Inputs()
    try:
        emb, spec = _embedder_for(col, uri, spec, create=True)
        with emb:
            profile = embedder_profile(emb, spec)
            target = col
            if args.dry_run:
                stored = col.profile() if col is not None else None
                if stored:
                    check_profile(stored, profile, str(uri))
                target = col if stored is not None else None
            elif col is not None:
                col.ensure(profile)
            chunker = Chunker.of(emb, args.chunk_tokens, args.overlap_tokens)
            sources = file_sources(args.paths, chunker, inputs, namespace=args.namespace,
                                   on_error=args.on_error)
            report = sync(target, sources, embed=emb.embed_documents, cleanup=cleanup,
                          scopes=inputs.scopes, dry_run=args.dry_run,
                          batch_size=args.batch_size, progress=args.progress)
            model = f"{emb.model_name} ({emb.dimensions} dimensions)"
    finally:
        if col is not None:
            col.close()
    verb = "would ingest into" if args.dry_run else "ingested into"
    return _report(f"{verb} {uri} with {model}", report, inputs.problems)


def _report(done: str, report: IngestReport, problems: list[str]) -> int:
    """Print what an ingestion did (counted in chunks and sources) and every input it skipped."""
    print(f"{done}: {report.summary().replace(' records:', ' chunks:', 1)}")
    if problems or report.bad:
        print(f"{len(problems) + len(report.bad)} inputs skipped:")
        for line in [*problems, *map(str, report.bad)]:
            print(f"  {line}")
    return 0


def _ingest_on_ray(args: argparse.Namespace, uri: StoreURI, spec: EmbedderSpec | None,
                   cleanup: str) -> int:
    """``ingest --ray``: the same sources, chunks, ids and report, embedded by Ray actors.

    Files are read here (one row per source); the actors chunk and embed them
    (see ``qwen3_embed_ray.ingest_files``).
    """
    import logging

    try:
        import ray

        from qwen3_embed_ray import ingest_files
    except ImportError as exc:
        raise UsageError(
            f"--ray needs Ray Data: pip install '{DISTRIBUTION}[ray]' ({exc})"
        ) from exc
    if args.actors < 1:
        raise UsageError(f"--actors must be at least 1, not {args.actors}")
    started = not ray.is_initialized()  # a program calling main() may have a cluster already
    if started:  # ADDRESS, else $RAY_ADDRESS, else a new local cluster
        ray.init(address=args.ray or None, logging_level=logging.WARNING)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = args.progress
        report, problems = ingest_files(
            args.paths, str(uri), spec=spec, namespace=args.namespace,
            chunk_tokens=args.chunk_tokens, overlap_tokens=args.overlap_tokens,
            batch_size=args.batch_size, actors=args.actors, on_error=args.on_error,
            cleanup=cleanup, dry_run=args.dry_run)
    finally:
        if started:
            ray.shutdown()
    return _report(f"ingested into {uri} on Ray ({args.actors} actors)", report, problems)


def cmd_search(args: argparse.Namespace) -> int:
    uri = _uri(args.within)
    spec = spec_from_args(args)
    if args.rerank is None and args.candidates is not None:
        raise UsageError("--candidates sets how many hits --rerank reorders: add --rerank [MODEL]")
    rerank = None if args.rerank is None else reranker_spec(
        args.rerank, base_urls=args.rerank_base_url, api_key_env=args.api_key_env,
        instruction=args.rerank_instruction, options=args.rerank_option)
    col = _open(uri, create=False)
    try:
        emb, _ = _embedder_for(col, uri, spec, create=False)
        with emb:
            reranker = rerank.build() if rerank is not None else None
            try:
                hits = search_in(col, emb, args.query, args.limit, rerank=reranker,
                                 candidates=args.candidates)
            finally:
                if reranker is not None:
                    reranker.close()
            model = emb.model_name
    finally:
        col.close()
    if reranker is not None:
        print(f"candidates by {model} (cosine), reranked by {reranker.model_name} "
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
        docs += [line for _, line in _lines(args.file, "document")]
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
                       "them and write them into a store. Each file is a source, named by its "
                       "path within the folder given (under the folder's name): re-running skips "
                       "unchanged files without reading their chunks again, and replaces a "
                       "changed file's chunks (new ones written first, then the old deleted); "
                       "--prune also removes files that are gone.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="folder, .txt/.md file or .jsonl file")
    p.add_argument("--into", required=True, metavar="URI", help=f"the store: {URI_HELP}")
    p.add_argument("--prune", action="store_true",
                   help="also delete the sources of the folders given that are gone (files "
                        "deleted or renamed); default: only replace the chunks of changed files")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be written and deleted; change nothing")
    p.add_argument("--namespace", metavar="NAME",
                   help="the source ids' first part and the scope --prune works in (default: "
                        "each folder's own name)")
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
    p.add_argument("--limit", type=_positive, default=5, metavar="K",
                   help="hits to show (default 5)")
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
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}") from None
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
    except (UsageError, StoreURIError) as exc:
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
