"""Streetlight schedules: the profile store, the effective day schedule and the switching timeline.

Everything here implements ``shared/design/STREETLIGHT-SEMANTICS.md`` (quoted as "SEM") for the messages of
spec annex §M7.2 (ClearSingleStreetlightProfile), §M7.4 (GetEffectiveStreetlightDaySchedule) and §M7.10
(SetStreetlightProfile).  It is sans-IO: plain data and pure functions, time is always an argument.

Theory of operation
-------------------
* Instants are integer **milliseconds since the POSIX epoch (UTC)**.  Absolute points carry milliseconds, sun
  times are whole seconds and offsets are whole seconds, so every boundary is a whole millisecond and all
  arithmetic is exact (no float drift, no "off by one second at DST").
* SEM "The OS³P day": day D is the local interval [D 12:00, D+1 12:00).  Local wall times become instants with
  ``zoneinfo`` and ``fold=0``, which is exactly SEM's rule for gaps (02:30 → 03:30) and repeats (first
  occurrence).
* A profile is parsed once, on install, into :class:`InstalledProfile`; evaluation never looks at wire
  dicts.
* A station drives its contactors with :meth:`ProfileStore.switching_state`: "on now?" and "when next?"; it
  calls it again at that instant, and whenever the profiles or the configuration (TimeZone, Geolocation)
  change.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Mapping
from typing import Any, Final
from zoneinfo import ZoneInfo

import attrs

from ._sun import sun_times_utc_seconds

__all__ = [
    "CONTACTOR_IDS",
    "DaySchedule",
    "InstalledProfile",
    "ProfilePeriod",
    "ProfilePoint",
    "ProfileStore",
    "SiteLocation",
    "StreetlightResult",
    "SwitchingState",
    "os3p_day_of",
]

#: The contactors a Substation drives (§M7.10 schema: contactorId 1–4).
CONTACTOR_IDS: Final = (1, 2, 3, 4)
#: §M7.10 schema: daySchedule has 1 to 4 periods; SEM: "more than 4 periods ... → Rejected".
MAX_PERIODS: Final = 4
#: §M7.10 schema: offset in [−86400, 86400] seconds.
MAX_OFFSET_SECONDS: Final = 86400
#: Bound on the profiles one contactor can hold.  Stack levels are unique per contactor and at most
#: StreetlightProfileMaxStackLevel (default 16), so an honest station never gets near this; it caps memory at
#: 4 × 1024 small objects if the owner raises the maximum stack level to something silly.
MAX_PROFILES_PER_CONTACTOR: Final = 1024
#: How far ahead (in OS³P days) :meth:`ProfileStore.switching_state` looks for the next switch.
DEFAULT_HORIZON_DAYS: Final = 400

_MS_PER_DAY: Final = 86_400_000
_NOON_MS: Final = 43_200_000
_EPOCH_ORDINAL: Final = _dt.date(1970, 1, 1).toordinal()
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
#: §M7.10 Table 18: "HH:mm:ss in 24 hour format ... You can optionally add ms, eg: 21:03:00.500".
#: SEM: 00:00:00 – 23:59:59.999; "24:00:00" is malformed.
_TIME_RE: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]{3}))?\Z")
_KINDS: Final = frozenset({"Absolute", "Sunset", "Sunrise"})
_RECURRENCY: Final = frozenset({"None", "Daily", "Weekly"})
_SNAPSHOT_FORMAT: Final = "os3p-streetlight-profiles/1"

ACCEPTED: Final = "Accepted"
REJECTED: Final = "Rejected"
UNKNOWN: Final = "Unknown"


class _Invalid(Exception):
    """A request (or snapshot) that breaks a rule; the message says which."""


# ----------------------------------------------------------------------------------------------------------
# Site: where and in which zone the station is
# ----------------------------------------------------------------------------------------------------------


def _zone(value: _dt.tzinfo | str) -> _dt.tzinfo:
    return ZoneInfo(value) if isinstance(value, str) else value


def _check_lat(_inst: object, _attr: object, value: float) -> None:
    if not -90.0 <= value <= 90.0:
        raise ValueError(f"latitude {value} outside [-90, 90]")


def _check_lng(_inst: object, _attr: object, value: float) -> None:
    if not -180.0 <= value <= 180.0:
        raise ValueError(f"longitude {value} outside [-180, 180]")


@attrs.frozen(slots=True)
class SiteLocation:
    """The inputs of SEM "Inputs": ``Geolocation`` (north and east positive, degrees) and ``TimeZone``.

    ``timezone`` accepts an IANA name or a ``tzinfo``; a ``zoneinfo.ZoneInfo`` is what gives SEM's fold=0
    rules.
    """

    latitude: float = attrs.field(converter=float, validator=_check_lat)
    longitude: float = attrs.field(converter=float, validator=_check_lng)
    timezone: _dt.tzinfo = attrs.field(default=ZoneInfo("Europe/Amsterdam"), converter=_zone)


# ----------------------------------------------------------------------------------------------------------
# Parsed profiles
# ----------------------------------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class ProfilePoint:
    """One start or end point (§M7.10 Table 18).

    ``kind`` is ``"Absolute"``, ``"Sunset"`` or ``"Sunrise"``.  Absolute points carry ``time_ms``
    (milliseconds after local midnight); sun-relative points carry ``offset`` (seconds, negative = before).
    """

    kind: str
    time_ms: int | None = None
    offset: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The point as it appears on the wire (canonical form)."""
        if self.kind == "Absolute":
            assert self.time_ms is not None
            return {"kind": "Absolute", "time": _format_time_of_day(self.time_ms)}
        return {"kind": self.kind, "offset": self.offset}


