"""The Central System's behaviour: registration and boot policy, handlers for the 8 station-initiated actions,
and operator calls to connected stations.

Everything here talks to the store through :class:`~._store.Store` and to live connections through the small
:class:`StationLink` / :class:`LiveStations` protocols, so the same logic runs on the ``os3p_trio`` server
(see
:mod:`._server`) and in tests.

Handlers store first and answer after: each returns its CALLRESULT payload only once the store's write has
returned, i.e. after commit (PROTOCOL-DECISIONS §7).  A store failure propagates, so the transport answers
``InternalError`` and the station, which never saw a CALLRESULT, retries.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

import attrs

from os3p_core import Action, Role
from os3p_core._converter import DEFAULT_TIME_ZONE, format_datetime, parse_datetime
from os3p_core._validation import validate_request
from os3p_trio import HandshakeRejected, hash_authorization_key, validate_identity
from os3p_trio._handshake import MIN_AUTHORIZATION_KEY_BYTES

from ._store import BootStatus, EventKind, StationRecord, Store, UnknownStation

__all__ = [
    "CentralConfig",
    "CentralSystem",
    "LiveStations",
    "NotConnected",
    "StationLink",
    "UnknownAction",
    "format_time",
]

#: Identity registered by ``--open-registration`` on first connection.
OPEN_REGISTRATION = "open-registration"


def format_time(now: float) -> str:
    """POSIX seconds as an OS³P date-time with ``Z`` (PROTOCOL-DECISIONS §8: we always send an offset)."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


#: The zone of a date-time without offset (the station's ``TimeZone`` key default, PROTOCOL-DECISIONS §6).
_STATION_ZONE: Final = ZoneInfo(DEFAULT_TIME_ZONE)


def _wire_time(text: str) -> str:
    """A date-time as the typed payloads write it: a date-time without offset is local time of the
    station (PROTOCOL-DECISIONS §8, the ``TimeZone`` key's default zone, as ``os3p_core``'s converter reads
    it), always sent and stored with an offset.  The handlers take raw payloads (no typed structuring on the
    hot path), so this one normalisation is all they need to store exactly what the typed path stored."""
    return format_datetime(parse_datetime(text, _STATION_ZONE))


