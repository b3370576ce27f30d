"""Benchmark of the Central System's SQLite store: group commit, the meter layout, and retention stalls.

Three parts, each on fresh SQLite files in a temporary directory:

1. ``group commit`` -- the real store (:func:`os3p_trio.central.open_sqlite_store`): ``--writers`` concurrent
   writers (one per simulated connection) awaiting ``record_meter_values`` (commit before answer), against
   ``in-loop``: one transaction per MeterValues committed on the trio thread.  Prints MeterValues/s, values/s,
   the mean batch and the worst event-loop stall (a ticker task asking to sleep 1 ms).
2. ``layout`` -- the narrow layout of schema version 1 (one row per sampled value, unique index) against the
   wide layout of the store (one row per meterValue, packed values): values/s with commit-before-answer,
   bytes per value on disk (file size after checkpoint, and the meter tables' pages by ``dbstat``), the time
   of "one station, one measurand, one day" and of "all stations, last value".  ``--stations`` stations each
   send ``--days`` days of 15-minute MeterValues of 30 values.
3. ``retention`` -- a backlog of ``--backlog`` old samples deleted by ``apply_retention`` while writers keep
   writing: the worst event-loop stall, the worst write latency and the time it took.

Usage: ``python benchmarks/central_store_bench.py [--quick] [--part all|commit|layout|retention]``
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from bench_messages import METER_PAYLOAD

from os3p_trio.central import RetentionPolicy, StoreConfig, open_sqlite_store

# The narrow layout of schema version 1, the peer of part 2 (one row per sampled value).
_NARROW = """
CREATE TABLE meter_values (
    id INTEGER PRIMARY KEY, identity TEXT NOT NULL, ts REAL NOT NULL, measurand TEXT NOT NULL,
    value TEXT NOT NULL, numeric REAL, unit TEXT, context TEXT NOT NULL, format TEXT NOT NULL, location TEXT,
    received_at REAL NOT NULL
);
CREATE UNIQUE INDEX meter_values_key ON meter_values (identity, measurand, ts, ifnull(location, ''), context);
"""
_NARROW_INSERT = (
    "INSERT OR IGNORE INTO meter_values (identity, ts, measurand, value, numeric, unit, context, format, "
    "location, received_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
DAY = 86400.0
T0 = 1_780_000_000.0 - 1_780_000_000.0 % DAY


def meter_value(k: int, samples: int) -> list[dict[str, Any]]:
    ts = f"2026-11-26T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"
    return [
        {
            "timestamp": ts,
            "sampledValue": [
                {"value": str(k + i), "measurand": f"Measurand{i}", "unit": "V"} for i in range(samples)
            ],
        }
    ]


def realistic(station: int, k: int) -> list[dict[str, Any]]:
    """The benchmark MeterValues of 30 (bench_messages), at the k-th quarter hour, values varying."""
    entry = METER_PAYLOAD["meterValue"][0]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + k * 900))
    sampled = []
    for i, item in enumerate(entry["sampledValue"]):
        value = item["value"]
        if "." in value:
            whole, fraction = value.split(".")
            value = f"{int(whole) + (station + k + i) % 7}.{fraction}"
        elif value.isdigit():
            value = str(int(value) + k * 13 + station)
        sampled.append({**item, "value": value})
    return [{"timestamp": stamp, "sampledValue": sampled}]


class Ticker:
    """Measures the longest gap between wake-ups of a task that asks to sleep 1 ms: the loop's worst stall."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await trio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now


# --- 1. group commit --------------------------------------------------------------------------------------


def _narrow_rows(identity: str, meter: list[dict[str, Any]], ts: float) -> list[tuple[Any, ...]]:
    return [
        (
            identity,
            ts,
            s["measurand"],
            s["value"],
            None,
            s.get("unit"),
            s.get("context", "Sample.Periodic"),
            s.get("format", "Raw"),
            s.get("location"),
            0.0,
        )
        for mv in meter
        for s in mv["sampledValue"]
    ]