@attrs.frozen(slots=True)
class ProfilePeriod:
    """One ``daySchedule`` entry: the light is on from ``start`` to ``end`` (when end is after start)."""

    start: ProfilePoint
    end: ProfilePoint

    def to_wire(self) -> dict[str, Any]:
        return {"start": self.start.to_wire(), "end": self.end.to_wire()}


@attrs.frozen(slots=True)
class InstalledProfile:
    """One installed profile, parsed and validated (§M7.10 Table 16).

    ``valid_from`` / ``valid_to`` are the literal date parts of the wire date-times (SEM: "only the literal
    date part counts"); ``valid_to`` is inclusive.
    """

    profile_id: int
    stack_level: int
    recurrency_kind: str
    valid_from: _dt.date | None
    valid_to: _dt.date | None
    periods: tuple[ProfilePeriod, ...]

    @property
    def uses_sun(self) -> bool:
        """True when some point is relative to sunset or sunrise."""
        return any(p.start.kind != "Absolute" or p.end.kind != "Absolute" for p in self.periods)

    def applies_on(self, day: _dt.date) -> bool:
        """SEM "Which profile applies on day D"."""
        if self.valid_from is not None and day < self.valid_from:
            return False
        if self.valid_to is not None and day > self.valid_to:
            return False
        if self.recurrency_kind == "Daily":
            return True
        assert self.valid_from is not None  # guaranteed for Weekly and None at install
        if self.recurrency_kind == "Weekly":
            return day.weekday() == self.valid_from.weekday()
        return day == self.valid_from

    def next_day_applying(self, day: _dt.date) -> _dt.date | None:
        """The first day ≥ ``day`` on which this profile applies, or ``None``."""
        first = day if self.valid_from is None or day >= self.valid_from else self.valid_from
        if self.recurrency_kind == "Weekly":
            assert self.valid_from is not None
            first += _dt.timedelta(days=(self.valid_from.weekday() - first.weekday()) % 7)
        elif self.recurrency_kind == "None" and first != self.valid_from:
            return None
        if self.valid_to is not None and first > self.valid_to:
            return None
        return first

    def to_wire(self) -> dict[str, Any]:
        """The profile as a ``streetlightProfiles`` entry (dates as ``YYYY-MM-DDT00:00:00``, which is
        lossless)."""
        out: dict[str, Any] = {
            "profileId": self.profile_id,
            "stackLevel": self.stack_level,
            "recurrencyKind": self.recurrency_kind,
        }
        if self.valid_from is not None:
            out["validFrom"] = self.valid_from.isoformat() + "T00:00:00"
        if self.valid_to is not None:
            out["validTo"] = self.valid_to.isoformat() + "T00:00:00"
        out["daySchedule"] = [p.to_wire() for p in self.periods]
        return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_time_of_day(text: object) -> int:
    if not isinstance(text, str):
        raise _Invalid("Absolute point without a 'time' string")
    m = _TIME_RE.match(text)
    if m is None:
        raise _Invalid(f"malformed time {text!r} (want HH:mm:ss or HH:mm:ss.fff, 00:00:00-23:59:59.999)")
    h, mi, s, ms = m.groups()
    return ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1000 + (int(ms) if ms else 0)


