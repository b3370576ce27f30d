"""Durable station state in SQLite: one database can hold a whole fleet, keyed by identity.

Theory of operation
-------------------
A station's model changes in *steps*; each step that touches durable state produces one :class:`Change`
(key/value state, outbox entries, meter readings, log lines), and :meth:`StationStore.apply` writes it in
**one transaction**.  The driver applies the change *before* it sends anything the change caused
(PROTOCOL-DECISIONS §7: "written to a durable outbox on the Substation before any attempt to send"), so after
a ``kill -9`` the station restarts from a state that is consistent with what the Central System may have seen:

* the contactor outputs and the StreetlightStatusNotification for the switch are in the same transaction, so a
  restart neither forgets a reported switch nor reports it twice (except a re-send of an unconfirmed entry);
* an outbox entry leaves the outbox only when its CALLRESULT arrived (:meth:`outbox_ack`) or when it was moved
  to ``dead_letters`` (:meth:`outbox_dead_letter`), again in one transaction.

SQLite runs in WAL mode with ``synchronous=FULL`` by default: a committed transaction survives a process kill
and a power cut.  ``synchronous="NORMAL"`` (for large fleets on one disk) still survives ``kill -9`` — the WAL
is written before COMMIT returns, only the fsync is deferred — but may lose the last transactions on power
loss.

Bounds: meter history and log keep the newest ``history_limit`` / ``log_limit`` rows per identity (older rows
are deleted in the same transaction).  The outbox is not bounded by count — dropping an event would break §7 —
but it lives on disk only; memory holds one entry per station (the one being delivered).

The store is synchronous: each call is one short SQLite transaction (well under a millisecond with
``NORMAL``).  Drivers call it from their event loop; it is not thread-safe (one store per thread).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import attrs

__all__ = ["Change", "OutboxEntry", "SQLiteStore", "StationStore"]


@attrs.frozen
class OutboxEntry:
    """One message waiting for its CALLRESULT. ``seq`` orders a station's entries (global, increasing)."""

    seq: int
    identity: str
    action: str
    payload: dict[str, Any]
    attempts: int = 0
    not_before: float = 0.0
    error: str | None = None


