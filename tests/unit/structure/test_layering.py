"""The import graph: layers point down (schemas <- common <- workers <- eventguard) and no cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LAYERS = ("schemas", "common", "workers", "eventguard")


def _modules() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` imports, anywhere in it (TYPE_CHECKING blocks included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            found = target
            while found and found not in known:
                found = found.rpartition(".")[0]
            if found and found != name:
                yield found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: set(_imports(path, name, known)) for name, path in known.items()}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".", maxsplit=1)[0])


def test_imports_point_down_the_layers() -> None:
    """schemas imports nothing of ours, common no worker, workers no tool."""
    upward = [
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(source)
    ]
    assert upward == []


def test_no_worker_imports_another() -> None:
    """Workers share only common and schemas."""
    crossing = []
    for source, targets in _graph().items():
        if not source.startswith("workers.") or source.count(".") < 1:
            continue
        own = source.split(".")[1]
        for target in targets:
            parts = target.split(".")
            foreign = parts[0] == "workers" and len(parts) > 1 and parts[1] != own
            if foreign and "registry" not in (parts[1], own):
                crossing.append(f"{source} -> {target}")
    assert crossing == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its modules is not a cycle of its own."""
    packages = {name for name in graph if (ROOT / name.replace(".", "/") / "__init__.py").exists()}
    return {
        source: {t for t in targets if t not in packages}
        for source, targets in graph.items()
        if source not in packages
    }


def test_no_import_cycle() -> None:
    """No module reaches itself through its imports, TYPE_CHECKING imports included."""
    assert _cycles(_without_packages(_graph())) == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The checks above can fail: a made-up graph with a loop and an upward edge is caught."""
    graph = {"common.a": {"common.b"}, "common.b": {"common.a"}, "schemas.x": {"workers.y"}}
    assert _cycles(graph) == [["common.a", "common.b"]]
    assert _layer("workers.y") > _layer("schemas.x")