def _format_time_of_day(ms: int) -> str:
    s, milli = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    # SEM "Periods": '".fff" only when the milliseconds are not zero'.
    return f"{text}.{milli:03d}" if milli else text


def _parse_point(raw: object, where: str) -> ProfilePoint:
    if not isinstance(raw, Mapping):
        raise _Invalid(f"{where}: not an object")
    kind = raw.get("kind")
    if kind not in _KINDS:
        raise _Invalid(f"{where}: kind {kind!r} is not Absolute, Sunset or Sunrise")
    # A field that does not belong to the kind (an Absolute 'offset', a Sunset 'time') is ignored: the spec
    # only makes each one mandatory for its own kind (§M7.10 Table 18), and the schema has checked its type.
    if kind == "Absolute":
        try:
            return ProfilePoint(kind="Absolute", time_ms=_parse_time_of_day(raw.get("time")))
        except _Invalid as exc:
            raise _Invalid(f"{where}: {exc}") from None
    offset = raw.get("offset")
    if not _is_int(offset):
        raise _Invalid(f"{where}: {kind} point without an integer 'offset'")
    assert isinstance(offset, int)
    if not -MAX_OFFSET_SECONDS <= offset <= MAX_OFFSET_SECONDS:
        raise _Invalid(f"{where}: offset {offset} outside [-86400, 86400]")
    return ProfilePoint(kind=str(kind), offset=offset)


def _parse_date_part(raw: object, where: str) -> _dt.date | None:
    if raw is None:
        return None
    if isinstance(raw, _dt.datetime):
        return raw.date()  # the literal date as given: no conversion to another zone
    if isinstance(raw, _dt.date):
        return raw
    if not isinstance(raw, str):
        raise _Invalid(f"{where}: not a date-time string")
    try:
        parsed = _dt.datetime.fromisoformat(raw)
    except ValueError:
        raise _Invalid(f"{where}: malformed date-time {raw!r}") from None
    # SEM: "only the literal date part counts" — fromisoformat keeps the written offset, so .date() is
    # literal.
    return parsed.date()


def _parse_profile(raw: object, where: str, max_stack_level: int | None) -> InstalledProfile:
    if not isinstance(raw, Mapping):
        raise _Invalid(f"{where}: not an object")
    profile_id = raw.get("profileId")
    stack_level = raw.get("stackLevel")
    if not _is_int(profile_id) or profile_id < 0:  # type: ignore[operator]
        raise _Invalid(f"{where}.profileId: want an integer ≥ 0")
    if not _is_int(stack_level) or stack_level < 0:  # type: ignore[operator]
        raise _Invalid(f"{where}.stackLevel: want an integer ≥ 0")
    assert isinstance(profile_id, int)
    assert isinstance(stack_level, int)
    if max_stack_level is not None and stack_level > max_stack_level:
        # SEM "Installing": "stackLevel > StreetlightProfileMaxStackLevel ... → Rejected".
        raise _Invalid(
            f"{where}.stackLevel {stack_level} > StreetlightProfileMaxStackLevel {max_stack_level}"
        )
    kind = raw.get("recurrencyKind")
    if kind not in _RECURRENCY:
        raise _Invalid(f"{where}.recurrencyKind: {kind!r} is not None, Daily or Weekly")
    valid_from = _parse_date_part(raw.get("validFrom"), f"{where}.validFrom")
    valid_to = _parse_date_part(raw.get("validTo"), f"{where}.validTo")
    if kind != "Daily" and valid_from is None:
        # SEM: "Weekly or None without validFrom ... → Rejected" (validFrom picks the weekday / the one day).
        raise _Invalid(f"{where}: recurrencyKind {kind} needs validFrom")
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        raise _Invalid(f"{where}: validTo {valid_to} before validFrom {valid_from}")
    schedule = raw.get("daySchedule")
    if not isinstance(schedule, list | tuple) or not schedule:
        raise _Invalid(f"{where}.daySchedule: want 1 to {MAX_PERIODS} periods")
    if len(schedule) > MAX_PERIODS:
        raise _Invalid(f"{where}.daySchedule: {len(schedule)} periods, at most {MAX_PERIODS}")
    periods = []
    for i, period in enumerate(schedule):
        if not isinstance(period, Mapping):
            raise _Invalid(f"{where}.daySchedule[{i}]: not an object")
        periods.append(
            ProfilePeriod(
                start=_parse_point(period.get("start"), f"{where}.daySchedule[{i}].start"),
                end=_parse_point(period.get("end"), f"{where}.daySchedule[{i}].end"),
            )
        )
    return InstalledProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        recurrency_kind=str(kind),
        valid_from=valid_from,
        valid_to=valid_to,
        periods=tuple(periods),
    )


