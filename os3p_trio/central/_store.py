"""The Central System's store: a small repository interface and the records it returns.

Protocol code (handlers, boot policy, the operator API) talks only to :class:`Store`.  The first
implementation is SQLite (:mod:`._sqlite`); a server database can implement the same interface later
without touching anything that speaks OS³P.

Every write method is ``async`` and returns only after its data is **committed** (durable to the level the
implementation documents).  That is what lets the Central System send the CALLRESULT for a station-initiated
message only after the data is stored (PROTOCOL-DECISIONS §7: "The Central System sends the CALLRESULT for any
station-initiated notification or meter value only after the data is committed to its store").

Payload arguments are wire-format dicts (camelCase keys, exactly as the schemas in ``schemas/`` describe them,
already validated by the connection).  The store keeps the fields it indexes in columns and the whole
payload as
JSON, so nothing a station reports is lost even where no column exists for it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

import attrs

__all__ = [
    "BootStatus",
    "ConnectionOwner",
    "EventKind",
    "EventRecord",
    "FleetSummary",
    "MeterValueRecord",
    "RetentionPolicy",
    "RetentionReport",
    "SchemaTooNew",
    "StationExists",
    "StationRecord",
    "StationState",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UnknownStation",
    "UploadRecord",
]


class BootStatus(enum.StrEnum):
    """A BootNotificationResponse ``status`` (annex §6.1)."""

    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


class EventKind(enum.StrEnum):
    """What a row of the event log records.  Values are the OS³P action that carried it, or a local event."""

    BOOT = "BootNotification"
    STATUS = "StatusNotification"
    STREETLIGHT_STATUS = "StreetlightStatusNotification"
    STREETLIGHT_MODE = "StreetlightModeStatusNotification"
    FIRMWARE_STATUS = "FirmwareStatusNotification"
    FILE_STATUS = "GetFileStatusNotification"
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"


class StoreError(Exception):
    """Base class of the store's own errors (database failures propagate as they are)."""


class UnknownStation(StoreError, KeyError):
    """The identity is not registered."""


class StationExists(StoreError):
    """``add_station`` for an identity that is already registered."""


class StoreUnavailable(StoreError):
    """The store cannot be opened or used: unreachable server, refused credentials, missing permissions, a
    failed migration, a damaged file.  ``str()`` is one line naming the database and the cause, fit for an
    operator (the CLI prints it and exits non-zero; nothing is half-migrated)."""


class SchemaTooNew(StoreUnavailable):
    """The database was written by a newer release (its schema version is above the one this code knows);
    it is refused rather than misread."""


@attrs.frozen(slots=True)
class RetentionPolicy:
    """How long history is kept (``None``: for ever).  Applied by :meth:`Store.apply_retention`."""

    #: Meter values older than this many days (by their sample timestamp) are removed.
    meter_days: float | None = None
    #: Event-log rows older than this many days are removed.  The latest event of each kind per contactor
    #: (a station's effective state) is never removed, whatever its age.
    events_days: float | None = None


@attrs.frozen(slots=True)
class RetentionReport:
    """What one :meth:`Store.apply_retention` pass removed."""

    meter_values: int
    events: int


@attrs.frozen(slots=True)
class ConnectionOwner:
    """Who holds a station's connection, by the store's authority (cluster fencing).

    ``epoch`` grows by one with every :meth:`Store.claim_connection` of the identity, on any node; a write
    that carries an older epoch is from a superseded connection and is refused.
    """

    identity: str
    node_id: str | None
    epoch: int
    connected: bool


@attrs.frozen(slots=True)
class StationRecord:
    """One registered station as the store knows it.

    Times are POSIX seconds (UTC) from the Central System's clock, ``None`` when it never happened.
    """

    identity: str
    #: Keyed hash of the station's password (HMAC-SHA256 with the server secret, hex), ``None``: no password
    #: set.
    password_hash: str | None
    registered_at: float
    #: ``"operator"`` (``stations add`` / API) or ``"open-registration"`` (registered on first connection).
    registered_by: str
    #: Per-station BootNotification answer set by the operator; ``None`` means the server default.
    boot_status_override: BootStatus | None
    #: Fields of the last BootNotification received, and the status it was answered with.
    boot_fields: Mapping[str, Any] | None
    boot_status: BootStatus | None
    boot_at: float | None
    #: True when the last BootNotification was answered Accepted: the station may reconnect without a new
    #: BootNotification and is served (PROTOCOL-DECISIONS §5, exception (b)).  Survives restarts.
    accepted: bool
    last_heartbeat: float | None
    connected: bool
    connected_at: float | None
    disconnected_at: float | None


