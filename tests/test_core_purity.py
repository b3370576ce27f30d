"""os3p_core is sans-IO: no module imports I/O, a clock, entropy, threads or logging handlers.

House style (ARCHITECTURE.md): "No clock, entropy or I/O in the core; the caller passes `now`"; the
only entropy is the injectable id factory (``uuid.uuid4`` by default).  The AST of every module
under ``os3p_core`` is scanned, so an import hidden inside a function counts too.  The station-side
modules may use ``datetime``, ``zoneinfo`` and ``astral`` (pure computation on times passed in).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import os3p_core

FORBIDDEN = {
    "trio",
    "trio_websocket",
    "asyncio",
    "anyio",
    "socket",
    "ssl",
    "selectors",
    "time",
    "random",
    "secrets",
    "threading",
    "multiprocessing",
    "concurrent",
    "subprocess",
    "logging.handlers",
    "wsproto",
    "hypercorn",
}

PACKAGE = Path(os3p_core.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def imported_names(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names.append(node.module)
            # ``from logging import handlers`` imports logging.handlers.
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in {"__import__", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(str(node.args[0].value))
    return names


def forbidden(name: str) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in FORBIDDEN for i in range(1, len(parts) + 1))


def test_modules_found() -> None:
    assert PACKAGE / "_connection.py" in MODULES
    assert len(MODULES) >= 8


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_io_clock_entropy_or_threads(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = sorted({name for name in imported_names(tree) if forbidden(name)})
    assert not bad, f"{path.name} imports {bad}"


def test_the_scanner_catches_what_it_must() -> None:
    tree = ast.parse(
        "import time\nfrom logging import handlers\nimport logging.handlers as h\n"
        "def f():\n    import asyncio\n    __import__('socket')\n"
        "from os3p_core import _frames\nimport logging\nimport datetime\n"
    )
    bad = sorted({name for name in imported_names(tree) if forbidden(name)})
    assert bad == ["asyncio", "logging.handlers", "socket", "time"]


def test_importing_the_core_loads_no_io_module() -> None:
    # A fresh interpreter: what does ``import os3p_core`` pull in, transitively?
    code = (
        "import sys; before = set(sys.modules); import os3p_core; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert not {m for m in loaded if m.split(".")[0] in {"trio", "asyncio", "trio_websocket", "wsproto"}}
