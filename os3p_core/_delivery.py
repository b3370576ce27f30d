"""Guaranteed delivery of a Substation's durable outbox (PROTOCOL-DECISIONS §7), sans-IO.

Theory of operation
===================

The outbox lives in the station's durable store (written *before* any attempt to send, §7); an
:class:`OutboxDelivery` decides what to send and what an outcome means, and writes every decision through
the store's four outbox operations (:class:`OutboxStore`), so a crash at any point resumes from the store.

- **In order, one at a time**: :meth:`OutboxDelivery.next_message` hands out the oldest entry, and nothing
  else until that entry's outcome is reported.
- **Only when allowed**: the driver passes the boot gate (``StationBoot.accepted``); while not accepted
  nothing
  is handed out (PROTOCOL-DECISIONS §5: "resumes (its durable outbox included) after Accepted").
- **Outcomes** (§7; §M6.7/§M6.8 "Only when the backend did send a response, the station considers the event
  delivered"):

  ==========================================================  =========================================
  CALLRESULT (also one whose payload is invalid: answered)     delivered: removed (``outbox_ack``)
  CALLERROR ``SecurityError``/``InternalError``/``GenericError``  retry later with back-off (``outbox_retry``)
  timeout (no answer)                                          retry later with back-off
  any other CALLERROR                                          dead letter, logged, the queue moves on
  connection lost before the answer                            the same entry again on the next connection
  refused locally: not allowed now / queue full                the same entry again, after a short wait
  refused locally: the payload itself is invalid               dead letter (it can never succeed)
  ==========================================================  =========================================

- **Back-off**: the entry's stored ``attempts`` (failures so far, so it survives restarts) is the attempt
  number of the :class:`~os3p_core.RetryBackOff` (the station's RetryBackOff keys: one formula for the
  reconnects and the retries).

A ``SecurityError`` also means the Central System does not know the station as accepted: the driver reports it
to :class:`~os3p_core.StationBoot` as well (``security_error``), whose gate then holds the outbox until the
new
BootNotification is Accepted — so the entry is retried after Accepted, in order, nothing lost.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol

import attrs

from ._backoff import RandomSource, RetryBackOff
from ._errors import ErrorCode

__all__ = [
    "RETRY_LATER_CODES",
    "DeadLettered",
    "Delivered",
    "DeliveryEvent",
    "Disposition",
    "OutboxDelivery",
    "OutboxMessage",
    "OutboxStore",
    "RetryScheduled",
    "classify_error",
]

_log: Final = logging.getLogger("os3p_core.delivery")

#: PROTOCOL-DECISIONS §7: CALLERROR codes that mean "try again later".
RETRY_LATER_CODES: Final = frozenset(
    {ErrorCode.SECURITY_ERROR.value, ErrorCode.INTERNAL_ERROR.value, ErrorCode.GENERIC_ERROR.value}
)
#: What a timeout is recorded as (the store's ``error`` column).
TIMEOUT: Final = "timeout"
#: Local refusals that mean "not now" (boot gating, queue full): the entry waits, no attempt is counted.
_NOT_NOW: Final = frozenset({ErrorCode.SECURITY_ERROR.value, ErrorCode.GENERIC_ERROR.value})
#: Longest error text stored with an entry.
MAX_ERROR_TEXT: Final = 200


class Disposition(enum.Enum):
    """What happens to an outbox entry after an attempt (PROTOCOL-DECISIONS §7)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead-letter"


def classify_error(code: str) -> Disposition:
    """What a CALLERROR with ``code`` (or ``"timeout"``) means for an outbox entry (§7)."""
    return Disposition.RETRY if code == TIMEOUT or code in RETRY_LATER_CODES else Disposition.DEAD_LETTER


