"""The compact, lossless form of one MeterValues ``meterValue`` element, shared by every store.

Why: one row per sampled value costs ~160 bytes per value (47 GB a day for 100,000 stations reporting 30
values every 15 minutes).  A station reports the same measurands, units and number formats in every sample,
so a sample splits into

* a **profile**: the ordered list of the sampled values' descriptors (measurand, unit, context, format,
  location exactly as sent, absent fields as absent) plus each value's number of decimals.  Profiles are few
  (a handful per station model) and are stored once, interned by their text :attr:`EncodedSample.profile_key`;
* the **values** as scaled integers (``"230.12"`` is 23012 at 2 decimals), packed little-endian as int32
  when all fit, else int64: 4 or 8 bytes per value;
* **extras**: any value that is not a plain decimal numeral (``"1e3"``, ``"+5"``, ``"007"``, ``"-0.0"``,
  ``"NaN"``, text, more than 18 decimals or digits beyond int64) is kept verbatim beside the packed values,
  with its position.  Nothing a station sends is ever dropped or rewritten: :func:`decode_sample` returns
  every value's text exactly as it was received.

The codec is pure (no I/O), so the SQLite and PostgreSQL stores cannot disagree on it.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["EXTRA", "EncodedSample", "SampleDescriptor", "decode_sample", "encode_sample", "profile_of_key"]

# A plain decimal numeral in canonical form: optional minus, no leading zeros, optional fraction.  Anything
# else round-trips through the extras, verbatim.
_NUMERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.([0-9]{1,18}))?")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
#: The scale recorded in a profile for a value stored among the extras.
EXTRA = -1
# Descriptor fields in the order they appear in a profile key (annex §6.5 sampledValue, minus ``value``).
_FIELDS = ("measurand", "unit", "context", "format", "location")


@attrs.frozen(slots=True)
class SampleDescriptor:
    """What one position of a profile says about its value: the sampledValue's fields as sent (``None``:
    absent, so Table 3's defaults apply when read) and the value's decimals (:data:`EXTRA`: kept verbatim)."""

    measurand: str
    unit: str | None
    context: str | None
    format: str | None
    location: str | None
    scale: int


@attrs.frozen(slots=True)
class EncodedSample:
    """One ``sampledValue`` list in compact form."""

    #: Canonical JSON text of the profile: equal descriptors give equal keys (stores intern it).
    profile_key: str
    #: The scaled integers, little-endian int32 (``len == 4 * n``) or int64 (``len == 8 * n``); a position
    #: held in :attr:`extras` packs 0.
    packed: bytes
    #: ``(position, value text)`` of every value that is not a plain decimal numeral.
    extras: tuple[tuple[int, str], ...]


def _scaled(text: str) -> tuple[int, int] | None:
    match = _NUMERAL.fullmatch(text)
    if match is None:
        return None
    fraction = match.group(1) or ""
    mantissa = int(text.replace(".", "")) if fraction else int(text)
    if mantissa == 0 and text.startswith("-"):
        return None  # "-0" / "-0.00": the sign would be lost
    if not _INT64[0] <= mantissa <= _INT64[1]:
        return None
    return mantissa, len(fraction)


def encode_sample(sampled_value: Sequence[Mapping[str, Any]]) -> EncodedSample:
    """The compact form of a validated ``sampledValue`` list (wire dicts: ``value`` and ``measurand`` are
    required strings, the rest optional)."""
    profile: list[list[Any]] = []
    mantissas: list[int] = []
    extras: list[tuple[int, str]] = []
    for position, item in enumerate(sampled_value):
        text = item["value"]
        scaled = _scaled(text)
        if scaled is None:
            extras.append((position, text))
            mantissas.append(0)
            scale = EXTRA
        else:
            mantissas.append(scaled[0])
            scale = scaled[1]
        profile.append([item.get(name) for name in _FIELDS] + [scale])
    if all(_INT32[0] <= m <= _INT32[1] for m in mantissas):
        packed = struct.pack(f"<{len(mantissas)}i", *mantissas)
    else:
        packed = struct.pack(f"<{len(mantissas)}q", *mantissas)
    key = json.dumps(profile, separators=(",", ":"), ensure_ascii=False)
    return EncodedSample(key, packed, tuple(extras))


def profile_of_key(profile_key: str) -> tuple[SampleDescriptor, ...]:
    """The descriptors a profile key stands for (stores cache the result per profile)."""
    return tuple(
        SampleDescriptor(measurand, unit, context, fmt, location, scale)
        for measurand, unit, context, fmt, location, scale in json.loads(profile_key)
    )


def _text(mantissa: int, scale: int) -> str:
    if scale == 0:
        return str(mantissa)
    digits = str(abs(mantissa)).rjust(scale + 1, "0")
    sign = "-" if mantissa < 0 else ""
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def decode_sample(
    profile: Sequence[SampleDescriptor], packed: bytes, extras: Sequence[tuple[int, str]] = ()
) -> list[tuple[SampleDescriptor, str]]:
    """Every position's descriptor and value text, exactly as the station sent it."""
    count = len(profile)
    if count == 0:
        return []
    width = len(packed) // count
    if width not in (4, 8) or width * count != len(packed):
        raise ValueError(f"packed values of {len(packed)} bytes do not fit a profile of {count}")
    mantissas = struct.unpack(f"<{count}{'i' if width == 4 else 'q'}", packed)
    verbatim = dict(extras)
    out: list[tuple[SampleDescriptor, str]] = []
    for position, (descriptor, mantissa) in enumerate(zip(profile, mantissas, strict=True)):
        if descriptor.scale == EXTRA:
            out.append((descriptor, verbatim[position]))
        else:
            out.append((descriptor, _text(mantissa, descriptor.scale)))
    return out
