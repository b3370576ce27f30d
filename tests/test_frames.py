"""Frames: decode/encode (spec §J4, PROTOCOL-DECISIONS §2), through the public API."""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from os3p_core import (
    CallErrorFrame,
    CallFrame,
    CallResultFrame,
    ErrorCode,
    FormationViolation,
    IgnoredFrame,
    IgnoreReason,
    LocalProtocolError,
    decode,
    encode,
    validate_request,
)

# ---------------------------------------------------------------------------------------------
# The well-formed frames


def test_decode_call() -> None:
    assert decode('[2,"19223201","BootNotification",{"vendor":"VendorX","model":"MDL1"}]') == CallFrame(
        "19223201", "BootNotification", {"vendor": "VendorX", "model": "MDL1"}
    )


def test_decode_call_result_and_error() -> None:
    assert decode('[3, "19223201", {"status": "Accepted", "interval": 300}]') == CallResultFrame(
        "19223201", {"status": "Accepted", "interval": 300}
    )
    assert decode('[4,"162376037","NotSupported","SetDisplayMessageRequest not implemented",{}]') == (
        CallErrorFrame("162376037", "NotSupported", "SetDisplayMessageRequest not implemented", {})
    )


def test_null_payload_is_empty_object() -> None:
    # §J4.2: "JSON allows for two different notations: null or an empty object {}".
    assert decode('[2,"1","Heartbeat",null]') == CallFrame("1", "Heartbeat", {})
    assert decode('[3,"1",null]') == CallResultFrame("1", {})
    # Lenient on CALLERROR details too; we always send {}.
    assert decode('[4,"1","GenericError","",null]') == CallErrorFrame("1", "GenericError", "", {})


def test_encode_is_compact_and_keeps_utf8() -> None:
    assert encode(CallFrame("1", "Heartbeat", {})) == '[2,"1","Heartbeat",{}]'
    assert encode(CallResultFrame("1", {"info": "Grüße ☀"})) == '[3,"1",{"info":"Grüße ☀"}]'
    assert encode(CallErrorFrame("1", "GenericError", "x", {"a": 1})) == '[4,"1","GenericError","x",{"a":1}]'
    assert encode(FormationViolation("x" * 40, "too long")) == (
        f'[4,"{"x" * 40}","FormationViolation","too long",{{}}]'
    )


def test_encode_escapes_lone_surrogates() -> None:
    # A lone surrogate can be decoded from JSON ("\ud800") but cannot be written as UTF-8.
    frame = CallResultFrame("1", {"info": "a\ud800b"})
    text = encode(frame)
    text.encode("utf-8")  # does not raise
    assert decode(text) == frame


