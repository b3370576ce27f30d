"""The one configuration object of a :class:`~os3p_core.Connection` (after ``h2/config.py``).

Every option has a default that follows the spec or PROTOCOL-DECISIONS, and a bound: the
connection keeps no table, queue or buffer whose size is not fixed here (see ``docs/connection.md``
for the worst-case memory these bounds imply).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

__all__ = ["Config", "uuid4_id"]


def uuid4_id() -> str:
    """The default message-id factory: UUID4 text, 36 characters (§J4.1.2 "to allow for GUID's").

    The only entropy in ``os3p_core``; replace it (``Config(id_factory=...)``) for reproducible runs.
    Same bits as ``str(uuid.uuid4())`` (122 random bits from ``os.urandom``, RFC 4122 version 4 and
    variant), formatted directly: ``uuid.UUID`` objects cost 3x more, a quarter of a whole Heartbeat
    round trip (``benchmarks/connection_bench.py``).
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# RFC 4122 §4.4: the two top bits of clock_seq_hi_and_reserved are 10 -> first hex digit 8..b.
_VARIANT: dict[str, str] = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be an integer >= 0, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class Config:
    """Options of one connection.  Frozen: share one instance between many connections.

    Construct with keywords, e.g. ``Config(call_timeout=10.0, max_outstanding_calls=4)``; invalid
    values raise ``ValueError`` at once.
    """

    #: Seconds an outgoing CALL waits for its CALLRESULT or CALLERROR before it fails with
    #: ``CallTimedOut`` and the next queued call goes out.  30 s is PROTOCOL-DECISIONS §4; a single
    #: call may override it with ``Call(timeout=...)``.
    call_timeout: float = attrs.field(default=30.0, validator=_positive)

    #: Outgoing CALLs in flight at once.  1 is the OCPP-J 1.6 §4.1.1 rule adopted by
    #: PROTOCOL-DECISIONS §4 ("at most one outstanding outgoing CALL per connection"); raise it only
    #: for peers known to accept more.
    max_outstanding_calls: int = attrs.field(default=1, validator=_at_least_one)

    #: Outgoing CALLs waiting in the FIFO queue behind the ones in flight.  When full, ``send``
    #: raises ``LocalProtocolError`` and nothing is queued: back-pressure for the application
    #: instead of unbounded memory.  64 covers a burst of notifications after a reconnect.
    max_queued_calls: int = attrs.field(default=64, validator=_non_negative)

    #: Incoming CALLs surfaced as ``CallReceived`` and not answered yet.  PROTOCOL-DECISIONS §4 lets
    #: incoming calls be handled concurrently; a peer that exceeds this bound (it would have to
    #: ignore its own one-in-flight rule) gets CALLERROR ``GenericError`` at once.  16 is far above
    #: what a conforming peer sends (1) and small enough that memory stays trivial.
    max_incoming_calls: int = attrs.field(default=16, validator=_at_least_one)

    #: Events produced but not yet taken with ``next_event()``.  ``receive_message`` refuses to run
    #: (``LocalProtocolError``, the message is not consumed) while this many are waiting: an
    #: application that stops reading events must not let the peer grow memory without bound.  One
    #: message adds at most 2 events, so an adapter that reads events after every message never
    #: gets near it.
    max_pending_events: int = attrs.field(default=64, validator=_at_least_one)

    #: Messages waiting in the outbox (``messages_to_send()``) beyond which *automatic* CALLERRORs
    #: are dropped (and counted as ``auto_errors_dropped``) instead of queued: a peer flooding bad
    #: CALLs faster than the adapter writes must not grow memory (an echoed message id can be as
    #: long as the message).  What the application sends is never dropped.
    max_pending_messages: int = attrs.field(default=256, validator=_at_least_one)

    #: Longest text message accepted, in characters.  Longer messages are ignored and counted
    #: (``too_large``).  256 KiB is PROTOCOL-DECISIONS §1's transport limit: the transport closes
    #: with 1009 before this, so here it only guards direct users of the core.
    max_message_chars: int = attrs.field(default=256 * 1024, validator=_at_least_one)

    #: Validate outgoing payloads against the schemas (PROTOCOL-DECISIONS §4: "on by default, can be
    #: turned off").  An invalid payload raises ``LocalProtocolError`` and nothing is sent.
    validate_outgoing: bool = True

    #: Validate incoming payloads (PROTOCOL-DECISIONS §3).  Off, invalid requests reach the
    #: application and invalid responses are delivered as results: for testing peers only.
    validate_incoming: bool = True

    #: How many timed-out message ids to remember, so that a response arriving after the deadline is
    #: counted as ``late_response`` rather than ``unknown_response``.  Only statistics depend on it.
    remember_timed_out: int = attrs.field(default=16, validator=_non_negative)

    #: Makes the message id of each outgoing CALL.  Must return a ``str`` of at most 36 characters
    #: that this connection has not used before (§J4.1.2: "MUST be different from all message IDs
    #: previously used by the same sender"); the connection checks length and collisions with calls
    #: still queued or in flight.  Default: UUID4 text.
    id_factory: Callable[[], str] = uuid4_id

    #: Central System role: when the connection answers ``SecurityError`` to a station it does not know as
    #: accepted (no BootNotification on this connection, no remembered acceptance), it also sends the station
    #: one ``TriggerMessage(BootNotification)`` per connection (PROTOCOL-DECISIONS §5), so that a station
    #: which
    #: does not re-boot by itself recovers.  Ignored in the Substation role.
    trigger_boot_on_security_error: bool = True
