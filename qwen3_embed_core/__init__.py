"""qwen3_embed_core: Qwen3-Embedding vectors and Qwen3-Reranker scores, exact to the reference.

>>> from qwen3_embed_core import Qwen3Embedder
>>> emb = Qwen3Embedder.local("Qwen3-Embedding-0.6B-Q8_0.gguf", dimensions=256)
>>> docs = emb.embed_documents(["Paris is the capital of France."])
>>> q = emb.embed_query("capital of France?")

Framework-free: numpy and httpx at import time; llama-cpp-python and
huggingface-hub are imported when a local model is loaded. Integrations
build on :mod:`qwen3_embed_core.adapters`; test models and the numpy
reference are in :mod:`qwen3_embed_core.testing`.
"""

from ._chunking import chunk_text
from ._embedder import Backend, Qwen3Embedder
from ._errors import (
    BackendError,
    BadResponseError,
    ConfigurationError,
    InvalidInputError,
    InvalidInputTypeError,
    MissingDependencyError,
    ModelFileError,
    ModelNotFoundError,
    Qwen3EmbedError,
    ServerError,
    ServerUnavailableError,
    TextTooLongError,
    WrongModelKindError,
)
from ._hub import resolve_model
from ._inputs import Instruction, check_text, check_texts
from ._options import LocalOptions, ModelRunnerOptions, infer_backend
from ._qwen3 import (
    DEFAULT_TASK,
    EOS_TEXT,
    FULL_DIMENSIONS,
    MIN_DIMENSIONS,
    MODEL_RUNNER_MODEL,
    MODEL_RUNNER_URL,
    QUERY_TEMPLATE,
    TASKS,
    VARIANTS,
    Task,
    Variant,
)
from ._records import BadRecord, Hit, IngestReport, content_hash, point_id
from ._reranker import Qwen3Reranker, RerankBackend, RerankResult
from ._spec import EmbedderSpec, RerankerSpec
from ._version import DISTRIBUTION, __version__

__all__ = [
    "DEFAULT_TASK",
    "DISTRIBUTION",
    "EOS_TEXT",
    "FULL_DIMENSIONS",
    "MIN_DIMENSIONS",
    "MODEL_RUNNER_MODEL",
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
    "LocalOptions",
    "MissingDependencyError",
    "ModelFileError",
    "ModelNotFoundError",
    "ModelRunnerOptions",
    "Qwen3EmbedError",
    "Qwen3Embedder",
    "Qwen3Reranker",
    "RerankBackend",
    "RerankResult",
    "RerankerSpec",
    "ServerError",
    "ServerUnavailableError",
    "Task",
    "TextTooLongError",
    "Variant",
    "WrongModelKindError",
    "__version__",
    "check_text",
    "check_texts",
    "chunk_text",
    "content_hash",
    "infer_backend",
    "point_id",
    "resolve_model",
]
