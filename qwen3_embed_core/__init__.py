"""qwen3_embed_core: Qwen3-Embedding vectors, exact to the reference.

>>> from qwen3_embed_core import Qwen3Embedder
>>> emb = Qwen3Embedder.local("Qwen3-Embedding-0.6B-Q8_0.gguf", dimensions=256)
>>> docs = emb.embed_documents(["Paris is the capital of France."])
>>> q = emb.embed_query("capital of France?")

Framework-free: numpy and httpx at import time; llama-cpp-python and
huggingface-hub are imported when a local model is loaded.
"""

from ._chunking import chunk_text
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
from ._http import ModelRunnerBackend
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
from ._records import BadRecord, Hit, IngestReport, Record, content_hash, point_id
from ._spec import EmbedderSpec, model_id

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
    "BadRecord",
    "BadResponseError",
    "ConfigurationError",
    "EmbedderSpec",
    "Hit",
    "IngestReport",
    "Instruction",
    "InvalidInputError",
    "InvalidInputTypeError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelRunnerBackend",
    "Qwen3EmbedError",
    "Qwen3Embedder",
    "Record",
    "ServerError",
    "ServerUnavailableError",
    "Task",
    "TextTooLongError",
    "Variant",
    "__version__",
    "check_dimensions",
    "check_text",
    "check_texts",
    "chunk_text",
    "content_hash",
    "lookup_variant",
    "model_id",
    "point_id",
    "resolve_instruction",
    "resolve_model",
]
