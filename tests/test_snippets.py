"""Every ```python block in README.md and docs/**/*.md runs, so the docs cannot go stale.

Each block runs in a fresh subprocess (from the checkout, bounded in time); a block that is not a complete
program (a signature sketch) belongs in a ```text or ```pycon fence instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if "_build" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


BLOCKS = _blocks()

# Blocks of the guides that are API sketches or fragments, not programs (keyed by file and first line without
# its comment, which survive edits elsewhere in the file).  Each is expected to fail; strict, so a block made
# runnable (or moved to a ```text fence) must leave this list.
SKETCHES = {
    ("docs/central.md", 'async with open_sqlite_store("cs.sqlite") as store, open_central_service('),
    ("docs/connection.md", "from os3p_core import Connection, Config, Role, Call, CallReceived, BootState"),
    ("docs/payloads.md", "from datetime import UTC, datetime"),
    ("docs/simulator.md", "from os3p_sim import FaultPlan, Simulation"),
    ("docs/streetlight.md", "from os3p_core import ("),
    ("docs/trio.md", "import trio"),
    ("docs/trio.md", "async def serve_central_system("),
    ("docs/trio.md", "class SubstationClient:"),
    ("docs/trio.md", "class Router:"),
    ("docs/trio.md", "class TimerService:"),
    ("docs/trio.md", 'secret = b"..."'),
}


def _param(where: str, code: str) -> object:
    key = (where.rsplit(":", 1)[0], code.splitlines()[0].split("#")[0].strip() if code else "")
    sketch = pytest.mark.xfail(strict=True, reason="API sketch in a guide, not a program")
    marks = [sketch] if key in SKETCHES else []
    return pytest.param(where, code, id=where, marks=marks)


def test_blocks_found() -> None:
    assert any(where.startswith("README.md") for where, _ in BLOCKS)
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(("where", "code"), [_param(where, code) for where, code in BLOCKS])
def test_snippet_runs(where: str, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
