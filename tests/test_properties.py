"""Property-based tests (Hypothesis): any input gives the right vector or our error.

The property, for text, options and stored configs alike: the result is
either a unit vector equal to the numpy reference on the tiny model (cosine
>= COS_MIN; for the reranker, P(yes) within SCORE_TOL of its reference) or a
``Qwen3EmbedError`` subclass naming the offending index or option. Never a
raw exception, never a wrong vector.

Every test runs a fixed number of examples, derandomized (the same examples on
every run, no example database), so CI is reproducible; the counts are in
``EXAMPLES`` and the whole module takes well under a minute.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tokenizers.normalizers import NFC

from qwen3_embed_core import (
    TASKS,
    ConfigurationError,
    EmbedderSpec,
    InvalidInputError,
    InvalidInputTypeError,
    Qwen3Embedder,
    Qwen3EmbedError,
    RerankerSpec,
    TextTooLongError,
)
from qwen3_embed_core._options import DECLARED

from .conftest import COS_MIN

QWEN3_NFC = NFC().normalize_str  # Qwen3's tokenizer's normaliser, with its own tables
SERVER = "http://127.0.0.1:9/v1"  # never contacted: nothing is sent until the first call

# Examples per test: bounded so the module stays fast on two shared cores.
EXAMPLES = {
    "documents": 200,
    "batches": 60,
    "queries": 60,
    "long": 4,
    "rerank": 60,
    "options": 200,
    "local_builds": 5,
    "configs": 200,
}


def _profile(name: str):
    return settings(
        max_examples=EXAMPLES[name], derandomize=True, database=None, deadline=None,
        # No shrinking: on two shared cores it can take minutes; the failing example is
        # printed as found, and derandomize makes it the same on every run.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- text --------------------------------------------------------------------------------

def _plane(p: int) -> st.SearchStrategy[str]:
    """Any code point of plane ``p`` but the surrogates (their own strategy, below)."""
    return st.integers(p * 0x10000, p * 0x10000 + 0xFFFF).filter(
        lambda c: not 0xD800 <= c <= 0xDFFF).map(chr)


SPECIAL_SPELLINGS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
                     "<|endoftext", "endoftext|>", "<|", "|>", "<|unused_0|>"]
WORDS = ["Paris", " the", " capital", " of", " France", " 狐狸", " über", " 😀", "\n", "  ",
         " café", "Instruct:", "Query:", " x"]

PIECE = st.one_of(
    st.sampled_from(WORDS),
    st.characters(codec="utf-8"),  # any plane, any category
    st.sampled_from([0, 1, 2, 3, 14, 15, 16]).flatmap(_plane),  # each plane, assigned or not
    st.characters(categories=["Mn", "Mc", "Me"]),  # combining marks
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]),  # controls, format, spaces
    st.sampled_from(SPECIAL_SPELLINGS),
    # Where tokenizers differ: Unicode 16 letters (llama.cpp's tables are older) and the
    # combining marks whose class Python's unicodedata and the tokenizers library disagree on.
    st.sampled_from(["\U00013ff3\u8c6e", "\U0001e5d0", "\u0341\U00016ff1", "\u07fd\u0301",
                     "\u0898", "\U0001e130a"]),
)
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
NUL = st.just("\x00")

# Mostly valid text; now and then a lone surrogate or a NUL, which must be refused by index.
TEXT = st.lists(
    st.one_of(PIECE, PIECE, PIECE, PIECE, PIECE, PIECE, PIECE, PIECE, SURROGATE, NUL),
    max_size=24,
).map("".join)


@pytest.fixture(scope="module")
def embedder(tiny_model):
    """One thread: llama.cpp's thread pool spins badly on busy shared CI cores, and the
    tiny model gains nothing from more."""
    emb = Qwen3Embedder.local(tiny_model, n_threads=1)
    yield emb
    emb.close()


def _problem(text: object) -> type[Qwen3EmbedError] | None:
    """The error ``text`` must give, or None when it must embed."""
    if not isinstance(text, str):
        return InvalidInputTypeError
    if not text.strip() or "\x00" in text:
        return InvalidInputError
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return InvalidInputError
    return None


def _check_batch(embed, texts: list, expected: list[np.ndarray | None]) -> None:
    """``embed(texts)``: the reference vectors, or the first bad text's error by index."""
    bad = [i for i, t in enumerate(texts) if _problem(t) is not None]
    if not texts:
        with pytest.raises(InvalidInputError):
            embed(texts)
        return
    if bad:
        with pytest.raises(_problem(texts[bad[0]])) as info:
            embed(texts)
        assert info.value.index == bad[0], (texts, info.value)
        assert f"index {bad[0]}" in str(info.value)
        return
    got = embed(texts)
    assert got.dtype == np.float32 and got.shape[0] == len(texts)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    for i, vec in enumerate(expected):
        cos = float(np.asarray(got[i], np.float64) @ vec)
        assert cos >= COS_MIN, (i, ascii(texts[i])[:300], cos)


