"""Dependencies point one way: os3p_core imports neither of the others, os3p_trio (the Central System
service included) never imports os3p_sim, and os3p_sim may use both."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import os3p_core
import os3p_sim
import os3p_trio

FORBIDDEN = {
    "os3p_core": {"os3p_trio", "os3p_sim"},
    "os3p_trio": {"os3p_sim"},
    "os3p_sim": set(),
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", [os3p_core, os3p_trio, os3p_sim], ids=lambda p: p.__name__)
def test_dependencies_point_one_way(package: object) -> None:
    root = Path(package.__file__).parent  # type: ignore[attr-defined]
    name = root.name
    offenders = {
        str(path.relative_to(root)): sorted(_imported_packages(path) & FORBIDDEN[name])
        for path in root.rglob("*.py")
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}
    assert any(root.rglob("*.py"))
