"""Typed payloads and the payload converter, through the public API (``os3p_core``, ``os3p_core.payloads``).

Hypothesis round trips over every action live in ``test_payloads_properties.py``.
"""

from __future__ import annotations

import copy
import enum
import json
import re
import subprocess
import sys
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from helpers import ANNEX_EXAMPLES as ANNEX
from helpers import ANNEX_METER_VALUES, ANNEX_SET_PROFILE, BOOT_REQUEST, start_point_request

import os3p_core
from os3p_core import (
    Action,
    Call,
    CallReceived,
    Connection,
    ErrorCode,
    PayloadConverter,
    ResultReceived,
    Role,
    SchemaViolation,
    load_schema,
    request_class,
    response_class,
    structure_request,
    structure_response,
    unstructure,
    validate_request,
    validate_response,
)
from os3p_core.payloads import (
    BootNotificationRequest,
    BootNotificationResponse,
    ConfigurationKey,
    GetConfigurationResponse,
    GetEffectiveStreetlightDayScheduleRequest,
    GetEffectiveStreetlightDayScheduleResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    Measurand,
    MeterValue,
    MeterValuesRequest,
    OverrideAction,
    OverrideStreetlightRequest,
    Payload,
    PayloadValueError,
    ReadingContext,
    RecurrencyKind,
    RegistrationStatus,
    ResetRequest,
    ResetType,
    ResumeStreetlightRequest,
    SampledValue,
    SchedulePeriod,
    SchedulePoint,
    SchedulePointKind,
    SetStreetlightProfileRequest,
    StatusNotificationRequest,
    StreetlightProfile,
    UnitOfMeasure,
)

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
KINDS = ("Request", "Response")

# --- the annex's examples (§M6.x.2, §M7.x.2), as printed ---------------------------------------
# (action, kind, payload), from the one transcription in tests/helpers.py.  The
# ClearSingleStreetlightProfile example (profileId together with stackLevel) is schema-valid; the
# station answers it Rejected (PROTOCOL-DECISIONS §8).

BOOT = BOOT_REQUEST
METER_VALUES = ANNEX_METER_VALUES
SET_PROFILE = ANNEX_SET_PROFILE
ANNEX_EXAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    (action, kind, payload) for section, action, kind, payload, _ in ANNEX if section.startswith("§M")
]

#: What the converter sends back for an example, where that differs from the annex's text:
#: date-times gain the station's offset (PROTOCOL-DECISIONS §8), the clearSchedule alias becomes
#: clearAllSchedules, the tolerated status of the effective schedule is dropped.
NORMALISED: dict[tuple[str, str], dict[str, Any]] = {
    ("GetEffectiveStreetlightDaySchedule", "Request"): {"contactorId": 1, "at": "2015-07-07T00:00:00+02:00"},
    ("GetEffectiveStreetlightDaySchedule", "Response"): {
        "contactorId": 1,
        "daySchedule": [{"start": "20:11:00", "end": "23:00:00"}, {"start": "05:30:00", "end": "07:00:00"}],
    },
    ("SetStreetlightProfile", "Request"): {
        "contactorId": 1,
        "clearAllSchedules": True,
        "streetlightProfiles": [
            {
                **SET_PROFILE["streetlightProfiles"][0],  # type: ignore[index]
                "validFrom": "2015-06-06T00:00:00+02:00",
                "validTo": "2019-09-06T00:00:00+02:00",
            }
        ],
    },
}


def _structure(action: str, kind: str, payload: Any) -> Payload:
    return structure_request(action, payload) if kind == "Request" else structure_response(action, payload)


def _validate(action: str, kind: str, payload: Any) -> None:
    (validate_request if kind == "Request" else validate_response)(action, payload)