@_profile("documents")
@given(text=TEXT)
def test_any_document_text(embedder, reference, text):
    expected = [reference.embed(text)] if _problem(text) is None else []
    _check_batch(embedder.embed_documents, [text], expected)


@_profile("batches")
@given(texts=st.lists(st.one_of(TEXT, TEXT, TEXT, st.none(), st.integers(), st.binary()),
                      max_size=6))
def test_any_batch_names_the_first_bad_index(embedder, reference, texts):
    ok = all(_problem(t) is None for t in texts)
    expected = [reference.embed(t) for t in texts] if ok else []
    _check_batch(embedder.embed_documents, texts, expected)


TASK = st.one_of(
    st.sampled_from(sorted(TASKS)),
    TEXT.filter(lambda t: t.strip() != ""),
)


@_profile("queries")
@given(text=TEXT, task=TASK)
def test_any_query_under_any_task(embedder, reference, text, task):
    """The query and the task are both free text: a bad task is a ConfigurationError."""
    task_problem = _problem(task) if task not in TASKS else None
    if task_problem is not None:
        with pytest.raises(ConfigurationError, match="task="):
            embedder.embed_queries(["hello"], task=task)
        return
    if _problem(text) is not None:
        _check_batch(lambda ts: embedder.embed_queries(ts, task=task), [text], [])
        return
    formatted = embedder.format_query(text, task=task)
    # The reference reads the raw task and text: Qwen3's tokenizer normalises the whole.
    raw = TASKS[task].description if task in TASKS else task
    assert formatted == QWEN3_NFC(f"Instruct: {raw}\nQuery:{text}")
    _check_batch(lambda ts: embedder.embed_queries(ts, task=task), [text],
                 [reference.embed(f"Instruct: {raw}\nQuery:{text}")])


@_profile("long")
@given(text=TEXT.filter(lambda t: _problem(t) is None and len(t) <= 40),
       times=st.integers(20, 150))
def test_long_texts(embedder, reference, text, times):
    long = " ".join([text] * times)
    n = len(reference.tokenize(long))
    if n > embedder.backend.max_tokens:
        with pytest.raises(TextTooLongError) as info:
            embedder.embed_documents(["ok", long])
        assert info.value.index == 1 and info.value.n_tokens == n
        return
    _check_batch(embedder.embed_documents, [long], [reference.embed(long)])


# The local reranker's scores against the reference to this (tests/test_rerank_local.py).
SCORE_TOL = 1e-4


@pytest.fixture(scope="module")
def reranker(tiny_reranker):
    from qwen3_embed_core import Qwen3Reranker

    rr = Qwen3Reranker.local(tiny_reranker, n_threads=1)
    yield rr
    rr.close()