def _as_wire(request: object) -> Mapping[str, Any]:
    """Accept a wire dict or a typed ``os3p_core.payloads`` object (unstructured by the project's
    converter)."""
    if isinstance(request, Mapping):
        return request
    try:
        from ._converter import unstructure  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - the payloads package not installed yet
        raise TypeError(f"expected a payload dict, got {type(request).__name__}") from None
    wire = unstructure(request)
    if not isinstance(wire, Mapping):
        raise TypeError(f"expected a payload dict or payload object, got {type(request).__name__}")
    return wire


# ----------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class StreetlightResult:
    """Outcome of SetStreetlightProfile or ClearSingleStreetlightProfile.

    ``status`` is the wire status (``"Accepted"``, ``"Rejected"``, ``"Unknown"``); ``reason`` says why it was
    not accepted (for logs — it never goes on the wire); ``changed`` tells the owner to persist
    :meth:`ProfileStore.snapshot` and to re-evaluate :meth:`ProfileStore.switching_state`.
    """

    status: str
    reason: str | None = None
    changed: bool = False

    def to_payload(self) -> dict[str, Any]:
        """The response payload (``{"status": ...}``)."""
        return {"status": self.status}


@attrs.frozen(slots=True)
class DaySchedule:
    """The effective schedule of one contactor on OS³P day ``day`` (SEM "Periods").

    ``intervals`` are (start, end) instants in milliseconds since the POSIX epoch, merged, sorted, each
    non-empty and inside [``window_start``, ``window_end``); the light is on for start ≤ t < end.  ``profile``
    is the winning profile (``None`` when none applies).
    """

    contactor_id: int
    day: _dt.date
    timezone: _dt.tzinfo
    window_start: int
    window_end: int
    intervals: tuple[tuple[int, int], ...]
    profile: InstalledProfile | None

    @property
    def periods(self) -> list[tuple[_dt.datetime, _dt.datetime]]:
        """The intervals as aware local datetimes."""
        return [(_local(s, self.timezone), _local(e, self.timezone)) for s, e in self.intervals]

    def is_on(self, at: _dt.datetime) -> bool:
        """Whether the schedule has the light on at ``at`` (which should lie in this day's window)."""
        t = _to_ms(at)
        return any(s <= t < e for s, e in self.intervals)

    def to_payload(self) -> dict[str, Any]:
        """The GetEffectiveStreetlightDaySchedule response payload (§M7.4; no ``status``, PROTOCOL-DECISIONS
        §8)."""
        return {
            "contactorId": self.contactor_id,
            "daySchedule": [
                {"start": _format_local(s, self.timezone), "end": _format_local(e, self.timezone)}
                for s, e in self.intervals
            ],
        }


@attrs.frozen(slots=True)
class SwitchingState:
    """What a contactor should do at instant ``at``: ``on`` now, and the ``next_switch`` instant (aware UTC).

    ``next_switch`` is ``None`` when the state does not change up to ``checked_until`` (no applicable profile
    within the horizon); re-evaluate then, or when profiles or configuration change.
    """

    at: _dt.datetime
    on: bool
    next_switch: _dt.datetime | None
    checked_until: _dt.datetime


