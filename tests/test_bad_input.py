"""Bad input gets a clear error naming the index; well-defined odd input gets a right vector."""

import numpy as np
import pytest

from qwen3_embed_core import InvalidInputError, InvalidInputTypeError

from .conftest import COS_MIN


@pytest.mark.parametrize(
    ("texts", "error", "pattern"),
    [
        (["ok", ""], InvalidInputError, "index 1 is empty"),
        (["ok", "ok", " \t\n "], InvalidInputError, "index 2 is empty or whitespace"),
        (["ok", None], InvalidInputTypeError, "index 1 is NoneType, expected str"),
        ([b"bytes"], InvalidInputTypeError, r"index 0 is bytes.*decode"),
        (["ok", 42], InvalidInputTypeError, "index 1 is int"),
        (["a\x00b"], InvalidInputError, "index 0 contains a NUL byte at character 1"),
        (["ok", "bad \ud800 surrogate"], InvalidInputError, "index 1 contains a lone surrogate"),
        ([], InvalidInputError, "list of texts is empty"),
        ("a bare string", InvalidInputTypeError, "single str"),
        (None, InvalidInputTypeError, "expected a list of strings"),
        (42, InvalidInputTypeError, "expected a list of strings"),
    ],
)
def test_bad_documents(embedder, texts, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        embedder.embed_documents(texts)
    if isinstance(texts, list) and texts:
        assert info.value.index == len(texts) - 1 or "index 1" in pattern


@pytest.mark.parametrize(
    ("query", "error"),
    [("", InvalidInputError), ("   ", InvalidInputError), (None, InvalidInputTypeError),
     (["a list"], InvalidInputTypeError), ("nul\x00", InvalidInputError)],
)
def test_bad_query(embedder, query, error):
    with pytest.raises(error, match="the text"):
        embedder.embed_query(query)


def test_errors_are_value_and_type_errors(embedder):
    with pytest.raises(ValueError):
        embedder.embed_documents([""])
    with pytest.raises(TypeError):
        embedder.embed_documents([None])


def test_embedder_still_works_after_bad_input(embedder, reference):
    with pytest.raises(InvalidInputError):
        embedder.embed_documents(["fine", ""])
    vec = embedder.embed_documents(["fine"])[0]
    assert float(vec @ reference.embed("fine")) >= COS_MIN


@pytest.mark.parametrize(
    "text",
    [
        "😀",
        "👩‍👩‍👧 family",
        "日本語のテキスト",
        "mixed English, 中文, русский, العربية, emoji 🚀",
        "\u200b zero-width space and combining e\u0301",
    ],
)
def test_emoji_and_scripts_get_correct_vectors(embedder, reference, text):
    vec = embedder.embed_documents([text])[0]
    assert np.isfinite(vec).all()
    assert float(vec @ reference.embed(text)) >= COS_MIN
