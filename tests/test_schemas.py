"""The 42 schema files, the annex's examples, and one test per errata row of PROTOCOL-DECISIONS §8.

The examples are transcribed from the spec annex (§M6.x.2 / §M7.x.2 "examples") as data (a test reads
the spec text, when the workspace has it, and checks the transcription token by token),
faithfully, including the ones the annex gets wrong; PDF conversion noise (trailing commas,
stray braces) is the only thing dropped (PROTOCOL-DECISIONS §8, last row).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import ANNEX_EXAMPLES, Expected, profile_request
from jsonschema import Draft4Validator

from os3p_core import (
    Action,
    ErrorCode,
    ProfileStore,
    SchemaViolation,
    load_schema,
    validate_request,
    validate_response,
)

DRAFT_04 = "http://json-schema.org/draft-04/schema#"
REPO_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
KINDS = ("Request", "Response")
TYPE = ErrorCode.TYPE_CONSTRAINT_VIOLATION
OCCURENCE = ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
PROPERTY = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
FORMATION = ErrorCode.FORMATION_VIOLATION

# --- the annex's examples ------------------------------------------------------------------------
# ANNEX_EXAMPLES (tests/helpers.py): (annex section, action, kind, payload, expected outcome); expected
# None: validates, otherwise (ErrorCode, path, rule): rejected for the documented reason.


def _validate(action: str, kind: str, payload: Any) -> None:
    if kind == "Request":
        validate_request(action, payload)
    else:
        validate_response(action, payload)


def _violation(action: str, kind: str, payload: Any) -> SchemaViolation:
    with pytest.raises(SchemaViolation) as info:
        _validate(action, kind, payload)
    return info.value


def _rejected(action: str, kind: str, payload: Any) -> tuple[ErrorCode, str, str]:
    """(code, path, rule) of the violation that ``payload`` must raise."""
    exc = _violation(action, kind, payload)
    return exc.code, exc.path, exc.rule


@pytest.mark.parametrize(
    ("section", "action", "kind", "payload", "expected"),
    ANNEX_EXAMPLES,
    ids=[f"{e[0]}-{e[1]}{e[2]}" for e in ANNEX_EXAMPLES],
)
def test_annex_example(
    section: str, action: str, kind: str, payload: dict[str, Any], expected: Expected
) -> None:
    before = json.dumps(payload, sort_keys=True)
    if expected is None:
        _validate(action, kind, payload)
    else:
        exc = _violation(action, kind, payload)
        assert (exc.code, exc.path, exc.rule) == expected
    assert json.dumps(payload, sort_keys=True) == before, "validation must not modify the payload"


def test_every_action_has_annex_examples_of_both_kinds() -> None:
    seen = {(action, kind) for section, action, kind, _, _ in ANNEX_EXAMPLES if section.startswith("§M")}
    assert seen == {(action.value, kind) for action in Action for kind in KINDS}


# The spec itself sits next to the repository in the project's workspace (../shared/spec); a clone
# without it still runs every test above, on the transcription.
SPEC = REPO_SCHEMAS.parent.parent / "shared" / "spec" / "os3p-json-over-websockets-0.91.txt"
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null')


def _annex_example_texts(text: str) -> list[tuple[str, str, str, str]]:
    """(section, action, kind, JSON text) of every example in the annex, in order.

    An example is the code blocks after a "request:" / "response:" label of a "N.M.x. examples"
    section; PDF page breaks split some into several blocks, which are joined.
    """
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if "This document lists all OS3P" in line)
    found: list[tuple[str, str, str, list[str]]] = []
    action = section = ""
    in_examples = in_block = False
    for line in lines[start:]:
        stripped = line.strip()
        if in_block:
            if stripped == "```":
                in_block = False
            else:
                found[-1][3].append(line)
        elif heading := re.fullmatch(r"(\d+)\.(\d+)\.\s+([A-Za-z]+)", stripped):
            action, in_examples = heading[3], False
        elif examples := re.fullmatch(r"(\d+\.\d+\.\d+)\.\s+examples", stripped):
            section, in_examples = f"§M{examples[1]}", True
        elif re.match(r"\d+(\.\d+)*\.\s", stripped):
            in_examples = False
        elif in_examples and stripped in ("request:", "response:"):
            found.append((section, action, stripped[:-1].capitalize(), []))
        elif in_examples and stripped == "```" and found and found[-1][0] == section:
            in_block = True
    return [(sec, act, kind, "\n".join(body)) for sec, act, kind, body in found]


@pytest.mark.skipif(not SPEC.is_file(), reason=f"the spec text is not at {SPEC}")
def test_transcribed_examples_are_the_annex_examples() -> None:
    # The transcription above must be faithful: same examples, in the annex's order, with every
    # key and value in the same order.  Compared token by token (strings, numbers, literals), which
    # ignores the PDF noise -- trailing commas, braces split across page breaks -- and nothing else.
    in_spec = [
        (section, action, kind, _JSON_TOKEN.findall(text))
        for section, action, kind, text in _annex_example_texts(SPEC.read_text(encoding="utf-8"))
    ]
    transcribed = [
        (section, action, kind, _JSON_TOKEN.findall(json.dumps(payload, ensure_ascii=False)))
        for section, action, kind, payload, _ in ANNEX_EXAMPLES
        if section.startswith("§M")
    ]
    assert len(in_spec) == len(transcribed) >= 42
    for spec_example, ours in zip(in_spec, transcribed, strict=True):
        assert spec_example == ours


# --- the files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", list(Action), ids=str)
def test_schema_file(action: Action, kind: str) -> None:
    path = REPO_SCHEMAS / f"{action.value}{kind}.json"
    assert path.is_file()
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == DRAFT_04
    assert schema["title"] == path.stem
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    Draft4Validator.check_schema(schema)
    # The installed package ships exactly these files (a non-editable install reads its own copy).
    assert load_schema(action.value, kind) == schema


def test_exactly_42_schema_files() -> None:
    names = sorted(p.name for p in REPO_SCHEMAS.iterdir())
    assert names == sorted(f"{a.value}{k}.json" for a in Action for k in KINDS)
    assert len(names) == 42


def test_load_schema_api() -> None:
    schema = load_schema("Heartbeat", "Response")
    assert schema["title"] == "HeartbeatResponse"
    assert load_schema(Action.HEARTBEAT, "response") == schema
    schema["title"] = "changed"  # a fresh dict per call: callers cannot corrupt the cache
    assert load_schema("Heartbeat", "Response")["title"] == "HeartbeatResponse"
    with pytest.raises(KeyError):
        load_schema("Hearbeat", "Request")
    with pytest.raises(ValueError, match="kind"):
        load_schema("Heartbeat", "CallResult")


def test_unknown_action_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        validate_request("DataTransfer", {})
    with pytest.raises(KeyError):
        validate_response("heartbeat", {})  # case-sensitive, spec §J4.2


# --- PROTOCOL-DECISIONS §8, one test per row ------------------------------------------------------


def _sampled_value_schema() -> dict[str, Any]:
    schema = load_schema("MeterValues", "Request")
    items: dict[str, Any] = schema["properties"]["meterValue"]["items"]["properties"]["sampledValue"]["items"]
    return items


def _meter_values(**sampled_value: Any) -> dict[str, Any]:
    return {"meterValue": [{"timestamp": "2013-03-07T16:52:16Z", "sampledValue": [sampled_value]}]}


def test_errata_meter_values_fields_inside_sampled_value_properties() -> None:
    items = _sampled_value_schema()
    assert set(items["properties"]) == {"value", "context", "format", "measurand", "location", "unit"}
    assert items["required"] == ["value", "measurand"]
    # ...and they are enforced there, which they were not where the annex put them.
    bad_values = {"context": "Sample.Hourly", "format": "Cooked", "location": "Inside", "unit": "mA"}
    for field, bad in bad_values.items():
        payload = _meter_values(value="1", measurand="Current.L1", **{field: bad})
        path = f"data.meterValue[0].sampledValue[0].{field}"
        assert _rejected("MeterValues", "Request", payload) == (PROPERTY, path, "enum")
    validate_request(
        "MeterValues",
        _meter_values(
            value="1", measurand="Current.L1", context="Trigger", format="Raw", location="In", unit="V"
        ),
    )


def test_errata_board_temperature_measurand() -> None:
    assert "BoardTemperature" in _sampled_value_schema()["properties"]["measurand"]["enum"]
    validate_request("MeterValues", _meter_values(value="41.5", measurand="BoardTemperature", unit="C"))


def test_errata_reset_response_rules_at_top_level() -> None:
    schema = load_schema("Reset", "Response")
    assert set(schema["properties"]) == {"status"}
    assert schema["required"] == ["status"]
    assert _rejected("Reset", "Response", {}) == (OCCURENCE, "data.status", "required")
    extra = {"status": "Accepted", "type": "Soft"}
    assert _rejected("Reset", "Response", extra) == (FORMATION, "data.type", "additionalProperties")


def test_errata_reset_request_optional_type() -> None:
    for payload in ({}, {"type": "Soft"}, {"type": "Hard"}):
        validate_request("Reset", payload)
    assert _rejected("Reset", "Request", {"type": "Warm"}) == (PROPERTY, "data.type", "enum")


def test_errata_resume_streetlight_type_and_response_title() -> None:
    validate_request("ResumeStreetlight", {"type": "Immediate"})
    validate_request("ResumeStreetlight", {"contactorId": 4, "type": "Whenever"})  # any string, ignored
    assert _rejected("ResumeStreetlight", "Request", {"type": 1}) == (TYPE, "data.type", "type")
    assert load_schema("ResumeStreetlight", "Response")["title"] == "ResumeStreetlightResponse"


def test_errata_set_streetlight_profile_clear_schedule_alias() -> None:
    schema = load_schema("SetStreetlightProfile", "Request")
    assert schema["properties"]["clearAllSchedules"] == {"type": "boolean"}
    assert schema["properties"]["clearSchedule"]["type"] == "boolean"
    base = profile_request()
    for flags in ({}, {"clearAllSchedules": True}, {"clearSchedule": True}, {"clearSchedule": False}):
        validate_request("SetStreetlightProfile", {**base, **flags})
    bad = {**base, "clearSchedule": "yes"}
    assert _rejected("SetStreetlightProfile", "Request", bad) == (TYPE, "data.clearSchedule", "type")


def test_errata_effective_schedule_response_tolerates_status() -> None:
    base = {"contactorId": 2, "daySchedule": []}
    validate_response("GetEffectiveStreetlightDaySchedule", base)  # what stations send
    validate_response("GetEffectiveStreetlightDaySchedule", {**base, "status": "Accepted"})  # tolerated
    bad = {**base, "status": None}
    assert _rejected("GetEffectiveStreetlightDaySchedule", "Response", bad) == (TYPE, "data.status", "type")


def test_errata_effective_schedule_rules_inside_items() -> None:
    schema = load_schema("GetEffectiveStreetlightDaySchedule", "Response")
    day_schedule = schema["properties"]["daySchedule"]
    assert set(day_schedule) == {"type", "items"}
    assert day_schedule["items"]["additionalProperties"] is False
    assert day_schedule["items"]["required"] == ["start", "end"]
    action = "GetEffectiveStreetlightDaySchedule"
    missing = {"contactorId": 1, "daySchedule": [{"start": "20:00:00"}]}
    assert _rejected(action, "Response", missing) == (OCCURENCE, "data.daySchedule[0].end", "required")
    extra = {"contactorId": 1, "daySchedule": [{"start": "20:00:00", "end": "23:00:00", "kind": "x"}]}
    assert _rejected(action, "Response", extra) == (
        FORMATION,
        "data.daySchedule[0].kind",
        "additionalProperties",
    )


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("GetFileStatusNotification", {"status": "Uploading"}),
        ("FirmwareStatusNotification", {"status": "Downloading"}),
    ],
)
def test_errata_request_id_max_length_36(action: str, payload: dict[str, Any]) -> None:
    uuid_text = "08fb86a4-3e9b-11e6-ac61-9e71128cae77"  # 36 characters, as GetFile / UpdateFirmware allow
    assert len(uuid_text) == 36
    validate_request(action, {**payload, "requestId": uuid_text})
    too_long = {**payload, "requestId": uuid_text + "x"}
    assert _rejected(action, "Request", too_long) == (PROPERTY, "data.requestId", "maxLength")
    # the echo really fits: GetFile / UpdateFirmware allow exactly the same length
    assert load_schema("GetFile", "Request")["properties"]["requestId"]["maxLength"] == 36
    assert load_schema("UpdateFirmware", "Request")["properties"]["requestId"]["maxLength"] == 36


def test_errata_clear_single_profile_example_is_schema_valid() -> None:
    # §8: profileId together with stackLevel is mutually exclusive per the text, so the station
    # answers Rejected (a CALLRESULT, not a CALLERROR): the schema must let it through to the
    # application, which decides (STREETLIGHT-SEMANTICS "Installing and clearing profiles").
    example = {"profileId": 2, "contactorId": 1, "stackLevel": 3}
    validate_request("ClearSingleStreetlightProfile", example)
    assert "oneOf" not in json.dumps(load_schema("ClearSingleStreetlightProfile", "Request"))
    # ...and the station's profile store (issue 4) answers it Rejected, a valid response.
    result = ProfileStore().clear_streetlight_profile(example)
    assert result.status == "Rejected"
    validate_response("ClearSingleStreetlightProfile", result.to_payload())


def test_errata_trigger_message_connector_id() -> None:
    schema = load_schema("TriggerMessage", "Request")
    assert schema["properties"]["connectorId"]["type"] == "integer"
    validate_request(
        "TriggerMessage", {"requestedMessage": "StreetlightStatusNotification", "connectorId": 3}
    )
    renamed = {"requestedMessage": "Heartbeat", "contactorId": 3}
    assert _rejected("TriggerMessage", "Request", renamed) == (
        FORMATION,
        "data.contactorId",
        "additionalProperties",
    )


@pytest.mark.parametrize(
    "at",
    [
        "2015-07-07T00:00:00",
        "2015-07-07T00:00:00.123",
        "2015-07-07T00:00:00Z",
        "2015-07-07T02:00:00+02:00",
        "2015-07-07T00:00:00.5-05:30",
        "2015-07-07t00:00:00z",
    ],
)
def test_errata_date_time_without_offset_accepted(at: str) -> None:
    validate_request("GetEffectiveStreetlightDaySchedule", {"contactorId": 1, "at": at})


@pytest.mark.parametrize(
    "at",
    [
        "",
        "today",
        "2015-07-07",
        "2015-07-07 00:00:00",
        "2015-07-07T00:00",
        "2015-02-30T00:00:00",
        "2015-07-07T24:00:00",
        "2015-07-07T23:59:60Z",
        "2015-07-07T00:00:00+01:75",
        "2015-07-07T00:00:00+0100",
        "2015-07-07T00:00:00ZZ",
        "15-07-07T00:00:00",
        "2015-07-07T00:00:00.Z",
        "０２０１5-07-07T00:00:00",
    ],
)
def test_errata_date_time_garbage_rejected(at: str) -> None:
    payload = {"contactorId": 1, "at": at}
    assert _rejected("GetEffectiveStreetlightDaySchedule", "Request", payload) == (
        PROPERTY,
        "data.at",
        "format",
    )


def test_errata_status_notification_status_is_ok_or_faulted() -> None:
    schema = load_schema("StatusNotification", "Request")
    assert schema["properties"]["status"]["enum"] == ["Ok", "Faulted"]
    for error_code in ("GroundFailure", "MVFaultIndicatorError", "OverCurrentFailure"):
        validate_request("StatusNotification", {"status": "Faulted", "errorCode": error_code, "test": True})
        as_status = {"status": error_code, "errorCode": "NoError"}
        assert _rejected("StatusNotification", "Request", as_status) == (PROPERTY, "data.status", "enum")


def test_errata_pdf_noise_schema_files_are_strict_json() -> None:
    # Trailing commas and stray braces of the PDF conversion are gone: every file is strict JSON
    # without duplicate keys, and a valid draft-04 schema.
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), keys
        return dict(pairs)

    for path in REPO_SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
        Draft4Validator.check_schema(schema)
    # ...and the annex's example with trailing commas (§M7.4.2) is read without them above.
    with pytest.raises(json.JSONDecodeError):
        json.loads('{"daySchedule": [{"start": "20:11:00", "end": "23:00:00"},],}')
