"""The one-command demo, headless, with a small fleet and a short run: its summary is checked, and the
database it leaves is readable by ``os3p-central stations list``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from os3p_sim import DemoSummary, run_demo
from os3p_sim import _demo as demo_module
from os3p_sim.cli import main as sim_main
from os3p_trio.central.cli import main as central_main


async def test_demo_headless_small_fleet(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    out = io.StringIO()
    # The default output is whatever sys.stdout is when the demo starts (here redirected).
    with contextlib.redirect_stdout(out):
        summary = await run_demo(stations=4, duration=6.0, time_scale=600.0, db=db, lead_seconds=1.5)
    text = out.getvalue()
    assert summary.booted == 4
    assert summary.calls_failed == 0
    # Profiles were set before sunset: every contactor 1 switched on at sunset (and contactor 2 on, then off).
    assert summary.switches >= 4
    assert summary.lights_on >= 4
    assert summary.meter_values > 0
    assert summary.firmware_updated == 4, text
    assert "summary" in text
    assert f"os3p-central stations list --db {db}" in text
    assert summary.as_json()["firmwareUpdated"] == 4

    # The database stays, for the CLI to read.
    def listing() -> tuple[int, str]:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = central_main(["stations", "list", "--db", str(db), "--json"])
        return code, buffer.getvalue()

    code, printed = await trio.to_thread.run_sync(listing)
    assert code == 0
    stations = json.loads(printed)
    assert [s["identity"] for s in stations] == ["DEMO-001", "DEMO-002", "DEMO-003", "DEMO-004"]
    assert {s["bootFields"]["firmwareVersion"] for s in stations} == {"2.0.0"}


def test_demo_command_line_arguments(tmp_path: Path) -> None:
    # Argument errors are reported before anything starts.
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.suppress(SystemExit):
        sim_main(["demo", "--stations", "many"])
    assert "invalid int value" in err.getvalue()


def test_demo_command_line_is_wired_to_run_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``os3p-sim demo`` hands its options to run_demo, writes --json, and exits 0 only when every station
    booted and took the new firmware with no failed operator call (the real run is the test above)."""
    seen: list[dict[str, Any]] = []
    updated = [3]

    async def fake_run_demo(**kwargs: Any) -> DemoSummary:
        seen.append(kwargs)
        return DemoSummary(stations=3, booted=3, connected=3, meter_values=10, switches=6, lights_on=3,
                           target_firmware="2.0.0", firmware_updated=updated[0], calls_failed=0,
                           station_time_start="a", station_time_end="b", elapsed_seconds=1.0,
                           db=str(kwargs["db"]))

    monkeypatch.setattr(demo_module, "run_demo", fake_run_demo)
    out = tmp_path / "demo.json"
    db = str(tmp_path / "d.db")
    args = ["demo", "--stations", "3", "--duration", "5", "--time-scale", "60", "--db", db, "--headless"]
    args += ["--json", str(out)]
    assert sim_main(args) == 0
    assert seen == [
        {"stations": 3, "duration": 5.0, "time_scale": 60.0, "db": tmp_path / "d.db", "keep_open": False}
    ]
    assert json.loads(out.read_text())["firmwareUpdated"] == 3
    updated[0] = 2
    assert sim_main(args) == 1
