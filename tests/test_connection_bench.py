"""Smoke test: ``benchmarks/connection_bench.py --quick`` runs and prints its goal line.

The figures of a quick run mean nothing; the full run (see ``benchmarks/RESULTS.md``) judges the goal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "connection_bench.py"


def test_connection_bench_quick_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert "Heartbeat" in out
    assert "MeterValues (1 x 30)" in out
    assert "goal: >= 30,000 Heartbeat round trips/s" in out
