"""Hypothesis: for every action and both kinds, a valid payload → typed object → payload.

The payloads come from a small generator driven by the schemas themselves (``load_schema``), so
the typed classes are tested against the schemas, not against themselves.  Properties:

1. every generated payload validates (a check of the generator);
2. it structures without error and without modifying the input;
3. unstructuring gives the same payload after normalisation (date-times compared as instants, a
   naive one read in the station's zone; ``clearSchedule`` → ``clearAllSchedules``; the tolerated
   ``status`` of GetEffectiveStreetlightDaySchedule responses and unknown keys inside open annex
   objects dropped) and still validates;
4. structuring that output gives an equal object (the round trip is stable);
5. a payload broken in one place is rejected by the converter exactly when the validators reject
   it, with the same CallError code;
6. whatever a payload constructor accepts (built from loose per-type strategies) unstructures to a
   payload that validates and survives another round trip.
"""

from __future__ import annotations

import copy
import enum
import types
import typing
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from os3p_core import (
    Action,
    PayloadConverter,
    SchemaViolation,
    load_schema,
    request_class,
    response_class,
    validate_request,
    validate_response,
)
from os3p_core.payloads import PayloadValueError

KINDS = ("Request", "Response")
#: A non-default zone with a negative offset and DST, to make the station-zone rule visible.
STATION_ZONE = "America/Santiago"
CONVERTER = PayloadConverter(local_tz=STATION_ZONE)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# --- a JSON-schema (draft-04 subset used by schemas/) → hypothesis strategy ------------------------------

_EXTRA_KEY = "vendorExtension"  # an unknown key, for objects whose schema allows them


def _date_times() -> st.SearchStrategy[str]:
    """RFC 3339 date-times as the validators accept them: offset Z/z, ±HH:MM or none (local
    time of the station), 'T' or 't', 0–9 fractional digits."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        moment = draw(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 12, 30)))
        text = moment.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt")) + moment.strftime("%H:%M:%S")
        digits = draw(st.integers(0, 9))
        if digits:
            text += "." + f"{moment.microsecond:06d}{draw(st.integers(0, 999))}"[:digits].ljust(digits, "0")
        offset = draw(st.sampled_from(["Z", "z", "", "+HH:MM", "-HH:MM"]))
        if "HH" in offset:
            text += offset[0] + f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
        else:
            text += offset
        return text

    return build()


def _strings(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema.get("format") == "date-time":
        return _date_times()
    if schema.get("format") == "uri":
        return st.builds(
            "{}://{}/{}".format,
            st.sampled_from(["ftp", "http", "https", "sftp"]),
            st.from_regex(r"[a-z0-9.:@]{1,20}", fullmatch=True),
            st.from_regex(r"[a-zA-Z0-9._/-]{0,20}", fullmatch=True),
        )
    return st.text(max_size=schema.get("maxLength", 40))


def strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        optional = {name: strategy(sub) for name, sub in properties.items() if name not in required}
        if schema.get("additionalProperties") is not False:
            optional[_EXTRA_KEY] = st.integers()
        return st.fixed_dictionaries(
            {name: strategy(sub) for name, sub in properties.items() if name in required}, optional=optional
        )
    if kind == "array":
        return st.lists(
            strategy(schema["items"]),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    if kind == "string":
        return _strings(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**53)), schema.get("maximum", 2**53))
    if kind == "boolean":
        return st.booleans()
    raise AssertionError(f"schema construct not covered by the generator: {schema}")


_STRATEGIES: dict[tuple[str, str], st.SearchStrategy[Any]] = {}


def payloads(action: str, kind: str) -> st.SearchStrategy[Any]:
    key = (action, kind)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = strategy(load_schema(action, kind))
    return _STRATEGIES[key]


# --- normalisation -----------------------------------------------------------------------------------


def _instant(text: str) -> datetime:
    """The instant a date-time string names (naive: wall time in the station's zone, fold 0)."""
    upper = text.upper()
    head, dot, tail = upper.partition(".")
    if dot:  # at most microseconds; the converter truncates further digits
        digits = len(tail) - len(tail.lstrip("0123456789"))
        upper = f"{head}.{tail[:digits][:6]}{tail[digits:]}"
    value = datetime.fromisoformat(upper)
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(STATION_ZONE))
    return value.astimezone(UTC)


def normalise(
    schema: dict[str, Any], value: Any, *, top: bool = False, action: str = "", kind: str = ""
) -> Any:
    kind_of = schema.get("type")
    if kind_of == "object":
        properties = dict(schema.get("properties", {}))
        value = dict(value)
        if top and (action, kind) == ("SetStreetlightProfile", "Request") and "clearSchedule" in value:
            alias = value.pop("clearSchedule")
            value.setdefault("clearAllSchedules", alias)
        if top and (action, kind) == ("GetEffectiveStreetlightDaySchedule", "Response"):
            value.pop("status", None)
        return {key: normalise(properties[key], item) for key, item in value.items() if key in properties}
    if kind_of == "array":
        return [normalise(schema["items"], item) for item in value]
    if schema.get("format") == "date-time":
        return _instant(value)
    return value


def _validate(action: str, kind: str, payload: Any) -> None:
    (validate_request if kind == "Request" else validate_response)(action, payload)


def _structure(action: str, kind: str, payload: Any) -> Any:
    if kind == "Request":
        return CONVERTER.structure_request(action, payload)
    return CONVERTER.structure_response(action, payload)


CASES = [(action.value, kind) for action in Action for kind in KINDS]


