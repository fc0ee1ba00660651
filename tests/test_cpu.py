"""CPU detection and the defaults measured per CPU and file type (repacking, flash attention):
/proc/cpuinfo parsing, the GGUF header read, the decisions."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from qwen3_embed_core import Qwen3Embedder
from qwen3_embed_core._cpu import (
    FTYPE_BF16,
    FTYPE_F16,
    FTYPE_F32,
    FTYPE_Q4_K_M,
    FTYPE_Q8_0,
    cpu_features,
    default_flash_attention,
    default_repack,
    flash_attention_is_exact_enough,
    gguf_file_type,
    parse_cpuinfo,
    repack_is_worth_it,
)
from qwen3_embed_core.testing import build_model

# Trimmed /proc/cpuinfo texts of three machines.
XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16 \
avx512_fp16 amx_bf16 amx_tile amx_int8
"""
EPYC_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16
"""
HASWELL = "model name\t: Intel(R) Core(TM) i7-4770\nflags\t\t: fpu sse4_2 avx f16c fma avx2\n"
OLD_X86 = "model name\t: Intel(R) Core(TM)2 Duo\nflags\t\t: fpu sse4_1\n"
GRAVITON = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve i8mm
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_reads_flags_and_name() -> None:
    xeon = parse_cpuinfo(XEON_AMX, "x86_64")
    assert xeon.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert xeon.amx and xeon.avx512 and xeon.avx2 and xeon.x86
    assert "amx_int8" in xeon.relevant_flags() and "sse4_2" not in xeon.relevant_flags()
    zen4 = parse_cpuinfo(EPYC_ZEN4, "x86_64")
    assert not zen4.amx and zen4.avx512 and "avx512_bf16" in zen4.relevant_flags()
    arm = parse_cpuinfo(GRAVITON, "aarch64")
    assert not arm.x86 and {"asimddp", "sve", "i8mm"} <= arm.flags
    assert "amx_tile" not in parse_cpuinfo(OLD_X86, "x86_64").describe()


def test_repack_decision() -> None:
    xeon, zen4 = parse_cpuinfo(XEON_AMX, "x86_64"), parse_cpuinfo(EPYC_ZEN4, "x86_64")
    haswell, old = parse_cpuinfo(HASWELL, "x86_64"), parse_cpuinfo(OLD_X86, "x86_64")
    arm = parse_cpuinfo(GRAVITON, "aarch64")
    # x86: off for every file (AMX: the Q8_0 crash; otherwise no gain, or
    # half the speed for Q4_K_M because the tiled K-quant kernel is lost).
    for cpu in (xeon, zen4, haswell, old):
        for ftype in (FTYPE_F16, FTYPE_Q8_0, FTYPE_Q4_K_M, None):
            assert repack_is_worth_it(ftype, cpu) is False
    # Elsewhere llama.cpp's default (on): the repacked NEON/SVE layouts are its fast path.
    for ftype in (FTYPE_F16, FTYPE_Q8_0, FTYPE_Q4_K_M, None):
        assert repack_is_worth_it(ftype, arm) is True


@pytest.mark.parametrize("dtype", ["F32", "F16", "Q8_0"])
def test_gguf_file_type_matches_the_gguf_package(tmp_path: Path, dtype: str) -> None:
    path = build_model(tmp_path / f"m-{dtype}.gguf", dtype=dtype)
    expected = int(gguf.GGUFReader(str(path)).fields["general.file_type"].contents())
    assert gguf_file_type(path) == expected
    assert default_repack(path) == repack_is_worth_it(expected, cpu_features())
    assert default_flash_attention(path) is (dtype != "F32")


def test_gguf_file_type_of_other_files(tmp_path: Path) -> None:
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a model")
    truncated = tmp_path / "t.gguf"
    full = build_model(tmp_path / "full.gguf").read_bytes()
    truncated.write_bytes(full[:40])
    assert gguf_file_type(not_gguf) is None
    assert gguf_file_type(truncated) is None
    assert gguf_file_type(tmp_path / "missing.gguf") is None
    assert default_repack(not_gguf) is False or not cpu_features().x86
    assert default_flash_attention(not_gguf) is False


def test_flash_attention_only_where_activations_are_already_half_precision() -> None:
    # F16, BF16 and quantized weights round every matmul's activations to 16
    # bits or fewer; an F32 file computes in float32, where flash attention's
    # float16 accumulation would be the largest error. Unknown: off.
    for ftype in (FTYPE_F16, FTYPE_BF16, FTYPE_Q8_0, FTYPE_Q4_K_M):
        assert flash_attention_is_exact_enough(ftype) is True
    assert flash_attention_is_exact_enough(FTYPE_F32) is False
    assert flash_attention_is_exact_enough(None) is False


@pytest.mark.parametrize(("dtype", "option", "expected"), [
    ("F16", None, True), ("F32", None, False), ("F16", False, False), ("F32", True, True),
])
def test_the_embedder_turns_flash_attention_on_by_file_type(
    tmp_path: Path, dtype: str, option: bool | None, expected: bool
) -> None:
    path = build_model(tmp_path / f"m-{dtype}.gguf", dtype=dtype)
    with Qwen3Embedder.local(path, flash_attention=option) as emb:
        assert emb.backend.flash_attention is expected  # type: ignore[attr-defined]
