"""Benchmark of the Central System store: why group commit, and why a writer thread.

Measures, on a fresh SQLite file in a temporary directory:

- ``in-loop``: the same SQL, one transaction per MeterValues, committed on the trio thread — what a naive
  handler would do; every commit blocks the event loop for its whole duration.
- ``store``: :func:`os3p_trio.central.open_sqlite_store` — N concurrent writers (one per simulated
  connection) awaiting ``record_meter_values``; the writer task groups whatever is queued into one
  transaction committed in a worker thread.

for ``synchronous=FULL`` and ``NORMAL``.  Each MeterValues carries one meterValue with ``--samples`` sampled
values (default 10).  Prints MeterValues/s, sampled values/s, the mean batch size, and the longest time the
trio loop was blocked (measured by a ticker task) — the figure that matters for 10,000 connections.

Usage: ``python benchmarks/central_store_bench.py [--writers 200] [--messages 20] [--samples 10] [--quick]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from os3p_trio.central import StoreConfig, open_sqlite_store
from os3p_trio.central._sqlite import _METER_COLUMNS

_PLACEHOLDERS = ",".join("?" * 10)


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


async def in_loop(
    path: Path, synchronous: str, writers: int, messages: int, samples: int
) -> dict[str, float]:
    """The same SQL as the store, but one transaction per MeterValues, committed on the trio thread."""
    ticker = Ticker()
    async with open_sqlite_store(path, StoreConfig(synchronous=synchronous)) as store:
        for w in range(writers):
            await store.ensure_station(f"S{w}", 0.0, registered_by="bench")
        conn = store._writer_conn
        assert conn is not None

        async def writer(w: int) -> None:
            for k in range(messages):
                rows = [
                    (
                        f"S{w}",
                        float(k),
                        s["measurand"],
                        s["value"],
                        None,
                        s["unit"],
                        "Sample.Periodic",
                        "Raw",
                        None,
                        0.0,
                    )
                    for mv in meter_value(k, samples)
                    for s in mv["sampledValue"]
                ]
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    f"INSERT OR IGNORE INTO meter_values ({_METER_COLUMNS}) VALUES ({_PLACEHOLDERS})", rows
                )
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--writers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="tiny run (CI smoke test; figures not meaningful)"
    )
    args = parser.parse_args()
    if args.quick:
        args.writers, args.messages = 10, 5
    print(f"{args.writers} writers x {args.messages} MeterValues x {args.samples} sampled values")
    header = f"{'mode':<10} {'synchronous':<12} {'MeterValues/s':>14} {'values/s':>10}"
    print(f"{header} {'mean batch':>11} {'worst stall':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for synchronous in ("FULL", "NORMAL"):
            for name, fn in (("in-loop", in_loop), ("store", with_store)):
                result = await fn(
                    Path(tmp) / f"{name}-{synchronous}.sqlite",
                    synchronous,
                    args.writers,
                    args.messages,
                    args.samples,
                )
                print(
                    f"{name:<10} {synchronous:<12} {result['msg/s']:>14,.0f} {result['samples/s']:>10,.0f} "
                    f"{result['batch']:>11.1f} {result['stall ms']:>9.1f} ms"
                )


if __name__ == "__main__":
    trio.run(main)
