"""How texts are grouped into llama.cpp decode calls.

A decode's attention runs over every token resident in the (unified) KV
cache, so its cost grows with the square of the tokens packed together; a
decode also has a fixed overhead. Short texts are therefore packed together
up to a token budget, texts are grouped by length so a pack holds texts of
similar size, and a text over the budget runs alone (fed in chunks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pack:
    """Indices of the texts that go through one decode (or one chunked run)."""

    indices: tuple[int, ...]
    n_tokens: int

    @property
    def alone(self) -> bool:
        return len(self.indices) == 1


def plan_packs(lengths: Sequence[int], budget: int, max_sequences: int) -> list[Pack]:
    """Group texts (by token count) into packs of at most ``budget`` tokens.

    ``budget``: tokens per decode; ``max_sequences``: texts per decode.
    Texts are taken shortest first so each pack holds texts of similar
    length; a text longer than ``budget`` gets a pack of its own. Every index
    appears in exactly one pack; callers restore the input order.
    """
    if budget < 1 or max_sequences < 1:
        raise ValueError("budget and max_sequences must be positive")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    packs: list[Pack] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        n = lengths[i]
        if n >= budget:
            packs.append(Pack((i,), n))
            continue
        if current and (tokens + n > budget or len(current) >= max_sequences):
            packs.append(Pack(tuple(current), tokens))
            current, tokens = [], 0
        current.append(i)
        tokens += n
    if current:
        packs.append(Pack(tuple(current), tokens))
    return packs