@pytest.mark.parametrize("payload", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}, {"x": b"1"}])
def test_encode_refuses_what_is_not_json(payload: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(CallFrame("1", "Heartbeat", payload))
    assert info.value.code is ErrorCode.FORMATION_VIOLATION


# ---------------------------------------------------------------------------------------------
# PROTOCOL-DECISIONS §2, row by row


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Not valid UTF-8 JSON, not an array, or no readable message id -> ignore.
        ("", IgnoreReason.NOT_JSON),
        ("[2,", IgnoreReason.NOT_JSON),
        ('[2,"1","Heartbeat",{}] x', IgnoreReason.NOT_JSON),
        ('[2,"1","Heartbeat",{"x":NaN}]', IgnoreReason.NOT_JSON),
        ('[2,"1","Heartbeat",{"x":-Infinity}]', IgnoreReason.NOT_JSON),
        ("[" * 100_000 + "]" * 100_000, IgnoreReason.NOT_JSON),  # deeper than the parser goes
        ("[2," + "9" * 5000 + "]", IgnoreReason.NOT_JSON),  # beyond int_max_str_digits
        ('{"a":1}', IgnoreReason.NOT_ARRAY),
        ('"[2]"', IgnoreReason.NOT_ARRAY),
        ("null", IgnoreReason.NOT_ARRAY),
        ("[]", IgnoreReason.NO_MESSAGE_ID),
        ("[2]", IgnoreReason.NO_MESSAGE_ID),
        ('[2,1,"Heartbeat",{}]', IgnoreReason.NO_MESSAGE_ID),  # id not a string
        ('[2,null,"Heartbeat",{}]', IgnoreReason.NO_MESSAGE_ID),
        ('[3,["1"],{}]', IgnoreReason.NO_MESSAGE_ID),
        # Message type not 2, 3 or 4 -> ignore (§J4.1.1 SHALL).
        ('[5,"1","Heartbeat",{}]', IgnoreReason.UNKNOWN_MESSAGE_TYPE),
        ('[1,"1",{}]', IgnoreReason.UNKNOWN_MESSAGE_TYPE),
        ('["2","1","Heartbeat",{}]', IgnoreReason.UNKNOWN_MESSAGE_TYPE),
        ('[2.0,"1","Heartbeat",{}]', IgnoreReason.UNKNOWN_MESSAGE_TYPE),
        ('[true,"1","Heartbeat",{}]', IgnoreReason.UNKNOWN_MESSAGE_TYPE),
        ("[null]", IgnoreReason.UNKNOWN_MESSAGE_TYPE),
        # Responses with a wrong shape -> ignore (never answer a response).
        ('[3,"1"]', IgnoreReason.MALFORMED_RESULT),
        ('[3,"1",{},{}]', IgnoreReason.MALFORMED_RESULT),
        ('[3,"1",[]]', IgnoreReason.MALFORMED_RESULT),
        ('[3,"1","x"]', IgnoreReason.MALFORMED_RESULT),
        ('[4,"1","GenericError","",{},1]', IgnoreReason.MALFORMED_ERROR),
        ('[4,"1","GenericError",""]', IgnoreReason.MALFORMED_ERROR),
        ('[4,"1",5,"",{}]', IgnoreReason.MALFORMED_ERROR),
        ('[4,"1","GenericError",null,{}]', IgnoreReason.MALFORMED_ERROR),
        ('[4,"1","GenericError","",[]]', IgnoreReason.MALFORMED_ERROR),
    ],
)
def test_ignored(text: str, reason: IgnoreReason) -> None:
    frame = decode(text)
    assert isinstance(frame, IgnoredFrame)
    assert frame.reason is reason


@pytest.mark.parametrize("value", [b'[2,"1","Heartbeat",{}]', None, 2, ["2"]])
def test_not_text_is_ignored(value: object) -> None:
    frame = decode(value)
    assert isinstance(frame, IgnoredFrame)
    assert frame.reason is IgnoreReason.NOT_TEXT


@pytest.mark.parametrize(
    "text",
    [
        '[2,"abc","Heartbeat"]',  # wrong element count
        '[2,"abc","Heartbeat",{},{}]',
        '[2,"abc",7,{}]',  # non-string action
        '[2,"abc",null,{}]',
        '[2,"abc","Heartbeat",[]]',  # payload neither object nor null
        '[2,"abc","Heartbeat","{}"]',
        '[2,"abc","Heartbeat",0]',
    ],
)
def test_formation_violation_with_readable_id(text: str) -> None:
    frame = decode(text)
    assert isinstance(frame, FormationViolation)
    assert frame.unique_id == "abc"
    assert frame.code is ErrorCode.FORMATION_VIOLATION
    assert frame.description


def test_long_id_is_a_formation_violation_echoing_the_id() -> None:
    long_id = "é" * 37
    frame = decode(json.dumps([2, long_id, "Heartbeat", {}], ensure_ascii=False))
    assert frame == FormationViolation(long_id, "message id is longer than 36 characters")
    # 36 characters (a GUID) is fine.
    assert isinstance(decode(json.dumps([2, "x" * 36, "Heartbeat", {}])), CallFrame)


# ---------------------------------------------------------------------------------------------
# Hypothesis

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(st.text(), json_values, max_size=5)
ids = st.text(max_size=36)
frames = st.one_of(
    st.builds(CallFrame, ids, st.text(), objects),
    st.builds(CallResultFrame, ids, objects),
    st.builds(CallErrorFrame, ids, st.text(), st.text(), objects),
)


@settings(max_examples=300, deadline=None)
@given(frames)
def test_every_frame_round_trips(frame: CallFrame | CallResultFrame | CallErrorFrame) -> None:
    text = encode(frame)
    text.encode("utf-8")  # always writable as UTF-8
    assert decode(text) == frame
    assert encode(decode(text)) == text  # type: ignore[arg-type]


