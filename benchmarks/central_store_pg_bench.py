"""Benchmark of the PostgreSQL store: narrow (one row per value) vs wide (one row per meterValue) layout.

Starts its own throwaway PostgreSQL (``tests/servers.py``) with the server's durable defaults (fsync on), then
for each layout:

- **values/s with commit-before-answer**: ``--writers`` concurrent writers (one per simulated station), each
  awaiting its MeterValues (one meterValue of ``--samples`` values) before sending the next, as a station
  waits for its CALLRESULT.  Wide: :func:`os3p_trio.central.open_postgres_store` (group commit).  Narrow: the
  same group commit, one row per value (the SQLite store's current table and unique key, on PostgreSQL).
- **bytes per value on disk**: ``pg_total_relation_size`` over every meter table (partitions, extras, the
  latest-reading table, profiles, TOAST and indexes) divided by the values stored.
- **query time** for "one station, one measurand, one day" and "all stations, last value" (best of 5).

Usage: ``python benchmarks/central_store_pg_bench.py [--stations 500] [--messages 48] [--samples 30]``
(``--quick`` for a smoke run).  Note ``uptime`` load with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import postgres_server

from os3p_trio.central import PostgresConfig, open_postgres_store
from os3p_trio.central._postgres import _DEFAULT_CONTEXT, _DEFAULT_FORMAT, PostgresStore, _to_float
from os3p_trio.central._sqlite import parse_timestamp

T0 = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
MEASURANDS = ["Voltage.L1N", "Voltage.L2N", "Voltage.L3N", "Current.L1", "Current.L2", "Current.L3"]

NARROW = """
CREATE TABLE narrow_meter (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, identity text NOT NULL, ts double precision NOT NULL,
    measurand text NOT NULL, value text NOT NULL, numeric double precision, unit text, context text NOT NULL,
    format text NOT NULL, location text, received_at double precision NOT NULL);
