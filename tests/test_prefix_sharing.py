"""Shared token prefixes: decoded once, exact to the reference, in both GGUF flavours."""

import numpy as np
import pytest

from qwen3_embed_core import Qwen3Embedder
from qwen3_embed_core._packing import plan_packs, shared_prefix_groups

from .conftest import COS_MIN, cosines
from .texts import MIXED, SHORT, long_text

QUERIES = [*SHORT, "x", "what is the capital of France?", MIXED[0]]
# Queries whose first characters BPE may merge with the instruction's last ones.
ODD_STARTS = [
    ", a comma first", " a leading space", "  two spaces", "?why", "\nnewline first",
    "...dots", "'quoted'", "-dash", ":colon", "\ttab", "Query:again", "😀 emoji first",
]
TASKS = ["question_answering", "web_search", "Retrieve semantically similar text"]


def lcp(seqs: list[list[int]]) -> int:
    """Longest common prefix of token id lists (the reference tokenizer's)."""
    n = 0
    while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    return n


def test_queries_of_one_task_match_reference(flavour_embedder, flavour_reference):
    got = flavour_embedder.embed_queries(QUERIES)
    expected = [flavour_reference.embed(flavour_embedder.format_query(q)) for q in QUERIES]
    assert cosines(got, expected).min() >= COS_MIN


def test_queries_that_start_with_punctuation_or_space(flavour_embedder, flavour_reference):
    got = flavour_embedder.embed_queries(ODD_STARTS)
    formatted = [flavour_embedder.format_query(q) for q in ODD_STARTS]
    cos = cosines(got, [flavour_reference.embed(t) for t in formatted])
    assert cos.min() >= COS_MIN, cos


# A query prefix that ends inside a word, so BPE merges the instruction's last
# characters with the query's first ones ("Query: th" + "e" -> "Ġthe").
SPLIT_PREFIX = "Instruct: Given a web search query, retrieve relevant passages\nQuery: th"
SPLIT_QUERIES = ["e capital of France", "at is", "is one", "x marks", ", hi", " space", "e"]


def test_bpe_merges_across_the_prefix_boundary(flavour, flavour_reference):
    texts = [SPLIT_PREFIX + q for q in SPLIT_QUERIES]
    ids = [flavour_reference.tokenize(t) for t in texts]
    alone = flavour_reference.token_ids(SPLIT_PREFIX)
    # The premise: for some queries the prefix's own tokens are not a prefix of the text's.
    assert any(s[: len(alone)] != alone for s in ids)
    with Qwen3Embedder.local(flavour, instruction=SPLIT_PREFIX) as emb:
        got = emb.embed_queries(SPLIT_QUERIES)
        (group,) = emb.backend.engine.plan([np.asarray(s) for s in ids]).groups
        assert group.prefix == lcp(ids) < len(alone)
    assert cosines(got, [flavour_reference.embed(t) for t in texts]).min() >= COS_MIN


def test_mixed_tasks_in_one_call(flavour_embedder, flavour_reference):
    texts = [
        flavour_embedder.format_query(q, task=task)
        for q in [*SHORT, *ODD_STARTS[:4]]
        for task in TASKS
    ]
    texts += SHORT  # and documents with no instruction at all
    got = flavour_embedder.embed_documents(texts)  # formatted strings go in as they are
    cos = cosines(got, [flavour_reference.embed(t) for t in texts])
    assert cos.min() >= COS_MIN, cos
    plan = flavour_embedder.backend.engine.plan(
        [np.asarray(flavour_embedder.backend.tokenize(t)) for t in texts]
    )
    assert len(plan.groups) >= len(TASKS)  # one group per task at least


def test_prefix_is_decoded_once(tiny_model, reference):
    """The engine's own count of decoded tokens: the instruction once, then each query's rest."""
    with Qwen3Embedder.local(tiny_model) as emb:
        formatted = [emb.format_query(q) for q in QUERIES]
        ids = [reference.tokenize(t) for t in formatted]
        shared = lcp(ids)
        assert shared >= 10  # the instruction's tokens
        stats = emb.backend.engine.stats
        before = (stats.tokens_decoded, stats.tokens_shared)
        vectors = emb.embed_queries(QUERIES)
        decoded = stats.tokens_decoded - before[0]
        assert decoded == shared + sum(len(s) - shared for s in ids)
        assert stats.tokens_shared - before[1] == (len(ids) - 1) * shared
    with Qwen3Embedder.local(tiny_model, share_prefixes=False) as plain:
        stats = plain.backend.engine.stats
        expected = plain.embed_queries(QUERIES)
        assert stats.tokens_decoded == sum(len(s) for s in ids)
        assert stats.tokens_shared == 0
    assert cosines(vectors, list(expected)).min() >= 0.99999


