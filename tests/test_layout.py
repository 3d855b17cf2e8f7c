"""The package's layout shows its design: no import circle, and the model layer never reaches up into the
library's front doors (api, cli, settings, evaluation)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stockllm"
FRONT_DOORS = {"stockllm.api", "stockllm.cli", "stockllm.settings", "stockllm.evaluation", "stockllm.serve"}


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports}, imports inside functions included (they run too, only later)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found |= {t for t in (target, *(f"{target}.{a.name}" for a in node.names)) if t in modules}
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found |= {n for n in names if n in modules}
        graph[name] = found - {name}
    return graph


def test_there_is_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, " -> ".join([*path[path.index(nxt):], nxt]) if nxt in path else nxt
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_model_layer_imports_no_front_door():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("stockllm.models"):
            assert not targets & FRONT_DOORS, (module, sorted(targets & FRONT_DOORS))
