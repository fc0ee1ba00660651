"""LlamaIndex integration of Qwen3-Embedding and Qwen3-Reranker.

>>> from llama_index.core import Settings
>>> from qwen3_embed_llamaindex import Qwen3Embedding, Qwen3Rerank
>>> Settings.embed_model = Qwen3Embedding(model_path="Qwen3-Embedding-0.6B-Q8_0.gguf")
>>> Settings.embed_model = Qwen3Embedding(model="ai/qwen3-embedding:0.6B-F16")  # Model Runner
>>> rerank = Qwen3Rerank(model="Qwen3-Reranker-0.6B-Q8_0.gguf", top_n=3)        # a postprocessor
>>> engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])

Install with ``pip install 'qwen3-embedding-kit[llamaindex]'`` (plus ``[local]`` for GGUF files).
"""

from ._embedding import Qwen3Embedding
from ._rerank import Qwen3Rerank

__all__ = ["Qwen3Embedding", "Qwen3Rerank"]