def test_typed_payloads_are_opt_in() -> None:
    # Issue 2: "typed structuring must be a choice, not a tax".  In a fresh interpreter, importing
    # os3p_core and a whole boot + heartbeat exchange with dicts load neither cattrs nor the payload
    # classes; the first typed use does.
    code = """
import sys
import os3p_core
from os3p_core import Call, CallReceived, Connection, ResultReceived, Role

def typed_loaded():
    return {"cattrs", "os3p_core.payloads"} & set(sys.modules)

assert not typed_loaded(), typed_loaded()
station, central = Connection(Role.SUBSTATION), Connection(Role.CENTRAL_SYSTEM)

answers = {"BootNotification": {"status": "Accepted", "currentTime": "2026-11-26T08:00:00Z", "interval": 300},
           "Heartbeat": {"currentTime": "2026-11-26T08:00:00Z"}}
for action, payload in (("BootNotification", BOOT), ("Heartbeat", {})):
    station.send(Call(action, payload), 0.0)
    for text in station.messages_to_send():
        central.receive_message(text, 0.0)
    (call,) = [e for e in iter(central.next_event, None) if isinstance(e, CallReceived)]
    central.send(call.result(answers[action]), 0.0)
    for text in central.messages_to_send():
        station.receive_message(text, 0.0)
    assert any(isinstance(e, ResultReceived) for e in iter(station.next_event, None))
    assert station.boot_state is central.boot_state is os3p_core.BootState.ACCEPTED
assert not typed_loaded(), typed_loaded()
assert os3p_core.payloads.HeartbeatRequest.action == "Heartbeat"
assert "os3p_core.payloads" in sys.modules
os3p_core.structure_request("Heartbeat", {})
assert "cattrs" in sys.modules
"""
    subprocess.run([sys.executable, "-c", f"BOOT = {BOOT!r}\n{code}"], check=True, timeout=60)


@pytest.mark.parametrize(
    ("action", "kind", "payload"), ANNEX_EXAMPLES, ids=[f"{a}{k}" for a, k, _ in ANNEX_EXAMPLES]
)
def test_annex_example_round_trips(action: str, kind: str, payload: dict[str, Any]) -> None:
    original = copy.deepcopy(payload)
    obj = _structure(action, kind, payload)
    assert payload == original, "structuring must not modify its input"
    assert type(obj).action == action
    assert type(obj).__name__ == f"{action}{kind}"
    wire = unstructure(obj)
    assert wire == NORMALISED.get((action, kind), payload)
    _validate(action, kind, wire)
    assert _structure(action, kind, wire) == obj


def test_annex_examples_cover_every_action_and_kind() -> None:
    assert {(a, k) for a, k, _ in ANNEX_EXAMPLES} == {(a.value, k) for a in Action for k in KINDS}


# --- the classes ----------------------------------------------------------------------------------


def test_one_class_per_action_and_kind() -> None:
    for action in Action:
        for kind, lookup in (("Request", request_class), ("Response", response_class)):
            cls = lookup(action)
            assert cls is getattr(os3p_core.payloads, f"{action.value}{kind}")
            assert cls.action is action
            assert cls.is_request is (kind == "Request")
            assert issubclass(cls, Payload)
            assert attrs.has(cls)
            assert hasattr(cls, "__slots__")
            assert "__dict__" not in dir(cls), "slotted"
    assert request_class("Heartbeat") is HeartbeatRequest  # a plain string works as well as an Action
    with pytest.raises(KeyError):
        request_class("Hearbeat")
    with pytest.raises(KeyError):
        structure_response("Authorize", {})


def test_payloads_are_frozen_and_hashable() -> None:
    obj = HeartbeatResponse(datetime(2013, 2, 1, 15, 9, 18, tzinfo=UTC))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        obj.current_time = datetime.now(UTC)  # type: ignore[misc]
    request = structure_request("MeterValues", METER_VALUES)
    assert hash(request) == hash(structure_request("MeterValues", METER_VALUES))


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name.rstrip("_"))


