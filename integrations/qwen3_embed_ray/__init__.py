"""Qwen3-Embedding on Ray Data: embed and sync datasets across many actors and machines.

>>> import ray
>>> from qwen3_embed_ray import Qwen3EmbedBatches, StoreDatasink, ingest_dataset
>>> ds = ray.data.read_parquet("s3://bucket/docs/")   # records: text, id?, metadata?, source?
>>> ds = ds.map_batches(Qwen3EmbedBatches, fn_constructor_kwargs={"model": "0.6B-Q8_0"},
...                     concurrency=4, batch_size=64, num_cpus=4)   # one model per actor
>>> ds.write_datasink(StoreDatasink("qdrant+http://qdrant:6333/docs"))
>>> report = ingest_dataset(ds, "qdrant+http://qdrant:6333/docs", model="0.6B-Q8_0",
...                         cleanup="incremental")

This package holds only what is Ray's: the embedding stage, the datasinks
and the writer actor of an embedded store. Stores, URIs, chunking and sync
are the core's store layer (``qwen3_embed_core.stores``), the same the Python
API and the command line use. Each actor rebuilds its embedder from a
serialisable ``EmbedderSpec`` (never a pickled model, never an API key).
``ray.init()`` picks the cluster (``RAY_ADDRESS``).
"""

from ._ingest import ingest_dataset, ingest_files
from ._sinks import ChromaDatasink, QdrantDatasink, StoreDatasink
from ._stage import Qwen3EmbedBatches

__all__ = ["ChromaDatasink", "QdrantDatasink", "Qwen3EmbedBatches", "StoreDatasink",
           "ingest_dataset", "ingest_files"]
