"""The README's architecture section names files and functions that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# `path/to/file.py:Name` or `path/to/file.py:Class.method` (anything after is prose).
HOP = re.compile(r"`([\w/]+\.py):([A-Za-z_][\w.]*)")


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Architecture", 1)[1].split("\n## ", 1)[0]


def _defined(path: Path) -> set[str]:
    """Top-level names, and Class.member for the methods and fields of each class, in ``path``."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}.{item.name}")
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(f"{node.name}.{item.target.id}")
    return names


def test_every_file_function_hop_exists() -> None:
    """Each `file.py:function` of the architecture section is defined where it says."""
    hops = HOP.findall(_section())
    assert len(hops) >= 8
    missing = [
        f"{file}:{name}"
        for file, name in hops
        if not (ROOT / file).exists() or name not in _defined(ROOT / file)
    ]
    assert missing == []