def _fields_match_schema(cls: type, schema: dict[str, Any], where: str) -> None:
    """Field names (camelCase), required-ness, enum value sets and nested shapes equal the schema's."""
    hints = typing.get_type_hints(cls)
    fields = {a.name: a for a in attrs.fields(cls)}
    wire = {_camel(name): name for name in fields}
    properties = dict(schema.get("properties", {}))
    # PROTOCOL-DECISIONS §8: input-only names with no field of their own.
    if where == "SetStreetlightProfileRequest":
        properties.pop("clearSchedule")
    if where == "GetEffectiveStreetlightDayScheduleResponse":
        properties.pop("status")
    assert set(wire) == set(properties), where
    for wire_name, name in wire.items():
        prop = properties[wire_name]
        required = fields[name].default is attrs.NOTHING
        assert required == (wire_name in schema.get("required", ())), f"{where}.{wire_name} required"
        tp = hints[name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            assert not required
            (tp,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
        if "enum" in prop:
            assert issubclass(tp, enum.StrEnum), f"{where}.{wire_name}"
            assert [m.value for m in tp] == prop["enum"], f"{where}.{wire_name} enum values"
        elif prop.get("format") == "date-time":
            assert tp is datetime, f"{where}.{wire_name}"
        elif prop["type"] == "array":
            (item,) = typing.get_args(tp)[:1]
            if prop["items"]["type"] == "object":
                _fields_match_schema(item, prop["items"], f"{where}.{wire_name}[]")
            else:
                assert item is str
        elif prop["type"] == "object":
            _fields_match_schema(tp, prop, f"{where}.{wire_name}")
        else:
            assert tp is {"string": str, "integer": int, "boolean": bool}[prop["type"]], (
                f"{where}.{wire_name}"
            )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", list(Action))
def test_class_matches_schema(action: Action, kind: str) -> None:
    cls = request_class(action) if kind == "Request" else response_class(action)
    _fields_match_schema(cls, load_schema(action, kind), cls.__name__)


# --- camelCase, omitted optionals -------------------------------------------------------------------


def test_camel_case_on_the_wire_snake_case_on_objects() -> None:
    obj = structure_request("BootNotification", BOOT)
    assert isinstance(obj, BootNotificationRequest)
    assert obj.station_number == "987654321"
    assert obj.firmware_version == "1.1.0"
    assert list(unstructure(obj)) == list(BOOT)
    # OverrideStreetlight's wire "action" is action_: "action" is the ClassVar of every payload.
    override = OverrideStreetlightRequest(OverrideAction.SUSPEND, contactor_id=2)
    assert OverrideStreetlightRequest.action is Action.OVERRIDE_STREETLIGHT
    assert unstructure(override) == {"action": "Suspend", "contactorId": 2}


def test_absent_optionals_are_omitted_never_null() -> None:
    status = StatusNotificationRequest(
        status=os3p_core.payloads.StationStatus.OK, error_code=os3p_core.payloads.StationErrorCode.NO_ERROR
    )
    assert unstructure(status) == {"status": "Ok", "errorCode": "NoError"}
    assert unstructure(ResetRequest()) == {}
    # False, 0, "" and () are values, not absence.
    status = attrs.evolve(status, test=False, info="")
    assert unstructure(status) == {"status": "Ok", "errorCode": "NoError", "info": "", "test": False}
    assert unstructure(GetConfigurationResponse(unknown_key=())) == {"unknownKey": []}
    point = SchedulePoint.sunrise(0)
    assert unstructure(point) == {"kind": "Sunrise", "offset": 0}


def test_enums_and_tuples_become_plain_strings_and_lists() -> None:
    wire = unstructure(structure_request("MeterValues", METER_VALUES))
    sampled = wire["meterValue"][1]["sampledValue"][1]
    assert type(sampled["measurand"]) is str
    assert type(sampled["location"]) is str
    assert type(wire["meterValue"]) is list
    assert type(wire["meterValue"][0]["sampledValue"]) is list


def test_typed_objects_compare_with_their_strings() -> None:
    obj = structure_request("MeterValues", METER_VALUES)
    assert isinstance(obj, MeterValuesRequest)
    first = obj.meter_value[0].sampled_value[0]
    assert first.measurand is Measurand.CURRENT_L1
    assert first.measurand == "Current.L1"  # type: ignore[comparison-overlap]  # a StrEnum is a str
    assert first.unit is UnitOfMeasure.A
    assert first.context is None  # absent; Sample.Periodic by annex Table 3, but we keep "absent"


def test_build_objects_and_send_them() -> None:
    profile = StreetlightProfile(
        profile_id=1,
        stack_level=2,
        recurrency_kind=RecurrencyKind.DAILY,
        day_schedule=(
            SchedulePeriod(SchedulePoint.sunset(3600), SchedulePoint.absolute("01:00:00")),
            SchedulePeriod(SchedulePoint.absolute("06:00:00"), SchedulePoint.sunrise()),
        ),
        valid_from=datetime(2015, 6, 6, tzinfo=AMSTERDAM),
        valid_to=datetime(2019, 9, 6, tzinfo=AMSTERDAM),
    )
    request = SetStreetlightProfileRequest(
        contactor_id=1, streetlight_profiles=(profile,), clear_all_schedules=True
    )
    wire = unstructure(request)
    validate_request("SetStreetlightProfile", wire)
    assert wire == NORMALISED[("SetStreetlightProfile", "Request")]
    assert structure_request("SetStreetlightProfile", wire) == request


# --- date-times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2013-02-01T15:09:18Z", datetime(2013, 2, 1, 15, 9, 18, tzinfo=UTC)),
        ("2013-02-01t15:09:18z", datetime(2013, 2, 1, 15, 9, 18, tzinfo=UTC)),
        ("2013-02-01T16:09:18+01:00", datetime(2013, 2, 1, 15, 9, 18, tzinfo=UTC)),
        ("2013-02-01T15:09:18.5Z", datetime(2013, 2, 1, 15, 9, 18, 500000, tzinfo=UTC)),
        ("2013-02-01T15:09:18.123456789Z", datetime(2013, 2, 1, 15, 9, 18, 123456, tzinfo=UTC)),
        # No offset: local time of the station, Europe/Amsterdam by default (PROTOCOL-DECISIONS §8, §6).
        ("2015-07-07T00:00:00", datetime(2015, 7, 6, 22, 0, tzinfo=UTC)),  # CEST, +02:00
        ("2015-12-21T12:00:00", datetime(2015, 12, 21, 11, 0, tzinfo=UTC)),  # CET, +01:00
    ],
)
def test_date_time_input(text: str, expected: datetime) -> None:
    obj = structure_response("Heartbeat", {"currentTime": text})
    assert isinstance(obj, HeartbeatResponse)
    assert obj.current_time == expected
    assert obj.current_time.utcoffset() is not None