@_profile("rerank")
@given(query=TEXT, documents=st.lists(st.one_of(TEXT, TEXT, TEXT, st.none()), max_size=4))
def test_any_query_and_documents_rerank(reranker, tiny_reranker, query, documents):
    """P(yes) per document equal to the reference's, or our error naming the bad input."""
    from qwen3_embed_core.testing import RerankReference

    if _problem(query) is not None:
        with pytest.raises(_problem(query), match="the query"):
            reranker.score(query, documents or ["x"])
        return
    bad = [i for i, d in enumerate(documents) if _problem(d) is not None]
    if bad:
        with pytest.raises(_problem(documents[bad[0]])) as info:
            reranker.score(query, documents)
        assert info.value.index == bad[0] and f"index {bad[0]}" in str(info.value)
        return
    got = reranker.score(query, documents)
    ref = _rerank_reference(RerankReference, tiny_reranker)
    want = np.array([ref.score(query, d) for d in documents])
    assert got.shape == (len(documents),)
    assert np.abs(got - want).max(initial=0.0) <= SCORE_TOL, (ascii(query), got, want)


@functools.cache
def _rerank_reference(kind, path):
    return kind(path)


# -- options ------------------------------------------------------------------------------

# Values of every kind an option can be given: in and out of range, of other types, odd floats.
ANY_VALUE = st.one_of(
    st.none(), st.booleans(),
    st.integers(-2**40, 2**40),
    st.sampled_from([0, 1, 2, 3, 63, 64, 1023, 1024, 2**31 - 1, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1e-9, 60.0, 604800.0, 604800.5, float("nan"), float("inf")]),
    st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.sampled_from(["/nope.pem", "", "x\x00", os.devnull]),  # paths: cache_dir, verify
)
ALL_NAMES = [*sorted(o.name for o in DECLARED), "colour", "dimensions", "n_ctx"]


def _valid(name: str, value: object, backend: str, kind: str) -> bool:
    """What the declaration means, restated: whether (name, value) must be accepted."""
    option = next((o for o in DECLARED if o.name == name), None)
    if option is None or option.backend != backend or kind not in option.kinds:
        return value is None and option is not None and option.backend == backend and \
            kind in option.kinds
    if value is None:
        return True
    if option.hint is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    elif option.hint is float:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
    elif name == "verify" and isinstance(value, str):
        return False  # no CA bundle in these tests: a path is refused (missing or not PEM)
    else:
        allowed = {bool: (bool,), str: (str,)}
        types = tuple(t for a in getattr(option.hint, "__args__", (option.hint,))
                      for t in allowed.get(a, ()))
        return isinstance(value, types) and (not isinstance(value, str) or "\x00" not in value)
    if not ok_type:
        return False
    low_ok = value > option.low if option.above else value >= option.low
    return bool(low_ok and value <= option.high)


@_profile("options")
@given(options=st.dictionaries(st.sampled_from(ALL_NAMES), ANY_VALUE, max_size=4),
       kind=st.sampled_from(["embedder", "reranker"]))
def test_any_http_options(options, kind):
    """Built (every setting as given, None: the default) or refused naming a bad option."""
    from qwen3_embed_core import Qwen3Reranker

    core = Qwen3Embedder if kind == "embedder" else Qwen3Reranker
    bad = sorted(k for k, v in options.items() if not _valid(k, v, "model-runner", kind))
    if kind == "embedder" and "dimensions" in options:
        bad = [k for k in bad if k != "dimensions"]  # the embedder's own argument
        options = {k: v for k, v in options.items() if k != "dimensions"}
    if bad:
        with pytest.raises(ConfigurationError) as info:
            core.model_runner(base_url=SERVER, **options)
        assert any(k in str(info.value) for k in bad), (options, info.value)
        return
    with core.model_runner(base_url=SERVER, **options) as model:
        for name, value in options.items():
            if name != "verify":
                default = next(o.default for o in DECLARED if o.name == name)
                assert getattr(model.backend, name) == (default if value is None else value)
    spec_type = EmbedderSpec if kind == "embedder" else RerankerSpec
    spec = spec_type.from_options(base_url=SERVER, options=options)
    assert spec_type.from_config(spec.to_config()) == spec


