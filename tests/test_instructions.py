"""The query template, presets, symmetric tasks and custom instructions."""

import pytest

from qwen3_embed_core import (
    DEFAULT_TASK,
    QUERY_TEMPLATE,
    TASKS,
    ConfigurationError,
    Qwen3Embedder,
    Task,
)
from qwen3_embed_core._inputs import resolve_instruction
from qwen3_embed_core._qwen3 import lookup_variant

from .conftest import COS_MIN


def test_template_is_exact_to_the_character():
    assert QUERY_TEMPLATE == "Instruct: {task}\nQuery:{query}"
    assert DEFAULT_TASK == (
        "Given a web search query, retrieve relevant passages that answer the query"
    )
    ins = resolve_instruction()
    assert ins.query("what is X?") == (
        "Instruct: Given a web search query, retrieve relevant passages that answer the query"
        "\nQuery:what is X?"
    )
    assert ins.document("a document") == "a document"


def test_presets_hold_the_evaluated_task_descriptions():
    expected = {
        "question_answering": "Given a question, retrieve relevant documents that best answer the question",
        "scientific_claims": "Given a scientific claim, retrieve documents that support or refute the claim",
        "code_from_comment": "Given a code comment, retrieve the code snippet corresponding to that comment.",
        "coding_questions": "Given a question about coding, retrieval code or passage that can solve user's question",
        "intent_classification": "Given a online banking query, find the corresponding intents",
        "news_clustering": "Identify the topic or theme of the given news articles",
        "semantic_similarity": "Retrieve semantically similar text",
        "bitext_mining": "Retrieve parallel sentences",
    }
    for name, description in expected.items():
        assert TASKS[name].description == description
    assert {n for n, t in TASKS.items() if t.symmetric} == {"semantic_similarity", "bitext_mining"}


def test_symmetric_tasks_instruct_documents_too():
    ins = resolve_instruction("semantic_similarity")
    assert ins.document("a") == "Instruct: Retrieve semantically similar text\nQuery:a"
    assert ins.query("a") == ins.document("a")
    assert resolve_instruction("question_answering").document("a") == "a"


def test_free_text_task_and_custom_task_objects():
    assert resolve_instruction("Find the recipe").query("eggs") == "Instruct: Find the recipe\nQuery:eggs"
    sym = resolve_instruction(Task("Match duplicates", symmetric=True))
    assert sym.document("x") == "Instruct: Match duplicates\nQuery:x"


def test_custom_instruction_is_a_verbatim_prefix():
    ins = resolve_instruction(instruction="search_query: ")
    assert ins.query("cats") == "search_query: cats"
    assert ins.document("cats") == "cats"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "x", "instruction": "y"}, "not both"),
        ({"task": ""}, "task= is empty"),
        ({"task": 3}, "task= must be"),
        ({"instruction": "  "}, "non-empty"),
    ],
)
def test_bad_task_arguments_are_rejected(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve_instruction(**kwargs)


def test_model_runner_tags_map_to_the_same_files():
    assert lookup_variant("ai/qwen3-embedding").name == "4B-Q4_K_M"
    assert lookup_variant("ai/qwen3-embedding:latest").name == "4B-Q4_K_M"
    assert lookup_variant("ai/qwen3-embedding:4B").filename == "Qwen3-Embedding-4B-Q4_K_M.gguf"
    assert lookup_variant("ai/qwen3-embedding:0.6B-F16").filename == "Qwen3-Embedding-0.6B-f16.gguf"
    assert lookup_variant("8b-q4_k_m").repo_id == "Qwen/Qwen3-Embedding-8B-GGUF"
    assert lookup_variant("ai/qwen3-embedding:8B-F16").dimensions == 4096
    assert lookup_variant("nonsense") is None


def test_instruction_reaches_the_model(embedder, reference):
    """The query vector is the reference's vector of the formatted string."""
    q = "where is the mitochondria?"
    formatted = f"Instruct: {DEFAULT_TASK}\nQuery:{q}"
    assert embedder.format_query(q) == formatted
    assert float(embedder.embed_query(q) @ reference.embed(formatted)) >= COS_MIN
    # ... and differs from the bare text, so the check above means something.
    assert float(embedder.embed_query(q) @ reference.embed(q)) < 0.99


def test_per_call_task_override(embedder, reference):
    qs = ["eggs and flour", "rust borrow checker"]
    task = "Given a question about coding, retrieval code or passage that can solve user's question"
    got = embedder.embed_queries(qs, task="coding_questions")
    for vec, q in zip(got, qs, strict=True):
        assert float(vec @ reference.embed(f"Instruct: {task}\nQuery:{q}")) >= COS_MIN


def test_symmetric_documents_embedded_with_instruction(tiny_model, reference):
    with Qwen3Embedder.local(tiny_model, task="semantic_similarity") as emb:
        doc = emb.embed_documents(["two cats"])[0]
        expected = reference.embed("Instruct: Retrieve semantically similar text\nQuery:two cats")
        assert float(doc @ expected) >= COS_MIN
        assert float(emb.embed_query("two cats") @ doc) >= COS_MIN
