"""The Substation's boot and reconnect policy, sans-IO: one object every station driver runs.

Theory of operation
===================

A :class:`StationBoot` decides *when* a station connects, sends BootNotification and Heartbeat, and closes; a
driver (the trio client, the virtual-time simulation, anyone's asyncio loop) does the I/O and reports what
happened.  Like :class:`~os3p_core.Connection`: inputs are methods that take ``now`` (any monotonic float the
driver's clock gives), what is due comes out of :meth:`StationBoot.next_event`, and the driver sleeps until
:meth:`StationBoot.next_deadline` and then calls :meth:`StationBoot.handle_timeout`.  It never sleeps, never
reads a clock and draws randomness only from the generator it is given.

The rules (PROTOCOL-DECISIONS §5, spec §M3):

- **Connect**: at start (after ``uniform(0, initial_jitter)``) and after every loss, with the
  :class:`~os3p_core.RetryBackOff` of OCPP 2.0.1's shape: attempt *n* waits ``min(max, minimum * 2**min(n,
  repeat)) + uniform(0, range)``.  The attempt count starts over once a connection was accepted.
- **Boot**: on a new connection a BootNotification is sent unless the boot fields equal the last Accepted ones
  (§J5.5, §M3.3 "a BootNotification is not required unless one or more values [...] has changed"); then the
  connection starts accepted (``Connection(previously_accepted=...)`` takes :attr:`StationBoot.remembered`).
- **Accepted**: remember the fields (:class:`BootAccepted`: store them durably), Heartbeat every ``interval``
  (the response's, or the station's ``HeartbeatInterval`` when it was 0, §M3.1).
- **Pending**: answer calls (the driver does), BootNotification again after ``interval`` (60 s when 0).
- **Rejected**: the Central System closes the connection (§M3.1); if it has not after ``reject_close_wait``
  seconds the station closes it; then it waits ``interval`` (60 s when 0) before reconnecting.
- **No usable answer** to a BootNotification (CALLERROR, timeout, invalid payload): close, reconnect with the
  back-off.
- **SecurityError** to any other call means the Central System does not know the station as accepted (it lost
  its state, or the station moved): forget the remembered acceptance (:class:`AcceptanceForgotten`: store that
  too), send a BootNotification at once, and only after Accepted let anything else go (the outbox included:
  :attr:`StationBoot.accepted` is the gate every driver consults).
- **TriggerMessage(BootNotification)** (:meth:`StationBoot.boot_requested`): a BootNotification now, unless
  one
  is in flight.

One deadline at a time: the state says which (reconnect, next boot, close, heartbeat).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._backoff import RandomSource, RetryBackOff

__all__ = [
    "AcceptanceForgotten",
    "BootAccepted",
    "BootNotificationDue",
    "CloseDue",
    "ConnectDue",
    "HeartbeatDue",
    "LinkState",
    "StationBoot",
    "StationBootConfig",
    "StationBootEvent",
]

_log: Final = logging.getLogger("os3p_core.station_boot")

#: PROTOCOL-DECISIONS §5: "waits interval seconds (default 60 when interval is 0)".
DEFAULT_RETRY_INTERVAL: Final = 60.0


class LinkState(enum.Enum):
    """Where the station stands: offline, connecting, or connected in a boot state."""

    #: Not connected; the next attempt is due at :meth:`StationBoot.next_deadline`.
    OFFLINE = "offline"
    #: :class:`ConnectDue` was handed out; the driver reports ``connection_opened`` or ``connection_failed``.
    CONNECTING = "connecting"
    #: Connected, a BootNotification is in flight.
    BOOTING = "booting"
    #: Connected, answered Pending; the next BootNotification is due at the deadline.
    PENDING = "pending"
    #: Connected and accepted (answered now, or remembered): anything may be sent.
    ACCEPTED = "accepted"
    #: Connected, answered Rejected: waiting for the Central System to close.
    REJECTED = "rejected"
    #: :class:`CloseDue` was handed out; waiting for ``connection_lost``.
    CLOSING = "closing"


_CONNECTED: Final = frozenset(
    {LinkState.BOOTING, LinkState.PENDING, LinkState.ACCEPTED, LinkState.REJECTED, LinkState.CLOSING}
)


# --- what is due (handed out by next_event) ---------------------------------------------------------------


@attrs.frozen(slots=True)
class ConnectDue:
    """Open a connection now; report :meth:`StationBoot.connection_opened` or
    :meth:`StationBoot.connection_failed`.

    ``previously_accepted`` is what the new ``Connection`` must be told (§J5.5)."""

    attempt: int
    previously_accepted: bool


@attrs.frozen(slots=True)
class BootNotificationDue:
    """Send this BootNotification payload now; report the answer with ``boot_answered`` / ``boot_failed``."""

    payload: Mapping[str, Any]


@attrs.frozen(slots=True)
class HeartbeatDue:
    """Send a Heartbeat now (§M3.1); its outcome does not matter to the policy."""


@attrs.frozen(slots=True)
class CloseDue:
    """Close the connection now (normal closure), then report :meth:`StationBoot.connection_lost`."""

    reason: str


@attrs.frozen(slots=True)
class BootAccepted:
    """The Central System accepted these boot fields: store them durably (PROTOCOL-DECISIONS §5)."""

    fields: Mapping[str, Any]
    interval: int


@attrs.frozen(slots=True)
class AcceptanceForgotten:
    """A SecurityError said the Central System does not know us as accepted: store that the remembered
    acceptance is gone (the next connection boots, whatever happens now)."""

    code: str


StationBootEvent = (
    ConnectDue | BootNotificationDue | HeartbeatDue | CloseDue | BootAccepted | AcceptanceForgotten
)


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class StationBootConfig:
    """Options of the boot and reconnect policy.  Frozen; every default is sized for a fleet."""

    #: Reconnect (and outbox retry) timing: OCPP 2.0.1's RetryBackOff keys plus a cap.
    backoff: RetryBackOff = attrs.field(factory=RetryBackOff)
    #: Window of the very first connection, seconds (0: at once).  Set it when a whole region powers up
    #: together (after a blackout).
    initial_jitter: float = attrs.field(default=0.0, validator=_non_negative)
    #: Heartbeat interval while the Central System gave none (remembered acceptance, or ``interval`` 0):
    #: the station's ``HeartbeatInterval`` key (PROTOCOL-DECISIONS §6).
    heartbeat_interval: float = attrs.field(default=300.0, validator=_positive)
    #: Send Heartbeats at all (off when the application times its own).
    send_heartbeats: bool = True
    #: Seconds a Rejected station waits for the Central System to close before it closes itself.
    reject_close_wait: float = attrs.field(default=5.0, validator=_positive)


class StationBoot:
    """Boot, heartbeat and reconnect policy of one Substation (sans-IO).

    ``boot_fields``: this boot's BootNotification payload (§M6.1); ``accepted_fields``: the fields of the last
    Accepted one, from durable storage (``None``: never accepted, or forgotten).  ``rng``: a seeded
    ``random.Random`` (the only randomness).  The first :class:`ConnectDue` comes at ``now`` (plus the
    initial jitter).

    Driving loop (the adapter's)::

        while (event := boot.next_event()) is not None:
            ...                                  # connect, send, close, persist
        # sleep until boot.next_deadline() (or an I/O outcome), then boot.handle_timeout(now)
    """

    __slots__ = (
        "_accepted_fields",
        "_attempt",
        "_boot_fields",
        "_config",
        "_deadline",
        "_events",
        "_heartbeat",
        "_last_now",
        "_reject_wait",
        "_rng",
        "_state",
        "_was_accepted",
        "boots_sent",
        "connections",
    )

    def __init__(
        self,
        boot_fields: Mapping[str, Any],
        *,
        now: float,
        rng: RandomSource,
        accepted_fields: Mapping[str, Any] | None = None,
        config: StationBootConfig | None = None,
    ) -> None:
        self._config = config if config is not None else StationBootConfig()
        self._rng = rng
        self._boot_fields: dict[str, Any] = dict(boot_fields)
        self._accepted_fields: dict[str, Any] | None = (
            None if accepted_fields is None else dict(accepted_fields)
        )
        self._state = LinkState.OFFLINE
        self._attempt = 0
        self._was_accepted = False
        self._reject_wait: float | None = None
        self._heartbeat = self._config.heartbeat_interval
        self._events: list[StationBootEvent] = []
        self._last_now = now
        jitter = self._config.initial_jitter
        self._deadline: float | None = now + (rng.uniform(0.0, jitter) if jitter > 0 else 0.0)
        #: Connections opened / BootNotifications handed out, over the object's life (monitoring, tests).
        self.connections = 0
        self.boots_sent = 0

    # --- state --------------------------------------------------------------------------------------------

    @property
    def config(self) -> StationBootConfig:
        return self._config

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        """True between ``connection_opened`` and ``connection_lost``."""
        return self._state in _CONNECTED

    @property
    def accepted(self) -> bool:
        """The gate: connected and accepted, so the station may initiate anything (PROTOCOL-DECISIONS §5)."""
        return self._state is LinkState.ACCEPTED

    @property
    def remembered(self) -> bool:
        """The boot fields equal the last Accepted ones: a new connection needs no BootNotification."""
        return self._accepted_fields is not None and self._accepted_fields == self._boot_fields

    @property
    def boot_fields(self) -> dict[str, Any]:
        return dict(self._boot_fields)

    @property
    def accepted_fields(self) -> dict[str, Any] | None:
        return None if self._accepted_fields is None else dict(self._accepted_fields)

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between Heartbeats in force."""
        return self._heartbeat

    @property
    def attempt(self) -> int:
        """Failed connection attempts since the last accepted connection."""
        return self._attempt

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called (``None``: waiting for the driver's report)."""
        return self._deadline

    def next_event(self) -> StationBootEvent | None:
        """The next thing due, or ``None``."""
        return self._events.pop(0) if self._events else None

    # --- settings -----------------------------------------------------------------------------------------

    def set_boot_fields(self, fields: Mapping[str, Any]) -> None:
        """New boot fields (a firmware update): they decide the next connection's BootNotification (§M3.2)."""
        self._boot_fields = dict(fields)

    def set_backoff(self, backoff: RetryBackOff) -> None:
        """New RetryBackOff keys (ChangeConfiguration): they apply from the next wait on."""
        self._config = attrs.evolve(self._config, backoff=backoff)

    def set_heartbeat_interval(self, seconds: float, now: float) -> None:
        """``HeartbeatInterval`` changed (ChangeConfiguration): it applies at once."""
        if not seconds > 0:
            raise ValueError("HeartbeatInterval must be > 0 (PROTOCOL-DECISIONS §6)")
        self._tick(now)
        self._heartbeat = float(seconds)
        if self._state is LinkState.ACCEPTED:
            self._arm_heartbeat(now)

    # --- reports from the driver --------------------------------------------------------------------------

    def connection_opened(self, now: float) -> None:
        """The WebSocket is open (after :class:`ConnectDue`)."""
        self._tick(now)
        self._expect(LinkState.CONNECTING, "connection_opened")
        self.connections += 1
        self._reject_wait = None
        self._was_accepted = False
        if self.remembered:
            self._enter_accepted(now)
        else:
            self._send_boot(now)

    def connection_failed(self, now: float) -> None:
        """The attempt after :class:`ConnectDue` failed (refused, TLS, upgrade, timeout)."""
        self._tick(now)
        self._expect(LinkState.CONNECTING, "connection_failed")
        self._state = LinkState.OFFLINE
        self._schedule_reconnect(now)

    def connection_lost(self, now: float) -> None:
        """The connection is gone (either side closed, or it broke).  Harmless when not connected."""
        self._tick(now)
        if self._state not in _CONNECTED:
            return
        rejected = self._reject_wait
        self._state = LinkState.OFFLINE
        if rejected is not None:
            # PROTOCOL-DECISIONS §5: Rejected → wait `interval` (60 when 0) before reconnecting.
            self._attempt = 0
            self._deadline = now + rejected
            return
        if self._was_accepted:
            self._attempt = 0  # the connection had worked: the back-off starts over
        self._schedule_reconnect(now)

    def boot_answered(self, status: str, interval: int, now: float) -> None:
        """The BootNotification handed out got this CALLRESULT (``status``, ``interval``)."""
        self._tick(now)
        if self._state is not LinkState.BOOTING:
            return  # e.g. the answer to a boot of a connection already gone: nothing to learn
        if status == "Accepted":
            self._accepted_fields = dict(self._boot_fields)
            self._events.append(BootAccepted(dict(self._boot_fields), interval))
            if interval > 0:
                self._heartbeat = float(interval)
            self._enter_accepted(now)
        elif status == "Pending":
            self._state = LinkState.PENDING
            self._deadline = now + (float(interval) if interval > 0 else DEFAULT_RETRY_INTERVAL)
        elif status == "Rejected":
            # §M3.1 "If rejected, the Central System will terminate the connection."
            self._state = LinkState.REJECTED
            self._reject_wait = float(interval) if interval > 0 else DEFAULT_RETRY_INTERVAL
            self._deadline = now + self._config.reject_close_wait
        else:
            self.boot_failed(now)

    def boot_failed(self, now: float) -> None:
        """The BootNotification got no usable answer (CALLERROR, timeout, invalid payload): close, and
        reconnect after the back-off."""
        self._tick(now)
        if self._state is not LinkState.BOOTING:
            return
        self._close("boot failed")

    def security_error(self, now: float) -> None:
        """A call other than BootNotification was answered ``SecurityError`` (PROTOCOL-DECISIONS §5)."""
        self._tick(now)
        if self._state is not LinkState.ACCEPTED:
            return  # a boot is already on its way (or we are not connected)
        if self._accepted_fields is not None:
            self._accepted_fields = None
            self._events.append(AcceptanceForgotten("SecurityError"))
        _log.info("SecurityError: the Central System does not know this station as accepted; booting")
        self._send_boot(now)

    def boot_requested(self, now: float) -> None:
        """A TriggerMessage asked for a BootNotification (§M7.12): send one now unless one is in flight."""
        self._tick(now)
        if self._state in (LinkState.ACCEPTED, LinkState.PENDING):
            self._send_boot(now)

    def handle_timeout(self, now: float) -> None:
        """Do what is due at ``now`` (see :meth:`next_deadline`)."""
        self._tick(now)
        deadline = self._deadline
        if deadline is None or deadline > now:
            return
        self._deadline = None
        state = self._state
        if state is LinkState.OFFLINE:
            self._state = LinkState.CONNECTING
            self._events.append(ConnectDue(self._attempt, self.remembered))
        elif state is LinkState.PENDING:
            self._send_boot(now)
        elif state is LinkState.REJECTED:
            self._close("boot rejected")
        elif state is LinkState.ACCEPTED:
            self._events.append(HeartbeatDue())
            self._arm_heartbeat(now)

    # --- one funnel per change ----------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        # The driver's clock may not run backwards; a late report uses the latest time seen, so that every
        # deadline stays at or after the last `now` given (deadlines are monotone with the clock).
        if now > self._last_now:
            self._last_now = now

    def _expect(self, state: LinkState, what: str) -> None:
        if self._state is not state:
            raise RuntimeError(f"StationBoot: {what} reported in state {self._state.value}")

    def _send_boot(self, now: float) -> None:
        self._state = LinkState.BOOTING
        self._deadline = None  # the answer (or its failure) comes from the driver
        self.boots_sent += 1
        self._events.append(BootNotificationDue(dict(self._boot_fields)))

    def _enter_accepted(self, now: float) -> None:
        self._state = LinkState.ACCEPTED
        self._was_accepted = True
        self._attempt = 0
        self._arm_heartbeat(now)

    def _arm_heartbeat(self, now: float) -> None:
        self._deadline = max(now, self._last_now) + self._heartbeat if self._config.send_heartbeats else None

    def _close(self, reason: str) -> None:
        self._state = LinkState.CLOSING
        self._deadline = None
        self._events.append(CloseDue(reason))

    def _schedule_reconnect(self, now: float) -> None:
        delay = self._config.backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        self._deadline = max(now, self._last_now) + delay

    def __repr__(self) -> str:
        return f"<StationBoot {self._state.value} attempt={self._attempt} deadline={self._deadline}>"
