"""Smoke test of the data-layer benchmark: ``benchmarks/core_bench.py --quick`` runs and reports its goals.

The figures of a quick run are not meaningful (tiny sizes, shared machine), so only the shape of the output
is checked here; ``benchmarks/RESULTS.md`` has real figures.
"""

from __future__ import annotations

from helpers import run_quick_bench


def test_core_bench_quick_runs() -> None:
    out = run_quick_bench("core_bench.py")
    assert "import os3p_core (fresh interpreter)" in out
    assert out.count(" ms   ") == 21  # the first-use time of all 42 schemas, two per line
    for message in ("Heartbeat", "BootNotification", "MeterValues"):
        for stage in ("validate", "decode + validate", "decode + validate + structure"):
            assert any(line.startswith(message) and f" {stage} " in line for line in out.splitlines())
    goals = [line for line in out.splitlines() if line.startswith("goal: ")]
    assert len(goals) == 3