def test_naive_date_time_is_local_time_of_the_station() -> None:
    payload = {"contactorId": 1, "at": "2015-07-07T00:00:00"}
    default = structure_request("GetEffectiveStreetlightDaySchedule", payload)
    assert isinstance(default, GetEffectiveStreetlightDayScheduleRequest)
    assert default.at.utcoffset() == timedelta(hours=2)
    assert (default.at.year, default.at.month, default.at.day, default.at.hour) == (2015, 7, 7, 0)
    assert unstructure(default)["at"] == "2015-07-07T00:00:00+02:00"
    # Another station zone, by name or tzinfo.
    for zone in ("America/New_York", ZoneInfo("America/New_York")):
        converter = PayloadConverter(local_tz=zone)
        obj = converter.structure_request("GetEffectiveStreetlightDaySchedule", payload)
        assert isinstance(obj, GetEffectiveStreetlightDayScheduleRequest)
        assert obj.at == datetime(2015, 7, 7, 4, 0, tzinfo=UTC)
        assert converter.unstructure(obj)["at"] == "2015-07-07T00:00:00-04:00"
    # An explicit offset is never reinterpreted.
    utc = PayloadConverter(local_tz="Asia/Tokyo").structure_response(
        "Heartbeat", {"currentTime": "2015-07-07T00:00:00Z"}
    )
    assert isinstance(utc, HeartbeatResponse)
    assert utc.current_time == datetime(2015, 7, 7, tzinfo=UTC)


def test_naive_wall_times_in_dst_transitions_use_fold_0() -> None:
    # STREETLIGHT-SEMANTICS "Points in time": a wall time that occurs twice means its first
    # occurrence; one that does not exist uses the offset in force before the gap.
    twice = structure_response("Heartbeat", {"currentTime": "2015-10-25T02:30:00"})
    assert isinstance(twice, HeartbeatResponse)
    assert twice.current_time == datetime(2015, 10, 25, 0, 30, tzinfo=UTC)  # still CEST
    missing = structure_response("Heartbeat", {"currentTime": "2015-03-29T02:30:00"})
    assert isinstance(missing, HeartbeatResponse)
    assert missing.current_time == datetime(2015, 3, 29, 1, 30, tzinfo=UTC)  # CET offset, i.e. 03:30 CEST


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2013, 2, 1, 15, 9, 18, tzinfo=UTC), "2013-02-01T15:09:18Z"),
        (datetime(2013, 2, 1, 15, 9, 18, 120000, tzinfo=UTC), "2013-02-01T15:09:18.120Z"),
        (datetime(2013, 2, 1, 15, 9, 18, 123456, tzinfo=UTC), "2013-02-01T15:09:18.123456Z"),
        (datetime(2013, 2, 1, 16, 9, 18, tzinfo=timezone(timedelta(hours=1))), "2013-02-01T16:09:18+01:00"),
        (datetime(2013, 7, 1, 16, 9, 18, tzinfo=AMSTERDAM), "2013-07-01T16:09:18+02:00"),
        (datetime(2013, 1, 1, 0, 0, tzinfo=ZoneInfo("Europe/London")), "2013-01-01T00:00:00Z"),
        (
            datetime(2013, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
            "2013-01-01T00:00:00-03:30",
        ),
        # Amsterdam Mean Time (+00:19:32) cannot be written as ±HH:MM: sent as UTC, same instant.
        (datetime(1930, 1, 1, 0, 19, 32, tzinfo=AMSTERDAM), "1930-01-01T00:00:00Z"),
    ],
)
def test_date_time_output_always_has_an_offset(value: datetime, text: str) -> None:
    assert unstructure(HeartbeatResponse(value)) == {"currentTime": text}
    validate_response("Heartbeat", {"currentTime": text})
    assert structure_response("Heartbeat", {"currentTime": text}) == HeartbeatResponse(value)


