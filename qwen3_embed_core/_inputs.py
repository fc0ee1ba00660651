"""Instruction formatting and input validation, shared by every backend."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._errors import ConfigurationError, InvalidInputError, InvalidInputTypeError
from ._qwen3 import DEFAULT_TASK_NAME, LLAMA_CPP_UNICODE_GAPS, QUERY_TEMPLATE, TASKS, Task
from ._tokenizer import qwen3_nfc

TaskLike = str | Task


@dataclass(frozen=True)
class Instruction:
    """The prefixes put in front of queries and documents.

    ``query_prefix`` + query is exactly ``Instruct: {task}\\nQuery:{query}``
    for a task; ``document_prefix`` is empty for retrieval tasks and equal to
    the query prefix for symmetric ones.
    """

    query_prefix: str
    document_prefix: str = ""
    task: str | None = None

    def query(self, text: str) -> str:
        return _joined(self.query_prefix, text)

    def document(self, text: str) -> str:
        return _joined(self.document_prefix, text)


def _joined(prefix: str, text: str) -> str:
    # Qwen3's tokenizer normalises the whole input: a text that starts with a
    # combining mark composes with the prefix's last character.
    if not prefix:
        return text
    return qwen3_nfc(prefix + text)


def _instruction_text(name: str, text: str) -> str:
    """``text`` (a task or an instruction) checked and NFC-normalised, as the model reads it."""
    nul = text.find("\x00")
    if nul >= 0:
        raise ConfigurationError(
            f"{name}= contains a NUL byte at character {nul}; remove it (llama.cpp would "
            "silently drop everything after it)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(
            f"{name}= contains a lone surrogate {text[exc.start]!r} at character {exc.start}, "
            "which is not valid Unicode; fix the text"
        ) from None
    return qwen3_nfc(text)


def task_prefix(description: str) -> str:
    """The query prefix for a task description (the template with an empty query)."""
    return QUERY_TEMPLATE.format(task=description, query="")


def resolve_instruction(
    task: TaskLike | None = None, instruction: str | None = None
) -> Instruction:
    """Turn the user's ``task``/``instruction`` arguments into prefixes.

    ``task`` is a preset name from :data:`TASKS` (``"question_answering"``),
    a :class:`Task`, or free text used as the task description.
    ``instruction`` is a complete query prefix used verbatim, for models
    fine-tuned with another template; it excludes ``task``.
    """
    if instruction is not None:
        if task is not None:
            raise ConfigurationError("pass either task= or instruction=, not both")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigurationError("instruction= must be a non-empty string (a query prefix)")
        return Instruction(query_prefix=_instruction_text("instruction", instruction))
    if task is None:
        task = TASKS[DEFAULT_TASK_NAME]
    elif isinstance(task, str):
        if not task.strip():
            raise ConfigurationError(
                f"task= is empty; use a preset ({', '.join(TASKS)}) or a task description"
            )
        task = TASKS.get(task, Task(task))
    elif not isinstance(task, Task):
        raise ConfigurationError(
            f"task= must be a preset name, a task description or a Task, not {type(task).__name__}"
        )
    if not isinstance(task.description, str) or not task.description.strip():
        raise ConfigurationError("a Task's description must be a non-empty string")
    if not isinstance(task.symmetric, bool):
        raise ConfigurationError(f"Task.symmetric must be True or False, not {task.symmetric!r}")
    description = _instruction_text("task", task.description)
    prefix = task_prefix(description)
    return Instruction(
        query_prefix=prefix,
        document_prefix=prefix if task.symmetric else "",
        task=description,
    )


def _where(index: int | None) -> str:
    return "the text" if index is None else f"text at index {index}"


def check_text(text: object, index: int | None = None) -> str:
    """Validate one text and return it NFC-normalised as Qwen3's tokenizer does
    (:func:`qwen3_nfc`: the ``tokenizers`` library's tables, not ``unicodedata``'s).

    Raises :class:`InvalidInputTypeError` for non-strings and
    :class:`InvalidInputError` for empty, NUL-containing or non-encodable text.
    """
    where = _where(index)
    if not isinstance(text, str):
        hint = " (decode bytes with .decode('utf-8') first)" if isinstance(text, bytes) else ""
        raise InvalidInputTypeError(
            f"{where} is {type(text).__name__}, expected str{hint}", index
        )
    if not text.strip():
        raise InvalidInputError(
            f"{where} is empty or whitespace only; an embedding of nothing is meaningless, "
            "drop it before embedding",
            index,
        )
    nul = text.find("\x00")
    if nul >= 0:
        # llama.cpp reads C strings: everything after a NUL would be silently lost.
        raise InvalidInputError(
            f"{where} contains a NUL byte at character {nul}; remove or replace it "
            "(text.replace('\\x00', ' '))",
            index,
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{where} contains a lone surrogate {text[exc.start]!r} at character {exc.start}, "
            "which is not valid Unicode; fix the source or decode it with errors='replace'",
            index,
        ) from None
    return qwen3_nfc(text)


def check_texts(texts: object) -> list[str]:
    """Validate a list of texts; every problem names the offending index."""
    if isinstance(texts, str):
        raise InvalidInputTypeError(
            "expected a list of strings but got a single str; wrap it in a list "
            "(or call embed_query for one query)"
        )
    if texts is None or isinstance(texts, (bytes, dict)) or not isinstance(texts, Iterable):
        raise InvalidInputTypeError(
            f"expected a list of strings, got {type(texts).__name__}"
        )
    items = list(texts)
    if not items:
        raise InvalidInputError("nothing to embed: the list of texts is empty")
    return [check_text(t, i) for i, t in enumerate(items)]


_LLAMA_CPP_GAP = re.compile(
    "[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in LLAMA_CPP_UNICODE_GAPS) + "]"
)


def check_llama_cpp_unicode(texts: Sequence[str], what: str = "text at index {}",
                            start: int = 0) -> None:
    """Refuse a text that a llama.cpp server would tokenize otherwise than Qwen3's tokenizer.

    llama.cpp's character tables predate Unicode 16 (see ``LLAMA_CPP_UNICODE_GAPS``),
    so over HTTP a text holding one of those code points could get a wrong vector; the
    local backends tokenize it right. ``what`` names input ``{}``; ``start`` is the
    index of ``texts[0]``. Raises :class:`InvalidInputError` with that index.
    """
    for i, text in enumerate(texts, start):
        found = _LLAMA_CPP_GAP.search(text)
        if found:
            index = None if "{}" not in what else i
            raise InvalidInputError(
                f"{what.format(i)} contains U+{ord(found[0]):04X} at character "
                f"{found.start()}, a character new in Unicode 16 that llama.cpp servers "
                "(Docker Model Runner, llama-server) classify with older tables and so "
                "tokenize otherwise than Qwen3's tokenizer, which would give a wrong "
                "vector. Embed it with the local backend (Qwen3Embedder.local / "
                "Qwen3Reranker.local), which tokenizes it right, or drop that character",
                index,
            )