@_profile("options")
@given(options=st.dictionaries(st.sampled_from(ALL_NAMES), ANY_VALUE, max_size=4),
       kind=st.sampled_from(["embedder", "reranker"]))
def test_any_local_options_in_a_spec(tiny_model, tiny_reranker, options, kind):
    """A local spec takes exactly the declared values: stored, round-tripped, or refused."""
    spec_type = EmbedderSpec if kind == "embedder" else RerankerSpec
    model = str(tiny_model if kind == "embedder" else tiny_reranker)
    options = {k: v for k, v in options.items() if k != "dimensions" or kind == "reranker"}
    bad = sorted(k for k, v in options.items() if not _valid(k, v, "local", kind))
    if bad:
        with pytest.raises(ConfigurationError) as info:
            spec_type.from_options(model=model, options=options)
        assert any(k in str(info.value) for k in bad), (options, info.value)
        return
    spec = spec_type.from_options(model=model, options=options)
    assert dict(spec.options) == {k: v for k, v in options.items() if v is not None}
    assert spec_type.from_config(spec.to_config()) == spec


@_profile("local_builds")
@given(n_threads=st.sampled_from([1, 2]), batch_tokens=st.sampled_from([None, 2, 7, 64]),
       max_sequences=st.sampled_from([None, 1, 3]), share_prefixes=st.sampled_from([None, False]),
       text=TEXT.filter(lambda t: _problem(t) is None))
def test_any_valid_local_build_gives_the_reference(tiny_model, reference, n_threads,
                                                   batch_tokens, max_sequences, share_prefixes,
                                                   text):
    with Qwen3Embedder.local(tiny_model, n_threads=n_threads or 1, batch_tokens=batch_tokens,
                             max_sequences=max_sequences, share_prefixes=share_prefixes) as emb:
        texts = [text, "Paris is the capital of France.", text + " again"]
        _check_batch(emb.embed_documents, texts, [reference.embed(t) for t in texts])
        _check_batch(emb.embed_queries, [text], [reference.embed(emb.format_query(text))])


# -- stored configs -------------------------------------------------------------------------

JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
CONFIG_KEYS = ["backend", "model", "base_urls", "api_key_env_var", "options", "dimensions",
               "task", "task_symmetric", "instruction", "format", "model_path", "api_key", "x"]
FIELD_VALUES = {
    "backend": st.sampled_from(["local", "model-runner", "gpu", None, 1]),
    "model": st.sampled_from(["ai/qwen3-embedding", "0.6B-Q8_0", "", None, 5, "\ud800"]),
    "base_urls": st.one_of(st.just([SERVER]), st.just([]), JSONISH),
    "options": st.one_of(
        st.dictionaries(st.sampled_from(ALL_NAMES), ANY_VALUE, max_size=3), JSONISH),
    "dimensions": st.sampled_from([None, 32, 31, 64, 65, "64", True, 1.5]),
    "task": st.one_of(st.sampled_from([None, "web_search", "", "\ud800", 5]), st.text(max_size=8)),
    "format": st.sampled_from([1, 2, 3, 0, "2", None, True]),
}


@st.composite
def configs(draw) -> dict:
    keys = draw(st.lists(st.sampled_from(CONFIG_KEYS), unique=True, max_size=6))
    return {k: draw(FIELD_VALUES.get(k, JSONISH)) for k in keys}


@_profile("configs")
@given(config=configs(), kind=st.sampled_from(["embedder", "reranker"]))
def test_any_stored_config(config, kind):
    """A stored config (Chroma's, the Qdrant record's) loads and round-trips, or is refused
    with a library error naming one of its keys or options."""
    spec_type = EmbedderSpec if kind == "embedder" else RerankerSpec
    try:
        spec = spec_type.from_config(config)
    except Qwen3EmbedError as exc:
        names = [*config, *(config["options"] if isinstance(config.get("options"), dict) else ())]
        words = str(exc)
        assert any(str(k) in words for k in names) or "config" in words, (config, words)
        return
    assert spec_type.from_config(spec.to_config()) == spec
