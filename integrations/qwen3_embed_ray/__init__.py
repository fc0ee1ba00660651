"""Qwen3-Embedding on Ray Data: embed and ingest datasets across many actors and machines.

>>> import ray
>>> from qwen3_embed_ray import Qwen3EmbedBatches, QdrantDatasink, ingest_dataset
>>> ds = ray.data.read_parquet("s3://bucket/docs/")          # any dataset with a text column
>>> ds = ds.map_batches(Qwen3EmbedBatches, fn_constructor_kwargs={"model": "0.6B-Q8_0"},
...                     concurrency=4, batch_size=64, num_cpus=4)   # one model per actor
>>> ds.write_datasink(QdrantDatasink("http://qdrant:6333", "docs"))
>>> report = ingest_dataset(ds, "qdrant+http://qdrant:6333/docs", model="0.6B-Q8_0")

Each actor rebuilds its embedder from a serialisable ``EmbedderSpec`` (never
a pickled model, never an API key). Point ids are ``ingest``'s ``uuid5``, so
a task Ray retries updates the points it wrote instead of duplicating them,
and ``ingest_dataset`` skips records already stored unchanged without
embedding them again. ``ray.init()`` picks the cluster (``RAY_ADDRESS``).
"""

from ._ingest import ingest_dataset
from ._sinks import ChromaDatasink, QdrantDatasink
from ._stage import Qwen3EmbedBatches

__all__ = ["ChromaDatasink", "QdrantDatasink", "Qwen3EmbedBatches", "ingest_dataset"]
