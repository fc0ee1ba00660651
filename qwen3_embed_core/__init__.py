"""qwen3_embed_core: Qwen3-Embedding vectors, exact to the reference.

>>> from qwen3_embed_core import Qwen3Embedder
>>> emb = Qwen3Embedder.local("Qwen3-Embedding-0.6B-Q8_0.gguf", dimensions=256)
>>> docs = emb.embed_documents(["Paris is the capital of France."])
>>> q = emb.embed_query("capital of France?")

Framework-free: numpy and httpx at import time; llama-cpp-python and
huggingface-hub are imported when a local model is loaded.
"""

from ._embedder import Backend, Qwen3Embedder, check_dimensions
from ._errors import (
    BackendError,
    BadResponseError,
    ConfigurationError,
    InvalidInputError,
    InvalidInputTypeError,
    MissingDependencyError,
    ModelNotFoundError,
    Qwen3EmbedError,
    ServerError,
    ServerUnavailableError,
    TextTooLongError,
)
from ._hub import resolve_model
from ._inputs import Instruction, check_text, check_texts, resolve_instruction
from ._qwen3 import (
    DEFAULT_TASK,
    EOS_TEXT,
    FULL_DIMENSIONS,
    MAX_CONTEXT_TOKENS,
    MIN_DIMENSIONS,
    MODEL_RUNNER_MODEL,
    MODEL_RUNNER_TAGS,
    MODEL_RUNNER_URL,
    QUERY_TEMPLATE,
    TASKS,
    VARIANTS,
    Task,
    Variant,
    lookup_variant,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TASK",
    "EOS_TEXT",
    "FULL_DIMENSIONS",
    "MAX_CONTEXT_TOKENS",
    "MIN_DIMENSIONS",
    "MODEL_RUNNER_MODEL",
    "MODEL_RUNNER_TAGS",
    "MODEL_RUNNER_URL",
    "QUERY_TEMPLATE",
    "TASKS",
    "VARIANTS",
    "Backend",
    "BackendError",
    "BadResponseError",
    "ConfigurationError",
    "Instruction",
    "InvalidInputError",
    "InvalidInputTypeError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "Qwen3EmbedError",
    "Qwen3Embedder",
    "ServerError",
    "ServerUnavailableError",
    "Task",
    "TextTooLongError",
    "Variant",
    "__version__",
    "check_dimensions",
    "check_text",
    "check_texts",
    "lookup_variant",
    "resolve_instruction",
    "resolve_model",
]
