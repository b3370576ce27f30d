"""Smoke test of ``benchmarks/transport_bench.py`` at a tiny size: it runs end to end and prints its
table (the figures at this size mean nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "transport_bench.py"


def test_transport_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "run", "--quick", "--impl", "wsproto", "--impl", "os3p"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| wsproto", "| os3p"))]
    assert len(rows) == 2
    for row in rows:
        msgs_per_s = float(row.split("|")[2])
        assert msgs_per_s > 0


def test_handshake_bench_quick() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "handshakes",
            "--count",
            "20",
            "--concurrency",
            "4",
            "--impl",
            "os3p-auth",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "os3p-auth  handshakes=20 " in proc.stdout
