"""Smoke test of the end-to-end benchmark (issue 8): ``benchmarks/e2e_compare.py --quick`` starts the three
servers (os3p, the ``ocpp`` package on ``websockets``, bare trio + wsproto), drives each with the load
generator at a tiny size and prints the comparison table.  Figures at this size mean nothing; the test
only shows the benchmark runs end to end (every server answered every call: no error row)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_e2e_compare_quick_runs_and_prints_the_table() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "e2e_compare.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## e2e_compare results" in out
    header = next(line for line in out.splitlines() if line.startswith("| scenario"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "scenario",
        "metric",
        "os3p",
        "peer",
        "floor",
        "os3p/peer",
        "os3p/floor",
    ]
    for title in ("Heartbeat, 1 connection", "MeterValues(30)", "Idle connections"):
        assert title in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "calls/s" in line]
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        # Every server answered calls: a positive rate in each column.
        assert all(float(c.replace(",", "")) > 0 for c in cells[2:5]), row
    assert "errors/unanswered/lost" not in out
