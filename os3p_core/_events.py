"""Events: what the application sends, and what happened on the connection.

After ``h11/_events.py`` and ``wsproto/events.py``: small frozen, slotted classes named for what
happened, with the reply helpers on the event (``CallReceived.result()`` like wsproto's
``Ping.response()``).

The application builds :class:`Call`, :class:`CallResult` and :class:`CallError` and passes them to
``Connection.send``; their constructors check what can be checked without the connection, so user
code cannot build a malformed one.  The connection builds the others and hands them out through
``Connection.next_event()``; those skip validation (the connection already checked the wire).

Payloads are plain ``dict`` on the hot path.  Typed payload objects from :mod:`os3p_core.payloads`
are accepted wherever a payload is sent (the connection unstructures them with the one cattrs
converter), and received events turn their dict into a typed object on request
(:meth:`CallReceived.request`, :meth:`ResultReceived.response`): typing is a choice, not a tax.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._actions import Action
from ._errors import ErrorCode, LocalProtocolError, ProtocolError
from ._state import BootState

__all__ = [
    "BootStateChanged",
    "Call",
    "CallError",
    "CallFailed",
    "CallReceived",
    "CallResult",
    "CallTimedOut",
    "ErrorReceived",
    "Event",
    "FailureReason",
    "ResultReceived",
]

#: §J4.4 leaves the description free; PROTOCOL-DECISIONS §3 caps it at 255 characters.
MAX_ERROR_DESCRIPTION = 255

_ACTIONS: dict[str, Action] = {a.value: a for a in Action}


def _to_action(value: Action | str) -> Action:
    if type(value) is Action:
        return value
    try:
        return _ACTIONS[value]
    except (KeyError, TypeError):
        raise LocalProtocolError(f"{value!r} is not an OS³P action", ErrorCode.NOT_IMPLEMENTED) from None


def _to_error_code(value: ErrorCode | str) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        raise LocalProtocolError(
            f"{value!r} is not an error code of §J4.4 Table 7", ErrorCode.GENERIC_ERROR
        ) from None


def _check_unique_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if type(value) is not str:
        raise LocalProtocolError(f"{attribute.name} must be a str, got {type(value).__name__}")


def _check_description(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if type(value) is not str or len(value) > MAX_ERROR_DESCRIPTION:
        raise LocalProtocolError(
            f"error description must be a str of at most {MAX_ERROR_DESCRIPTION} characters"
        )


def _check_details(instance: object, attribute: attrs.Attribute[dict[str, Any]], value: object) -> None:
    # §J4.4 Table 6: "If there are no error details you MUST fill in an empty object {}."
    if type(value) is not dict:
        raise LocalProtocolError("error details must be a dict (a JSON object)")


def _check_timeout(instance: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not value > 0:
        raise LocalProtocolError(f"timeout must be > 0 seconds, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Sent by the application


@attrs.frozen(slots=True)
class Call:
    """A CALL the application wants to send (§J4.2).

    ``payload`` is a dict, or a typed request object of the same action from
    :mod:`os3p_core.payloads`.  ``timeout`` overrides ``Config.call_timeout`` for this call
    (PROTOCOL-DECISIONS §4: "configurable per connection and per call").  ``Connection.send``
    returns the message id it gives the call.
    """

    action: Action = attrs.field(converter=_to_action)
    payload: Any = attrs.field(factory=dict)
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)

    @classmethod
    def of(cls, request: Any, timeout: float | None = None) -> Call:
        """A call for a typed request object, taking the action from its ``action`` class variable."""
        action = getattr(type(request), "action", None)
        if action is None:
            raise LocalProtocolError(f"{type(request).__name__} is not a typed OS³P request")
        return cls(action, request, timeout)


@attrs.frozen(slots=True)
class CallResult:
    """The CALLRESULT answering the incoming call ``unique_id`` (§J4.3).

    Usually made with :meth:`CallReceived.result`.  ``payload`` is a dict or a typed response object.
    """

    unique_id: str = attrs.field(validator=_check_unique_id)
    payload: Any = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class CallError:
    """The CALLERROR answering the incoming call ``unique_id`` (§J4.4).

    Usually made with :meth:`CallReceived.error`.  ``code`` is an :class:`ErrorCode` (or its wire
    spelling), ``description`` at most 255 characters, ``details`` a JSON object.
    """

    unique_id: str = attrs.field(validator=_check_unique_id)
    code: ErrorCode = attrs.field(converter=_to_error_code)
    description: str = attrs.field(default="", validator=_check_description)
    details: dict[str, Any] = attrs.field(factory=dict, validator=_check_details)


# ---------------------------------------------------------------------------------------------
# Produced by the connection


@attrs.frozen(slots=True)
class CallReceived:
    """The peer sent a valid CALL that this side must answer, exactly once, with ``send``.

    The payload has passed schema validation (unless ``Config.validate_incoming`` is off).
    """

    unique_id: str
    action: Action
    payload: dict[str, Any]

    def result(self, payload: Any = None) -> CallResult:
        """The :class:`CallResult` answering this call (``None`` means ``{}``)."""
        return CallResult(self.unique_id, {} if payload is None else payload)

    def error(
        self, code: ErrorCode | str, description: str = "", details: dict[str, Any] | None = None
    ) -> CallError:
        """The :class:`CallError` answering this call."""
        return CallError(self.unique_id, code, description, {} if details is None else details)

    def request(self) -> Any:
        """The payload as a typed request object (``os3p_core.payloads.<Action>Request``)."""
        from ._converter import structure_request  # typed payloads are opt-in: import on first use

        return structure_request(self.action, self.payload)


@attrs.frozen(slots=True)
class ResultReceived:
    """The peer answered our ``call`` with a CALLRESULT whose payload passed validation."""

    unique_id: str
    action: Action
    payload: dict[str, Any]
    call: Call

    def response(self) -> Any:
        """The payload as a typed response object (``os3p_core.payloads.<Action>Response``)."""
        from ._converter import structure_response  # typed payloads are opt-in: import on first use

        return structure_response(self.action, self.payload)


@attrs.frozen(slots=True)
class ErrorReceived:
    """The peer answered our ``call`` with a CALLERROR.

    ``code`` is the Table 7 code; a code outside the table is reported as ``GenericError`` ("Any
    other error not covered by the previous ones") with the received text in ``code_text``.
    """

    unique_id: str
    action: Action
    code: ErrorCode
    description: str
    details: dict[str, Any]
    call: Call
    code_text: str


@attrs.frozen(slots=True)
class CallTimedOut:
    """No response to our ``call`` arrived before its deadline (PROTOCOL-DECISIONS §4).

    A response that arrives later is ignored and counted as ``late_response``.
    """

    unique_id: str
    action: Action
    call: Call


class FailureReason(enum.Enum):
    """Why a :class:`CallFailed` happened."""

    #: The CALLRESULT payload broke the response schema (PROTOCOL-DECISIONS §3, last paragraph).
    INVALID_RESPONSE = "invalid response"
    #: ``connection_lost()`` was called while the call was queued or in flight (§4).
    CONNECTION_LOST = "connection lost"
    #: A Substation's queued call whose turn came when the boot state no longer allowed it (a
    #: BootNotification ahead of it was answered Pending or Rejected): "Until a BootNotification is
    #: Accepted it sends nothing but BootNotification" (PROTOCOL-DECISIONS §5).  Never sent.
    NOT_ALLOWED = "not allowed"


@attrs.frozen(slots=True)
class CallFailed:
    """Our ``call`` ended without a usable response.

    ``error`` says why and whose fault: a :class:`~os3p_core.RemoteProtocolError` with the schema
    violation's code for an invalid response, a :class:`~os3p_core.LocalProtocolError`
    (``SecurityError``) for a call the boot state no longer allows, a plain
    :class:`~os3p_core.ProtocolError` when the connection was lost.  ``unique_id`` is the id
    ``send`` returned, whether or not the call had gone out.
    """

    unique_id: str
    action: Action
    call: Call
    reason: FailureReason
    error: ProtocolError


@attrs.frozen(slots=True)
class BootStateChanged:
    """The connection's boot state changed (§M3.1).

    ``interval`` is the BootNotification response's ``interval`` (seconds): the heartbeat interval
    when Accepted, the retry delay when Pending or Rejected.  ``close_connection`` is true on the
    Central System when it has answered ``Rejected``: "If rejected, the Central System will
    terminate the connection." (§M3.1); the adapter writes the outbox and then closes.
    """

    old: BootState
    new: BootState
    interval: int | None
    close_connection: bool = False


Event = CallReceived | ResultReceived | ErrorReceived | CallTimedOut | CallFailed | BootStateChanged
