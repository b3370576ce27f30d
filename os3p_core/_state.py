"""The state tables of an OS³P connection.  Data only: the rules live here, the mechanics in
``_connection.py``, which changes every state through one method per table.

Theory of operation
===================

An OS³P connection carries two independent request/response streams over one WebSocket, one per
direction: "This is a birectional protocol, meaning there are messages that a Substation can send
to the Central System, and that there are other messages a Central System can send to a
Substation." (§M4).  Each side numbers its own CALLs: "A message ID for a CALL message MUST be
different from all message IDs previously used by the same sender for CALL messages on the same
websocket connection." (§J4.1.2).  So a connection tracks

* its **outgoing calls**, each QUEUED (waiting for a free slot: by default "at most one outstanding
  outgoing CALL per connection; further calls wait in a FIFO queue", PROTOCOL-DECISIONS §4, after
  OCPP-J 1.6 §4.1.1), then IN_FLIGHT (written, a deadline running), then finished exactly once:
  ANSWERED (CALLRESULT), ERRORED (CALLERROR), TIMED_OUT, or FAILED (invalid response payload, the
  connection was lost, or - still queued - the boot state stopped allowing it);
* the **incoming calls** it is handling, each HANDLING until the application sends the CALLRESULT
  or CALLERROR (or the connection is lost: ABANDONED).  "an existing call with the same unique
  identifier is being handled already" is a CALLERROR (§J4.4 case 2: ``ProtocolError``,
  PROTOCOL-DECISIONS §2);
* one **boot state** per connection, which gates what may be initiated (§M3.1):

  ========  ==================================================================================
  Accepted  "Only now may the Substation initiate other messages."
  Pending   "The Substation MUST respond to these requests but still MAY not initiate requests.
            Only exception is when the Central System sends a TriggerMessage request. In that
            case the Substation may initiate the requested message."
  Rejected  "If rejected, the Central System will terminate the connection."
  ========  ==================================================================================

  Both roles keep the same boot state for the same connection: the Substation learns it from the
  BootNotification response it receives, the Central System from the response its application
  sends.  A connection starts NEW, or ACCEPTED when acceptance is remembered from an earlier
  connection ("Once reconnected, a BootNotification is not required unless one or more values in
  the BootNotification has changed", §M3.3; PROTOCOL-DECISIONS §5 (b)).

The gating tables below say, per role and boot state, which CALLs the **Substation** may initiate
(checked by the Substation's connection on ``send``, and by the Central System's connection on
receipt, where a breach is answered with ``SecurityError``, PROTOCOL-DECISIONS §3/§5) and whether
the Substation answers calls at all.  TRIGGERED means: BootNotification, or one message per
accepted TriggerMessage for the action it requested.  The Central System is never gated: a station
in Pending exists precisely so that the Central System "has time to check and possibly change
configuration settings" (§M3.1).
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "BOOT_TRANSITIONS",
    "CALL_TRANSITIONS",
    "INCOMING_CALL_TRANSITIONS",
    "SUBSTATION_ANSWERS_CALLS",
    "SUBSTATION_MAY_INITIATE",
    "BootState",
    "CallEvent",
    "CallState",
    "Initiate",
]


class BootState(enum.Enum):
    """Where the connection stands in the boot sequence of §M3."""

    # Members are singletons compared by identity: hash them by identity too, in C, instead of
    # Enum.__hash__ (a Python call hashing the name).  The tables are looked up per message.
    __hash__ = object.__hash__

    #: No BootNotification has been answered on this connection and no earlier acceptance is known.
    NEW = "New"
    #: The last BootNotification was answered ``Pending`` (§M3.1).
    PENDING = "Pending"
    #: The last BootNotification was answered ``Accepted``, or acceptance is remembered (§M3.3).
    ACCEPTED = "Accepted"
    #: The last BootNotification was answered ``Rejected``; the connection is to be closed (§M3.1).
    REJECTED = "Rejected"


#: (boot state, BootNotificationResponse ``status``) -> the next boot state.  Whatever the state,
#: the answer decides: a Substation "MUST send a new BootNotification everytime one or more values
#: [...] have changed" (§M3.2), so even an accepted station is evaluated again, and a Pending one
#: "resends BootNotification after interval seconds" (PROTOCOL-DECISIONS §5).  Nothing returns to
#: NEW.  A status outside the table (possible only with validation off) changes nothing; entering
#: the state the connection is already in is not a change (no event).
BOOT_TRANSITIONS: Final[dict[tuple[BootState, str], BootState]] = {
    (BootState.NEW, "Accepted"): BootState.ACCEPTED,
    (BootState.NEW, "Pending"): BootState.PENDING,
    (BootState.NEW, "Rejected"): BootState.REJECTED,
    (BootState.PENDING, "Accepted"): BootState.ACCEPTED,
    (BootState.PENDING, "Pending"): BootState.PENDING,
    (BootState.PENDING, "Rejected"): BootState.REJECTED,
    (BootState.ACCEPTED, "Accepted"): BootState.ACCEPTED,
    (BootState.ACCEPTED, "Pending"): BootState.PENDING,
    (BootState.ACCEPTED, "Rejected"): BootState.REJECTED,
    (BootState.REJECTED, "Accepted"): BootState.ACCEPTED,
    (BootState.REJECTED, "Pending"): BootState.PENDING,
    (BootState.REJECTED, "Rejected"): BootState.REJECTED,
}


class Initiate(enum.Enum):
    """What a Substation may initiate in a boot state."""

    #: BootNotification only (§M3.1 "it MUST first send a BootNotification").
    BOOT_ONLY = "boot only"
    #: BootNotification, plus one message per accepted TriggerMessage for the requested action.
    TRIGGERED = "boot or triggered"
    #: Any Substation-initiated action.
    ALL = "all"


#: Per boot state: what the Substation may initiate.  Enforced on the Substation's ``send`` (a
#: breach raises LocalProtocolError and nothing is sent) and on the Central System's receipt (a
#: breach is answered with SecurityError, PROTOCOL-DECISIONS §5).  NEW allows TRIGGERED like
#: Pending: a Central System may send TriggerMessage to a station it has not answered yet, and what
#: it asked for it gets (PROTOCOL-DECISIONS §5 (a) names no boot state).  A Rejected station answers
#: no calls, so it cannot accept a trigger: BootNotification only.
SUBSTATION_MAY_INITIATE: Final[dict[BootState, Initiate]] = {
    BootState.NEW: Initiate.TRIGGERED,
    BootState.PENDING: Initiate.TRIGGERED,
    BootState.ACCEPTED: Initiate.ALL,
    BootState.REJECTED: Initiate.BOOT_ONLY,
}

#: Per boot state: does the Substation answer the Central System's calls?  Pending: "The
#: Substation MUST respond to these requests" (§M3.1).  Rejected: "it does not answer calls"
#: (PROTOCOL-DECISIONS §5); such calls are ignored and counted.  NEW answers: answering is not
#: initiating, and a station that reconnects without a BootNotification (§J5.5) must be usable.
SUBSTATION_ANSWERS_CALLS: Final[dict[BootState, bool]] = {
    BootState.NEW: True,
    BootState.PENDING: True,
    BootState.ACCEPTED: True,
    BootState.REJECTED: False,
}


class CallState(enum.Enum):
    """The life of one call, outgoing or incoming."""

    # Members are singletons compared by identity: hash them by identity too, in C, instead of
    # Enum.__hash__ (a Python call hashing the name).  The tables are looked up per message.
    __hash__ = object.__hash__

    QUEUED = "queued"  # outgoing: accepted by send(), waiting for a free slot
    IN_FLIGHT = "in flight"  # outgoing: written to the outbox, deadline running
    HANDLING = "handling"  # incoming: surfaced as CallReceived, awaiting the application's reply
    ANSWERED = "answered"  # a CALLRESULT went or came
    ERRORED = "errored"  # a CALLERROR went or came
    TIMED_OUT = "timed out"  # outgoing: no response before the deadline (PROTOCOL-DECISIONS §4)
    FAILED = "failed"  # outgoing: invalid response payload (§3), or connection lost (§4)
    ABANDONED = "abandoned"  # incoming: the connection was lost before the reply


class CallEvent(enum.Enum):
    """What can happen to a call."""

    # Members are singletons compared by identity: hash them by identity too, in C, instead of
    # Enum.__hash__ (a Python call hashing the name).  The tables are looked up per message.
    __hash__ = object.__hash__

    SLOT_FREE = "slot free"
    RESULT = "result"
    ERROR = "error"
    DEADLINE = "deadline"
    FAILURE = "failure"
    CONNECTION_LOST = "connection lost"


#: Outgoing calls.  A finished state has no entry: each call gets exactly one outcome.
CALL_TRANSITIONS: Final[dict[tuple[CallState, CallEvent], CallState]] = {
    (CallState.QUEUED, CallEvent.SLOT_FREE): CallState.IN_FLIGHT,
    (CallState.QUEUED, CallEvent.CONNECTION_LOST): CallState.FAILED,
    (CallState.QUEUED, CallEvent.FAILURE): CallState.FAILED,  # the boot state no longer allows it
    (CallState.IN_FLIGHT, CallEvent.RESULT): CallState.ANSWERED,
    (CallState.IN_FLIGHT, CallEvent.ERROR): CallState.ERRORED,
    (CallState.IN_FLIGHT, CallEvent.DEADLINE): CallState.TIMED_OUT,
    (CallState.IN_FLIGHT, CallEvent.FAILURE): CallState.FAILED,
    (CallState.IN_FLIGHT, CallEvent.CONNECTION_LOST): CallState.FAILED,
}

#: Incoming calls: the application answers exactly once, or the connection goes away.
INCOMING_CALL_TRANSITIONS: Final[dict[tuple[CallState, CallEvent], CallState]] = {
    (CallState.HANDLING, CallEvent.RESULT): CallState.ANSWERED,
    (CallState.HANDLING, CallEvent.ERROR): CallState.ERRORED,
    (CallState.HANDLING, CallEvent.CONNECTION_LOST): CallState.ABANDONED,
}
