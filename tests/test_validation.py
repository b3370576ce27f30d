"""Validation: every rule kind in our schemas -> the CallError code of PROTOCOL-DECISIONS §3, the
path and the rule; bounded descriptions; lazy compilation; and hypothesis: arbitrary JSON never
makes a validator raise anything but SchemaViolation, and it agrees with an independent
draft-04 validator (jsonschema) on what is valid.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from helpers import NIGHTLY_PROFILE, profile_request, start_point_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from os3p_core import Action, ErrorCode, SchemaViolation, load_schema, validate_request, validate_response

TYPE = ErrorCode.TYPE_CONSTRAINT_VIOLATION
OCCURENCE = ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
PROPERTY = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
FORMATION = ErrorCode.FORMATION_VIOLATION

# Keywords that only describe or structure (they never fail by themselves).
NON_RULE_KEYWORDS = {"$schema", "title", "description", "properties", "items"}


def _point(**point: Any) -> dict[str, Any]:
    return start_point_request(point)


_STATUS = {"contactorId": 1, "status": "On", "timestamp": "2013-02-01T15:09:18Z"}
_GET_FILE = {"fileType": "Syslog", "location": "ftp://example.org/up"}

# rule -> cases of (action, kind, payload, expected code, expected path)
RULE_CASES: dict[str, list[tuple[str, str, Any, ErrorCode, str]]] = {
    "type": [
        (
            "StreetlightStatusNotification",
            "Request",
            {**_STATUS, "contactorId": "1"},
            TYPE,
            "data.contactorId",
        ),
        (
            "StreetlightStatusNotification",
            "Request",
            {**_STATUS, "contactorId": True},
            TYPE,
            "data.contactorId",
        ),
        (
            "StreetlightStatusNotification",
            "Request",
            {**_STATUS, "contactorId": 1.0},
            TYPE,
            "data.contactorId",
        ),
        ("StreetlightStatusNotification", "Request", {**_STATUS, "unexpected": 0}, TYPE, "data.unexpected"),
        ("GetConfiguration", "Request", {"key": "HeartbeatInterval"}, TYPE, "data.key"),
        ("GetConfiguration", "Request", {"key": ["a", 1]}, TYPE, "data.key[1]"),
        ("MeterValues", "Request", {"meterValue": [[]]}, TYPE, "data.meterValue[0]"),
        (
            "SetStreetlightProfile",
            "Request",
            _point(kind="Absolute", time=1),
            TYPE,
            "data.streetlightProfiles[0].daySchedule[0].start.time",
        ),
        # PROTOCOL-DECISIONS §3: a payload that is not an object at all is FormationViolation.
        ("Heartbeat", "Request", [], FORMATION, "data"),
        ("Heartbeat", "Response", None, FORMATION, "data"),
        ("Reset", "Request", "Soft", FORMATION, "data"),
        ("Reset", "Request", 1, FORMATION, "data"),
    ],
    "required": [
        ("Heartbeat", "Response", {}, OCCURENCE, "data.currentTime"),
        (
            "MeterValues",
            "Request",
            {"meterValue": [{"timestamp": "2013-02-01T15:09:18Z"}]},
            OCCURENCE,
            "data.meterValue[0].sampledValue",
        ),
        (
            "SetStreetlightProfile",
            "Request",
            _point(offset=0),
            OCCURENCE,
            "data.streetlightProfiles[0].daySchedule[0].start.kind",
        ),
    ],
    "additionalProperties": [
        ("Heartbeat", "Request", {"currentTime": "2013-02-01T15:09:18Z"}, FORMATION, "data.currentTime"),
        (
            "SetStreetlightProfile",
            "Request",
            _point(kind="Sunset", offset=0, at="x"),
            FORMATION,
            "data.streetlightProfiles[0].daySchedule[0].start.at",
        ),
    ],
    "enum": [
        (
            "BootNotification",
            "Response",
            {"status": "OK", "currentTime": "2013-02-01T15:09:18Z", "interval": 1},
            PROPERTY,
            "data.status",
        ),
        (
            "SetStreetlightProfile",
            "Request",
            _point(kind="Noon"),
            PROPERTY,
            "data.streetlightProfiles[0].daySchedule[0].start.kind",
        ),
    ],
    "maxLength": [
        (
            "StatusNotification",
            "Request",
            {"status": "Ok", "errorCode": "NoError", "vendorErrorCode": "x" * 65},
            PROPERTY,
            "data.vendorErrorCode",
        ),
    ],
    "minimum": [
        ("ClearSingleStreetlightProfile", "Request", {"profileId": -1}, PROPERTY, "data.profileId"),
        (
            "SetStreetlightProfile",
            "Request",
            _point(kind="Sunset", offset=-86401),
            PROPERTY,
            "data.streetlightProfiles[0].daySchedule[0].start.offset",
        ),
    ],
    "maximum": [
        (
            "StreetlightStatusNotification",
            "Request",
            {**_STATUS, "contactorId": 5},
            PROPERTY,
            "data.contactorId",
        ),
        (
            "SetStreetlightProfile",
            "Request",
            _point(kind="Sunset", offset=86401),
            PROPERTY,
            "data.streetlightProfiles[0].daySchedule[0].start.offset",
        ),
    ],
    "format": [
        ("Heartbeat", "Response", {"currentTime": "yesterday"}, PROPERTY, "data.currentTime"),
        ("GetFile", "Request", {**_GET_FILE, "location": "no uri at all"}, PROPERTY, "data.location"),
        ("GetFile", "Request", {**_GET_FILE, "stopTime": "2013-02-01"}, PROPERTY, "data.stopTime"),
    ],
    "minItems": [
        (
            "SetStreetlightProfile",
            "Request",
            {"contactorId": 1, "streetlightProfiles": []},
            OCCURENCE,
            "data.streetlightProfiles",
        ),
        (
            "SetStreetlightProfile",
            "Request",
            profile_request(daySchedule=[]),
            OCCURENCE,
            "data.streetlightProfiles[0].daySchedule",
        ),
    ],
    "maxItems": [
        (
            "SetStreetlightProfile",
            "Request",
            profile_request(daySchedule=NIGHTLY_PROFILE["daySchedule"] * 5),
            OCCURENCE,
            "data.streetlightProfiles[0].daySchedule",
        ),
    ],
}


def _validate(action: str, kind: str, payload: Any) -> None:
    (validate_request if kind == "Request" else validate_response)(action, payload)


def _keywords(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            if key == "properties":
                for sub in value.values():
                    yield from _keywords(sub)
            elif key == "items":
                yield from _keywords(value)


def test_every_rule_kind_in_our_schemas_is_covered() -> None:
    used = {
        kw
        for action in Action
        for kind in ("Request", "Response")
        for kw in _keywords(load_schema(action, kind))
    }
    rules = used - NON_RULE_KEYWORDS
    assert rules == set(RULE_CASES), "a rule kind occurs in schemas/ without a test case here (or vice versa)"


@pytest.mark.parametrize(
    ("rule", "action", "kind", "payload", "code", "path"),
    [(rule, *case) for rule, cases in RULE_CASES.items() for case in cases],
    ids=[
        f"{rule}-{case[0]}{case[1]}-{i}" for rule, cases in RULE_CASES.items() for i, case in enumerate(cases)
    ],
)
def test_rule_maps_to_call_error(
    rule: str, action: str, kind: str, payload: Any, code: ErrorCode, path: str
) -> None:
    with pytest.raises(SchemaViolation) as info:
        _validate(action, kind, payload)
    exc = info.value
    assert (exc.code, exc.path, exc.rule) == (code, path, rule)
    assert exc.details == {"path": path, "rule": rule}
    assert exc.description == str(exc)
    assert len(exc.description) <= 255
    assert path in exc.description
    assert f"'{rule}'" in exc.description
    assert isinstance(exc, ValueError)


def test_description_is_bounded_even_for_hostile_input() -> None:
    huge_key = "k" * 10_000
    with pytest.raises(SchemaViolation) as info:
        validate_request("Heartbeat", {huge_key: 1})
    exc = info.value
    assert exc.rule == "additionalProperties"
    assert len(exc.path) <= 200
    assert exc.path.startswith("data.kkk")
    assert exc.path.endswith("…")
    assert len(exc.description) <= 255
    assert "'additionalProperties'" in exc.description

    many = {f"extra{i}": i for i in range(1000)}
    with pytest.raises(SchemaViolation) as info:
        validate_request("Heartbeat", many)
    assert info.value.path == "data.extra0"  # the first, sorted
    assert "1000" in info.value.description
    assert len(info.value.description) <= 255

    # An enum listing 82 measurands: the description is cut, but path and rule survive the cut.
    payload = {
        "meterValue": [
            {"timestamp": "2013-02-01T15:09:18Z", "sampledValue": [{"value": "1", "measurand": "X"}]}
        ]
    }
    with pytest.raises(SchemaViolation) as info:
        validate_request("MeterValues", payload)
    description = info.value.description
    assert len(description) == 255
    assert description.endswith("…")
    assert description.startswith("data.meterValue[0].sampledValue[0].measurand violates schema rule 'enum'")


def test_required_reports_first_missing_in_schema_order() -> None:
    with pytest.raises(SchemaViolation) as info:
        validate_request("BootNotification", {"vendor": "V", "model": "M", "imsi": "1"})
    assert info.value.path == "data.stationNumber"


def test_validation_does_not_modify_payload_or_apply_defaults() -> None:
    # use_default=False: §M6.5 Table 3's defaults (context Sample.Periodic, format Raw) are not injected.
    payload = {
        "meterValue": [
            {"timestamp": "2013-02-01T15:09:18Z", "sampledValue": [{"value": "1", "measurand": "Frequency"}]}
        ]
    }
    before = json.dumps(payload)
    validate_request("MeterValues", payload)
    assert json.dumps(payload) == before


def test_enum_members_accepted_as_action_names() -> None:
    validate_request(Action.HEARTBEAT, {})
    validate_response(Action.HEARTBEAT, {"currentTime": "2013-02-01T15:09:18Z"})


def test_validators_compile_lazily_and_once() -> None:
    # In a fresh interpreter: importing os3p_core compiles nothing (and does not even import
    # fastjsonschema); the first validation compiles exactly that one schema.
    code = (
        "import sys, os3p_core\n"
        "from os3p_core import _validation as v\n"
        "assert not v._request_validators and not v._response_validators\n"
        "assert 'fastjsonschema' not in sys.modules, 'import os3p_core should not import fastjsonschema'\n"
        "os3p_core.validate_request('Heartbeat', {})\n"
        "f = v._request_validators['Heartbeat']\n"
        "assert list(v._request_validators) == ['Heartbeat'] and not v._response_validators\n"
        "os3p_core.validate_request('Heartbeat', {})\n"
        "assert v._request_validators['Heartbeat'] is f\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- hypothesis ---------------------------------------------------------------------------------------

PAIRS = [(action.value, kind) for action in Action for kind in ("Request", "Response")]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

_DATE_TIMES = [
    "2013-02-01T15:09:18Z",
    "2015-07-07T00:00:00",
    "2015-07-07T00:00:00.5+02:00",
    "2015-02-30T00:00:00",
]


def _from_schema(schema: dict[str, Any], junk: bool) -> st.SearchStrategy[Any]:
    """Payloads shaped by ``schema``; with ``junk``, any node may be replaced by arbitrary JSON."""
    kind = schema.get("type")
    strategy: st.SearchStrategy[Any]
    if "enum" in schema:
        strategy = st.sampled_from(schema["enum"])
    elif kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        strategy = st.fixed_dictionaries(
            {key: _from_schema(properties[key], junk) for key in required},
            optional={key: _from_schema(sub, junk) for key, sub in properties.items() if key not in required},
        )
    elif kind == "array":
        strategy = st.lists(
            _from_schema(schema["items"], junk),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 3), 3),
        )
    elif kind == "integer":
        strategy = st.integers(
            min_value=schema.get("minimum", -(2**40)), max_value=schema.get("maximum", 2**40)
        )
    elif kind == "boolean":
        strategy = st.booleans()
    elif schema.get("format") == "date-time":
        strategy = st.sampled_from(_DATE_TIMES[:3])
    elif schema.get("format") == "uri":
        strategy = st.just("ftp://user:pw@example.org/path")
    else:
        strategy = st.text(max_size=schema.get("maxLength", 30))
    if junk:
        strategy = st.one_of(strategy, strategy, strategy, json_values, st.sampled_from(_DATE_TIMES))
    return strategy


_STRATEGIES: dict[tuple[str, str, bool], st.SearchStrategy[Any]] = {}


def _payloads(action: str, kind: str, junk: bool) -> st.SearchStrategy[Any]:
    key = (action, kind, junk)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _from_schema(load_schema(action, kind), junk)
    return _STRATEGIES[key]


def _reference_validator(action: str, kind: str) -> jsonschema.Draft4Validator:
    from os3p_core._validation import is_date_time

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(is_date_time)
    checker.checks("uri")(lambda value: re.fullmatch(r"\w+:(/?/?)[^\s]+", value) is not None)
    return jsonschema.Draft4Validator(load_schema(action, kind), format_checker=checker)


_REFERENCE: dict[tuple[str, str], jsonschema.Draft4Validator] = {}
_STOCK: dict[tuple[str, str], Any] = {}


def _stock_outcome(action: str, kind: str, payload: Any) -> tuple[str, str] | None:
    """(rule, path) from fastjsonschema's own, untuned code generator, or None if valid."""
    import fastjsonschema

    from os3p_core._validation import is_date_time

    stock = _STOCK.get((action, kind))
    if stock is None:
        stock = _STOCK[(action, kind)] = fastjsonschema.compile(
            load_schema(action, kind), formats={"date-time": is_date_time}, use_default=False
        )
    try:
        stock(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc.rule or "", exc.name or ""
    return None


def _check(action: str, kind: str, payload: Any) -> None:
    """Validate; any failure must be a well-formed SchemaViolation, and agree with jsonschema."""
    reference = _REFERENCE.get((action, kind))
    if reference is None:
        reference = _REFERENCE[(action, kind)] = _reference_validator(action, kind)
    violation: SchemaViolation | None = None
    try:
        _validate(action, kind, payload)
    except SchemaViolation as exc:
        violation = exc
    stock = _stock_outcome(action, kind, payload)
    if violation is None:
        assert reference.is_valid(payload), "we accepted what jsonschema rejects"
        assert stock is None, "we accepted what fastjsonschema's stock generator rejects"
        return
    # The tuned generator fails on the same rule at the same place as the stock one.
    assert stock is not None
    assert stock[0] == violation.rule
    if violation.rule in ("required", "additionalProperties"):  # ours points at the property itself
        assert violation.path.startswith(stock[1] + ".")
    else:
        assert stock[1] == violation.path
    assert isinstance(violation.code, ErrorCode)
    assert violation.code in {TYPE, OCCURENCE, PROPERTY, FORMATION}
    assert violation.path.startswith("data")
    assert len(violation.description) <= 255
    assert violation.details == {"path": violation.path, "rule": violation.rule}
    json.dumps(violation.details)  # errorDetails must be JSON
    assert not reference.is_valid(payload), f"we rejected ({violation!r}) what jsonschema accepts"


_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(pair=st.sampled_from(PAIRS), payload=json_values)
def test_arbitrary_json_only_raises_schema_violation(pair: tuple[str, str], payload: Any) -> None:
    _check(*pair, payload)


@_SETTINGS
@given(data=st.data(), pair=st.sampled_from(PAIRS))
def test_near_valid_payloads_only_raise_schema_violation(data: st.DataObject, pair: tuple[str, str]) -> None:
    payload = data.draw(_payloads(*pair, junk=True))
    _check(*pair, payload)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), pair=st.sampled_from(PAIRS))
