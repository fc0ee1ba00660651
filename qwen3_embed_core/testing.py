"""A tiny Qwen3 embedding model and an independent numpy reference for it.

``build_model()`` writes a real Qwen3 GGUF file (random weights, a small
byte-level BPE vocabulary with the ``qwen2`` pre-tokenizer, ``<|endoftext|>``
as EOS, last-token pooling) with the ``gguf`` package and numpy. The same
code writes the real-shape 0.6B file the benchmarks use.

``Reference`` reads a GGUF back and embeds text with a float64 numpy forward
pass (RMSNorm, per-head q/k RMSNorm, NEOX RoPE, causal grouped-query
attention, SwiGLU, last token, L2) and the Hugging Face ``tokenizers``
library: no llama.cpp involved, so it is the oracle the tests compare to.

Needs the ``tiny`` extra (``gguf``, ``tokenizers``). The rankings such a model
produces are meaningless: its weights are random.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import missing_dependency
from ._qwen3 import EOS_TEXT, POOLING_LAST, UNICODE_NORMALIZATION

# Qwen2/3's pre-tokenizer split pattern, as in its tokenizer.json.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = (EOS_TEXT, "<|im_start|>", "<|im_end|>")

# Deterministic text the tiny vocabulary's merges are learned from.
_TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. Retrieval systems embed documents
and queries into vectors; the nearest documents answer the query. Embeddings of
the Qwen3 family use the hidden state of the last token, which is the end of
text token. Given a web search query, retrieve relevant passages that answer the
query. Instruct: Query: What is the capital of France? Paris is the capital and
most populous city of France. Photosynthesis converts light energy into chemical
energy stored in glucose. The mitochondria is the powerhouse of the cell. Water
boils at one hundred degrees Celsius at sea level. A database index speeds up
lookups at the cost of extra writes. Python is a programming language that lets
you work quickly and integrate systems more effectively. def embed(texts): return
model.encode(texts). Der schnelle braune Fuchs springt über den faulen Hund.
Le renard brun rapide saute par-dessus le chien paresseux. 敏捷的棕色狐狸跳过了懒狗。
素早い茶色の狐が怠け者の犬を飛び越える。Быстрая коричневая лиса прыгает через ленивую собаку.
"""


@dataclass(frozen=True)
class Qwen3Shape:
    """Hyper-parameters of a Qwen3 decoder.

    ``n_vocab`` pads the vocabulary with unused tokens up to that size (None:
    just the tokenizer's tokens); it sets the cost of the output layer that
    llama.cpp computes even in embedding mode.
    """

    n_layer: int = 3
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 16
    n_ff: int = 128
    n_vocab: int | None = None
    context_length: int = 8192
    rope_theta: float = 1_000_000.0
    rms_eps: float = 1e-6
    n_merges: int = 400