@attrs.frozen(slots=True)
class MeterValueRecord:
    """One sampled value (annex §6.5): one row per ``sampledValue``, with the defaults of Table 3 applied."""

    identity: str
    #: The meterValue's ``timestamp`` as POSIX seconds (the service gives an offset-less timestamp the
    #: station zone's offset first, PROTOCOL-DECISIONS §8; the store reads one without offset as UTC).
    timestamp: float
    measurand: str
    #: The value exactly as sent (the schema makes it a string).
    value: str
    #: ``float(value)`` when it parses, else ``None``.
    numeric: float | None
    unit: str | None
    context: str
    format: str
    location: str | None
    received_at: float


@attrs.frozen(slots=True)
class EventRecord:
    """One entry of a station's event log."""

    id: int
    identity: str
    kind: EventKind
    #: The station's timestamp of the event when it gave one, else the time it was received.
    timestamp: float
    received_at: float
    #: Contactor 1–4 for streetlight events (``None``: all contactors, or not applicable).
    contactor_id: int | None
    #: The event's main value: status, mode, firmware/file status, or boot status.
    status: str | None
    #: The whole payload as received (wire format; an offset-less ``timestamp`` given its offset, §8).
    payload: Mapping[str, Any]


@attrs.frozen(slots=True)
class UploadRecord:
    """A file a station uploaded in answer to GetFile (annex §7.5)."""

    id: int
    identity: str
    file_name: str
    size: int
    sha256: str
    received_at: float


@attrs.frozen(slots=True)
class StationState:
    """A station's effective state, derived from what it reported (latest by the station's own timestamps)."""

    station: StationRecord
    #: contactor id (1–4) -> last reported ``On``/``Off`` event.
    contactors: Mapping[int, EventRecord]
    #: contactor id -> last reported mode; key ``0`` holds a mode reported for all contactors at once.
    modes: Mapping[int, EventRecord]
    last_status: EventRecord | None
    firmware_status: EventRecord | None
    file_status: EventRecord | None
    #: measurand -> its latest sampled value.
    last_readings: Mapping[str, MeterValueRecord]


@attrs.frozen(slots=True)
class FleetSummary:
    """Counts over the whole fleet (operator dashboard, demo)."""

    stations: int
    connected: int
    accepted: int
    #: firmwareVersion of the last BootNotification -> stations reporting it.
    firmware_versions: Mapping[str, int]
    #: Contactors whose latest StreetlightStatusNotification says ``On``.
    lights_on: int
    meter_values: int
    #: Event kind -> rows (Connected/Disconnected included).
    events: Mapping[str, int]
    uploads: int