def test_naive_datetime_cannot_be_built() -> None:
    with pytest.raises(PayloadValueError, match="naive datetime") as caught:
        HeartbeatResponse(datetime(2013, 2, 1, 15, 9, 18))
    assert caught.value.rule == "format"
    assert caught.value.field == "currentTime"


@pytest.mark.parametrize(
    "text",
    [
        "2015-02-30T00:00:00Z",
        "2015-07-07 00:00:00",
        "2015-07-07T24:00:00Z",
        "2015-07-07T00:00:60Z",
        "today",
        "2015-07-07",
        "2015-07-07T00:00:00+0100",
    ],
)
def test_bad_date_times_are_rejected(text: str) -> None:
    with pytest.raises(SchemaViolation) as caught:
        structure_response("Heartbeat", {"currentTime": text})
    assert caught.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert caught.value.path == "data.currentTime"
    assert caught.value.rule == "format"
    # The validators agree.
    with pytest.raises(SchemaViolation):
        validate_response("Heartbeat", {"currentTime": text})


# --- PROTOCOL-DECISIONS §8 aliases and tolerances ------------------------------------------------------


def test_clear_schedule_is_an_alias_of_clear_all_schedules() -> None:
    obj = structure_request("SetStreetlightProfile", SET_PROFILE)
    assert isinstance(obj, SetStreetlightProfileRequest)
    assert obj.clear_all_schedules is True
    wire = unstructure(obj)
    assert "clearSchedule" not in wire
    assert wire["clearAllSchedules"] is True
    # Both present: the normative clearAllSchedules wins (the schema accepts both names).
    both = {**SET_PROFILE, "clearAllSchedules": False}
    validate_request("SetStreetlightProfile", both)
    structured = structure_request("SetStreetlightProfile", both)
    assert isinstance(structured, SetStreetlightProfileRequest)
    assert structured.clear_all_schedules is False
    without = {key: value for key, value in SET_PROFILE.items() if key != "clearSchedule"}
    structured = structure_request("SetStreetlightProfile", without)
    assert isinstance(structured, SetStreetlightProfileRequest)
    assert structured.clear_all_schedules is None


def test_effective_schedule_response_status_is_tolerated_and_dropped() -> None:
    payload = {"status": "Accepted", "contactorId": 2, "daySchedule": []}
    obj = structure_response("GetEffectiveStreetlightDaySchedule", payload)
    assert obj == GetEffectiveStreetlightDayScheduleResponse(contactor_id=2, day_schedule=())
    assert unstructure(obj) == {"contactorId": 2, "daySchedule": []}


def test_reset_and_resume_optional_type() -> None:
    assert structure_request("Reset", {"type": "Hard"}) == ResetRequest(ResetType.HARD)
    assert structure_request("Reset", {}) == ResetRequest()
    assert structure_request("ResumeStreetlight", {"type": "Immediate"}) == ResumeStreetlightRequest(
        type="Immediate"
    )
    with pytest.raises(SchemaViolation) as caught:
        structure_request("Reset", {"type": "Warm"})
    assert caught.value.rule == "enum"


