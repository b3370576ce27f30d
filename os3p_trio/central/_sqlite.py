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
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs
import trio

from ._meter_codec import EXTRA, SampleDescriptor, decode_sample, encode_sample, profile_of_key
from ._store import (
    BootStatus,
    ConnectionOwner,
    EventKind,
    EventRecord,
    FleetSummary,
    MeterValueRecord,
    RetentionPolicy,
    RetentionReport,
    SchemaTooNew,
    StationExists,
    StationRecord,
    StationState,
    StoreError,
    StoreUnavailable,
    UnknownStation,
    UploadRecord,
)

__all__ = ["SqliteStore", "StoreConfig", "open_sqlite_store"]

T = TypeVar("T")

#: The schema this code writes.  1: the release before the wide meter layout (one row per sampled value);
#: 2: stations get an integer id and a connection epoch, meter values are stored one row per meterValue
#: (:mod:`._meter_codec`).  An older file is upgraded in place on open (one transaction); a newer one is
#: refused (:class:`~._store.SchemaTooNew`).
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE stations (
    -- A compact key for the meter tables (an alias of the rowid: VACUUM never renumbers it).
    id                   INTEGER PRIMARY KEY,
    identity             TEXT NOT NULL UNIQUE,
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
    disconnected_at      REAL,
    -- Cluster fencing: the node holding the newest connection and its epoch (claim_connection).
    node_id              TEXT,
    epoch                INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX stations_by_node ON stations (node_id) WHERE connected = 1;
-- The wide meter layout: one row per meterValue.  ``profile_id`` names the ordered descriptors of its sampled
-- values (measurand, unit, context, format, location, decimals), ``packed`` their scaled integers (4 or 8
-- bytes each).  WITHOUT ROWID: the primary key is the table, no second copy of the key.
CREATE TABLE meter_profiles (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);
CREATE TABLE meter_samples (
    station_id  INTEGER NOT NULL,
    ts          REAL NOT NULL,
    profile_id  INTEGER NOT NULL,
    received_at REAL NOT NULL,
    packed      BLOB NOT NULL,
    PRIMARY KEY (station_id, ts, profile_id)
) WITHOUT ROWID;
-- Every station's history by time (export of all stations, retention).
CREATE INDEX meter_samples_by_time ON meter_samples (ts);
-- Values that are not plain decimal numerals, verbatim (nothing a station sends is dropped).
CREATE TABLE meter_extras (
    ts         REAL NOT NULL,
    station_id INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (ts, station_id, profile_id, position)
) WITHOUT ROWID;
-- The newest sample of each (station, profile): "last value" of one station or of the whole fleet without
-- touching the history.
CREATE TABLE meter_latest (
    station_id INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    ts         REAL NOT NULL,
    PRIMARY KEY (station_id, profile_id)
) WITHOUT ROWID;
CREATE TABLE events (
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
CREATE INDEX events_latest ON events (identity, kind, contactor_id, ts);
CREATE INDEX events_by_station ON events (identity);
CREATE INDEX events_by_kind ON events (identity, kind);
CREATE UNIQUE INDEX events_dedup ON events (identity, kind, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX events_by_received ON events (received_at);
CREATE TABLE uploads (
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
_EVENT_COLUMNS = "id, identity, kind, ts, received_at, contactor_id, status, payload"
_SAMPLE_COLUMNS = "s.identity, m.station_id, m.ts, m.profile_id, m.received_at, m.packed"

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
    #: How long history is kept (:meth:`SqliteStore.apply_retention`); the default keeps everything, the
    #: service passes ``--retain-meter-days`` / ``--retain-events-days``.
    retention: RetentionPolicy = attrs.field(factory=RetentionPolicy)
    #: Rows one retention step deletes (one small write among the others, so neither the event loop nor the
    #: stations' writes wait for a long delete).
    retention_batch: int = attrs.field(default=2000, validator=attrs.validators.ge(1))


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


def _station_id(conn: sqlite3.Connection, identity: str) -> int:
    row = conn.execute("SELECT id FROM stations WHERE identity = ?", (identity,)).fetchone()
    if row is None:
        raise UnknownStation(identity)
    return int(row[0])


def _require_station(conn: sqlite3.Connection, identity: str) -> None:
    _station_id(conn, identity)


def _update_station(conn: sqlite3.Connection, identity: str, sql: str, params: Sequence[Any]) -> None:
    if conn.execute(f"UPDATE stations SET {sql} WHERE identity = ?", (*params, identity)).rowcount == 0:
        raise UnknownStation(identity)


def _log_connection(conn: sqlite3.Connection, identity: str, kind: EventKind, now: float) -> None:
    conn.execute(
        "INSERT INTO events (identity, kind, ts, received_at, payload) VALUES (?,?,?,?,'{}')",
        (identity, kind.value, now, now),
    )


def _sample_key(item: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What makes a sampled value the same sample again (a resend): measurand, location, context (Table 3's
    default applied, as the narrow layout's unique index had it)."""
    return item.get("measurand"), item.get("location"), item.get("context", _DEFAULT_CONTEXT)


def _descriptor_key(d: SampleDescriptor) -> tuple[Any, Any, Any]:
    return d.measurand, d.location, d.context if d.context is not None else _DEFAULT_CONTEXT


# --- writing samples (one policy for record_meter_values and the migration) -------------------------------


class _Profiles:
    """Profile ids by key (writer side) and descriptors by id (both sides).  Profiles are never deleted, so a
    cached id stays valid; the writer forgets its cache when a transaction rolls back (an id it just
    inserted may be gone)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.descriptors: dict[int, tuple[SampleDescriptor, ...]] = {}

    def id_for(self, conn: sqlite3.Connection, key: str) -> int:
        pid = self.ids.get(key)
        if pid is None:
            conn.execute("INSERT OR IGNORE INTO meter_profiles (key) VALUES (?)", (key,))
            (pid,) = conn.execute("SELECT id FROM meter_profiles WHERE key = ?", (key,)).fetchone()
            self.ids[key] = pid
            self.descriptors[pid] = profile_of_key(key)
        return pid

    def get(self, conn: sqlite3.Connection, pid: int) -> tuple[SampleDescriptor, ...]:
        found = self.descriptors.get(pid)
        if found is None:
            (key,) = conn.execute("SELECT key FROM meter_profiles WHERE id = ?", (pid,)).fetchone()
            found = self.descriptors[pid] = profile_of_key(key)
        return found

    def all(self, conn: sqlite3.Connection) -> dict[int, tuple[SampleDescriptor, ...]]:
        for pid, key in conn.execute("SELECT id, key FROM meter_profiles").fetchall():
            if pid not in self.descriptors:
                self.descriptors[pid] = profile_of_key(key)
        return dict(self.descriptors)


def _insert_samples(
    conn: sqlite3.Connection,
    profiles: _Profiles,
    station_id: int,
    entries: Sequence[tuple[float, Sequence[Mapping[str, Any]]]],
    received_at: float,
) -> int:
    """Store ``(timestamp, sampledValue list)`` entries of one station; returns the values written.

    Idempotent per sampled value (measurand, location, context at one timestamp), as the narrow layout's
    unique index was: a value already stored at that timestamp, by this MeterValues or an earlier one, is
    left out; a sample left empty is not written."""
    written = 0
    for ts, sampled in entries:
        seen: set[tuple[Any, Any, Any]] = set()
        for (pid,) in conn.execute(
            "SELECT profile_id FROM meter_samples WHERE station_id = ? AND ts = ?", (station_id, ts)
        ).fetchall():
            seen.update(_descriptor_key(d) for d in profiles.get(conn, pid))
        fresh: list[Mapping[str, Any]] = []
        for item in sampled:
            key = _sample_key(item)
            if key not in seen:
                seen.add(key)
                fresh.append(item)
        if not fresh:
            continue
        encoded = encode_sample(fresh)
        pid = profiles.id_for(conn, encoded.profile_key)
        conn.execute(
            "INSERT INTO meter_samples (station_id, ts, profile_id, received_at, packed) VALUES (?,?,?,?,?)",
            (station_id, ts, pid, received_at, encoded.packed),
        )
        if encoded.extras:
            conn.executemany(
                "INSERT INTO meter_extras (ts, station_id, profile_id, position, value) VALUES (?,?,?,?,?)",
                [(ts, station_id, pid, position, text) for position, text in encoded.extras],
            )
        conn.execute(
            "INSERT INTO meter_latest (station_id, profile_id, ts) VALUES (?,?,?) "
            "ON CONFLICT (station_id, profile_id) DO UPDATE SET ts = max(ts, excluded.ts)",
            (station_id, pid, ts),
        )
        written += len(fresh)
    return written


def _decode_rows(
    conn: sqlite3.Connection, profiles: _Profiles, rows: Sequence[Sequence[Any]], measurand: str | None = None
) -> list[MeterValueRecord]:
    """Sample rows (``_SAMPLE_COLUMNS``) as one record per sampled value (Table 3 defaults applied)."""
    out: list[MeterValueRecord] = []
    for identity, station_id, ts, pid, received_at, packed in rows:
        profile = profiles.get(conn, pid)
        extras: list[tuple[int, str]] = []
        if any(d.scale == EXTRA for d in profile):
            extras = conn.execute(
                "SELECT position, value FROM meter_extras WHERE ts = ? AND station_id = ? AND profile_id = ?",
                (ts, station_id, pid),
            ).fetchall()
        for d, text in decode_sample(profile, packed, extras):
            if measurand is not None and d.measurand != measurand:
                continue
            out.append(
                MeterValueRecord(
                    identity=identity,
                    timestamp=ts,
                    measurand=d.measurand or "",
                    value=text,
                    numeric=_to_float(text),
                    unit=d.unit,
                    context=d.context if d.context is not None else _DEFAULT_CONTEXT,
                    format=d.format if d.format is not None else _DEFAULT_FORMAT,
                    location=d.location,
                    received_at=received_at,
                )
            )
    return out


def _value_count(
    conn: sqlite3.Connection, profiles: _Profiles, where: str = "", params: Sequence[Any] = ()
) -> int:
    """Sampled values held by the samples matching ``where`` (a sample holds one per profile position)."""
    return sum(
        count * len(profiles.get(conn, pid))
        for pid, count in conn.execute(
            f"SELECT profile_id, count(*) FROM meter_samples {where} GROUP BY profile_id", params
        ).fetchall()
    )


# --- migrations -------------------------------------------------------------------------------------------


def _statements(script: str) -> list[str]:
    """``script`` as single statements (``executescript`` would COMMIT first: migrations run in one
    transaction)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _statements(_SCHEMA):
        conn.execute(statement)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: stations get an integer id and the fencing columns; the narrow ``meter_values`` rows
    (one per sampled value) become wide samples (one per meterValue: the rows of one station with the same
    timestamp and arrival time, in their stored order), every value kept exactly as read before."""
    for table in ("meta", "stations", "events", "uploads"):
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f'DROP INDEX "{name}"')
    _create_schema(conn)
    conn.execute("INSERT INTO meta (key, value) SELECT key, value FROM meta_v1")
    columns = _STATION_COLUMNS
    conn.execute(f"INSERT INTO stations ({columns}) SELECT {columns} FROM stations_v1 ORDER BY identity")
    event_columns = f"{_EVENT_COLUMNS}, dedup_key"
    conn.execute(f"INSERT INTO events ({event_columns}) SELECT {event_columns} FROM events_v1")
    upload_columns = "id, identity, file_name, size, sha256, received_at"
    conn.execute(f"INSERT INTO uploads ({upload_columns}) SELECT {upload_columns} FROM uploads_v1")
    profiles = _Profiles()
    cursor = conn.execute(
        "SELECT s.id, v.ts, v.received_at, v.measurand, v.value, v.unit, v.context, v.format, v.location "
        "FROM meter_values v JOIN stations s ON s.identity = v.identity "
        "ORDER BY s.id, v.ts, v.received_at, v.id"
    )
    group: tuple[int, float, float] | None = None
    sampled: list[dict[str, Any]] = []
    for sid, ts, received_at, measurand, value, unit, context, fmt, location in cursor.fetchall():
        if group != (sid, ts, received_at):
            if group is not None:
                _insert_samples(conn, profiles, group[0], [(group[1], sampled)], group[2])
            group, sampled = (sid, ts, received_at), []
        item = {"measurand": measurand, "value": value, "context": context, "format": fmt}
        if unit is not None:
            item["unit"] = unit
        if location is not None:
            item["location"] = location
        sampled.append(item)
    if group is not None:
        _insert_samples(conn, profiles, group[0], [(group[1], sampled)], group[2])
    (old,) = conn.execute("SELECT count(*) FROM meter_values").fetchone()
    new = _value_count(conn, profiles)
    if new != old:
        raise StoreError(f"the meter values did not all carry over ({old} before, {new} after)")
    for table in ("meter_values", "uploads_v1", "events_v1", "stations_v1", "meta_v1"):
        conn.execute(f"DROP TABLE {table}")


#: version -> the step that upgrades a database of that version by one.  Each runs inside the one
#: transaction of the whole upgrade (a failure leaves the file as it was).
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2}


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The file's schema version; ``None`` for an empty file (nothing created yet)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone() is not None:
            raise StoreError("not an os3p-central database (it has tables but no meta table)")
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise StoreError("not an os3p-central database (no schema_version in meta)")
    return int(row[0])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    """Create the schema in an empty file, or upgrade an older one, in one transaction; refuse a newer one."""
    # Foreign keys off during the upgrade: rebuilding ``stations`` must not cascade into the event log.  (The
    # pragma is a no-op inside a transaction, hence here.)
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _schema_version(conn)
            if version is None:
                _create_schema(conn)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{path}: schema version {version} was written by a newer os3p release "
                    f"(this one knows up to {SCHEMA_VERSION}); upgrade os3p to open it"
                )
            else:
                while version < SCHEMA_VERSION:
                    try:
                        _MIGRATIONS[version](conn)
                    except Exception as exc:
                        raise StoreUnavailable(
                            f"{path}: upgrading schema version {version} to {version + 1} failed, the file "
                            f"is unchanged: {_one_line(exc)}"
                        ) from exc
                    version += 1
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
                problems = conn.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise StoreUnavailable(f"{path}: the upgrade left {len(problems)} dangling references")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA foreign_keys=ON")


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
        # One cache per connection: each is touched only by the thread using that connection, one at a time.
        self._write_profiles = _Profiles()
        self._read_profiles = _Profiles()
        #: Counters for benchmarks and the operator: committed batches and operations.
        self.batches_committed = 0
        self.operations_committed = 0

    # --- plumbing -------------------------------------------------------------------------------------------
    def _open_sync(self) -> None:
        try:
            self._writer_conn = _connect(self.path, self.config)
            _prepare(self._writer_conn, self.path)
            self._reader_conn = _connect(self.path, self.config)
        except StoreUnavailable:
            self._close_sync()
            raise
        except (sqlite3.Error, StoreError, OSError, ValueError) as exc:
            self._close_sync()
            raise StoreUnavailable(f"{self.path}: cannot open the database: {_one_line(exc)}") from exc

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
                    # A profile this operation inserted is gone with it.
                    self._write_profiles = _Profiles()
                    op.error = exc
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException as exc:
            # The transaction as a whole failed (I/O error, disk full...): nothing of it is committed.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._write_profiles = _Profiles()
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
                # thread cannot be abandoned half-way through a transaction anyway.
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
            sid = _station_id(conn, identity)
            # The meter tables key by the station's integer id (no foreign key: it would cost an index).
            for table in ("meter_samples", "meter_extras", "meter_latest"):
                conn.execute(f"DELETE FROM {table} WHERE station_id = ?", (sid,))
            conn.execute("DELETE FROM stations WHERE id = ?", (sid,))

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
            _log_connection(conn, identity, kind, now)

        await self._write(fn)

    async def mark_all_disconnected(self, now: float) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE stations SET connected = 0, disconnected_at = ? WHERE connected = 1", (now,)
            ).rowcount

        return await self._write(fn)

    async def claim_connection(self, identity: str, node_id: str, now: float) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE stations SET epoch = epoch + 1, node_id = ?, connected = 1, connected_at = ? "
                "WHERE identity = ? RETURNING epoch",
                (node_id, now, identity),
            ).fetchone()
            if row is None:
                raise UnknownStation(identity)
            _log_connection(conn, identity, EventKind.CONNECTED, now)
            return int(row[0])

        return await self._write(fn)

    async def release_connection(self, identity: str, epoch: int, now: float) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            released = conn.execute(
                "UPDATE stations SET connected = 0, disconnected_at = ? WHERE identity = ? AND epoch = ?",
                (now, identity, epoch),
            ).rowcount
            if not released:
                _station_id(conn, identity)  # UnknownStation when it is gone altogether
                return False
            _log_connection(conn, identity, EventKind.DISCONNECTED, now)
            return True

        return await self._write(fn)

    async def connection_owner(self, identity: str) -> ConnectionOwner | None:
        def fn(conn: sqlite3.Connection) -> ConnectionOwner | None:
            row = conn.execute(
                "SELECT identity, node_id, epoch, connected FROM stations WHERE identity = ?", (identity,)
            ).fetchone()
            return None if row is None else ConnectionOwner(row[0], row[1], row[2], bool(row[3]))

        return await self._read(fn)

    async def mark_node_disconnected(self, node_id: str, now: float) -> int:
        # Like mark_all_disconnected: a state correction, not a connection event (none is logged).
        def fn(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE stations SET connected = 0, disconnected_at = ? WHERE node_id = ? AND connected = 1",
                (now, node_id),
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
        entries = [
            (parse_timestamp(entry.get("timestamp"), now), entry.get("sampledValue", ()))
            for entry in meter_value
        ]

        def fn(conn: sqlite3.Connection) -> int:
            return _insert_samples(conn, self._write_profiles, _station_id(conn, identity), entries, now)

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
        out: list[MeterValueRecord] = []
        limit = max(0, limit)
        pages = self.stream_meter_values(
            identity, measurand=measurand, since=since, until=until, batch=min(limit, 1000) or 1
        )
        async with aclosing(pages):
            async for batch in pages:
                if len(out) >= limit:
                    break
                out.extend(batch[: limit - len(out)])
        return out

    async def stream_meter_values(
        self,
        identity: str | None,
        *,
        measurand: str | None = None,
        since: float | None = None,
        until: float | None = None,
        batch: int = 1000,
    ) -> AsyncGenerator[list[MeterValueRecord], None]:
        batch = max(1, batch)
        # Keyset paging on the primary key (one station) or on the time index (all stations): each page is
        # one indexed range read, whatever the history's length.  A page holds at most ``batch`` samples, so
        # at most ``batch`` × (values per meterValue) records are in memory at once.
        cursor: tuple[Any, ...] | None = None
        pending: list[MeterValueRecord] = []
        while True:
            where = ["m.ts >= ?", "m.ts < ?"]
            params: list[Any] = [-math.inf if since is None else since, math.inf if until is None else until]
            if identity is not None:
                where.append("s.identity = ?")
                params.append(identity)
                order = "m.ts, m.profile_id"
                if cursor is not None:
                    where.append("(m.ts, m.profile_id) > (?, ?)")
                    params.extend(cursor)
            else:
                order = "m.ts, m.station_id, m.profile_id"
                if cursor is not None:
                    where.append("(m.ts, m.station_id, m.profile_id) > (?, ?, ?)")
                    params.extend(cursor)
            sql = (
                f"SELECT {_SAMPLE_COLUMNS} FROM meter_samples m JOIN stations s ON s.id = m.station_id "
                f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
            )
            params.append(batch)

            def page(conn: sqlite3.Connection, sql: str = sql, params: list[Any] = params) -> Any:
                rows = conn.execute(sql, params).fetchall()
                return rows, _decode_rows(conn, self._read_profiles, rows, measurand)

            rows, records = await self._read(page)
            pending.extend(records)
            while len(pending) >= batch:
                yield pending[:batch]
                del pending[:batch]
            if len(rows) < batch:
                break
            last = rows[-1]
            cursor = (last[2], last[3]) if identity is not None else (last[2], last[1], last[3])
        if pending:
            yield pending

    def stream_events(
        self,
        identity: str | None,
        *,
        kind: EventKind | None = None,
        since: float | None = None,
        until: float | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[list[EventRecord]]:
        return self._stream_events(identity, kind, since, until, max(1, batch))

    async def _stream_events(
        self,
        identity: str | None,
        kind: EventKind | None,
        since: float | None,
        until: float | None,
        batch: int,
    ) -> AsyncIterator[list[EventRecord]]:
        last_id = 0
        while True:
            where = ["id > ?", "received_at >= ?", "received_at < ?"]
            params: list[Any] = [
                last_id,
                -math.inf if since is None else since,
                math.inf if until is None else until,
            ]
            if identity is not None:
                where.append("identity = ?")
                params.append(identity)
            if kind is not None:
                where.append("kind = ?")
                params.append(EventKind(kind).value)
            sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
            params.append(batch)

            def page(
                conn: sqlite3.Connection, sql: str = sql, params: list[Any] = params
            ) -> list[EventRecord]:
                return [_event(row) for row in conn.execute(sql, params).fetchall()]

            events = await self._read(page)
            if events:
                yield events
            if len(events) < batch:
                return
            last_id = events[-1].id

    async def latest_readings(
        self, measurand: str, *, after: str | None = None, limit: int = 1000
    ) -> list[MeterValueRecord]:
        def fn(conn: sqlite3.Connection) -> list[MeterValueRecord]:
            profiles = self._read_profiles.all(conn)
            wanted = [
                pid for pid, profile in profiles.items() if any(d.measurand == measurand for d in profile)
            ]
            if not wanted or limit <= 0:
                return []
            marks = ",".join("?" * len(wanted))
            # meter_latest holds one row per (station, profile): the fleet's last values without touching the
            # history; stations in identity order through the identity index.
            rows = conn.execute(
                f"SELECT s.identity, l.station_id, l.ts, l.profile_id FROM stations s "
                f"JOIN meter_latest l ON l.station_id = s.id "
                f"WHERE s.identity > ? AND l.profile_id IN ({marks}) ORDER BY s.identity, l.ts, l.profile_id",
                (after or "", *wanted),
            )
            newest: dict[str, tuple[Any, ...]] = {}
            for row in rows:
                if row[0] not in newest and len(newest) >= limit:
                    break
                newest[row[0]] = row
            out: list[MeterValueRecord] = []
            for _identity, sid, ts, pid in newest.values():
                sample = conn.execute(
                    f"SELECT {_SAMPLE_COLUMNS} FROM meter_samples m JOIN stations s ON s.id = m.station_id "
                    "WHERE m.station_id = ? AND m.ts = ? AND m.profile_id = ?",
                    (sid, ts, pid),
                ).fetchall()
                records = _decode_rows(conn, self._read_profiles, sample, measurand)
                if records:
                    out.append(records[-1])
            return out

        return await self._read(fn)

    async def apply_retention(self, now: float) -> RetentionReport:
        policy = self.config.retention
        step = self.config.retention_batch
        meter_removed = events_removed = 0
        if policy.meter_days is not None:
            cutoff = now - policy.meter_days * 86400.0

            def meter_step(conn: sqlite3.Connection) -> tuple[int, int]:
                keys = conn.execute(
                    "SELECT station_id, ts, profile_id FROM meter_samples WHERE ts < ? ORDER BY ts LIMIT ?",
                    (cutoff, step),
                ).fetchall()
                conn.executemany(
                    "DELETE FROM meter_samples WHERE station_id = ? AND ts = ? AND profile_id = ?", keys
                )
                conn.executemany(
                    "DELETE FROM meter_extras WHERE ts = ? AND station_id = ? AND profile_id = ?",
                    [(ts, sid, pid) for sid, ts, pid in keys],
                )
                values = sum(len(self._write_profiles.get(conn, pid)) for _, _, pid in keys)
                if len(keys) < step:
                    conn.execute("DELETE FROM meter_latest WHERE ts < ?", (cutoff,))
                return len(keys), values

            while True:
                # Each step is one small write in the group commit: stations' writes interleave with it.
                samples, values = await self._write(meter_step)
                meter_removed += values
                if samples < step:
                    break
        if policy.events_days is not None:
            cutoff = now - policy.events_days * 86400.0
            position = 0

            def events_step(conn: sqlite3.Connection) -> tuple[int, int]:
                ids = conn.execute(
                    "SELECT id FROM events WHERE id > ? AND received_at < ? ORDER BY id LIMIT ?",
                    (position, cutoff, step),
                ).fetchall()
                if not ids:
                    return 0, 0
                # The newest event of each kind per contactor is a station's effective state: kept, whatever
                # its age (RetentionPolicy).
                removed = conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?)) AND EXISTS ("
                    "SELECT 1 FROM events n WHERE n.identity = events.identity AND n.kind = events.kind "
                    "AND n.contactor_id IS events.contactor_id "
                    "AND (n.ts > events.ts OR (n.ts = events.ts AND n.id > events.id)))",
                    (json.dumps([i for (i,) in ids]),),
                ).rowcount
                return int(ids[-1][0]), removed

            while True:
                last, removed = await self._write(events_step)
                events_removed += removed
                if last == 0:
                    break
                position = last
        return RetentionReport(meter_values=meter_removed, events=events_removed)

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

        def last_readings(conn: sqlite3.Connection, sid: int) -> dict[str, MeterValueRecord]:
            # meter_latest: the newest sample of each of the station's profiles (a handful), not the history.
            readings: dict[str, MeterValueRecord] = {}
            for pid, ts in conn.execute(
                "SELECT profile_id, ts FROM meter_latest WHERE station_id = ? ORDER BY ts, profile_id", (sid,)
            ).fetchall():
                rows = conn.execute(
                    f"SELECT {_SAMPLE_COLUMNS} FROM meter_samples m JOIN stations s ON s.id = m.station_id "
                    "WHERE m.station_id = ? AND m.ts = ? AND m.profile_id = ?",
                    (sid, ts, pid),
                ).fetchall()
                for record in _decode_rows(conn, self._read_profiles, rows):
                    readings[record.measurand] = record
            return readings

        def fn(conn: sqlite3.Connection) -> StationState | None:
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS}, id FROM stations WHERE identity = ?", (identity,)
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
                last_readings=last_readings(conn, row[-1]),
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
            meter_values = _value_count(conn, self._read_profiles)
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
    path: str | Path, config: StoreConfig | None = None, *, retention: RetentionPolicy | None = None
) -> AsyncIterator[SqliteStore]:
    """Open (creating if needed) the SQLite store at ``path`` and run its writer task until the block exits.

    ``retention`` (when given) replaces ``config.retention``.  A file of an older schema version is upgraded
    in place first (one transaction); one that cannot be opened raises
    :class:`~._store.StoreUnavailable` (:class:`~._store.SchemaTooNew` for a newer release's file).

    On exit every write already queued is committed before the database is closed (the drain is shielded from
    cancellation so that a shutdown by SIGINT does not drop acknowledged-in-progress writes).
    """
    config = config or StoreConfig()
    if retention is not None:
        config = attrs.evolve(config, retention=retention)
    store = SqliteStore(str(path), config)
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
