"""What tokenizing with Qwen3's own tokenizer costs, against llama.cpp's ``llama_tokenize``.

The local backends build Qwen3's tokenizer (Hugging Face ``tokenizers``) from the
GGUF's vocabulary and merges, because llama.cpp's Unicode tables are older. This
prints, for a GGUF file (default: the tiny test model; pass a file with Qwen3's
real 151,669-token vocabulary for the figure that matters):

* the one-off cost at load: reading the header with the vocabulary, and building
  the tokenizer;
* tokens/s for the benchmark corpora (documents and instruction-prefixed
  queries), one text per call, for llama.cpp's tokenizer (vocab-only load, the
  ctypes call the backends made before) and ours;
* how many code points (all planes, surrogates aside) tokenize differently from
  ``testing.Reference`` in the context ``"a {c}\\u8c6e\\n"``, for each.

Usage: python benchmarks/tokenizer_cost.py [model.gguf]
"""

from __future__ import annotations

import ctypes
import sys
import time
import unicodedata
from pathlib import Path

from common import corpus

from qwen3_embed_core._gguf import EXPECTED_EMBEDDER, check_qwen3, read_header
from qwen3_embed_core._tokenizer import Qwen3Tokenizer
from qwen3_embed_core.testing import Reference, cached_tiny_model


def best(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` runs of ``fn``, seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def llama_tokenizer(path: Path):
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    vocab = llama_cpp.llama_model_get_vocab(model)

    def encode(text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ctypes.c_int32 * cap)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, cap, False, False)
        return list(buf[:n])

    return encode


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else cached_tiny_model()
    t_header = best(lambda: read_header(path, keep_vocab=True))
    header = read_header(path, keep_vocab=True)
    check_qwen3(header, path, EXPECTED_EMBEDDER)
    arrays = header.arrays
    n_tokens = len(arrays["tokenizer.ggml.tokens"])
    n_merges = len(arrays["tokenizer.ggml.merges"])

    def build() -> Qwen3Tokenizer:
        return Qwen3Tokenizer(arrays["tokenizer.ggml.tokens"],  # type: ignore[arg-type]
                              arrays.get("tokenizer.ggml.token_type"),  # type: ignore[arg-type]
                              arrays["tokenizer.ggml.merges"], path)  # type: ignore[arg-type]

    t_build = best(build)
    ours = build()
    llama = llama_tokenizer(path)
    print(f"{path.name}: {n_tokens} tokens, {n_merges} merges")
    print(f"load: header with vocabulary {t_header * 1e3:.0f} ms, tokenizer build "
          f"{t_build * 1e3:.0f} ms")
    for name in ("docs", "queries"):
        texts = corpus(name)
        n = sum(len(ours.encode(t)) for t in texts)
        same = sum(ours.encode(t) == llama(t) for t in texts)
        t_llama = best(lambda texts=texts: [llama(t) for t in texts])
        t_ours = best(lambda texts=texts: [ours.encode(t) for t in texts])
        print(f"{name}: {len(texts)} texts, {n} tokens, {same} tokenized alike; "
              f"llama.cpp {n / t_llama:,.0f} tokens/s, ours {n / t_ours:,.0f} tokens/s "
              f"({t_ours / t_llama:.2f}x the time)")
    ref = Reference(path)
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = [unicodedata.normalize("NFC", f"a {chr(c)}\u8c6e\n") for c in code_points]
    expected = [[ref._id_map[i] for i in e.ids]
                for e in ref.tokenizer.encode_batch(texts, add_special_tokens=False)]
    ours_ids = ours.encode_batch(texts)
    bad_ours = sum(a != b for a, b in zip(ours_ids, expected, strict=True))
    bad_llama = [c for c, t, e in zip(code_points, texts, expected, strict=True) if llama(t) != e]
    print(f"code points tokenized unlike the reference (of {len(code_points)}): "
          f"llama.cpp {len(bad_llama)}, ours {bad_ours}")
    if bad_llama:
        blocks = sorted({c & ~0xFF for c in bad_llama})
        print("  llama.cpp's, by 256-block: " + ", ".join(f"U+{b:04X}" for b in blocks[:40]))


if __name__ == "__main__":
    main()
