"""The CPU this process runs on, and the defaults measured per CPU and file type:
whether llama.cpp's weight repacking should be on, and its flash attention.

llama.cpp can copy quantized weights at load time into "extra buffer types"
(``llama_model_params.use_extra_bufts``, ``--no-repack`` in its tools): an
interleaved layout for its AVX2/NEON GEMM kernels (``CPU_REPACK``), and on
CPUs with AMX a tile layout for the AMX kernels. Which tensors it touches
depends on the CPU and the tensor type (ggml-cpu/repack.cpp and amx/common.h
of the llama.cpp vendored by llama-cpp-python 0.3.36):

* x86 without AMX: Q4_0, Q4_K, IQ4_NL, MXFP4 (AVX2), Q2_K (AVX-512). Q8_0,
  Q6_K, F16 and BF16 are never repacked, so for F16 and Q8_0 files the
  switch changes nothing; for a Q4_K_M file it repacks the Q4_K tensors (the
  Q6_K ones stay as they are).
* x86 with AMX (a build with ``-march=native`` on such a CPU): Q4_0, Q4_1,
  Q8_0, Q4_K, Q5_K, Q6_K and IQ4_XS go to the AMX kernels, whose Q8_0 path
  crashes on short inputs in this version (ggml-org/llama.cpp#20824) and was
  slower than the plain kernels in this project's earlier benchmark on an AMX
  Xeon.
* ARM/RISC-V: NEON/SVE/RVV layouts for Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, IQ4_NL.

This llama.cpp also has a "tiled" K-quant matmul (ggml-cpu/tiled, x86 with
AVX/AVX2/AVX-512 VNNI, batches of 8 rows or more) for Q2_K..Q6_K and IQ
types. It runs only on weights that were NOT repacked ("repack-buffer weights
hold a repacked layout, let that kernel handle"), so on x86 repacking a
Q4_K_M file trades the tiled kernel for the older repacked q4_K_8x8 GEMM.

Measured with ``make bench`` (real-shape Qwen3-Embedding-0.6B, random
weights, llama-cpp-python 0.3.36, 2-core AMD EPYC Zen 4: AVX-512 with VNNI
and BF16, no AMX; quiet machine, fastest of 3 runs), tokens/s with
repacking off / on:

* F16, BF16 and Q8_0: nothing is repacked on x86 (bit-identical vectors,
  the same kernels; F16 151.6, BF16 243.1, Q8_0 161.5 on documents);
* Q4_K_M: 310.2 / 207.2 on mixed documents, 476.1 / 394.9 on short
  queries; repacking also adds ~200 MB of RSS (a copy);
* cosine to the float64 reference on the same weights, Q4_K_M: 0.801 off,
  0.790 on (min over 8 texts); random 28-layer weights amplify the 8-bit
  activation rounding of both kernels alike, so neither is less exact.

The decision: off on every x86 CPU (with AMX because of the crash, without
it because repacking is slower or changes nothing), and llama.cpp's own
default (on) elsewhere: the tiled kernel is x86-only, and on ARM/RISC-V the
repacked NEON/SVE/RVV layouts are the fast path llama.cpp is tuned for
(not measured here).
"""

from __future__ import annotations

import os
import platform
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

# llama.cpp's enum llama_ftype, as GGUF's general.file_type stores it.
FTYPE_F32 = 0
FTYPE_F16 = 1
FTYPE_Q4_0 = 2
FTYPE_Q8_0 = 7
FTYPE_Q4_K_S = 14
FTYPE_Q4_K_M = 15
FTYPE_BF16 = 32
FILE_TYPE_NAMES = {
    FTYPE_F32: "F32", FTYPE_F16: "F16", FTYPE_Q4_0: "Q4_0", FTYPE_Q8_0: "Q8_0",
    FTYPE_Q4_K_S: "Q4_K_S", FTYPE_Q4_K_M: "Q4_K_M", FTYPE_BF16: "BF16",
}

# /proc/cpuinfo flags that decide which llama.cpp kernels run, in the order printed.
RELEVANT_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx512vbmi", "amx_tile", "amx_int8",
    "amx_bf16", "asimd", "asimddp", "i8mm", "sve", "sve2",
)

_GGUF_MAGIC = b"GGUF"
# GGUF value types: fixed sizes for scalars; 8 is a string, 9 an array.
_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_INT_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


@dataclass(frozen=True)
class CpuFeatures:
    """What /proc/cpuinfo says about the CPU: its name, architecture and flags."""

    model: str
    machine: str
    flags: frozenset[str]

    @property
    def x86(self) -> bool:
        return self.machine in ("x86_64", "amd64", "i686", "i386")

    @property
    def amx(self) -> bool:
        """AMX tiles for int8 or bf16: llama.cpp's AMX buffer type can take the weights."""
        return "amx_tile" in self.flags and bool({"amx_int8", "amx_bf16"} & self.flags)

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    def relevant_flags(self) -> list[str]:
        """The flags in :data:`RELEVANT_FLAGS` this CPU has."""
        return [f for f in RELEVANT_FLAGS if f in self.flags]

    def describe(self) -> str:
        """One line: the CPU's name and the flags that pick llama.cpp's kernels."""
        flags = " ".join(self.relevant_flags()) or "none that llama.cpp has kernels for"
        return f"{self.model} ({self.machine}); flags: {flags}"


