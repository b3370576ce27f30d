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


#: Modules that reach the OS or its entropy pool.  Only the default id factory may use them
#: (``_config.uuid4_id``: ``os.urandom``, the "only entropy" of the house style).
ENTROPY = {"os", "uuid"}
ENTROPY_ALLOWED = {"_config.py"}
#: Calls that read a clock, whatever module the clock came from (``datetime.now()``, ``date.today()``,
#: ``clock.monotonic()`` via any alias): time is an argument in os3p_core.  (``datetime.time(...)``
#: builds a value, so it is not on the list; the ``time`` module itself is FORBIDDEN.)
CLOCK_READS = {"now", "utcnow", "today", "monotonic", "perf_counter", "time_ns", "monotonic_ns"}


def clock_reads(tree: ast.AST) -> list[str]:
    return [
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_READS
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_entropy_only_in_the_id_factory_and_no_clock_reads(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if path.name not in ENTROPY_ALLOWED or path.parent != PACKAGE:
        entropy = sorted({n for n in imported_names(tree) if n.split(".")[0] in ENTROPY})
        assert not entropy, f"{path.name} imports {entropy}: the id factory is the only entropy"
    assert not clock_reads(tree), f"{path.name} reads a clock: {clock_reads(tree)}"


def test_the_id_factory_is_the_only_use_of_entropy() -> None:
    # _config.py may import os only for os.urandom in uuid4_id.
    tree = ast.parse((PACKAGE / "_config.py").read_text(encoding="utf-8"))
    uses = {
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
    }
    assert uses == {"os.urandom"}
    assert clock_reads(ast.parse("datetime.now(UTC)\n_dt.date.today()\nx.monotonic()\n")) == [
        "now",
        "today",
        "monotonic",
    ]


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