TINY = Qwen3Shape()
# Qwen3-Embedding-0.6B's real shape (cost depends on shape, not on weight values);
# more merges so the benchmark corpora tokenise at about a token per word, as real text does.
REAL_0_6B = Qwen3Shape(
    n_layer=28, n_embd=1024, n_head=16, n_head_kv=8, head_dim=128, n_ff=3072,
    n_vocab=151669, context_length=32768, n_merges=3000,
)


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_dependency(module, "tiny", exc) from exc


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def _pre_tokenizer() -> Any:
    tk = _require("tokenizers")
    return tk.pre_tokenizers.Sequence(
        [
            tk.pre_tokenizers.Split(
                tk.Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False
            ),
            tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_vocab(n_merges: int) -> tuple[list[str], list[str]]:
    """Learn ``n_merges`` byte-level BPE merges from the built-in text.

    Returns the token strings (256 byte tokens, then one per merge) and the
    merges as ``"left right"`` strings. Ties break lexicographically, so the
    result is the same on every machine.
    """
    pre = _pre_tokenizer()
    text = unicodedata.normalize(UNICODE_NORMALIZATION, _TRAINING_TEXT)
    words = Counter(piece for piece, _ in pre.pre_tokenize_str(text))
    splits = {word: list(word) for word in words}
    tokens = [bytes_to_unicode()[b] for b in range(256)]
    merges: list[str] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            parts = splits[word]
            for a, b in itertools.pairwise(parts):
                pairs[(a, b)] += freq
        if not pairs:
            break
        (a, b), _count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        for word, parts in splits.items():
            i, out = 0, []
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            splits[word] = out
    return tokens, merges


def _random_weights(shape: Qwen3Shape, n_vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Random weights in Hugging Face orientation (out_features, in_features)."""
    rng = np.random.default_rng(seed)

    def linear(n_out: int, n_in: int) -> np.ndarray:
        return (rng.standard_normal((n_out, n_in), dtype=np.float32) / np.sqrt(n_in)).astype(
            np.float32
        )

    def norm(n: int, scale: float = 1.0) -> np.ndarray:
        return (scale * (1.0 + 0.1 * rng.standard_normal(n))).astype(np.float32)

    w = {"token_embd.weight": rng.standard_normal((n_vocab, shape.n_embd), dtype=np.float32)}
    q_out, kv_out = shape.n_head * shape.head_dim, shape.n_head_kv * shape.head_dim
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(shape.n_embd)
        w[p + "attn_q.weight"] = linear(q_out, shape.n_embd)
        w[p + "attn_k.weight"] = linear(kv_out, shape.n_embd)
        w[p + "attn_v.weight"] = linear(kv_out, shape.n_embd)
        # Scaled-up q/k norms make attention peaked, so every token matters.
        w[p + "attn_q_norm.weight"] = norm(shape.head_dim, 2.0)
        w[p + "attn_k_norm.weight"] = norm(shape.head_dim, 2.0)
        w[p + "attn_output.weight"] = linear(shape.n_embd, q_out)
        w[p + "ffn_norm.weight"] = norm(shape.n_embd)
        w[p + "ffn_gate.weight"] = linear(shape.n_ff, shape.n_embd)
        w[p + "ffn_up.weight"] = linear(shape.n_ff, shape.n_embd)
        w[p + "ffn_down.weight"] = linear(shape.n_embd, shape.n_ff)
    w["output_norm.weight"] = norm(shape.n_embd)
    return w


def build_model(
    path: str | os.PathLike[str],
    *,
    add_eos_token: bool | None = True,
    shape: Qwen3Shape = TINY,
    dtype: str = "F32",
    seed: int = 0,
) -> Path:
    """Write a random-weight Qwen3 embedding GGUF to ``path`` and return it.

    ``add_eos_token``: True writes ``tokenizer.ggml.add_eos_token = true`` like
    current conversions; None leaves the key out, like the early Qwen3-Embedding
    files that make llama.cpp skip the EOS token. ``dtype``: ``"F32"``,
    ``"F16"`` or ``"Q8_0"`` for the 2-D weight matrices (norms stay F32).
    The file is written to a temporary name and renamed, so a cache never
    holds a half-written model.
    """
    gguf = _require("gguf")
    path = Path(path)
    tokens, merges = train_vocab(shape.n_merges)
    n_regular = len(tokens)
    n_vocab = shape.n_vocab or (n_regular + len(SPECIAL_TOKENS))
    if n_vocab < n_regular + len(SPECIAL_TOKENS):
        raise ValueError(f"n_vocab={n_vocab} is smaller than the tokenizer ({n_regular} tokens)")
    padding = [f"<|unused_{i}|>" for i in range(n_vocab - n_regular - len(SPECIAL_TOKENS))]
    all_tokens = tokens + padding + list(SPECIAL_TOKENS)
    types = (
        [gguf.TokenType.NORMAL] * n_regular
        + [gguf.TokenType.UNUSED] * len(padding)
        + [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS)
    )
    eos_id = all_tokens.index(EOS_TEXT)

    qtypes = {
        "F32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
        "F16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
        "Q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    }
    if dtype not in qtypes:
        raise ValueError(f"dtype must be one of {sorted(qtypes)}, not {dtype!r}")
    qtype, file_type = qtypes[dtype]

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, "qwen3")
        writer.add_name("qwen3-embed random-weight test model")
        writer.add_description(f"random weights, seed {seed}: rankings are meaningless")
        writer.add_context_length(shape.context_length)
        writer.add_embedding_length(shape.n_embd)
        writer.add_block_count(shape.n_layer)
        writer.add_feed_forward_length(shape.n_ff)
        writer.add_head_count(shape.n_head)
        writer.add_head_count_kv(shape.n_head_kv)
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
        writer.add_rope_freq_base(shape.rope_theta)
        writer.add_layer_norm_rms_eps(shape.rms_eps)
        writer.add_pooling_type(gguf.PoolingType(POOLING_LAST))
        writer.add_file_type(file_type)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("qwen2")
        writer.add_token_list(all_tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_eos_token_id(eos_id)
        writer.add_bos_token_id(eos_id)
        writer.add_pad_token_id(eos_id)
        writer.add_add_bos_token(False)
        if add_eos_token is not None:
            writer.add_add_eos_token(add_eos_token)
        for name, tensor in _random_weights(shape, n_vocab, seed).items():
            if tensor.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
                data = gguf.quants.quantize(tensor, qtype)
                writer.add_tensor(name, data, raw_dtype=qtype)
            else:
                writer.add_tensor(name, tensor)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def cache_dir() -> Path:
    """Where generated models are cached: ``$QWEN3_EMBED_CACHE`` or ``~/.cache/qwen3-embed``."""
    return Path(os.environ.get("QWEN3_EMBED_CACHE") or Path.home() / ".cache" / "qwen3-embed")


def cached_tiny_model(add_eos_token: bool | None = True) -> Path:
    """The tiny test model, built once into :func:`cache_dir` and reused (~0.5 s to build)."""
    flavour = "eos" if add_eos_token else "no-eos"
    # The version in the name retires files written by an older builder.
    path = cache_dir() / "tiny" / f"qwen3-tiny-v1-{flavour}.gguf"
    if not path.is_file():
        build_model(path, add_eos_token=add_eos_token)
    return path


class Reference:
    """A float64 numpy Qwen3 forward pass over a GGUF file's own weights.

    Tokenises with the Hugging Face ``tokenizers`` library configured like
    Qwen3's ``tokenizer.json`` (NFC, the qwen2 split pattern, byte-level BPE),
    appends the EOS token, and pools the last token's final hidden state.
    Special-token text in the input is treated as plain text, as the local
    backend does.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        gguf = _require("gguf")
        tk = _require("tokenizers")
        reader = gguf.GGUFReader(str(path))
        fields = reader.fields

        def value(key: str) -> Any:
            return fields[key].contents()

        arch = value("general.architecture")
        self.n_layer = int(value(f"{arch}.block_count"))
        self.n_head = int(value(f"{arch}.attention.head_count"))
        self.n_head_kv = int(value(f"{arch}.attention.head_count_kv"))
        self.head_dim = int(value(f"{arch}.attention.key_length"))
        self.eps = float(value(f"{arch}.attention.layer_norm_rms_epsilon"))
        self.theta = float(value(f"{arch}.rope.freq_base"))
        self.context_length = int(value(f"{arch}.context_length"))
        self.eos_id = int(value("tokenizer.ggml.eos_token_id"))
        tokens = list(value("tokenizer.ggml.tokens"))
        merges = [tuple(m.split(" ", 1)) for m in value("tokenizer.ggml.merges")]
        types = list(value("tokenizer.ggml.token_type"))

        self.weights: dict[str, np.ndarray] = {}
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            data = gguf.quants.dequantize(t.data, t.tensor_type)
            self.weights[t.name] = np.asarray(data, dtype=np.float64).reshape(shape)
        self.n_embd = self.weights["token_embd.weight"].shape[1]

        control = int(gguf.TokenType.CONTROL)
        normal = {tok: i for i, tok in enumerate(tokens) if types[i] != control}
        specials = [tok for i, tok in enumerate(tokens) if types[i] == control]
        tokenizer = tk.Tokenizer(tk.models.BPE(vocab=normal, merges=merges, ignore_merges=False))
        tokenizer.normalizer = tk.normalizers.NFC()
        tokenizer.pre_tokenizer = _pre_tokenizer()
        tokenizer.decoder = tk.decoders.ByteLevel()
        tokenizer.add_special_tokens(
            [tk.AddedToken(s, special=True, normalized=False) for s in specials]
        )
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        # The special tokens were added after the BPE vocab; map them to the file's ids.
        self._id_map = {tokenizer.token_to_id(tok): i for i, tok in enumerate(tokens)}
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    def tokenize(self, text: str) -> list[int]:
        """Token ids the model sees for ``text``: BPE tokens, then EOS."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self._id_map[i] for i in ids] + [self.eos_id]

    def _rms(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def _rope(self, x: np.ndarray) -> np.ndarray:
        # NEOX style: rotate the two halves of each head, theta^(-2i/d).
        n, _, d = x.shape
        inv = self.theta ** (-np.arange(0, d // 2, dtype=np.float64) * 2.0 / d)
        ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x1, x2 = x[..., : d // 2], x[..., d // 2 :]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def hidden_last(self, ids: list[int]) -> np.ndarray:
        """The final-norm hidden state of the last token (unnormalised), memoised."""
        key = tuple(ids)
        if key not in self._cache:
            self._cache[key] = self._forward(ids)
        return self._cache[key]

    def _forward(self, ids: list[int]) -> np.ndarray:
        w = self.weights
        x = w["token_embd.weight"][np.asarray(ids)]
        n = len(ids)
        group = self.n_head // self.n_head_kv
        for i in range(self.n_layer):
            p = f"blk.{i}."
            # Only the last token's state is pooled, so the last layer needs one query row.
            last = i == self.n_layer - 1
            h = self._rms(x, w[p + "attn_norm.weight"])
            q = (h @ w[p + "attn_q.weight"].T).reshape(n, self.n_head, self.head_dim)
            k = (h @ w[p + "attn_k.weight"].T).reshape(n, self.n_head_kv, self.head_dim)
            v = (h @ w[p + "attn_v.weight"].T).reshape(n, self.n_head_kv, self.head_dim)
            q = self._rope(self._rms(q, w[p + "attn_q_norm.weight"]))
            k = self._rope(self._rms(k, w[p + "attn_k_norm.weight"]))
            rows = slice(n - 1, n) if last else slice(0, n)
            # (heads, n, d) layout so the products run as batched BLAS matmuls.
            q = q[rows].transpose(1, 0, 2)
            k = np.repeat(k, group, axis=1).transpose(1, 2, 0)
            v = np.repeat(v, group, axis=1).transpose(1, 0, 2)
            scores = q @ k / np.sqrt(self.head_dim)
            scores += np.triu(np.full((n, n), -np.inf), k=1)[rows]
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            attn = (probs @ v).transpose(1, 0, 2).reshape(q.shape[1], -1)
            x = x[rows] + attn @ w[p + "attn_output.weight"].T
            h = self._rms(x, w[p + "ffn_norm.weight"])
            gate = h @ w[p + "ffn_gate.weight"].T
            up = h @ w[p + "ffn_up.weight"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[p + "ffn_down.weight"].T
        return self._rms(x[-1], w["output_norm.weight"])

    def embed_ids(self, ids: list[int], dimensions: int | None = None) -> np.ndarray:
        """Unit vector for token ids, truncated to ``dimensions`` first (MRL)."""
        h = self.hidden_last(ids)[: dimensions or self.n_embd]
        return h / np.linalg.norm(h)

    def embed(self, text: str, dimensions: int | None = None) -> np.ndarray:
        """Unit vector for ``text`` exactly as given (format queries yourself)."""
        return self.embed_ids(self.tokenize(text), dimensions)
