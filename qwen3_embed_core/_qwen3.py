"""Every Qwen3-Embedding fact the library depends on, in one place.

Each constant carries a one-line reason; docs/sources.md says where each group of facts
comes from (model cards, llama.cpp, Docker Model Runner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The model was trained with exactly this query format: a newline after the
# task and *no* space after "Query:". Peers that add a space lose quality.
QUERY_TEMPLATE = "Instruct: {task}\nQuery:{query}"

# The task the model card uses for web-search style retrieval; our default.
DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"

# Last-token pooling reads the hidden state of this token; the Hugging Face
# tokenizer appends it and the vector is wrong without it (cosine ~0.84).
EOS_TEXT = "<|endoftext|>"
# Its id in the real Qwen3 vocabulary (the tiny test model uses its own id).
EOS_TOKEN_ID = 151643

# Qwen3's Hugging Face tokenizer normalises text to NFC before BPE; llama.cpp
# does not, so the core does it for every backend, with the tokenizers library's
# own tables (_tokenizer.qwen3_nfc), which differ from Python's unicodedata.
UNICODE_NORMALIZATION: Final = "NFC"

# Matryoshka (MRL) training covers prefixes from 32 dimensions up.
MIN_DIMENSIONS = 32

# Full embedding sizes per model size, from the model cards.
FULL_DIMENSIONS = {"0.6B": 1024, "4B": 2560, "8B": 4096}

# Trained context; some GGUF files state 40960, which llama.cpp reports instead.
MAX_CONTEXT_TOKENS = 32768

# llama.cpp's enum value for last-token pooling (LLAMA_POOLING_TYPE_LAST).
POOLING_LAST = 3

# -- the GGUF file and its tokenizer -------------------------------------------
# general.architecture of every Qwen3 GGUF (embedding and reranker alike).
QWEN3_ARCH = "qwen3"
# tokenizer.ggml.model for byte-level BPE (GPT-2 style), which Qwen3 uses.
QWEN3_TOKENIZER_MODEL = "gpt2"
# Qwen3's pre-tokenizer split, as in its tokenizer.json (then ByteLevel without
# its own regex). llama.cpp's copy of it classifies characters with older
# Unicode tables (letters new in Unicode 16 are not letters there), so the
# local backends tokenize with Hugging Face tokenizers and this pattern instead.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Code points (first, last) that llama.cpp's pre-tokenizer classifies otherwise than
# Qwen3's tokenizer: letters and digits new in Unicode 16 (Egyptian hieroglyphs
# extended-A U+13460-U+143FA, Ol Onal, Garay, Kirat Rai, Sunuwar, Tulu-Tigalari...), which
# llama.cpp's unicode-data.cpp (llama-cpp-python 0.3.36) has as unassigned, so \p{L} and
# \p{N} do not match them there. Found by comparing, for every code point, its flags
# with the tokenizers library's \p{L}, \p{N} and \s; token ids through a real
# llama-server then differ for 71 of them on the tiny test vocabulary, and none of the
# contexts tried on Qwen3's real one (benchmarks/http_tokenizer_parity.py), but a split
# that differs can change tokens wherever a merge spans it. 4,382 code points.
LLAMA_CPP_UNICODE_GAPS: Final = (
    (0x01C89, 0x01C8A), (0x0A7CB, 0x0A7CD), (0x0A7DA, 0x0A7DC), (0x105C0, 0x105F3),
    (0x10D40, 0x10D65), (0x10D6F, 0x10D85), (0x10EC2, 0x10EC4), (0x11380, 0x11389),
    (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113B7),
    (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x116D0, 0x116E3), (0x11BC0, 0x11BE0),
    (0x11BF0, 0x11BF9), (0x13460, 0x143FA), (0x16100, 0x1611D), (0x16130, 0x16139),
    (0x16D40, 0x16D6C), (0x16D70, 0x16D79), (0x18CFF, 0x18CFF), (0x1CCF0, 0x1CCF9),
    (0x1E5D0, 0x1E5ED), (0x1E5F0, 0x1E5FA),
)
# GGUF token types (llama.cpp's llama_token_type): control tokens (<|endoftext|>,
# <|im_start|>) are matched in text only when asked; user-defined ones (<think>)
# always, as Qwen3's tokenizer does with its added tokens.
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


@dataclass(frozen=True)
class Task:
    """An instruction for the query side, and optionally the document side.

    ``description`` is the text that goes into ``Instruct: {task}``.
    ``symmetric`` tasks (semantic similarity, bitext mining) put the same
    instruction on documents too; retrieval tasks leave documents bare.
    """

    description: str
    symmetric: bool = False


# Presets: the task descriptions the model was evaluated with (model card /
# MTEB scripts). Instructions stay in English even for other languages.
TASKS: dict[str, Task] = {
    "web_search": Task(DEFAULT_TASK),
    "question_answering": Task(
        "Given a question, retrieve relevant documents that best answer the question"
    ),
    "scientific_claims": Task(
        "Given a scientific claim, retrieve documents that support or refute the claim"
    ),
    "code_from_comment": Task(
        "Given a code comment, retrieve the code snippet corresponding to that comment."
    ),
    "coding_questions": Task(
        "Given a question about coding, retrieval code or passage that can solve user's question"
    ),
    "intent_classification": Task(
        "Given a online banking query, find the corresponding intents"
    ),
    "news_clustering": Task("Identify the topic or theme of the given news articles"),
    "semantic_similarity": Task("Retrieve semantically similar text", symmetric=True),
    "bitext_mining": Task("Retrieve parallel sentences", symmetric=True),
}
DEFAULT_TASK_NAME = "web_search"


@dataclass(frozen=True)
class Variant:
    """One published GGUF file of Qwen3-Embedding on the Hugging Face hub."""

    name: str
    repo_id: str
    filename: str
    dimensions: int

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/blob/main/{self.filename}"


def _variant(size: str, quant: str, file_quant: str) -> Variant:
    return Variant(
        name=f"{size}-{quant}",
        repo_id=f"Qwen/Qwen3-Embedding-{size}-GGUF",
        filename=f"Qwen3-Embedding-{size}-{file_quant}.gguf",
        dimensions=FULL_DIMENSIONS[size],
    )


# The official Qwen GGUF conversions (the F16 files are named "f16" there).
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        _variant("0.6B", "Q8_0", "Q8_0"),
        _variant("0.6B", "F16", "f16"),
        _variant("4B", "Q4_K_M", "Q4_K_M"),
        _variant("4B", "F16", "f16"),
        _variant("8B", "Q4_K_M", "Q4_K_M"),
        _variant("8B", "F16", "f16"),
    )
}

# Docker Model Runner's model; ":latest" is the 4B Q4_K_M file.
MODEL_RUNNER_MODEL = "ai/qwen3-embedding"

# Model Runner tags and the variant (same weights) each one serves.
MODEL_RUNNER_TAGS: dict[str, str] = {
    "ai/qwen3-embedding": "4B-Q4_K_M",
    "ai/qwen3-embedding:latest": "4B-Q4_K_M",
    "ai/qwen3-embedding:4B": "4B-Q4_K_M",
    "ai/qwen3-embedding:4B-Q4_K_M": "4B-Q4_K_M",
    "ai/qwen3-embedding:0.6B-F16": "0.6B-F16",
    "ai/qwen3-embedding:4B-F16": "4B-F16",
    "ai/qwen3-embedding:8B-Q4_K_M": "8B-Q4_K_M",
    "ai/qwen3-embedding:8B-F16": "8B-F16",
}

# Model Runner's host-side TCP endpoint (needs `docker desktop enable model-runner --tcp 12434`).
MODEL_RUNNER_URL = "http://localhost:12434"
# Its OpenAI-compatible path for the llama.cpp engine.
MODEL_RUNNER_ENGINE_PATH = "/engines/llama.cpp/v1"
# Model Runner rejects request bodies above 10 MiB.
MODEL_RUNNER_MAX_BODY_BYTES = 10 * 1024 * 1024
# Model Runner's address from inside a container (no TCP port to enable there).
MODEL_RUNNER_CONTAINER_URL = "http://model-runner.docker.internal"
# The command that opens Model Runner's host TCP port; without it nothing listens on 12434.
MODEL_RUNNER_ENABLE_TCP = "docker desktop enable model-runner --tcp 12434"

# Model Runner answers its own errors in plain text (Go's http.Error), not
# JSON; these are the bodies we recognise, matched case-insensitively.
# 404 when the tag has not been pulled: the fix is `docker model pull <tag>`.
MODEL_RUNNER_MODEL_NOT_FOUND = "model not found"
# 400 when the request names no model.
MODEL_RUNNER_MODEL_REQUIRED = "model is required"
# 500 when the llama.cpp runner for the model could not start (memory, bad file).
MODEL_RUNNER_LOAD_FAILED = "unable to load runner"
# 400 for a body over MODEL_RUNNER_MAX_BODY_BYTES.
MODEL_RUNNER_BODY_TOO_LARGE = "request too large"

# llama-server's JSON errors ({"error": {"code", "message", "type"}}) that are
# about one input text rather than the server, so they name the text's index.
# 500 when an input can't be split and exceeds the physical batch (--ubatch-size):
LLAMA_SERVER_TOO_LARGE = r"input \((\d+) tokens\) is too large to process"
LLAMA_SERVER_BATCH_SIZE = r"current batch size: (\d+)"
# 400 (type exceed_context_size_error) when an input exceeds a slot's context:
LLAMA_SERVER_EXCEEDS_CONTEXT = "exceed_context_size_error"
# 400 when an input tokenizes to nothing.
LLAMA_SERVER_EMPTY_INPUT = "input content cannot be empty"

# llama-server parses special tokens in input text, so the exact text EOS_TEXT
# is one token; the usage it reports for that input tells whether the server
# appends EOS itself (2 tokens) or leaves it to us (1 token).
EOS_PROBE_SERVER_APPENDS = 2
EOS_PROBE_SERVER_DOES_NOT = 1
# Qwen3's special tokens are spelled <|name|>; a server that parses special
# tokens reads such text in a document as the token, not as characters.
SPECIAL_TOKEN_PATTERN = r"<\|[A-Za-z0-9_]{1,40}\|>"
# Ordinary Qwen3 tokens that llama.cpp re-types as control when it loads the vocabulary
# (llama-vocab.cpp's EOG/FIM name lists, llama.cpp of llama-cpp-python 0.3.36: of its
# ~60 names only "</s>", id 128247, is a normal token of Qwen3's), so a server parsing
# special tokens reads this text as one token where Qwen3's tokenizer gives "</", "s", ">".
LLAMA_CPP_CONTROL_SPELLINGS = ("</s>",)


def lookup_variant(name: str) -> Variant | None:
    """The variant a name or Model Runner tag refers to, or None.

    Accepts ``"0.6B-Q8_0"``, case-insensitively, and every Model Runner tag
    (``"ai/qwen3-embedding:0.6B-F16"``).
    """
    if name in MODEL_RUNNER_TAGS:
        return VARIANTS[MODEL_RUNNER_TAGS[name]]
    for key, variant in VARIANTS.items():
        if key.lower() == name.lower():
            return variant
    return None


def dimensions_for_model(name: str) -> int | None:
    """Full embedding size for a variant name or Model Runner tag, if known."""
    variant = lookup_variant(name)
    return variant.dimensions if variant else None


# -- Qwen3-Reranker ------------------------------------------------------------

# The model card's default reranking instruction (Qwen/Qwen3-Reranker-0.6B, "Usage").
DEFAULT_RERANK_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)
# Docker Model Runner's reranker; ":latest" is the 4B (tags :0.6B, :4B, :8B, all F16).
RERANKER_MODEL_RUNNER_MODEL = "ai/qwen3-reranker"
RERANKER_MODEL_RUNNER_TAGS = (
    "ai/qwen3-reranker", "ai/qwen3-reranker:latest", "ai/qwen3-reranker:0.6B",
    "ai/qwen3-reranker:4B", "ai/qwen3-reranker:8B",
)

# The prompt, to the character, from the model card's transformers usage: the
# system turn, the user turn holding the pair, and the assistant turn opened with
# an empty think block. The three parts are tokenized separately (as the card's
# code does): the prefix and suffix with their special tokens read as tokens,
# the middle (which holds the user's query and document) as plain text.
RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
    'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
    "<|im_end|>\n<|im_start|>user\n"
)
RERANK_TEMPLATE = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
# Score = softmax over the logits of these two tokens at the last position,
# the "yes" share (= sigmoid(yes - no)). Their ids in the real vocabulary:
RERANK_YES, RERANK_NO = "yes", "no"
RERANK_YES_ID, RERANK_NO_ID = 9693, 2152
# Converted by llama.cpp b6578+ (PR #15824): a 2-row classifier [yes, no] with
# these labels, and RANK pooling (llama.cpp's LLAMA_POOLING_TYPE_RANK).
RERANK_HEAD_TENSOR = "cls.output.weight"
RERANK_LABELS = (RERANK_YES, RERANK_NO)
POOLING_RANK = 4
# Qwen3 ties the output layer to token_embd in the 0.6B model; a plain (headless)
# conversion reads the yes/no logits from whichever of the two the file has.
OUTPUT_TENSOR, TOKEN_EMBD_TENSOR = "output.weight", "token_embd.weight"
# The key of the rerank prompt template llama.cpp's converter writes into a reranker.
RERANK_TEMPLATE_KEY = "tokenizer.chat_template.rerank"
# The pooling types an *embedding* conversion declares (none of them is a reranker).
EMBEDDING_POOLING_TYPES = {1: "mean", 2: "cls", 3: "last"}


# -- reranking over HTTP (llama-server --reranking, Docker Model Runner) --------
# Sources: llama.cpp as vendored in llama-cpp-python 0.3.36 — tools/server/server.cpp
# (the routes), tools/server/server-context.cpp (post_rerank, send_rerank),
# tools/server/server-common.cpp (format_prompt_rerank, format_response_rerank),
# src/llama-graph.cpp (build_pooling, LLAMA_POOLING_TYPE_RANK); Docker Model Runner
# v1.0.4+ (its rerank routes).

# llama-server's rerank route under its /v1 root (it also serves /rerank, /reranking and
# /v1/reranking); the body is {"model", "query", "documents", "top_n"} and the answer
# {"results": [{"index", "relevance_score"}], "usage"} sorted by score, best first.
LLAMA_SERVER_RERANK_PATH = "/rerank"
# Model Runner's rerank route under its root (also /engines/rerank); there is no
# /engines/llama.cpp/v1/rerank. It runs llama-server with --embeddings --reranking.
MODEL_RUNNER_RERANK_PATH = "/engines/llama.cpp/rerank"
# 501 (type not_supported_error) from a llama-server started without --reranking.
LLAMA_SERVER_NO_RERANKING = "does not support reranking"
# llama-server fills the GGUF's tokenizer.chat_template.rerank with {query} and
# {document}; the instruction is the one written into that template at conversion time
# (the default above). There is no instruction field, so another instruction cannot be
# asked for over HTTP.
# With RANK pooling llama.cpp applies the 2-row cls.output head [yes, no] to the last
# token and, for the qwen3 architecture, a softmax over the two; llama-server answers the
# first value, so relevance_score is P(yes) as the model card computes it, unchanged.
# A file without cls.output (older and community conversions) gets that softmax over the
# hidden state instead: its first component, about 1e-20 on the real models, with no
# error (llama.cpp issues #13820, #16407). The head check scores the model card's own
# example pair once per server; any Qwen3 reranker rates it near 1, so a score below
# this means the head is missing. (The document's leading space puts the query/document
# boundary where the tokenizer splits words, for the template check below.)
RERANK_NO_HEAD_SCORE = 1e-6
RERANK_PROBE_QUERY = "What is the capital of China?"
RERANK_PROBE_DOCUMENT = " The capital of China is Beijing."
# Without tokenizer.chat_template.rerank (plain conversions) llama-server scores the
# bare concatenation query + document (a BERT-style fallback for other rerankers), not
# the Qwen3 prompt: the same words split elsewhere between query and document then get
# the same score. The template check scores this split too; under the template the
# document "." is a different question from the pair above.
RERANK_PROBE_SPLIT = (RERANK_PROBE_QUERY + RERANK_PROBE_DOCUMENT[:-1], RERANK_PROBE_DOCUMENT[-1:])
# Scores this close (relative) are the same computation, not two different prompts.
RERANK_SAME_SCORE = 1e-4
# The first llama.cpp converter that writes cls.output for Qwen3-Reranker (PR #15824).
RERANK_HEAD_CONVERTER = "llama.cpp b6578"
