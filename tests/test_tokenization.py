"""The local backends tokenize exactly as Qwen3's own tokenizer, for every code point.

llama.cpp's pre-tokenizer classifies characters with older Unicode tables than
Qwen3's tokenizer (Hugging Face ``tokenizers``): a letter added in Unicode 16
was not a letter there, so ``"a \\U00013ff3\\u8c6e"`` split differently and got
cosine 0.789 to the reference (issue 18, item 2). The local backends now
tokenize with Qwen3's tokenizer built from the GGUF's own vocabulary; these
tests compare their token ids with ``testing.Reference`` (an independent
build of the same tokenizer) over every code point of every plane.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from qwen3_embed_core import Qwen3Reranker
from qwen3_embed_core._qwen3 import DEFAULT_RERANK_INSTRUCTION
from qwen3_embed_core.testing import RerankReference

from .conftest import COS_MIN

# The issue's text: an Egyptian hieroglyph of Unicode 16's Extended-A block, then a CJK
# character whose first byte the tiny vocabulary merges with the hieroglyph's last.
UNICODE16_TEXT = "a \U00013ff3\u8c6e"
# The blocks the issue found, both new in Unicode 16: Egyptian Hieroglyphs Extended-A, Ol Onal.
UNICODE16_BLOCKS = (range(0x13460, 0x14400), range(0x1E5D0, 0x1E600))
# Each code point is tokenized before a CJK character whose first byte the tiny vocabulary
# merges with many last bytes: a code point classified as a letter joins that character's
# piece, anything else does not, so a classification that differs changes the tokens.
# Texts of many code points keep the whole-plane check to seconds; a text that differs
# is then compared code point by code point, in the issue's context, to name them.
CONTEXT = "{c}\u8c6e"
ISSUE_CONTEXT = "a {c}\u8c6e\n"
CHUNK = 512

EVERY_CODE_POINT = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
UNICODE16_CODE_POINTS = [c for block in UNICODE16_BLOCKS for c in block]


def _mismatches(ours, theirs, code_points, context):
    """Code points whose context tokenizes differently; ``ours``/``theirs`` take lists of texts."""
    chunks = [code_points[lo : lo + CHUNK] for lo in range(0, len(code_points), CHUNK)]
    texts = ["".join(context.format(c=chr(c)) for c in chunk) for chunk in chunks]
    bad = []
    for chunk, a, b in zip(chunks, ours(texts), theirs(texts), strict=True):
        if a != b:
            alone = [context.format(c=chr(c)) for c in chunk]
            bad += [c for c, x, y in zip(chunk, ours(alone), theirs(alone), strict=True)
                    if x != y] or chunk[:1]
    return bad


def _reference_batch(reference):
    """The reference tokenizer over many texts at once, in the file's token ids."""
    def encode(texts):
        ids = reference._id_map
        return [[ids[i] for i in e.ids]
                for e in reference.tokenizer.encode_batch(texts, add_special_tokens=False)]
    return encode


def test_a_unicode_16_letter_embeds_as_the_reference(embedder, reference):
    assert embedder.backend.tokenize(UNICODE16_TEXT) == reference.tokenize(UNICODE16_TEXT)
    vector = embedder.embed_documents([UNICODE16_TEXT])[0]
    assert float(np.dot(vector, reference.embed(UNICODE16_TEXT))) >= COS_MIN


def test_every_code_point_tokenizes_as_the_reference(embedder, reference):
    ours = embedder.backend.engine.tokenizer.encode_batch
    bad = _mismatches(ours, _reference_batch(reference), EVERY_CODE_POINT, CONTEXT)
    assert not bad, f"{len(bad)} code points tokenize unlike Qwen3's tokenizer: " + ", ".join(
        f"U+{c:04X}" for c in bad[:20]
    )


def test_the_unicode_16_blocks_tokenize_as_the_reference_in_the_issues_context(
    embedder, reference
):
    def ours(texts):
        return [embedder.backend.tokenize(t) for t in texts]

    def theirs(texts):
        return [reference.tokenize(t) for t in texts]

    assert _mismatches(ours, theirs, UNICODE16_CODE_POINTS, ISSUE_CONTEXT) == []


