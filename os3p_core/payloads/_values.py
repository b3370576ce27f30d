"""Nested value classes: the objects that sit inside the top-level request/response payloads.

Attribute names are the snake_case of the wire names (the converter maps them to camelCase).
Required fields come first; an optional field defaults to ``None`` and is then left out on the
wire (never sent as ``null``).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from ._checks import aware_datetime, boolean, enum_member, instance, integer, items, string
from ._enums import (
    Measurand,
    MeasurementLocation,
    ReadingContext,
    RecurrencyKind,
    SchedulePointKind,
    UnitOfMeasure,
    ValueFormat,
)

__all__ = [
    "ConfigurationKey",
    "EffectivePeriod",
    "MeterValue",
    "SampledValue",
    "SchedulePeriod",
    "SchedulePoint",
    "StreetlightProfile",
]

#: §M7.10: "offset ... indicates time offset in seconds"; the schema bounds it to one day either way.
_MAX_OFFSET = 86400


@attrs.frozen
class SampledValue:
    """One measured value (§M6.5).

    ``value`` is a string on the wire (e.g. ``"12"``).  Absent ``context`` means
    ``Sample.Periodic``, absent ``format`` means ``Raw`` (annex Table 3); we keep "absent" as
    ``None`` so that a payload round-trips exactly.  The annex schema put ``context``, ``format``,
    ``measurand``, ``location`` and ``unit`` outside ``items.properties``; PROTOCOL-DECISIONS §8
    moves them inside, with ``value`` and ``measurand`` required.
    """

    value: str = attrs.field(validator=string())
    measurand: Measurand = attrs.field(validator=enum_member(Measurand))
    context: ReadingContext | None = attrs.field(
        default=None, validator=enum_member(ReadingContext, optional=True)
    )
    format: ValueFormat | None = attrs.field(default=None, validator=enum_member(ValueFormat, optional=True))
    location: MeasurementLocation | None = attrs.field(
        default=None, validator=enum_member(MeasurementLocation, optional=True)
    )
    unit: UnitOfMeasure | None = attrs.field(
        default=None, validator=enum_member(UnitOfMeasure, optional=True)
    )


@attrs.frozen
class MeterValue:
    """The sampled values taken at one moment (§M6.5: ``timestamp`` and ``sampledValue`` required)."""

    timestamp: datetime = attrs.field(validator=aware_datetime())
    sampled_value: tuple[SampledValue, ...] = attrs.field(validator=items(SampledValue))


@attrs.frozen
class ConfigurationKey:
    """One entry of GetConfigurationResponse ``configurationKey`` (§M7.3)."""

    key: str = attrs.field(validator=string())
    readonly: bool = attrs.field(validator=boolean())
    value: str | None = attrs.field(default=None, validator=string(optional=True))


@attrs.frozen
class SchedulePoint:
    """The ``start`` or ``end`` of a daySchedule period (§M7.10, Table 18).

    ``kind`` ``Absolute`` takes ``time`` (local wall time ``"HH:mm:ss"`` or ``"HH:mm:ss.fff"``);
    ``Sunset`` / ``Sunrise`` take ``offset`` seconds.  The schema does not tie the two together,
    so neither does this class: a station answers a missing or malformed one with ``Rejected``
    (STREETLIGHT-SEMANTICS "Points in time"), which it can only do if such a request structures.
    """

    kind: SchedulePointKind = attrs.field(validator=enum_member(SchedulePointKind))
    offset: int | None = attrs.field(
        default=None, validator=integer(minimum=-_MAX_OFFSET, maximum=_MAX_OFFSET, optional=True)
    )
    time: str | None = attrs.field(default=None, validator=string(optional=True))

    @classmethod
    def absolute(cls, time: str) -> SchedulePoint:
        """A point at local wall time ``time`` (``"HH:mm:ss"`` or ``"HH:mm:ss.fff"``)."""
        return cls(SchedulePointKind.ABSOLUTE, time=time)

    @classmethod
    def sunset(cls, offset: int = 0) -> SchedulePoint:
        """A point ``offset`` seconds after (negative: before) sunset."""
        return cls(SchedulePointKind.SUNSET, offset=offset)

    @classmethod
    def sunrise(cls, offset: int = 0) -> SchedulePoint:
        """A point ``offset`` seconds after (negative: before) sunrise."""
        return cls(SchedulePointKind.SUNRISE, offset=offset)


@attrs.frozen
class SchedulePeriod:
    """One "lights on" period of a profile's daySchedule (§M7.10, Table 17)."""

    start: SchedulePoint = attrs.field(validator=instance(SchedulePoint))
    end: SchedulePoint = attrs.field(validator=instance(SchedulePoint))


@attrs.frozen
class StreetlightProfile:
    """One streetlight profile of SetStreetlightProfileRequest (§M7.10, Table 16).

    ``day_schedule`` holds 1 to 4 periods (schema ``minItems``/``maxItems``).  ``valid_from`` /
    ``valid_to``: only their literal date part counts (STREETLIGHT-SEMANTICS "The OS³P day").
    """

    profile_id: int = attrs.field(validator=integer(minimum=0))
    stack_level: int = attrs.field(validator=integer(minimum=0))
    recurrency_kind: RecurrencyKind = attrs.field(validator=enum_member(RecurrencyKind))
    day_schedule: tuple[SchedulePeriod, ...] = attrs.field(
        validator=items(SchedulePeriod, min_items=1, max_items=4)
    )
    valid_from: datetime | None = attrs.field(default=None, validator=aware_datetime(optional=True))
    valid_to: datetime | None = attrs.field(default=None, validator=aware_datetime(optional=True))


@attrs.frozen
class EffectivePeriod:
    """One period of GetEffectiveStreetlightDayScheduleResponse ``daySchedule`` (§M7.4).

    ``start`` / ``end`` are local ``"HH:mm:ss"`` strings (``".fff"`` only when the milliseconds are
    not zero; an end at the window end prints ``"12:00:00"``, STREETLIGHT-SEMANTICS "Periods").
    """

    start: str = attrs.field(validator=string())
    end: str = attrs.field(validator=string())