OUTCOMES = (CallFrame, CallResultFrame, CallErrorFrame, IgnoredFrame, FormationViolation)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_gives_a_documented_outcome(text: str) -> None:
    assert isinstance(decode(text), OUTCOMES)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_gives_a_documented_outcome(value: Any) -> None:
    assert isinstance(decode(json.dumps(value)), OUTCOMES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.sampled_from([2, 3, 4, 5, 2.0, True]), ids, st.text(max_size=40), json_values),
        max_size=6,
    )
)
def test_arbitrary_arrays_give_a_documented_outcome(elements: list[Any]) -> None:
    frame = decode(json.dumps(elements))
    assert isinstance(frame, OUTCOMES)
    if isinstance(frame, FormationViolation):
        # Only a CALL with a readable string id is answered, with that very id.
        assert elements[0] == 2
        assert type(elements[0]) is int
        assert frame.unique_id == elements[1]


# ---------------------------------------------------------------------------------------------
# Cost


def _best_time(text: str, repeat: int) -> float:
    # The cyclic GC is off while timing: a full collection walks every container in the process
    # (pytest's and hypothesis' included), so its cost follows the heap, not the message, and on
    # a shared machine it turns a linear decoder's timings into noise.  What is measured is the
    # decoder's own work.
    gc.collect()
    gc.disable()
    try:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeat):
                decode(text)
            best = min(best, (time.perf_counter() - start) / repeat)
        return best
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "make",
    [
        lambda n: json.dumps([2, "1", "DataTransfer", {"data": "x" * n}]),  # one long string
        lambda n: json.dumps([2, "1", "MeterValues", {"v": list(range(n // 6))}]),  # many numbers
        lambda n: json.dumps([2, "1", "x", {f"k{i}": i for i in range(n // 12)}]),  # many keys
        lambda n: "[" * (n // 2) + "]" * (n // 2),  # deep nesting (ignored)
        lambda n: '[2,"1","x",{"s":"' + "\\u00e9" * (n // 6) + '"}]',  # escapes
    ],
)
def test_decoding_time_is_linear_in_size(make: Any) -> None:
    # Compare 1 KB with 100 KB: the time ratio must stay near the size ratio (100), far from the
    # 10,000 of a quadratic decoder.  Generous bounds and best-of-5 for a loaded 2-core machine.
    small, large = make(1000), make(100_000)
    ratio = _best_time(large, 20) / _best_time(small, 500)
    size_ratio = len(large) / len(small)
    assert ratio < size_ratio * 8, (ratio, size_ratio)


def _grow(unit: str, where: str, size: int) -> str:
    """A message of about ``size`` characters made of ``unit`` repeated: as JSON array elements
    inside a CALL payload, or as raw text (garbage, or text that only starts like a frame)."""
    n = max(1, size // max(1, len(unit) + 1))
    if where == "payload":
        return '[2,"1","MeterValues",{"v":[' + ",".join([unit] * n) + "]}]"
    if where == "prefix":
        return '[2,"1","x",' + unit * n
    return unit * n


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    unit=st.one_of(json_values.map(json.dumps), st.text(min_size=1, max_size=8)),
    where=st.sampled_from(["payload", "prefix", "raw"]),
)
def test_no_input_makes_decoding_slower_than_linear(unit: str, where: str) -> None:
    # Issue 2: "no input makes decoding slower than linear in its size".  Hypothesis picks the
    # building block; the same block repeated 25x more (up to the 256 KiB message limit) must cost
    # at most 4x more than linear: a quadratic decoder would be 25x over.
    small, large = _grow(unit, where, 10_000), _grow(unit, where, 250_000)
    assert isinstance(decode(large), OUTCOMES)
    ratio = _best_time(large, 2) / _best_time(small, 40)
    size_ratio = len(large) / len(small)
    assert ratio < size_ratio * 4, (ratio, size_ratio, unit, where)


def test_heartbeat_decode_and_validate_is_fast() -> None:
    # Issue 2: decode + validate of a Heartbeat CALL <= 10 µs (benchmarks/core_bench.py measures it
    # properly; ~1.5 µs there).  Best of 5 on a shared CI machine, so the bound is the goal itself.
    if sys.gettrace() is not None:
        pytest.skip("absolute timing is meaningless under a tracer (coverage run)")
    text = '[2,"0b8f6a1e-3c2d-4e5f-8a9b-1c2d3e4f5a6b","Heartbeat",{}]'

    def decode_and_validate() -> None:
        frame = decode(text)
        assert isinstance(frame, CallFrame)
        validate_request(frame.action, frame.payload)

    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(2000):
            decode_and_validate()
        best = min(best, (time.perf_counter() - start) / 2000)
    assert best < 10e-6, best