@attrs.frozen
class Change:
    """Everything one model step wants made durable, written in one transaction."""

    kv: tuple[tuple[str, Any], ...] = ()
    outbox: tuple[tuple[str, dict[str, Any]], ...] = ()
    meter: tuple[tuple[float, list[dict[str, Any]]], ...] = ()
    log: tuple[tuple[float, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.kv or self.outbox or self.meter or self.log)

    def merge(self, other: Change) -> Change:
        """Both changes, ``other`` last (a later kv value for the same key wins)."""
        return Change(self.kv + other.kv, self.outbox + other.outbox, self.meter + other.meter,
                      self.log + other.log)


class StationStore(Protocol):
    """The interface the simulator needs from durable storage."""

    def load(self, identity: str) -> dict[str, Any]:
        """All key/value state of a station (empty for a new one)."""

    def apply(self, identity: str, change: Change, now: float) -> list[int]:
        """Write ``change`` in one transaction; returns the outbox ``seq`` of the appended entries."""

    def outbox_head(self, identity: str) -> OutboxEntry | None:
        """The oldest entry still to deliver, or None."""

    def outbox_pending(self, identity: str) -> list[OutboxEntry]:
        """Every entry still to deliver, in order."""

    def outbox_ack(self, identity: str, seq: int) -> None:
        """The entry's CALLRESULT arrived: delivered."""

    def outbox_retry(self, identity: str, seq: int, not_before: float, error: str | None) -> None:
        """Count one failed attempt; do not try again before ``not_before``."""

    def outbox_dead_letter(self, identity: str, seq: int, error: str, now: float) -> None:
        """Move the entry aside: it can never succeed."""

    def dead_letters(self, identity: str) -> list[OutboxEntry]:
        """Entries moved aside, in order."""

    def meter_history(self, identity: str, start: float | None, stop: float | None
                      ) -> list[tuple[float, list[dict[str, Any]]]]:
        """Stored readings with start ≤ timestamp ≤ stop (open bounds when None), oldest first."""

    def log_lines(self, identity: str) -> list[tuple[float, str]]:
        """The station's log, oldest first."""

    def identities(self) -> list[str]:
        """Every station with stored state."""

    def close(self) -> None:
        """Release the database."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS station_kv (
    identity TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (identity, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_identity ON outbox (identity, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY, identity TEXT NOT NULL, action TEXT NOT NULL, payload TEXT NOT NULL,
    created REAL NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, moved REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_by_identity ON dead_letters (identity, seq);
CREATE TABLE IF NOT EXISTS meter_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, ts REAL NOT NULL, sampled TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS meter_by_identity ON meter_history (identity, ts);
CREATE TABLE IF NOT EXISTS station_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, ts REAL NOT NULL, line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_by_identity ON station_log (identity, id);
"""

_ENTRY_COLUMNS = "seq, identity, action, payload, attempts, not_before, error"


def _entry(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(int(row[0]), str(row[1]), str(row[2]), json.loads(row[3]), int(row[4]), float(row[5]),
                       row[6])


class SQLiteStore:
    """:class:`StationStore` on one SQLite database file (or ``":memory:"``)."""

    def __init__(self, path: str, *, synchronous: str = "FULL", history_limit: int = 20_000,
                 log_limit: int = 5_000) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self.history_limit = history_limit
        self.log_limit = log_limit

    # -- transactions ------------------------------------------------------------------------------------
    def _begin(self) -> sqlite3.Cursor:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        return cur

    def _run(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        cur = self._begin()
        try:
            for sql, args in statements:
                cur.execute(sql, args)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    # -- StationStore ------------------------------------------------------------------------------------
    def load(self, identity: str) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM station_kv WHERE identity = ?", (identity,))
        return {k: json.loads(v) for k, v in rows}

    def apply(self, identity: str, change: Change, now: float) -> list[int]:
        cur = self._begin()
        seqs: list[int] = []
        try:
            for key, value in change.kv:
                cur.execute("INSERT INTO station_kv (identity, key, value) VALUES (?, ?, ?) "
                            "ON CONFLICT (identity, key) DO UPDATE SET value = excluded.value",
                            (identity, key, json.dumps(value, separators=(",", ":"))))
            for action, payload in change.outbox:
                cur.execute("INSERT INTO outbox (identity, action, payload, created) VALUES (?, ?, ?, ?)",
                            (identity, action, json.dumps(payload, separators=(",", ":")), now))
                seqs.append(int(cur.lastrowid or 0))
            if change.meter:
                cur.executemany("INSERT INTO meter_history (identity, ts, sampled) VALUES (?, ?, ?)",
                                [(identity, ts, json.dumps(values, separators=(",", ":")))
                                 for ts, values in change.meter])
                self._trim(cur, "meter_history", identity, self.history_limit)
            if change.log:
                cur.executemany("INSERT INTO station_log (identity, ts, line) VALUES (?, ?, ?)",
                                [(identity, ts, line) for ts, line in change.log])
                self._trim(cur, "station_log", identity, self.log_limit)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return seqs

    @staticmethod
    def _trim(cur: sqlite3.Cursor, table: str, identity: str, limit: int) -> None:
        cur.execute(f"DELETE FROM {table} WHERE identity = ? AND id <= "
                    f"(SELECT id FROM {table} WHERE identity = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (identity, identity, limit))

    def outbox_head(self, identity: str) -> OutboxEntry | None:
        row = self._db.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE identity = ? ORDER BY seq LIMIT 1",
                               (identity,)).fetchone()
        return None if row is None else _entry(row)

    def outbox_pending(self, identity: str) -> list[OutboxEntry]:
        rows = self._db.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE identity = ? ORDER BY seq",
                                (identity,))
        return [_entry(r) for r in rows]

    def outbox_ack(self, identity: str, seq: int) -> None:
        self._run([("DELETE FROM outbox WHERE identity = ? AND seq = ?", (identity, seq))])

    def outbox_retry(self, identity: str, seq: int, not_before: float, error: str | None) -> None:
        self._run([("UPDATE outbox SET attempts = attempts + 1, not_before = ?, error = ? "
                    "WHERE identity = ? AND seq = ?", (not_before, error, identity, seq))])

    def outbox_dead_letter(self, identity: str, seq: int, error: str, now: float) -> None:
        self._run([
            ("INSERT INTO dead_letters (seq, identity, action, payload, created, attempts, error, moved) "
             "SELECT seq, identity, action, payload, created, attempts + 1, ?, ? FROM outbox "
             "WHERE identity = ? AND seq = ?", (error, now, identity, seq)),
            ("DELETE FROM outbox WHERE identity = ? AND seq = ?", (identity, seq)),
        ])

    def dead_letters(self, identity: str) -> list[OutboxEntry]:
        rows = self._db.execute("SELECT seq, identity, action, payload, attempts, moved, error "
                                "FROM dead_letters WHERE identity = ? ORDER BY seq", (identity,))
        return [_entry(r) for r in rows]

    def meter_history(self, identity: str, start: float | None, stop: float | None
                      ) -> list[tuple[float, list[dict[str, Any]]]]:
        lo = float("-inf") if start is None else start
        hi = float("inf") if stop is None else stop
        rows = self._db.execute("SELECT ts, sampled FROM meter_history WHERE identity = ? AND ts >= ? "
                                "AND ts <= ? ORDER BY ts, id", (identity, lo, hi))
        return [(float(ts), json.loads(s)) for ts, s in rows]

    def log_lines(self, identity: str) -> list[tuple[float, str]]:
        rows = self._db.execute("SELECT ts, line FROM station_log WHERE identity = ? ORDER BY id",
                                (identity,))
        return [(float(ts), str(line)) for ts, line in rows]

    def identities(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT identity FROM station_kv ORDER BY identity")
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()
