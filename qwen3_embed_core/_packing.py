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

# Cross-sequence attention a pack wastes, as a share of the useful work, that
# the default budget allows; smaller budgets pay more per-decode overhead.
ATTENTION_WASTE = 0.1
MIN_BUDGET, MAX_BUDGET = 256, 2048


def linear_macs(n_embd: int, n_head: int, n_head_kv: int, head_dim: int, n_ff: int) -> int:
    """Multiply-adds per token per layer in a Qwen3 block's projections and SwiGLU MLP."""
    q, kv = n_head * head_dim, n_head_kv * head_dim
    return n_embd * (q + 2 * kv) + q * n_embd + 3 * n_embd * n_ff


def default_budget(n_embd: int, n_head: int, n_head_kv: int, head_dim: int, n_ff: int) -> int:
    """Tokens per decode for a decoder of this shape.

    In a pack of T tokens every token attends over all T (the KV cache is
    shared; other texts are masked), costing about ``T * 2 * n_head *
    head_dim`` multiply-adds per layer against the ``linear`` ones of the
    projections and MLP. T is chosen so that waste is ``ATTENTION_WASTE`` of
    the useful work: 384 tokens for Qwen3-0.6B, about 1,200 for 4B, 2,048 for 8B.
    """
    linear = linear_macs(n_embd, n_head, n_head_kv, head_dim, n_ff)
    per_pair = 2 * n_head * head_dim
    budget = int(ATTENTION_WASTE * linear / per_pair) // 64 * 64
    return max(MIN_BUDGET, min(MAX_BUDGET, budget))


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
