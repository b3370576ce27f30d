"""Export of meter values and events: ``os3p-central export`` and the streamed API answers (CSV, JSON Lines),
constant memory, and one-line errors for a database that cannot be opened (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from servers import PostgresServer

from os3p_trio.central import CentralSystem, FileArea, create_api, open_sqlite_store, open_store
from os3p_trio.central._export import EVENT_COLUMNS, METER_COLUMNS, export_meter_values
from os3p_trio.central.cli import main

T0 = 1_780_000_000.0


def meter(k: int) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": f"2026-06-01T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z",
            "sampledValue": [
                {"measurand": "Voltage.L1N", "value": f"230.{k % 10}", "unit": "V"},
                {"measurand": "Current.L1", "value": str(k), "unit": "A", "location": "Outlet"},
                {"measurand": "Temperature", "value": 'n/a, "quoted"'},
            ],
        }
    ]


async def _fill(db: str | Path, stations: int = 2, samples: int = 5) -> None:
    async with open_store(db) as store:
        for s in range(stations):
            identity = f"S{s}"
            await store.add_station(identity, None, T0)
            for k in range(samples):
                await store.record_meter_values(identity, meter(k), T0 + k)
            await store.record_event(
                identity,
                _kind("StreetlightStatusNotification"),
                {"contactorId": 1, "status": "On", "timestamp": "2026-06-01T20:00:00Z"},
                T0 + 100,
            )


def _kind(name: str) -> Any:
    from os3p_trio.central import EventKind

    return EventKind(name)


def test_cli_exports_meter_values_as_csv_and_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cs.sqlite"
    trio.run(_fill, db)
    assert main(["export", "meter-values", "--db", str(db), "--station", "S1"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == METER_COLUMNS
    assert len(rows) == 1 + 5 * 3
    assert {r[0] for r in rows[1:]} == {"S1"}
    assert rows[1][:5] == ["S1", "2026-06-01T00:00:00.000Z", "Voltage.L1N", "230.0", "V"]
    # Verbatim, with the CSV quoting round-tripping commas and quotes.
    assert rows[3][3] == 'n/a, "quoted"'
    assert rows[2][7] == "Outlet"

    argv = ["export", "meter-values", "--db", str(db), "--format", "jsonl", "--since", str(T0)]
    assert main([*argv, "--until", "2026-06-01T00:00:03Z", "--measurand", "Current.L1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # All stations, oldest first (by time, then station), 3 seconds of samples.
    assert [(x["station"], x["value"]) for x in lines] == [
        ("S0", "0"),
        ("S1", "0"),
        ("S0", "1"),
        ("S1", "1"),
        ("S0", "2"),
        ("S1", "2"),
    ]
    assert lines[0]["numeric"] == 0.0
    assert lines[0]["location"] == "Outlet"


def test_cli_exports_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cs.sqlite"
    trio.run(_fill, db)
    assert main(["export", "events", "--db", str(db)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == EVENT_COLUMNS
    assert [(r[1], r[2], r[6]) for r in rows[1:]] == [
        ("S0", "StreetlightStatusNotification", "On"),
        ("S1", "StreetlightStatusNotification", "On"),
    ]
    assert json.loads(rows[1][7])["contactorId"] == 1
    assert main(["export", "events", "--db", str(db), "--station", "nobody"]) == 2
    assert "no station" in capsys.readouterr().err


def test_export_bad_input_is_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database " * 200)
    newer = tmp_path / "newer.sqlite"
    trio.run(_fill, newer)
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    cases = [
        (["export", "events", "--db", str(junk)], "junk.sqlite"),
        (["export", "events", "--db", str(newer)], "newer"),
        (["stations", "list", "--db", str(newer)], "newer"),
        (["export", "events", "--db", str(tmp_path / "missing.sqlite")], "no database"),
        (["export", "meter-values", "--db", str(newer), "--since", "yesterday"], "--since"),
    ]
    for argv, cause in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert cause in err


def test_pg_unreachable_and_no_permissions_are_one_line_in_a_subprocess(
    pg_server: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    role = "export_reader"
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(pg_server.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            f"CREATE ROLE {role} LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        ],
        check=True,
        capture_output=True,
    )
    cases = [
        "postgresql://postgres@127.0.0.1:1/nothing",  # nothing listens on port 1
        f"postgresql://{role}@127.0.0.1:{pg_server.port}/{database}",  # may not create the schema
        "postgresql://postgres@127.0.0.1:notaport/x",  # a wrong URL
    ]
    for url in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "os3p_trio.central.cli", "stations", "list", "--db", url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={"PYTHONPATH": str(Path(__file__).parent.parent), "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 2, (url, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("os3p-central: ")


def test_cli_export_from_postgresql(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    trio.run(_fill, pg_url)
    assert main(["export", "meter-values", "--db", pg_url, "--station", "S0", "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 15
    assert lines[2]["value"] == 'n/a, "quoted"'


async def test_api_streams_csv_and_jsonl(tmp_path: Path) -> None:
    db = tmp_path / "cs.sqlite"
    await _fill(db, stations=1, samples=4)
    async with open_sqlite_store(db) as store:
        app = create_api(CentralSystem(store), FileArea(tmp_path / "fw", tmp_path / "up"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/api/stations/S0/meter-values", params={"format": "csv"})
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
            assert "attachment" in response.headers["content-disposition"]
            rows = list(csv.reader(io.StringIO(response.text)))
            assert tuple(rows[0]) == METER_COLUMNS
            assert len(rows) == 1 + 4 * 3
            response = await client.get(
                "/api/stations/S0/meter-values",
                params={"format": "jsonl", "measurand": "Current.L1", "since": "2026-06-01T00:00:02Z"},
            )
            assert [json.loads(x)["value"] for x in response.text.splitlines()] == ["2", "3"]
            response = await client.get("/api/stations/S0/events", params={"format": "jsonl"})
            events = [json.loads(x) for x in response.text.splitlines()]
            assert [e["status"] for e in events] == ["On"]
            response = await client.get("/api/stations/S0/events", params={"format": "csv"})
            assert tuple(next(csv.reader(io.StringIO(response.text)))) == EVENT_COLUMNS
            assert (await client.get("/api/stations/S0/events", params={"format": "xml"})).status_code == 400
            assert (
                await client.get("/api/stations/nobody/meter-values", params={"format": "csv"})
            ).status_code == 404
            # Without format: the JSON list answer, as before.
            assert len((await client.get("/api/stations/S0/meter-values")).json()) == 12


async def _peak_export(db: Path) -> tuple[int, int]:
    async with open_sqlite_store(db) as store:
        tracemalloc.start()
        try:
            chunks = rows = 0
            async for chunk in export_meter_values(store, None, "csv", batch=500):
                chunks += 1
                rows += chunk.count("\r\n")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return rows, peak


async def _bulk(db: Path, samples: int) -> None:
    # Written straight through the store (one write per 100 samples) so the test stays fast.
    async with open_sqlite_store(db) as store:
        await store.add_station("S", None, T0)
        for start in range(0, samples, 100):
            await store.record_meter_values("S", [m for k in range(start, start + 100) for m in meter(k)], T0)


async def test_export_memory_does_not_grow_with_the_row_count(tmp_path: Path) -> None:
    small, large = tmp_path / "small.sqlite", tmp_path / "large.sqlite"
    await _bulk(small, 1_000)
    await _bulk(large, 10_000)
    small_rows, small_peak = await _peak_export(small)
    large_rows, large_peak = await _peak_export(large)
    assert (small_rows, large_rows) == (1 + 3_000, 1 + 30_000)
    # Ten times the rows, about the same peak: one page (500 samples) at a time, never the whole export.
    assert large_peak < small_peak * 1.5 + 64 * 1024, (small_peak, large_peak)
