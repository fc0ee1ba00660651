"""Damaged, truncated, foreign and wrong-kind GGUF files are refused with our error.

Both local constructors read the file's header in a bounded way before llama.cpp
sees it (issue 18: a first key length of 2**40 raised MemoryError; every llama.cpp
load failure said "no detail from llama.cpp"; the embedder embedded with a
reranker file). Each damaged file below must give a ``ModelFileError`` (a
``Qwen3EmbedError``) whose message names the file and says what was expected,
before any text is processed: never a raw exception, never a crash.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from qwen3_embed_core import (
    ModelFileError,
    Qwen3Embedder,
    Qwen3EmbedError,
    Qwen3Reranker,
    WrongModelKindError,
)
from qwen3_embed_core.testing import Reference, build_model

from .conftest import COS_MIN

gguf = pytest.importorskip("gguf")

# GGUF value type codes used when patching values in place.
U32, U64, STRING, ARRAY = 4, 10, 8, 9


class Layout:
    """Byte offsets of the parts of a GGUF header, from the gguf package's reader."""

    def __init__(self, path: Path) -> None:
        reader = gguf.GGUFReader(str(path))
        self.data_start = int(reader.data_offset)
        self.fields = {}
        for name, field in reader.fields.items():
            if name.startswith("GGUF."):  # the reader's pseudo-fields for the file header
                continue
            starts, pos = [], int(field.offset)
            for part in field.parts:
                starts.append(pos)
                pos += part.nbytes
            self.fields[name] = (starts, pos)
        self.tensors = {}
        for t in reader.tensors:
            starts, pos = [], int(t.field.offset)
            for part in t.field.parts:
                starts.append(pos)
                pos += part.nbytes
            self.tensors[t.name] = starts
        # Where each key and tensor entry and its first parts start (not every array item).
        self.boundaries = sorted(
            {s for starts, _ in self.fields.values() for s in starts[:6]}
            | {s for starts in self.tensors.values() for s in starts}
        )

    def value_at(self, key: str) -> int:
        """Where the key's value starts (after its name and type)."""
        return self.fields[key][0][3]


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def _damaged_files(model: Path, out: Path) -> list[tuple[str, Path]]:
    """(what was done, file) for every kind of damage, written under ``out``."""
    data = model.read_bytes()
    lay = Layout(model)
    cases: list[tuple[str, bytes]] = [
        ("empty file", b""),
        ("three bytes", b"GGU"),
        ("a text file", b"I am a note, not a model.\n" * 20),
        ("a zip file", b"PK\x03\x04" + bytes(200)),
        ("magic flipped", b"GGUE" + data[4:]),
        ("magic byte order", b"FUGG" + data[4:]),
        ("header only", data[:24]),
    ]
    for version in (0, 1, 4, 0xFFFFFFFF):
        cases.append((f"version {version}", _patch(data, 4, struct.pack("<I", version))))
    for n in (2**63, 2**40, 10**9):
        cases.append((f"tensor count {n}", _patch(data, 8, struct.pack("<Q", n))))
        cases.append((f"key count {n}", _patch(data, 16, struct.pack("<Q", n))))
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    n_tensors = struct.unpack_from("<Q", data, 8)[0]
    cases += [
        ("no metadata keys", _patch(data, 16, struct.pack("<Q", 0))),
        ("one key more", _patch(data, 16, struct.pack("<Q", n_kv + 1))),
        ("one key less", _patch(data, 16, struct.pack("<Q", n_kv - 1))),
        ("no tensors", _patch(data, 8, struct.pack("<Q", 0))),
        ("one tensor more", _patch(data, 8, struct.pack("<Q", n_tensors + 1))),
    ]
    first = lay.boundaries[0]
    for n in (2**40, 2**64 - 1, len(data)):
        cases.append((f"first key length {n}", _patch(data, first, struct.pack("<Q", n))))
    # The architecture's type and value; the vocabulary arrays' counts.
    arch_type = lay.fields["general.architecture"][0][2]
    arch_value = lay.value_at("general.architecture")
    cases += [
        ("unknown value type", _patch(data, arch_type, struct.pack("<I", 99))),
        ("array type on a string", _patch(data, arch_type, struct.pack("<I", ARRAY))),
        ("architecture length 2**40", _patch(data, arch_value, struct.pack("<Q", 2**40))),
    ]
    for arch in (b"llama", b"gemma", b"qwen2", b"QWEN3"):
        cases.append((f"architecture {arch.decode()}", _patch(data, arch_value + 8, arch)))
    tokens_at = lay.value_at("tokenizer.ggml.tokens")
    merges_at = lay.value_at("tokenizer.ggml.merges")
    for key, at in (("tokens", tokens_at), ("merges", merges_at)):
        for n in (2**62, 2**32, 10**7):
            cases.append((f"{key} count {n}", _patch(data, at + 4, struct.pack("<Q", n))))
        cases.append((f"{key} item type nested", _patch(data, at, struct.pack("<I", ARRAY))))
        cases.append((f"{key} item type 77", _patch(data, at, struct.pack("<I", 77))))
        cases.append((f"first {key} item length 2**50",
                      _patch(data, at + 12, struct.pack("<Q", 2**50))))
    model_at = lay.value_at("tokenizer.ggml.model")
    cases.append(("tokenizer bert", _patch(data, model_at + 8, b"bert")))
    eos_at = lay.value_at("tokenizer.ggml.eos_token_id")
    cases.append(("eos id out of range", _patch(data, eos_at, struct.pack("<I", 10**6))))
    for key, value in (("qwen3.block_count", 1000), ("qwen3.block_count", 0),
                       ("qwen3.embedding_length", 0), ("qwen3.embedding_length", 63)):
        at = lay.value_at(key)
        cases.append((f"{key} {value}", _patch(data, at, struct.pack("<I", value))))
    # Tensors: renamed away (missing), impossible shapes, types, offsets.
    for name in ("token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight",
                 "blk.2.ffn_down.weight"):
        name_at = lay.tensors[name][1]
        cases.append((f"missing {name}", _patch(data, name_at, b"X")))
    starts = lay.tensors["blk.1.attn_k.weight"]
    dims_at, type_at, offset_at = starts[3], starts[4], starts[5]
    cases += [
        ("tensor with 5 dimensions", _patch(data, starts[2], struct.pack("<I", 5))),
        ("tensor with 0 dimensions", _patch(data, starts[2], struct.pack("<I", 0))),
        ("tensor dimension 2**62", _patch(data, dims_at, struct.pack("<Q", 2**62))),
        ("tensor dimension 2**31", _patch(data, dims_at, struct.pack("<Q", 2**31))),
        ("tensor type 9999", _patch(data, type_at, struct.pack("<I", 9999))),
        ("tensor type Q8_0 on 64 columns of F32", _patch(data, type_at, struct.pack("<I", 8))),
        ("tensor offset misaligned", _patch(
            data, offset_at, struct.pack("<Q", struct.unpack_from("<Q", data, offset_at)[0] + 1)
        )),
        ("tensor offset past the end", _patch(data, offset_at, struct.pack("<Q", 2**40))),
    ]
    # Cut short: at every part of the header, then across the tensor data.
    cuts = sorted({*lay.boundaries, *(b + 3 for b in lay.boundaries)}
                  | set(range(1, lay.data_start, max(1, lay.data_start // 60)))
                  | {lay.data_start, lay.data_start + 1, (lay.data_start + len(data)) // 2,
                     len(data) - 1})
    cases += [(f"truncated at byte {n}", data[:n]) for n in cuts if 0 < n < len(data)]
    files = []
    for i, (what, content) in enumerate(cases):
        path = out / f"damaged-{i:03d}.gguf"
        path.write_bytes(content)
        files.append((what, path))
    return files


@pytest.fixture(scope="module")
def damaged(tiny_model, tmp_path_factory):
    """Damaged copies of the embedding model."""
    return _damaged_files(tiny_model, tmp_path_factory.mktemp("damaged"))


@pytest.fixture(scope="module")
def damaged_reranker(tiny_reranker, tmp_path_factory):
    """Damaged copies of the reranker (with the cls.output head)."""
    return _damaged_files(tiny_reranker, tmp_path_factory.mktemp("damaged-reranker"))


def _refusal(build, path):
    """The error ``build(path)`` raises; fails the test on success or a foreign exception."""
    try:
        made = build(path)
    except Qwen3EmbedError as exc:
        return exc
    made.close()
    raise AssertionError(f"{path} was accepted")


@pytest.mark.parametrize("build, files", [(Qwen3Embedder.local, "damaged"),
                                          (Qwen3Reranker.local, "damaged_reranker")],
                         ids=["embedder", "reranker"])
def test_every_damaged_file_is_refused_with_our_error(request, build, files, capsys):
    damaged = request.getfixturevalue(files)
    assert len(damaged) >= 150
    problems = []
    for what, path in damaged:
        exc = _refusal(build, path)
        message = str(exc)
        if not isinstance(exc, ModelFileError) or str(path) not in message or (
            "expected" not in message
        ):
            problems.append(f"{what}: {type(exc).__name__}: {message}")
    with capsys.disabled():
        print(f"\n{len(damaged)} damaged files refused by {build.__qualname__}")
    assert not problems, "\n".join(problems)


def test_the_issues_key_length_names_the_problem(damaged, tiny_model):
    path = next(p for w, p in damaged if w == "first key length 1099511627776")
    for build in (Qwen3Embedder.local, Qwen3Reranker.local):
        with pytest.raises(ModelFileError, match=r"damaged or truncated GGUF.*1099511627776"):
            build(path)


@pytest.mark.parametrize("what, pattern", [
    ("empty file", r"empty file \(0 bytes\); expected a Qwen3-Embedding GGUF"),
    ("a text file", r"not a GGUF file \(it begins with b'I am a note"),
    ("architecture llama", r"GGUF of a 'llama' model, not 'qwen3'"),
    ("missing blk.0.attn_q.weight", r"without the tensors blk\.0\.attn_q\.weight"),
    ("truncated at byte 24", r"truncated"),
    ("tensor offset past the end", r"ends at byte \d+ but the file has only \d+ bytes"),
])
def test_messages_say_what_the_file_is(damaged, what, pattern):
    path = next(p for w, p in damaged if w == what)
    with pytest.raises(ModelFileError, match=pattern):
        Qwen3Embedder.local(path)


def test_llama_cpp_s_own_refusal_carries_its_reason(tmp_path, tiny_model):
    # A pre-tokenizer name llama.cpp does not know: our checks don't read it (we tokenize
    # with Qwen3's own rules), llama.cpp refuses the file and logs why.
    data = tiny_model.read_bytes()
    at = Layout(tiny_model).value_at("tokenizer.ggml.pre")
    assert data[at + 8 : at + 13] == b"qwen2"
    path = tmp_path / "unknown-pre.gguf"
    path.write_bytes(_patch(data, at + 8, b"qwen9"))
    with pytest.raises(ModelFileError, match=r"llama\.cpp could not load .*unknown pre-tokenizer"):
        Qwen3Embedder.local(path)


# Random byte changes in the header, in a child process so that a crash (llama.cpp
# aborts the process on some inconsistencies) fails the test instead of the run.
FUZZ = """
import json, random, sys
from qwen3_embed_core import Qwen3Embedder, Qwen3Reranker, ModelFileError
source, header_end, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = open(source, "rb").read()
rng = random.Random(18)
counts = {"refused": 0, "accepted": 0, "other": []}
for i in range(n):
    damaged = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4])):
        damaged[rng.randrange(header_end)] = rng.randrange(256)
    open(out, "wb").write(damaged)
    for build in (Qwen3Embedder.local, Qwen3Reranker.local):
        print(i, build.__qualname__, file=sys.stderr, flush=True)
        try:
            model = build(out)
        except ModelFileError:
            counts["refused"] += 1
            continue
        except Exception as exc:
            counts["other"].append(f"{i}: {type(exc).__name__}: {exc}")
            continue
        try:
            if hasattr(model, "embed_documents"):
                model.embed_documents(["a text"])
            else:
                model.score("a query", ["a document"])
            counts["accepted"] += 1
        except Exception as exc:
            counts["other"].append(f"{i} (accepted): {type(exc).__name__}: {exc}")
        model.close()
print(json.dumps(counts))
"""


@pytest.mark.parametrize("source", ["tiny_model", "tiny_reranker"])
def test_random_header_damage_never_crashes_or_escapes(request, tmp_path, source, capsys):
    import json
    import subprocess
    import sys

    path = request.getfixturevalue(source)
    n = 100
    run = subprocess.run(
        [sys.executable, "-c", FUZZ, str(path), str(Layout(path).data_start), str(n),
         str(tmp_path / "fuzzed.gguf")],
        capture_output=True, text=True, timeout=300,
    )
    last = run.stderr.strip().splitlines()[-1:] if run.returncode else []
    assert run.returncode == 0, f"the child died ({run.returncode}) at {last}"
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print(f"\n{source}: {n} randomly damaged headers, {counts['refused']} refusals, "
              f"{counts['accepted']} loads that ran (both constructors)")
    assert counts["other"] == []
    assert counts["refused"] > n  # most damage is caught; the rest is harmless


# -- the wrong kind of Qwen3 file ---------------------------------------------------------


@pytest.mark.parametrize("flavour", ["tiny_reranker", "tiny_reranker_plain"])
def test_the_embedder_refuses_a_reranker(request, flavour):
    path = request.getfixturevalue(flavour)
    with pytest.raises(WrongModelKindError, match=r"is a Qwen3-Reranker GGUF, not an embedding"):
        Qwen3Embedder.local(path)


def test_the_reranker_refuses_an_embedder(tiny_model):
    with pytest.raises(WrongModelKindError, match=r"embedding model"):
        Qwen3Reranker.local(tiny_model)


def test_an_unnamed_causal_lm_without_pooling_still_embeds(tmp_path):
    # Early embedding conversions may declare no pooling type: last-token pooling is ours.
    path = build_model(tmp_path / "no-pooling.gguf", pooling=None)
    emb = Qwen3Embedder.local(path)
    try:
        vector = emb.embed_documents(["still an embedding"])[0]
    finally:
        emb.close()
    assert float(np.dot(vector, Reference(path).embed("still an embedding"))) >= COS_MIN


def test_the_cli_prints_our_error_not_a_traceback(damaged, capsys):
    from qwen3_embed_cli import main

    path = next(p for w, p in damaged if w == "first key length 1099511627776")
    try:
        status = main(["embed", "--model", str(path), "hello"])
    except SystemExit as exc:
        status = exc.code
    _out, err = capsys.readouterr()
    assert status not in (0, None)
    assert "Traceback" not in err
    assert "damaged or truncated GGUF" in err and str(path) in err