def test_schema_shaped_payloads_validate(data: st.DataObject, pair: tuple[str, str]) -> None:
    payload = data.draw(_payloads(*pair, junk=False))
    _validate(*pair, payload)


def test_tuned_generator_is_in_use() -> None:
    # If a fastjsonschema upgrade changed its generator's internals, this fails loudly rather
    # than the hot path quietly getting slower (or different).
    from fastjsonschema.draft04 import CodeGeneratorDraft04

    from os3p_core import _validation

    generator = _validation._generator_class()
    assert issubclass(generator, CodeGeneratorDraft04)
    validate_request("MeterValues", {"meterValue": []})
    compiled = _validation._request_validators["MeterValues"]
    assert compiled.__defaults__[0] is _validation._FORMATS  # type: ignore[attr-defined]


def test_tuples_validate_as_arrays() -> None:
    # docs/errata.md: an outgoing dict built with tuples validates (fastjsonschema's reading of
    # "array"), and its items are still checked, with the same paths as a list's.
    validate_request("GetConfiguration", {"key": ("HeartbeatInterval", "TimeZone")})
    with pytest.raises(SchemaViolation) as info:
        validate_request("GetConfiguration", {"key": ("HeartbeatInterval", 1)})
    assert (info.value.code, info.value.path, info.value.rule) == (TYPE, "data.key[1]", "type")


def test_non_finite_floats_are_type_violations() -> None:
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(SchemaViolation) as info:
            validate_response(
                "BootNotification",
                {"status": "Accepted", "currentTime": "2013-02-01T15:09:18Z", "interval": value},
            )
        assert (info.value.code, info.value.path) == (TYPE, "data.interval")