CREATE UNIQUE INDEX narrow_key ON narrow_meter (identity, measurand, ts, coalesce(location, ''), context);
"""


def meter_value(station: int, k: int, samples: int) -> list[dict[str, Any]]:
    """One sample every 15 minutes; realistic decimals (voltages 230.xx, currents xx.x, energy registers)."""
    stamp = datetime.fromtimestamp(T0 + 900 * k, UTC).isoformat()
    values = []
    for i in range(samples):
        measurand = MEASURANDS[i] if i < len(MEASURANDS) else f"Energy.Active.Import.Register.{i}"
        if i < 3:
            text = f"{230 + (station + k + i) % 7}.{(k * 7 + i) % 100:02d}"
        else:
            text = f"{(station * 31 + k * i) % 900}.{i % 10}"
        values.append({"value": text, "measurand": measurand, "unit": "V" if i < 3 else "A"})
    return [{"timestamp": stamp, "sampledValue": values}]


def narrow_rows(identity: str, mv: list[dict[str, Any]], now: float) -> list[tuple[Any, ...]]:
    rows = []
    for entry in mv:
        ts = parse_timestamp(entry.get("timestamp"), now)
        for s in entry["sampledValue"]:
            rows.append((identity, ts, s["measurand"], s["value"], _to_float(s["value"]), s.get("unit"),
                         s.get("context", _DEFAULT_CONTEXT), s.get("format", _DEFAULT_FORMAT),
                         s.get("location"), now))
    return rows


async def write_wide(store: PostgresStore, stations: int, messages: int, samples: int) -> float:
    for n in range(stations):
        await store.add_station(f"S{n:06d}", None, T0)
    start = time.perf_counter()

    async def station(n: int) -> None:
        for k in range(messages):
            await store.record_meter_values(f"S{n:06d}", meter_value(n, k, samples), T0 + 900 * k)

    async with trio.open_nursery() as nursery:
        for n in range(stations):
            nursery.start_soon(station, n)
    return time.perf_counter() - start


async def write_narrow(store: PostgresStore, stations: int, messages: int, samples: int) -> float:
    """The narrow layout through the same group commit (the store's writer), one row per value."""
    start = time.perf_counter()

    async def station(n: int) -> None:
        identity = f"S{n:06d}"
        for k in range(messages):
            rows = narrow_rows(identity, meter_value(n, k, samples), T0 + 900 * k)

            def fn(conn: Any, _: Any, rows: list[tuple[Any, ...]] = rows) -> int:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO narrow_meter (identity, ts, measurand, value, numeric, unit, context, "
                        "format, location, received_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                        "ON CONFLICT DO NOTHING", rows)
                return len(rows)

            await store._write(fn)

    async with trio.open_nursery() as nursery:
        for n in range(stations):
            nursery.start_soon(station, n)
    return time.perf_counter() - start


def size_of(url: str, tables: list[str]) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        total = 0
        for table in tables:
            # pg_partition_tree lists a partitioned table's parts, and nothing for a plain table.
            row = conn.execute(
                "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%s)), "
                "pg_total_relation_size(%s))", (table, table)
            ).fetchone()
            total += int(row[0]) if row else 0
        return total


def best_of(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


async def run(args: argparse.Namespace, url: str) -> list[tuple[str, float, float, float, float]]:
    values = args.stations * args.messages * args.samples
    day = (T0, T0 + 86_400)
    out = []
    config = PostgresConfig()
    async with open_postgres_store(url, config) as store:
        elapsed = await write_wide(store, args.stations, args.messages, args.samples)
        batches = store.operations_committed / max(1, store.batches_committed)
        wide_bytes = size_of(url, ["meter_samples", "meter_extras", "meter_latest", "meter_profiles"])

        def one_day_wide() -> None:
            rows = trio.from_thread.run(lambda: store.meter_values(
                "S000007", measurand="Current.L1", since=day[0], until=day[1], limit=100_000))
            assert rows

        def latest_wide() -> None:
            rows = trio.from_thread.run(lambda: store.latest_readings("Current.L1", limit=1_000_000))
            assert len(rows) == args.stations

        q1 = await trio.to_thread.run_sync(best_of, one_day_wide)
        q2 = await trio.to_thread.run_sync(best_of, latest_wide)
        out.append(("wide", values / elapsed, wide_bytes / values, q1 * 1e3, q2 * 1e3))
        print(f"  wide: mean batch {batches:.1f} operations", flush=True)

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(NARROW)
        elapsed = await write_narrow(store, args.stations, args.messages, args.samples)
        narrow_bytes = size_of(url, ["narrow_meter"])
        with psycopg.connect(url, autocommit=True) as conn:
            def one_day_narrow() -> None:
                assert conn.execute(
                    "SELECT * FROM narrow_meter WHERE identity = %s AND measurand = %s AND ts >= %s "
                    "AND ts < %s ORDER BY ts, id", ("S000007", "Current.L1", *day)).fetchall()

            def latest_narrow() -> None:
                rows = conn.execute(
                    "SELECT DISTINCT ON (identity) * FROM narrow_meter WHERE measurand = %s "
                    "ORDER BY identity, ts DESC", ("Current.L1",)).fetchall()
                assert len(rows) == args.stations

            q1 = best_of(one_day_narrow)
            q2 = best_of(latest_narrow)
        out.append(("narrow", values / elapsed, narrow_bytes / values, q1 * 1e3, q2 * 1e3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--messages", type=int, default=48, help="MeterValues per station (15 min apart)")
    parser.add_argument("--samples", type=int, default=30, help="sampled values per MeterValues")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.stations, args.messages = 20, 4
    with postgres_server(fsync=True) as server:
        url = server.create_database()
        rows = trio.run(run, args, url)
    print(f"{args.stations} stations x {args.messages} MeterValues x {args.samples} values, "
          "PostgreSQL fsync=on, commit-before-answer")
    print(f"{'layout':8} {'values/s':>10} {'bytes/value':>12} {'1 station/1 measurand/1 day':>28} "
          f"{'all stations, last value':>25}")
    for layout, rate, per_value, q1, q2 in rows:
        print(f"{layout:8} {rate:>10,.0f} {per_value:>12.1f} {q1:>25.2f} ms {q2:>22.2f} ms")
    wide, narrow = rows
    print(f"wide/narrow: {wide[1] / narrow[1]:.2f}x values/s, "
          f"{narrow[2] / wide[2]:.1f}x fewer bytes per value")


if __name__ == "__main__":
    main()