class OutboxMessage(Protocol):
    """One stored entry as the store returns it."""

    @property
    def seq(self) -> int: ...
    @property
    def action(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def attempts(self) -> int: ...
    @property
    def not_before(self) -> float: ...


class OutboxStore(Protocol):
    """The outbox operations of the station's durable store (each one transaction)."""

    def outbox_head(self, identity: str) -> OutboxMessage | None: ...
    def outbox_ack(self, identity: str, seq: int) -> None: ...
    def outbox_retry(self, identity: str, seq: int, not_before: float, error: str | None) -> None: ...
    def outbox_dead_letter(self, identity: str, seq: int, error: str, now: float) -> None: ...


# --- what happened (next_event) ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Delivered:
    """The entry's CALLRESULT arrived; it left the outbox."""

    seq: int
    action: str


@attrs.frozen(slots=True)
class RetryScheduled:
    """The attempt failed with a "retry later" outcome; the entry goes again at ``not_before``."""

    seq: int
    action: str
    error: str
    not_before: float


@attrs.frozen(slots=True)
class DeadLettered:
    """The entry can never succeed: moved aside (the queue moves on)."""

    seq: int
    action: str
    payload: Mapping[str, Any]
    error: str


DeliveryEvent = Delivered | RetryScheduled | DeadLettered


class OutboxDelivery:
    """Delivery of one station's durable outbox (sans-IO); see the module docstring.

    Driving loop::

        message = delivery.next_message(now, allowed=boot.accepted)
        if message is not None:
            ... send it; then delivery.delivered / answered_error / timed_out / interrupted / refused
        # and wake at delivery.next_deadline() (or when the store got a new entry, or the gate opened)
    """

    __slots__ = (
        "_backoff", "_events", "_hold_until", "_identity", "_in_flight", "_last_now", "_rng", "_store",
    )

    def __init__(
        self, store: OutboxStore, identity: str, *, rng: RandomSource, backoff: RetryBackOff | None = None
    ) -> None:
        self._store = store
        self._identity = identity
        self._rng = rng
        self._backoff = backoff if backoff is not None else RetryBackOff()
        self._in_flight: OutboxMessage | None = None
        self._hold_until = 0.0
        self._last_now = float("-inf")
        self._events: list[DeliveryEvent] = []

    @property
    def in_flight(self) -> OutboxMessage | None:
        """The entry handed out and not reported yet."""
        return self._in_flight

    def set_backoff(self, backoff: RetryBackOff) -> None:
        """New RetryBackOff keys (ChangeConfiguration): they apply from the next failure on."""
        self._backoff = backoff

    def next_event(self) -> DeliveryEvent | None:
        return self._events.pop(0) if self._events else None

    def next_message(self, now: float, *, allowed: bool) -> OutboxMessage | None:
        """The entry to send now, or ``None`` (nothing due, one in flight, or not ``allowed``)."""
        self._last_now = max(self._last_now, now)
        if not allowed or self._in_flight is not None or now < self._hold_until:
            return None
        head = self._store.outbox_head(self._identity)
        if head is None or head.not_before > now:
            return None
        self._in_flight = head
        return head

    def next_deadline(self) -> float | None:
        """When the head is due (``None``: nothing waits for time — empty, or one in flight).  Never before
        the latest ``now`` seen: a head already due reports that instant."""
        if self._in_flight is not None:
            return None
        head = self._store.outbox_head(self._identity)
        if head is None:
            return None
        return max(head.not_before, self._hold_until, self._last_now)

    # --- outcomes -----------------------------------------------------------------------------------------

    def delivered(self, now: float) -> None:
        """The CALLRESULT arrived (even one with an invalid payload: the Central System answered)."""
        entry = self._take(now)
        self._store.outbox_ack(self._identity, entry.seq)
        self._events.append(Delivered(entry.seq, entry.action))

    def answered_error(self, code: str, now: float, description: str = "") -> Disposition:
        """The Central System answered CALLERROR ``code`` (the code text as received)."""
        # The store keeps the code (what the entry's fate depends on); the log gets the description too.
        if description:
            _log.info("station %r: CALLERROR %s: %.200s", self._identity, code, description)
        return self._failed(code, code, now)

    def timed_out(self, now: float) -> Disposition:
        """No answer before the call's deadline."""
        return self._failed(TIMEOUT, TIMEOUT, now)

    def interrupted(self, now: float) -> None:
        """The connection was lost before the answer: the same entry goes again (nothing counted)."""
        self._take(now)

    def refused(self, code: str, description: str, now: float) -> Disposition:
        """The local connection refused to send it (``LocalProtocolError`` with ``code``)."""
        entry = self._take(now)
        if code in _NOT_NOW:
            # Not allowed in this boot state, or the queue is full: the gate or the queue will open; wait a
            # minimum back-off so a driver that polls at once does not spin.
            self._hold_until = now + self._backoff.delay(0, self._rng)
            return Disposition.RETRY
        self._dead_letter(entry, f"{code}: {description}", now)
        return Disposition.DEAD_LETTER

    # --- one funnel per outcome ---------------------------------------------------------------------------

    def _take(self, now: float) -> OutboxMessage:
        self._last_now = max(self._last_now, now)
        entry = self._in_flight
        if entry is None:
            raise RuntimeError("OutboxDelivery: an outcome was reported with no entry in flight")
        self._in_flight = None
        return entry

    def _failed(self, code: str, text: str, now: float) -> Disposition:
        entry = self._take(now)
        if classify_error(code) is Disposition.RETRY:
            not_before = now + self._backoff.delay(entry.attempts, self._rng)
            self._store.outbox_retry(self._identity, entry.seq, not_before, text[:MAX_ERROR_TEXT])
            self._events.append(RetryScheduled(entry.seq, entry.action, code, not_before))
            return Disposition.RETRY
        self._dead_letter(entry, text, now)
        return Disposition.DEAD_LETTER

    def _dead_letter(self, entry: OutboxMessage, error: str, now: float) -> None:
        error = error[:MAX_ERROR_TEXT]
        self._store.outbox_dead_letter(self._identity, entry.seq, error, now)
        # §7: "moved aside (dead letter), logged, and does not block the queue".
        _log.warning("station %r: %s #%d moved to dead letters: %s", self._identity, entry.action, entry.seq,
                     error)
        self._events.append(DeadLettered(entry.seq, entry.action, dict(entry.payload), error))

    def __repr__(self) -> str:
        flight = None if self._in_flight is None else self._in_flight.seq
        return f"<OutboxDelivery {self._identity!r} in_flight={flight}>"
