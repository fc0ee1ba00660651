"""Texts the tests embed: short, multilingual, emoji, code, and long."""

import random
import unicodedata

SHORT = [
    "Paris is the capital and most populous city of France.",
    "Photosynthesis converts light energy into chemical energy.",
    "The mitochondria is the powerhouse of the cell.",
    "A database index speeds up lookups at the cost of extra writes.",
]
MIXED = [
    "Der schnelle braune Fuchs springt über den faulen Hund. 敏捷的棕色狐狸跳过了懒狗。",
    "Emoji 😀🚀👩‍👩‍👧 and a flag 🇫🇷 in the middle of text",
    "Быстрая коричневая лиса —素早い茶色の狐 — العربية — हिन्दी",
    "def embed(texts):\n    return model.encode(texts)  # code with\ttabs\r\n",
    "x",
]
# The same word in NFD (decomposed) form: Qwen3's tokenizer normalises to NFC.
DECOMPOSED = unicodedata.normalize("NFD", "Café crème brûlée à Noël")


def long_text(n_words: int, seed: int = 0) -> str:
    """A deterministic text of ``n_words`` words (about 2.5 tokens per word on the tiny vocabulary)."""
    rng = random.Random(seed)
    words = (
        "retrieval embedding vector query document passage answer capital France "
        "photosynthesis energy database index cell mitochondria über Fuchs 狐狸 😀"
    ).split()
    return " ".join(rng.choice(words) for _ in range(n_words))