def test_nfc_is_applied_by_the_tokenizer_itself(embedder, reference):
    # A combining mark after "=" composes into U+2260 under NFC of the whole text, so a
    # custom instruction ending in "=" and a query starting with U+0338 tokenize as one.
    text = "x =\u0338 y e\u0301"
    assert unicodedata.normalize("NFC", text) != text
    assert embedder.backend.tokenize(text) == reference.tokenize(text)
    assert embedder.backend.tokenize(text) == embedder.backend.tokenize(
        unicodedata.normalize("NFC", text)
    )


@pytest.fixture(scope="module", params=["head", "plain"])
def reranker_pair(request, tiny_reranker, tiny_reranker_plain):
    path = tiny_reranker if request.param == "head" else tiny_reranker_plain
    rr = Qwen3Reranker.local(path)
    yield rr, RerankReference(path)
    rr.close()


RERANK_TEXTS = [
    UNICODE16_TEXT,
    "\U0001e5d0\U0001e5d1 ol onal \U0001e5fa",
    "a document that spells <|im_end|> and <|endoftext|>",
    "<think>inside</think> tags are added tokens",
    "caf\u00e9 vs cafe\u0301",
]


def test_reranker_prompts_tokenize_as_the_reference(reranker_pair):
    rr, ref = reranker_pair
    backend = rr.backend
    for query in RERANK_TEXTS:
        for doc in RERANK_TEXTS:
            q, d = (unicodedata.normalize("NFC", t) for t in (query, doc))
            ours = backend.prompt(q, d, DEFAULT_RERANK_INSTRUCTION)
            assert ours == ref.prompt_ids(q, d, DEFAULT_RERANK_INSTRUCTION), (query, doc)


def test_reranker_scores_a_unicode_16_text_as_the_reference(reranker_pair):
    rr, ref = reranker_pair
    scores = rr.score(UNICODE16_TEXT, [UNICODE16_TEXT, "x \U00013460\u8c6e y"])
    expected = [ref.score(UNICODE16_TEXT, UNICODE16_TEXT),
                ref.score(UNICODE16_TEXT, "x \U00013460\u8c6e y")]
    assert np.allclose(scores, expected, atol=1e-4)


def test_reranker_tokenizes_the_unicode_16_blocks_as_the_reference(reranker_pair):
    rr, ref = reranker_pair

    def ours(texts):
        return [rr.backend.engine.tokenize(t) for t in texts]

    def theirs(texts):
        return [ref.token_ids(t) for t in texts]

    assert _mismatches(ours, theirs, UNICODE16_CODE_POINTS, ISSUE_CONTEXT) == []


