"""The import graph: no package imports the command line, and nothing imports in a cycle.

Read from the source with ``ast`` (every import statement, at module level or inside
functions): which of our packages imports which, and which module imports which at
import time (module level, ``TYPE_CHECKING`` blocks aside).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"qwen3_embed_core": ROOT / "qwen3_embed_core",
            **{p.name: p for p in sorted((ROOT / "integrations").iterdir())
               if (p / "__init__.py").exists()}}

# Who may import whom: the core nothing of ours; the CLI (a leaf) may use any store or Ray.
ALLOWED = {
    "qwen3_embed_core": set(),
    "qwen3_embed_chroma": {"qwen3_embed_core"},
    "qwen3_embed_qdrant": {"qwen3_embed_core"},
    "qwen3_embed_langchain": {"qwen3_embed_core"},
    "qwen3_embed_llamaindex": {"qwen3_embed_core"},
    "qwen3_embed_ray": {"qwen3_embed_core"},
    "qwen3_embed_cli": {"qwen3_embed_core", "qwen3_embed_ray"},
}


def _module_name(package: str, path: Path) -> str:
    rel = path.relative_to(PACKAGES[package]).with_suffix("")
    parts = [package, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, top_only: bool) -> set[str]:
    """Our modules ``path`` imports (``top_only``: at import time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import) and (inner or not top_only):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and (inner or not top_only):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    name = f"{base}.{child.module}" if child.module else base
                    found.add(name)
                    if not child.module:
                        found.update(f"{base}.{a.name}" for a in child.names)
                else:
                    found.add(child.module or "")
            visit(child, inner)

    visit(tree, True)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph(top_only: bool) -> dict[str, set[str]]:
    graph = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            module = _module_name(package, path)
            graph[module] = _imports(path, module, top_only)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def package_graph() -> dict[str, set[str]]:
    """Which package imports which (every import, however deep)."""
    out: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for module, imported in _graph(top_only=False).items():
        out[module.split(".")[0]].update(m.split(".")[0] for m in imported)
    for package, imported in out.items():
        imported.discard(package)
    return out


def test_packages_import_only_what_they_may():
    graph = package_graph()
    print("\nimport graph: " + "; ".join(
        f"{p} -> {', '.join(sorted(i)) or 'nothing of ours'}" for p, i in sorted(graph.items())))
    assert set(graph) == set(ALLOWED), sorted(graph)
    for package, imported in graph.items():
        assert imported <= ALLOWED[package], (package, sorted(imported - ALLOWED[package]))
    assert not any("qwen3_embed_cli" in i for p, i in graph.items() if p != "qwen3_embed_cli")
    assert _cycle(graph) is None


def test_no_module_imports_in_a_cycle():
    graph = _graph(top_only=True)
    modules = set(graph)
    resolved = {m: {i for i in imported if i in modules} for m, imported in graph.items()}
    assert _cycle(resolved) is None, " -> ".join(_cycle(resolved) or [])


def test_the_graph_reader_sees_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