def test_request_id_allows_36_characters() -> None:
    uuid = "08fb86a4-3e9b-11e6-ac61-9e71128cae77"
    for action in ("GetFileStatusNotification", "FirmwareStatusNotification"):
        payload = {"status": "None", "requestId": uuid}
        assert unstructure(structure_request(action, payload)) == payload
        with pytest.raises(SchemaViolation) as caught:
            structure_request(action, {"status": "None", "requestId": uuid + "x"})
        assert (caught.value.path, caught.value.rule) == ("data.requestId", "maxLength")


# --- bad input: clear errors with the CallError code of PROTOCOL-DECISIONS §3 -------------------------


def _meter_values(**sampled_value: Any) -> dict[str, Any]:
    return {"meterValue": [{"timestamp": "2013-03-07T16:52:16Z", "sampledValue": [sampled_value]}]}


@pytest.mark.parametrize(
    ("action", "payload", "code", "path", "rule"),
    [
        (
            "MeterValues",
            _meter_values(value="1", measurand="Current.L4"),
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "data.meterValue[0].sampledValue[0].measurand",
            "enum",
        ),
        (
            "MeterValues",
            _meter_values(value="1", measurand="Current.L1", unit="Amp"),
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "data.meterValue[0].sampledValue[0].unit",
            "enum",
        ),
        (
            "MeterValues",
            _meter_values(value=1, measurand="Current.L1"),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "data.meterValue[0].sampledValue[0].value",
            "type",
        ),
        (
            "MeterValues",
            _meter_values(measurand="Current.L1"),
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "data.meterValue[0].sampledValue[0].value",
            "required",
        ),
        (
            "MeterValues",
            {**_meter_values(value="1", measurand="Current.L1"), "phase": "L1"},
            ErrorCode.FORMATION_VIOLATION,
            "data.phase",
            "additionalProperties",
        ),
        ("MeterValues", {"meterValue": {}}, ErrorCode.TYPE_CONSTRAINT_VIOLATION, "data.meterValue", "type"),
        (
            "MeterValues",
            {"meterValue": ["x"]},
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "data.meterValue[0]",
            "type",
        ),
        (
            "BootNotification",
            {**BOOT, "vendor": "V" * 21},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "data.vendor",
            "maxLength",
        ),
        (
            "StreetlightStatusNotification",
            {"contactorId": 0, "status": "On", "timestamp": "2013-02-01T15:09:18Z"},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "data.contactorId",
            "minimum",
        ),
        (
            "StreetlightStatusNotification",
            {"contactorId": True, "status": "On", "timestamp": "2013-02-01T15:09:18Z"},
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "data.contactorId",
            "type",
        ),
        (
            "StatusNotification",
            {"status": "Ok", "errorCode": "NoError", "test": "false"},
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "data.test",
            "type",
        ),
        (
            "OverrideStreetlight",
            {"action": "on"},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "data.action",
            "enum",
        ),
        (
            "UpdateFirmware",
            {"retrieveDate": "2013-02-01T15:09:18Z", "location": "no uri"},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "data.location",
            "format",
        ),
        ("GetConfiguration", {"key": None}, ErrorCode.TYPE_CONSTRAINT_VIOLATION, "data.key", "type"),
        (
            "ClearSingleStreetlightProfile",
            {"profileId": 1.0},
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "data.profileId",
            "type",
        ),
        ("Heartbeat", [], ErrorCode.FORMATION_VIOLATION, "data", "type"),
        (
            "SetStreetlightProfile",
            {**SET_PROFILE, "streetlightProfiles": []},
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "data.streetlightProfiles",
            "minItems",
        ),
        (
            "SetStreetlightProfile",
            start_point_request({"kind": "Sunset", "offset": 86401}),
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "data.streetlightProfiles[0].daySchedule[0].start.offset",
            "maximum",
        ),
    ],
)
def test_bad_payloads_raise_schema_violation(
    action: str, payload: Any, code: ErrorCode, path: str, rule: str
) -> None:
    with pytest.raises(SchemaViolation) as caught:
        structure_request(action, payload)
    violation = caught.value
    assert (violation.code, violation.path, violation.rule) == (code, path, rule)
    assert violation.details == {"path": path, "rule": rule}
    assert path in violation.description
    assert len(violation.description) <= 255
    # The schema validators reject the same payloads with the same code.
    with pytest.raises(SchemaViolation) as by_schema:
        validate_request(action, payload)
    assert by_schema.value.code is code