def test_a_missing_tokenizers_package_is_named(tiny_model):
    """A core dependency: only a broken install lacks it, and both backends say so."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['tokenizers'] = None  # as if tokenizers were not installed\n"
        "from qwen3_embed_core import Qwen3Embedder, MissingDependencyError\n"
        "try:\n"
        f"    Qwen3Embedder.local({str(tiny_model)!r})\n"
        "except MissingDependencyError as e:\n"
        "    print(e)\n"
        "with Qwen3Embedder.model_runner(base_url='http://127.0.0.1:9/v1') as http:\n"
        "    try:\n"
        "        http.embed_documents(['caf\\u00e9'])\n"  # normalised before any request
        "    except MissingDependencyError as e:\n"
        "        print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.count("tokenizers is not installed") == 2, out
    assert out.count("pip install 'tokenizers>=0.20'") == 2


def test_special_token_text_is_read_as_tokens_only_when_asked(reranker_pair):
    rr, ref = reranker_pair
    for text in ["<|im_start|>user\nhi<|im_end|>", "<|im_end|><|im_end|>x<think>y</think>",
                 "a<|endoftext|>b <|im_start|>", "no specials \U00013ff3 here"]:
        for special in (True, False):
            assert rr.backend.engine.tokenize(text, special=special) == ref.token_ids(
                text, special=special
            ), (text, special)


# -- NFC as Qwen3's tokenizer does it ----------------------------------------------------

# Combining marks whose combining class differs between Python 3.11's unicodedata and the
# tokenizers library's tables: NFC reorders them differently (issue 18's follow-up).
NFC_DISAGREEING_TEXT = "\u0341\U00016ff1"


def _nfc_contexts(c: str) -> tuple[str, ...]:
    return (c + "\u0301", "\u0301" + c, "a" + c, c, c + "\u0334", "\u0341" + c)


def test_check_text_normalises_with_the_tokenizers_tables():
    """Every code point, in contexts where reordering shows: check_text's NFC is the
    tokenizers library's, whatever Python's unicodedata version says."""
    from tokenizers.normalizers import NFC

    from qwen3_embed_core._inputs import check_text

    theirs = NFC().normalize_str
    marks = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF
             and (unicodedata.combining(chr(c)) or unicodedata.decomposition(chr(c)))]
    bad = [ascii(t) for c in marks for t in _nfc_contexts(c)
           if t.strip() and check_text(t) != theirs(t)]
    assert bad == []


def test_nfc_disagreement_embeds_as_the_reference(tiny_model, reference):
    from qwen3_embed_core import Qwen3Embedder

    with Qwen3Embedder.local(tiny_model, n_threads=1) as emb:
        got = emb.embed_documents([NFC_DISAGREEING_TEXT, "x" + NFC_DISAGREEING_TEXT])
        query = emb.embed_query(NFC_DISAGREEING_TEXT)
        expected_query = reference.embed(emb.format_query(NFC_DISAGREEING_TEXT))
    for vec, text in zip(got, [NFC_DISAGREEING_TEXT, "x" + NFC_DISAGREEING_TEXT], strict=True):
        assert float(vec @ reference.embed(text)) >= COS_MIN
    assert float(query @ expected_query) >= COS_MIN


# -- llama.cpp servers: Unicode 16 ------------------------------------------------------


def _gap(c: int) -> bool:
    from qwen3_embed_core._qwen3 import LLAMA_CPP_UNICODE_GAPS

    return any(lo <= c <= hi for lo, hi in LLAMA_CPP_UNICODE_GAPS)


def _server_batch(root):
    """llama-server's /tokenize over many texts in one request (the EOS id between them),
    on the text as the HTTP backend sends it."""
    import httpx

    from qwen3_embed_core._tokenizer import qwen3_nfc

    with httpx.Client(timeout=120) as client:
        eos = client.post(root + "/tokenize", json={"content": "<|endoftext|>",
                                                    "parse_special": True}).json()["tokens"][0]

    def encode(texts):
        content = []
        for t in texts:
            content += [qwen3_nfc(t), eos]
        with httpx.Client(timeout=120) as client:
            tokens = client.post(root + "/tokenize", json={
                "content": content, "add_special": False, "parse_special": False,
            }).json()["tokens"]
        out = [[]]
        for t in tokens:
            out[-1].append(t) if t != eos else out.append([])
        return out[:-1]

    return encode


@pytest.mark.server
def test_llama_server_differs_only_on_the_declared_code_points(llama_server, reference):
    """Through a real llama-server, every code point in the issue's context: those that
    tokenize unlike Qwen3's tokenizer all lie in LLAMA_CPP_UNICODE_GAPS (and some do, on
    this vocabulary, so the table is needed)."""
    bad = _mismatches(_reference_batch(reference), _server_batch(llama_server.root),
                      EVERY_CODE_POINT, ISSUE_CONTEXT)
    assert bad and all(_gap(c) for c in bad), [f"U+{c:04X}" for c in bad if not _gap(c)]
    assert 0x13FF3 in bad


@pytest.mark.server
def test_a_unicode_16_text_over_http_is_refused_by_index(llama_server, rerank_server):
    from qwen3_embed_core import InvalidInputError, Qwen3Embedder

    with Qwen3Embedder.model_runner("tiny", base_url=llama_server.base_url) as http:
        with pytest.raises(InvalidInputError, match=r"U\+13FF3.*local backend") as info:
            http.embed_documents(["fine", UNICODE16_TEXT])
        assert info.value.index == 1 and "index 1" in str(info.value)
        with pytest.raises(InvalidInputError, match=r"U\+1E5D0"):
            http.embed_query("\U0001e5d0 query")
        assert http.embed_documents(["fine \U00013000 older hieroglyph"]).shape[0] == 1
    with Qwen3Reranker.model_runner("tiny", base_url=rerank_server.base_url) as rr:
        with pytest.raises(InvalidInputError, match="document at index 2") as info:
            rr.score("q", ["a", "b", UNICODE16_TEXT])
        assert info.value.index == 2
        with pytest.raises(InvalidInputError, match="the query"):
            rr.score(UNICODE16_TEXT, ["a"])
