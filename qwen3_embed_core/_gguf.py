"""Read a GGUF file's header: its metadata and which tensors it holds (no weights).

llama.cpp's C API says nothing about which tensors a file has, and a missing
optional tensor changes what a model computes without any error (a Qwen3
reranker without ``cls.output.weight`` scores ~1e-20 under RANK pooling). So
the few decisions that depend on it read the header here, before llama.cpp
loads the weights, without the ``gguf`` package.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

_MAGIC = b"GGUF"
# GGUF value types: scalar formats; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (the vocabulary, merges) are skipped, not kept.
_MAX_KEPT_ARRAY = 64

Value = int | float | bool | str | list[object] | None


@dataclass(frozen=True)
class GGUFHeader:
    """``metadata``: key -> value (long arrays as None); ``tensors``: name -> shape (ggml order)."""

    metadata: dict[str, Value]
    tensors: dict[str, tuple[int, ...]]


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("truncated GGUF header")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    return _read(f, n).decode("utf-8", "replace")


def _value(f: BinaryIO, vtype: int) -> Value:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        (value,) = struct.unpack(fmt, _read(f, struct.calcsize(fmt)))
        return value  # type: ignore[no-any-return]
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        etype, count = struct.unpack("<IQ", _read(f, 12))
        if count > _MAX_KEPT_ARRAY and etype in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[etype]) * count, os.SEEK_CUR)
            return None
        if count > _MAX_KEPT_ARRAY and etype == _STRING:
            for _ in range(count):
                (n,) = struct.unpack("<Q", _read(f, 8))
                f.seek(n, os.SEEK_CUR)
            return None
        items: list[object] = [_value(f, etype) for _ in range(count)]
        return items if count <= _MAX_KEPT_ARRAY else None
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """The metadata and tensor shapes of a GGUF v2/v3 file.

    Raises ``ValueError`` for a file that is not GGUF or is cut short.
    """
    with open(path, "rb") as f:
        if f.read(4) != _MAGIC:
            raise ValueError(f"{os.fspath(path)} is not a GGUF file")
        (version,) = struct.unpack("<I", _read(f, 4))
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        n_tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
        metadata: dict[str, Value] = {}
        for _ in range(n_kv):
            key = _string(f)
            (vtype,) = struct.unpack("<I", _read(f, 4))
            metadata[key] = _value(f, vtype)
        tensors: dict[str, tuple[int, ...]] = {}
        for _ in range(n_tensors):
            name = _string(f)
            (n_dims,) = struct.unpack("<I", _read(f, 4))
            dims = struct.unpack(f"<{n_dims}Q", _read(f, 8 * n_dims))
            _read(f, 12)  # tensor type (u32) and data offset (u64)
            tensors[name] = tuple(int(d) for d in dims)
    return GGUFHeader(metadata, tensors)
