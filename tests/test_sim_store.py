"""The simulator's durable store: transactions, outbox order, dead letters, bounds, kill -9 durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from os3p_core import Disposition, classify_error
from os3p_sim import Change, SQLiteStore

CHILD = r"""
import sys
from os3p_sim import Change, SQLiteStore
store = SQLiteStore(sys.argv[1])
n = 0
while True:
    n += 1
    for identity in ("SUB-A", "SUB-B"):
        # One change = the contactor state, the event and a log line: all or nothing.
        seqs = store.apply(identity, Change(
            kv=(("counter", n), ("contactors", {"on": n % 2 == 1})),
            outbox=(("StreetlightStatusNotification", {"contactorId": 1, "status": "On" if n % 2 else "Off",
                                                       "timestamp": str(n)}),),
            log=((float(n), f"switch {n}"),)), float(n))
        print(identity, n, seqs[0], flush=True)
"""


def test_apply_is_one_transaction_and_outbox_keeps_order(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "fleet.db"))
    first = Change(kv=(("x", 1),), outbox=(("Heartbeat", {}), ("StatusNotification", {"n": 1})))
    seqs = store.apply("A", first, 1.0)
    seqs += store.apply("B", Change(outbox=(("Heartbeat", {"b": 1}),)), 2.0)
    seqs += store.apply("A", Change(outbox=(("StatusNotification", {"n": 2}),)), 3.0)
    assert seqs == sorted(seqs)
    assert [e.payload for e in store.outbox_pending("A")] == [{}, {"n": 1}, {"n": 2}]
    assert store.identities() == ["A"]  # only stations with key/value state are listed
    head = store.outbox_head("A")
    assert head is not None
    assert head.action == "Heartbeat"
    # A failure that means "retry later" keeps the entry at the head, with its attempt count.
    store.outbox_retry("A", head.seq, 10.0, "InternalError")
    again = store.outbox_head("A")
    assert again is not None
    assert (again.seq, again.attempts, again.not_before, again.error) == (head.seq, 1, 10.0, "InternalError")
    store.outbox_ack("A", head.seq)
    nxt = store.outbox_head("A")
    assert nxt is not None
    store.outbox_dead_letter("A", nxt.seq, "FormationViolation", 11.0)
    assert [e.payload for e in store.outbox_pending("A")] == [{"n": 2}]
    (dead,) = store.dead_letters("A")
    assert (dead.seq, dead.payload, dead.error) == (nxt.seq, {"n": 1}, "FormationViolation")
    # A change that fails half-way leaves nothing behind.
    with pytest.raises(TypeError):
        store.apply("A", Change(kv=(("y", 2),), outbox=(("Bad", {"x": object()}),)), 12.0)
    assert "y" not in store.load("A")
    assert len(store.outbox_pending("A")) == 1
    store.close()
    reopened = SQLiteStore(str(tmp_path / "fleet.db"))
    assert reopened.load("A") == {"x": 1}
    assert [e.payload for e in reopened.outbox_pending("B")] == [{"b": 1}]
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_history_and_log_are_bounded_and_filtered(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "h.db"), history_limit=50, log_limit=10)
    for i in range(120):
        store.apply("S", Change(meter=((float(i), [{"value": str(i), "measurand": "Frequency"}]),),
                                log=((float(i), f"line {i}"),)), float(i))
    rows = store.meter_history("S", None, None)
    assert [ts for ts, _ in rows] == [float(i) for i in range(70, 120)]
    assert [ts for ts, _ in store.meter_history("S", 100.0, 104.0)] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert [line for _, line in store.log_lines("S")] == [f"line {i}" for i in range(110, 120)]
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(":memory:", synchronous="OFF")


def test_outbox_policy() -> None:
    for code in ("SecurityError", "InternalError", "GenericError"):
        assert classify_error(code) is Disposition.RETRY
    for code in ("FormationViolation", "NotImplemented", "NotSupported", "PropertyConstraintViolation",
                 "OccurenceConstraintViolation", "TypeConstraintViolation", "ProtocolError"):
        assert classify_error(code) is Disposition.DEAD_LETTER
    assert classify_error("timeout") is Disposition.RETRY
    # The back-off itself (os3p_core.RetryBackOff) is tested in tests/test_station_policy.py.


def test_kill_9_mid_write_loses_no_committed_change(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, env=env,
                            text=True)
    assert proc.stdout is not None
    confirmed: dict[str, list[int]] = {"SUB-A": [], "SUB-B": []}
    deadline = time.monotonic() + 20.0
    try:
        while sum(map(len, confirmed.values())) < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            identity, _n, seq = line.split()
            confirmed[identity].append(int(seq))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: the child never stops writing
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert len(confirmed["SUB-A"]) >= 100
    check = sqlite3.connect(str(db))
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    store = SQLiteStore(str(db))
    for identity, seqs in confirmed.items():
        pending = store.outbox_pending(identity)
        stored = [e.seq for e in pending]
        # Every commit the child reported is there, in order; at most one more (committed, not yet printed).
        assert stored[: len(seqs)] == seqs
        assert len(stored) - len(seqs) in (0, 1)
        state = store.load(identity)
        # Atomicity: the counter, the contactor state and the outbox always move together.
        assert state["counter"] == len(stored)
        assert state["contactors"] == {"on": len(stored) % 2 == 1}
        assert pending[-1].payload["timestamp"] == str(len(stored))
        assert len(store.log_lines(identity)) == len(stored)
    store.close()
