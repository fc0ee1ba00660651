"""Read and check a GGUF file's header: its metadata and tensors (no weights), bounded.

llama.cpp's C API says nothing about which tensors a file has, and a missing
optional tensor changes what a model computes without any error (a Qwen3
reranker without ``cls.output.weight`` scores ~1e-20 under RANK pooling). So
the decisions that depend on the file read its header here, before llama.cpp
loads the weights, without the ``gguf`` package.

Every length and count the file states is checked against the bytes left in
the file before anything is allocated or read, and every tensor's data against
the file's size. So a damaged file (a key length of 2**40, an array count of
2**63, a file cut anywhere) is refused with a :class:`ModelFileError` naming
the file and the problem: never a ``MemoryError``, and never handed to
llama.cpp, whose loader aborts the whole process (``GGML_ASSERT``) on some.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ModelFileError
from ._qwen3 import (
    EMBEDDING_POOLING_TYPES,
    OUTPUT_TENSOR,
    POOLING_RANK,
    QWEN3_ARCH,
    QWEN3_TOKENIZER_MODEL,
    RERANK_HEAD_TENSOR,
    RERANK_TEMPLATE_KEY,
    TOKEN_EMBD_TENSOR,
)

_MAGIC = b"GGUF"
# llama.cpp reads versions 2 and 3 (version 1 had 32-bit counts and is gone).
_VERSIONS = (2, 3)
# GGUF value types: scalar formats; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# llama.cpp reads tokenizer.ggml.token_type as int32 (type 5).
_INT32 = 5
# Arrays longer than this are skipped, not kept (except the vocabulary's, below).
_MAX_KEPT_ARRAY = 64
# The arrays Qwen3's tokenizer is built from, kept in full when asked for.
TOKENS_KEY = "tokenizer.ggml.tokens"
TOKEN_TYPES_KEY = "tokenizer.ggml.token_type"
MERGES_KEY = "tokenizer.ggml.merges"
VOCAB_KEYS = (TOKENS_KEY, TOKEN_TYPES_KEY, MERGES_KEY)
# The GGUF spec's data alignment when general.alignment is absent.
_DEFAULT_ALIGNMENT = 32
# ggml's GGML_MAX_DIMS: llama.cpp refuses tensors with more dimensions.
_MAX_DIMS = 4
# ggml tensor types: id -> (elements per block, bytes per block), ggml.c's type traits.
# An id not listed (a newer type) is left to llama.cpp to check.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
    8: (32, 34), 9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144),
    13: (256, 176), 14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74),
    18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36),
    41: (128, 18),
}

# ggml's F32 type: llama.cpp's norms are float32 in every conversion and quantization.
GGML_F32 = 0
# The types llama.cpp computes with as weights: F32, F16, BF16 and the storage quants
# (not Q8_1 and Q8_K, its activation formats, nor the integer and F64 types).
WEIGHT_TYPES = frozenset(
    {0, 1, 30, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 29, 34, 35,
     39, 40, 41}
)
# Bound on a hyper-parameter (a width, a count, a context): far above any Qwen3's
# (8B: 12,288 wide feed-forward, 40,960 context), far below int32 overflow in llama.cpp.
_MAX_SIZE = 2**22

Value = int | float | bool | str | list[object] | None

# What each local backend expects a file to be, for the errors that refuse one.
EXPECTED_EMBEDDER = "a Qwen3-Embedding GGUF file"
EXPECTED_RERANKER = "a Qwen3-Reranker GGUF file"


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF file's header.

    ``metadata``: key -> value (arrays over 64 items as None); ``tensors``:
    name -> shape in ggml order (fastest-varying first); ``arrays``: the
    vocabulary arrays in full, when read with ``keep_vocab``; ``size``: the
    file's size in bytes; ``tensor_types``: name -> ggml type id;
    ``array_types``: the GGUF item type of each array in ``arrays``.
    """

    metadata: dict[str, Value]
    tensors: dict[str, tuple[int, ...]]
    arrays: dict[str, list[object]] = field(default_factory=dict)
    size: int = 0
    tensor_types: dict[str, int] = field(default_factory=dict)
    array_types: dict[str, int] = field(default_factory=dict)


class _Damaged(Exception):
    """A structural fault at a byte offset (turned into a ModelFileError with the path)."""