def test_prefix_stays_resident_across_packs(tiny_model, reference):
    """A small budget spreads one task's queries over many packs: still decoded once, exact."""
    queries = [long_text(20 + i, seed=i) for i in range(12)]
    with Qwen3Embedder.local(tiny_model, batch_tokens=96, ubatch_tokens=32,
                             max_sequences=3) as emb:
        formatted = [emb.format_query(q) for q in queries]
        ids = [reference.tokenize(t) for t in formatted]
        shared = lcp(ids)
        plan = emb.backend.engine.plan([np.asarray(s) for s in ids])
        assert len(plan.packs) >= 4 and len(plan.groups) == 1
        got = emb.embed_queries(queries)
        assert emb.backend.engine.stats.tokens_decoded == shared + sum(
            len(s) - shared for s in ids
        )
    assert cosines(got, [reference.embed(t) for t in formatted]).min() >= COS_MIN


def test_long_shared_header_is_fed_in_chunks(tiny_model, reference):
    """Chunks under one long header: the header (> batch_tokens) decodes once, in chunks."""
    header = long_text(120, seed=4) + "\n\n"
    texts = [header + long_text(15, seed=10 + i) for i in range(5)]
    with Qwen3Embedder.local(tiny_model, batch_tokens=64, ubatch_tokens=32) as emb:
        got = emb.embed_documents(texts)
        ids = [reference.tokenize(t) for t in texts]
        assert lcp(ids) > 64
        assert emb.backend.engine.stats.tokens_shared == 4 * lcp(ids)
    assert cosines(got, [reference.embed(t) for t in texts]).min() >= COS_MIN


def test_identical_texts_share_all_but_the_last_token(tiny_model, reference):
    with Qwen3Embedder.local(tiny_model) as emb:
        got = emb.embed_documents([SHORT[0]] * 4 + [SHORT[1]])
        n = len(reference.tokenize(SHORT[0]))
        assert emb.backend.engine.stats.tokens_shared == 3 * (n - 1)
    assert cosines(got, [reference.embed(SHORT[0])] * 4 + [reference.embed(SHORT[1])]).min() \
        >= COS_MIN


def seqs(*rows: list[int]) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.int32) for r in rows]


def test_groups_follow_the_token_ids_not_the_order():
    a = [1, 2, 3, 4, 5, 6]
    b = [9, 9, 9, 9, 9, 9, 9]
    data = seqs([*a, 10], [*b, 11], [*a, 12, 13], [*b, 14], [*a, 15], [7, 8])
    groups = shared_prefix_groups(data, min_shared=4, min_saved=0)
    assert sorted((g.prefix, sorted(g.members)) for g in groups) == [
        (6, [0, 2, 4]), (7, [1, 3]),
    ]


def test_a_wider_group_wins_only_when_it_saves_more():
    base = list(range(1, 9))  # 8 shared tokens
    data = seqs([*base, 20, 21, 30], [*base, 20, 21, 31], [*base, 40], [*base, 50])
    # One group of 4 on 8 tokens saves 24; {0,1} on 10 plus nothing else saves 10.
    groups = shared_prefix_groups(data, min_shared=4, min_saved=0)
    assert [(g.prefix, sorted(g.members)) for g in groups] == [(8, [0, 1, 2, 3])]


def test_short_common_prefixes_are_not_groups():
    data = seqs([1, 2, 3, 9], [1, 2, 3, 8], [5, 6])
    assert shared_prefix_groups(data, min_shared=4, min_saved=0) == []
    assert shared_prefix_groups(data, min_shared=3, min_saved=0)[0].prefix == 3
    # nor groups that save too little for the decode their prefix costs
    assert shared_prefix_groups(data, min_shared=3, min_saved=4) == []


def test_every_member_keeps_its_last_token():
    data = seqs([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6])
    (group,) = shared_prefix_groups(data, min_shared=2, min_saved=0)
    assert group.prefix == 4  # the shortest member still decodes its last token


def test_packs_count_a_sequence_id_for_each_prefix():
    a, b = list(range(100, 110)), list(range(200, 210))
    data = seqs(*[[*a, i] for i in range(5)], *[[*b, i] for i in range(5)])
    plan = plan_packs(data, budget=1000, max_sequences=6)
    for pack in plan.packs:
        assert len(pack.indices) + len(pack.groups) <= 6
    assert sorted(i for p in plan.packs for i in p.indices) == list(range(10))
    # Members of a group are consecutive, so a prefix is resident over one run of packs.
    for g in range(len(plan.groups)):
        where = [k for k, p in enumerate(plan.packs) if g in p.groups]
        assert where == list(range(where[0], where[-1] + 1))
    assert plan.decoded_tokens([len(s) for s in data]) == 10 + 10 + 10


@pytest.mark.parametrize("share", [True, False])
def test_share_prefixes_option_reaches_the_backend(tiny_model, share):
    with Qwen3Embedder.local(tiny_model, share_prefixes=share) as emb:
        assert emb.backend.share_prefixes is share
        emb.embed_queries(SHORT)
        assert (emb.backend.engine.stats.tokens_shared > 0) is share