@pytest.mark.parametrize(("action", "kind"), CASES, ids=[f"{a}{k}" for a, k in CASES])
def test_valid_payload_round_trips(action: str, kind: str) -> None:
    schema = load_schema(action, kind)

    @SETTINGS
    @given(payload=payloads(action, kind))
    def check(payload: dict[str, Any]) -> None:
        _validate(action, kind, payload)  # the generator only makes valid payloads
        original = copy.deepcopy(payload)
        obj = _structure(action, kind, payload)
        assert payload == original
        wire = CONVERTER.unstructure(obj)
        _validate(action, kind, wire)
        assert normalise(schema, wire, top=True, action=action, kind=kind) == normalise(
            schema, payload, top=True, action=action, kind=kind
        )
        assert _structure(action, kind, wire) == obj
        assert CONVERTER.unstructure(_structure(action, kind, wire)) == wire

    check()


# --- one-place mutations: the converter and the validators agree --------------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


_REPLACEMENTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100_000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    # One character over each maxLength of the schemas, and values that are valid somewhere else.
    st.sampled_from(["x" * (n + 1) for n in (10, 20, 25, 36, 50, 64, 128)]),
    st.sampled_from(
        ["Accepted", "2013-02-01T15:09:18Z", "2013-02-30T15:09:18Z", "On", "Current.L1", "ftp://x"]
    ),
    st.just([]),
    st.just({}),
)


@st.composite
def mutated(draw: st.DrawFn, action: str, kind: str) -> Any:
    payload = copy.deepcopy(draw(payloads(action, kind)))
    path = draw(st.sampled_from(_paths(payload)))
    how = draw(st.sampled_from(["replace", "delete", "add"]))
    if not path:
        return draw(_REPLACEMENTS) if how == "replace" else payload
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = draw(_REPLACEMENTS)
    elif how == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last]["unexpectedKey"] = draw(_REPLACEMENTS)
    return payload


@pytest.mark.parametrize(("action", "kind"), CASES, ids=[f"{a}{k}" for a, k in CASES])
def test_converter_rejects_what_the_schema_rejects(action: str, kind: str) -> None:
    @settings(SETTINGS, max_examples=25)
    @given(payload=mutated(action, kind))
    def check(payload: Any) -> None:
        expected = None
        try:
            _validate(action, kind, payload)
        except SchemaViolation as by_schema:
            expected = by_schema.code
        if expected is None:
            _structure(action, kind, payload)
        else:
            with pytest.raises(SchemaViolation) as by_converter:
                _structure(action, kind, payload)
            assert by_converter.value.code == expected, by_converter.value

    check()


def test_generator_covers_naive_and_offset_date_times() -> None:
    # The station-zone rule is exercised: a naive time reads as America/Santiago wall time.
    obj = CONVERTER.structure_response("Heartbeat", {"currentTime": "2020-01-15T12:00:00"})
    assert obj.current_time.utcoffset() == timedelta(hours=-3)  # type: ignore[attr-defined]
    assert _instant("2020-01-15T12:00:00") == datetime(2020, 1, 15, 15, 0, tzinfo=UTC)


# --- objects built directly: whatever a constructor accepts is schema-valid on the wire ------------------

_OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timedelta(minutes=minutes))


def _aware_datetimes() -> st.SearchStrategy[datetime]:
    from datetime import timezone

    fixed = _OFFSETS.map(timezone)
    zones = st.sampled_from([ZoneInfo("Europe/Amsterdam"), ZoneInfo("America/Santiago"), UTC])
    return st.datetimes(
        min_value=datetime(1900, 1, 2), max_value=datetime(2200, 12, 30), timezones=st.one_of(fixed, zones)
    )


def _from_hint(tp: Any) -> st.SearchStrategy[Any]:
    """A deliberately loose strategy per type: values the constructors must sometimes refuse."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = (arg for arg in args if arg is not type(None))
        return st.none() | _from_hint(inner)
    if origin is tuple:
        return st.lists(_from_hint(args[0]), max_size=5).map(tuple)  # maxItems is 4
    if attrs.has(tp):  # a nested value: only ones its own constructor accepted
        return _builds(tp).filter(lambda obj: obj is not None)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is datetime:
        return _aware_datetimes()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(1, 4) | st.integers(-2, 6) | st.integers(-100_000, 100_000)
    if tp is str:
        return st.text(max_size=12) | st.sampled_from(["ftp://host/file", "x" * 37, "12:00:00"])
    raise AssertionError(f"no strategy for {tp!r}")


def _builds(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {a.name: _from_hint(hints[a.name]) for a in attrs.fields(cls)}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        values = {name: draw(strategy) for name, strategy in fields.items()}
        try:
            return cls(**values)
        except PayloadValueError:
            return None  # refused by the constructor: nothing to send

    return build()


@pytest.mark.parametrize(("action", "kind"), CASES, ids=[f"{a}{k}" for a, k in CASES])
def test_what_a_constructor_accepts_is_valid_on_the_wire(action: str, kind: str) -> None:
    cls = request_class(action) if kind == "Request" else response_class(action)

    @settings(SETTINGS, max_examples=25)
    @given(obj=_builds(cls))
    def check(obj: Any) -> None:
        if obj is None:
            return
        wire = CONVERTER.unstructure(obj)
        _validate(action, kind, wire)
        # Compared on the wire: a datetime in a DST fold of a ZoneInfo zone never equals one with a
        # fixed offset (PEP 495), although both name the same instant.
        assert CONVERTER.unstructure(_structure(action, kind, wire)) == wire

    check()