class _Cursor:
    """Bounded reads from the file's bytes: nothing is read past what the file holds."""

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data, self.pos, self.size = data, 0, len(data)

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.left:
            raise _Damaged(
                f"{what} at byte {self.pos} needs {n} bytes but only {self.left} remain "
                f"(the file has {self.size} bytes)"
            )

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        n = struct.calcsize(fmt)
        self.need(n, what)
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += n
        return out

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", what)[0])

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what)[0])

    def raw_string(self, what: str) -> bytes:
        n = self.u64(f"the length of {what}")
        self.need(n, f"{what} ({n} bytes long)")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def string(self, what: str) -> str:
        return self.raw_string(what).decode("utf-8", "replace")


def _value(cur: _Cursor, vtype: int, key: str, keep: bool) -> Value:
    if vtype in _SCALARS:
        (value,) = cur.unpack(_SCALARS[vtype], f"the value of {key!r}")
        return value  # type: ignore[no-any-return]
    if vtype == _STRING:
        return cur.string(f"the value of {key!r}")
    if vtype != _ARRAY:
        raise _Damaged(f"key {key!r} has unknown value type {vtype}")
    etype = cur.u32(f"the item type of {key!r}")
    count = cur.u64(f"the item count of {key!r}")
    # Each item takes at least its scalar size, or 8 bytes of length for a string.
    if etype in _SCALARS:
        item = struct.calcsize(_SCALARS[etype])
    elif etype == _STRING:
        item = 8
    else:
        raise _Damaged(f"key {key!r} is an array of unsupported type {etype}")
    if count > cur.left // item:
        raise _Damaged(
            f"key {key!r} claims {count} items ({item} bytes each at least) but only "
            f"{cur.left} bytes remain"
        )
    if etype in _SCALARS:
        if not keep and count > _MAX_KEPT_ARRAY:
            cur.pos += item * count
            return None
        fmt = _SCALARS[etype]
        values = list(struct.unpack_from(f"<{count}{fmt[1]}", cur.data, cur.pos))
        cur.pos += item * count
        return values
    return _strings(cur, count, key, keep or count <= _MAX_KEPT_ARRAY, strict=keep)


_U64 = struct.Struct("<Q")


