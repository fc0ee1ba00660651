r"""Which code points llama-server tokenizes differently from Qwen3's own tokenizer.

llama-server (and Docker Model Runner, the same llama.cpp) splits text with
llama.cpp's Unicode tables, older than those of Qwen3's tokenizer (Hugging Face
``tokenizers``). This starts a real llama-server on a GGUF (the tiny test model
and the real-vocabulary one), tokenizes every code point (all planes,
surrogates aside) in contexts that expose the pre-tokenizer's split, through
``/tokenize`` without special tokens, on the text exactly as the HTTP backend
sends it (NFC with the tokenizers library's tables), and compares the ids with
``testing.Reference``. It prints the differing code points as ranges, the
source of ``qwen3_embed_core._qwen3.LLAMA_CPP_UNICODE_GAPS``.

With ``--llama-src DIR`` (llama.cpp's ``src`` folder, as vendored by
llama-cpp-python), it also prints the code points whose class for the qwen2
split (``\p{L}``, ``\p{N}``, ``\s``) differs between llama.cpp's
``unicode-data.cpp`` and the tokenizers library: the superset that
``LLAMA_CPP_UNICODE_GAPS`` holds, since a different split changes tokens
wherever some merge spans it.

Usage: python benchmarks/http_tokenizer_parity.py [--llama-src DIR] [model.gguf ...]
"""

from __future__ import annotations

import bisect
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qwen3_embed_core._tokenizer import qwen3_nfc
from qwen3_embed_core.testing import (
    Reference,
    cached_qwen3_vocab_model,
    cached_tiny_model,
)
from tests.llama_server import LlamaServer

# Contexts: a letter run ("\u8c6e" is CJK, a letter), a digit, punctuation, spaces and a
# newline around the code point, so that a different class (letter, number, space, other)
# changes the split.
CONTEXTS = ["a {c}\u8c6e\n", "{c}\u8c6e\n", "x{c}\n", "1{c}2\n", "!{c}!\n", "a {c} b\n",
            " {c}\n"]
CHUNK = 256
EVERY = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def ranges(cps: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in sorted(set(cps)):
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def measure(model: Path, contexts: list[str] = CONTEXTS) -> list[int]:
    ref = Reference(model)
    ids = ref._id_map
    with tempfile.TemporaryDirectory() as tmp, LlamaServer(model, Path(tmp)) as server, \
            httpx.Client(timeout=600) as client:
        sep = client.post(server.root + "/tokenize", json={
            "content": "<|endoftext|>", "parse_special": True}).json()["tokens"]
        assert len(sep) == 1

        def theirs(texts: list[str]) -> list[list[int]]:
            content: list[object] = []
            for t in texts:
                content += [qwen3_nfc(t), sep[0]]
            toks = client.post(server.root + "/tokenize", json={
                "content": content, "add_special": False, "parse_special": False,
            }).json()["tokens"]
            out: list[list[int]] = [[]]
            for t in toks:
                if t == sep[0]:
                    out.append([])
                else:
                    out[-1].append(t)
            assert len(out) == len(texts) + 1, (len(out), len(texts))
            return out[:-1]

        def ours(texts: list[str]) -> list[list[int]]:
            return [[ids[i] for i in e.ids]
                    for e in ref.tokenizer.encode_batch(texts, add_special_tokens=False)]

        bad: set[int] = set()
        for context in contexts:
            chunks = [EVERY[i:i + CHUNK] for i in range(0, len(EVERY), CHUNK)]
            for lo in range(0, len(chunks), 64):
                group = chunks[lo:lo + 64]
                texts = ["".join(context.format(c=chr(c)) for c in ch) for ch in group]
                for ch, a, b in zip(group, ours(texts), theirs(texts), strict=True):
                    if a != b:
                        alone = [context.format(c=chr(c)) for c in ch]
                        found = [c for c, x, y in zip(ch, ours(alone), theirs(alone),
                                                      strict=True) if x != y]
                        bad.update(found or ch[:1])
    return sorted(bad)


def class_gap(src: Path) -> list[int]:
    """Code points llama.cpp's tables and the tokenizers library class differently."""
    from tokenizers import Regex, pre_tokenizers

    data = (src / "unicode-data.cpp").read_text()
    flags_part = data[data.index("unicode_ranges_flags"):data.index("unicode_set_whitespace")]
    pairs = [(int(a, 16), int(b, 16))
             for a, b in re.findall(r"\{0x([0-9A-Fa-f]+), 0x([0-9A-Fa-f]+)\}", flags_part)]
    ws_part = data[data.index("unicode_set_whitespace"):data.index("unicode_map_lowercase")]
    spaces = {int(x, 16) for x in re.findall(r"0x([0-9A-Fa-f]+)", ws_part)}
    starts = [p[0] for p in pairs]
    text = "".join(map(chr, EVERY))

    def outside(pattern: str) -> set[int]:  # code points the class does not match
        split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
        return {ord(ch) for piece, _ in split.pre_tokenize_str(text) for ch in piece}

    not_l, not_n, not_s = outside(r"\p{L}"), outside(r"\p{N}"), outside(r"\s")
    gap = []
    for c in EVERY:
        flags = pairs[bisect.bisect_right(starts, c) - 1][1]  # unicode.h: LETTER 4, NUMBER 2
        theirs = (bool(flags & 4), bool(flags & 2), c in spaces)
        if theirs != (c not in not_l, c not in not_n, c not in not_s):
            gap.append(c)
    return gap


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--llama-src"]:
        gap = class_gap(Path(args[1]))
        args = args[2:]
        print(f"classified otherwise by llama.cpp: {len(gap)} code points in "
              f"{len(ranges(gap))} ranges")
        for lo, hi in ranges(gap):
            print(f"    (0x{lo:05X}, 0x{hi:05X}),")
    models = [Path(p) for p in args] or [cached_tiny_model(), cached_qwen3_vocab_model()]
    union: set[int] = set()
    for model in models:
        t = time.perf_counter()
        bad = measure(model)
        union.update(bad)
        print(f"{model.name}: {len(bad)} code points tokenize differently over llama-server "
              f"({time.perf_counter() - t:.0f} s)")
    print(f"union: {len(union)} code points in {len(ranges(sorted(union)))} ranges")
    for lo, hi in ranges(sorted(union)):
        print(f"    (0x{lo:05X}, 0x{hi:05X}),")


if __name__ == "__main__":
    main()
