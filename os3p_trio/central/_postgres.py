"""The PostgreSQL implementation of :class:`~._store.Store` (psycopg 3), with group commit.

Theory of operation
-------------------

The same design as the SQLite store (:mod:`._sqlite`), so PROTOCOL-DECISIONS §7 (the CALLRESULT goes out only
after the data is committed) holds exactly as there:

* Every write method builds an operation (a function of a psycopg connection) and puts it on one bounded trio
  channel; one **writer task** takes everything queued (up to ``max_batch``) and runs it in **one
  transaction** in a worker thread (psycopg's *sync* API: its async API is asyncio-only).  Waiters are
  released only after ``COMMIT`` returned.
* A failing operation must not take the batch with it.  PostgreSQL aborts a whole transaction on any error, so
  the batch first runs optimistically without savepoints (one round trip per statement, none per
  operation); when any operation fails the transaction is rolled back and the batch is run again with a
  ``SAVEPOINT`` per operation, so the failure reaches its own caller alone and the rest commits.  A deadlock
  or serialization failure against another process is retried (bounded).
* Several processes may write to one database: nothing here assumes a single writer.  Profiles are interned
  with ``INSERT ... ON CONFLICT DO NOTHING`` on a separate autocommit connection *before* the batch
  transaction (so an id is cached only once it is committed), partitions are created with ``IF NOT EXISTS``
  the same way, connection epochs are bumped with ``UPDATE ... RETURNING``, meter rows and guaranteed-delivery
  events are inserted with ``ON CONFLICT DO NOTHING`` on their natural keys.

Meter-value layout (wide): one row per ``meterValue`` element -- station id, sample time, profile id, the
packed scaled integers of :mod:`._meter_codec`, received-at -- in ``meter_samples``, range-partitioned by day
on the sample time (partitions are created on demand, so retention drops whole days); values that are not
plain numerals are kept verbatim in ``meter_extras`` (same partitioning).  ``meter_latest`` holds each
station's newest row per profile, so "all stations, last value" reads one small row per station.

Idempotency: the key of a stored sample is (station, sample time, profile); a resent ``meterValue`` element
is stored once, the first one kept.  Timestamps are stored with microsecond resolution (``timestamptz``).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import attrs
import psycopg
import psycopg.errors
import trio

from ._meter_codec import SampleDescriptor, decode_sample, encode_sample, profile_of_key
from ._sqlite import (
    _DEFAULT_CONTEXT,
    _DEFAULT_FORMAT,
    _EVENT_COLUMNS,
    _GUARANTEED,
    _STATION_COLUMNS,
    _event,
    _station,
    _to_float,
    parse_timestamp,
)
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
    StoreUnavailable,
    UnknownStation,
    UploadRecord,
)

__all__ = ["PostgresConfig", "PostgresStore", "open_postgres_store"]

T = TypeVar("T")
Conn = psycopg.Connection[Any]

SCHEMA_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = 86_400
# One lock id for every os3p migration on a database ("os3p" in ASCII).
_MIGRATION_LOCK = 0x6F733370

_SCHEMA_V1 = """
CREATE TABLE os3p_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE stations (
    id                   integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    identity             text COLLATE "C" PRIMARY KEY,
    password_hash        text,
    registered_at        double precision NOT NULL,
    registered_by        text NOT NULL,
    boot_status_override text,
    boot_fields          text,
    boot_status          text,
    boot_at              double precision,
    accepted             boolean NOT NULL DEFAULT false,
    last_heartbeat       double precision,
    connected            boolean NOT NULL DEFAULT false,
    connected_at         double precision,
    disconnected_at      double precision,
    node_id              text,
    epoch                bigint NOT NULL DEFAULT 0
);
CREATE INDEX stations_by_node ON stations (node_id) WHERE connected;
CREATE TABLE meter_profiles (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL UNIQUE);
-- Column order avoids alignment padding: two int4, two timestamptz, then the packed values.
CREATE TABLE meter_samples (
    station_id  integer NOT NULL,
    profile_id  integer NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    packed      bytea NOT NULL,
    PRIMARY KEY (station_id, ts, profile_id)
) PARTITION BY RANGE (ts);
CREATE TABLE meter_extras (
    station_id integer NOT NULL,
    profile_id integer NOT NULL,
    ts         timestamptz NOT NULL,
    position   smallint NOT NULL,
    -- UTF-8 bytes, not text: PostgreSQL text cannot hold NUL, and a station may send one (kept verbatim).
    value      bytea NOT NULL,
    PRIMARY KEY (station_id, ts, profile_id, position)
) PARTITION BY RANGE (ts);
CREATE TABLE meter_latest (
    station_id  integer NOT NULL,
    profile_id  integer NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    packed      bytea NOT NULL,
    extras      text NOT NULL,
    PRIMARY KEY (station_id, profile_id)
) WITH (fillfactor = 50);
CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity     text NOT NULL REFERENCES stations(identity) ON DELETE CASCADE,
    kind         text NOT NULL,
    ts           double precision NOT NULL,
    received_at  double precision NOT NULL,
    contactor_id integer,
    status       text,
    payload      text NOT NULL,
    dedup_key    text
);
CREATE INDEX events_latest ON events (identity, kind, contactor_id, ts);
CREATE INDEX events_by_station ON events (identity, id);
CREATE INDEX events_by_time ON events (received_at, id);
CREATE UNIQUE INDEX events_dedup ON events (identity, kind, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE TABLE uploads (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity    text NOT NULL REFERENCES stations(identity) ON DELETE CASCADE,
    file_name   text NOT NULL,
    size        bigint NOT NULL,
    sha256      text NOT NULL,
    received_at double precision NOT NULL
);
"""

#: version -> DDL that brings a database from version-1 to version (run in the migration transaction).
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}

_RETRY_SQLSTATES = frozenset({"40P01", "40001"})
_PARTITION_NAME = re.compile(r"^meter_(samples|extras)_d(\d+)$")


@attrs.frozen(slots=True)
class PostgresConfig:
    """Settings of the PostgreSQL store; every default is what ``os3p-central serve --db postgresql://...``
    uses."""

    #: Most operations committed in one transaction.
    max_batch: int = attrs.field(default=512, validator=attrs.validators.ge(1))
    #: Most operations waiting for the writer; further writers wait (back-pressure).
    max_pending: int = attrs.field(default=4096, validator=attrs.validators.ge(1))
    #: Reader connections (reads run beside the writer, each on its own connection).
    readers: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    #: Seconds to wait for the server when connecting.
    connect_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    #: How often a batch is retried after a deadlock or serialization failure against another process.
    retries: int = attrs.field(default=20, validator=attrs.validators.ge(0))


@attrs.define(slots=True, eq=False)
class _Op(Generic[T]):
    fn: Callable[[Conn, Mapping[str, int]], T]
    #: Profile keys and partition days the operation needs (made to exist before its transaction).
    profiles: tuple[str, ...] = ()
    days: tuple[int, ...] = ()
    done: trio.Event = attrs.field(factory=trio.Event)
    result: T | None = None
    error: BaseException | None = None


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unavailable(url: str, exc: BaseException) -> StoreUnavailable:
    cause = _one_line(exc)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        cause = f"missing permission ({cause})"
    return StoreUnavailable(f"PostgreSQL database {_redact(url)}: {cause}")


def _dt(seconds: float) -> datetime:
    return _EPOCH + timedelta(microseconds=round(seconds * 1e6))


def _secs(value: datetime) -> float:
    return ((value - _EPOCH) // timedelta(microseconds=1)) / 1e6


def _record(
    identity: str, ts: float, received: float, descriptor: SampleDescriptor, text: str
) -> MeterValueRecord:
    return MeterValueRecord(
        identity=identity,
        timestamp=ts,
        measurand=descriptor.measurand,
        value=text,
        numeric=_to_float(text),
        unit=descriptor.unit,
        context=descriptor.context or _DEFAULT_CONTEXT,
        format=descriptor.format or _DEFAULT_FORMAT,
        location=descriptor.location,
        received_at=received,
    )


def _station_id(conn: Conn, identity: str) -> int:
    row = conn.execute("SELECT id FROM stations WHERE identity = %s", (identity,)).fetchone()
    if row is None:
        raise UnknownStation(identity)
    return int(row[0])


def _update_station(conn: Conn, identity: str, sql: str, params: Sequence[Any]) -> None:
    if conn.execute(f"UPDATE stations SET {sql} WHERE identity = %s", (*params, identity)).rowcount == 0:
        raise UnknownStation(identity)


def _insert_event(conn: Conn, identity: str, kind: EventKind, now: float, status: str | None = None,
                  payload: str = "{}") -> None:
    conn.execute(
        "INSERT INTO events (identity, kind, ts, received_at, status, payload) VALUES (%s,%s,%s,%s,%s,%s)",
        (identity, kind.value, now, now, status, payload),
    )


def _migrate(conn: Conn, url: str) -> None:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction (never half-migrated)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        exists = conn.execute("SELECT to_regclass('os3p_meta') IS NOT NULL").fetchone()
        version = 0
        if exists and exists[0]:
            row = conn.execute("SELECT value FROM os3p_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"PostgreSQL database {_redact(url)}: schema version {version} is newer than this release "
                f"knows ({SCHEMA_VERSION}); upgrade os3p"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute(_MIGRATIONS[target])
        if version < SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO os3p_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )


class PostgresStore:
    """:class:`~._store.Store` on a PostgreSQL database.  Create it with :func:`open_postgres_store`."""

    def __init__(self, url: str, config: PostgresConfig, retention: RetentionPolicy | None = None) -> None:
        self.url = url
        self.config = config
        self.retention = retention or RetentionPolicy()
        self._send: trio.MemorySendChannel[_Op[Any]]
        self._receive: trio.MemoryReceiveChannel[_Op[Any]]
        self._send, self._receive = trio.open_memory_channel(config.max_pending)
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(config.readers)
        self._writer: Conn | None = None
        self._aux: Conn | None = None  # autocommit: profile interning and partition DDL
        self._readers: list[Conn] = []
        self._profile_ids: dict[str, int] = {}
        self._profiles: dict[int, tuple[SampleDescriptor, ...]] = {}
        self._days: set[int] = set()
        self._closed = False
        self.batches_committed = 0
        self.operations_committed = 0

    # --- plumbing -------------------------------------------------------------------------------------------
    def _connect(self, autocommit: bool) -> Conn:
        try:
            return psycopg.connect(
                self.url, autocommit=autocommit, connect_timeout=max(1, round(self.config.connect_timeout))
            )
        except (psycopg.Error, ValueError) as exc:
            raise _unavailable(self.url, exc) from None

    def _open_sync(self) -> None:
        conn = self._connect(False)
        try:
            _migrate(conn, self.url)
        except StoreUnavailable:
            conn.close()
            raise
        except psycopg.Error as exc:
            conn.close()
            raise _unavailable(self.url, exc) from None
        self._writer = conn
        self._aux = self._connect(True)

    def _close_sync(self) -> None:
        for conn in (self._writer, self._aux, *self._readers):
            if conn is not None:
                conn.close()
        self._writer = self._aux = None
        self._readers = []

    def _prepare(self, batch: list[_Op[Any]]) -> None:
        """Committed before the batch: the profiles and day partitions it uses (idempotent, any process)."""
        aux = self._aux
        if aux is None or aux.closed:
            aux = self._aux = self._connect(True)
        for op in batch:
            for key in op.profiles:
                if key not in self._profile_ids:
                    aux.execute(
                        "INSERT INTO meter_profiles (key) VALUES (%s) ON CONFLICT (key) DO NOTHING", (key,)
                    )
                    row = aux.execute("SELECT id FROM meter_profiles WHERE key = %s", (key,)).fetchone()
                    assert row is not None
                    self._profile_ids[key] = int(row[0])
            for day in op.days:
                if day not in self._days:
                    self._create_day(aux, day)
                    self._days.add(day)

    @staticmethod
    def _create_day(aux: Conn, day: int) -> None:
        low, high = _dt(day * _DAY).isoformat(), _dt((day + 1) * _DAY).isoformat()
        for table in ("meter_samples", "meter_extras"):
            # Another process may create it at the same instant: then the catalog refuses the second one.
            with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                aux.execute(
                    f"CREATE TABLE IF NOT EXISTS {table}_d{day} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{low}') TO ('{high}')"
                )

    def _run_ops(self, conn: Conn, batch: list[_Op[Any]], savepoints: bool) -> bool:
        """One transaction over the batch; False when an operation failed without savepoints (rerun)."""
        with conn.transaction():
            for op in batch:
                op.error = None
                try:
                    if savepoints:
                        with conn.transaction():
                            op.result = op.fn(conn, self._profile_ids)
                    else:
                        op.result = op.fn(conn, self._profile_ids)
                except psycopg.Error as exc:
                    if exc.sqlstate in _RETRY_SQLSTATES or isinstance(exc, psycopg.OperationalError):
                        raise  # the whole batch: retried (deadlock) or failed (connection lost)
                    if not savepoints:
                        raise _Rerun() from None
                    op.error = exc
                except Exception as exc:
                    if not savepoints:
                        raise _Rerun() from None
                    op.error = exc
        return True

    def _commit_batch(self, batch: list[_Op[Any]]) -> None:
        attempts = 0
        savepoints = False
        while True:
            try:
                conn = self._writer
                if conn is None or conn.closed or conn.broken:
                    conn = self._writer = self._connect(False)
                self._prepare(batch)
                self._run_ops(conn, batch, savepoints)
            except _Rerun:
                savepoints = True
                continue
            except psycopg.Error as exc:
                if exc.sqlstate in _RETRY_SQLSTATES and attempts < self.config.retries:
                    # Another process locked the same rows in the other order: run the batch again after
                    # a short, growing pause (the other transaction has been let through by now).
                    attempts += 1
                    time.sleep(0.005 * attempts)
                    continue
                failure: BaseException = exc
                if isinstance(exc, psycopg.OperationalError):
                    failure = _unavailable(self.url, exc)
                for op in batch:
                    op.error = failure
                return
            except StoreUnavailable as exc:
                for op in batch:
                    op.error = exc
                return
            break
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
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._commit_batch, batch, limiter=self._write_limiter)
                for op in batch:
                    op.done.set()

    async def _write(
        self, fn: Callable[[Conn, Mapping[str, int]], T], profiles: tuple[str, ...] = (),
        days: tuple[int, ...] = (),
    ) -> T:
        if self._closed:
            raise trio.ClosedResourceError("the store is closed")
        op: _Op[T] = _Op(fn, profiles, days)
        await self._send.send(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[return-value]

    def _read_sync(self, fn: Callable[[Conn], T]) -> T:
        conn = self._readers.pop() if self._readers else self._connect(True)
        try:
            result = fn(conn)
        except psycopg.OperationalError as exc:
            conn.close()
            raise _unavailable(self.url, exc) from None
        except BaseException:
            if conn.broken:
                conn.close()
            else:
                self._readers.append(conn)
            raise
        self._readers.append(conn)
        return result

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        if self._writer is None:
            raise trio.ClosedResourceError("the store is closed")
        return await trio.to_thread.run_sync(self._read_sync, fn, limiter=self._read_limiter)

    def _profile(self, conn: Conn, profile_id: int) -> tuple[SampleDescriptor, ...]:
        found = self._profiles.get(profile_id)
        if found is None:
            row = conn.execute("SELECT key FROM meter_profiles WHERE id = %s", (profile_id,)).fetchone()
            assert row is not None
            found = self._profiles[profile_id] = profile_of_key(row[0])
        return found

    def _profiles_with(self, conn: Conn, measurand: str) -> list[int]:
        ids = []
        for profile_id, key in conn.execute("SELECT id, key FROM meter_profiles").fetchall():
            descriptors = self._profiles.setdefault(profile_id, profile_of_key(key))
            if any(d.measurand == measurand for d in descriptors):
                ids.append(profile_id)
        return ids

    def _decode_rows(
        self, conn: Conn, rows: Sequence[Sequence[Any]], measurand: str | None
    ) -> list[MeterValueRecord]:
        """Rows (identity, station_id, profile_id, ts, received_at, packed) -> records, extras looked up."""
        out: list[MeterValueRecord] = []
        for identity, station_id, profile_id, ts, received, packed in rows:
            profile = self._profile(conn, profile_id)
            extras: list[tuple[int, str]] = []
            if any(d.scale < 0 for d in profile):
                extras = [
                    (int(p), bytes(v).decode())
                    for p, v in conn.execute(
                        "SELECT position, value FROM meter_extras WHERE station_id = %s AND ts = %s "
                        "AND profile_id = %s",
                        (station_id, ts, profile_id),
                    ).fetchall()
                ]
            for descriptor, text in decode_sample(profile, bytes(packed), extras):
                if measurand is None or descriptor.measurand == measurand:
                    out.append(_record(identity, _secs(ts), _secs(received), descriptor, text))
        return out

    # --- stations -------------------------------------------------------------------------------------------
    async def add_station(
        self, identity: str, password_hash: str | None, now: float, *, registered_by: str = "operator"
    ) -> StationRecord:
        def fn(conn: Conn, _: Mapping[str, int]) -> StationRecord:
            row = conn.execute(
                "INSERT INTO stations (identity, password_hash, registered_at, registered_by) "
                f"VALUES (%s,%s,%s,%s) ON CONFLICT (identity) DO NOTHING RETURNING {_STATION_COLUMNS}",
                (identity, password_hash, now, registered_by),
            ).fetchone()
            if row is None:
                raise StationExists(identity)
            return _station(row)

        return await self._write(fn)

    async def ensure_station(self, identity: str, now: float, *, registered_by: str) -> StationRecord:
        def fn(conn: Conn, _: Mapping[str, int]) -> StationRecord:
            conn.execute(
                "INSERT INTO stations (identity, registered_at, registered_by) VALUES (%s,%s,%s) "
                "ON CONFLICT (identity) DO NOTHING",
                (identity, now, registered_by),
            )
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity = %s", (identity,)
            ).fetchone()
            assert row is not None
            return _station(row)

        return await self._write(fn)

    async def set_password_hash(self, identity: str, password_hash: str | None) -> None:
        await self._write(lambda c, _: _update_station(c, identity, "password_hash = %s", (password_hash,)))

    async def set_boot_status_override(self, identity: str, status: BootStatus | None) -> None:
        value = None if status is None else BootStatus(status).value
        await self._write(lambda c, _: _update_station(c, identity, "boot_status_override = %s", (value,)))

    async def remove_station(self, identity: str) -> None:
        def fn(conn: Conn, _: Mapping[str, int]) -> None:
            row = conn.execute(
                "DELETE FROM stations WHERE identity = %s RETURNING id", (identity,)
            ).fetchone()
            if row is None:
                raise UnknownStation(identity)
            for table in ("meter_samples", "meter_extras", "meter_latest"):
                conn.execute(f"DELETE FROM {table} WHERE station_id = %s", (row[0],))

        await self._write(fn)

    async def get_station(self, identity: str) -> StationRecord | None:
        def fn(conn: Conn) -> StationRecord | None:
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity = %s", (identity,)
            ).fetchone()
            return None if row is None else _station(row)

        return await self._read(fn)

    async def list_stations(
        self, *, after: str | None = None, limit: int | None = None, connected: bool | None = None
    ) -> list[StationRecord]:
        sql = f"SELECT {_STATION_COLUMNS} FROM stations WHERE identity > %s"
        params: list[Any] = [after or ""]
        if connected is not None:
            sql += " AND connected = %s"
            params.append(connected)
        sql += " ORDER BY identity LIMIT %s"
        params.append(None if limit is None else max(0, limit))

        def fn(conn: Conn) -> list[StationRecord]:
            return [_station(row) for row in conn.execute(sql, params).fetchall()]

        return await self._read(fn)

    # --- connections ----------------------------------------------------------------------------------------
    async def record_connection(self, identity: str, connected: bool, now: float) -> None:
        def fn(conn: Conn, _: Mapping[str, int]) -> None:
            if connected:
                _update_station(conn, identity, "connected = true, connected_at = %s", (now,))
            else:
                _update_station(conn, identity, "connected = false, disconnected_at = %s", (now,))
            _insert_event(conn, identity, EventKind.CONNECTED if connected else EventKind.DISCONNECTED, now)

        await self._write(fn)

    async def mark_all_disconnected(self, now: float) -> int:
        def fn(conn: Conn, _: Mapping[str, int]) -> int:
            return conn.execute(
                "UPDATE stations SET connected = false, disconnected_at = %s WHERE connected", (now,)
            ).rowcount

        return await self._write(fn)

    async def claim_connection(self, identity: str, node_id: str, now: float) -> int:
        def fn(conn: Conn, _: Mapping[str, int]) -> int:
            # One statement: the row lock makes concurrent claims from several nodes serialize, each seeing
            # the other's epoch (READ COMMITTED re-reads the updated row).
            row = conn.execute(
                "UPDATE stations SET epoch = epoch + 1, node_id = %s, connected = true, connected_at = %s "
                "WHERE identity = %s RETURNING epoch",
                (node_id, now, identity),
            ).fetchone()
            if row is None:
                raise UnknownStation(identity)
            _insert_event(conn, identity, EventKind.CONNECTED, now)
            return int(row[0])

        return await self._write(fn)

    async def release_connection(self, identity: str, epoch: int, now: float) -> bool:
        def fn(conn: Conn, _: Mapping[str, int]) -> bool:
            row = conn.execute(
                "UPDATE stations SET connected = false, disconnected_at = %s "
                "WHERE identity = %s AND epoch = %s RETURNING 1",
                (now, identity, epoch),
            ).fetchone()
            if row is None:
                _station_id(conn, identity)  # UnknownStation when it is gone altogether
                return False
            _insert_event(conn, identity, EventKind.DISCONNECTED, now)
            return True

        return await self._write(fn)

    async def connection_owner(self, identity: str) -> ConnectionOwner | None:
        def fn(conn: Conn) -> ConnectionOwner | None:
            row = conn.execute(
                "SELECT node_id, epoch, connected FROM stations WHERE identity = %s", (identity,)
            ).fetchone()
            return None if row is None else ConnectionOwner(identity, row[0], int(row[1]), bool(row[2]))

        return await self._read(fn)

    async def mark_node_disconnected(self, node_id: str, now: float) -> int:
        def fn(conn: Conn, _: Mapping[str, int]) -> int:
            return conn.execute(
                "UPDATE stations SET connected = false, disconnected_at = %s "
                "WHERE node_id = %s AND connected",
                (now, node_id),
            ).rowcount

        return await self._write(fn)

    async def record_boot(
        self, identity: str, fields: Mapping[str, Any], status: BootStatus, now: float
    ) -> None:
        status = BootStatus(status)
        text = json.dumps(dict(fields), sort_keys=True)

        def fn(conn: Conn, _: Mapping[str, int]) -> None:
            # PROTOCOL-DECISIONS §5: acceptance is remembered per identity, durably.
            _update_station(
                conn, identity, "boot_fields = %s, boot_status = %s, boot_at = %s, accepted = %s",
                (text, status.value, now, status is BootStatus.ACCEPTED),
            )
            _insert_event(conn, identity, EventKind.BOOT, now, status.value, text)

        await self._write(fn)

    async def record_heartbeat(self, identity: str, now: float) -> None:
        await self._write(lambda c, _: _update_station(c, identity, "last_heartbeat = %s", (now,)))

    async def record_meter_values(
        self, identity: str, meter_value: Sequence[Mapping[str, Any]], now: float
    ) -> int:
        rows = []
        for entry in meter_value:
            sampled = list(entry.get("sampledValue", ()))
            if not sampled:
                continue
            ts = _dt(parse_timestamp(entry.get("timestamp"), now))
            rows.append((ts, len(sampled), encode_sample(sampled)))
        received = _dt(now)
        profiles = tuple({r[2].profile_key for r in rows})
        days = tuple({int(_secs(r[0]) // _DAY) for r in rows})

        def fn(conn: Conn, ids: Mapping[str, int]) -> int:
            station = _station_id(conn, identity)
            written = 0
            for ts, count, encoded in rows:
                profile = ids[encoded.profile_key]
                new = conn.execute(
                    "INSERT INTO meter_samples (station_id, profile_id, ts, received_at, packed) "
                    "VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING 1",
                    (station, profile, ts, received, encoded.packed),
                ).fetchone()
                if new is None:
                    continue  # a resend: stored once, the first kept
                written += count
                if encoded.extras:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO meter_extras (station_id, profile_id, ts, position, value) "
                            "VALUES (%s,%s,%s,%s,%s)",
                            [(station, profile, ts, p, v.encode()) for p, v in encoded.extras],
                        )
                conn.execute(
                    "INSERT INTO meter_latest AS l (station_id, profile_id, ts, received_at, packed, extras) "
                    "VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (station_id, profile_id) DO UPDATE SET "
                    "ts = excluded.ts, received_at = excluded.received_at, packed = excluded.packed, "
                    "extras = excluded.extras WHERE l.ts <= excluded.ts",
                    (station, profile, ts, received, encoded.packed, json.dumps(encoded.extras)),
                )
            return written

        return await self._write(fn, profiles, days)

    async def record_event(
        self, identity: str, kind: EventKind, payload: Mapping[str, Any], now: float
    ) -> bool:
        kind = EventKind(kind)
        ts = parse_timestamp(payload.get("timestamp"), now)
        contactor = payload.get("contactorId")
        status = payload.get("mode") if kind is EventKind.STREETLIGHT_MODE else payload.get("status")
        dedup = f"{contactor}|{status}|{payload.get('timestamp')}" if kind in _GUARANTEED else None
        text = json.dumps(dict(payload), sort_keys=True)

        def fn(conn: Conn, _: Mapping[str, int]) -> bool:
            _station_id(conn, identity)
            row = conn.execute(
                "INSERT INTO events (identity, kind, ts, received_at, contactor_id, status, payload, "
                "dedup_key) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (identity, kind, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING 1",
                (identity, kind.value, ts, now, contactor, status, text, dedup),
            ).fetchone()
            return row is not None

        return await self._write(fn)

    async def record_upload(
        self, identity: str, file_name: str, size: int, sha256: str, now: float
    ) -> UploadRecord:
        def fn(conn: Conn, _: Mapping[str, int]) -> UploadRecord:
            _station_id(conn, identity)
            row = conn.execute(
                "INSERT INTO uploads (identity, file_name, size, sha256, received_at) "
                "VALUES (%s,%s,%s,%s,%s) RETURNING id",
                (identity, file_name, size, sha256, now),
            ).fetchone()
            assert row is not None
            return UploadRecord(int(row[0]), identity, file_name, size, sha256, now)

        return await self._write(fn)

    # --- reads ----------------------------------------------------------------------------------------------
    def _meter_page(
        self, conn: Conn, identity: str | None, measurand: str | None, since: float | None,
        until: float | None, after: tuple[Any, ...] | None, rows: int,
    ) -> list[tuple[Any, ...]]:
        sql = (
            "SELECT s.identity, m.station_id, m.profile_id, m.ts, m.received_at, m.packed "
            "FROM meter_samples m JOIN stations s ON s.id = m.station_id WHERE true"
        )
        params: list[Any] = []
        if identity is not None:
            sql += " AND s.identity = %s"
            params.append(identity)
        if measurand is not None:
            sql += " AND m.profile_id = ANY(%s)"
            params.append(self._profiles_with(conn, measurand))
        if since is not None:
            sql += " AND m.ts >= %s"
            params.append(_dt(since))
        if until is not None:
            sql += " AND m.ts < %s"
            params.append(_dt(until))
        if after is not None:
            sql += " AND (m.ts, m.station_id, m.profile_id) > (%s, %s, %s)"
            params.extend(after)
        sql += " ORDER BY m.ts, m.station_id, m.profile_id LIMIT %s"
        params.append(rows)
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    async def meter_values(
        self,
        identity: str,
        *,
        measurand: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[MeterValueRecord]:
        limit = max(0, limit)
        out: list[MeterValueRecord] = []
        async for page in self.stream_meter_values(
            identity, measurand=measurand, since=since, until=until, batch=max(1, min(limit, 1000))
        ):
            out.extend(page)
            if len(out) >= limit:
                break
        return out[:limit]

    async def stream_meter_values(
        self,
        identity: str | None,
        *,
        measurand: str | None = None,
        since: float | None = None,
        until: float | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[list[MeterValueRecord]]:
        batch = max(1, batch)
        after: tuple[Any, ...] | None = None
        pending: list[MeterValueRecord] = []
        while True:
            def fn(
                conn: Conn, after: tuple[Any, ...] | None = after
            ) -> tuple[list[tuple[Any, ...]], list[MeterValueRecord]]:
                page = self._meter_page(conn, identity, measurand, since, until, after, batch)
                return page, self._decode_rows(conn, page, measurand)

            page, records = await self._read(fn)
            pending.extend(records)
            while len(pending) >= batch:
                yield pending[:batch]
                pending = pending[batch:]
            if len(page) < batch:
                break
            last = page[-1]
            after = (last[3], last[1], last[2])
        if pending:
            yield pending

    async def stream_events(
        self,
        identity: str | None,
        *,
        kind: EventKind | None = None,
        since: float | None = None,
        until: float | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[list[EventRecord]]:
        batch = max(1, batch)
        after = (float("-inf"), 0)
        while True:
            sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE (received_at, id) > (%s, %s)"
            params: list[Any] = list(after)
            if identity is not None:
                sql += " AND identity = %s"
                params.append(identity)
            if kind is not None:
                sql += " AND kind = %s"
                params.append(EventKind(kind).value)
            if since is not None:
                sql += " AND received_at >= %s"
                params.append(since)
            if until is not None:
                sql += " AND received_at < %s"
                params.append(until)
            sql += " ORDER BY received_at, id LIMIT %s"
            params.append(batch)

            def fn(conn: Conn, sql: str = sql, params: list[Any] = params) -> list[EventRecord]:
                return [_event(r) for r in conn.execute(sql, params).fetchall()]

            records = await self._read(fn)
            if records:
                yield records
            if len(records) < batch:
                return
            after = (records[-1].received_at, records[-1].id)

    async def events(
        self, identity: str, *, kind: EventKind | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE identity = %s"
        params: list[Any] = [identity]
        if kind is not None:
            sql += " AND kind = %s"
            params.append(EventKind(kind).value)
        sql += " ORDER BY id DESC LIMIT %s"
        params.append(max(0, limit))

        def fn(conn: Conn) -> list[EventRecord]:
            return [_event(row) for row in conn.execute(sql, params).fetchall()]

        return await self._read(fn)

    def _latest_of(
        self, conn: Conn, identity: str, rows: Sequence[Sequence[Any]]
    ) -> dict[str, MeterValueRecord]:
        """measurand -> newest value among ``meter_latest`` rows (profile_id, ts, received_at, packed,
        extras)."""
        best: dict[str, tuple[Any, MeterValueRecord]] = {}
        for profile_id, ts, received, packed, extras in rows:
            pairs = [(int(p), str(v)) for p, v in json.loads(extras)]
            seen: set[str] = set()
            for descriptor, text in decode_sample(self._profile(conn, profile_id), bytes(packed), pairs):
                if descriptor.measurand in seen:
                    continue
                seen.add(descriptor.measurand)
                key = (ts, received)
                current = best.get(descriptor.measurand)
                if current is None or key > current[0]:
                    best[descriptor.measurand] = (key, _record(identity, _secs(ts), _secs(received),
                                                               descriptor, text))
        return {m: record for m, (_, record) in best.items()}

    async def latest_readings(
        self, measurand: str, *, after: str | None = None, limit: int = 1000
    ) -> list[MeterValueRecord]:
        def fn(conn: Conn) -> list[MeterValueRecord]:
            profiles = self._profiles_with(conn, measurand)
            rows = conn.execute(
                "SELECT s.identity, l.profile_id, l.ts, l.received_at, l.packed, l.extras FROM stations s "
                "JOIN meter_latest l ON l.station_id = s.id "
                "WHERE s.identity IN (SELECT s2.identity FROM stations s2 WHERE s2.identity > %s AND EXISTS "
                "(SELECT 1 FROM meter_latest l2 WHERE l2.station_id = s2.id AND l2.profile_id = ANY(%s)) "
                "ORDER BY s2.identity LIMIT %s) AND l.profile_id = ANY(%s) ORDER BY s.identity",
                (after or "", profiles, max(0, limit), profiles),
            ).fetchall()
            out: list[MeterValueRecord] = []
            start = 0
            while start < len(rows):
                end = start
                while end < len(rows) and rows[end][0] == rows[start][0]:
                    end += 1
                latest = self._latest_of(conn, rows[start][0], [r[1:] for r in rows[start:end]])
                if measurand in latest:
                    out.append(latest[measurand])
                start = end
            return out

        return await self._read(fn)

    async def uploads(self, identity: str) -> list[UploadRecord]:
        def fn(conn: Conn) -> list[UploadRecord]:
            rows = conn.execute(
                "SELECT id, identity, file_name, size, sha256, received_at FROM uploads WHERE identity = %s "
                "ORDER BY id DESC",
                (identity,),
            ).fetchall()
            return [UploadRecord(*row) for row in rows]

        return await self._read(fn)

    async def station_state(self, identity: str) -> StationState | None:
        def latest(conn: Conn, kind: EventKind) -> EventRecord | None:
            row = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE identity = %s AND kind = %s "
                "ORDER BY ts DESC, id DESC LIMIT 1",
                (identity, kind.value),
            ).fetchone()
            return None if row is None else _event(row)

        def per_contactor(conn: Conn, kind: EventKind) -> dict[int, EventRecord]:
            rows = conn.execute(
                f"SELECT DISTINCT ON (contactor_id) {_EVENT_COLUMNS} FROM events "
                "WHERE identity = %s AND kind = %s ORDER BY contactor_id, ts DESC, id DESC",
                (identity, kind.value),
            ).fetchall()
            return {(row[5] or 0): _event(row) for row in rows}

        def fn(conn: Conn) -> StationState | None:
            row = conn.execute(
                f"SELECT {_STATION_COLUMNS}, id FROM stations WHERE identity = %s", (identity,)
            ).fetchone()
            if row is None:
                return None
            readings = conn.execute(
                "SELECT profile_id, ts, received_at, packed, extras FROM meter_latest WHERE station_id = %s",
                (row[13],),
            ).fetchall()
            return StationState(
                station=_station(row),
                contactors=per_contactor(conn, EventKind.STREETLIGHT_STATUS),
                modes=per_contactor(conn, EventKind.STREETLIGHT_MODE),
                last_status=latest(conn, EventKind.STATUS),
                firmware_status=latest(conn, EventKind.FIRMWARE_STATUS),
                file_status=latest(conn, EventKind.FILE_STATUS),
                last_readings=self._latest_of(conn, identity, readings),
            )

        return await self._read(fn)

    def _count_values(self, conn: Conn, where: str = "", params: Sequence[Any] = ()) -> int:
        total = 0
        for profile_id, rows in conn.execute(
            f"SELECT profile_id, count(*) FROM meter_samples {where} GROUP BY profile_id",
            params,
        ).fetchall():
            total += len(self._profile(conn, profile_id)) * int(rows)
        return total

    async def fleet_summary(self) -> FleetSummary:
        def fn(conn: Conn) -> FleetSummary:
            stations, connected, accepted = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE connected), count(*) FILTER (WHERE accepted) "
                "FROM stations"
            ).fetchone() or (0, 0, 0)
            versions = dict(
                conn.execute(
                    "SELECT v, count(*) FROM (SELECT boot_fields::jsonb ->> 'firmwareVersion' AS v "
                    "FROM stations) x WHERE v IS NOT NULL GROUP BY v ORDER BY v"
                ).fetchall()
            )
            (lights_on,) = conn.execute(
                "SELECT count(*) FROM (SELECT DISTINCT ON (identity, contactor_id) status FROM events "
                "WHERE kind = %s ORDER BY identity, contactor_id, ts DESC, id DESC) x WHERE status = 'On'",
                (EventKind.STREETLIGHT_STATUS.value,),
            ).fetchone() or (0,)
            events = dict(
                conn.execute("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind").fetchall()
            )
            (uploads,) = conn.execute("SELECT count(*) FROM uploads").fetchone() or (0,)
            return FleetSummary(
                stations=stations, connected=connected, accepted=accepted, firmware_versions=versions,
                lights_on=lights_on, meter_values=self._count_values(conn), events=events, uploads=uploads,
            )

        return await self._read(fn)

    # --- retention ------------------------------------------------------------------------------------------
    async def apply_retention(self, now: float) -> RetentionReport:
        meter = events = 0
        if self.retention.meter_days is not None:
            cutoff = now - self.retention.meter_days * _DAY
            # Whole days that end at or before the cutoff are dropped (detach + drop); the day holding the
            # cutoff is kept until it has aged out entirely: history is kept at least N days, at most N + 1.
            meter = await self._write(lambda c, _: self._drop_days(c, int(cutoff // _DAY)))
            self._days = {d for d in self._days if d >= int(cutoff // _DAY)}
        if self.retention.events_days is not None:
            cutoff = now - self.retention.events_days * _DAY

            def delete_batch(conn: Conn, _: Mapping[str, int]) -> int:
                # Never the latest event of a kind per contactor (a station's effective state).
                return conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.ts < %s AND EXISTS "
                    "(SELECT 1 FROM events n WHERE n.identity = e.identity AND n.kind = e.kind AND "
                    "n.contactor_id IS NOT DISTINCT FROM e.contactor_id AND (n.ts, n.id) > (e.ts, e.id)) "
                    "LIMIT 1000)",
                    (cutoff,),
                ).rowcount

            while True:  # small batches, each its own commit: never one long lock
                removed = await self._write(delete_batch)
                events += removed
                if removed < 1000:
                    break
        return RetentionReport(meter_values=meter, events=events)

    def _drop_days(self, conn: Conn, first_kept_day: int) -> int:
        removed = 0
        names = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('meter_samples', 'meter_extras')"
        ).fetchall()
        for (name,) in names:
            match = _PARTITION_NAME.match(name)
            if match is None or int(match.group(2)) >= first_kept_day:
                continue
            if match.group(1) == "samples":
                removed += self._count_values_in(conn, name)
            conn.execute(f"DROP TABLE {name}")
        conn.execute("DELETE FROM meter_latest WHERE ts < %s", (_dt(first_kept_day * _DAY),))
        return removed

    def _count_values_in(self, conn: Conn, table: str) -> int:
        total = 0
        for profile_id, rows in conn.execute(
            f"SELECT profile_id, count(*) FROM {table} GROUP BY profile_id"
        ).fetchall():
            total += len(self._profile(conn, profile_id)) * int(rows)
        return total

    async def aclose(self) -> None:
        """Stop accepting writes; the writer commits what is queued, then ends."""
        self._closed = True
        await self._send.aclose()


class _Rerun(Exception):
    """An operation failed in a batch run without savepoints: roll back, run again with savepoints."""


@asynccontextmanager
async def open_postgres_store(
    url: str, config: PostgresConfig | None = None, *, retention: RetentionPolicy | None = None
) -> AsyncIterator[PostgresStore]:
    """Open the PostgreSQL store at libpq ``url`` (creating or upgrading its schema in one transaction) and
    run its writer task until the block exits; queued writes are committed before the connections close.

    Raises :class:`~._store.StoreUnavailable` (one line naming the database and the cause) when the server
    cannot be reached, refuses the credentials or the permissions, or the migration fails, and
    :class:`~._store.SchemaTooNew` for a database written by a newer release.
    """
    store = PostgresStore(url, config or PostgresConfig(), retention)
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
