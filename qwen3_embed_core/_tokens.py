"""A text's token offsets from a local model's own vocabulary: what chunking cuts on.

The local backend's engine tokenizes (Qwen3's tokenizer); each token's bytes
come from llama.cpp's vocabulary (``llama_token_to_piece``), so the offsets
are those of exactly the tokens the model sees. A backend without them (a
server) gives None, and chunking counts tokens instead.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

Starts = Callable[[str], "list[int | None] | None"]


def offsets_of(embedder: Any) -> tuple[Starts | None, int]:
    """(a text's token start offsets, tokens added to every text) for ``embedder``.

    None when its backend cannot tell (then 1: the EOS token).
    """
    engine = getattr(getattr(embedder, "backend", None), "engine", None)
    if engine is None or not all(hasattr(engine, a) for a in ("tokenize", "_llama", "_vocab")):
        return None, 1
    pieces: dict[int, bytes] = {}
    buf = ctypes.create_string_buffer(256)

    def piece(token: int) -> bytes:
        got = pieces.get(token)
        if got is None:
            n = engine._llama.llama_token_to_piece(engine._vocab, token, buf, len(buf), 0, False)
            got = pieces[token] = buf.raw[: max(n, 0)]
        return got

    def starts(text: str) -> list[int | None] | None:
        ids = engine.tokenize(text)
        data = text.encode("utf-8")
        char_at: dict[int, int] = {}
        at = 0
        for i, ch in enumerate(text):
            char_at[at] = i
            at += len(ch.encode("utf-8"))
        out: list[int | None] = []
        at = 0
        for token in ids:
            out.append(char_at.get(at))
            at += len(piece(token))
        if at != len(data):  # the pieces do not spell the text: count tokens instead
            return None
        return out

    probe = "a"
    try:
        overhead = embedder.count_tokens(probe) - len(engine.tokenize(probe))
    except Exception:  # pragma: no cover - a backend that cannot count
        return None, 1
    return starts, max(overhead, 0)