def _strings(
    cur: _Cursor, count: int, key: str, keep: bool, *, strict: bool
) -> list[object] | None:
    """``count`` strings (the vocabulary: 150k of them), in one tight bounded loop.

    ``strict``: refuse an item that is not UTF-8 (the vocabulary; elsewhere replace).
    """
    data, pos, size, unpack = cur.data, cur.pos, cur.size, _U64.unpack_from
    raw: list[bytes] = []
    for i in range(count):
        if pos + 8 > size:
            cur.pos = pos
            cur.need(8, f"the length of item {i} of {key!r}")
        (n,) = unpack(data, pos)
        pos += 8
        if n > size - pos:
            cur.pos = pos
            cur.need(n, f"item {i} of {key!r} ({n} bytes long)")
        if keep:
            raw.append(data[pos : pos + n])
        pos += n
    cur.pos = pos
    if not keep:
        return None
    if not strict:
        return [r.decode("utf-8", "replace") for r in raw]
    try:
        return [r.decode("utf-8") for r in raw]
    except UnicodeDecodeError:
        bad = next(i for i, r in enumerate(raw) if not _valid_utf8(r))
        raise _Damaged(f"item {bad} of {key!r} is not valid UTF-8") from None


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse(cur: _Cursor, keep_vocab: bool) -> GGUFHeader:
    version = cur.u32("the version")
    if version not in _VERSIONS:
        raise _Damaged(f"it states GGUF version {version}; llama.cpp reads versions 2 and 3")
    n_tensors = cur.u64("the tensor count")
    n_kv = cur.u64("the metadata key count")
    # The smallest key/value takes 13 bytes (length, type, one byte), a tensor entry 24.
    if n_kv > cur.left // 13 or n_tensors > cur.left // 24:
        raise _Damaged(
            f"it claims {n_kv} metadata keys and {n_tensors} tensors, more than the "
            f"{cur.size} bytes of the file can hold"
        )
    metadata: dict[str, Value] = {}
    arrays: dict[str, list[object]] = {}
    array_types: dict[str, int] = {}
    for i in range(n_kv):
        key = cur.string(f"the name of metadata key {i}")
        if key in metadata:
            raise _Damaged(f"metadata key {key!r} appears twice")
        vtype = cur.u32(f"the value type of {key!r}")
        keep = keep_vocab and key in VOCAB_KEYS
        if keep and vtype == _ARRAY and cur.left >= 4:
            array_types[key] = int(struct.unpack_from("<I", cur.data, cur.pos)[0])
        value = _value(cur, vtype, key, keep)
        if keep and isinstance(value, list):
            arrays[key] = value
            metadata[key] = None
        else:
            metadata[key] = value
    tensors: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    spans: list[tuple[str, int, int | None]] = []  # name, offset, size in bytes (None: unknown)
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor {i}")
        if name in tensors:
            raise _Damaged(f"tensor {name!r} appears twice")
        n_dims = cur.u32(f"the dimension count of tensor {name!r}")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise _Damaged(f"tensor {name!r} has {n_dims} dimensions (1 to {_MAX_DIMS} allowed)")
        dims = cur.unpack(f"<{n_dims}Q", f"the shape of tensor {name!r}")
        ttype, offset = cur.unpack("<IQ", f"the type and offset of tensor {name!r}")
        shape = tuple(int(d) for d in dims)
        n_elements = 1
        for d in shape:
            n_elements *= d
        # ggml counts elements in int64.
        if n_elements >= 2**63 or 0 in shape:
            raise _Damaged(f"tensor {name!r} has an impossible shape {shape}")
        size: int | None = None
        if ttype in GGML_TYPE_SIZES:
            block, nbytes = GGML_TYPE_SIZES[ttype]
            if shape[0] % block:
                raise _Damaged(
                    f"tensor {name!r} has {shape[0]} columns, not a multiple of its type's "
                    f"block of {block}"
                )
            size = n_elements // block * nbytes
        tensors[name] = shape
        types[name] = int(ttype)
        spans.append((name, int(offset), size))
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Damaged(f"its general.alignment {alignment!r} is not a power of two")
    data_start = -(-cur.pos // alignment) * alignment
    for name, offset, size in spans:
        if offset % alignment:
            raise _Damaged(f"tensor {name!r}'s data offset {offset} is not aligned to {alignment}")
        end = data_start + offset + (size or 0)
        if end > cur.size:
            raise _Damaged(
                f"tensor {name!r}'s data ends at byte {end} but the file has only "
                f"{cur.size} bytes (cut short?)"
            )
    return GGUFHeader(metadata, tensors, arrays, cur.size, types, array_types)


def read_header(
    path: str | os.PathLike[str],
    *,
    keep_vocab: bool = False,
    expected: str = "a GGUF model file",
) -> GGUFHeader:
    """The metadata and tensor shapes of a GGUF v2/v3 file, checked for consistency.

    ``keep_vocab``: also keep the vocabulary arrays (:data:`VOCAB_KEYS`) in
    ``arrays``. ``expected``: what the caller wants, for the error message.
    Raises :class:`ModelFileError` for anything that is not a sound GGUF file.
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelFileError(
                    f"{where} is an empty file (0 bytes); expected {expected}", where
                )
            if size < len(_MAGIC) or f.read(len(_MAGIC)) != _MAGIC:
                f.seek(0)
                start = f.read(16)
                raise ModelFileError(
                    f"{where} is not a GGUF file (it begins with {start!r}, not b'GGUF'); "
                    f"expected {expected}",
                    where,
                )
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                cur = _Cursor(data)
                cur.pos = len(_MAGIC)
                try:
                    return _parse(cur, keep_vocab)
                except _Damaged as exc:
                    raise ModelFileError(
                        f"{where} is a damaged or truncated GGUF file: {exc}; expected "
                        f"{expected} (download or convert it again)",
                        where,
                    ) from None
    except OSError as exc:
        raise ModelFileError(
            f"cannot read {where}: {exc.strerror or exc}; expected {expected}", where
        ) from exc


# -- what the file is --------------------------------------------------------------


def _names(meta: dict[str, Value]) -> str:
    """The names a converter writes (general.name, basename, finetune), lower-cased."""
    parts = [meta.get(k) for k in ("general.name", "general.basename", "general.finetune")]
    return " ".join(p for p in parts if isinstance(p, str)).lower()


def reranker_evidence(header: GGUFHeader) -> str | None:
    """What in the file says it is a Qwen3-Reranker, or None.

    The rule: llama.cpp's reranker conversion (b6578+) carries the
    ``cls.output.weight`` head, RANK pooling, ``classifier.output_labels`` or
    the rerank chat template, any one of which is enough. A plain causal-LM
    conversion carries none of them and no pooling type; its name
    (``general.name``/``basename``/``finetune``, from the Hugging Face repo)
    is then the only sign, so such a file whose name says "rerank" counts.
    """
    meta = header.metadata
    arch = meta.get("general.architecture")
    pooling = meta.get(f"{arch}.pooling_type")
    if RERANK_HEAD_TENSOR in header.tensors:
        return f"it has the reranker's classifier head {RERANK_HEAD_TENSOR}"
    if pooling == POOLING_RANK:
        return "it declares RANK pooling (a reranker's)"
    if f"{arch}.classifier.output_labels" in meta:
        return f"it declares classifier labels {meta[f'{arch}.classifier.output_labels']!r}"
    if RERANK_TEMPLATE_KEY in meta:
        return f"it carries a rerank prompt template ({RERANK_TEMPLATE_KEY})"
    if pooling is None and "rerank" in _names(meta):
        return f"it declares no pooling and its name {meta.get('general.name')!r} says reranker"
    return None


def embedding_evidence(header: GGUFHeader) -> str | None:
    """What in the file says it is an embedding model, or None.

    A declared mean, cls or last pooling type; or, with no pooling type, a
    name that says "embedding" (and not "rerank").
    """
    meta = header.metadata
    arch = meta.get("general.architecture")
    pooling = meta.get(f"{arch}.pooling_type")
    if isinstance(pooling, int) and pooling in EMBEDDING_POOLING_TYPES:
        return f"it declares {EMBEDDING_POOLING_TYPES[pooling]} pooling"
    names = _names(meta)
    if pooling is None and "embedding" in names and "rerank" not in names:
        return f"it declares no pooling and its name {meta.get('general.name')!r} says embedding"
    return None


def check_qwen3(header: GGUFHeader, path: Path, expected: str) -> None:
    """Refuse a sound GGUF that llama.cpp or Qwen3's tokenizer cannot run as Qwen3.

    Checks the architecture, the hyper-parameters the tensors depend on, the
    byte-level BPE vocabulary and every tensor a Qwen3 decoder needs.
    """
    meta, where = header.metadata, os.fspath(path)

    def refuse(problem: str) -> ModelFileError:
        return ModelFileError(f"{where} {problem}; expected {expected}", where)

    arch = meta.get("general.architecture")
    if arch is None:
        raise refuse("is a GGUF file without general.architecture (not a llama.cpp model)")
    if arch != QWEN3_ARCH:
        raise refuse(f"is a GGUF of a {arch!r} model, not {QWEN3_ARCH!r}")

    def positive(name: str, default: int | None = None) -> int:
        value = meta.get(f"{arch}.{name}", default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_SIZE:
            raise refuse(
                f"is a qwen3 GGUF whose {arch}.{name} is {value!r}, not an integer from 1 "
                f"to {_MAX_SIZE}"
            )
        return value

    # The hyper-parameters llama.cpp builds Qwen3 from (src/models/qwen3.cpp): the shapes
    # it expects follow from them, and some inconsistencies abort the process there
    # (GGML_ASSERT) instead of failing, so they are checked here.
    n_embd, n_layer = positive("embedding_length"), positive("block_count")
    positive("context_length")
    n_ff = positive("feed_forward_length")
    n_head = positive("attention.head_count")
    n_head_kv = positive("attention.head_count_kv", n_head)
    head_k = positive("attention.key_length", n_embd // n_head or None)
    head_v = positive("attention.value_length", head_k)
    n_rot = positive("rope.dimension_count", head_k)
    if n_head % n_head_kv or head_v != head_k or n_rot != head_k:
        raise refuse(
            f"is a qwen3 GGUF with inconsistent attention settings ({n_head} heads, "
            f"{n_head_kv} key/value heads, key length {head_k}, value length {head_v}, "
            f"{n_rot} rotary dimensions)"
        )
    for name in ("attention.layer_norm_rms_epsilon", "rope.freq_base"):
        value = meta.get(f"{arch}.{name}")
        if name == "rope.freq_base" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < float("inf")
        ):
            raise refuse(
                f"is a qwen3 GGUF whose {arch}.{name} is {value!r}, not a positive number"
            )
    model = meta.get("tokenizer.ggml.model")
    if model != QWEN3_TOKENIZER_MODEL:
        raise refuse(
            f"is a qwen3 GGUF whose tokenizer is {model!r}, not Qwen3's byte-level BPE "
            f"({QWEN3_TOKENIZER_MODEL!r})"
        )
    arrays = header.arrays
    tokens, merges = arrays.get(TOKENS_KEY), arrays.get(MERGES_KEY)
    if not tokens or merges is None:
        raise refuse("is a qwen3 GGUF without its vocabulary (tokenizer.ggml.tokens and merges)")
    kinds = header.array_types
    if kinds.get(TOKENS_KEY) != _STRING or kinds.get(MERGES_KEY) != _STRING:
        raise refuse(f"is a qwen3 GGUF whose {TOKENS_KEY} or {MERGES_KEY} are not strings")
    unique = set(tokens)
    if "" in unique:
        raise refuse(f"is a qwen3 GGUF with an empty token in its {TOKENS_KEY}")
    if len(unique) != len(tokens):
        # llama.cpp aborts the process on a vocabulary with a repeated token.
        seen: set[object] = set()
        twice = None
        for t in tokens:
            if t in seen:
                twice = t
                break
            seen.add(t)
        raise refuse(f"is a qwen3 GGUF whose vocabulary holds the token {twice!r} twice")
    if not all(" " in m for m in merges):  # type: ignore[operator]  # strings, checked above
        raise refuse(f"is a qwen3 GGUF whose {MERGES_KEY} are not 'left right' pairs")
    types = arrays.get(TOKEN_TYPES_KEY)
    if types is not None and (len(types) != len(tokens) or kinds.get(TOKEN_TYPES_KEY) != _INT32):
        raise refuse(
            f"is a qwen3 GGUF with {len(tokens)} tokens but {len(types)} token types "
            f"of GGUF type {kinds.get(TOKEN_TYPES_KEY)} (int32 expected)"
        )
    for name in ("eos_token_id", "bos_token_id"):
        value = meta.get(f"tokenizer.ggml.{name}")
        if value is None and name == "bos_token_id":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(tokens):
            raise refuse(
                f"is a qwen3 GGUF whose tokenizer.ggml.{name} is {value!r}, not a token id "
                f"below {len(tokens)}"
            )
    n_vocab, q, kv = len(tokens), head_k * n_head, head_k * n_head_kv
    block = {
        "attn_norm.weight": (n_embd,), "attn_q.weight": (n_embd, q),
        "attn_k.weight": (n_embd, kv), "attn_v.weight": (n_embd, kv),
        "attn_output.weight": (q, n_embd), "attn_q_norm.weight": (head_k,),
        "attn_k_norm.weight": (head_k,), "ffn_norm.weight": (n_embd,),
        "ffn_gate.weight": (n_embd, n_ff), "ffn_up.weight": (n_embd, n_ff),
        "ffn_down.weight": (n_ff, n_embd),
    }
    if n_layer * len(block) > len(header.tensors):
        raise refuse(
            f"is a qwen3 GGUF that declares {n_layer} layers but holds only "
            f"{len(header.tensors)} tensors"
        )
    expected_shapes = {TOKEN_EMBD_TENSOR: (n_embd, n_vocab), "output_norm.weight": (n_embd,)}
    for i in range(n_layer):
        expected_shapes.update({f"blk.{i}.{t}": shape for t, shape in block.items()})
    missing = [t for t in expected_shapes if t not in header.tensors]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise refuse(f"is a qwen3 GGUF without the tensors {', '.join(missing[:3])}{more}")
    optional = {OUTPUT_TENSOR: (n_embd, n_vocab)}
    expected_shapes.update({t: s for t, s in optional.items() if t in header.tensors})
    if RERANK_HEAD_TENSOR in header.tensors:
        expected_shapes[RERANK_HEAD_TENSOR] = (n_embd, *header.tensors[RERANK_HEAD_TENSOR][1:])
    for name, shape in expected_shapes.items():
        if header.tensors[name] != shape:
            raise refuse(
                f"is a qwen3 GGUF whose {name} has shape {header.tensors[name]}, not {shape} "
                f"as its hyper-parameters and {n_vocab}-token vocabulary imply"
            )
        ttype = header.tensor_types[name]
        if len(shape) == 1 and ttype != GGML_F32:
            raise refuse(f"is a qwen3 GGUF whose norm {name} has ggml type {ttype}, not F32")
        if ttype not in WEIGHT_TYPES:
            raise refuse(
                f"is a qwen3 GGUF whose {name} has ggml type {ttype}, which llama.cpp cannot "
                "use for weights"
            )