async def in_loop(
    path: Path, synchronous: str, writers: int, messages: int, samples: int
) -> dict[str, float]:
    """The narrow SQL, one transaction per MeterValues, committed on the trio thread."""
    ticker = Ticker()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.executescript(_NARROW)

    async def writer(w: int) -> None:
        for k in range(messages):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_NARROW_INSERT, _narrow_rows(f"S{w}", meter_value(k, samples), float(k)))
            conn.execute("COMMIT")
            await trio.sleep(0)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker.run)
        async with trio.open_nursery() as inner:
            for w in range(writers):
                inner.start_soon(writer, w)
        nursery.cancel_scope.cancel()
    elapsed = time.perf_counter() - start
    conn.close()
    total = writers * messages
    return {
        "msg/s": total / elapsed,
        "samples/s": total * samples / elapsed,
        "batch": 1.0,
        "stall ms": ticker.worst * 1000,
    }


async def with_store(
    path: Path, synchronous: str, writers: int, messages: int, samples: int
) -> dict[str, float]:
    ticker = Ticker()
    async with open_sqlite_store(path, StoreConfig(synchronous=synchronous)) as store:
        for w in range(writers):
            await store.ensure_station(f"S{w}", 0.0, registered_by="bench")
        base_batches, base_ops = store.batches_committed, store.operations_committed

        async def writer(w: int) -> None:
            for k in range(messages):
                await store.record_meter_values(f"S{w}", meter_value(k, samples), 0.0)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            async with trio.open_nursery() as inner:
                for w in range(writers):
                    inner.start_soon(writer, w)
            nursery.cancel_scope.cancel()
        elapsed = time.perf_counter() - start
        batches = store.batches_committed - base_batches
        ops = store.operations_committed - base_ops
    total = writers * messages
    return {
        "msg/s": total / elapsed,
        "samples/s": total * samples / elapsed,
        "batch": ops / max(1, batches),
        "stall ms": ticker.worst * 1000,
    }


async def part_commit(tmp: Path, args: argparse.Namespace) -> None:
    print(f"\n1. group commit: {args.writers} writers x {args.messages} MeterValues x {args.samples} values")
    print(
        f"{'mode':<10} {'synchronous':<12} {'MeterValues/s':>14} {'values/s':>10} {'mean batch':>11} "
        f"{'worst stall':>12}"
    )
    for synchronous in ("FULL", "NORMAL"):
        for name, fn in (("in-loop", in_loop), ("store", with_store)):
            r = await fn(
                tmp / f"{name}-{synchronous}.sqlite", synchronous, args.writers, args.messages, args.samples
            )
            print(
                f"{name:<10} {synchronous:<12} {r['msg/s']:>14,.0f} {r['samples/s']:>10,.0f} "
                f"{r['batch']:>11.1f} {r['stall ms']:>9.1f} ms"
            )


# --- 2. layout --------------------------------------------------------------------------------------------


def _disk(path: Path, tables: tuple[str, ...]) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    marks = ",".join("?" * len(tables))
    names = [
        n for (n,) in conn.execute(f"SELECT name FROM sqlite_master WHERE tbl_name IN ({marks})", tables)
    ]
    pages = conn.execute(
        f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({','.join('?' * len(names))})", names
    ).fetchone()[0]
    conn.close()
    return os.path.getsize(path), int(pages or 0)


async def _timed(fn: Callable[[], Awaitable[Any]], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - start)
    return best


