"""How token sequences are grouped into llama.cpp decode calls.

A decode's attention runs over every token resident in the (unified) KV
cache, so its cost grows with the square of the tokens packed together; a
decode also has a fixed overhead. Short sequences are therefore packed
together up to a token budget, sequences are grouped by length so a pack
holds sequences of similar size, and a sequence over the budget runs alone
(fed in chunks).

Sequences that start with the same token ids (every query of one task,
every (query, document) prompt of one rerank call, chunks under one header)
form a *group*: the shared prefix is decoded once into the KV cache and
shared with each member (llama.cpp sequence copy), so only the rest of each
member is decoded. Attention is causal, so a member's states are exactly
those it would get alone. Groups work on token ids, never strings: BPE may
merge across the point where two texts diverge, and the longest common
prefix of the token ids is right by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Cross-sequence attention a pack wastes, as a share of the useful work, that
# the default budget allows; smaller budgets pay more per-decode overhead.
ATTENTION_WASTE = 0.1
MIN_BUDGET, MAX_BUDGET = 256, 2048
# A shared prefix shorter than this is not worth a sequence slot and a copy.
MIN_SHARED_TOKENS = 4
# Nor is a group that saves fewer tokens than this: its prefix costs a decode
# of its own, which streams every weight once (on a CPU about what a dozen
# tokens of compute cost for Qwen3-0.6B).
MIN_SAVED_TOKENS = 16
# Nesting depth of the prefix search; deeper (pathological) ranges become one group.
_MAX_DEPTH = 64


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
class Group:
    """Sequences whose first ``prefix`` token ids are the same (0: nothing shared)."""

    prefix: int
    members: tuple[int, ...]


@dataclass(frozen=True)
class Pack:
    """Sequences decoded together, and the groups whose shared prefixes they use.

    ``n_tokens`` counts the tokens decoded for the members themselves (their
    rests after the shared prefix); ``groups`` are indices into the plan's
    groups, for the members that share a prefix.
    """

    indices: tuple[int, ...]
    n_tokens: int
    groups: tuple[int, ...] = ()

    @property
    def alone(self) -> bool:
        return len(self.indices) == 1


@dataclass(frozen=True)
class Plan:
    """Groups and packs for one call; ``group_of[i]`` is sequence i's group, or -1."""

    groups: tuple[Group, ...]
    group_of: tuple[int, ...]
    packs: tuple[Pack, ...]

    def prefix_of(self, i: int) -> int:
        """Tokens of sequence ``i`` that come from its group's shared prefix."""
        g = self.group_of[i]
        return self.groups[g].prefix if g >= 0 else 0

    def decoded_tokens(self, lengths: Sequence[int]) -> int:
        """Tokens the plan decodes: each shared prefix once, then every rest."""
        return sum(g.prefix for g in self.groups) + sum(
            n - self.prefix_of(i) for i, n in enumerate(lengths)
        )


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    m = min(len(a), len(b))
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if len(diff) else m


def shared_prefix_groups(
    seqs: Sequence[np.ndarray],
    min_shared: int = MIN_SHARED_TOKENS,
    min_saved: int = MIN_SAVED_TOKENS,
) -> list[Group]:
    """Partition sequences into groups that share a token prefix, saving the most tokens.

    Sequences are sorted by their token ids, so the longest common prefix of
    any sorted run is that of its two ends and the candidate groups form a
    tree (split a run where adjacent prefixes are shortest). Each run becomes
    one group or the best split of it into longer-prefix runs, whichever
    decodes fewer tokens. A prefix always leaves each member at least its
    last token, whose output is read. Groups sharing fewer than ``min_shared``
    tokens, or saving fewer than ``min_saved`` in all, are not formed (their
    members get no group).
    """
    n = len(seqs)
    if n < 2:
        return []
    order = sorted(range(n), key=lambda i: seqs[i].tolist())
    adjacent = [common_prefix(seqs[order[k]], seqs[order[k + 1]]) for k in range(n - 1)]
    lengths = [len(seqs[i]) for i in order]

    def best(lo: int, hi: int, depth: int) -> tuple[int, list[tuple[int, int, int]]]:
        """Saved tokens and (lo, hi, prefix) runs for sorted positions lo..hi inclusive."""
        if lo == hi:
            return 0, []
        common = min(adjacent[lo:hi])
        prefix = min(common, min(lengths[lo : hi + 1]) - 1)
        whole = prefix * (hi - lo)
        if prefix < min_shared or whole < min_saved:
            whole = 0
        as_one = [(lo, hi, prefix)] if whole else []
        if depth >= _MAX_DEPTH:
            return whole, as_one
        runs: list[tuple[int, int, int]] = []
        saved, start = 0, lo
        for k in range(lo, hi + 1):
            if k == hi or adjacent[k] == common:
                s, r = best(start, k, depth + 1)
                saved, runs, start = saved + s, runs + r, k + 1
        return (saved, runs) if saved > whole else (whole, as_one)

    _, runs = best(0, n - 1, 0)
    return [Group(prefix, tuple(order[lo : hi + 1])) for lo, hi, prefix in runs]


def plan_packs(
    seqs: Sequence[np.ndarray],
    budget: int,
    max_sequences: int,
    *,
    share_prefixes: bool = True,
    min_shared: int = MIN_SHARED_TOKENS,
) -> Plan:
    """Group sequences by shared prefix, then into packs of at most ``budget`` tokens.

    ``budget``: tokens decoded per pack; ``max_sequences``: sequence ids per
    pack, counting one for each group prefix the pack uses. Members of a
    group are consecutive, so a group's prefix is resident only while its
    packs run; within a group (and among the sequences without one) the
    shortest come first so each pack holds sequences of similar length. A
    sequence whose rest is at least ``budget`` gets a pack of its own (fed in
    chunks). Every index appears in exactly one pack; callers restore the order.
    """
    if budget < 1 or max_sequences < 2:
        raise ValueError("budget must be positive and max_sequences at least 2")
    lengths = [len(s) for s in seqs]
    groups = shared_prefix_groups(seqs, min_shared) if share_prefixes else []
    group_of = [-1] * len(seqs)
    for g, group in enumerate(groups):
        for i in group.members:
            group_of[i] = g
    units = [sorted(group.members, key=lambda i: (lengths[i], i)) for group in groups]
    units.append(sorted((i for i in range(len(seqs)) if group_of[i] < 0),
                        key=lambda i: (lengths[i], i)))

    packs: list[Pack] = []
    current: list[int] = []
    used: list[int] = []
    tokens = 0

    def flush() -> None:
        nonlocal current, used, tokens
        if current:
            packs.append(Pack(tuple(current), tokens, tuple(used)))
        current, used, tokens = [], [], 0

    for unit in units:
        for i in unit:
            g = group_of[i]
            rest = lengths[i] - (groups[g].prefix if g >= 0 else 0)
            if rest >= budget:
                flush()
                packs.append(Pack((i,), rest, (g,) if g >= 0 else ()))
                continue
            new_group = g >= 0 and g not in used
            if current and (
                tokens + rest > budget
                or len(current) + len(used) + 1 + new_group > max_sequences
            ):
                flush()
                new_group = g >= 0
            current.append(i)
            tokens += rest
            if new_group:
                used.append(g)
    flush()
    return Plan(tuple(groups), tuple(group_of), tuple(packs))
