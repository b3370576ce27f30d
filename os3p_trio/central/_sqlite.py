"""The SQLite implementation of :class:`~._store.Store`, with group commit.

Theory of operation
-------------------

PROTOCOL-DECISIONS §7: the CALLRESULT of a station-initiated message goes out only after its data is
committed. Committing each message on its own would cost one transaction (and with ``synchronous=FULL`` one
fsync) per message and make the disk the bottleneck of the whole server.  So writes are **grouped**:

* Every write method builds a small operation (a function of a ``sqlite3.Connection``) and puts it on one
  bounded trio channel, then waits for that operation's completion event.
* One **writer task** (owned by :func:`open_sqlite_store`'s nursery) takes the first waiting operation plus
  everything else already queued (up to ``max_batch``), and commits them in **one transaction** in a worker
  thread (``trio.to_thread.run_sync`` with a limiter of one, so exactly one thread uses the write connection
  at a time). While that transaction commits, new operations queue up and form the next batch: the busier the
  server, the bigger the batches, the fewer the fsyncs per message.
* Each operation runs inside its own ``SAVEPOINT``: one failing operation (say, a constraint) is rolled back
  alone and reports its exception to its own caller; the rest of the batch commits.
* Only after ``COMMIT`` returns are the waiters released.  So ``await store.record_meter_values(...)``
  returning means the rows are in the database file (WAL), and a crash of the process (kill -9) afterwards
  cannot lose them. With ``synchronous="FULL"`` (the default) the WAL is fsynced at every commit, so a power
  loss cannot either; ``"NORMAL"`` keeps crash safety for the process but may lose the last commits on power
  loss.

Why a thread and not in-loop commits: a commit with fsync takes milliseconds (measured: see
``docs/central.md``), and doing it on the trio thread would stall every connection of the server for that
long, once per batch.  The thread hop costs tens of microseconds per *batch*, not per message.

Reads use a second connection (WAL lets readers run beside the writer), serialised by a trio lock and run in a
worker thread as well.

Bounds: at most ``max_pending`` operations wait in the channel (further writers block: back-pressure on the
connections that produce them); a batch holds at most ``max_batch`` operations.  Worst-case memory is
``max_pending`` operations, each holding the payload it writes (≤ the connection's message size limit, 256 KiB
by default, so ``max_pending × 256 KiB`` in the pathological case; typical payloads are under 4 KiB).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs
import trio

from ._store import (
    BootStatus,
    EventKind,
    EventRecord,
    FleetSummary,
    MeterValueRecord,
    StationExists,
    StationRecord,
    StationState,
    UnknownStation,
    UploadRecord,
)

__all__ = ["SqliteStore", "StoreConfig", "open_sqlite_store"]

T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stations (
    identity             TEXT PRIMARY KEY,
    password_hash        TEXT,
    registered_at        REAL NOT NULL,
    registered_by        TEXT NOT NULL,
    boot_status_override TEXT,
    boot_fields          TEXT,
    boot_status          TEXT,
    boot_at              REAL,
    accepted             INTEGER NOT NULL DEFAULT 0,
    last_heartbeat       REAL,
    connected            INTEGER NOT NULL DEFAULT 0,
    connected_at         REAL,
    disconnected_at      REAL
);
CREATE TABLE IF NOT EXISTS meter_values (
    id          INTEGER PRIMARY KEY,
    identity    TEXT NOT NULL REFERENCES stations(identity) ON DELETE CASCADE,
    ts          REAL NOT NULL,
    measurand   TEXT NOT NULL,
    value       TEXT NOT NULL,
    numeric     REAL,
    unit        TEXT,
    context     TEXT NOT NULL,
    format      TEXT NOT NULL,
    location    TEXT,
    received_at REAL NOT NULL
);
-- A station resends a MeterValues whose CALLRESULT it never saw; the sample is stored once.
CREATE UNIQUE INDEX IF NOT EXISTS meter_values_key
    ON meter_values (identity, measurand, ts, ifnull(location, ''), context);
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY,
    identity     TEXT NOT NULL REFERENCES stations(identity) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    ts           REAL NOT NULL,
    received_at  REAL NOT NULL,
    contactor_id INTEGER,
    status       TEXT,
    payload      TEXT NOT NULL,
    -- Set for guaranteed-delivery events only (PROTOCOL-DECISIONS §7: at least once), so a resend is stored
    -- once.
    dedup_key    TEXT
);
-- Reads stay O(log n) however long a station's history grows: the latest event of a kind per contactor
-- (effective state), a station's log newest first (entries sorted by rowid), and the log of one kind.
CREATE INDEX IF NOT EXISTS events_latest ON events (identity, kind, contactor_id, ts);
CREATE INDEX IF NOT EXISTS events_by_station ON events (identity);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (identity, kind);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (identity, kind, dedup_key) WHERE dedup_key IS NOT
NULL;
CREATE TABLE IF NOT EXISTS uploads (
    id          INTEGER PRIMARY KEY,
    identity    TEXT NOT NULL REFERENCES stations(identity) ON DELETE CASCADE,
    file_name   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""

_STATION_COLUMNS = (
    "identity, password_hash, registered_at, registered_by, boot_status_override, boot_fields, boot_status, "
    "boot_at, accepted, last_heartbeat, connected, connected_at, disconnected_at"
)
_METER_COLUMNS = "identity, ts, measurand, value, numeric, unit, context, format, location, received_at"
_EVENT_COLUMNS = "id, identity, kind, ts, received_at, contactor_id, status, payload"

# Table 3 of annex §6.5: default values of the optional sampledValue fields.
_DEFAULT_CONTEXT = "Sample.Periodic"
_DEFAULT_FORMAT = "Raw"

# Events the station delivers at least once (PROTOCOL-DECISIONS §7); the rest carry no dedup key.
_GUARANTEED = frozenset({EventKind.STREETLIGHT_STATUS, EventKind.STREETLIGHT_MODE})
# contactorId values (annex §8.1: 1–4; the schemas bound it to 1..4), None: "all contactors".
_CONTACTOR_KEYS: tuple[int | None, ...] = (None, 1, 2, 3, 4)


@attrs.frozen(slots=True)
class StoreConfig:
    """Settings of the SQLite store; every default is what ``os3p-central serve`` uses."""

    #: ``PRAGMA synchronous``. ``"FULL"``: each group commit fsyncs the WAL, so an acknowledged write survives
    #: a power loss too.  ``"NORMAL"``: survives a process crash (kill -9) but not necessarily a power loss;
    #: cheaper on slow disks.
    synchronous: str = attrs.field(default="FULL", validator=attrs.validators.in_(("FULL", "NORMAL")))
    #: Most operations committed in one transaction.  Bounds the latency one batch adds to the next.
    max_batch: int = attrs.field(default=512, validator=attrs.validators.ge(1))
    #: Most operations waiting for the writer; further writers wait (back-pressure).
    max_pending: int = attrs.field(default=4096, validator=attrs.validators.ge(1))
    #: Seconds SQLite waits for a lock held by another process (e.g. ``os3p-central stations add`` while the
    #: service runs) before failing.
    busy_timeout: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))


@attrs.define(slots=True, eq=False)
class _Op(Generic[T]):
    """One write waiting for the group commit."""

    fn: Callable[[sqlite3.Connection], T]
    done: trio.Event = attrs.field(factory=trio.Event)
    result: T | None = None
    error: BaseException | None = None
    ok: bool = False


def parse_timestamp(text: str | None, default: float) -> float:
    """An OS³P date-time as POSIX seconds; no offset means UTC here (the Central System does not know the
    station's ``TimeZone`` key); unparsable or missing gives ``default``."""
    if not text:
        return default
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return default
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _to_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _connect(path: str, config: StoreConfig) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT/SAVEPOINT ourselves.  check_same_thread=False: trio's worker
    # threads are pooled, so successive batches may run on different threads; a limiter of one (writes) or a
    # lock (reads) guarantees that only one thread touches a connection at a time.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=config.busy_timeout)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={config.synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _station(row: Sequence[Any]) -> StationRecord:
    return StationRecord(
        identity=row[0],
        password_hash=row[1],
        registered_at=row[2],
        registered_by=row[3],
        boot_status_override=BootStatus(row[4]) if row[4] is not None else None,
        boot_fields=json.loads(row[5]) if row[5] is not None else None,
        boot_status=BootStatus(row[6]) if row[6] is not None else None,
        boot_at=row[7],
        accepted=bool(row[8]),
        last_heartbeat=row[9],
        connected=bool(row[10]),
        connected_at=row[11],
        disconnected_at=row[12],
    )


def _meter(row: Sequence[Any]) -> MeterValueRecord:
    return MeterValueRecord(
        identity=row[0],
        timestamp=row[1],
        measurand=row[2],
        value=row[3],
        numeric=row[4],
        unit=row[5],
        context=row[6],
        format=row[7],
        location=row[8],
        received_at=row[9],
    )


def _event(row: Sequence[Any]) -> EventRecord:
    return EventRecord(
        id=row[0],
        identity=row[1],
        kind=EventKind(row[2]),
        timestamp=row[3],
        received_at=row[4],
        contactor_id=row[5],
        status=row[6],
        payload=json.loads(row[7]),
    )


def _require_station(conn: sqlite3.Connection, identity: str) -> None:
    if conn.execute("SELECT 1 FROM stations WHERE identity = ?", (identity,)).fetchone() is None:
        raise UnknownStation(identity)


def _update_station(conn: sqlite3.Connection, identity: str, sql: str, params: Sequence[Any]) -> None:
    if conn.execute(f"UPDATE stations SET {sql} WHERE identity = ?", (*params, identity)).rowcount == 0:
        raise UnknownStation(identity)


class SqliteStore:
    """:class:`~._store.Store` on one SQLite file in WAL mode.  Create it with :func:`open_sqlite_store`."""

    def __init__(self, path: str, config: StoreConfig) -> None:
        self.path = path
        self.config = config
        self._send: trio.MemorySendChannel[_Op[Any]]
        self._receive: trio.MemoryReceiveChannel[_Op[Any]]
        self._send, self._receive = trio.open_memory_channel(config.max_pending)
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_lock = trio.Lock()
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._closed = False
        #: Counters for benchmarks and the operator: committed batches and operations.
        self.batches_committed = 0
        self.operations_committed = 0

    # --- plumbing -------------------------------------------------------------------------------------------
    def _open_sync(self) -> None:
        self._writer_conn = _connect(self.path, self.config)
        # Idempotent DDL (IF NOT EXISTS): a second process opening the same file is harmless.
        self._writer_conn.executescript(_SCHEMA)
        self._writer_conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._reader_conn = _connect(self.path, self.config)

    def _close_sync(self) -> None:
        for conn in (self._writer_conn, self._reader_conn):
            if conn is not None:
                conn.close()
        self._writer_conn = self._reader_conn = None

    def _commit_batch(self, batch: list[_Op[Any]]) -> None:
        """Run in the writer thread: one transaction, one savepoint per operation."""
        conn = self._writer_conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    op.result = op.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    op.error = exc
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException as exc:
            # The transaction as a whole failed (I/O error, disk full...): nothing of it is committed.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for op in batch:
                op.error = exc
            return
        for op in batch:
            op.ok = op.error is None
        self.batches_committed += 1
        self.operations_committed += len(batch)

    async def _run_writer(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                batch: list[_Op[Any]] = [first]
                while len(batch) < self.config.max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                # Shielded: once a batch is handed to the thread its outcome must reach its waiters; the
                # thread
                # cannot be abandoned half-way through a transaction anyway.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._commit_batch, batch, limiter=self._write_limiter)
                for op in batch:
                    op.done.set()

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise trio.ClosedResourceError("the store is closed")
        op: _Op[T] = _Op(fn)
        await self._send.send(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[return-value]

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._read_lock:
            conn = self._reader_conn
            if conn is None:
                raise trio.ClosedResourceError("the store is closed")
            return await trio.to_thread.run_sync(fn, conn)

    # --- stations -------------------------------------------------------------------------------------------
    async def add_station(
        self, identity: str, password_hash: str | None, now: float, *, registered_by: str = "operator"
    ) -> StationRecord:
        def fn(conn: sqlite3.Connection) -> StationRecord:
            try:
                conn.execute(
                    "INSERT INTO stations (identity, password_hash, registered_at, registered_by) "
                    "VALUES (?,?,?,?)",
                    (identity, password_hash, now, registered_by),
                )
            except sqlite3.IntegrityError:
                raise StationExists(identity) from None
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity = ?", (identity,)
            ).fetchone()
            return _station(row)

        return await self._write(fn)

    async def ensure_station(self, identity: str, now: float, *, registered_by: str) -> StationRecord:
        def fn(conn: sqlite3.Connection) -> StationRecord:
            conn.execute(
                "INSERT OR IGNORE INTO stations (identity, registered_at, registered_by) VALUES (?,?,?)",
                (identity, now, registered_by),
            )
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity = ?", (identity,)
            ).fetchone()
            return _station(row)

        return await self._write(fn)

    async def set_password_hash(self, identity: str, password_hash: str | None) -> None:
        await self._write(lambda conn: _update_station(conn, identity, "password_hash = ?", (password_hash,)))

    async def set_boot_status_override(self, identity: str, status: BootStatus | None) -> None:
        value = None if status is None else BootStatus(status).value
        await self._write(lambda conn: _update_station(conn, identity, "boot_status_override = ?", (value,)))

    async def remove_station(self, identity: str) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM stations WHERE identity = ?", (identity,)).rowcount == 0:
                raise UnknownStation(identity)

        await self._write(fn)

    async def get_station(self, identity: str) -> StationRecord | None:
        def fn(conn: sqlite3.Connection) -> StationRecord | None:
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity = ?", (identity,)
            ).fetchone()
            return None if row is None else _station(row)

        return await self._read(fn)

    async def list_stations(
        self, *, after: str | None = None, limit: int | None = None, connected: bool | None = None
    ) -> list[StationRecord]:
        sql = f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity > ?"
        params: list[Any] = [after or ""]
        if connected is not None:
            sql += " AND connected = ?"
            params.append(int(connected))
        sql += " ORDER BY identity LIMIT ?"
        params.append(-1 if limit is None else max(0, limit))

        def fn(conn: sqlite3.Connection) -> list[StationRecord]:
            return [_station(row) for row in conn.execute(sql, params).fetchall()]

        return await self._read(fn)

    # --- what happens on connections ------------------------------------------------------------------------
    async def record_connection(self, identity: str, connected: bool, now: float) -> None:
        kind = EventKind.CONNECTED if connected else EventKind.DISCONNECTED

        def fn(conn: sqlite3.Connection) -> None:
            if connected:
                _update_station(conn, identity, "connected = 1, connected_at = ?", (now,))
            else:
                _update_station(conn, identity, "connected = 0, disconnected_at = ?", (now,))
            conn.execute(
                "INSERT INTO events (identity, kind, ts, received_at, payload) VALUES (?,?,?,?,'{}')",
                (identity, kind.value, now, now),
            )

        await self._write(fn)

    async def mark_all_disconnected(self, now: float) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE stations SET connected = 0, disconnected_at = ? WHERE connected = 1", (now,)
            ).rowcount

        return await self._write(fn)

    async def record_boot(
        self, identity: str, fields: Mapping[str, Any], status: BootStatus, now: float
    ) -> None:
        status = BootStatus(status)
        text = json.dumps(dict(fields), sort_keys=True)

        def fn(conn: sqlite3.Connection) -> None:
            # PROTOCOL-DECISIONS §5: acceptance is remembered per identity, durably; a later Pending or
            # Rejected
            # answer withdraws it.
            _update_station(
                conn,
                identity,
                "boot_fields = ?, boot_status = ?, boot_at = ?, accepted = ?",
                (text, status.value, now, int(status is BootStatus.ACCEPTED)),
            )
            conn.execute(
                "INSERT INTO events (identity, kind, ts, received_at, status, payload) VALUES (?,?,?,?,?,?)",
                (identity, EventKind.BOOT.value, now, now, status.value, text),
            )

        await self._write(fn)

    async def record_heartbeat(self, identity: str, now: float) -> None:
        await self._write(lambda conn: _update_station(conn, identity, "last_heartbeat = ?", (now,)))

    async def record_meter_values(
        self, identity: str, meter_value: Sequence[Mapping[str, Any]], now: float
    ) -> int:
        rows: list[tuple[Any, ...]] = []
        for entry in meter_value:
            ts = parse_timestamp(entry.get("timestamp"), now)
            for sample in entry.get("sampledValue", ()):
                value = str(sample.get("value", ""))
                rows.append(
                    (
                        identity,
                        ts,
                        sample.get("measurand", ""),
                        value,
                        _to_float(value),
                        sample.get("unit"),
                        sample.get("context", _DEFAULT_CONTEXT),
                        sample.get("format", _DEFAULT_FORMAT),
                        sample.get("location"),
                        now,
                    )
                )

        def fn(conn: sqlite3.Connection) -> int:
            _require_station(conn, identity)
            before = conn.total_changes
            conn.executemany(
                f"INSERT OR IGNORE INTO meter_values ({_METER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows
            )
            return conn.total_changes - before

        return await self._write(fn)

    async def record_event(
        self, identity: str, kind: EventKind, payload: Mapping[str, Any], now: float
    ) -> bool:
        kind = EventKind(kind)
        ts = parse_timestamp(payload.get("timestamp"), now)
        contactor = payload.get("contactorId")
        status = payload.get("mode") if kind is EventKind.STREETLIGHT_MODE else payload.get("status")
        dedup = None
        if kind in _GUARANTEED:
            # The same switch (or mode change) of the same contactor at the same instant is the same event.
            dedup = f"{contactor}|{status}|{payload.get('timestamp')}"
        text = json.dumps(dict(payload), sort_keys=True)

        def fn(conn: sqlite3.Connection) -> bool:
            _require_station(conn, identity)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO events (identity, kind, ts, received_at, contactor_id, status, "
                "payload, dedup_key) VALUES (?,?,?,?,?,?,?,?)",
                (identity, kind.value, ts, now, contactor, status, text, dedup),
            )
            return cursor.rowcount == 1

        return await self._write(fn)

    async def record_upload(
        self, identity: str, file_name: str, size: int, sha256: str, now: float
    ) -> UploadRecord:
        def fn(conn: sqlite3.Connection) -> UploadRecord:
            _require_station(conn, identity)
            cursor = conn.execute(
                "INSERT INTO uploads (identity, file_name, size, sha256, received_at) VALUES (?,?,?,?,?)",
                (identity, file_name, size, sha256, now),
            )
            assert cursor.lastrowid is not None
            return UploadRecord(cursor.lastrowid, identity, file_name, size, sha256, now)

        return await self._write(fn)

    # --- reads ----------------------------------------------------------------------------------------------
    async def meter_values(
        self,
        identity: str,
        *,
        measurand: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[MeterValueRecord]:
        sql = f"SELECT {_METER_COLUMNS} FROM meter_values WHERE identity = ?"
        params: list[Any] = [identity]
        if measurand is not None:
            sql += " AND measurand = ?"
            params.append(measurand)
        if since is not None:
            sql += " AND ts >= ?"
            params.append(since)
        if until is not None:
            sql += " AND ts < ?"
            params.append(until)
        sql += " ORDER BY ts, id LIMIT ?"
        params.append(max(0, limit))

        def fn(conn: sqlite3.Connection) -> list[MeterValueRecord]:
            return [_meter(row) for row in conn.execute(sql, params).fetchall()]

        return await self._read(fn)

    async def events(
        self, identity: str, *, kind: EventKind | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE identity = ?"
        params: list[Any] = [identity]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(EventKind(kind).value)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, limit))

        def fn(conn: sqlite3.Connection) -> list[EventRecord]:
            return [_event(row) for row in conn.execute(sql, params).fetchall()]

        return await self._read(fn)

    async def uploads(self, identity: str) -> list[UploadRecord]:
        def fn(conn: sqlite3.Connection) -> list[UploadRecord]:
            rows = conn.execute(
                "SELECT id, identity, file_name, size, sha256, received_at FROM uploads WHERE identity = ? "
                "ORDER BY id DESC",
                (identity,),
            ).fetchall()
            return [UploadRecord(*row) for row in rows]

        return await self._read(fn)

    async def station_state(self, identity: str) -> StationState | None:
        def latest(conn: sqlite3.Connection, kind: EventKind) -> EventRecord | None:
            row = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE identity = ? AND kind = ? "
                "ORDER BY ts DESC, id DESC LIMIT 1",
                (identity, kind.value),
            ).fetchone()
            return None if row is None else _event(row)

        def per_contactor(conn: sqlite3.Connection, kind: EventKind) -> dict[int, EventRecord]:
            # The latest event per contactor by the station's own timestamp (a resend from the outbox may
            # arrive after a newer live event); ties go to the later arrival.  One indexed probe per
            # contactor (None: all contactors, then 1–4, annex §8.1), not a scan of the history.
            found: dict[int, EventRecord] = {}
            for contactor in _CONTACTOR_KEYS:
                row = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events "
                    "WHERE identity = ? AND kind = ? AND contactor_id IS ? ORDER BY ts DESC, id DESC LIMIT 1",
                    (identity, kind.value, contactor),
                ).fetchone()
                if row is not None:
                    found[contactor or 0] = _event(row)
            return found

        def last_readings(conn: sqlite3.Connection) -> dict[str, MeterValueRecord]:
            # Skip-scan over the (identity, measurand, ts, ...) index: one probe per distinct measurand for
            # the next name, one for its newest row — O(measurands × log n) instead of a scan of the history.
            readings: dict[str, MeterValueRecord] = {}
            measurand = ""
            while True:
                (measurand,) = conn.execute(
                    "SELECT min(measurand) FROM meter_values WHERE identity = ? AND measurand > ?",
                    (identity, measurand),
                ).fetchone()
                if measurand is None:
                    return readings
                row = conn.execute(
                    f"SELECT {_METER_COLUMNS} FROM meter_values WHERE identity = ? AND measurand = ? "
                    "ORDER BY ts DESC, id DESC LIMIT 1",
                    (identity, measurand),
                ).fetchone()
                readings[measurand] = _meter(row)

        def fn(conn: sqlite3.Connection) -> StationState | None:
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity = ?", (identity,)
            ).fetchone()
            if row is None:
                return None
            return StationState(
                station=_station(row),
                contactors=per_contactor(conn, EventKind.STREETLIGHT_STATUS),
                modes=per_contactor(conn, EventKind.STREETLIGHT_MODE),
                last_status=latest(conn, EventKind.STATUS),
                firmware_status=latest(conn, EventKind.FIRMWARE_STATUS),
                file_status=latest(conn, EventKind.FILE_STATUS),
                last_readings=last_readings(conn),
            )

        return await self._read(fn)

    async def fleet_summary(self) -> FleetSummary:
        def fn(conn: sqlite3.Connection) -> FleetSummary:
            stations, connected, accepted = conn.execute(
                "SELECT count(*), ifnull(sum(connected), 0), ifnull(sum(accepted), 0) FROM stations"
            ).fetchone()
            versions = dict(
                conn.execute(
                    "SELECT json_extract(boot_fields, '$.firmwareVersion') AS v, count(*) FROM stations "
                    "WHERE v IS NOT NULL GROUP BY v ORDER BY v"
                ).fetchall()
            )
            # SQLite's bare-column rule: with max(ts), ``status`` comes from the row holding the maximum, i.e.
            # the latest switch of each contactor.
            (lights_on,) = conn.execute(
                "SELECT count(*) FROM (SELECT status, max(ts) FROM events WHERE kind = ? "
                "GROUP BY identity, contactor_id) WHERE status = 'On'",
                (EventKind.STREETLIGHT_STATUS.value,),
            ).fetchone()
            (meter_values,) = conn.execute("SELECT count(*) FROM meter_values").fetchone()
            events = dict(
                conn.execute("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind").fetchall()
            )
            (uploads,) = conn.execute("SELECT count(*) FROM uploads").fetchone()
            return FleetSummary(
                stations=stations,
                connected=connected,
                accepted=accepted,
                firmware_versions=versions,
                lights_on=lights_on,
                meter_values=meter_values,
                events=events,
                uploads=uploads,
            )

        return await self._read(fn)

    async def aclose(self) -> None:
        """Stop accepting writes; the writer commits what is queued, then ends."""
        self._closed = True
        await self._send.aclose()


@asynccontextmanager
async def open_sqlite_store(
    path: str | Path, config: StoreConfig | None = None
) -> AsyncIterator[SqliteStore]:
    """Open (creating if needed) the SQLite store at ``path`` and run its writer task until the block exits.

    On exit every write already queued is committed before the database is closed (the drain is shielded from
    cancellation so that a shutdown by SIGINT does not drop acknowledged-in-progress writes).
    """
    store = SqliteStore(str(path), config or StoreConfig())
    await trio.to_thread.run_sync(store._open_sync)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store._run_writer)
            try:
                yield store
            finally:
                with trio.CancelScope(shield=True):
                    await store.aclose()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(store._close_sync)