async def layout_wide(path: Path, stations: int, days: int, writers: int) -> dict[str, float]:
    per_day = 96
    async with open_sqlite_store(path) as store:
        for s in range(stations):
            await store.ensure_station(f"S{s:06d}", 0.0, registered_by="bench")
        queue = [(s, k) for k in range(per_day * days) for s in range(stations)]
        values = 0
        start = time.perf_counter()

        async def writer(w: int) -> None:
            nonlocal values
            for s, k in queue[w::writers]:
                # (not ``values += await ...``: that reads ``values`` before the await and loses updates)
                written = await store.record_meter_values(f"S{s:06d}", realistic(s, k), T0 + k * 900)
                values += written

        async with trio.open_nursery() as nursery:
            for w in range(writers):
                nursery.start_soon(writer, w)
        elapsed = time.perf_counter() - start
        day = T0 + (days - 1) * DAY
        one = await _timed(
            lambda: store.meter_values(
                "S000001", measurand="Voltage.L1N", since=day, until=day + DAY, limit=100_000
            )
        )
        assert (
            len(
                await store.meter_values(
                    "S000001", measurand="Voltage.L1N", since=day, until=day + DAY, limit=100_000
                )
            )
            >= per_day
        )

        async def fleet() -> None:
            after = None
            while True:
                page = await store.latest_readings("Voltage.L1N", after=after, limit=1000)
                if not page:
                    return
                after = page[-1].identity

        last = await _timed(fleet)
    size, pages = _disk(path, ("meter_samples", "meter_extras", "meter_latest", "meter_profiles"))
    return {
        "values/s": values / elapsed,
        "values": values,
        "file B/value": size / values,
        "meter B/value": pages / values,
        "one day ms": one * 1000,
        "last value ms": last * 1000,
    }


