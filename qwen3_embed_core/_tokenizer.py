"""Qwen3's own tokenizer, built from a GGUF file's vocabulary and merges.

The local backends tokenize here rather than with ``llama_tokenize``:
llama.cpp's pre-tokenizer classifies characters with older Unicode tables than
Qwen3's tokenizer (the Hugging Face ``tokenizers`` library), so a text with a
letter added in Unicode 16 (U+13460-U+143FF, U+1E5D0-U+1E5FF...) split
differently and got another vector (cosine 0.79 on the test model). This
builds, from the file's own arrays, the tokenizer Qwen3's ``tokenizer.json``
describes: NFC, the qwen2 split pattern, byte-level BPE with the file's
merges; control tokens matched only when asked for, user-defined ones
(``<think>``) always.

Token ids are the file's: the BPE vocabulary maps each token string to its
position in ``tokenizer.ggml.tokens``, and added tokens found there keep it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._errors import MissingDependencyError, ModelFileError
from ._qwen3 import QWEN2_SPLIT_PATTERN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED
from ._version import DISTRIBUTION


def tokenizers_module() -> Any:
    """The ``tokenizers`` package, imported on first use, or an error saying to install it.

    A core dependency (pyproject.toml): every backend normalises text with its NFC, and
    the local ones tokenize with it. Absent only from a broken install (``--no-deps``).
    """
    try:
        import tokenizers
    except ImportError as exc:
        raise MissingDependencyError(
            f"tokenizers is not installed, and every backend needs it to read text as "
            f"Qwen3's tokenizer does; install it with: pip install 'tokenizers>=0.20' "
            f"(a dependency of {DISTRIBUTION}, missing from this install) ({exc})"
        ) from exc
    return tokenizers


@functools.cache
def _nfc() -> Callable[[str], str]:
    normalize: Callable[[str], str] = tokenizers_module().normalizers.NFC().normalize_str
    return normalize


def qwen3_nfc(text: str) -> str:
    """``text`` normalised exactly as Qwen3's tokenizer normalises it before BPE.

    That is the ``tokenizers`` library's NFC, not Python's ``unicodedata``: their
    Unicode tables differ (on Python 3.11, ~98 combining marks such as U+07FD,
    U+0898-U+089F, U+16FF0, U+1E130-U+1E136 have another combining class, so the two
    reorder them differently; ``"\u0341\U00016ff1"`` got cosine 0.51). llama.cpp does
    no NFC at all, so the HTTP backend needs this as much as the local ones.
    """
    if text.isascii():  # NFC leaves ASCII alone: skip the call for most texts
        return text
    return _nfc()(text)


class Qwen3Tokenizer:
    """Text to the GGUF file's token ids, exactly as Qwen3's Hugging Face tokenizer.

    Thread-safe (the underlying tokenizer is only read).

    Args:
        tokens: ``tokenizer.ggml.tokens``, the token strings by id.
        token_types: ``tokenizer.ggml.token_type`` (None: every token is normal).
        merges: ``tokenizer.ggml.merges``, ``"left right"`` strings in rank order.
        path: the file they come from, for error messages.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        token_types: Sequence[int] | None,
        merges: Sequence[str],
        path: Path,
    ) -> None:
        self._tk = tokenizers_module()
        self.path = path
        types = list(token_types) if token_types is not None else [0] * len(tokens)
        # The file's ids; _gguf.check_qwen3 refused a vocabulary with a repeated token.
        self._vocab = dict(zip(tokens, range(len(tokens)), strict=True))
        # One split of the joined merges (C speed) when each holds exactly one space, as
        # byte-level merges do (their tokens never hold a space).
        flat = " ".join(merges).split(" ")
        if len(flat) == 2 * len(merges):
            self._merges = list(zip(flat[0::2], flat[1::2], strict=True))
        else:
            self._merges = [(m.partition(" ")[0], m.partition(" ")[2]) for m in merges]
        self.control = [t for t, k in zip(tokens, types, strict=True) if k == TOKEN_TYPE_CONTROL]
        self.user_defined = [
            t for t, k in zip(tokens, types, strict=True) if k == TOKEN_TYPE_USER_DEFINED
        ]
        self._plain = self._build()
        # Control-token text, longest first so that no token's prefix wins over it.
        controls = sorted(set(self.control), key=len, reverse=True)
        self._control_split = (
            re.compile("(" + "|".join(map(re.escape, controls)) + ")") if controls else None
        )

    def _build(self) -> Any:
        tk = self._tk
        try:
            tokenizer = tk.Tokenizer(
                tk.models.BPE(vocab=self._vocab, merges=self._merges, ignore_merges=False)
            )
            tokenizer.normalizer = tk.normalizers.NFC()
            tokenizer.pre_tokenizer = tk.pre_tokenizers.Sequence([
                tk.pre_tokenizers.Split(
                    tk.Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False
                ),
                tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ])
            tokenizer.add_tokens(
                [tk.AddedToken(s, special=False, normalized=False) for s in self.user_defined]
            )
        except Exception as exc:  # tokenizers raises plain Exception for a bad vocabulary
            raise ModelFileError(
                f"{self.path} holds a vocabulary Qwen3's tokenizer cannot be built from "
                f"({exc}); expected a Qwen3 GGUF with a byte-level BPE vocabulary",
                str(self.path),
            ) from exc
        return tokenizer

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of ``text``: no BOS, no EOS.

        ``special``: read control-token text (``<|im_start|>``) as those
        tokens; off for user text, so a text that spells ``<|endoftext|>``
        stays text.
        """
        if not special or self._control_split is None:
            return list(self._plain.encode(text, add_special_tokens=False).ids)
        # As the Hugging Face tokenizer does with its special added tokens: they are
        # cut out of the text first, and each stretch between them is tokenized alone.
        ids: list[int] = []
        for i, piece in enumerate(self._control_split.split(text)):
            if i % 2:
                ids.append(self._vocab[piece])
            elif piece:
                ids += self._plain.encode(piece, add_special_tokens=False).ids
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of many user texts at once (in parallel, in Rust)."""
        encodings = self._plain.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encodings]