def test_bad_enum_value_error_is_clear() -> None:
    with pytest.raises(
        SchemaViolation,
        match=r"'Sunny' is not a valid SchedulePointKind; expected one of 'Absolute', 'Sunset', 'Sunrise'",
    ):
        structure_request(
            "SetStreetlightProfile",
            start_point_request({"kind": "Sunny"}),
        )
    with pytest.raises(
        SchemaViolation, match=r"'Current\.L4' is not a valid Measurand; expected one of the 82"
    ):
        structure_request("MeterValues", _meter_values(value="1", measurand="Current.L4"))


def test_constructors_validate() -> None:
    with pytest.raises(PayloadValueError, match=r"use RegistrationStatus\('Accepted'\)"):
        BootNotificationResponse("Accepted", datetime.now(UTC), 60)  # type: ignore[arg-type]
    assert (
        BootNotificationResponse(RegistrationStatus("Accepted"), datetime.now(UTC), 60).status == "Accepted"
    )
    with pytest.raises(PayloadValueError, match="is not a valid ReadingContext") as caught:
        SampledValue("1", Measurand.FREQUENCY, context="Periodic")  # type: ignore[arg-type]
    assert (caught.value.rule, caught.value.field) == ("enum", "context")
    with pytest.raises(PayloadValueError, match="greater than the maximum 4"):
        OverrideStreetlightRequest(OverrideAction.ON, contactor_id=5)
    with pytest.raises(PayloadValueError, match="expected an integer"):
        OverrideStreetlightRequest(OverrideAction.ON, contactor_id=True)
    with pytest.raises(PayloadValueError, match="more than the maximum 20"):
        BootNotificationRequest("v" * 21, "m", "s", "n", "f", "i", "i")
    with pytest.raises(PayloadValueError, match="expected a tuple"):
        MeterValuesRequest([])  # type: ignore[arg-type]
    with pytest.raises(PayloadValueError, match="item 0 is a dict"):
        MeterValue(datetime.now(UTC), ({"value": "1"},))  # type: ignore[arg-type]
    with pytest.raises(PayloadValueError, match="more than the maximum 4"):
        StreetlightProfile(
            1, 1, RecurrencyKind.DAILY, (SchedulePeriod(SchedulePoint.sunset(), SchedulePoint.sunrise()),) * 5
        )
    with pytest.raises(PayloadValueError, match="fewer than the minimum 1"):
        StreetlightProfile(1, 1, RecurrencyKind.DAILY, ())
    with pytest.raises(PayloadValueError, match="less than the minimum -86400"):
        SchedulePoint(SchedulePointKind.SUNSET, offset=-86401)
    with pytest.raises(PayloadValueError, match="expected a boolean"):
        ConfigurationKey("k", readonly=1)  # type: ignore[arg-type]


def test_payload_that_is_not_an_object_is_a_formation_violation() -> None:
    # PROTOCOL-DECISIONS §3, as the validators do (a null CALL payload is {} once decoded, §2).
    payloads: list[Any] = [None, [], "{}", 1]
    for payload in payloads:
        with pytest.raises(SchemaViolation) as caught:
            structure_request("Heartbeat", payload)
        assert (caught.value.code, caught.value.path, caught.value.rule) == (
            ErrorCode.FORMATION_VIOLATION,
            "data",
            "type",
        )
    with pytest.raises(SchemaViolation) as caught:
        structure_response("Heartbeat", {})
    assert (caught.value.path, caught.value.rule) == ("data.currentTime", "required")


def test_unstructure_rejects_non_payloads() -> None:
    with pytest.raises(TypeError, match="not a payload class"):
        unstructure({"currentTime": "2013-02-01T15:09:18Z"})


def test_reading_context_values() -> None:
    assert ReadingContext("Sample.Periodic") is ReadingContext.SAMPLE_PERIODIC
    assert Measurand("BoardTemperature") is Measurand.BOARD_TEMPERATURE  # PROTOCOL-DECISIONS §8


