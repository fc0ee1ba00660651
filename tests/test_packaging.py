"""Packaging: what the core imports, py.typed, the wheel's contents, missing extras."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    "qwen3_embed_core",
    "qwen3_embed_langchain",
    "qwen3_embed_llamaindex",
    "qwen3_embed_chroma",
    "qwen3_embed_qdrant",
    "qwen3_embed_cli",
]
HEAVY = ["llama_cpp", "langchain_core", "llama_index", "chromadb", "qdrant_client",
         "huggingface_hub", "gguf", "tokenizers", "torch"]


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120).stdout


def test_core_imports_no_framework_and_no_llama_cpp():
    out = _run(
        "import sys, qwen3_embed_core\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    assert out.strip() == "[]"


def test_a_missing_extra_is_named(tiny_model):
    out = _run(
        "import sys\n"
        "sys.modules['llama_cpp'] = None  # as if llama-cpp-python were not installed\n"
        "from qwen3_embed_core import Qwen3Embedder, MissingDependencyError\n"
        "try:\n"
        f"    Qwen3Embedder.local({str(tiny_model)!r})\n"
        "except MissingDependencyError as e:\n"
        "    print(e)\n"
    )
    assert "pip install 'qwen3-embed[local]'" in out


def test_every_package_is_typed():
    for name in PACKAGES:
        module = __import__(name)
        assert (Path(module.__file__).parent / "py.typed").is_file(), name


def test_wheel_holds_every_package_and_the_console_script(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300, capture_output=True,
    )
    (wheel,) = tmp_path.glob("qwen3_embed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
        assert f"{package}/py.typed" in names, package
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "qwen3-embed = qwen3_embed_cli:main" in text
    assert not any(n.startswith(("tests/", "examples/", "benchmarks/")) for n in names)
