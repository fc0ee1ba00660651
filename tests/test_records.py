"""Store-independent pieces: token chunking, record validation, ids, hashes, batching."""

import itertools
import random
import string
import uuid

import pytest

from qwen3_embed_core import (
    ConfigurationError,
    EmbedderSpec,
    InvalidInputError,
    InvalidInputTypeError,
    chunk_text,
    content_hash,
    point_id,
)
from qwen3_embed_core._options import model_id
from qwen3_embed_core._records import IngestReport
from qwen3_embed_core.adapters import check_record, prepare_record, record_sources, spec_record

from .texts import MIXED, long_text

# A 300-letter word with no repeats inside (so each piece of it is found once).
WORD = "".join(random.Random(1).choices(string.ascii_lowercase, k=300))
LONG = long_text(600, seed=3) + "\n\n" + MIXED[0] + " " + WORD + " tail words here."


@pytest.mark.parametrize(("budget", "overlap"), [(16, 0), (40, 8), (128, 32)])
def test_chunks_fit_the_budget_by_the_models_own_count(embedder, reference, budget, overlap):
    chunks = chunk_text(LONG, embedder.count_tokens, budget, overlap)
    assert len(chunks) > 3
    for chunk in chunks:
        assert embedder.count_tokens(chunk) <= budget
        # The independent tokenizer agrees (EOS included in both counts).
        assert len(reference.tokenize(chunk)) <= budget
    # Chunks are filled: only the one before the 300-letter word (cut separately) is short.
    counts = [embedder.count_tokens(c) for c in chunks[:-1]]
    assert sum(n <= budget // 2 for n in counts) <= 1, counts


@pytest.mark.parametrize("overlap", [0, 8])
def test_chunks_cover_the_text_in_order_with_overlap(embedder, overlap):
    chunks = chunk_text(LONG, embedder.count_tokens, 40, overlap)
    # Every chunk is a stretch of the source; together they cover it, in order.
    prev_start, prev_end, overlapped = -1, 0, 0
    for chunk in chunks:
        start = LONG.find(chunk, prev_start + 1)
        assert start >= 0, chunk
        assert LONG[prev_end:start].strip() == ""  # no gap but whitespace
        if start < prev_end:  # repeated from the previous chunk: within the overlap
            overlapped += 1
            assert embedder.count_tokens(LONG[start:prev_end].strip()) <= overlap
        prev_start, prev_end = start, start + len(chunk)
    assert LONG[prev_end:].strip() == ""
    assert overlapped >= len(chunks) // 2 if overlap else overlapped == 0


def test_short_text_is_one_chunk_and_blank_is_none(embedder):
    assert chunk_text("  Paris is in France.  ", embedder.count_tokens, 64) == [
        "Paris is in France."
    ]
    assert chunk_text(" \n ", embedder.count_tokens, 64) == []


def test_chunking_rejects_bad_budgets(embedder):
    with pytest.raises(ConfigurationError, match="max_tokens"):
        chunk_text("a b", embedder.count_tokens, 1)
    with pytest.raises(ConfigurationError, match="overlap_tokens"):
        chunk_text("a b", embedder.count_tokens, 10, 10)
    # A symmetric task puts its instruction on documents: it counts against the budget.
    with pytest.raises(ConfigurationError, match="too small"):
        chunk_text("abc def", lambda t: len(t) + 20, 8)


def test_a_word_longer_than_the_budget_is_cut_inside(embedder):
    chunks = chunk_text("short " + "y" * 200 + " end", embedder.count_tokens, 8)
    assert "".join(chunks).replace(" ", "") == "short" + "y" * 200 + "end"
    assert all(embedder.count_tokens(c) <= 8 for c in chunks)


def test_point_ids_are_uuid5_of_id_else_text():
    assert point_id("doc-1") == point_id("doc-1") == str(uuid.UUID(point_id("doc-1")))
    assert uuid.UUID(point_id("doc-1")).version == 5
    assert point_id(1) == point_id("1")
    assert point_id(None, "hello") != point_id("hello")  # id and text spaces differ
    assert prepare_record(0, "hello").id == point_id(None, "hello")
    assert prepare_record(0, {"id": 7, "text": "x"}).id == point_id(7)
    assert content_hash("a") != content_hash("b")


def test_records_keep_extra_fields_as_metadata():
    rec = prepare_record(3, {"id": "a", "text": "t", "title": "T", "metadata": {"k": 1}})
    assert rec.metadata == {"title": "T", "k": 1} and rec.position == 3


@pytest.mark.parametrize(
    ("record", "error", "pattern"),
    [
        ({"id": 1}, InvalidInputError, r"record 4 has no 'text' field"),
        ({"text": 5}, InvalidInputTypeError, r"record 4: the text is int"),
        ({"text": "   "}, InvalidInputError, r"record 4: the text is empty"),
        ("", InvalidInputError, r"record 4: the text is empty"),
        (None, InvalidInputTypeError, r"record 4 is NoneType"),
        ({"text": "x", "id": 1.5}, InvalidInputTypeError, r"id must be a str or an int"),
        ({"text": "x", "metadata": [1]}, InvalidInputTypeError, r"metadata must be a mapping"),
        ({"text": "x", "metadata": {"a": object()}}, InvalidInputError, r"JSON-serialisable"),
    ],
)
def test_bad_records_name_their_position(record, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        prepare_record(4, record)
    assert info.value.index == 4


def test_sources_stream_lazily_and_report_bad_records():
    consumed = itertools.count()

    def stream():
        for i in range(10):
            next(consumed)
            yield "" if i == 3 else {"id": i, "text": f"t{i}", "source": f"s{i // 4}"}

    report = IngestReport()
    it = record_sources(stream(), report)
    first = next(it)
    assert first.id == "s0" and [r.record_id for r in first.chunks()] == [0, 1, 2]
    assert next(consumed) == 5  # read until the next source began, no further
    rest = list(it)
    assert [s.id for s in rest] == ["s1", "s2"]
    assert [r.record_id for r in rest[0].chunks()] == [4, 5, 6, 7]
    assert report.seen == 10 and [b.position for b in report.bad] == [3]
    assert "record 3: the text is empty" in str(report.bad[0])
    with pytest.raises(InvalidInputError) as info:
        list(record_sources(stream(), IngestReport(), on_error="raise"))
    assert info.value.index == 3


def test_a_record_without_source_is_its_own():
    (src,) = record_sources([{"id": "a", "text": "one"}], IngestReport())
    assert src.alone and src.head == src.id == point_id("a") and src.size == 1
    same = next(record_sources([{"id": "a", "text": "one"}], IngestReport()))
    edited = next(record_sources([{"id": "a", "text": "two"}], IngestReport()))
    assert same.hash == src.hash != edited.hash


def test_record_sources_reject_a_single_record_and_bad_options():
    with pytest.raises(InvalidInputTypeError, match="iterable of records"):
        list(record_sources("just one text", IngestReport()))
    with pytest.raises(InvalidInputTypeError, match="iterable of records"):
        list(record_sources(None, IngestReport()))
    with pytest.raises(ConfigurationError, match="on_error"):
        list(record_sources([], IngestReport(), on_error="ignore"))


def test_model_ids_name_the_same_weights_alike():
    same = ["ai/qwen3-embedding:0.6B-F16", "Qwen3-Embedding-0.6B-f16.gguf",
            "/models/Qwen3-Embedding-0.6B-f16.gguf", "0.6B-F16", "Qwen3-Embedding-0.6B-F16"]
    assert {model_id(n) for n in same} == {"0.6B-F16"}
    assert model_id("ai/qwen3-embedding") == "4B-Q4_K_M"
    assert model_id("/a/b/tiny.gguf") == model_id("/c/tiny.gguf") == "tiny.gguf"


def test_spec_round_trips_and_never_holds_a_key(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    spec = EmbedderSpec.local(gguf, dimensions=48, task="question_answering")
    assert spec.model == str(gguf.resolve()) and spec.backend == "local"
    assert EmbedderSpec.from_config(spec.to_config()) == spec
    remote = EmbedderSpec.model_runner("ai/qwen3-embedding:0.6B-F16", base_url="http://h:1",
                                       api_key_env_var="MY_KEY")
    config = remote.to_config()
    assert config["api_key_env_var"] == "MY_KEY" and "api_key" not in config
    assert EmbedderSpec.from_config(config) == remote
    with pytest.raises(ConfigurationError, match="never hold an API key"):
        EmbedderSpec.from_config({**config, "api_key": "secret"})
    with pytest.raises(ConfigurationError, match="unknown model config keys"):
        EmbedderSpec.from_config({**config, "colour": 1})
    with pytest.raises(ConfigurationError, match="newer qwen3-embed"):
        EmbedderSpec.from_config({**config, "format": 99})
    with pytest.raises(ConfigurationError, match="the local backend needs model="):
        EmbedderSpec(backend="local")
    with pytest.raises(ConfigurationError, match="either task= or instruction="):
        EmbedderSpec.local(gguf, task="web_search", instruction="Q: ")


def test_spec_records_compare_model_size_and_instructions():
    a = spec_record(EmbedderSpec.model_runner("ai/qwen3-embedding:0.6B-F16"))
    assert a["dimensions"] == 1024  # known variant: its full size
    check_record(a, spec_record(EmbedderSpec.local("0.6B-F16")), "x")  # same weights
    for other, word in [
        (EmbedderSpec.local("0.6B-Q8_0"), "model"),
        (EmbedderSpec.local("0.6B-F16", dimensions=256), "1024 dimensions"),
        (EmbedderSpec.local("0.6B-F16", task="semantic_similarity"), "document instruction"),
        (EmbedderSpec.local("0.6B-F16", task="question_answering"), "query instruction"),
    ]:
        with pytest.raises(ConfigurationError, match=f"collection 'c' was made with {word}"):
            check_record(a, spec_record(other), "collection 'c'")


def test_chunking_tokenizes_once_and_cuts_on_token_offsets(tiny_model):
    """The local model's offsets: one check per chunk, not a search of counts."""
    from qwen3_embed_core import Qwen3Embedder, chunk_text
    from qwen3_embed_core.adapters import Chunker

    from .texts import long_text

    text = long_text(300, seed=4) + "\n\nunicodé 日本語 😀 text, and a verylongwordwithoutspaces" * 3
    with Qwen3Embedder.local(tiny_model, n_threads=1) as emb:
        calls = []

        def count(t):
            calls.append(t)
            return emb.count_tokens(t)

        fast = Chunker.of(emb, 16, 4)
        assert fast.starts is not None and fast.overhead == 1  # EOS
        chunks = Chunker(count, 16, 4, fast.starts, fast.overhead).cut(text)
        assert all(emb.count_tokens(c) <= 16 for c in chunks)
        assert len(calls) <= 1.2 * len(chunks)  # one check a chunk, a few re-cuts
        # Nothing is lost: every word of the text is in some chunk, in order.
        words = text.split()
        joined = " ".join(chunks).split()
        it = iter(joined)
        assert all(any(w == x or w in x for x in it) for w in words[:200])
        # Most chunks are full: cutting on offsets wastes little of the budget.
        assert sum(emb.count_tokens(c) for c in chunks) / len(chunks) >= 12
        calls.clear()
        chunk_text(text, count, 16, 4)  # the counting rule, for servers
        assert len(calls) > 5 * len(chunks)
