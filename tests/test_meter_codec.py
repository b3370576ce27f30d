"""The stores' compact meter-value form loses nothing: every value's text comes back exactly as sent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from os3p_trio.central._meter_codec import EXTRA, decode_sample, encode_sample, profile_of_key


def roundtrip(sampled: list[dict[str, str]]) -> list[dict[str, str]]:
    encoded = encode_sample(sampled)
    decoded = decode_sample(profile_of_key(encoded.profile_key), encoded.packed, encoded.extras)
    out = []
    for descriptor, text in decoded:
        item = {"value": text, "measurand": descriptor.measurand}
        for name in ("unit", "context", "format", "location"):
            if getattr(descriptor, name) is not None:
                item[name] = getattr(descriptor, name)
        out.append(item)
    return out


def test_typical_sample_packs_four_bytes_per_value() -> None:
    sampled = [
        {"value": "230.12", "measurand": "Voltage.L1N", "unit": "V"},
        {"value": "12", "measurand": "Current.L1", "unit": "A", "location": "P1Meter"},
        {"value": "-0.5", "measurand": "ReactivePower.L1", "context": "Sample.Clock"},
    ]
    encoded = encode_sample(sampled)
    assert len(encoded.packed) == 12
    assert encoded.extras == ()
    assert [d.scale for d in profile_of_key(encoded.profile_key)] == [2, 0, 1]
    assert roundtrip(sampled) == sampled


def test_large_registers_switch_to_int64() -> None:
    sampled = [{"value": "123456789.123", "measurand": "Energy.Active.Import.Register"},
               {"value": "1", "measurand": "Frequency"}]
    assert len(encode_sample(sampled).packed) == 16
    assert roundtrip(sampled) == sampled


@pytest.mark.parametrize("text", ["1e3", "+5", "007", "-0", "-0.00", "NaN", "inf", "", " 1", "1.", ".5",
                                  "0." + "1" * 19, "9" * 20, "on", "é"])
def test_values_that_are_not_plain_numerals_are_kept_verbatim(text: str) -> None:
    sampled = [{"value": "1.5", "measurand": "Frequency"}, {"value": text, "measurand": "Frequency"}]
    encoded = encode_sample(sampled)
    assert encoded.extras == ((1, text),)
    assert profile_of_key(encoded.profile_key)[1].scale == EXTRA
    assert roundtrip(sampled) == sampled


def test_equal_descriptors_give_equal_profile_keys() -> None:
    first = encode_sample([{"value": "1.25", "measurand": "Frequency", "unit": "Hz"}])
    second = encode_sample([{"value": "9.75", "measurand": "Frequency", "unit": "Hz"}])
    third = encode_sample([{"value": "9.7", "measurand": "Frequency", "unit": "Hz"}])
    assert first.profile_key == second.profile_key != third.profile_key
    json.loads(first.profile_key)


def test_packed_length_that_does_not_fit_the_profile_is_refused() -> None:
    encoded = encode_sample([{"value": "1", "measurand": "Frequency"}])
    with pytest.raises(ValueError, match="do not fit"):
        decode_sample(profile_of_key(encoded.profile_key), encoded.packed + b"\0")


_field = st.one_of(st.none(), st.sampled_from(["V", "A", "Sample.Clock", "P1Meter", "Raw"]))
_value = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True).map(repr),
    st.text(max_size=8),
)


@given(st.lists(st.tuples(_value, _field, _field, _field), max_size=40))
def test_any_sample_round_trips_exactly(rows: list[tuple[str, str | None, str | None, str | None]]) -> None:
    sampled = []
    for value, unit, context, location in rows:
        item = {"value": value, "measurand": "Voltage.L1N"}
        for name, field in (("unit", unit), ("context", context), ("location", location)):
            if field is not None:
                item[name] = field
        sampled.append(item)
    assert roundtrip(sampled) == sampled
