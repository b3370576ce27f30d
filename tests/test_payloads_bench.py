"""Smoke test: ``benchmarks/payloads_bench.py --quick`` (typed structuring and unstructuring) runs.

The figures of a quick run mean nothing; ``benchmarks/RESULTS.md`` ("Typed payloads") has real ones.
"""

from __future__ import annotations

import re

from helpers import run_quick_bench


def test_payloads_bench_quick_runs() -> None:
    out = run_quick_bench("payloads_bench.py", timeout=120)
    assert "(no cattrs)" in out  # import os3p_core does not import cattrs
    assert "PayloadConverter() first build" in out
    for payload in ("Heartbeat request", "BootNotification request", "MeterValues request"):
        assert payload in out
    for stage in ("validate", "structure", "unstructure"):
        assert len(re.findall(rf"^  {stage} +[0-9.]+ µs/call", out, flags=re.MULTILINE)) == 3
    assert "hook generation, all 42 classes" in out