# ----------------------------------------------------------------------------------------------------------
# Time helpers (all exact, in integer milliseconds)
# ----------------------------------------------------------------------------------------------------------


def _to_ms(at: _dt.datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("instants must be timezone-aware datetimes")
    delta = at - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _utc_from_ms(ms: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(milliseconds=ms)


def _local(ms: int, tz: _dt.tzinfo) -> _dt.datetime:
    return _utc_from_ms(ms).astimezone(tz)


def _format_local(ms: int, tz: _dt.tzinfo) -> str:
    local = _local(ms, tz)
    milli = local.microsecond // 1000
    text = f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    return f"{text}.{milli:03d}" if milli else text


def _wall_to_ms(day: _dt.date, ms_of_day: int, tz: _dt.tzinfo) -> int:
    """Local wall time on ``day`` → instant, fold=0 (SEM: gap → offset before the gap; repeat → first
    occurrence)."""
    seconds, _milli = divmod(ms_of_day, 1000)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    offset = tz.utcoffset(_dt.datetime(day.year, day.month, day.day, h, m, s))
    assert offset is not None
    naive_ms = (day.toordinal() - _EPOCH_ORDINAL) * _MS_PER_DAY + ms_of_day
    return naive_ms - (offset.days * 86400 + offset.seconds) * 1000 - offset.microseconds // 1000


@functools.lru_cache(maxsize=4096)
def _window(day: _dt.date, tz: _dt.tzinfo) -> tuple[int, int]:
    """SEM "The OS³P day": [D 12:00, D+1 12:00) local, as instants."""
    return _wall_to_ms(day, _NOON_MS, tz), _wall_to_ms(day + _dt.timedelta(days=1), _NOON_MS, tz)


def os3p_day_of(at: _dt.datetime, tz: _dt.tzinfo | str) -> _dt.date:
    """The OS³P day D whose window [D 12:00, D+1 12:00) local contains the instant ``at``."""
    zone = _zone(tz)
    local = at.astimezone(zone)
    day = local.date()
    start, _end = _window(day, zone)
    return day if _to_ms(at) >= start else day - _dt.timedelta(days=1)


def _point_ms(point: ProfilePoint, day: _dt.date, tz: _dt.tzinfo, sun: tuple[int, int] | None) -> int:
    if point.kind == "Absolute":
        assert point.time_ms is not None
        # SEM "Points in time": at or after 12:00 → calendar date D, before 12:00 → date D+1.
        on = day if point.time_ms >= _NOON_MS else day + _dt.timedelta(days=1)
        return _wall_to_ms(on, point.time_ms, tz)
    assert sun is not None
    assert point.offset is not None
    # SEM: "the event instant plus the offset as elapsed seconds".
    event = sun[0] if point.kind == "Sunset" else sun[1]
    return event * 1000 + point.offset * 1000


def _day_periods(profile: InstalledProfile, day: _dt.date, site: SiteLocation) -> list[tuple[int, int]]:
    """Day D's own periods as instants, unclipped (SEM "Periods": "computed from day D's events and Absolute
    times"; end not after start → off for that period)."""
    tz = site.timezone
    w0, w1 = _window(day, tz)
    sun = (
        sun_times_utc_seconds(site.latitude, site.longitude, w0 // 1000, w1 // 1000)
        if profile.uses_sun
        else None
    )
    spans = []
    for period in profile.periods:
        start = _point_ms(period.start, day, tz, sun)
        end = _point_ms(period.end, day, tz, sun)
        if end > start:
            spans.append((start, end))
    return spans


def _merge_clipped(
    spans: list[tuple[int, int]], w0: int, w1: int
) -> tuple[tuple[int, int], ...]:
    """Clip to [w0, w1), sort and merge overlapping or touching spans (SEM "Periods")."""
    clipped = sorted((max(s, w0), min(e, w1)) for s, e in spans if min(e, w1) > max(s, w0))
    merged: list[tuple[int, int]] = []
    for start, end in clipped:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


# ----------------------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------------------


class ProfileStore:
    """The installed streetlight profiles of contactors 1–4, with the rules of SEM "Installing and clearing".

    Every change is validated completely before anything is touched, so a Rejected request changes nothing and
    ``clearAllSchedules`` is atomic in memory.  Durability (SEM: "stored durably and survive a restart"; "both
    succeed or neither does, also across a crash") is the owner's: when a result has ``changed``, write
    :meth:`snapshot` in one transaction before answering; restore it with :meth:`restore`.

    Worst-case memory: 4 contactors × :data:`MAX_PROFILES_PER_CONTACTOR` profiles × 4 periods.
    """

    __slots__ = ("_profiles",)

    def __init__(self) -> None:
        # contactor → stack level → profile (stack levels are unique per contactor, §M7.10 Table 16).
        self._profiles: dict[int, dict[int, InstalledProfile]] = {c: {} for c in CONTACTOR_IDS}

    # -- reading
    # -------------------------------------------------------------------------------------------------

    def profiles(self, contactor_id: int) -> tuple[InstalledProfile, ...]:
        """The installed profiles of a contactor, highest stack level first."""
        table = self._profiles[_contactor(contactor_id)]
        return tuple(table[level] for level in sorted(table, reverse=True))

    def effective_profile(self, contactor_id: int, day: _dt.date) -> InstalledProfile | None:
        """SEM "Precedence per whole day": the applicable profile with the highest stack level, or
        ``None``."""
        table = self._profiles[_contactor(contactor_id)]
        best: InstalledProfile | None = None
        for profile in table.values():
            if (best is None or profile.stack_level > best.stack_level) and profile.applies_on(day):
                best = profile
        return best

    def effective_day_schedule(self, contactor_id: int, day: _dt.date, site: SiteLocation) -> DaySchedule:
        """The effective schedule of ``contactor_id`` on OS³P day ``day`` (SEM, all of it).

        SEM "Nothing is lost at a window boundary": every instant of D's window in which a period of day
        D−1, D or D+1 (each from its own day's winning profile) is on.  The switching timeline is built
        from this same function, so the two never disagree.
        """
        c = _contactor(contactor_id)
        w0, w1 = _window(day, site.timezone)
        spans: list[tuple[int, int]] = []
        for offset in (-1, 0, 1):
            d = day + _dt.timedelta(days=offset)
            winner = self.effective_profile(c, d)
            if winner is not None:
                spans += _day_periods(winner, d, site)
        return DaySchedule(
            c, day, site.timezone, w0, w1, _merge_clipped(spans, w0, w1), self.effective_profile(c, day)
        )

    def get_effective_day_schedule(self, request: object, site: SiteLocation) -> dict[str, Any]:
        """Answer a GetEffectiveStreetlightDaySchedule request (§M7.4) with its response payload.

        ``request`` is the wire dict (schema-validated) or the typed request.  SEM: "D is the literal date
        part of ``at`` (time and offset ignored)".  Raises ``ValueError`` for a request the schema should have
        stopped.
        """
        wire = _as_wire(request)
        contactor_id = wire.get("contactorId")
        if not _is_int(contactor_id) or contactor_id not in CONTACTOR_IDS:
            raise ValueError(f"contactorId {contactor_id!r} is not 1-4")
        try:
            day = _parse_date_part(wire.get("at"), "at")
        except _Invalid as exc:
            raise ValueError(str(exc)) from None
        if day is None:
            raise ValueError("'at' is required")
        assert isinstance(contactor_id, int)
        return self.effective_day_schedule(contactor_id, day, site).to_payload()

    def switching_state(
        self,
        contactor_id: int,
        at: _dt.datetime,
        site: SiteLocation,
        *,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
    ) -> SwitchingState:
        """Is the light on at ``at`` per the schedule, and when does that next change?

        Periods of consecutive days that touch at 12:00 form one run (no switch at the day boundary).  Days on
        which no profile applies are skipped in one step, so a profile valid from a far date costs nothing
        extra; the search stops after ``horizon_days`` OS³P days.
        """
        c = _contactor(contactor_id)
        t = _to_ms(at)
        tz = site.timezone
        current: _dt.date | None = os3p_day_of(at, tz)
        assert current is not None
        last_day = current + _dt.timedelta(days=horizon_days)
        checked = _window(last_day, tz)[1]
        run_end: int | None = None  # set once t lies in an on-run; then we look for where the run ends
        while current is not None and current <= last_day:
            sched = self.effective_day_schedule(c, current, site)
            if not sched.intervals and run_end is None:
                # Nothing on in this window: jump to the day before the next day on which a profile applies
                # (its periods may reach back one window), never backwards.
                table = self._profiles[c].values()
                candidates = [d for p in table if (d := p.next_day_applying(current)) is not None]
                if not candidates:
                    current = None
                    continue
                current = max(current + _dt.timedelta(days=1), min(candidates) - _dt.timedelta(days=1))
                continue
            for start, end in sched.intervals:
                if run_end is None:
                    if end <= t:
                        continue
                    if start > t:
                        return SwitchingState(at, False, _utc_from_ms(start), _utc_from_ms(checked))
                    run_end = end
                elif start > run_end:
                    return SwitchingState(at, True, _utc_from_ms(run_end), _utc_from_ms(checked))
                else:
                    run_end = max(run_end, end)
            if run_end is not None and run_end < sched.window_end:
                return SwitchingState(at, True, _utc_from_ms(run_end), _utc_from_ms(checked))
            current += _dt.timedelta(days=1)
        # No change up to the horizon (or ever, when no profile applies again).
        return SwitchingState(at, run_end is not None, None, _utc_from_ms(checked))

    # -- changing
    # ------------------------------------------------------------------------------------------------

    def set_streetlight_profile(self, request: object, *, max_stack_level: int = 16) -> StreetlightResult:
        """Apply a SetStreetlightProfile request (§M7.10) — all or nothing.

        ``request`` is the wire dict (schema-validated) or the typed request.  ``max_stack_level`` is the
        current ``StreetlightProfileMaxStackLevel`` configuration value.  Every rule of SEM "Installing" is
        checked here again, so the store is safe with unvalidated input too.
        """
        try:
            wire = _as_wire(request)
            contactor_id = wire.get("contactorId")
            if not _is_int(contactor_id) or contactor_id not in CONTACTOR_IDS:
                raise _Invalid(f"contactorId {contactor_id!r} is not 1-4")
            assert isinstance(contactor_id, int)
            # PROTOCOL-DECISIONS §8: `clearAllSchedules` is normative, `clearSchedule` (the annex example) an
            # alias.
            clear = (
                wire["clearAllSchedules"] if "clearAllSchedules" in wire else wire.get("clearSchedule", False)
            )
            if not isinstance(clear, bool):
                raise _Invalid("clearAllSchedules: want a boolean")
            raw_profiles = wire.get("streetlightProfiles")
            if not isinstance(raw_profiles, list | tuple) or not raw_profiles:
                raise _Invalid("streetlightProfiles: want at least one profile")
            new = [
                _parse_profile(raw, f"streetlightProfiles[{i}]", max_stack_level)
                for i, raw in enumerate(raw_profiles)
            ]
            # SEM: "Two profiles in one request with the same stackLevel or profileId → Rejected".
            if len({p.stack_level for p in new}) != len(new):
                raise _Invalid("two profiles in the request share a stackLevel")
            if len({p.profile_id for p in new}) != len(new):
                raise _Invalid("two profiles in the request share a profileId")
            table = {} if clear else dict(self._profiles[contactor_id])
            new_ids = {p.profile_id for p in new}
            # SEM: "A new profile with the stackLevel, or the profileId, of an installed profile of that
            # contactor replaces it."
            table = {lvl: p for lvl, p in table.items() if p.profile_id not in new_ids}
            for profile in new:
                table[profile.stack_level] = profile
            if len(table) > MAX_PROFILES_PER_CONTACTOR:
                raise _Invalid(f"more than {MAX_PROFILES_PER_CONTACTOR} profiles on contactor {contactor_id}")
        except _Invalid as exc:
            return StreetlightResult(REJECTED, str(exc))
        # The one mutation, after every check passed: erase-and-install is atomic.
        self._profiles[contactor_id] = table
        return StreetlightResult(ACCEPTED, changed=True)

    def clear_streetlight_profile(self, request: object) -> StreetlightResult:
        """Apply a ClearSingleStreetlightProfile request (§M7.2, SEM "Installing and clearing").

        ``profileId`` with ``stackLevel`` → Rejected (mutually exclusive).  By ``profileId`` (optionally only
        on ``contactorId``); by ``stackLevel`` (on ``contactorId``, or on every contactor when it is absent);
        by ``contactorId`` alone (all its profiles); with no field, every profile.  Nothing matched → Unknown.
        """
        wire = _as_wire(request)
        contactor_id = wire.get("contactorId")
        profile_id = wire.get("profileId")
        stack_level = wire.get("stackLevel")
        if contactor_id is not None and (not _is_int(contactor_id) or contactor_id not in CONTACTOR_IDS):
            return StreetlightResult(REJECTED, f"contactorId {contactor_id!r} is not 1-4")
        for name, value in (("profileId", profile_id), ("stackLevel", stack_level)):
            if value is not None and (not _is_int(value) or value < 0):
                return StreetlightResult(REJECTED, f"{name}: want an integer ≥ 0")
        if profile_id is not None and stack_level is not None:
            # §M7.2: "stacklevel and profileId are mutual exclusive"; PROTOCOL-DECISIONS §8.
            return StreetlightResult(REJECTED, "profileId and stackLevel are mutually exclusive")
        contactors = CONTACTOR_IDS if contactor_id is None else (contactor_id,)
        updated: dict[int, dict[int, InstalledProfile]] = {}
        removed = 0
        for c in contactors:
            table = self._profiles[c]
            keep = {
                lvl: p
                for lvl, p in table.items()
                if not (
                    (profile_id is None or p.profile_id == profile_id)
                    and (stack_level is None or lvl == stack_level)
                )
            }
            if len(keep) != len(table):
                removed += len(table) - len(keep)
                updated[c] = keep
        if not removed:
            return StreetlightResult(UNKNOWN, "no installed profile matches")
        self._profiles.update(updated)
        return StreetlightResult(ACCEPTED, changed=True)

    # -- persistence
    # ---------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every installed profile as plain JSON-able data (canonical wire form), for durable storage."""
        return {
            "format": _SNAPSHOT_FORMAT,
            "contactors": {
                str(c): [self._profiles[c][lvl].to_wire() for lvl in sorted(self._profiles[c])]
                for c in CONTACTOR_IDS
            },
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> ProfileStore:
        """Rebuild a store from :meth:`snapshot` output.  Raises ``ValueError`` for a corrupt snapshot.

        Profiles are not re-checked against the *current* StreetlightProfileMaxStackLevel: they were accepted
        under the value in force when installed, and lowering the maximum later does not erase them.
        """
        if not isinstance(data, Mapping) or data.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError("not a streetlight profile snapshot")
        contactors = data.get("contactors")
        if not isinstance(contactors, Mapping):
            raise ValueError("snapshot without 'contactors'")
        store = cls()
        for key, raw_list in contactors.items():
            try:
                c = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"snapshot: bad contactor {key!r}") from None
            if c not in CONTACTOR_IDS or not isinstance(raw_list, list):
                raise ValueError(f"snapshot: bad contactor {key!r}")
            table: dict[int, InstalledProfile] = {}
            for i, raw in enumerate(raw_list):
                try:
                    profile = _parse_profile(raw, f"contactors[{key}][{i}]", None)
                except _Invalid as exc:
                    raise ValueError(f"snapshot: {exc}") from None
                if profile.stack_level in table or any(
                    p.profile_id == profile.profile_id for p in table.values()
                ):
                    raise ValueError(f"snapshot: duplicate profile on contactor {c}")
                table[profile.stack_level] = profile
            store._profiles[c] = table
        return store

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProfileStore):
            return NotImplemented
        return self._profiles == other._profiles

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        counts = ", ".join(f"{c}: {len(self._profiles[c])}" for c in CONTACTOR_IDS)
        return f"<ProfileStore profiles per contactor {{{counts}}}>"


def _contactor(contactor_id: int) -> int:
    if contactor_id not in CONTACTOR_IDS or isinstance(contactor_id, bool):
        raise ValueError(f"contactor {contactor_id!r} is not 1-4")
    return contactor_id
