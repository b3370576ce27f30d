"""The sans-IO OS³P connection: all protocol state of one WebSocket connection, for either role.

After ``h11/_connection.py`` and ``h2/connection.py``: text and time go in (``receive_message``,
``send``, ``handle_timeout``), events and text come out (``next_event``, ``messages_to_send``).
No I/O, no clock, no threads; ``now`` is whatever monotonic float the caller's clock gives.

The rules are PROTOCOL-DECISIONS §2-§5; the state tables are in ``_state.py`` and every state
change goes through one method per table (:meth:`Connection._advance` for calls,
:meth:`Connection._answer_boot` for the boot state).  ``docs/connection.md`` has the theory of
operation, the bounds and the worst-case memory.

This module is the hot path of every message: it avoids allocating what it does not need, binds
validators once, and keeps the well-formed frame as the decoded list (``_frames.parse``).
"""

from __future__ import annotations

import logging
from typing import Any, Final, overload

from ._actions import ACTIONS_SENT_BY, Action, Role
from ._config import Config
from ._errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError, SchemaViolation
from ._events import (
    MAX_ERROR_DESCRIPTION,
    BootStateChanged,
    Call,
    CallError,
    CallFailed,
    CallReceived,
    CallResult,
    CallTimedOut,
    ErrorReceived,
    Event,
    FailureReason,
    ResultReceived,
)
from ._frames import (
    CALL,
    CALLRESULT,
    MAX_MESSAGE_ID_LENGTH,
    FormationViolation,
    IgnoredFrame,
    IgnoreReason,
    encode_call,
    encode_error,
    encode_result,
    parse,
)
from ._state import (
    BOOT_TRANSITIONS,
    CALL_TRANSITIONS,
    INCOMING_CALL_TRANSITIONS,
    SUBSTATION_ANSWERS_CALLS,
    SUBSTATION_MAY_INITIATE,
    BootState,
    CallEvent,
    CallState,
    Initiate,
)

__all__ = ["Connection"]

# Only a logger: no handlers are configured here (the application decides where logs go).
_log: Final = logging.getLogger("os3p_core.connection")

_ACTIONS: Final[dict[str, Action]] = {a.value: a for a in Action}
_ERROR_CODES: Final[dict[str, ErrorCode]] = {c.value: c for c in ErrorCode}
_BOOT: Final = Action.BOOT_NOTIFICATION
_TRIGGER: Final = Action.TRIGGER_MESSAGE
_SUBSTATION_ACTIONS: Final = frozenset(a for a, r in ACTIONS_SENT_BY.items() if r is Role.SUBSTATION)
_CENTRAL_ACTIONS: Final = frozenset(a for a, r in ACTIONS_SENT_BY.items() if r is Role.CENTRAL_SYSTEM)

#: Retry delay after a Rejected (or Pending) BootNotification whose ``interval`` is 0
#: (PROTOCOL-DECISIONS §5: "waits interval seconds (default 60 when interval is 0)").
DEFAULT_BOOT_RETRY_INTERVAL: Final = 60

_DEFAULT_CONFIG: Final = Config()


class _Outgoing:
    """One outgoing call (QUEUED -> IN_FLIGHT -> finished)."""

    __slots__ = (
        "action",
        "call",
        "deadline",
        "payload",
        "state",
        "text",
        "timeout",
        "triggered",
        "unique_id",
    )

    def __init__(
        self,
        unique_id: str,
        action: Action,
        call: Call,
        payload: dict[str, Any],
        text: str,
        timeout: float,
        triggered: bool,
    ) -> None:
        self.unique_id = unique_id
        self.action = action
        self.call = call
        self.payload = payload  # the unstructured payload (the call may hold a typed object)
        self.text = text
        self.timeout = timeout
        self.triggered = triggered  # sent on a TriggerMessage's credit (PROTOCOL-DECISIONS §5)
        self.deadline = 0.0
        self.state = CallState.QUEUED


class _Incoming:
    """One incoming call being handled (HANDLING -> finished)."""

    __slots__ = ("action", "payload", "state")

    def __init__(self, action: Action, payload: dict[str, Any]) -> None:
        self.action = action
        self.payload = payload
        self.state = CallState.HANDLING


