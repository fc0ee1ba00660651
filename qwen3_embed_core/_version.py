"""The release's version and distribution name: the one place each is written.

pyproject.toml reads ``__version__`` from this file (hatch's dynamic
version), so the wheel's metadata, ``qwen3_embed_core.__version__`` and
``qwen3-embed --version`` cannot disagree. The distribution name is not the
import name: PyPI's ``qwen3-embed`` is another project, so this one installs
as ``qwen3-embedding-kit`` and imports as ``qwen3_embed_core`` and friends.
"""

__version__ = "0.3.0"
# pyproject.toml's [project] name (a test checks the two agree); what `pip install` takes.
DISTRIBUTION = "qwen3-embedding-kit"


def pip_install(extra: str) -> str:
    """The shell command that installs one extra, quoted for any shell."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
