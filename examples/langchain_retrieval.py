"""LangChain retrieval with Qwen3-Embedding: a retriever chain over a vector store, no LLM.

    python examples/langchain_retrieval.py                     # offline, tiny random-weight model
    python examples/langchain_retrieval.py --model Qwen3-Embedding-0.6B-Q8_0.gguf
    python examples/langchain_retrieval.py --model 0.6B-Q8_0   # a variant (Hugging Face cache)
    python examples/langchain_retrieval.py --model ai/qwen3-embedding:0.6B-F16   # Model Runner
    python examples/langchain_retrieval.py --model any --base-url http://127.0.0.1:8080/v1

The chain retrieves the best passages for each question and fills a prompt
with them: the step before an LLM, which this example leaves out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from qwen3_embed_langchain import Qwen3Embeddings

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    "What is the capital of France?",
    "How do plants turn sunlight into food?",
    "Which index makes nearest-neighbour search fast?",
]
PROMPT = PromptTemplate.from_template(
    "Answer the question using only this context:\n{context}\n\nQuestion: {question}"
)


def load_documents(folder: Path) -> list[Document]:
    return [
        Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name})
        for p in sorted(folder.glob("*.md"))
    ]


def make_embeddings(args: argparse.Namespace) -> Qwen3Embeddings:
    options = {"dimensions": args.dimensions, "task": args.task}
    if args.model or args.base_url:
        options.update(model=args.model, base_url=args.base_url)
    else:
        from qwen3_embed_core.testing import cached_tiny_model

        print("No model given: using the tiny test model (random weights), built offline.")
        print("Its rankings are MEANINGLESS; pass --model for real results.\n")
        options["model"] = cached_tiny_model()
    return Qwen3Embeddings(**{k: v for k, v in options.items() if v is not None})


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

    embeddings = make_embeddings(args)
    print(f"model: {embeddings.qwen3_embedder.model_name} ({embeddings.backend})")
    # Documents are embedded bare; each question gets the Qwen3 query instruction.
    store = InMemoryVectorStore.from_documents(load_documents(args.docs), embeddings)
    retriever = store.as_retriever(search_kwargs={"k": args.k})

    def context(docs: list[Document]) -> str:
        return "\n\n".join(f"[{d.metadata['source']}] {d.page_content.strip()}" for d in docs)

    chain = {"context": retriever | context, "question": RunnablePassthrough()} | PROMPT

    for question in QUESTIONS:
        print(f"\nQ: {question}")
        for rank, doc in enumerate(retriever.invoke(question), 1):
            first = next(ln for ln in doc.page_content.splitlines() if ln.strip(" #"))
            if first.startswith("#"):  # a title: show the text under it
                first = doc.page_content.split("\n\n", 1)[-1].strip().splitlines()[0]
            print(f"  {rank}. {doc.metadata['source']}: {first}")
    print("\nThe chain's prompt for the first question (what an LLM would receive):\n")
    print(chain.invoke(QUESTIONS[0]).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
