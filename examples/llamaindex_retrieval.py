"""LlamaIndex retrieval with Qwen3-Embedding: a vector index and its retriever, no LLM.

    python examples/llamaindex_retrieval.py                    # offline, tiny random-weight model
    python examples/llamaindex_retrieval.py --model Qwen3-Embedding-0.6B-Q8_0.gguf
    python examples/llamaindex_retrieval.py --model 0.6B-Q8_0  # a variant (Hugging Face cache)
    python examples/llamaindex_retrieval.py --model ai/qwen3-embedding:0.6B-F16  # Model Runner
    python examples/llamaindex_retrieval.py --model any --base-url http://127.0.0.1:8080/v1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex

from qwen3_embed_llamaindex import Qwen3Embedding

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    "What is the capital of France?",
    "How do plants turn sunlight into food?",
    "Which index makes nearest-neighbour search fast?",
]


def make_embedding(args: argparse.Namespace) -> Qwen3Embedding:
    options = {"dimensions": args.dimensions, "task": args.task}
    if args.model or args.base_url:
        options.update(model=args.model, base_url=args.base_url)
    else:
        from qwen3_embed_core.testing import cached_tiny_model

        print("No model given: using the tiny test model (random weights), built offline.")
        print("Its rankings are MEANINGLESS; pass --model for real results.\n")
        options["model"] = cached_tiny_model()
    return Qwen3Embedding(**{k: v for k, v in options.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "--model-path",
                        help="GGUF path, variant name (0.6B-Q8_0) or Model Runner tag")
    parser.add_argument("--base-url", help="Model Runner or llama-server URL")
    parser.add_argument("--dimensions", type=int, help="Matryoshka size (32 to full)")
    parser.add_argument("--task", help="query task: a preset name or a description")
    parser.add_argument("--docs", type=Path, default=HERE / "docs", help="folder of .md files")
    parser.add_argument("-k", type=int, default=2, help="passages per question")
    args = parser.parse_args(argv)

    Settings.embed_model = make_embedding(args)
    Settings.llm = None  # retrieval only: no LLM is called
    print(f"model: {Settings.embed_model.model_name} ({Settings.embed_model.backend})")

    # Nodes are embedded bare, in batches of embed_batch_size; each question
    # gets the Qwen3 query instruction.
    documents = SimpleDirectoryReader(str(args.docs), required_exts=[".md"]).load_data()
    index = VectorStoreIndex.from_documents(documents)
    retriever = index.as_retriever(similarity_top_k=args.k)

    for question in QUESTIONS:
        print(f"\nQ: {question}")
        for rank, hit in enumerate(retriever.retrieve(question), 1):
            body = hit.node.get_content().split("\n\n", 1)[-1].strip().splitlines()[0]
            print(f"  {rank}. {hit.node.metadata['file_name']} (score {hit.score:.3f}): {body}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
