"""SQLite-only store behaviour: crash consistency (kill -9) under both ``synchronous`` settings.

Every behaviour of the Store interface is tested on both stores in ``tests/test_store_contract.py``."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from os3p_trio.central import open_sqlite_store

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