def test_unknown_keys_inside_open_objects_are_ignored() -> None:
    # The annex schemas of sampledValue / meterValue / configurationKey / streetlightProfiles items
    # do not forbid other properties, so such a payload is valid and must structure.
    payload = {
        "meterValue": [
            {
                "timestamp": "2013-03-07T16:52:16Z",
                "phase": "L1",
                "sampledValue": [{"value": "1", "measurand": "Current.L1", "phase": "L1"}],
            }
        ]
    }
    validate_request("MeterValues", payload)
    obj = structure_request("MeterValues", payload)
    assert unstructure(obj) == {
        "meterValue": [
            {"timestamp": "2013-03-07T16:52:16Z", "sampledValue": [{"value": "1", "measurand": "Current.L1"}]}
        ]
    }
    # A closed one (the schedule point) rejects them, as its schema does.
    bad = copy.deepcopy(SET_PROFILE)
    bad["streetlightProfiles"][0]["daySchedule"][0]["start"]["extra"] = 1  # type: ignore[index]
    with pytest.raises(SchemaViolation) as caught:
        structure_request("SetStreetlightProfile", bad)
    assert caught.value.path == "data.streetlightProfiles[0].daySchedule[0].start.extra"
    assert caught.value.code is ErrorCode.FORMATION_VIOLATION


def test_unknown_keys_in_open_objects_reach_the_application_in_the_dict_only() -> None:
    # Vendor extensions inside the four open annex objects are valid input.  Nothing is lost: the
    # connection delivers the payload dict untouched; only the typed view (which has a fixed set of
    # attributes) leaves them out, and a typed object therefore never sends them (docs/payloads.md).
    profile = copy.deepcopy(SET_PROFILE)
    profile["streetlightProfiles"][0]["vendorPriority"] = 7  # type: ignore[index]
    get_configuration = {"configurationKey": [{"key": "TimeZone", "readonly": False, "vendorNote": "x"}]}
    meter_values = {
        "meterValue": [
            {
                "timestamp": "2013-03-07T16:52:16Z",
                "vendorSeq": 1,
                "sampledValue": [{"value": "1", "measurand": "Current.L1", "vendorRaw": "0x01"}],
            }
        ]
    }
    station = Connection(Role.SUBSTATION, previously_accepted=True)
    central = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    station.receive_message(json.dumps([2, "p1", "SetStreetlightProfile", profile]), 0.0)
    central.receive_message(json.dumps([2, "m1", "MeterValues", meter_values]), 0.0)
    central.send(Call("GetConfiguration"), 0.0)
    (call_id,) = (json.loads(text)[1] for text in central.messages_to_send())
    central.receive_message(json.dumps([3, call_id, get_configuration]), 0.0)

    received_profile, received_meter, result = (
        station.next_event(),
        central.next_event(),
        central.next_event(),
    )
    assert isinstance(received_profile, CallReceived)
    assert isinstance(received_meter, CallReceived)
    assert isinstance(result, ResultReceived)
    for event, sent in (
        (received_profile, profile),
        (received_meter, meter_values),
        (result, get_configuration),
    ):
        assert event.payload == sent  # the dict keeps every key
    typed = [received_profile.request(), received_meter.request(), result.response()]
    wire = [unstructure(obj) for obj in typed]
    assert "vendorPriority" not in wire[0]["streetlightProfiles"][0]
    assert "vendorSeq" not in wire[1]["meterValue"][0]
    assert "vendorRaw" not in wire[1]["meterValue"][0]["sampledValue"][0]
    assert "vendorNote" not in wire[2]["configurationKey"][0]
    # Apart from the extensions, the typed view is the payload.
    assert unstructure(typed[2]) == {"configurationKey": [{"key": "TimeZone", "readonly": False}]}


def test_error_paths_and_descriptions_are_bounded() -> None:
    # An unknown key is attacker-chosen and ends up in errorDetails: bounded like the validators'.
    with pytest.raises(SchemaViolation) as caught:
        structure_request("Heartbeat", {"k" * 100_000: 1})
    assert caught.value.rule == "additionalProperties"
    assert caught.value.code is ErrorCode.FORMATION_VIOLATION
    assert caught.value.path.startswith("data.kkk")
    assert len(caught.value.path) <= 200
    assert len(caught.value.description) <= 255
    with pytest.raises(SchemaViolation) as caught:
        structure_request("Reset", {"type": "x" * 100_000})
    assert len(caught.value.description) <= 255


def test_lower_case_t_without_offset() -> None:
    obj = structure_response("Heartbeat", {"currentTime": "2013-02-01t15:09:18"})
    assert isinstance(obj, HeartbeatResponse)
    assert unstructure(obj) == {"currentTime": "2013-02-01T15:09:18+01:00"}
