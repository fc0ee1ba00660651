"""LlamaIndex integration of Qwen3-Embedding.

>>> from llama_index.core import Settings
>>> from qwen3_embed_llamaindex import Qwen3Embedding
>>> Settings.embed_model = Qwen3Embedding(model_path="Qwen3-Embedding-0.6B-Q8_0.gguf")
>>> Settings.embed_model = Qwen3Embedding(model="ai/qwen3-embedding:0.6B-F16")  # Model Runner

Install with ``pip install 'qwen3-embed[llamaindex]'`` (plus ``[local]`` for GGUF files).
"""

from ._embedding import Qwen3Embedding

__all__ = ["Qwen3Embedding"]