async def layout_narrow(path: Path, stations: int, days: int, writers: int) -> dict[str, float]:
    """Schema 1's layout with the same group commit (one transaction of all queued MeterValues, in a worker
    thread), so only the layout differs."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_NARROW)
    per_day = 96
    pending: list[tuple[list[tuple[Any, ...]], trio.Event]] = []
    wake = trio.Event()
    values = 0

    def commit(batch: list[list[tuple[Any, ...]]]) -> int:
        conn.execute("BEGIN IMMEDIATE")
        before = conn.total_changes
        for rows in batch:
            conn.executemany(_NARROW_INSERT, rows)
        written = conn.total_changes - before
        conn.execute("COMMIT")
        return written

    async def committer() -> None:
        nonlocal wake, values
        while True:
            await wake.wait()
            wake = trio.Event()
            batch, pending[:] = list(pending), []
            values += await trio.to_thread.run_sync(commit, [rows for rows, _ in batch])
            for _, done in batch:
                done.set()

    queue = [(s, k) for k in range(per_day * days) for s in range(stations)]

    async def writer(w: int) -> None:
        for s, k in queue[w::writers]:
            done = trio.Event()
            pending.append((_narrow_rows(f"S{s:06d}", realistic(s, k), T0 + k * 900), done))
            wake.set()
            await done.wait()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer)
        async with trio.open_nursery() as inner:
            for w in range(writers):
                inner.start_soon(writer, w)
        nursery.cancel_scope.cancel()
    elapsed = time.perf_counter() - start
    day = T0 + (days - 1) * DAY

    async def one_day() -> None:
        conn.execute(
            "SELECT * FROM meter_values WHERE identity = ? AND measurand = ? AND ts >= ? AND ts < ? "
            "ORDER BY ts, id",
            ("S000001", "Voltage.L1N", day, day + DAY),
        ).fetchall()

    async def fleet() -> None:
        # Schema 1's way: per station, the newest row of the measurand by the unique index.
        for (identity,) in conn.execute("SELECT DISTINCT identity FROM meter_values").fetchall():
            conn.execute(
                "SELECT * FROM meter_values WHERE identity = ? AND measurand = ? "
                "ORDER BY ts DESC, id DESC LIMIT 1",
                (identity, "Voltage.L1N"),
            ).fetchone()

    one = await _timed(one_day)
    last = await _timed(fleet)
    conn.close()
    size, pages = _disk(path, ("meter_values",))
    return {
        "values/s": values / elapsed,
        "values": values,
        "file B/value": size / values,
        "meter B/value": pages / values,
        "one day ms": one * 1000,
        "last value ms": last * 1000,
    }


async def part_layout(tmp: Path, args: argparse.Namespace) -> None:
    print(
        f"\n2. layout: {args.stations} stations x {args.days} days x 96 MeterValues of 30 values, "
        f"{args.writers} writers, synchronous=FULL, commit before answer"
    )
    print(
        f"{'layout':<8} {'values':>10} {'values/s':>10} {'file B/value':>13} {'meter B/value':>14} "
        f"{'1 station 1 day':>16} {'all stations last':>18}"
    )
    for name, fn in (("narrow", layout_narrow), ("wide", layout_wide)):
        r = await fn(tmp / f"layout-{name}.sqlite", args.stations, args.days, args.writers)
        print(
            f"{name:<8} {r['values']:>10,.0f} {r['values/s']:>10,.0f} {r['file B/value']:>13.1f} "
            f"{r['meter B/value']:>14.1f} {r['one day ms']:>13.2f} ms {r['last value ms']:>15.1f} ms"
        )


# --- 3. retention -----------------------------------------------------------------------------------------


async def part_retention(tmp: Path, args: argparse.Namespace) -> None:
    path = tmp / "retention.sqlite"
    stations = 100
    print(
        f"\n3. retention: a backlog of {args.backlog:,} old MeterValues of 30 deleted while {stations} "
        "stations keep writing"
    )
    async with open_sqlite_store(path) as store:
        for s in range(stations):
            await store.ensure_station(f"S{s:06d}", 0.0, registered_by="bench")
        k = 0
        while k * stations < args.backlog:
            for s in range(stations):
                await store.record_meter_values(
                    f"S{s:06d}", [m for j in range(k, k + 50) for m in realistic(s, j)], T0
                )
            k += 50
    now = T0 + 5 * 365 * DAY
    policy = RetentionPolicy(meter_days=30, events_days=30)
    for batch in (500, 2000, 10_000):
        copy = tmp / f"retention-{batch}.sqlite"
        src = sqlite3.connect(path)
        dst = sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        dst.close()
        ticker = Ticker()
        worst_write = 0.0
        async with open_sqlite_store(copy, StoreConfig(retention=policy, retention_batch=batch)) as store:

            async def writer(s: int) -> None:
                nonlocal worst_write
                for j in range(10**9):
                    start = time.perf_counter()
                    await store.record_meter_values(f"S{s:06d}", realistic(s, 10**6 + j), now)
                    worst_write = max(worst_write, time.perf_counter() - start)
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker.run)
                for s in range(stations):
                    nursery.start_soon(writer, s)
                await trio.sleep(0.5)
                start = time.perf_counter()
                report = await store.apply_retention(now)
                elapsed = time.perf_counter() - start
                nursery.cancel_scope.cancel()
        print(
            f"retention_batch {batch:>6}: removed {report.meter_values:,} values in {elapsed:.1f} s "
            f"({report.meter_values / elapsed:,.0f}/s), worst loop stall {ticker.worst * 1000:.1f} ms, "
            f"worst write latency {worst_write * 1000:.0f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--part", choices=["all", "commit", "layout", "retention"], default="all")
    parser.add_argument("--writers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--stations", type=int, default=1000, help="layout: stations (default 1000)")
    parser.add_argument("--days", type=int, default=2, help="layout: days of history (default 2)")
    parser.add_argument("--backlog", type=int, default=50_000, help="retention: old MeterValues (50,000)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny run (CI smoke test; figures not meaningful)"
    )
    args = parser.parse_args()
    if args.quick:
        args.writers, args.messages, args.stations, args.days, args.backlog = 10, 5, 20, 1, 2000
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "commit"):
            await part_commit(Path(tmp), args)
        if args.part in ("all", "layout"):
            await part_layout(Path(tmp), args)
        if args.part in ("all", "retention"):
            await part_retention(Path(tmp), args)


if __name__ == "__main__":
    trio.run(main)
