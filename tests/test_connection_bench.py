"""Smoke test: ``benchmarks/connection_bench.py --quick`` runs and prints its goal line.

The figures of a quick run mean nothing; the full run (see ``benchmarks/RESULTS.md``) judges the goal.
"""

from __future__ import annotations

from helpers import run_quick_bench


def test_connection_bench_quick_runs() -> None:
    out = run_quick_bench("connection_bench.py", timeout=120)
    assert "Heartbeat" in out
    assert "MeterValues (1 x 30)" in out
    assert "goal: >= 30,000 Heartbeat round trips/s" in out