class Store(Protocol):
    """The repository interface of the Central System.  All methods may block, so all are ``async``.

    Write methods return after commit.  ``now`` arguments are POSIX seconds from the caller's clock (the store
    never reads a clock, so tests control time).
    """

    # --- stations -------------------------------------------------------------------------------------------
    async def add_station(
        self, identity: str, password_hash: str | None, now: float, *, registered_by: str = "operator"
    ) -> StationRecord:
        """Register ``identity``; raises :class:`StationExists` if it is registered already."""
        ...

    async def ensure_station(self, identity: str, now: float, *, registered_by: str) -> StationRecord:
        """Register ``identity`` unless it exists (open registration); return its record either way."""
        ...

    async def set_password_hash(self, identity: str, password_hash: str | None) -> None:
        """Replace a station's password hash.  Raises :class:`UnknownStation`."""
        ...

    async def set_boot_status_override(self, identity: str, status: BootStatus | None) -> None:
        """Set (or clear, with ``None``) the BootNotification answer for one station."""
        ...

    async def remove_station(self, identity: str) -> None:
        """Forget a station and everything it reported.  Raises :class:`UnknownStation`."""
        ...

    async def get_station(self, identity: str) -> StationRecord | None:
        """The station's record, or ``None`` when it is not registered."""
        ...

    async def list_stations(
        self, *, after: str | None = None, limit: int | None = None, connected: bool | None = None
    ) -> list[StationRecord]:
        """Registered stations by identity: those after ``after`` (keyset paging), at most ``limit``, only
        (dis)connected ones when ``connected`` is given."""
        ...

    # --- what happens on connections ------------------------------------------------------------------------
    async def record_connection(self, identity: str, connected: bool, now: float) -> None:
        """A connection of ``identity`` opened or closed."""
        ...

    async def mark_all_disconnected(self, now: float) -> int:
        """At start-up: no station is connected (a crash may have left rows saying otherwise)."""
        ...

    async def claim_connection(self, identity: str, node_id: str, now: float) -> int:
        """A connection of ``identity`` is being accepted on node ``node_id``: bump the identity's connection
        epoch, record it as connected there, and return the new epoch -- all in one committed write, made
        before the 101 answer.  Raises :class:`UnknownStation`."""
        ...

    async def release_connection(self, identity: str, epoch: int, now: float) -> bool:
        """The connection with ``epoch`` closed.  Records the disconnect only when ``epoch`` is still the
        newest; returns False (and writes nothing) when a newer connection has claimed the identity since, so
        a late "Disconnected" never overwrites a newer "Connected"."""
        ...

    async def connection_owner(self, identity: str) -> ConnectionOwner | None:
        """The node and epoch of the identity's newest connection (``None``: not registered)."""
        ...

    async def mark_node_disconnected(self, node_id: str, now: float) -> int:
        """A node is gone: every station still recorded as connected on it is recorded as disconnected (epochs
        are left as they are).  Returns how many."""
        ...

    async def record_boot(
        self, identity: str, fields: Mapping[str, Any], status: BootStatus, now: float
    ) -> None:
        """A BootNotification and the status it is answered with (stored before the answer is sent)."""
        ...

    async def record_heartbeat(self, identity: str, now: float) -> None:
        """A Heartbeat arrived."""
        ...

    async def record_meter_values(
        self, identity: str, meter_value: Sequence[Mapping[str, Any]], now: float
    ) -> int:
        """A MeterValues ``meterValue`` list; one row per sampled value.  Returns the rows written.

        Idempotent: a resent sample (same timestamp, measurand, location, context) is stored once.
        """
        ...

    async def record_event(
        self, identity: str, kind: EventKind, payload: Mapping[str, Any], now: float
    ) -> bool:
        """A notification (status, streetlight status/mode, firmware/file status).

        Returns False for a duplicate of a guaranteed-delivery event already stored (PROTOCOL-DECISIONS §7
        delivers at least once)."""
        ...

    async def record_upload(
        self, identity: str, file_name: str, size: int, sha256: str, now: float
    ) -> UploadRecord:
        """A GetFile upload was received and written to disk."""
        ...

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
        """Sampled values of one station, oldest first, ``since <= timestamp < until``, at most ``limit``."""
        ...

    async def events(
        self, identity: str, *, kind: EventKind | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """The station's event log, newest first, at most ``limit``."""
        ...

    def stream_meter_values(
        self,
        identity: str | None,
        *,
        measurand: str | None = None,
        since: float | None = None,
        until: float | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[list[MeterValueRecord]]:
        """Sampled values, oldest first (by sample time, then station), of one station or (``None``) of all,
        ``since <= timestamp < until``, in lists of at most ``batch``.  Keyset-paged: memory stays constant
        however long the history (export, CSV/JSONL streaming)."""
        ...

    def stream_events(
        self,
        identity: str | None,
        *,
        kind: EventKind | None = None,
        since: float | None = None,
        until: float | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[list[EventRecord]]:
        """Event-log rows, oldest first, of one station or of all, ``since <= received_at < until``, in lists
        of at most ``batch``; keyset-paged like :meth:`stream_meter_values`."""
        ...

    async def latest_readings(
        self, measurand: str, *, after: str | None = None, limit: int = 1000
    ) -> list[MeterValueRecord]:
        """For each station (by identity, after ``after``, at most ``limit``), its latest value of
        ``measurand``; stations that never reported it are left out."""
        ...

    async def apply_retention(self, now: float) -> RetentionReport:
        """Remove history older than the store's :class:`RetentionPolicy` allows, without stalling the event
        loop (small batches, or whole partitions where the database has them)."""
        ...

    async def uploads(self, identity: str) -> list[UploadRecord]:
        """Files the station uploaded, newest first."""
        ...

    async def station_state(self, identity: str) -> StationState | None:
        """The effective state of one station, ``None`` when it is not registered."""
        ...

    async def fleet_summary(self) -> FleetSummary:
        """Counts over every station (cost grows with the history: meant for dashboards, not hot paths)."""
        ...
