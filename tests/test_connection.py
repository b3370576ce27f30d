"""The sans-IO connection, rule by rule (PROTOCOL-DECISIONS §2-§5), through the public API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from helpers import (
    BOOT_REQUEST,
    GET_CONFIGURATION_RESPONSE,
    HEARTBEAT_RESPONSE,
    RESET_REQUEST,
    RESET_RESPONSE,
    STATUS_REQUEST,
    ConnectionPair,
    boot_response,
    counter_ids,
    trigger_request,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from os3p_core import (
    Action,
    BootState,
    BootStateChanged,
    Call,
    CallError,
    CallErrorFrame,
    CallFailed,
    CallFrame,
    CallReceived,
    CallResult,
    CallTimedOut,
    Config,
    Connection,
    ErrorCode,
    ErrorReceived,
    FailureReason,
    FormationViolation,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    ResultReceived,
    Role,
    decode,
)
from os3p_core.payloads import (
    GenericStatus,
    HeartbeatRequest,
    HeartbeatResponse,
    ResetRequest,
    ResetResponse,
    ResetType,
)


def central(**config: Any) -> Connection:
    return Connection(Role.CENTRAL_SYSTEM, Config(id_factory=counter_ids("cs-"), **config))


def substation(**config: Any) -> Connection:
    return Connection(Role.SUBSTATION, Config(id_factory=counter_ids("ss-"), **config))


def drain(conn: Connection) -> list[Any]:
    return ConnectionPair.events(conn)


def sent(conn: Connection) -> list[list[Any]]:
    return [json.loads(text) for text in conn.messages_to_send()]


def call_text(unique_id: str, action: str, payload: dict[str, Any] | None = None) -> str:
    return json.dumps([2, unique_id, action, {} if payload is None else payload])


# ---------------------------------------------------------------------------------------------
# The basic exchange


def test_boot_heartbeat_and_server_initiated_call() -> None:
    p = ConnectionPair()
    assert p.substation.boot_state is BootState.NEW
    assert p.central.boot_state is BootState.NEW
    events = p.boot("Accepted", interval=300)
    assert [type(e) for e in events] == [ResultReceived, BootStateChanged]
    assert events[1] == BootStateChanged(BootState.NEW, BootState.ACCEPTED, 300, False)
    assert p.substation.boot_state is p.central.boot_state is BootState.ACCEPTED
    assert p.substation.heartbeat_interval == p.central.heartbeat_interval == 300

    received, events = p.call(p.substation, "Heartbeat", {}, HEARTBEAT_RESPONSE)
    assert received.action is Action.HEARTBEAT
    assert events == [
        ResultReceived(received.unique_id, Action.HEARTBEAT, HEARTBEAT_RESPONSE, Call("Heartbeat"))
    ]

    received, events = p.call(p.central, "Reset", RESET_REQUEST, RESET_RESPONSE)
    assert received.payload == RESET_REQUEST
    assert isinstance(events[0], ResultReceived)
    assert events[0].payload == RESET_RESPONSE
    assert p.substation.outstanding_calls == p.central.outstanding_calls == 0
    # Compact JSON on the wire, with the injected ids.
    assert p.wire[0] == (
        Role.SUBSTATION,
        json.dumps([2, "ss-0", "BootNotification", BOOT_REQUEST], separators=(",", ":")),
    )


def test_send_returns_the_message_id_from_the_factory() -> None:
    conn = central()
    assert conn.send(Call("Reset", RESET_REQUEST), 0.0) == "cs-0"
    assert sent(conn) == [[2, "cs-0", "Reset", RESET_REQUEST]]


def test_default_ids_are_uuid4_text() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM)
    ids = {conn.send(Call("Reset"), 0.0) for _ in range(50)}
    assert len(ids) == 50
    for unique_id in ids:
        assert len(unique_id) == 36
        parsed = uuid.UUID(unique_id)
        assert str(parsed) == unique_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert conn.config == Config()


@pytest.mark.parametrize(
    "options",
    [
        {"call_timeout": 0},
        {"call_timeout": -1.0},
        {"max_outstanding_calls": 0},
        {"max_outstanding_calls": 1.5},
        {"max_queued_calls": -1},
        {"max_incoming_calls": 0},
        {"max_pending_events": 0},
        {"remember_timed_out": -1},
    ],
)
def test_config_rejects_bad_values(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the option
        Config(**options)


def test_config_is_frozen() -> None:
    config = Config(max_queued_calls=0)
    with pytest.raises(AttributeError):
        config.call_timeout = 1.0  # type: ignore[misc]


def test_role_must_be_a_role() -> None:
    with pytest.raises(TypeError):
        Connection("CentralSystem")  # type: ignore[arg-type]


def test_properties_and_repr() -> None:
    conn = central()
    assert conn.role is Role.CENTRAL_SYSTEM
    assert conn.heartbeat_interval is None
    assert conn.boot_retry_interval is None
    assert not conn.should_close
    assert not conn.closed
    assert "CentralSystem" in repr(conn)
    conn.connection_lost()
    assert conn.closed
    assert "closed" in repr(conn)


# ---------------------------------------------------------------------------------------------
# Events and reply helpers


def test_call_received_reply_helpers() -> None:
    event = CallReceived("7", Action.RESET, {})
    assert event.result() == CallResult("7", {})
    assert event.result(RESET_RESPONSE) == CallResult("7", RESET_RESPONSE)
    assert event.error(ErrorCode.NOT_SUPPORTED) == CallError("7", ErrorCode.NOT_SUPPORTED, "", {})
    assert event.error("GenericError", "boom", {"a": 1}) == CallError(
        "7", ErrorCode.GENERIC_ERROR, "boom", {"a": 1}
    )


def test_typed_request_and_response() -> None:
    p = ConnectionPair(previously_accepted=True)
    received, events = p.call(p.central, "Reset", RESET_REQUEST, RESET_RESPONSE)
    assert received.request() == ResetRequest(type=ResetType.SOFT)
    assert isinstance(events[0], ResultReceived)
    assert events[0].response() == ResetResponse(status=GenericStatus.ACCEPTED)


def test_typed_payloads_are_unstructured_when_sent() -> None:
    p = ConnectionPair(previously_accepted=True)
    p.substation.send(Call.of(HeartbeatRequest(), timeout=5.0), p.now)
    p.flush(p.substation)
    (received,) = drain(p.central)
    assert received.payload == {}
    when = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    p.central.send(received.result(HeartbeatResponse(current_time=when)), p.now)
    assert sent(p.central) == [[3, received.unique_id, {"currentTime": "2026-11-26T08:00:00Z"}]]


def test_typed_payload_of_the_wrong_kind_is_refused() -> None:
    conn = Connection(Role.SUBSTATION, previously_accepted=True)
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Heartbeat", HeartbeatResponse(current_time=datetime.now(UTC))), 0.0)
    with pytest.raises(LocalProtocolError):
        conn.send(Call("MeterValues", HeartbeatRequest()), 0.0)
    with pytest.raises(LocalProtocolError) as info:
        conn.send(Call("Heartbeat", object()), 0.0)
    assert info.value.code is ErrorCode.FORMATION_VIOLATION
    with pytest.raises(LocalProtocolError):
        Call.of({"not": "typed"})
    assert conn.messages_to_send() == []


def test_event_constructors_validate() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Call("NoSuchAction")
    assert info.value.code is ErrorCode.NOT_IMPLEMENTED
    with pytest.raises(LocalProtocolError):
        Call(5)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Call("Heartbeat", {}, timeout=0)
    with pytest.raises(LocalProtocolError):
        CallResult(5)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        CallError("1", "NoSuchCode")
    with pytest.raises(LocalProtocolError):
        CallError("1", ErrorCode.GENERIC_ERROR, "x" * 256)
    with pytest.raises(LocalProtocolError):
        CallError("1", ErrorCode.GENERIC_ERROR, "", None)  # type: ignore[arg-type]
    assert Call(Action.HEARTBEAT) == Call("Heartbeat", {}, None)


def test_send_refuses_other_objects() -> None:
    conn = central()
    with pytest.raises(LocalProtocolError):
        conn.send(CallReceived("1", Action.RESET, {}), 0.0)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------
# PROTOCOL-DECISIONS §2: frames


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not_json"),
        ("{}", "not_array"),
        ('[2,17,"Heartbeat",{}]', "no_message_id"),
        ('[7,"1",{}]', "unknown_message_type"),
        ('[3,"1",[]]', "malformed_result"),
        ('[4,"1","GenericError"]', "malformed_error"),
    ],
)
def test_garbage_is_ignored_and_counted(text: str, reason: str) -> None:
    conn = central()
    conn.receive_message(text, 0.0)
    assert conn.next_event() is None
    assert conn.messages_to_send() == []
    stats = conn.statistics()
    assert stats["ignored"] == 1
    assert stats[f"ignored.{reason}"] == 1
    assert stats["received"] == 1


def test_binary_messages_are_ignored() -> None:
    conn = central()
    conn.receive_message(b'[2,"1","Heartbeat",{}]', 0.0)  # type: ignore[arg-type]
    assert conn.statistics()["ignored.not_text"] == 1


def test_too_large_is_ignored() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(max_message_chars=100), previously_accepted=True)
    conn.receive_message(call_text("1", "StatusNotification", {**STATUS_REQUEST, "info": "x" * 100}), 0.0)
    assert conn.next_event() is None
    assert conn.messages_to_send() == []
    assert conn.statistics()["ignored.too_large"] == 1


@pytest.mark.parametrize(
    "text",
    ['[2,"abc","Heartbeat"]', '[2,"abc",1,{}]', '[2,"abc","Heartbeat",[]]', '[2,"abc","Heartbeat",{},1]'],
)
def test_malformed_call_gets_formation_violation(text: str) -> None:
    conn = central()
    conn.receive_message(text, 0.0)
    assert conn.next_event() is None
    (reply,) = sent(conn)
    assert reply[:3] == [4, "abc", "FormationViolation"]
    assert reply[4] == {}
    assert conn.statistics()["auto_errors.FormationViolation"] == 1


def test_long_id_gets_formation_violation_echoing_the_id() -> None:
    conn = central()
    long_id = "x" * 37
    conn.receive_message(call_text(long_id, "Heartbeat"), 0.0)
    assert sent(conn)[0][:3] == [4, long_id, "FormationViolation"]


def test_null_payload_is_treated_as_empty_object() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    conn.receive_message('[2,"1","Heartbeat",null]', 0.0)
    assert conn.next_event() == CallReceived("1", Action.HEARTBEAT, {})


def test_duplicate_id_of_a_call_being_handled_gets_protocol_error() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    conn.receive_message(call_text("1", "Heartbeat"), 0.0)
    first = conn.next_event()
    assert isinstance(first, CallReceived)
    conn.receive_message(call_text("1", "StatusNotification", STATUS_REQUEST), 0.0)
    assert conn.next_event() is None
    assert sent(conn) == [
        [4, "1", "ProtocolError", "a call with this message id is already being handled", {}]
    ]
    # The first call is not disturbed ...
    conn.send(first.result(HEARTBEAT_RESPONSE), 0.0)
    assert sent(conn) == [[3, "1", HEARTBEAT_RESPONSE]]
    # ... and once answered, the id may be used again.
    conn.receive_message(call_text("1", "Heartbeat"), 0.0)
    assert isinstance(conn.next_event(), CallReceived)


@pytest.mark.parametrize("reply", ['[3,"nope",{}]', '[4,"nope","GenericError","",{}]'])
def test_unknown_responses_are_ignored_never_answered(reply: str) -> None:
    conn = central()
    conn.receive_message(reply, 0.0)
    assert conn.next_event() is None
    assert conn.messages_to_send() == []
    assert conn.statistics()["ignored.unknown_response"] == 1


def test_response_to_a_queued_call_is_unknown() -> None:
    conn = central()
    conn.send(Call("Reset"), 0.0)
    conn.send(Call("Reset"), 0.0)  # queued as cs-1
    conn.receive_message('[3,"cs-1",{"status":"Accepted"}]', 0.0)
    assert conn.next_event() is None
    assert conn.statistics()["ignored.unknown_response"] == 1
    assert conn.outstanding_calls == 2


def test_malformed_error_leaves_the_call_waiting() -> None:
    conn = central()
    conn.send(Call("Reset"), 0.0)
    conn.receive_message('[4,"cs-0","GenericError",{}]', 0.0)
    assert conn.next_event() is None
    assert conn.next_deadline() == 30.0
    conn.handle_timeout(30.0)
    assert isinstance(conn.next_event(), CallTimedOut)


# ---------------------------------------------------------------------------------------------
# PROTOCOL-DECISIONS §3: error codes on incoming CALLs


def test_unknown_action_gets_not_implemented() -> None:
    conn = central()
    conn.receive_message(call_text("1", "DataTransfer"), 0.0)
    assert sent(conn)[0][:3] == [4, "1", "NotImplemented"]


def test_action_in_the_wrong_direction_gets_not_supported() -> None:
    conn = substation()
    conn.receive_message(call_text("1", "BootNotification", BOOT_REQUEST), 0.0)
    assert sent(conn)[0][:3] == [4, "1", "NotSupported"]
    conn = central()
    conn.receive_message(call_text("2", "Reset"), 0.0)
    assert sent(conn)[0][:3] == [4, "2", "NotSupported"]


@pytest.mark.parametrize(
    ("payload", "code", "path"),
    [
        ({"status": "Ok", "errorCode": 5}, "TypeConstraintViolation", "data.errorCode"),
        ({"status": "Ok"}, "OccurenceConstraintViolation", "data.errorCode"),
        ({"status": "Broken", "errorCode": "NoError"}, "PropertyConstraintViolation", "data.status"),
        ({"status": "Ok", "errorCode": "NoError", "x": 1}, "FormationViolation", "data.x"),
    ],
)
def test_invalid_payload_gets_the_schema_code(payload: dict[str, Any], code: str, path: str) -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    conn.receive_message(call_text("1", "StatusNotification", payload), 0.0)
    assert conn.next_event() is None
    (reply,) = sent(conn)
    assert reply[:3] == [4, "1", code]
    assert reply[4]["path"] == path
    assert 0 < len(reply[3]) <= 255


def test_incoming_validation_can_be_turned_off() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(validate_incoming=False), previously_accepted=True)
    conn.receive_message(call_text("1", "StatusNotification", {"bogus": True}), 0.0)
    assert conn.next_event() == CallReceived("1", Action.STATUS_NOTIFICATION, {"bogus": True})


def test_too_many_incoming_calls_get_generic_error() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(max_incoming_calls=2), previously_accepted=True)
    for i in range(3):
        conn.receive_message(call_text(str(i), "Heartbeat"), 0.0)
    assert len(drain(conn)) == 2
    assert sent(conn)[0][:3] == [4, "2", "GenericError"]
    conn.send(CallResult("0", HEARTBEAT_RESPONSE), 0.0)
    conn.receive_message(call_text("3", "Heartbeat"), 0.0)
    assert isinstance(conn.next_event(), CallReceived)


def test_answering_with_an_error() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    conn.receive_message(call_text("1", "Heartbeat"), 0.0)
    event = conn.next_event()
    assert isinstance(event, CallReceived)
    conn.send(event.error(ErrorCode.INTERNAL_ERROR, "handler failed"), 0.0)
    assert sent(conn) == [[4, "1", "InternalError", "handler failed", {}]]
    with pytest.raises(LocalProtocolError):  # exactly once
        conn.send(event.result(HEARTBEAT_RESPONSE), 0.0)
    with pytest.raises(LocalProtocolError):
        conn.send(event.error(ErrorCode.INTERNAL_ERROR), 0.0)


def test_an_error_that_is_not_json_leaves_the_call_open() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    conn.receive_message(call_text("1", "Heartbeat"), 0.0)
    event = conn.next_event()
    assert isinstance(event, CallReceived)
    with pytest.raises(LocalProtocolError):
        conn.send(event.error(ErrorCode.INTERNAL_ERROR, "", {"x": float("nan")}), 0.0)
    conn.send(event.error(ErrorCode.INTERNAL_ERROR), 0.0)
    assert len(sent(conn)) == 1


def test_invalid_outgoing_result_raises_and_sends_nothing() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    conn.receive_message(call_text("1", "Heartbeat"), 0.0)
    event = conn.next_event()
    assert isinstance(event, CallReceived)
    with pytest.raises(LocalProtocolError) as info:
        conn.send(event.result({"currentTime": "yesterday"}), 0.0)
    assert info.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert info.value.details["path"] == "data.currentTime"
    assert conn.messages_to_send() == []
    conn.send(event.result(HEARTBEAT_RESPONSE), 0.0)  # still answerable
    assert len(sent(conn)) == 1


def test_result_for_no_call_raises() -> None:
    conn = central()
    with pytest.raises(LocalProtocolError):
        conn.send(CallResult("1", {}), 0.0)


# ---------------------------------------------------------------------------------------------
# PROTOCOL-DECISIONS §4: calls in flight


def test_invalid_outgoing_call_raises_and_sends_nothing() -> None:
    conn = central()
    with pytest.raises(LocalProtocolError) as info:
        conn.send(Call("Reset", {"type": "Sideways"}), 0.0)
    assert info.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert isinstance(info.value.__cause__, Exception)
    assert conn.messages_to_send() == []
    assert conn.outstanding_calls == 0


def test_outgoing_validation_can_be_turned_off() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(validate_outgoing=False, id_factory=counter_ids("")))
    conn.send(Call("Reset", {"type": "Sideways"}), 0.0)
    assert sent(conn) == [[2, "0", "Reset", {"type": "Sideways"}]]


def test_outgoing_payload_that_is_not_json_raises() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(validate_outgoing=False))
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Reset", {"type": float("inf")}), 0.0)
    assert conn.outstanding_calls == 0


def test_call_in_the_wrong_direction_raises() -> None:
    with pytest.raises(LocalProtocolError) as info:
        central().send(Call("Heartbeat"), 0.0)
    assert info.value.code is ErrorCode.NOT_SUPPORTED


def test_one_call_in_flight_the_rest_queued_in_order() -> None:
    conn = central()
    ids = [conn.send(Call("Reset"), float(i)) for i in range(3)]
    assert [m[1] for m in sent(conn)] == ["cs-0"]
    assert conn.outstanding_calls == 3
    assert conn.statistics()["queued"] == 2
    conn.receive_message(json.dumps([3, ids[0], RESET_RESPONSE]), 10.0)
    assert [type(e) for e in drain(conn)] == [ResultReceived]
    assert [m[1] for m in sent(conn)] == ["cs-1"]
    # The deadline of a queued call starts when it goes out.
    assert conn.next_deadline() == 40.0
    conn.receive_message(json.dumps([4, ids[1], "NotSupported", "no", {"why": 1}]), 11.0)
    assert drain(conn) == [
        ErrorReceived(
            ids[1], Action.RESET, ErrorCode.NOT_SUPPORTED, "no", {"why": 1}, Call("Reset"), "NotSupported"
        )
    ]
    assert [m[1] for m in sent(conn)] == ["cs-2"]


def test_unknown_error_code_is_generic_error() -> None:
    conn = central()
    conn.send(Call("Reset"), 0.0)
    conn.receive_message('[4,"cs-0","Teapot","",{}]', 0.0)
    event = conn.next_event()
    assert isinstance(event, ErrorReceived)
    assert event.code is ErrorCode.GENERIC_ERROR
    assert event.code_text == "Teapot"


def test_more_calls_in_flight_when_configured() -> None:
    conn = central(max_outstanding_calls=2)
    for _ in range(3):
        conn.send(Call("Reset"), 0.0)
    assert [m[1] for m in sent(conn)] == ["cs-0", "cs-1"]


def test_queue_is_bounded() -> None:
    conn = central(max_queued_calls=1)
    conn.send(Call("Reset"), 0.0)
    conn.send(Call("Reset"), 0.0)
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Reset"), 0.0)
    assert conn.outstanding_calls == 2


def test_timeout_fails_the_call_and_sends_the_next() -> None:
    conn = central()
    first = conn.send(Call("Reset"), 0.0)
    conn.send(Call("Reset", timeout=5.0), 1.0)
    conn.messages_to_send()
    assert conn.next_deadline() == 30.0
    conn.handle_timeout(29.9)
    assert conn.next_event() is None
    conn.handle_timeout(30.0)
    assert drain(conn) == [CallTimedOut(first, Action.RESET, Call("Reset"))]
    assert [m[1] for m in sent(conn)] == ["cs-1"]
    assert conn.next_deadline() == 35.0  # the per-call timeout
    # A response after the deadline is ignored and counted as late.
    conn.receive_message(json.dumps([3, first, RESET_RESPONSE]), 31.0)
    assert conn.next_event() is None
    assert conn.statistics()["ignored.late_response"] == 1
    assert conn.statistics()["timeouts"] == 1


def test_only_the_last_timed_out_ids_are_remembered() -> None:
    # Config.remember_timed_out bounds the memory of timed-out ids: the oldest is forgotten first, so
    # its late response counts as unknown, while a newer one's still counts as late.
    conn = central(remember_timed_out=1)
    first = conn.send(Call("Reset"), 0.0)
    conn.handle_timeout(30.0)
    second = conn.send(Call("Reset"), 30.0)
    conn.handle_timeout(60.0)
    assert [type(e) for e in drain(conn)] == [CallTimedOut, CallTimedOut]
    conn.receive_message(json.dumps([3, first, RESET_RESPONSE]), 61.0)
    conn.receive_message(json.dumps([3, second, RESET_RESPONSE]), 61.0)
    stats = conn.statistics()
    assert (stats["ignored.unknown_response"], stats["ignored.late_response"]) == (1, 1)
    assert conn.next_event() is None


def test_config_timeout() -> None:
    conn = central(call_timeout=2.5)
    conn.send(Call("Reset"), 10.0)
    assert conn.next_deadline() == 12.5


def test_invalid_response_fails_the_call() -> None:
    conn = central()
    conn.send(Call("Reset"), 0.0)
    conn.send(Call("Reset"), 0.0)
    conn.messages_to_send()
    conn.receive_message('[3,"cs-0",{"status":"Maybe"}]', 1.0)
    (event,) = drain(conn)
    assert isinstance(event, CallFailed)
    assert event.reason is FailureReason.INVALID_RESPONSE
    assert isinstance(event.error, RemoteProtocolError)
    assert event.error.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert conn.messages_to_send() == ['[2,"cs-1","Reset",{}]']  # nothing sent back; next call goes
    assert conn.statistics()["failures"] == 1


def test_invalid_response_is_delivered_when_validation_is_off() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(validate_incoming=False, id_factory=counter_ids("")))
    conn.send(Call("Reset"), 0.0)
    conn.receive_message('[3,"0",{"status":"Maybe"}]', 1.0)
    assert isinstance(conn.next_event(), ResultReceived)


def test_id_factory_is_checked() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(id_factory=lambda: "x" * 37))
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Reset"), 0.0)
    conn = Connection(Role.CENTRAL_SYSTEM, Config(id_factory=lambda: 5))  # type: ignore[arg-type,return-value]
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Reset"), 0.0)
    conn = Connection(Role.CENTRAL_SYSTEM, Config(id_factory=lambda: "same"))
    conn.send(Call("Reset"), 0.0)
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Reset"), 0.0)  # in flight
    conn.handle_timeout(30.0)
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Reset"), 31.0)  # timed out recently: its late response would match
    assert conn.outstanding_calls == 0
    ids = iter(["a", "b", "b"])
    conn = Connection(Role.CENTRAL_SYSTEM, Config(id_factory=lambda: next(ids)))
    conn.send(Call("Reset"), 0.0)
    conn.send(Call("Reset"), 0.0)  # queued behind "a"
    with pytest.raises(LocalProtocolError, match="in use"):
        conn.send(Call("Reset"), 0.0)  # "b" is queued
    assert conn.statistics()["queued"] == 1


def test_connection_lost_fails_everything() -> None:
    conn = central()
    conn.send(Call("Reset"), 0.0)
    conn.send(Call("GetConfiguration"), 0.0)
    conn.receive_message(call_text("in-1", "BootNotification", BOOT_REQUEST), 0.0)
    assert isinstance(conn.next_event(), CallReceived)
    conn.connection_lost()
    events = drain(conn)
    assert [(type(e), e.action, e.reason) for e in events] == [
        (CallFailed, Action.RESET, FailureReason.CONNECTION_LOST),
        (CallFailed, Action.GET_CONFIGURATION, FailureReason.CONNECTION_LOST),
    ]
    assert all(type(e.error) is ProtocolError for e in events)
    assert conn.messages_to_send() == []
    assert conn.next_deadline() is None
    assert conn.outstanding_calls == 0
    with pytest.raises(LocalProtocolError):
        conn.send(Call("Reset"), 1.0)
    with pytest.raises(LocalProtocolError):
        conn.send(CallResult("in-1", boot_response()), 1.0)
    conn.receive_message('[3,"cs-0",{"status":"Accepted"}]', 1.0)
    assert conn.next_event() is None
    assert conn.statistics()["ignored.after_connection_lost"] == 1
    conn.handle_timeout(100.0)
    assert conn.next_event() is None
    conn.connection_lost()  # idempotent
    assert conn.next_event() is None


def test_unread_events_bound_receive() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(max_pending_events=2), previously_accepted=True)
    conn.receive_message(call_text("1", "Heartbeat"), 0.0)
    conn.receive_message(call_text("2", "Heartbeat"), 0.0)
    with pytest.raises(LocalProtocolError):
        conn.receive_message(call_text("3", "Heartbeat"), 0.0)
    assert conn.statistics()["received"] == 2  # the refused message was not consumed
    drain(conn)
    conn.receive_message(call_text("3", "Heartbeat"), 0.0)


def test_automatic_replies_beyond_the_outbox_bound_are_dropped() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, Config(max_pending_messages=2, id_factory=counter_ids("")))
    for i in range(4):
        conn.receive_message(call_text(str(i), "Nope"), 0.0)
    assert [m[1] for m in sent(conn)] == ["0", "1"]
    assert conn.statistics()["auto_errors_dropped"] == 2
    # What the application sends is never dropped.
    for i in range(4):
        conn.receive_message(call_text(f"x{i}", "Nope"), 0.0)
    conn.send(Call("Reset"), 0.0)
    assert [m[1] for m in sent(conn)] == ["x0", "x1", "0"]


def test_statistics() -> None:
    p = ConnectionPair()
    p.boot()
    p.call(p.substation, "Heartbeat", {}, HEARTBEAT_RESPONSE)
    stats = p.substation.statistics()
    assert stats["calls_sent"] == 2
    assert stats["results_received"] == 2
    assert stats["sent"] == 2
    assert stats["received"] == 2
    assert stats["errors_received"] == stats["timeouts"] == stats["failures"] == stats["ignored"] == 0
    assert p.central.statistics()["calls_received"] == 2


def test_statistics_counts_every_outcome_and_reports_current_sizes() -> None:
    # Every counter and gauge of statistics(), each moved at least once, compared as a whole: a
    # counter that is not kept (or a key that is misspelt) fails here.
    conn = central(call_timeout=10.0, trigger_boot_on_security_error=False)  # trigger: test_station_policy
    first = conn.send(Call("Reset", RESET_REQUEST), 0.0)  # in flight
    conn.send(Call("Reset", RESET_REQUEST), 0.0)  # queued behind it
    for text in ("not json", "[9]", json.dumps([3, "nobody", {}])):  # ignored: 3 reasons
        conn.receive_message(text, 1.0)
    conn.receive_message(call_text("c1", "Heartbeat"), 1.0)  # SecurityError: station not accepted
    conn.receive_message('[2,"c2","Heartbeat",[]]', 1.0)  # FormationViolation
    conn.receive_message(call_text("c3", "BootNotification", BOOT_REQUEST), 1.0)  # surfaced
    conn.receive_message(json.dumps([4, first, "NotSupported", "no", {}]), 2.0)  # next call goes out
    conn.handle_timeout(20.0)  # the second call times out
    assert conn.statistics() == {
        "received": 7,
        "sent": 0,
        "calls_sent": 2,
        "calls_received": 1,
        "results_received": 0,
        "errors_received": 1,
        "timeouts": 1,
        "failures": 0,
        "ignored": 3,
        "ignored.not_json": 1,
        "ignored.unknown_message_type": 1,
        "ignored.unknown_response": 1,
        "auto_errors": 2,
        "auto_errors.SecurityError": 1,
        "auto_errors.FormationViolation": 1,
        "auto_errors_dropped": 0,
        "in_flight": 0,
        "queued": 0,
        "incoming": 1,
        "pending_events": 3,  # CallReceived, ErrorReceived, CallTimedOut
        "pending_messages": 4,  # two CALLs, two automatic CALLERRORs
    }
    assert len(conn.messages_to_send()) == 4
    conn.send(Call("Reset", RESET_REQUEST), 30.0)
    conn.connection_lost()  # the call in flight fails
    stats = conn.statistics()
    assert (stats["sent"], stats["calls_sent"], stats["failures"]) == (4, 3, 1)
    assert (stats["in_flight"], stats["incoming"], stats["pending_messages"]) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------
# PROTOCOL-DECISIONS §5: boot-state gating, Substation side


def test_substation_sends_only_boot_until_accepted() -> None:
    conn = substation()
    with pytest.raises(LocalProtocolError) as info:
        conn.send(Call("Heartbeat"), 0.0)
    assert info.value.code is ErrorCode.SECURITY_ERROR
    assert conn.messages_to_send() == []
    conn.send(Call("BootNotification", BOOT_REQUEST), 0.0)


def test_substation_answers_calls_while_new() -> None:
    conn = substation()
    conn.receive_message(call_text("1", "Reset"), 0.0)
    assert isinstance(conn.next_event(), CallReceived)


def test_pending_answers_but_initiates_only_triggered_messages() -> None:
    p = ConnectionPair()
    events = p.boot("Pending", interval=0)
    assert events[1] == BootStateChanged(BootState.NEW, BootState.PENDING, 0, False)
    assert p.substation.boot_state is p.central.boot_state is BootState.PENDING
    assert p.substation.boot_retry_interval == p.central.boot_retry_interval == 60  # 0 -> 60
    assert p.substation.heartbeat_interval is None
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("StatusNotification", STATUS_REQUEST), p.now)
    # The Central System may configure a pending station: the station answers.
    p.call(p.central, "GetConfiguration", {}, GET_CONFIGURATION_RESPONSE)
    # A rejected trigger grants nothing.
    p.call(p.central, "TriggerMessage", trigger_request("StatusNotification"), {"status": "Rejected"})
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("StatusNotification", STATUS_REQUEST), p.now)
    # Two accepted triggers: exactly two StatusNotifications, no more.
    for _ in range(2):
        p.call(p.central, "TriggerMessage", trigger_request("StatusNotification"), {"status": "Accepted"})
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("Heartbeat"), p.now)  # not the triggered action
    for _ in range(2):
        _, events = p.call(p.substation, "StatusNotification", STATUS_REQUEST, {})
        assert isinstance(events[0], ResultReceived)
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("StatusNotification", STATUS_REQUEST), p.now)
    # Boot again: accepted.
    p.boot("Accepted", 120)
    assert p.substation.heartbeat_interval == 120
    p.call(p.substation, "StatusNotification", STATUS_REQUEST, {})


def test_trigger_credit_is_used_only_when_the_call_is_accepted() -> None:
    p = ConnectionPair()
    p.boot("Pending")
    p.call(p.central, "TriggerMessage", trigger_request("StatusNotification"), {"status": "Accepted"})
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("StatusNotification", {"status": "Nope"}), p.now)  # invalid: credit kept
    p.call(p.substation, "StatusNotification", STATUS_REQUEST, {})


def test_trigger_credits_do_not_survive_a_boot_state_change() -> None:
    p = ConnectionPair()
    p.boot("Pending")
    p.call(p.central, "TriggerMessage", trigger_request("StatusNotification"), {"status": "Accepted"})
    p.boot("Accepted")
    p.boot("Pending")
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("StatusNotification", STATUS_REQUEST), p.now)


def test_trigger_while_accepted_grants_nothing_extra() -> None:
    p = ConnectionPair()
    p.boot("Accepted")
    p.call(p.central, "TriggerMessage", trigger_request("MeterValues"), {"status": "Accepted"})
    p.boot("Pending")
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("StatusNotification", STATUS_REQUEST), p.now)


@pytest.mark.parametrize("requested", ["BootNotification", "Reset", "Nonsense", None])
def test_triggers_that_grant_nothing(requested: str | None) -> None:
    # BootNotification needs no credit; the others only pass with validation off.
    cfg = Config(validate_incoming=False, validate_outgoing=False)
    p = ConnectionPair(central_config=cfg, substation_config=cfg)
    p.boot("Pending")
    payload = {} if requested is None else {"requestedMessage": requested}
    p.call(p.central, "TriggerMessage", payload, {"status": "Accepted"})
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("Heartbeat"), p.now)
    p.substation.send(Call("BootNotification", BOOT_REQUEST), p.now)


def test_rejected_substation_answers_nothing() -> None:
    p = ConnectionPair()
    events = p.boot("Rejected", interval=600)
    assert events[1] == BootStateChanged(BootState.NEW, BootState.REJECTED, 600, False)
    assert p.substation.boot_retry_interval == 600
    assert not p.substation.should_close  # the Central System closes
    p.central.send(Call("Reset"), p.now)
    p.flush(p.central)
    assert p.substation.next_event() is None
    assert p.substation.messages_to_send() == []
    assert p.substation.statistics()["ignored.call_while_rejected"] == 1
    with pytest.raises(LocalProtocolError):
        p.substation.send(Call("Heartbeat"), p.now)
    p.substation.send(Call("BootNotification", BOOT_REQUEST), p.now)  # may try again


def test_previously_accepted_substation_needs_no_boot() -> None:
    p = ConnectionPair(previously_accepted=True)
    assert p.substation.boot_state is p.central.boot_state is BootState.ACCEPTED
    p.call(p.substation, "StatusNotification", STATUS_REQUEST, {})


def test_same_boot_answer_twice_is_no_change() -> None:
    p = ConnectionPair()
    p.boot("Accepted", 300)
    events = p.boot("Accepted", 60)
    assert [type(e) for e in events] == [ResultReceived]
    assert p.substation.heartbeat_interval == 60


def test_boot_response_without_status_changes_nothing() -> None:
    cfg = Config(validate_incoming=False, validate_outgoing=False)
    p = ConnectionPair(central_config=cfg, substation_config=cfg)
    _, events = p.call(p.substation, "BootNotification", BOOT_REQUEST, {"status": "Maybe", "interval": "x"})
    assert [type(e) for e in events] == [ResultReceived]
    assert p.substation.boot_state is BootState.NEW
    p.call(p.substation, "BootNotification", BOOT_REQUEST, {"status": "Accepted", "interval": "x"})
    assert p.substation.boot_state is BootState.ACCEPTED
    assert p.substation.heartbeat_interval is None


# ---------------------------------------------------------------------------------------------
# PROTOCOL-DECISIONS §5: boot-state gating, Central System side


def test_central_refuses_calls_from_a_station_not_accepted() -> None:
    conn = central()
    conn.receive_message(call_text("1", "Heartbeat"), 0.0)
    assert conn.next_event() is None
    reply, trigger = sent(conn)
    assert reply[:3] == [4, "1", "SecurityError"]
    assert reply[4] == {"bootState": "New"}
    # PROTOCOL-DECISIONS §5: and, once per connection, TriggerMessage(BootNotification).
    assert trigger[2:] == ["TriggerMessage", {"requestedMessage": "BootNotification"}]
    conn.receive_message(call_text("2", "BootNotification", BOOT_REQUEST), 0.0)
    assert isinstance(conn.next_event(), CallReceived)


def test_central_accepts_the_triggered_message_once() -> None:
    p = ConnectionPair()
    p.boot("Pending")
    p.call(p.central, "TriggerMessage", trigger_request("StatusNotification"), {"status": "Accepted"})
    # A misbehaving station (validation, gating off on its side: raw text) sends it twice.
    p.central.receive_message(call_text("x1", "StatusNotification", STATUS_REQUEST), p.now)
    p.central.receive_message(call_text("x2", "StatusNotification", STATUS_REQUEST), p.now)
    assert [e.unique_id for e in drain(p.central)] == ["x1"]
    assert [m[:3] for m in sent(p.central)] == [[4, "x2", "SecurityError"]]


def test_central_may_call_a_station_in_any_state() -> None:
    conn = central()
    conn.send(Call("GetConfiguration"), 0.0)
    assert len(conn.messages_to_send()) == 1


def test_central_rejects_and_asks_to_close() -> None:
    conn = central()
    conn.receive_message(call_text("1", "BootNotification", BOOT_REQUEST), 0.0)
    event = conn.next_event()
    assert isinstance(event, CallReceived)
    conn.send(event.result(boot_response("Rejected", 0)), 0.0)
    assert conn.should_close
    assert conn.next_event() == BootStateChanged(BootState.NEW, BootState.REJECTED, 0, True)
    assert sent(conn)[0][:2] == [3, "1"]  # the CALLRESULT goes out before the close
    assert conn.boot_retry_interval == 60
    # Rejected again: no change event, still closing.
    conn.receive_message(call_text("2", "BootNotification", BOOT_REQUEST), 0.0)
    event = conn.next_event()
    assert isinstance(event, CallReceived)
    conn.send(event.result(boot_response("Rejected", 0)), 0.0)
    assert conn.next_event() is None
    assert conn.should_close


def test_central_remembers_acceptance() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    conn.receive_message(call_text("1", "StatusNotification", STATUS_REQUEST), 0.0)
    assert isinstance(conn.next_event(), CallReceived)


def test_central_boot_answered_with_an_error_changes_nothing() -> None:
    conn = central()
    conn.receive_message(call_text("1", "BootNotification", BOOT_REQUEST), 0.0)
    event = conn.next_event()
    assert isinstance(event, CallReceived)
    conn.send(event.error(ErrorCode.INTERNAL_ERROR), 0.0)
    assert conn.boot_state is BootState.NEW


def test_queued_call_fails_when_a_boot_ahead_of_it_is_not_accepted() -> None:
    p = ConnectionPair(previously_accepted=True)
    p.substation.send(Call("BootNotification", BOOT_REQUEST), p.now)
    heartbeat = p.substation.send(Call("Heartbeat"), p.now)  # allowed now (Accepted): queued
    p.flush(p.substation)
    (boot,) = drain(p.central)
    p.central.send(boot.result(boot_response("Pending")), p.now)
    p.flush(p.central)
    events = drain(p.substation)
    assert [type(e) for e in events] == [ResultReceived, BootStateChanged, CallFailed]
    assert events[2].unique_id == heartbeat
    assert events[2].reason is FailureReason.NOT_ALLOWED
    assert isinstance(events[2].error, LocalProtocolError)
    assert events[2].error.code is ErrorCode.SECURITY_ERROR
    assert p.substation.messages_to_send() == []  # never sent


def test_queued_triggered_call_still_goes() -> None:
    p = ConnectionPair()
    p.boot("Pending")
    p.call(p.central, "TriggerMessage", trigger_request("StatusNotification"), {"status": "Accepted"})
    p.substation.send(Call("BootNotification", BOOT_REQUEST), p.now)
    status = p.substation.send(Call("StatusNotification", STATUS_REQUEST), p.now)  # queued on the credit
    p.flush(p.substation)
    (boot,) = drain(p.central)
    p.central.send(boot.result(boot_response("Rejected")), p.now)
    p.flush(p.central)
    assert [type(e) for e in drain(p.substation)] == [ResultReceived, BootStateChanged]
    assert [json.loads(m)[1] for m in p.substation.messages_to_send()] == [status]


def test_a_rejected_station_answering_a_trigger_gets_no_credit() -> None:
    conn = central()
    conn.receive_message(call_text("b", "BootNotification", BOOT_REQUEST), 0.0)
    boot = conn.next_event()
    assert isinstance(boot, CallReceived)
    conn.send(boot.result(boot_response("Rejected")), 0.0)
    conn.send(Call("TriggerMessage", trigger_request("StatusNotification")), 0.0)
    conn.receive_message('[3,"cs-0",{"status":"Accepted"}]', 0.0)  # it should not have answered
    conn.receive_message(call_text("s", "StatusNotification", STATUS_REQUEST), 0.0)
    assert [type(e) for e in drain(conn)] == [BootStateChanged, ResultReceived]
    assert sent(conn)[-1][:3] == [4, "s", "SecurityError"]


def test_ignored_messages_and_automatic_replies_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    # PROTOCOL-DECISIONS §2: "Ignore, count it, log it."  At debug level, truncated.
    conn = central()
    with caplog.at_level("DEBUG", logger="os3p_core.connection"):
        conn.receive_message("x" * 1000, 0.0)
        conn.receive_message(call_text("1", "Nope"), 0.0)
    assert [r.levelname for r in caplog.records] == ["DEBUG", "DEBUG"]
    assert "not_json" in caplog.records[0].getMessage()
    assert len(caplog.records[0].getMessage()) < 200
    assert "NotImplemented" in caplog.records[1].getMessage()


_json_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8)
_wire_elements = st.one_of(
    st.sampled_from([2, 3, 4, 5]),
    st.sampled_from(["1", "x" * 37, "Heartbeat", "Reset", "BootNotification", "StatusNotification", "Nope"]),
    st.dictionaries(st.sampled_from(["status", "errorCode", "currentTime", "x"]), _json_scalars, max_size=3),
    _json_scalars,
)
_wire_texts = st.one_of(
    st.text(max_size=40),
    st.lists(_wire_elements, max_size=6).map(json.dumps),
)


@settings(max_examples=300, deadline=None)
@given(
    role=st.sampled_from([Role.CENTRAL_SYSTEM, Role.SUBSTATION]),
    accepted=st.booleans(),
    texts=st.lists(_wire_texts, max_size=8),
)
def test_arbitrary_input_never_raises_and_only_calls_are_answered(
    role: Role, accepted: bool, texts: list[str]
) -> None:
    conn = Connection(role, Config(id_factory=counter_ids("me-")), previously_accepted=accepted)
    # One call of our own in flight, so that responses have something to (not) match.
    own = (
        Call("Reset", RESET_REQUEST)
        if role is Role.CENTRAL_SYSTEM
        else Call("BootNotification", BOOT_REQUEST)
    )
    conn.send(own, 0.0)
    conn.messages_to_send()
    call_ids: set[str] = set()
    for text in texts:
        frame = decode(text)
        if isinstance(frame, CallFrame | FormationViolation):
            call_ids.add(frame.unique_id)
        conn.receive_message(text, 1.0)
        events = drain(conn)
        for event in events:
            if isinstance(event, CallReceived):
                conn.send(event.error(ErrorCode.NOT_SUPPORTED), 1.0)
        for reply in conn.messages_to_send():
            reply_frame = decode(reply)
            assert isinstance(reply_frame, CallErrorFrame)
            assert reply_frame.unique_id in call_ids
    stats = conn.statistics()
    assert stats["received"] == len(texts)
