"""Every Qwen3-Embedding fact the library depends on, in one place.

Each constant carries a one-line reason; DESIGN.md §2-4 holds the sources.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# does not, so the core does it for every backend.
UNICODE_NORMALIZATION = "NFC"

# Matryoshka (MRL) training covers prefixes from 32 dimensions up.
MIN_DIMENSIONS = 32

# Full embedding sizes per model size, from the model cards.
FULL_DIMENSIONS = {"0.6B": 1024, "4B": 2560, "8B": 4096}

# Trained context; some GGUF files state 40960, which llama.cpp reports instead.
MAX_CONTEXT_TOKENS = 32768

# llama.cpp's enum value for last-token pooling (LLAMA_POOLING_TYPE_LAST).
POOLING_LAST = 3


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
