"""The Central System's SQLite store: records, queries, group commit, and crash consistency (kill -9)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from os3p_trio.central import (
    BootStatus,
    EventKind,
    StationExists,
    StoreConfig,
    UnknownStation,
    open_sqlite_store,
)

T0 = 1_700_000_000.0


def sample(measurand: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"measurand": measurand, "value": value, **extra}


async def test_stations_registration_and_boot_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "cs.sqlite"
    async with open_sqlite_store(db) as store:
        record = await store.add_station("SUBS-1", "ab" * 32, T0)
        assert record.identity == "SUBS-1"
        assert record.registered_by == "operator"
        assert not record.accepted
        with pytest.raises(StationExists):
            await store.add_station("SUBS-1", None, T0)
        opened = await store.ensure_station("SUBS 2", T0 + 1, registered_by="open-registration")
        assert opened.registered_by == "open-registration"
        again = await store.ensure_station("SUBS 2", T0 + 5, registered_by="open-registration")
        assert again.registered_at == T0 + 1
        boot = {"vendor": "BrandX", "model": "SUBS-A1", "firmwareVersion": "1.1.0"}
        await store.record_boot("SUBS-1", boot, BootStatus.ACCEPTED, T0 + 2)
        await store.record_connection("SUBS-1", True, T0 + 2)
        await store.record_heartbeat("SUBS-1", T0 + 3)
        await store.set_boot_status_override("SUBS 2", BootStatus.PENDING)
        with pytest.raises(UnknownStation):
            await store.record_heartbeat("nobody", T0)
        with pytest.raises(UnknownStation):
            await store.set_boot_status_override("nobody", None)

    async with open_sqlite_store(db) as store:
        # A crash left SUBS-1 "connected": start-up clears that, acceptance stays (PROTOCOL-DECISIONS §5).
        assert await store.mark_all_disconnected(T0 + 10) == 1
        stations = await store.list_stations()
        assert [s.identity for s in stations] == ["SUBS 2", "SUBS-1"]
        subs1 = await store.get_station("SUBS-1")
        assert subs1 is not None
        assert subs1.accepted
        assert subs1.boot_status is BootStatus.ACCEPTED
        assert subs1.boot_fields == boot
        assert subs1.password_hash == "ab" * 32
        assert subs1.last_heartbeat == T0 + 3
        assert not subs1.connected
        assert subs1.connected_at == T0 + 2
        assert subs1.disconnected_at == T0 + 10
        subs2 = await store.get_station("SUBS 2")
        assert subs2 is not None
        assert subs2.boot_status_override is BootStatus.PENDING
        # A later Pending answer withdraws the remembered acceptance.
        await store.record_boot("SUBS-1", boot, BootStatus.PENDING, T0 + 20)
        subs1 = await store.get_station("SUBS-1")
        assert subs1 is not None
        assert not subs1.accepted
        assert await store.get_station("nobody") is None
        kinds = [e.kind for e in await store.events("SUBS-1")]
        assert kinds == [EventKind.BOOT, EventKind.CONNECTED, EventKind.BOOT]


async def test_meter_values_one_row_per_sample_and_queries(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "cs.sqlite") as store:
        await store.add_station("S", None, T0)
        meter_value = [
            {
                "timestamp": "2013-03-07T16:52:16Z",
                "sampledValue": [
                    sample("Current.L1", "12", unit="A"),
                    sample("Energy.Active.Import.Register", "300", unit="kWh"),
                ],
            },
            {
                "timestamp": "2013-03-07T19:52:16+00:00",
                "sampledValue": [
                    sample("Energy.Active.Import.Register", "20", unit="kWh"),
                    sample("ActivePower.L1", "40", unit="kW", location="P1Meter", context="Trigger"),
                    sample("Voltage.L1N", "n/a"),
                ],
            },
        ]
        assert await store.record_meter_values("S", meter_value, T0) == 5
        # The station resends the same MeterValues (its CALLRESULT was lost): stored once.
        assert await store.record_meter_values("S", meter_value, T0 + 1) == 0
        rows = await store.meter_values("S")
        assert len(rows) == 5
        first = rows[0]
        assert first.measurand == "Current.L1"
        assert first.timestamp == 1362675136.0
        assert first.numeric == 12.0
        # Table 3 defaults.
        assert (first.context, first.format, first.location) == ("Sample.Periodic", "Raw", None)
        energy = await store.meter_values("S", measurand="Energy.Active.Import.Register")
        assert [r.value for r in energy] == ["300", "20"]
        later = await store.meter_values("S", since=1362675136.0 + 1)
        assert {r.measurand for r in later} == {
            "Energy.Active.Import.Register",
            "ActivePower.L1",
            "Voltage.L1N",
        }
        earlier = await store.meter_values("S", until=1362675136.0 + 1)
        assert len(earlier) == 2
        assert len(await store.meter_values("S", limit=3)) == 3
        power = (await store.meter_values("S", measurand="ActivePower.L1"))[0]
        assert (power.location, power.context, power.unit) == ("P1Meter", "Trigger", "kW")
        assert (await store.meter_values("S", measurand="Voltage.L1N"))[0].numeric is None
        with pytest.raises(UnknownStation):
            await store.record_meter_values("other", meter_value, T0)
        state = await store.station_state("S")
        assert state is not None
        assert state.last_readings["Energy.Active.Import.Register"].value == "20"


async def test_events_dedup_and_effective_state(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "cs.sqlite") as store:
        await store.add_station("S", None, T0)
        on = {"contactorId": 1, "status": "On", "timestamp": "2026-11-26T16:30:00Z"}
        off = {"contactorId": 1, "status": "Off", "timestamp": "2026-11-27T07:30:00Z"}
        night = {"contactorId": 2, "status": "On", "timestamp": "2026-11-26T23:00:00Z", "unexpected": True}
        # Arrival order differs from event order (an outbox resend arriving late).
        assert await store.record_event("S", EventKind.STREETLIGHT_STATUS, off, T0)
        assert await store.record_event("S", EventKind.STREETLIGHT_STATUS, on, T0 + 1)
        assert not await store.record_event("S", EventKind.STREETLIGHT_STATUS, on, T0 + 2)  # duplicate
        assert await store.record_event("S", EventKind.STREETLIGHT_STATUS, night, T0 + 3)
        all_mode = {"mode": "LocalOverride", "timestamp": "2026-11-26T10:00:00Z"}
        one_mode = {"contactorId": 1, "mode": "RemoteOverride", "timestamp": "2026-11-26T11:00:00Z"}
        assert await store.record_event("S", EventKind.STREETLIGHT_MODE, all_mode, T0)
        assert await store.record_event("S", EventKind.STREETLIGHT_MODE, one_mode, T0)
        fault = {"status": "Faulted", "errorCode": "GroundFailure", "test": True}
        assert await store.record_event("S", EventKind.STATUS, fault, T0 + 4)
        assert await store.record_event("S", EventKind.STATUS, fault, T0 + 5)  # not a guaranteed kind: kept
        assert await store.record_event("S", EventKind.FIRMWARE_STATUS, {"status": "Downloading"}, T0 + 6)
        assert await store.record_event("S", EventKind.FIRMWARE_STATUS, {"status": "Installed"}, T0 + 7)
        assert await store.record_event(
            "S", EventKind.FILE_STATUS, {"status": "Uploaded", "requestId": "r1"}, T0
        )

        state = await store.station_state("S")
        assert state is not None
        assert state.contactors[1].status == "Off"
        assert state.contactors[2].status == "On"
        assert state.contactors[2].payload["unexpected"] is True
        assert state.modes[0].status == "LocalOverride"
        assert state.modes[1].status == "RemoteOverride"
        assert state.last_status is not None
        assert state.last_status.payload == fault
        assert state.firmware_status is not None
        assert state.firmware_status.status == "Installed"
        assert state.file_status is not None
        assert state.file_status.payload["requestId"] == "r1"
        statuses = await store.events("S", kind=EventKind.STREETLIGHT_STATUS)
        assert len(statuses) == 3
        assert len(await store.events("S", kind=EventKind.STATUS)) == 2
        assert len(await store.events("S", limit=2)) == 2
        assert await store.station_state("nobody") is None

        upload = await store.record_upload("S", "MeterValueHistory.csv", 10, "0" * 64, T0)
        assert (await store.uploads("S")) == [upload]
        await store.remove_station("S")
        with pytest.raises(UnknownStation):
            await store.remove_station("S")
        assert await store.events("S") == []


async def test_group_commit_batches_concurrent_writers_and_isolates_failures(tmp_path: Path) -> None:
    config = StoreConfig(synchronous="NORMAL", max_batch=64, max_pending=32)
    async with open_sqlite_store(tmp_path / "cs.sqlite", config) as store:
        stations = [f"S{i}" for i in range(20)]
        for identity in stations:
            await store.add_station(identity, None, T0)
        base_batches = store.batches_committed
        failures: list[BaseException] = []

        async def writer(identity: str) -> None:
            for k in range(10):
                ts = f"2026-11-26T10:00:{k:02d}Z"
                await store.record_meter_values(
                    identity, [{"timestamp": ts, "sampledValue": [sample("Frequency", "50")]}], T0
                )
            try:
                # Fails inside the batch (unknown station): rolled back alone, raised to this caller only.
                await store.record_heartbeat(identity + "-missing", T0)
            except UnknownStation as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for identity in stations:
                nursery.start_soon(writer, identity)
        assert len(failures) == len(stations)
        for identity in stations:
            assert len(await store.meter_values(identity)) == 10
        operations = 20 * 11
        batches = store.batches_committed - base_batches
        # Concurrent writers share transactions: far fewer commits than operations.
        assert batches < operations / 3


CRASH_WRITER = textwrap.dedent(
    """
    import sys, trio
    from os3p_trio.central import StoreConfig, open_sqlite_store

    async def main(path):
        async with open_sqlite_store(path, StoreConfig(synchronous=sys.argv[2])) as store:
            for w in range(8):
                await store.ensure_station(f"W{w}", 0.0, registered_by="test")
            async def writer(w):
                for k in range(100000):
                    mv = [{"timestamp": f"2026-01-01T00:00:00Z", "sampledValue": [
                        {"measurand": "Frequency", "value": str(k), "context": "Other"},
                        {"measurand": "Current.L1", "value": str(k), "location": str(k % 4)},
                    ]}]
                    mv[0]["timestamp"] = f"2026-01-01T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"
                    await store.record_meter_values(f"W{w}", mv, float(k))
                    print(w, k, flush=True)
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    nursery.start_soon(writer, w)

    trio.run(main, sys.argv[1])
    """
)


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_crash_consistency_kill_9_loses_no_acknowledged_write(tmp_path: Path, synchronous: str) -> None:
    script = tmp_path / "writer.py"
    script.write_text(CRASH_WRITER)
    db = tmp_path / "crash.sqlite"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), synchronous], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    acknowledged: list[tuple[int, int]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    try:
        while len(acknowledged) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            w, k = map(int, line.split())
            acknowledged.append((w, k))
        # Kill in the middle of the stream of batches: writes are still being produced and committed.
        os.kill(proc.pid, signal.SIGKILL)
        # Lines printed before the kill are acknowledgements too.
        acknowledged.extend(tuple(map(int, line.split())) for line in proc.stdout if line.strip())  # type: ignore[misc]
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 400, "the writer did not get going"

    # "After restart": open the file as the service would (WAL recovery), then check every acknowledged write.
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()

    async def read_back() -> list[Any]:
        async with open_sqlite_store(db) as store:
            rows = []
            async for batch in store.stream_meter_values(None):
                rows.extend(batch)
            return rows

    rows = trio.run(read_back)
    stored = {(int(r.identity[1:]), int(r.value)) for r in rows if r.measurand == "Frequency"}
    pairs = sum(1 for r in rows if r.measurand == "Current.L1")
    missing = [ack for ack in acknowledged if ack not in stored]
    assert missing == []
    # Each MeterValues was committed atomically: both samples or neither.
    assert pairs == len(stored)


async def test_fleet_summary(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "cs.sqlite") as store:
        for identity in ("A", "B", "C"):
            await store.add_station(identity, None, T0)
        await store.record_boot("A", {"firmwareVersion": "1.0.0"}, BootStatus.ACCEPTED, T0)
        await store.record_boot("B", {"firmwareVersion": "2.0.0"}, BootStatus.ACCEPTED, T0)
        await store.record_boot("C", {"firmwareVersion": "2.0.0"}, BootStatus.PENDING, T0)
        await store.record_connection("A", True, T0)
        for identity, contactor, status, ts in [
            ("A", 1, "On", "2026-11-26T16:00:00Z"),
            ("A", 1, "Off", "2026-11-27T07:00:00Z"),  # latest for A/1: Off
            ("A", 2, "On", "2026-11-26T23:00:00Z"),
            ("B", 1, "Off", "2026-11-26T15:00:00Z"),
            ("B", 1, "On", "2026-11-26T16:00:00Z"),  # latest for B/1: On
        ]:
            payload = {"contactorId": contactor, "status": status, "timestamp": ts}
            await store.record_event(identity, EventKind.STREETLIGHT_STATUS, payload, T0)
        mv = [
            {
                "timestamp": "2026-11-26T10:00:00Z",
                "sampledValue": [sample("Frequency", "50"), sample("Current.L1", "1")],
            }
        ]
        await store.record_meter_values("B", mv, T0)
        summary = await store.fleet_summary()
        assert (summary.stations, summary.connected, summary.accepted) == (3, 1, 2)
        assert summary.firmware_versions == {"1.0.0": 1, "2.0.0": 2}
        assert summary.lights_on == 2
        assert summary.meter_values == 2
        assert summary.events["StreetlightStatusNotification"] == 5
        assert summary.events["BootNotification"] == 3
        assert summary.uploads == 0


MEASURANDS = ["Voltage.L1N", "Current.L1", "Frequency", "ActivePower.Sum", "OilTemperature"]
LOCATIONS = [None, "In", "Out", "Body", "P1Meter"]
CONTEXTS = [None, "Sample.Periodic", "Trigger", "Sample.Clock"]


@st.composite
def meter_value_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        seconds = draw(st.integers(0, 86_400 * 365))
        offset = draw(st.sampled_from(["Z", "+00:00", "+01:00", "-05:30", ""]))
        stamp = datetime.fromtimestamp(1_700_000_000 + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + offset
        samples = []
        for _ in range(draw(st.integers(1, 6))):
            sample_: dict[str, Any] = {
                "measurand": draw(st.sampled_from(MEASURANDS)),
                "value": draw(st.one_of(st.text(max_size=12), st.floats(allow_nan=True).map(str))),
            }
            location = draw(st.sampled_from(LOCATIONS))
            context = draw(st.sampled_from(CONTEXTS))
            if location is not None:
                sample_["location"] = location
            if context is not None:
                sample_["context"] = context
            samples.append(sample_)
        entries.append({"timestamp": stamp, "sampledValue": samples})
    return entries


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(meter_value_lists(), min_size=1, max_size=3))
def test_meter_values_property_every_distinct_sample_stored_once(tmp_path: Path, batches: list[Any]) -> None:
    """Whatever MeterValues arrive (resends included), each distinct sample — station, measurand, instant,
    location, context — is stored exactly once, with the first value sent and the Table 3 defaults."""

    async def scenario() -> None:
        async with open_sqlite_store(
            tmp_path / f"p{uuid.uuid4().hex}.sqlite", StoreConfig(synchronous="NORMAL")
        ) as store:
            await store.add_station("S", None, T0)
            expected: dict[tuple[str, float, str, str], str] = {}
            for batch in [
                *batches,
                *batches,
            ]:  # everything twice: a station resending after a lost CALLRESULT
                await store.record_meter_values("S", batch, T0)
                for entry in batch:
                    text = entry["timestamp"]
                    instant = datetime.fromisoformat(text if text[-1] != "Z" else text[:-1] + "+00:00")
                    if instant.tzinfo is None:
                        instant = instant.replace(tzinfo=UTC)
                    for sample_ in entry["sampledValue"]:
                        key = (
                            sample_["measurand"],
                            instant.timestamp(),
                            sample_.get("location") or "",
                            sample_.get("context", "Sample.Periodic"),
                        )
                        expected.setdefault(key, sample_["value"])
            rows = await store.meter_values("S", limit=100_000)
            got = {(r.measurand, r.timestamp, r.location or "", r.context): r.value for r in rows}
            assert len(rows) == len(got)  # no duplicates
            assert got == expected
            assert all(r.format == "Raw" for r in rows)
            for r in rows:
                assert r.numeric is None or r.numeric == float(r.value)

    trio.run(scenario)