def parse_cpuinfo(text: str, machine: str | None = None) -> CpuFeatures:
    """CPU features from the text of /proc/cpuinfo (x86 ``flags``, ARM ``Features``)."""
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("flags", "features", "isa") and not flags:
            flags = set(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
    return CpuFeatures(
        model=model or platform.processor() or "unknown CPU",
        machine=(machine or platform.machine()).lower(),
        flags=frozenset(flags),
    )


@lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's CPU features (read once; empty flags where /proc/cpuinfo is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text)


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("truncated GGUF header")
    return data


def _skip_value(f: BinaryIO, vtype: int) -> None:
    if vtype in _GGUF_SCALAR_SIZES:
        f.seek(_GGUF_SCALAR_SIZES[vtype], os.SEEK_CUR)
    elif vtype == _GGUF_STRING:
        (n,) = struct.unpack("<Q", _read(f, 8))
        f.seek(n, os.SEEK_CUR)
    elif vtype == _GGUF_ARRAY:
        etype, count = struct.unpack("<IQ", _read(f, 12))
        if etype in _GGUF_SCALAR_SIZES:
            f.seek(_GGUF_SCALAR_SIZES[etype] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(f, etype)
    else:
        raise ValueError(f"unknown GGUF value type {vtype}")


def gguf_file_type(path: str | os.PathLike[str]) -> int | None:
    """``general.file_type`` of a GGUF file (llama.cpp's llama_ftype), or None.

    Reads only the header, without the ``gguf`` package, so the decision can
    be made before llama.cpp loads the weights. None when the key is absent
    or the file is not a GGUF v2/v3 file.
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) != _GGUF_MAGIC:
                return None
            (version,) = struct.unpack("<I", _read(f, 4))
            if version < 2:
                return None
            _n_tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
            for _ in range(n_kv):
                (klen,) = struct.unpack("<Q", _read(f, 8))
                key = _read(f, klen)
                (vtype,) = struct.unpack("<I", _read(f, 4))
                if key == b"general.file_type" and vtype in _GGUF_INT_FORMATS:
                    fmt = _GGUF_INT_FORMATS[vtype]
                    (value,) = struct.unpack(fmt, _read(f, struct.calcsize(fmt)))
                    return int(value)
                _skip_value(f, vtype)
    except (OSError, ValueError, struct.error):
        return None
    return None


def repack_is_worth_it(file_type: int | None, cpu: CpuFeatures | None = None) -> bool:
    """Whether llama.cpp should repack this file type's weights on this CPU.

    Args:
        file_type: the GGUF's ``general.file_type`` (see :func:`gguf_file_type`); None if unknown.
        cpu: the CPU to decide for; default: this machine's.
    """
    cpu = cpu or cpu_features()
    if not cpu.x86:
        # llama.cpp's default: its NEON/SVE/RVV repacked kernels are the fast path there.
        return True
    # x86 with AMX: the AMX buffer takes Q8_0 and K-quant weights, and its Q8_0
    # kernels crash on short inputs (ggml-org/llama.cpp#20824). x86 without
    # AMX: F16/Q8_0 are never repacked, and repacked Q4_K loses the tiled
    # K-quant kernel: half the speed (module docstring). Either way off,
    # whatever the file type (kept as a parameter for kernels that may pay).
    return False


def default_repack(path: str | os.PathLike[str]) -> bool:
    """The ``repack`` default for a GGUF file on this machine (header read, no weights)."""
    return repack_is_worth_it(gguf_file_type(path))


# File types whose matmuls run on float32 activations: there, flash
# attention's half-precision accumulation would be the largest error.
_FULL_PRECISION_FILE_TYPES = frozenset({FTYPE_F32})


def flash_attention_is_exact_enough(file_type: int | None) -> bool:
    """Whether llama.cpp's CPU flash attention loses nothing that matters for this file type.

    The CPU kernel accumulates attention in float16. With F16, BF16 or
    quantized weights every matmul already rounds activations to 16 bits or
    fewer, and the accumulation adds nothing visible: on the real-shape 0.6B
    F16 file, 1 - cosine to the float64 reference was 6.3e-4 with it and
    7.8e-4 without (344 tokens), 6.4e-4 and 5.6e-4 (5,950 tokens), while it
    made documents 1.17x and queries 1.13x faster (2-core Zen 4). On an F32
    file it is the largest error left (cosine 0.99995 instead of 0.9999999
    on long texts), so it stays off there, and where the type is unknown.

    Args:
        file_type: the GGUF's ``general.file_type``; None if unknown.
    """
    return file_type is not None and file_type not in _FULL_PRECISION_FILE_TYPES


def default_flash_attention(path: str | os.PathLike[str]) -> bool:
    """The ``flash_attention`` default for a GGUF file (header read, no weights)."""
    return flash_attention_is_exact_enough(gguf_file_type(path))
