"""LangChain integration of Qwen3-Embedding and Qwen3-Reranker.

>>> from qwen3_embed_langchain import Qwen3Embeddings, Qwen3Reranker
>>> emb = Qwen3Embeddings(model_path="Qwen3-Embedding-0.6B-Q8_0.gguf")   # local GGUF
>>> emb = Qwen3Embeddings(model="ai/qwen3-embedding:0.6B-F16")          # Docker Model Runner
>>> vectors = emb.embed_documents(["Paris is the capital of France."])
>>> query = emb.embed_query("capital of France?")                       # with the instruction
>>> rr = Qwen3Reranker(model="Qwen3-Reranker-0.6B-Q8_0.gguf", top_n=3)  # a document compressor
>>> best = rr.compress_documents(docs, "capital of France?")  # metadata["relevance_score"]

Install with ``pip install 'qwen3-embedding-kit[langchain]'`` (plus ``[local]`` for GGUF files).
"""

from ._embeddings import Qwen3Embeddings
from ._reranker import Qwen3Reranker

__all__ = ["Qwen3Embeddings", "Qwen3Reranker"]
