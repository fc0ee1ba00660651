"""The README's integration snippets run as written (with the tiny model as the GGUF file)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FILE = "Qwen3-Embedding-0.6B-Q8_0.gguf"


def snippet(heading: str) -> str:
    """The first python block after a '### heading' line."""
    section = README.split(f"### {heading}", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


@pytest.mark.parametrize("heading", ["LangChain", "LlamaIndex", "Chroma", "Qdrant Edge", "Qdrant —"])
def test_integration_snippet_runs(heading, tiny_model, tmp_path):
    code = snippet(heading)
    assert FILE in code
    code = code.replace(FILE, str(tiny_model))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"ANONYMIZED_TELEMETRY": "False",
                                                       "PATH": "/usr/bin:/bin",
                                                       "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_setup_commands_are_documented():
    assert "make demo" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
