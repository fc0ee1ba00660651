"""Sources and chunks: the one rule that turns files and records into chunk records.

The command line, Ray and the Python API all cut through here, so a chunk gets
the same id, text and metadata whichever way it was ingested.

Source ids. A file's source id is its path relative to the folder given,
under a namespace: ``NAMESPACE/REL/PATH`` where the namespace defaults to the
folder's own name (``docs/guide/intro.md`` for ``docs/guide/intro.md`` given
``docs``, from any working directory, by a relative or absolute path). A file
given alone is ``NAMESPACE/NAME`` with its parent folder's name as the
default namespace. A folder's namespace is also its *scope*: ``cleanup="full"``
deletes the sources of the scopes given that are absent, and nothing else.
Moving a folder keeps its name, so its sources keep their ids (nothing is
embedded again); renaming it (or passing another namespace) makes its files
new sources, and the old ones stay until a full sync of the old namespace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._chunking import chunk_by_tokens, chunk_text
from ._errors import ConfigurationError, InvalidInputError, InvalidInputTypeError
from ._inputs import check_text
from ._records import OnError, Record, content_hash, point_id, prepare_record
from ._sync import Source, source_hash

# What a folder is searched for; a .jsonl file is read when named on its own.
TEXT_SUFFIXES = (".txt", ".md")


# Bumped when the cutting rule changes, so sources chunked by an older rule are redone.
CHUNK_RULE = 2


@dataclass(frozen=True)
class Chunker:
    """How texts are cut: at most ``chunk_tokens`` tokens a chunk (as the model counts
    them, EOS and document instruction included), ``overlap_tokens`` repeated from the
    previous chunk. ``chunk_tokens=None``: texts are not cut.

    Build it with :meth:`of` an embedder: with a local model the text is
    tokenized once and cut on its token offsets (each chunk checked once);
    otherwise (a server) the cuts are found by counting tokens (``chunk_text``).
    """

    count_tokens: Callable[[str], int] | None = None
    chunk_tokens: int | None = None
    overlap_tokens: int = 0
    starts: Callable[[str], list[int | None] | None] | None = None
    overhead: int = 1

    def __post_init__(self) -> None:
        if self.chunk_tokens is not None:
            chunk_text("", len, self.chunk_tokens, self.overlap_tokens)  # checks the sizes

    @classmethod
    def of(cls, embedder: Any, chunk_tokens: int | None, overlap_tokens: int = 0) -> Chunker:
        """The chunker for ``embedder``'s tokens (its own offsets when it has them)."""
        from ._tokens import offsets_of

        starts, overhead = offsets_of(embedder)
        return cls(embedder.count_tokens, chunk_tokens, overlap_tokens, starts, overhead)

    @property
    def params(self) -> list[Any]:
        """What a source hash must include: other sizes make other chunks."""
        return [self.chunk_tokens, self.overlap_tokens if self.chunk_tokens else 0, CHUNK_RULE]

    def cut(self, text: str) -> list[str]:
        """The chunks of a validated text (the text itself when not cutting)."""
        if self.chunk_tokens is None:
            return [text]
        assert self.count_tokens is not None
        starts = self.starts(text) if self.starts is not None else None
        if starts is not None:
            return chunk_by_tokens(text, starts, self.count_tokens, self.chunk_tokens,
                                   self.overlap_tokens, self.overhead)
        return chunk_text(text, self.count_tokens, self.chunk_tokens, self.overlap_tokens)


def chunk_record(rec: Record, chunker: Chunker, source: str | None = None,
                 whole: bool = False) -> list[Record]:
    """One validated record cut into chunk records (the rule every surface shares).

    A whole text (a file) gives ``{source}#{i}`` ids; a record with an id
    keeps it when it fits in one chunk, else ``{id}#{i}``; a record without
    one gets ids from its text (within its source, when it has one).
    Metadata gains ``source``, ``chunk`` and ``chunks``.
    """
    pieces = chunker.cut(rec.text)
    if len(pieces) == 1 and pieces[0] == rec.text and not whole and chunker.chunk_tokens is None:
        return [rec]
    src = source if source is not None else rec.source
    out = []
    for i, piece in enumerate(pieces):
        if whole:
            rid: str | int | None = f"{src}#{i}"
        elif rec.record_id is not None:
            rid = rec.record_id if len(pieces) == 1 else f"{rec.record_id}#{i}"
        else:
            rid = None
        meta = {**rec.metadata, **({"source": src} if src else {}), "chunk": i,
                "chunks": len(pieces)}
        pid = (point_id(rid) if rid is not None else point_id(None, piece) if src is None
               else point_id(f"{src}@{content_hash(piece)}"))
        out.append(Record(rec.position, pid, rid, piece, meta, content_hash(piece), src))
    return out


