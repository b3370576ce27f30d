"""RPC frames: one WebSocket text message <-> one CALL, CALLRESULT or CALLERROR (spec §J4).

Decoding never raises on network input.  Every text maps to exactly one of five outcomes
(PROTOCOL-DECISIONS §2):

=====================================================  ===========================================
input                                                  outcome
=====================================================  ===========================================
``[2, "<id>", "<Action>", {payload} | null]``          :class:`CallFrame` (``null`` -> ``{}``, §J4.2)
``[3, "<id>", {payload} | null]``                      :class:`CallResultFrame`
``[4, "<id>", "<code>", "<description>", {details}]``  :class:`CallErrorFrame`
a CALL with a readable string id but a bad shape, or   :class:`FormationViolation` carrying that id
an id longer than 36 characters (§J4.1.2 Table 3)      (the id is echoed exactly as received)
anything else                                          :class:`IgnoredFrame` with an :class:`IgnoreReason`
=====================================================  ===========================================

"Since CallError needs to refer to the original request, this only works if the original request
ID can be discerned somehow. If this is not possible [...] the call should simply be ignored."
(§J4.4 case 1).  "When a server receives a message with a Message Type Number not in this list, it
SHALL ignore the message payload." (§J4.1.1).  Responses are never answered, so a malformed
CALLRESULT or CALLERROR is ignored rather than rejected.

Encoding produces compact JSON (no spaces, UTF-8 text kept as is) and refuses what is not JSON
(``NaN``, ``Infinity``, non-serialisable objects) with a :class:`LocalProtocolError`.

Speed matters here: :func:`parse` is the hot path used by the connection.  It returns the decoded
list itself for a well-formed frame (no wrapper object) and an outcome object otherwise; the public
:func:`decode` wraps the result in frame classes.  ``json`` is C-accelerated and linear in the size
of its input; nesting too deep for the C scanner raises ``RecursionError``, which is caught.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Any, Final

import attrs

from ._errors import ErrorCode, LocalProtocolError

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "MAX_MESSAGE_ID_LENGTH",
    "CallErrorFrame",
    "CallFrame",
    "CallResultFrame",
    "FormationViolation",
    "Frame",
    "IgnoreReason",
    "IgnoredFrame",
    "decode",
    "encode",
    "encode_call",
    "encode_error",
    "encode_result",
    "parse",
]

#: Message type numbers, spec §J4.1.1 Table 2 (kept in sync with WAMP).
CALL: Final = 2
CALLRESULT: Final = 3
CALLERROR: Final = 4

#: "messageId string Maximum of 36 characters, to allow for GUID's" (§J4.1.2 Table 3).
MAX_MESSAGE_ID_LENGTH: Final = 36


class IgnoreReason(enum.StrEnum):
    """Why an incoming message was ignored (counted in ``Connection.statistics()``).

    The first group is decided by the frame parser, the second by the connection.
    """

    NOT_TEXT = "not_text"  # a binary message, or not a str at all: OS³P is text only (§J4)
    NOT_JSON = "not_json"  # not valid JSON (NaN/Infinity included), or nested beyond the parser
    NOT_ARRAY = "not_array"  # valid JSON but not an array
    NO_MESSAGE_ID = "no_message_id"  # no element 1, or it is not a string (§J4.4 case 1)
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"  # element 0 is not the integer 2, 3 or 4 (§J4.1.1)
    MALFORMED_RESULT = "malformed_result"  # a CALLRESULT that is not [3, id, object|null]
    MALFORMED_ERROR = "malformed_error"  # a CALLERROR that is not [4, id, str, str, object|null]
    # Decided by the connection:
    TOO_LARGE = "too_large"  # longer than Config.max_message_chars
    UNKNOWN_RESPONSE = "unknown_response"  # a response whose id matches no outstanding CALL
    LATE_RESPONSE = "late_response"  # a response to a CALL that already timed out
    CALL_WHILE_REJECTED = (
        "call_while_rejected"  # a Substation whose boot was Rejected answers nothing (§M3.1)
    )
    AFTER_CONNECTION_LOST = "after_connection_lost"  # received after connection_lost()


@attrs.frozen(slots=True)
class CallFrame:
    """A well-formed CALL: ``[2, unique_id, action, payload]`` (§J4.2).

    ``action`` is whatever string the peer sent; whether it is an OS³P action, and one this role
    receives, is the connection's business (PROTOCOL-DECISIONS §3).
    """

    unique_id: str
    action: str
    payload: dict[str, Any]


@attrs.frozen(slots=True)
class CallResultFrame:
    """A well-formed CALLRESULT: ``[3, unique_id, payload]`` (§J4.3)."""

    unique_id: str
    payload: dict[str, Any]


@attrs.frozen(slots=True)
class CallErrorFrame:
    """A well-formed CALLERROR: ``[4, unique_id, error_code, error_description, error_details]`` (§J4.4).

    ``error_code`` is kept as received; the connection maps codes outside Table 7 to ``GenericError``.
    """

    unique_id: str
    error_code: str
    error_description: str
    error_details: dict[str, Any]


@attrs.frozen(slots=True)
class IgnoredFrame:
    """A message to ignore without reply (PROTOCOL-DECISIONS §2), and why."""

    reason: IgnoreReason
    description: str


@attrs.frozen(slots=True)
class FormationViolation:
    """A CALL with a readable string id that must be answered with CALLERROR ``FormationViolation``.

    ``unique_id`` is exactly what the peer sent, even when it is longer than 36 characters
    (PROTOCOL-DECISIONS §2: "echoing the id as received").
    """

    unique_id: str
    description: str

    code: ErrorCode = ErrorCode.FORMATION_VIOLATION


Frame = CallFrame | CallResultFrame | CallErrorFrame | IgnoredFrame | FormationViolation


def _reject_constant(name: str) -> Any:
    # json accepts NaN, Infinity and -Infinity by default; RFC 8259 JSON does not (§J4: "MUST be
    # valid JSON").
    raise ValueError(f"{name} is not JSON")


def _not_json(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _compact_encoder(ensure_ascii: bool) -> Callable[[Any], str]:
    """Compact JSON encoding (RFC 8259: no NaN/Infinity), as fast as the C encoder allows.

    ``json.JSONEncoder.encode`` builds a new C encoder object on every call, which costs twice
    the encoding of a small frame.  We build it once.  ``c_make_encoder`` is CPython's private
    accelerator, so the result is checked against the public encoder and we fall back to it if
    anything differs.  Without the ``markers`` dict a circular structure raises RecursionError
    instead of ValueError; both are caught by ``_dump``.
    """
    public: Callable[[Any], str] = json.JSONEncoder(
        ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False, default=_not_json
    ).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - not CPython
        return public
    quote = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    try:
        c_encode = make(None, _not_json, quote, None, ":", ",", False, False, False)

        def fast(obj: Any) -> str:
            return "".join(c_encode(obj, 0))

        probe = [2, 'é"\n', "", {"a": [1.5, True, None, -3, 10**20], "b": {}}]
        if fast(probe) == public(probe):
            try:
                fast([float("nan")])
            except ValueError:
                return fast
    except Exception:  # pragma: no cover - another CPython's private signature
        pass
    return public  # pragma: no cover - see above


_decoder: Final = json.JSONDecoder(parse_constant=_reject_constant)
_decode_json: Final = _decoder.decode
_encode_json: Final = _compact_encoder(ensure_ascii=False)
_encode_json_ascii: Final = _compact_encoder(ensure_ascii=True)

# Outcomes that carry no per-message data are shared objects, so ignoring garbage allocates nothing.
_NOT_TEXT: Final = IgnoredFrame(IgnoreReason.NOT_TEXT, "not a text message")
_NOT_JSON: Final = IgnoredFrame(IgnoreReason.NOT_JSON, "not valid JSON")
_NOT_ARRAY: Final = IgnoredFrame(IgnoreReason.NOT_ARRAY, "not a JSON array")
_NO_ID: Final = IgnoredFrame(IgnoreReason.NO_MESSAGE_ID, "no readable message id")
_UNKNOWN_TYPE: Final = IgnoredFrame(IgnoreReason.UNKNOWN_MESSAGE_TYPE, "message type is not 2, 3 or 4")
_BAD_RESULT: Final = IgnoredFrame(IgnoreReason.MALFORMED_RESULT, "CALLRESULT is not [3, id, payload object]")
_BAD_ERROR: Final = IgnoredFrame(
    IgnoreReason.MALFORMED_ERROR, "CALLERROR is not [4, id, code, description, details object]"
)


def parse(text: object) -> list[Any] | IgnoredFrame | FormationViolation:
    """Decode one message; the connection's hot path.

    Returns the decoded list for a well-formed frame, with a ``null`` payload (or CALLERROR details)
    replaced by ``{}``: ``[2, id, action, payload]``, ``[3, id, payload]`` or
    ``[4, id, code, description, details]``.  Otherwise an :class:`IgnoredFrame` or a
    :class:`FormationViolation`.  Never raises.
    """
    if type(text) is not str:
        return _NOT_TEXT
    try:
        msg = _decode_json(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, NaN/Infinity and integers beyond
        # sys.get_int_max_str_digits(); RecursionError very deep nesting.
        return _NOT_JSON
    if type(msg) is not list:
        return _NOT_ARRAY
    n = len(msg)
    if n == 0:
        return _NO_ID
    kind = msg[0]
    # type() is not int also rejects True (== 1) and 2.0 (== 2): the number must be the integer.
    if type(kind) is not int or not CALL <= kind <= CALLERROR:
        return _UNKNOWN_TYPE
    if n < 2 or type(msg[1]) is not str:
        return _NO_ID
    if kind == CALL:
        if n == 4 and type(msg[2]) is str and len(msg[1]) <= MAX_MESSAGE_ID_LENGTH:
            payload = msg[3]
            if type(payload) is dict:
                return msg
            if payload is None:
                msg[3] = {}
                return msg
        return _formation_violation(msg)
    if kind == CALLRESULT:
        if n != 3:
            return _BAD_RESULT
        payload = msg[2]
        if type(payload) is dict:
            return msg
        if payload is None:
            msg[2] = {}
            return msg
        return _BAD_RESULT
    # CALLERROR
    if n != 5 or type(msg[2]) is not str or type(msg[3]) is not str:
        return _BAD_ERROR
    details = msg[4]
    if type(details) is dict:
        return msg
    if details is None:
        msg[4] = {}
        return msg
    return _BAD_ERROR


def _formation_violation(msg: list[Any]) -> FormationViolation:
    unique_id: str = msg[1]
    if len(unique_id) > MAX_MESSAGE_ID_LENGTH:
        why = f"message id is longer than {MAX_MESSAGE_ID_LENGTH} characters"
    elif len(msg) != 4:
        why = f"a CALL has 4 elements, this one has {len(msg)}"
    elif type(msg[2]) is not str:
        why = "the action of a CALL must be a string"
    else:
        why = "the payload of a CALL must be a JSON object"
    return FormationViolation(unique_id, why)


def decode(text: object) -> Frame:
    """Decode one WebSocket message into a frame or a PROTOCOL-DECISIONS §2 outcome. Never raises.

    >>> decode('[2,"1","Heartbeat",null]')
    CallFrame(unique_id='1', action='Heartbeat', payload={})
    """
    r = parse(text)
    if type(r) is not list:
        return r  # type: ignore[return-value]
    kind = r[0]
    if kind == CALL:
        return CallFrame(r[1], r[2], r[3])
    if kind == CALLRESULT:
        return CallResultFrame(r[1], r[2])
    return CallErrorFrame(r[1], r[2], r[3], r[4])


def _dump(obj: list[Any]) -> str:
    try:
        text = _encode_json(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(
            f"message is not JSON-serialisable: {exc}", ErrorCode.FORMATION_VIOLATION
        ) from None
    if not text.isascii():
        # A lone surrogate (legal in a Python str, and produced by json for "\ud800") cannot be
        # written as UTF-8 (§J4: the message MUST be UTF-8).  Escape the whole message instead:
        # the JSON text is different but decodes to the same value.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _encode_json_ascii(obj)
    return text


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    """``[2,"<id>","<action>",{payload}]`` as compact JSON (§J4.2)."""
    return _dump([CALL, unique_id, action, payload])


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    """``[3,"<id>",{payload}]`` as compact JSON (§J4.3)."""
    return _dump([CALLRESULT, unique_id, payload])


def encode_error(unique_id: str, code: str, description: str, details: dict[str, Any]) -> str:
    """``[4,"<id>","<code>","<description>",{details}]`` as compact JSON (§J4.4)."""
    return _dump([CALLERROR, unique_id, str(code), description, details])


def encode(frame: CallFrame | CallResultFrame | CallErrorFrame | FormationViolation) -> str:
    """Encode a frame as compact JSON; a :class:`FormationViolation` becomes its CALLERROR."""
    if isinstance(frame, CallFrame):
        return encode_call(frame.unique_id, frame.action, frame.payload)
    if isinstance(frame, CallResultFrame):
        return encode_result(frame.unique_id, frame.payload)
    if isinstance(frame, CallErrorFrame):
        return encode_error(frame.unique_id, frame.error_code, frame.error_description, frame.error_details)
    return encode_error(frame.unique_id, frame.code, frame.description, {})
