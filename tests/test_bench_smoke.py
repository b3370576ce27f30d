"""Smoke test of the end-to-end benchmark (issues 8, 17): ``benchmarks/e2e_compare.py --quick`` starts the
servers (os3p, the ``ocpp`` package on ``websockets``, bare trio + wsproto; the service and Node's ocpp-rpc),
drives each with the load generator at a tiny size and prints the comparison table.  Figures at this size
mean nothing; the test only shows the benchmark runs end to end (every server answered every call: no error
row)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_quick(impls: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "e2e_compare.py"), "--quick", "--impls", impls],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## e2e_compare results" in out
    assert "errors/unanswered/lost" not in out
    for title in ("Heartbeat, 1 connection", "MeterValues(30)", "Idle connections"):
        assert title in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "calls/s" in line]
    assert len(rows) == 4
    servers = len(impls.split(","))
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        # Every server answered calls: a positive rate in each column.
        assert all(float(c.replace(",", "")) > 0 for c in cells[2 : 2 + servers]), row
    return out


def header(out: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith("| scenario"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_e2e_compare_quick_runs_and_prints_the_table() -> None:
    out = run_quick("os3p,peer,floor")
    assert header(out) == ["scenario", "metric", "os3p", "peer", "floor", "os3p/peer", "os3p/floor"]


def test_e2e_compare_measures_the_node_ocpp_rpc_peer_beside_the_service() -> None:
    # Node's ocpp-rpc (issue 17's strongest peer) and the Central System service, with the service's ratio.
    out = run_quick("os3p,central,node")
    assert header(out) == [
        "scenario", "metric", "os3p", "central", "node", "os3p/central", "os3p/node", "central/node"
    ]