@dataclass
class Inputs:
    """Files and folders read as sources: ``scopes`` (the folders' namespaces, for
    ``cleanup="full"``) and the ``problems`` met (unreadable files, bad lines...)."""

    scopes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def file_roots(paths: Sequence[str | Path], namespace: str | None = None
               ) -> list[tuple[Path, list[Path], str, bool]]:
    """(root folder, files, namespace, is a folder) per path given; ConfigurationError
    for one that does not exist. Files are sorted; folders searched recursively."""
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()
                                  or "/" in namespace):
        raise ConfigurationError(f"a namespace is a non-empty name without '/', not "
                                 f"{namespace!r}")
    out = []
    for arg in paths:
        given = Path(arg).expanduser()
        path = given.resolve()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in TEXT_SUFFIXES)
            out.append((path, files, namespace or path.name, True))
        elif path.is_file():
            out.append((path.parent, [path], namespace or path.parent.name, False))
        else:
            raise ConfigurationError(f"{arg}: no such file or folder")
    return out


def file_sources(paths: Sequence[str | Path], chunker: Chunker, inputs: Inputs, *,
                 namespace: str | None = None, on_error: OnError = "skip") -> Iterator[Source]:
    """The sources of files and folders (text files, JSONL files), read lazily."""
    roots = file_roots(paths, namespace)
    done: set[str] = set()  # a file given twice (alone and in its folder) is one source
    for root, files, ns, is_dir in roots:
        if is_dir:
            inputs.scopes.append(ns)
            if not files:
                inputs.problems.append(f"{root}: no .txt or .md files in this folder")
        for path in files:
            sid = f"{ns}/{path.relative_to(root).as_posix()}"
            if sid in done:
                continue
            done.add(sid)
            try:
                text = path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                inputs.problems.append(f"{sid}: cannot read it as UTF-8 text ({exc})")
                yield Source(sid, "", lambda: [], ns, failed=True)
                continue
            kind = "jsonl" if path.suffix.lower() == ".jsonl" else "text"
            yield text_source(sid, kind, text, chunker, inputs.problems, scope=ns,
                              on_error=on_error)


def text_source(sid: str, kind: str, text: str, chunker: Chunker, problems: list[str], *,
                scope: str, on_error: OnError = "skip") -> Source:
    """A source from a file's content: ``kind`` ``"text"`` (one text) or ``"jsonl"``
    (one record a line). Its hash covers the content and the chunk sizes."""
    digest = source_hash(kind, text, chunker.params)
    if kind == "jsonl":
        return Source(sid, digest, lambda: _jsonl_chunks(sid, text, chunker, problems,
                                                         on_error), scope)

    def chunks() -> list[Record]:
        try:
            clean = check_text(text)
        except (InvalidInputError, InvalidInputTypeError) as exc:
            if on_error == "raise":
                raise type(exc)(f"{sid}: {exc}", 0) from None
            problems.append(f"{sid}: {exc}")
            return []
        rec = Record(0, point_id(sid), None, clean, {}, content_hash(clean), sid)
        return chunk_record(rec, chunker, sid, whole=True)

    return Source(sid, digest, chunks, scope, head=point_id(f"{sid}#0"))


def _jsonl_chunks(sid: str, text: str, chunker: Chunker, problems: list[str],
                  on_error: OnError) -> Iterator[Record]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{sid}:{number}"
        try:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{where}: not valid JSON ({exc.msg})", number) from None
            if isinstance(raw, dict):
                raw = {k: v for k, v in raw.items() if k != "source"}  # the file is the source
            rec = prepare_record(number, raw, where=where)
        except (InvalidInputError, InvalidInputTypeError) as exc:
            if on_error == "raise":
                raise
            problems.append(str(exc))
            continue
        for chunk in chunk_record(rec, chunker, sid):
            yield Record(chunk.position, chunk.id, chunk.record_id, chunk.text,
                         {**chunk.metadata, "line": number}, chunk.hash, sid)
