"""Packaging: what the core imports, py.typed, the wheel's contents, missing extras."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .smoke_installed import PACKAGES  # the smoke test's list: checked below against the wheel

ROOT = Path(__file__).resolve().parent.parent
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
    assert "pip install 'qwen3-embedding-kit[local]'" in out


def test_every_package_is_typed():
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)  # without importing ray and the frameworks
        assert spec is not None and spec.origin is not None, name
        assert (Path(spec.origin).parent / "py.typed").is_file(), name


def test_the_wheel_lists_every_package_here():
    """A new package under integrations/ must be added to the wheel and to PACKAGES."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert sorted(Path(p).name for p in listed) == sorted(PACKAGES)
    on_disk = {p.parent.name for p in (ROOT / "integrations").glob("*/__init__.py")}
    assert on_disk | {"qwen3_embed_core"} == set(PACKAGES)


def test_one_name_and_one_version():
    from qwen3_embed_core import DISTRIBUTION, __version__

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = config["project"]
    assert project["name"] == DISTRIBUTION == "qwen3-embedding-kit"
    assert "version" not in project and project["dynamic"] == ["version"]
    assert config["tool"]["hatch"]["version"]["path"] == "qwen3_embed_core/_version.py"
    # Every extra that names the project names it by this name.
    for extra, requirements in project["optional-dependencies"].items():
        for req in requirements:
            assert not req.startswith("qwen3-embed["), (extra, req)
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(r"^## (\S+)", changelog, re.M)[1] == __version__  # newest entry first


def test_cli_prints_the_version():
    from qwen3_embed_core import DISTRIBUTION, __version__

    done = subprocess.run([sys.executable, "-m", "qwen3_embed_cli", "--version"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == f"qwen3-embed {__version__} ({DISTRIBUTION})"


def test_readme_installs_this_project_not_the_other_qwen3_embed():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install 'qwen3-embedding-kit[" in readme
    assert "pip install 'qwen3-embed[" not in readme and "pip install qwen3-embed " not in readme


def test_wheel_holds_every_package_and_the_console_script(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300, capture_output=True,
    )
    (wheel,) = tmp_path.glob("qwen3_embedding_kit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
        assert f"{package}/py.typed" in names, package
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "qwen3-embed = qwen3_embed_cli:main" in text
    assert not any(n.startswith(("tests/", "examples/", "benchmarks/")) for n in names)