def _with_wire_time(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    text = payload.get("timestamp")
    if not isinstance(text, str):
        return payload
    return {**payload, "timestamp": _wire_time(text)}


class UnknownAction(LookupError):
    """Not one of the 13 actions the Central System sends (annex §7)."""


class NotConnected(Exception):
    """The station is registered but has no live connection."""


class StationLink(Protocol):
    """One live connection to a station, as the operator side needs it."""

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a CS-initiated CALL and return the CALLRESULT payload (wire format).

        ``timeout`` overrides the connection's call timeout (PROTOCOL-DECISIONS §4, default 30 s).  Raises
        ``os3p_trio`` :class:`~os3p_trio.CallFailure` subclasses (CallError received, timeout, closed).
        """
        ...


class LiveStations(Protocol):
    """The registry of live connections (``os3p_trio`` keeps one per server)."""

    def get(self, identity: str) -> StationLink | None:
        """The live connection of ``identity``, or ``None``."""
        ...

    def count(self) -> int:
        """How many stations are connected."""
        ...


@attrs.frozen(slots=True)
class CentralConfig:
    """The Central System's policy; the defaults are those of ``os3p-central serve``."""

    #: Register any valid identity on its first connection (issue 7).  Off: unknown identities get HTTP 404
    #: before the upgrade (§J3.2, PROTOCOL-DECISIONS §1).
    open_registration: bool = False
    #: The BootNotification answer unless a station has its own override (set through the operator API).
    #: Pending and Rejected serve commissioning workflows (annex §3.1).
    boot_status: BootStatus = attrs.field(default=BootStatus.ACCEPTED, converter=BootStatus)
    #: Heartbeat interval in seconds given in an Accepted BootNotificationResponse (annex §3.1: "The interval
    #: field MUST be used to set the frequency of Heartbeat messages").
    heartbeat_interval: int = attrs.field(default=300, validator=attrs.validators.gt(0))
    #: ``interval`` of a Pending or Rejected answer: when the station may boot (Pending) or reconnect
    #: (Rejected)
    #: again (annex §3.1; PROTOCOL-DECISIONS §5).
    retry_interval: int = attrs.field(default=60, validator=attrs.validators.ge(0))


class CentralSystem:
    """Registration, boot policy and the station-initiated handlers of one Central System.

    ``clock`` returns POSIX seconds; tests inject their own.
    """

    def __init__(
        self,
        store: Store,
        config: CentralConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        self.store = store
        #: The server secret of the keyed password hash (issue 5: HMAC-SHA256); ``None``: no passwords.
        self.secret = secret
        self.config = config or CentralConfig()
        self.clock = clock
        self.live: LiveStations | None = None
        #: The WebSocket endpoint URL once the server listens (``ws://host:port/OS3P``), for the operator.
        self.ws_url: str | None = None
        self.handlers: dict[Action, Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]] = {
            Action.BOOT_NOTIFICATION: self.on_boot_notification,
            Action.HEARTBEAT: self.on_heartbeat,
            Action.METER_VALUES: self.on_meter_values,
            Action.STATUS_NOTIFICATION: self._event_handler(EventKind.STATUS),
            Action.STREETLIGHT_STATUS_NOTIFICATION: self._event_handler(EventKind.STREETLIGHT_STATUS),
            Action.STREETLIGHT_MODE_STATUS_NOTIFICATION: self._event_handler(EventKind.STREETLIGHT_MODE),
            Action.FIRMWARE_STATUS_NOTIFICATION: self._event_handler(EventKind.FIRMWARE_STATUS),
            Action.GET_FILE_STATUS_NOTIFICATION: self._event_handler(EventKind.FILE_STATUS),
        }

    # --- registration ---------------------------------------------------------------------------------------
    async def admit(self, identity: str) -> StationRecord | None:
        """The station registry's answer for an incoming connection: its record, or ``None`` for HTTP 404.

        With open registration an unknown (already validated) identity is registered here, durably, before the
        upgrade completes.
        """
        record = await self.store.get_station(identity)
        if record is None and self.config.open_registration:
            record = await self.store.ensure_station(identity, self.clock(), registered_by=OPEN_REGISTRATION)
        return record

    def password_hash(self, identity: str, password: str) -> str:
        """The stored form of a station's password (AuthorizationKey): ``os3p_trio``'s keyed hash, hex."""
        if self.secret is None:
            raise ValueError("no server secret is configured, so no password can be stored")
        if len(password.encode("utf-8")) < MIN_AUTHORIZATION_KEY_BYTES:
            raise ValueError(
                f"a password (AuthorizationKey) needs at least {MIN_AUTHORIZATION_KEY_BYTES} bytes"
            )
        return hash_authorization_key(self.secret, identity, password).hex()

    async def add_station(self, identity: str, password: str | None = None) -> StationRecord:
        """Register a station (operator action).  Raises ``ValueError`` for an invalid identity or password,
        :class:`~._store.StationExists` if it is registered already."""
        try:
            validate_identity(identity)
        except HandshakeRejected as exc:
            raise ValueError(exc.reason) from None
        hashed = None if password is None else self.password_hash(identity, password)
        return await self.store.add_station(identity, hashed, self.clock())

    async def connected(self, identity: str) -> None:
        """A connection of ``identity`` completed its handshake."""
        await self.store.record_connection(identity, True, self.clock())

    async def disconnected(self, identity: str) -> None:
        """A connection of ``identity`` ended."""
        await self.store.record_connection(identity, False, self.clock())

    # --- station-initiated handlers (annex §6) --------------------------------------------------------------
    async def handle(self, identity: str, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Store what a station-initiated CALL reports, then return its CALLRESULT payload (after commit)."""
        return await self.handlers[Action(action)](identity, payload)

    async def boot_status_for(self, identity: str) -> BootStatus:
        """The answer a BootNotification of ``identity`` gets now: its override, else the server default."""
        record = await self.store.get_station(identity)
        if record is not None and record.boot_status_override is not None:
            return record.boot_status_override
        return self.config.boot_status

    async def on_boot_notification(self, identity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """BootNotification (annex §6.1, §3): answer per policy.

        The fields and the answer are stored first, so an acceptance is remembered across connections and
        restarts (PROTOCOL-DECISIONS §5)."""
        status = await self.boot_status_for(identity)
        now = self.clock()
        await self.store.record_boot(identity, payload, status, now)
        interval = (
            self.config.heartbeat_interval if status is BootStatus.ACCEPTED else self.config.retry_interval
        )
        return {"status": status.value, "currentTime": format_time(now), "interval": interval}

    async def on_heartbeat(self, identity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Heartbeat (annex §6.4): remember when, answer the time (§J5.4 clock sync)."""
        now = self.clock()
        await self.store.record_heartbeat(identity, now)
        return {"currentTime": format_time(now)}

    async def on_meter_values(self, identity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """MeterValues (annex §6.5): one row per sampled value, committed before the empty CALLRESULT."""
        entries = [_with_wire_time(entry) for entry in payload.get("meterValue", ())]
        await self.store.record_meter_values(identity, entries, self.clock())
        return {}

    def _event_handler(
        self, kind: EventKind
    ) -> Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]:
        async def handler(identity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
            # A duplicate of a guaranteed-delivery event is acknowledged too: the station resent it because it
            # never saw our CALLRESULT (PROTOCOL-DECISIONS §7), and must now move on.
            await self.store.record_event(identity, kind, _with_wire_time(payload), self.clock())
            return {}

        handler.__name__ = f"on_{kind.name.lower()}"
        return handler

    # --- operator calls (annex §7) --------------------------------------------------------------------------
    async def call(
        self, identity: str, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one of the 13 CS-initiated calls to a connected station and return its CALLRESULT payload.

        ``timeout``: seconds to wait for the answer (default: the connection's call timeout, 30 s).

        Raises :class:`UnknownAction`, :class:`~os3p_core.SchemaViolation` (invalid payload: nothing is sent),
        :class:`~._store.UnknownStation`, :class:`NotConnected`, or what the link raises (``os3p_trio``
        ``CallFailure`` subclasses).
        """
        try:
            known = Action(action)
        except ValueError:
            raise UnknownAction(action) from None
        if known.sender is not Role.CENTRAL_SYSTEM:
            raise UnknownAction(action)
        # Validate before anything else, so a bad payload is reported as such whatever the station's state
        # (PROTOCOL-DECISIONS §4: an invalid outgoing payload raises to the caller and nothing is sent).
        validate_request(known.value, payload)
        link = self.live.get(identity) if self.live is not None else None
        if link is None:
            if await self.store.get_station(identity) is None:
                raise UnknownStation(identity)
            raise NotConnected(identity)
        return await link.call(known.value, payload, timeout=timeout)