class Connection:
    """All protocol state of one OS³P connection, for ``role`` (sans-IO).

    ``previously_accepted``: the peer's (Central System) or our own (Substation) last
    BootNotification was Accepted on an earlier connection, so this one starts ACCEPTED without a
    new BootNotification (§J5.5, §M3.3; PROTOCOL-DECISIONS §5 (b)).  The Central System's store
    supplies it per identity; the Substation remembers it durably.

    Typical driving loop (the adapter's)::

        conn.receive_message(text, now)
        while (event := conn.next_event()) is not None:
            ...                                  # the application may conn.send(...) replies
        for text in conn.messages_to_send():
            await websocket.send(text)
        # and: sleep until conn.next_deadline(), then conn.handle_timeout(now)
    """

    # Slotted: a server holds one Connection per station (10,000s), and an instance dict of ~45
    # attributes costs ~1.6 KiB each (issue 8: memory per idle connection).
    __slots__ = (
        "_auto_errors",
        "_boot_retry_interval",
        "_boot_state",
        "_boot_triggered",
        "_closed",
        "_config",
        "_events",
        "_heartbeat_interval",
        "_ignored",
        "_in_flight",
        "_incoming",
        "_initiate",
        "_is_central",
        "_max_chars",
        "_max_events",
        "_max_in_flight",
        "_max_incoming",
        "_max_outbox",
        "_max_queued",
        "_n_calls_received",
        "_n_calls_sent",
        "_n_dropped",
        "_n_errors",
        "_n_failures",
        "_n_received",
        "_n_results",
        "_n_sent",
        "_n_timeouts",
        "_new_id",
        "_outbox",
        "_queued",
        "_receives",
        "_role",
        "_sends",
        "_should_close",
        "_timed_out",
        "_timeout",
        "_trigger_boot",
        "_triggered",
        "_validate_in",
        "_validate_out",
        "_validate_request",
        "_validate_response",
    )

    def __init__(
        self, role: Role, config: Config | None = None, *, previously_accepted: bool = False
    ) -> None:
        if not isinstance(role, Role):
            raise TypeError(f"role must be a Role, got {role!r}")
        self._role: Final = role
        self._config: Final = _DEFAULT_CONFIG if config is None else config
        cfg = self._config
        self._is_central: Final = role is Role.CENTRAL_SYSTEM
        # Direction (PROTOCOL-DECISIONS §3): what this role may send, and receive.
        self._sends: Final = _CENTRAL_ACTIONS if self._is_central else _SUBSTATION_ACTIONS
        self._receives: Final = _SUBSTATION_ACTIONS if self._is_central else _CENTRAL_ACTIONS

        # Imported here rather than at module level only to keep ``import os3p_core`` light;
        # bound once so that the hot path is one attribute load.
        from ._validation import validate_request, validate_response

        self._validate_request: Final = validate_request
        self._validate_response: Final = validate_response
        self._validate_in: Final = cfg.validate_incoming
        self._validate_out: Final = cfg.validate_outgoing
        self._max_chars: Final = cfg.max_message_chars
        self._max_in_flight: Final = cfg.max_outstanding_calls
        self._max_queued: Final = cfg.max_queued_calls
        self._max_incoming: Final = cfg.max_incoming_calls
        self._max_events: Final = cfg.max_pending_events
        self._max_outbox: Final = cfg.max_pending_messages
        self._timeout: Final = cfg.call_timeout
        self._new_id: Final = cfg.id_factory

        # Boot state (§M3.1) and what it lets the Substation initiate (_state tables).
        self._boot_state = BootState.ACCEPTED if previously_accepted else BootState.NEW
        self._initiate = SUBSTATION_MAY_INITIATE[self._boot_state]
        self._heartbeat_interval: int | None = None
        self._boot_retry_interval: int | None = None
        self._should_close = False
        # Trigger credits: action -> messages a TriggerMessage allowed and not yet sent
        # (PROTOCOL-DECISIONS §5: "once per trigger").  At most 8 keys (the Substation's actions).
        self._triggered: dict[Action, int] = {}
        # PROTOCOL-DECISIONS §5 (Central System): a SecurityError to a station not known as accepted
        # comes with one TriggerMessage(BootNotification) per connection.
        self._trigger_boot: Final = self._is_central and cfg.trigger_boot_on_security_error
        self._boot_triggered = False

        # Tables, each bounded by the config (see docs/connection.md for the memory).
        self._in_flight: dict[str, _Outgoing] = {}  # <= max_outstanding_calls
        self._queued: dict[str, _Outgoing] = {}  # FIFO by insertion order, <= max_queued_calls
        self._incoming: dict[str, _Incoming] = {}  # <= max_incoming_calls
        # Plain dict and list rather than deques: an empty deque allocates a ~0.75 KiB block, and a
        # server holds tens of thousands of idle connections (issue 8).  Both stay short, so
        # list.pop(0) and dict-as-ordered-set eviction cost nothing measurable.
        self._timed_out: dict[str, None] = {}  # ordered set, <= remember_timed_out
        self._events: list[Event] = []  # <= max_pending_events (+ what one call may add)
        self._outbox: list[str] = []  # <= max_pending_messages (+ what one call may add)
        self._closed = False

        # Counters for statistics().
        self._n_received = 0
        self._n_sent = 0
        self._n_calls_sent = 0
        self._n_calls_received = 0
        self._n_results = 0
        self._n_errors = 0
        self._n_timeouts = 0
        self._n_failures = 0
        self._n_dropped = 0
        self._ignored: dict[str, int] = {}
        self._auto_errors: dict[str, int] = {}

    # -----------------------------------------------------------------------------------------
    # Properties

    @property
    def role(self) -> Role:
        """This end's role."""
        return self._role

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._config

    @property
    def boot_state(self) -> BootState:
        """Where the connection stands in the boot sequence (§M3.1)."""
        return self._boot_state

    @property
    def heartbeat_interval(self) -> int | None:
        """Seconds between Heartbeats, from the last Accepted BootNotification response (§M3.1).

        ``None`` until one was answered on this connection.
        """
        return self._heartbeat_interval

    @property
    def boot_retry_interval(self) -> int | None:
        """Seconds to wait before the next BootNotification (Pending) or reconnect (Rejected).

        From the last Pending or Rejected response's ``interval``; 60 when it was 0
        (PROTOCOL-DECISIONS §5).  ``None`` until such a response was answered on this connection.
        """
        return self._boot_retry_interval

    @property
    def should_close(self) -> bool:
        """True once the Central System has answered a BootNotification with Rejected.

        "If rejected, the Central System will terminate the connection." (§M3.1): write
        ``messages_to_send()`` (the CALLRESULT goes first), then close the WebSocket.
        """
        return self._should_close

    @property
    def closed(self) -> bool:
        """True after :meth:`connection_lost`."""
        return self._closed

    @property
    def outstanding_calls(self) -> int:
        """Outgoing calls in flight plus queued."""
        return len(self._in_flight) + len(self._queued)

    # -----------------------------------------------------------------------------------------
    # Input from the network

    def receive_message(self, text: str, now: float) -> None:
        """Feed one WebSocket text message received at ``now``.

        Produces events (``next_event``) and automatic replies (``messages_to_send``); never
        raises on any network input.  Raises :class:`LocalProtocolError` without consuming the
        message if ``Config.max_pending_events`` events are waiting: read them first.
        """
        if self._closed:
            self._ignore(IgnoreReason.AFTER_CONNECTION_LOST, text)
            return
        if len(self._events) >= self._max_events:
            raise LocalProtocolError(f"{len(self._events)} events are waiting: call next_event() first")
        self._n_received += 1
        if type(text) is str and len(text) > self._max_chars:
            self._ignore(IgnoreReason.TOO_LARGE, text)
            return
        msg = parse(text)
        if type(msg) is list:
            kind = msg[0]
            if kind == CALL:
                self._on_call(msg[1], msg[2], msg[3], now)
            elif kind == CALLRESULT:
                self._on_result(msg[1], msg[2], now)
            else:
                self._on_error(msg[1], msg[2], msg[3], msg[4], now)
        elif type(msg) is FormationViolation:
            self._auto_error(msg.unique_id, ErrorCode.FORMATION_VIOLATION, msg.description, {})
        else:
            assert type(msg) is IgnoredFrame
            self._ignore(msg.reason, text)

    def _on_call(self, unique_id: str, name: str, payload: dict[str, Any], now: float) -> None:
        incoming = self._incoming
        if unique_id in incoming:
            # §J4.4 case 2 "an existing call with the same unique identifier is being handled
            # already"; PROTOCOL-DECISIONS §2: ProtocolError, the first call is not disturbed.
            self._auto_error(
                unique_id,
                ErrorCode.PROTOCOL_ERROR,
                "a call with this message id is already being handled",
                {},
            )
            return
        action = _ACTIONS.get(name)
        if action is None:
            self._auto_error(
                unique_id, ErrorCode.NOT_IMPLEMENTED, f"unknown action {name[:200]!r}", {"action": name[:200]}
            )
            return
        if action not in self._receives:
            self._auto_error(
                unique_id,
                ErrorCode.NOT_SUPPORTED,
                f"{name} is not sent by the {self._role.peer.value}",
                {"action": name},
            )
            return
        if self._is_central:
            # PROTOCOL-DECISIONS §5: "A CALL other than BootNotification from a Substation that is
            # not accepted gets CALLERROR SecurityError", except a triggered message.
            if self._initiate is not Initiate.ALL and action is not _BOOT and not self._use_trigger(action):
                self._auto_error(
                    unique_id,
                    ErrorCode.SECURITY_ERROR,
                    f"{name} before the BootNotification was accepted",
                    {"bootState": self._boot_state.value},
                )
                if self._trigger_boot and not self._boot_triggered and self._boot_state is BootState.NEW:
                    self._trigger_boot_notification(now)
                return
        elif not SUBSTATION_ANSWERS_CALLS[self._boot_state]:
            # PROTOCOL-DECISIONS §5: a Rejected Substation "does not answer calls".
            self._ignore(IgnoreReason.CALL_WHILE_REJECTED, unique_id)
            return
        if len(incoming) >= self._max_incoming:
            self._auto_error(
                unique_id,
                ErrorCode.GENERIC_ERROR,
                f"too many calls in progress (at most {self._max_incoming})",
                {},
            )
            return
        if self._validate_in:
            try:
                self._validate_request(name, payload)
            except SchemaViolation as v:
                self._auto_error(unique_id, v.code, v.description, v.details)
                return
        incoming[unique_id] = _Incoming(action, payload)
        self._n_calls_received += 1
        self._events.append(CallReceived(unique_id, action, payload))

    def _trigger_boot_notification(self, now: float) -> None:
        """PROTOCOL-DECISIONS §5: "When it answers SecurityError to a station it does not remember as
        accepted, it also sends that station a TriggerMessage for BootNotification (at most once per
        connection), so that stations which do not re-boot by themselves recover."

        Only in NEW: such a station has sent no BootNotification on this connection, so it believes it is
        accepted (the Central System lost its state, or the station moved).  A Pending station boots again
        after ``interval`` by itself; a Rejected one is being closed.  The call is the connection's own: its
        outcome surfaces as usual (``ResultReceived`` etc. with an id nobody waits for) and is otherwise
        ignored; the station's answer to it is what matters, a BootNotification.
        """
        self._boot_triggered = True
        try:
            self._send_call(Call(_TRIGGER, {"requestedMessage": "BootNotification"}), now)
        except LocalProtocolError as exc:  # the application's queue is full: skip, it is a courtesy
            _log.debug("%s: could not trigger a BootNotification: %s", self._role.value, exc)

    @property
    def boot_triggered(self) -> bool:
        """True once this (Central System) connection sent its TriggerMessage(BootNotification)."""
        return self._boot_triggered

    def _on_result(self, unique_id: str, payload: dict[str, Any], now: float) -> None:
        rec = self._in_flight.pop(unique_id, None)
        if rec is None:
            self._ignore_response(unique_id)
            return
        if self._validate_in:
            try:
                self._validate_response(rec.action, payload)
            except SchemaViolation as v:
                # PROTOCOL-DECISIONS §3: "An invalid CALLRESULT payload [...] fails that call on
                # the caller's side with a clear validation error; nothing is sent back."
                self._advance(rec, CallEvent.FAILURE)
                self._n_failures += 1
                error = RemoteProtocolError(
                    f"invalid {rec.action} response: {v.description}", v.code, v.details
                )
                self._events.append(
                    CallFailed(unique_id, rec.action, rec.call, FailureReason.INVALID_RESPONSE, error)
                )
                self._fill_slots(now)
                return
        self._advance(rec, CallEvent.RESULT)
        self._n_results += 1
        self._events.append(ResultReceived(unique_id, rec.action, payload, rec.call))
        # Only a Substation sends BootNotification and only a Central System TriggerMessage.
        if rec.action is _BOOT:
            self._answer_boot(payload)
        elif rec.action is _TRIGGER:
            self._grant_trigger(rec.payload, payload)
        self._fill_slots(now)

    def _on_error(
        self, unique_id: str, code_text: str, description: str, details: dict[str, Any], now: float
    ) -> None:
        rec = self._in_flight.pop(unique_id, None)
        if rec is None:
            self._ignore_response(unique_id)
            return
        self._advance(rec, CallEvent.ERROR)
        self._n_errors += 1
        code = _ERROR_CODES.get(code_text, ErrorCode.GENERIC_ERROR)
        self._events.append(
            ErrorReceived(unique_id, rec.action, code, description, details, rec.call, code_text)
        )
        self._fill_slots(now)

    def _ignore_response(self, unique_id: str) -> None:
        # PROTOCOL-DECISIONS §2: a response "whose id matches no outstanding CALL (e.g. after a
        # timeout): Ignore, count, log. Never answer a response."
        if unique_id in self._timed_out:
            self._ignore(IgnoreReason.LATE_RESPONSE, unique_id)
        else:
            self._ignore(IgnoreReason.UNKNOWN_RESPONSE, unique_id)

    def _ignore(self, reason: IgnoreReason, what: object) -> None:
        # PROTOCOL-DECISIONS §2: "Ignore, count it, log it."  Debug level and truncated: a peer
        # sending garbage must not flood the log either.
        self._ignored[reason.value] = self._ignored.get(reason.value, 0) + 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s: ignored a message (%s): %.120r", self._role.value, reason.value, what)

    def _auto_error(self, unique_id: str, code: ErrorCode, description: str, details: dict[str, Any]) -> None:
        """Answer an incoming CALL that never reaches the application (PROTOCOL-DECISIONS §2, §3)."""
        if len(self._outbox) >= self._max_outbox:
            # A peer sending bad CALLs faster than the adapter writes must not grow our memory
            # (an echoed id can be as long as the message): the reply is dropped and counted.
            self._n_dropped += 1
            return
        self._outbox.append(encode_error(unique_id, code.value, description[:MAX_ERROR_DESCRIPTION], details))
        self._auto_errors[code.value] = self._auto_errors.get(code.value, 0) + 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "%s: answered call %.60r with %s: %s", self._role.value, unique_id, code.value, description
            )

    # -----------------------------------------------------------------------------------------
    # Output to the application

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when there is nothing more for now."""
        events = self._events
        return events.pop(0) if events else None

    def messages_to_send(self) -> list[str]:
        """Every text message to write to the WebSocket, in order; the outbox is emptied."""
        out = self._outbox
        if not out:
            return []
        self._outbox = []
        self._n_sent += len(out)
        return out

    # -----------------------------------------------------------------------------------------
    # Input from the application

    @overload
    def send(self, event: Call, now: float) -> str: ...

    @overload
    def send(self, event: CallResult | CallError, now: float) -> None: ...

    def send(self, event: Call | CallResult | CallError, now: float) -> str | None:
        """Send a :class:`Call` (returns its message id), :class:`CallResult` or :class:`CallError`.

        Raises :class:`LocalProtocolError` (with the CallError code that describes the problem)
        if the protocol forbids it; then nothing was sent and no state changed.
        """
        if self._closed:
            raise LocalProtocolError("the connection was lost")
        kind = type(event)
        if kind is Call:
            return self._send_call(event, now)  # type: ignore[arg-type]
        if kind is CallResult:
            self._send_result(event)  # type: ignore[arg-type]
            return None
        if kind is CallError:
            self._send_error(event)  # type: ignore[arg-type]
            return None
        raise LocalProtocolError(f"cannot send a {kind.__name__}; send Call, CallResult or CallError")

    def _send_call(self, call: Call, now: float) -> str:
        action = call.action
        if action not in self._sends:
            raise LocalProtocolError(
                f"{action.value} is sent by the {self._role.peer.value}, not the {self._role.value}",
                ErrorCode.NOT_SUPPORTED,
            )
        use_trigger = False
        if not self._is_central and self._initiate is not Initiate.ALL and action is not _BOOT:
            # PROTOCOL-DECISIONS §5: "Until a BootNotification is Accepted it sends nothing but
            # BootNotification", "may send a message only when a TriggerMessage asked for it".
            if self._initiate is not Initiate.TRIGGERED or not self._triggered.get(action):
                raise LocalProtocolError(
                    f"{action.value} may not be sent in boot state {self._boot_state.value}",
                    ErrorCode.SECURITY_ERROR,
                )
            use_trigger = True
        payload = call.payload
        if type(payload) is not dict:
            payload = _unstructure(action, payload, request=True)
        if self._validate_out:
            try:
                self._validate_request(action.value, payload)
            except SchemaViolation as v:
                raise LocalProtocolError(
                    f"invalid {action.value} request: {v.description}", v.code, v.details
                ) from v
        in_flight = self._in_flight
        queued = self._queued
        room = len(in_flight) < self._max_in_flight
        if not room and len(queued) >= self._max_queued:
            raise LocalProtocolError(
                f"too many calls waiting (max_queued_calls={self._max_queued}); wait for responses"
            )
        unique_id = self._new_id()
        if type(unique_id) is not str or len(unique_id) > MAX_MESSAGE_ID_LENGTH:
            raise LocalProtocolError(
                f"id_factory must return a str of at most 36 characters, got {unique_id!r}"
            )
        if unique_id in in_flight or unique_id in queued or unique_id in self._timed_out:
            # §J4.1.2: ids "MUST be different from all message IDs previously used"; we can check
            # the live ones and the recently timed-out ones (whose late response would otherwise
            # match the new call).  Beyond that, uniqueness is the factory's promise.
            raise LocalProtocolError(f"id_factory returned {unique_id!r}, which is in use")
        text = encode_call(unique_id, action.value, payload)
        if use_trigger:
            self._use_trigger(action)
        timeout = self._timeout if call.timeout is None else call.timeout
        rec = _Outgoing(unique_id, action, call, payload, text, timeout, use_trigger)
        if room:
            self._launch(rec, now)
        else:
            queued[unique_id] = rec
        return unique_id

    def _send_result(self, result: CallResult) -> None:
        unique_id = result.unique_id
        rec = self._incoming.get(unique_id)
        if rec is None:
            raise LocalProtocolError(f"no incoming call {unique_id!r} is waiting for an answer")
        payload = result.payload
        if type(payload) is not dict:
            payload = _unstructure(rec.action, payload, request=False)
        if self._validate_out:
            try:
                self._validate_response(rec.action, payload)
            except SchemaViolation as v:
                raise LocalProtocolError(
                    f"invalid {rec.action.value} response: {v.description}", v.code, v.details
                ) from v
        self._outbox.append(encode_result(unique_id, payload))
        del self._incoming[unique_id]
        self._advance_incoming(rec, CallEvent.RESULT)
        # Only a Central System receives BootNotification and only a Substation TriggerMessage.
        if rec.action is _BOOT:
            self._answer_boot(payload)
        elif rec.action is _TRIGGER:
            self._grant_trigger(rec.payload, payload)

    def _send_error(self, error: CallError) -> None:
        unique_id = error.unique_id
        rec = self._incoming.get(unique_id)
        if rec is None:
            raise LocalProtocolError(f"no incoming call {unique_id!r} is waiting for an answer")
        self._outbox.append(encode_error(unique_id, error.code.value, error.description, error.details))
        del self._incoming[unique_id]
        self._advance_incoming(rec, CallEvent.ERROR)

    # -----------------------------------------------------------------------------------------
    # Time

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, or ``None`` if no call is in flight."""
        in_flight = self._in_flight
        if not in_flight:
            return None
        return min(rec.deadline for rec in in_flight.values())

    def handle_timeout(self, now: float) -> None:
        """Expire every call in flight whose deadline is ``<= now`` (``CallTimedOut``), then send
        the next queued calls (PROTOCOL-DECISIONS §4)."""
        in_flight = self._in_flight
        expired = [rec for rec in in_flight.values() if rec.deadline <= now]
        if not expired:
            return
        for rec in expired:
            del in_flight[rec.unique_id]
            self._advance(rec, CallEvent.DEADLINE)
            self._n_timeouts += 1
            timed_out = self._timed_out
            timed_out[rec.unique_id] = None
            if len(timed_out) > self._config.remember_timed_out:
                del timed_out[next(iter(timed_out))]
            self._events.append(CallTimedOut(rec.unique_id, rec.action, rec.call))
        self._fill_slots(now)

    def connection_lost(self) -> None:
        """The WebSocket is gone: fail every outgoing call (in flight, then queued) with
        ``CallFailed(reason=CONNECTION_LOST)``, forget incoming calls and unsent messages
        (PROTOCOL-DECISIONS §4).  Further ``send`` raises; further input is ignored."""
        if self._closed:
            return
        self._closed = True
        error = ProtocolError("the connection was lost before a response arrived", ErrorCode.GENERIC_ERROR)
        for table in (self._in_flight, self._queued):
            for rec in table.values():
                self._advance(rec, CallEvent.CONNECTION_LOST)
                self._n_failures += 1
                self._events.append(
                    CallFailed(rec.unique_id, rec.action, rec.call, FailureReason.CONNECTION_LOST, error)
                )
            table.clear()
        for inc in self._incoming.values():
            self._advance_incoming(inc, CallEvent.CONNECTION_LOST)
        self._incoming.clear()
        self._outbox = []
        self._triggered.clear()

    # -----------------------------------------------------------------------------------------
    # State changes: one funnel per table

    @staticmethod
    def _advance(rec: _Outgoing, event: CallEvent) -> None:
        # A missing entry is a bug in this module, not a peer's fault: KeyError is right.
        rec.state = CALL_TRANSITIONS[rec.state, event]

    @staticmethod
    def _advance_incoming(rec: _Incoming, event: CallEvent) -> None:
        rec.state = INCOMING_CALL_TRANSITIONS[rec.state, event]

    def _launch(self, rec: _Outgoing, now: float) -> None:
        self._advance(rec, CallEvent.SLOT_FREE)
        rec.deadline = now + rec.timeout
        self._in_flight[rec.unique_id] = rec
        self._outbox.append(rec.text)
        self._n_calls_sent += 1

    def _fill_slots(self, now: float) -> None:
        queued = self._queued
        while queued and len(self._in_flight) < self._max_in_flight:
            rec = queued.pop(next(iter(queued)))
            if (
                self._initiate is not Initiate.ALL
                and not self._is_central
                and rec.action is not _BOOT
                and not rec.triggered
            ):
                # Queued while Accepted; a BootNotification ahead of it was then answered Pending
                # or Rejected: the Substation "sends nothing but BootNotification" (§5).
                self._advance(rec, CallEvent.FAILURE)
                self._n_failures += 1
                error = LocalProtocolError(
                    f"{rec.action.value} may not be sent in boot state {self._boot_state.value}",
                    ErrorCode.SECURITY_ERROR,
                )
                self._events.append(
                    CallFailed(rec.unique_id, rec.action, rec.call, FailureReason.NOT_ALLOWED, error)
                )
                continue
            self._launch(rec, now)

    def _answer_boot(self, payload: dict[str, Any]) -> None:
        """A BootNotification response was received (Substation) or sent (Central System)."""
        old = self._boot_state
        new = BOOT_TRANSITIONS.get((old, payload.get("status")))  # type: ignore[arg-type]
        if new is None:
            return  # no valid status (validation off): nothing to learn
        interval = payload.get("interval")
        if type(interval) is not int:
            interval = None
        if new is BootState.ACCEPTED:
            self._heartbeat_interval = interval
        else:
            self._boot_retry_interval = interval if interval else DEFAULT_BOOT_RETRY_INTERVAL
        close = self._is_central and new is BootState.REJECTED
        if close:
            self._should_close = True
        if new is old:
            return
        self._boot_state = new
        self._initiate = SUBSTATION_MAY_INITIATE[new]
        # Credits from a TriggerMessage belong to the boot state they were given in.
        self._triggered.clear()
        self._events.append(BootStateChanged(old, new, interval, close))

    def _grant_trigger(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        """A TriggerMessage was answered Accepted: the Substation may send the requested message
        once, even before its boot is accepted (§M3.1 Pending, PROTOCOL-DECISIONS §5 (a))."""
        # Credits exist only where the table says TRIGGERED (not when Accepted: everything is
        # allowed; not when Rejected: the station answers nothing, so an answer is a misbehaviour).
        if response.get("status") != "Accepted" or self._initiate is not Initiate.TRIGGERED:
            return
        action = _ACTIONS.get(request.get("requestedMessage"))  # type: ignore[arg-type]
        if action is None or action is _BOOT or action not in _SUBSTATION_ACTIONS:
            return
        self._triggered[action] = self._triggered.get(action, 0) + 1

    def _use_trigger(self, action: Action) -> bool:
        n = self._triggered.get(action)
        if not n:
            return False
        if n == 1:
            del self._triggered[action]
        else:
            self._triggered[action] = n - 1
        return True

    # -----------------------------------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        """Counters since the connection was made.

        ``received`` / ``sent``: text messages; ``calls_sent`` (written), ``calls_received``
        (surfaced as CallReceived), ``results_received``, ``errors_received``, ``timeouts``,
        ``failures``; ``ignored`` with one ``ignored.<reason>`` per :class:`IgnoreReason` seen;
        ``auto_errors`` (CALLERRORs sent without the application) with ``auto_errors.<code>``,
        ``auto_errors_dropped`` (not queued: ``Config.max_pending_messages`` were waiting);
        current sizes ``in_flight``, ``queued``, ``incoming``, ``pending_events``,
        ``pending_messages``.
        """
        stats = {
            "received": self._n_received,
            "sent": self._n_sent,
            "calls_sent": self._n_calls_sent,
            "calls_received": self._n_calls_received,
            "results_received": self._n_results,
            "errors_received": self._n_errors,
            "timeouts": self._n_timeouts,
            "failures": self._n_failures,
            "ignored": sum(self._ignored.values()),
            "auto_errors": sum(self._auto_errors.values()),
            "auto_errors_dropped": self._n_dropped,
            "in_flight": len(self._in_flight),
            "queued": len(self._queued),
            "incoming": len(self._incoming),
            "pending_events": len(self._events),
            "pending_messages": len(self._outbox),
        }
        for reason, n in self._ignored.items():
            stats[f"ignored.{reason}"] = n
        for code, n in self._auto_errors.items():
            stats[f"auto_errors.{code}"] = n
        return stats

    def __repr__(self) -> str:
        return (
            f"<Connection {self._role.value} boot={self._boot_state.value} in_flight={len(self._in_flight)} "
            f"queued={len(self._queued)} incoming={len(self._incoming)}{' closed' if self._closed else ''}>"
        )


def _unstructure(action: Action, payload: Any, *, request: bool) -> dict[str, Any]:
    """A typed payload object -> its wire dict, via the one cattrs converter (opt-in, lazy)."""
    declared = getattr(type(payload), "action", None)
    if declared is None:
        raise LocalProtocolError(
            f"payload must be a dict or a typed OS³P payload object, got {type(payload).__name__}",
            ErrorCode.FORMATION_VIOLATION,
        )
    if declared != action or getattr(type(payload), "is_request", request) is not request:
        raise LocalProtocolError(
            f"a {type(payload).__name__} cannot be the payload of {action.value}",
            ErrorCode.FORMATION_VIOLATION,
        )
    from ._converter import unstructure  # typed payloads are opt-in: import on first use

    result: dict[str, Any] = unstructure(payload)
    return result
