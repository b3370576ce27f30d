"""The store contract: every :class:`~os3p_trio.central.Store` behaviour, run on SQLite and on PostgreSQL.

Each test gets a ``db`` -- a SQLite path in ``tmp_path`` or a fresh PostgreSQL database URL on the session's
throwaway server -- and opens it with :func:`~os3p_trio.central.open_store`, the one entry point the CLI uses.
(Moved here from ``tests/test_central_store.py`` and parametrized; that file keeps the SQLite-only tests.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import PostgresServer, free_port

from os3p_trio.central import (
    BootStatus,
    EventKind,
    PostgresConfig,
    RetentionPolicy,
    RetentionReport,
    SchemaTooNew,
    StationExists,
    StoreConfig,
    StoreUnavailable,
    UnknownStation,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "cs.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url

T0 = 1_700_000_000.0


def sample(measurand: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"measurand": measurand, "value": value, **extra}


async def test_stations_registration_and_boot_survive_reopen(db: str) -> None:
    async with open_store(db) as store:
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

    async with open_store(db) as store:
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


async def test_meter_values_one_row_per_sample_and_queries(db: str) -> None:
    async with open_store(db) as store:
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


async def test_events_dedup_and_effective_state(db: str) -> None:
    async with open_store(db) as store:
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


async def test_fleet_summary(db: str) -> None:
    async with open_store(db) as store:
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


def _configs() -> dict[str, Any]:
    return {
        "sqlite_config": StoreConfig(synchronous="NORMAL", max_batch=64, max_pending=32),
        "postgres_config": PostgresConfig(max_batch=64, max_pending=32),
    }


def _needs(store: Any, method: str) -> None:
    # The SQLite half of the extended interface lands with branch ``export``; until it is merged these
    # contract tests mark the gap on SQLite instead of failing the run (strict: they fail once it works).
    if not hasattr(store, method):
        pytest.xfail(f"{type(store).__name__} has no {method} yet (SQLite part of issue 13, branch export)")


async def test_group_commit_batches_concurrent_writers_and_isolates_failures(db: str) -> None:
    async with open_store(db, **_configs()) as store:
        stations = [f"S{i}" for i in range(20)]
        for identity in stations:
            await store.add_station(identity, None, T0)
        base_batches = store.batches_committed  # type: ignore[attr-defined]
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
        batches = store.batches_committed - base_batches  # type: ignore[attr-defined]
        # Concurrent writers share transactions: far fewer commits than operations.
        assert batches < operations / 3


async def test_a_failing_operation_is_rolled_back_alone_and_the_batch_commits(db: str) -> None:
    async with open_store(db, **_configs()) as store:
        await store.add_station("S", None, T0)
        results: dict[str, Any] = {}

        async def ok(k: int) -> None:
            ts = f"2026-11-26T10:00:{k:02d}Z"
            results[f"ok{k}"] = await store.record_meter_values(
                "S", [{"timestamp": ts, "sampledValue": [sample("Frequency", str(k))]}], T0
            )

        async def bad() -> None:
            try:
                # A text SQL cannot hold (NUL): the database refuses it; only this caller sees the error.
                await store.add_station("bad\x00name", None, T0)
            except Exception as exc:
                results["bad"] = exc

        async with trio.open_nursery() as nursery:
            for k in range(5):
                nursery.start_soon(ok, k)
            nursery.start_soon(bad)
            for k in range(5, 10):
                nursery.start_soon(ok, k)
        assert [results[f"ok{k}"] for k in range(10)] == [1] * 10
        assert len(await store.meter_values("S")) == 10
        if "bad" not in results:  # SQLite stores a NUL in TEXT: then it must be there
            assert await store.get_station("bad\x00name") is not None


async def test_fencing_an_older_epoch_never_overwrites_a_newer_connect(db: str) -> None:
    async with open_store(db) as store:
        _needs(store, "claim_connection")
        await store.add_station("S", None, T0)
        owner = await store.connection_owner("S")
        assert owner is not None
        assert (owner.node_id, owner.connected) == (None, False)
        first = await store.claim_connection("S", "node-a", T0 + 1)
        second = await store.claim_connection("S", "node-b", T0 + 2)
        assert second == first + 1
        # The superseded connection on node-a closes late: refused, node-b stays the connected owner.
        assert not await store.release_connection("S", first, T0 + 3)
        owner = await store.connection_owner("S")
        assert owner is not None
        assert (owner.node_id, owner.epoch, owner.connected) == ("node-b", second, True)
        station = await store.get_station("S")
        assert station is not None
        assert station.connected
        assert station.connected_at == T0 + 2
        # node-b dies: its stations are disconnected, epochs kept; a late release of the dead epoch is still
        # the newest and is accepted (idempotent disconnect).
        await store.add_station("T", None, T0)
        await store.claim_connection("T", "node-a", T0)
        assert await store.mark_node_disconnected("node-b", T0 + 4) == 1
        owner = await store.connection_owner("S")
        assert owner is not None
        assert (owner.epoch, owner.connected) == (second, False)
        assert (await store.connection_owner("T")).connected  # type: ignore[union-attr]
        third = await store.claim_connection("S", "node-a", T0 + 5)
        assert third == second + 1
        assert await store.release_connection("S", third, T0 + 6)
        assert not (await store.get_station("S")).connected  # type: ignore[union-attr]
        assert await store.connection_owner("nobody") is None
        with pytest.raises(UnknownStation):
            await store.claim_connection("nobody", "node-a", T0)
        kinds = [e.kind for e in await store.events("S")]
        assert kinds.count(EventKind.CONNECTED) == 3
        assert kinds.count(EventKind.DISCONNECTED) == 1


async def test_concurrent_claims_get_distinct_increasing_epochs(db: str) -> None:
    async with open_store(db) as store:
        _needs(store, "claim_connection")
        await store.add_station("S", None, T0)
        epochs: list[int] = []

        async def claim(node: str) -> None:
            epochs.append(await store.claim_connection("S", node, T0))

        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(claim, f"node-{n}")
        assert sorted(epochs) == list(range(1, 11))
        owner = await store.connection_owner("S")
        assert owner is not None
        assert owner.epoch == 10


def _mv(ts: str, *values: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"timestamp": ts, "sampledValue": [sample(m, v) for m, v in values]}]


async def test_stream_meter_values_and_events_oldest_first_in_bounded_batches(db: str) -> None:
    async with open_store(db) as store:
        _needs(store, "stream_meter_values")
        for identity in ("A", "B"):
            await store.add_station(identity, None, T0)
        for k in range(25):
            for identity in ("B", "A"):
                stamp = datetime.fromtimestamp(T0 + 60 * k, UTC).isoformat()
                await store.record_meter_values(
                    identity, _mv(stamp, ("Frequency", f"50.{k:02d}"), ("Voltage.L1N", "1e3")), T0 + k
                )
                await store.record_event(
                    identity, EventKind.STATUS, {"status": "Available", "n": k}, T0 + k
                )
        pages = [page async for page in store.stream_meter_values(None, batch=7)]
        assert all(1 <= len(page) <= 7 for page in pages)
        flat = [r for page in pages for r in page]
        assert len(flat) == 100
        assert [r.timestamp for r in flat] == sorted(r.timestamp for r in flat)
        assert [(r.identity) for r in flat[:4]] == ["A", "A", "B", "B"]
        assert {r.value for r in flat if r.measurand == "Voltage.L1N"} == {"1e3"}
        one = [
            r
            async for page in store.stream_meter_values(
                "A", measurand="Frequency", since=T0 + 60, until=T0 + 60 * 5, batch=2
            )
            for r in page
        ]
        assert [r.value for r in one] == ["50.01", "50.02", "50.03", "50.04"]
        events = [e async for page in store.stream_events(None, batch=4) for e in page]
        assert len(events) == 50
        assert [e.received_at for e in events] == sorted(e.received_at for e in events)
        only_b = [e async for page in store.stream_events("B", since=T0 + 20) for e in page]
        assert [e.payload["n"] for e in only_b] == [20, 21, 22, 23, 24]


async def test_latest_readings_all_stations_last_value(db: str) -> None:
    async with open_store(db) as store:
        _needs(store, "latest_readings")
        for identity in ("A", "B", "C"):
            await store.add_station(identity, None, T0)
        await store.record_meter_values("A", _mv("2026-11-26T10:00:00Z", ("Frequency", "50.1")), T0)
        await store.record_meter_values("A", _mv("2026-11-26T10:15:00Z", ("Frequency", "50.2")), T0)
        # An old reading arriving late (outbox resend) does not replace the newer one.
        await store.record_meter_values("A", _mv("2026-11-26T09:00:00Z", ("Frequency", "49.0")), T0)
        await store.record_meter_values(
            "B", _mv("2026-11-26T10:00:00Z", ("Voltage.L1N", "230"), ("Frequency", "NaN")), T0
        )
        await store.record_meter_values("C", _mv("2026-11-26T10:00:00Z", ("Voltage.L1N", "231")), T0)
        latest = await store.latest_readings("Frequency")
        assert [(r.identity, r.value) for r in latest] == [("A", "50.2"), ("B", "NaN")]
        assert [r.identity for r in await store.latest_readings("Frequency", after="A")] == ["B"]
        assert [r.identity for r in await store.latest_readings("Voltage.L1N", limit=1)] == ["B"]
        state = await store.station_state("B")
        assert state is not None
        assert state.last_readings["Voltage.L1N"].value == "230"


async def test_retention_removes_old_meter_values_and_events_but_keeps_effective_state(db: str) -> None:
    day = 86_400.0
    now = T0 + 100 * day
    async with open_store(db) as probe:
        _needs(probe, "apply_retention")
    async with open_store(db, retention=RetentionPolicy(meter_days=30, events_days=30)) as store:
        await store.add_station("S", None, T0)
        old = datetime.fromtimestamp(now - 40 * day, UTC).isoformat()
        new = datetime.fromtimestamp(now - 5 * day, UTC).isoformat()
        await store.record_meter_values("S", _mv(old, ("Frequency", "49"), ("Current.L1", "x")), now)
        await store.record_meter_values("S", _mv(new, ("Frequency", "50")), now)
        for k, status in enumerate(["On", "Off"]):
            stamp = datetime.fromtimestamp(now - (45 - k) * day, UTC).isoformat()
            payload = {"contactorId": 1, "status": status, "timestamp": stamp}
            await store.record_event("S", EventKind.STREETLIGHT_STATUS, payload, now - (45 - k) * day)
        await store.record_event("S", EventKind.STATUS, {"status": "Available"}, now - day)
        report = await store.apply_retention(now)
        assert report.meter_values == 2
        assert report.events == 1  # the older switch; the latest per contactor stays whatever its age
        assert [r.value for r in await store.meter_values("S")] == ["50"]
        state = await store.station_state("S")
        assert state is not None
        assert state.contactors[1].status == "Off"
        assert (await store.apply_retention(now)) == RetentionReport(0, 0)


CRASH_WRITER = textwrap.dedent(
    """
    import sys, trio
    from os3p_trio.central import StoreConfig, open_store

    async def main(db):
        async with open_store(db, sqlite_config=StoreConfig(synchronous="FULL")) as store:
            for w in range(8):
                await store.ensure_station(f"W{w}", 0.0, registered_by="test")
            async def writer(w):
                for k in range(100000):
                    stamp = f"2026-01-01T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"
                    mv = [{"timestamp": stamp, "sampledValue": [
                        {"measurand": "Frequency", "value": str(k), "context": "Other"},
                        {"measurand": "Current.L1", "value": str(k), "location": str(k % 4)},
                    ]}]
                    await store.record_meter_values(f"W{w}", mv, float(k))
                    print(w, k, flush=True)
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    nursery.start_soon(writer, w)

    trio.run(main, sys.argv[1])
    """
)


def _complete_lines(stream: Iterable[str]) -> list[tuple[int, int]]:
    """The acknowledgements a killed writer got out whole.  SIGKILL can land between the bytes of its last
    ``print``, so a final line without its newline is not an acknowledgement (its write may not have
    returned)."""
    out = []
    for line in stream:
        if line.endswith("\n") and len(fields := line.split()) == 2:
            out.append((int(fields[0]), int(fields[1])))
    return out


def _run_writer_until(script: Path, db: str, wanted: int, *, kill: bool) -> list[tuple[int, int]]:
    proc = subprocess.Popen(
        [sys.executable, str(script), db], stdout=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    acknowledged: list[tuple[int, int]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    try:
        while len(acknowledged) < wanted and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            w, k = map(int, line.split())
            acknowledged.append((w, k))
        if kill:
            # Kill in the middle of the stream of batches: writes are still being produced and committed.
            os.kill(proc.pid, signal.SIGKILL)
            acknowledged.extend(_complete_lines(proc.stdout))
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    if kill:
        assert proc.returncode == -signal.SIGKILL
    return acknowledged


async def _stored(db: str, stations: range) -> tuple[set[tuple[int, int]], int]:
    async with open_store(db) as store:
        frequency: set[tuple[int, int]] = set()
        currents = 0
        for w in stations:
            for r in await store.meter_values(f"W{w}", limit=10_000_000):
                if r.measurand == "Frequency":
                    frequency.add((w, int(r.value)))
                else:
                    currents += 1
        return frequency, currents


def test_crash_consistency_kill_9_loses_no_acknowledged_write(tmp_path: Path, db: str) -> None:
    """kill -9 of the writing process: every write whose ``await`` returned (its CALLRESULT would have gone
    out) is in the database afterwards, and each MeterValues is atomic (both samples or neither)."""
    script = tmp_path / "writer.py"
    script.write_text(CRASH_WRITER)
    acknowledged = _run_writer_until(script, db, 400, kill=True)
    assert len(acknowledged) >= 400, "the writer did not get going"
    stored, pairs = trio.run(_stored, db, range(8))
    assert [ack for ack in acknowledged if ack not in stored] == []
    assert pairs == len(stored)


def test_two_processes_write_one_postgresql_database_at_once(tmp_path: Path, pg_url: str) -> None:
    """Two Central System processes on one database: both register the same stations and intern the same
    profiles concurrently (ON CONFLICT), and every acknowledged write of each is stored."""
    script = tmp_path / "writer.py"
    script.write_text(CRASH_WRITER)
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen(
            [sys.executable, str(script), pg_url], stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        ))
    acknowledged: list[tuple[int, int]] = []
    try:
        deadline = time.monotonic() + 30
        for proc in procs:
            assert proc.stdout is not None
            got = 0
            while got < 300 and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                acknowledged.append(tuple(map(int, line.split())))  # type: ignore[arg-type]
                got += 1
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.stdout is not None
            acknowledged.extend(_complete_lines(proc.stdout))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    for proc in procs:
        assert proc.returncode == -signal.SIGKILL, "a writer process failed"
    assert len(acknowledged) >= 600
    stored, _ = trio.run(_stored, pg_url, range(8))
    assert [ack for ack in acknowledged if ack not in stored] == []


# --- bad input: one-line StoreUnavailable naming the cause -------------------------------------------------


async def test_postgres_unreachable_server_wrong_url_and_missing_database(pg_server: PostgresServer) -> None:
    port = free_port()
    cases = [
        (f"postgresql://postgres@127.0.0.1:{port}/x", "Connection refused"),
        (f"postgresql://postgres@127.0.0.1:{pg_server.port}/no_such_db", "does not exist"),
        ("postgresql://postgres@127.0.0.1:notaport/x", "invalid"),
        (f"postgresql://nobody:secret@127.0.0.1:{pg_server.port}/postgres", "nobody"),
    ]
    for url, cause in cases:
        with pytest.raises(StoreUnavailable) as info:
            async with open_store(url):
                pass
        message = str(info.value)
        assert "\n" not in message
        assert cause.lower() in message.lower(), message
        assert "secret" not in message


def _psql(server: PostgresServer, database: str, sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", database,
         "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True, capture_output=True,
    )


async def test_postgres_role_without_create_privilege_and_half_migration(
    pg_server: PostgresServer, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    role = f"r_{uuid.uuid4().hex[:8]}"
    _psql(pg_server, database, f"CREATE ROLE {role} LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    url = f"postgresql://{role}@127.0.0.1:{pg_server.port}/{database}"
    with pytest.raises(StoreUnavailable, match="permission") as info:
        async with open_store(url):
            pass
    assert "\n" not in str(info.value)
    # Nothing half-made: the superuser sees no table of ours (the migration is one transaction).
    async with open_store(pg_url) as store:
        assert await store.list_stations() == []


async def test_postgres_schema_newer_than_the_code_is_refused(pg_server: PostgresServer, pg_url: str) -> None:
    async with open_store(pg_url) as store:
        await store.add_station("S", None, T0)
    database = pg_url.rsplit("/", 1)[1]
    _psql(pg_server, database, "UPDATE os3p_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(SchemaTooNew, match="999") as info:
        async with open_store(pg_url):
            pass
    assert "\n" not in str(info.value)


async def test_postgres_failed_migration_leaves_the_database_untouched(
    pg_server: PostgresServer, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    # A table in the way of the migration: it fails half-way through its DDL.
    _psql(pg_server, database, "CREATE TABLE events (x int)")
    with pytest.raises(StoreUnavailable, match="already exists") as info:
        async with open_store(pg_url):
            pass
    assert "\n" not in str(info.value)
    _psql(pg_server, database, "DROP TABLE events")
    async with open_store(pg_url) as store:  # nothing was left behind: the migration runs cleanly now
        assert await store.list_stations() == []


MEASURANDS = ["Voltage.L1N", "Current.L1", "Frequency", "ActivePower.Sum", "OilTemperature"]
LOCATIONS = [None, "In", "Out", "Body", "P1Meter"]
CONTEXTS = [None, "Sample.Periodic", "Trigger", "Sample.Clock"]


@st.composite
def meter_value_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """MeterValues whose entries have distinct instants and whose samples have distinct (measurand,
    location, context): the shapes on which a per-sample and a per-meterValue idempotency key agree."""
    entries = []
    seconds_list = draw(st.lists(st.integers(0, 86_400 * 365), max_size=4, unique=True))
    for seconds in seconds_list:
        offset = draw(st.sampled_from(["Z", "+00:00", "+01:00", "-05:30", ""]))
        stamp = datetime.fromtimestamp(1_700_000_000 + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + offset
        keys = draw(st.lists(
            st.tuples(st.sampled_from(MEASURANDS), st.sampled_from(LOCATIONS), st.sampled_from(CONTEXTS)),
            min_size=1, max_size=6, unique_by=lambda t: (t[0], t[1] or "", t[2] or "Sample.Periodic"),
        ))
        samples = []
        for measurand, location, context in keys:
            sample_: dict[str, Any] = {
                "measurand": measurand,
                "value": draw(st.one_of(st.text(max_size=12), st.floats(allow_nan=True).map(str))),
            }
            if location is not None:
                sample_["location"] = location
            if context is not None:
                sample_["context"] = context
            samples.append(sample_)
        entries.append({"timestamp": stamp, "sampledValue": samples})
    return entries


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=meter_value_lists())
def test_meter_values_property_every_sample_stored_once_verbatim(db: str, batch: list[Any]) -> None:
    """Whatever a MeterValues holds, every value comes back exactly as sent (text, NaN, exponents...), with
    the Table 3 defaults, and a resend of it (a lost CALLRESULT) is stored once."""
    identity = f"S{uuid.uuid4().hex}"

    async def scenario() -> None:
        async with open_store(db, **_configs()) as store:
            await store.add_station(identity, None, T0)
            expected: dict[tuple[str, float, str, str], str] = {}
            for entry in batch:
                text = entry["timestamp"]
                instant = datetime.fromisoformat(text if text[-1] != "Z" else text[:-1] + "+00:00")
                if instant.tzinfo is None:
                    instant = instant.replace(tzinfo=UTC)
                for sample_ in entry["sampledValue"]:
                    key = (sample_["measurand"], instant.timestamp(), sample_.get("location") or "",
                           sample_.get("context", "Sample.Periodic"))
                    expected[key] = sample_["value"]
            assert await store.record_meter_values(identity, batch, T0) == len(expected)
            assert await store.record_meter_values(identity, batch, T0 + 1) == 0
            rows = await store.meter_values(identity, limit=100_000)
            got = {(r.measurand, r.timestamp, r.location or "", r.context): r.value for r in rows}
            assert len(rows) == len(got)  # no duplicates
            assert got == expected
            assert all(r.format == "Raw" and r.received_at == T0 for r in rows)
            for r in rows:
                assert r.numeric is None or r.numeric == float(r.value)

    trio.run(scenario)
