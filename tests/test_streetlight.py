"""The streetlight profile store and effective day schedule, rule by rule (STREETLIGHT-SEMANTICS, "SEM").

Table tests through the public API (``os3p_core.ProfileStore``).  The property tests against a brute-force
oracle live in ``test_streetlight_properties.py``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from os3p_core import ProfileStore, SiteLocation, StreetlightResult, os3p_day_of, sun_times, validate_response

AMS = SiteLocation(52.37, 4.90, "Europe/Amsterdam")
TROMSO = SiteLocation(69.6492, 18.9553, "Europe/Oslo")
SYDNEY = SiteLocation(-33.87, 151.21, "Australia/Sydney")
NEW_YORK = SiteLocation(40.71, -74.01, "America/New_York")
Z_AMS = ZoneInfo("Europe/Amsterdam")


def A(time: str) -> dict[str, Any]:
    return {"kind": "Absolute", "time": time}


def SS(offset: int = 0) -> dict[str, Any]:
    return {"kind": "Sunset", "offset": offset}


def SR(offset: int = 0) -> dict[str, Any]:
    return {"kind": "Sunrise", "offset": offset}


def profile(
    pid: int,
    level: int,
    *periods: tuple[dict[str, Any], dict[str, Any]],
    kind: str = "Daily",
    valid_from: str | None = None,
    valid_to: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"profileId": pid, "stackLevel": level, "recurrencyKind": kind}
    if valid_from is not None:
        out["validFrom"] = valid_from
    if valid_to is not None:
        out["validTo"] = valid_to
    out["daySchedule"] = [{"start": s, "end": e} for s, e in periods]
    return out


def request(contactor: int, *profiles: dict[str, Any], clear: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"contactorId": contactor, "streetlightProfiles": list(profiles)}
    if clear is not None:
        out["clearAllSchedules"] = clear
    return out


def installed(*profiles: dict[str, Any], contactor: int = 1) -> ProfileStore:
    store = ProfileStore()
    result = store.set_streetlight_profile(request(contactor, *profiles))
    assert result.status == "Accepted", result.reason
    return store


def schedule(
    store: ProfileStore, day: dt.date, site: SiteLocation = AMS, contactor: int = 1
) -> list[list[str]]:
    payload = store.get_effective_day_schedule({"contactorId": contactor, "at": f"{day}T00:00:00"}, site)
    assert payload["contactorId"] == contactor
    return [[p["start"], p["end"]] for p in payload["daySchedule"]]


def seconds(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def near(actual: str, expected: str, tolerance: float = 60) -> bool:
    return abs(seconds(actual) - seconds(expected)) <= tolerance


SPEC_PROFILE = {
    "contactorId": 1,
    "clearSchedule": True,  # the annex example's spelling, an accepted alias (PROTOCOL-DECISIONS §8)
    "streetlightProfiles": [
        profile(
            1,
            2,
            (SS(3600), A("01:00:00")),
            (A("06:00:00"), SR(0)),
            valid_from="2015-06-06T00:00:00",
            valid_to="2019-09-06T00:00:00",
        )
    ],
}


# ----------------------------------------------------------------------------------------------------------
# Worked examples
# ----------------------------------------------------------------------------------------------------------


def test_worked_example_summer() -> None:
    store = ProfileStore()
    assert store.set_streetlight_profile(SPEC_PROFILE) == StreetlightResult("Accepted", changed=True)
    # SEM: 2015-07-07 → 23:02:43–01:00:00 (the morning period drops out: sunrise is before 06:00).
    [[start, end]] = schedule(store, dt.date(2015, 7, 7))
    assert near(start, "23:02:43")
    assert end == "01:00:00"


def test_worked_example_winter() -> None:
    store = ProfileStore()
    store.set_streetlight_profile(SPEC_PROFILE)
    # SEM: 2015-12-21 → 17:28:40–01:00:00, 06:00:00–08:48:29.
    [[s1, e1], [s2, e2]] = schedule(store, dt.date(2015, 12, 21))
    assert near(s1, "17:28:40")
    assert e1 == "01:00:00"
    assert s2 == "06:00:00"
    assert near(e2, "08:48:29")


def test_response_payload_shape_and_at_literal_date() -> None:
    store = ProfileStore()
    store.set_streetlight_profile(SPEC_PROFILE)
    expected = store.get_effective_day_schedule({"contactorId": 1, "at": "2015-12-21T00:00:00"}, AMS)
    assert set(expected) == {"contactorId", "daySchedule"}  # no "status" (PROTOCOL-DECISIONS §8)
    validate_response("GetEffectiveStreetlightDaySchedule", expected)  # our corrected schema accepts it
    validate_response("SetStreetlightProfile", StreetlightResult("Rejected").to_payload())
    validate_response("ClearSingleStreetlightProfile", StreetlightResult("Unknown").to_payload())
    # SEM: "D is the literal date part of `at` (time and offset ignored)".
    for at in ("2015-12-21T23:59:59Z", "2015-12-21T01:00:00-11:00", "2015-12-21T23:30:00+14:00"):
        assert store.get_effective_day_schedule({"contactorId": 1, "at": at}, AMS) == expected
    assert store.get_effective_day_schedule({"contactorId": 2, "at": "2015-12-21T00:00:00"}, AMS) == {
        "contactorId": 2,
        "daySchedule": [],
    }


def test_typed_payloads_give_the_same_answers() -> None:
    from os3p_core import structure_request

    wire = copy.deepcopy(SPEC_PROFILE)
    typed_store, wire_store = ProfileStore(), ProfileStore()
    assert (
        typed_store.set_streetlight_profile(structure_request("SetStreetlightProfile", wire)).status
        == "Accepted"
    )
    wire_store.set_streetlight_profile(wire)
    assert typed_store == wire_store
    get = {"contactorId": 1, "at": "2015-12-21T23:30:00-05:00"}
    typed_get = structure_request("GetEffectiveStreetlightDaySchedule", get)
    assert typed_store.get_effective_day_schedule(typed_get, AMS) == wire_store.get_effective_day_schedule(
        get, AMS
    )
    clear = structure_request("ClearSingleStreetlightProfile", {"profileId": 1})
    assert typed_store.clear_streetlight_profile(clear).status == "Accepted"
    assert typed_store.profiles(1) == ()


# ----------------------------------------------------------------------------------------------------------
# Points in time and periods
# ----------------------------------------------------------------------------------------------------------

DAY = dt.date(2025, 1, 15)  # a Wednesday in winter (CET, +01:00)


@pytest.mark.parametrize(
    ("periods", "expected"),
    [
        # Absolute at or after 12:00 → date D; before 12:00 → date D+1: crossing midnight.
        ([(A("23:00:00"), A("01:00:00"))], [["23:00:00", "01:00:00"]]),
        ([(A("06:00:00"), A("07:30:00"))], [["06:00:00", "07:30:00"]]),  # both before noon: D+1 morning
        ([(A("12:00:00"), A("11:59:59.999"))], [["12:00:00", "11:59:59.999"]]),  # almost the whole window
        ([(A("13:00:00"), A("12:30:00"))], []),  # end before start: "the light will not be switched on"
        ([(A("06:00:00"), A("23:00:00"))], []),  # 06:00 is D+1, 23:00 is D: end before start
        ([(A("20:00:00"), A("20:00:00"))], []),  # empty period
        ([(A("20:00:00.250"), A("21:00:00.000"))], [["20:00:00.250", "21:00:00"]]),  # ".fff" only if not zero
        # Overlapping or touching periods merge; the result is sorted by real time.
        (
            [(A("20:00:00"), A("22:00:00")), (A("18:00:00"), A("20:00:00")), (A("21:00:00"), A("23:00:00"))],
            [["18:00:00", "23:00:00"]],
        ),
        (
            [(A("06:00:00"), A("07:00:00")), (A("18:00:00"), A("19:00:00"))],
            [["18:00:00", "19:00:00"], ["06:00:00", "07:00:00"]],
        ),
        ([(A("00:00:00"), A("01:00:00")), (A("23:00:00"), A("00:00:00"))], [["23:00:00", "01:00:00"]]),
        # Clipped to the window: an end at the window end prints "12:00:00", a start at its start too.
        ([(SS(-86400), SR(86400))], [["12:00:00", "12:00:00"]]),
        # SEM "Nothing is lost at a window boundary" (revised): the previous day's 13:00 → Sunrise+1 day
        # covers this whole window, and the next day's Sunset−1 day (16:58:52 here) runs to its 14:00.
        ([(A("13:00:00"), SR(86400))], [["12:00:00", "12:00:00"]]),
        ([(SS(-86400), A("14:00:00"))], [["12:00:00", "14:00:00"], ["16:58:52", "12:00:00"]]),
    ],
)
def test_absolute_points_and_periods(
    periods: list[tuple[dict[str, Any], dict[str, Any]]], expected: list[list[str]]
) -> None:
    store = installed(profile(1, 1, *periods))
    assert schedule(store, DAY) == expected


def test_sun_offsets_are_elapsed_seconds_and_can_cross_an_absolute_end() -> None:
    winter, summer = dt.date(2025, 1, 15), dt.date(2025, 7, 15)
    sun_w = sun_times(AMS.latitude, AMS.longitude, winter, Z_AMS)
    # Sunset (≈16:50 in January) → 17:30: on; in July sunset ≈22:00 is after 17:30: the offset crosses the end
    # → off.
    store = installed(profile(1, 1, (SS(0), A("17:30:00"))))
    [[start, end]] = schedule(store, winter)
    assert start == sun_w.sunset.astimezone(Z_AMS).strftime("%H:%M:%S")
    assert end == "17:30:00"
    assert schedule(store, summer) == []
    # Negative offsets mean before; an offset can move a point past the window (clipped) or past another
    # point.
    store = installed(profile(1, 1, (SS(-1800), SR(1800))))
    [[start, end]] = schedule(store, winter)
    assert start == (sun_w.sunset - dt.timedelta(seconds=1800)).astimezone(Z_AMS).strftime("%H:%M:%S")
    assert end == (sun_w.sunrise + dt.timedelta(seconds=1800)).astimezone(Z_AMS).strftime("%H:%M:%S")
    # The worked example's morning period: 06:00 → Sunrise drops out when sunrise is before 06:00.
    store = installed(profile(1, 1, (A("06:00:00"), SR(0))))
    assert schedule(store, summer) == []
    assert schedule(store, winter)[0][0] == "06:00:00"


# ----------------------------------------------------------------------------------------------------------
# DST nights (Europe/Amsterdam): 2025-03-29 is 23 h long, 2025-10-25 is 25 h long
# ----------------------------------------------------------------------------------------------------------


def intervals(
    store: ProfileStore, day: dt.date, site: SiteLocation = AMS
) -> list[tuple[dt.datetime, dt.datetime]]:
    return [
        (s.astimezone(dt.UTC), e.astimezone(dt.UTC))
        for s, e in store.effective_day_schedule(1, day, site).periods
    ]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def test_spring_forward_day() -> None:
    day = dt.date(2025, 3, 29)  # 2025-03-30 02:00 CET → 03:00 CEST
    sched = ProfileStore().effective_day_schedule(1, day, AMS)
    assert sched.window_end - sched.window_start == 23 * 3_600_000
    # 02:30 does not exist: "uses the offset in force before the gap (02:30 → 03:30)".
    store = installed(profile(1, 1, (A("22:00:00"), A("02:30:00"))))
    assert schedule(store, day) == [["22:00:00", "03:30:00"]]
    assert intervals(store, day) == [(utc(2025, 3, 29, 21), utc(2025, 3, 30, 1, 30))]
    # 01:00 → 04:00 wall clock is two real hours that night.
    store = installed(profile(1, 1, (A("01:00:00"), A("04:00:00"))))
    assert intervals(store, day) == [(utc(2025, 3, 30, 0), utc(2025, 3, 30, 2))]
    # A whole-window period lasts 23 h.
    store = installed(profile(1, 1, (SS(-86400), SR(86400))))
    [(start, end)] = intervals(store, day)
    assert end - start == dt.timedelta(hours=23)
    assert schedule(store, day) == [["12:00:00", "12:00:00"]]


def test_fall_back_day() -> None:
    day = dt.date(2025, 10, 25)  # 2025-10-26 03:00 CEST → 02:00 CET
    sched = ProfileStore().effective_day_schedule(1, day, AMS)
    assert sched.window_end - sched.window_start == 25 * 3_600_000
    # 02:30 happens twice: "means its first occurrence" (CEST, 00:30 UTC).
    store = installed(profile(1, 1, (A("02:30:00"), A("05:00:00"))))
    assert intervals(store, day) == [(utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 4))]
    assert schedule(store, day) == [["02:30:00", "05:00:00"]]
    store = installed(profile(1, 1, (A("22:00:00"), A("02:30:00"))))
    assert intervals(store, day) == [(utc(2025, 10, 25, 20), utc(2025, 10, 26, 0, 30))]
    # Sun times that night are real instants (sunset ≈17:25 CEST, sunrise ≈07:40 CET).
    store = installed(profile(1, 1, (SS(0), SR(0))))
    [(start, end)] = intervals(store, day)
    sun = sun_times(AMS.latitude, AMS.longitude, day, Z_AMS)
    assert (start, end) == (sun.sunset, sun.sunrise)
    assert end - start > dt.timedelta(hours=14)


# ----------------------------------------------------------------------------------------------------------
# Which profile applies on day D
# ----------------------------------------------------------------------------------------------------------

NIGHT = (A("23:00:00"), A("06:00:00"))


def test_valid_to_is_inclusive_and_only_the_literal_date_counts() -> None:
    store = installed(
        profile(1, 1, NIGHT, valid_from="2025-01-10T23:00:00Z", valid_to="2025-01-12T23:59:59-10:00")
    )
    assert schedule(store, dt.date(2025, 1, 9)) == []
    assert schedule(store, dt.date(2025, 1, 10)) == [["23:00:00", "06:00:00"]]
    assert schedule(store, dt.date(2025, 1, 12)) == [["23:00:00", "06:00:00"]]
    assert schedule(store, dt.date(2025, 1, 13)) == []
    # The validTo day ends at 12:00 the next calendar day: its night runs into the morning of the 13th.
    state = store.switching_state(1, dt.datetime(2025, 1, 13, 5, 0, tzinfo=Z_AMS), AMS)
    assert state.on
    assert state.next_switch == dt.datetime(2025, 1, 13, 6, 0, tzinfo=Z_AMS)
    state = store.switching_state(1, dt.datetime(2025, 1, 13, 12, 0, tzinfo=Z_AMS), AMS)
    assert not state.on
    assert state.next_switch is None
    # validFrom's date: "active on the specified date, but only from noon 12:00": not on the morning of the
    # 10th.
    assert not store.switching_state(1, dt.datetime(2025, 1, 10, 5, 0, tzinfo=Z_AMS), AMS).on


def test_weekly_uses_the_weekday_of_valid_from() -> None:
    store = installed(profile(1, 1, NIGHT, kind="Weekly", valid_from="2025-01-08T18:00:00"))  # a Wednesday
    on_days = [
        d for d in (dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(28)) if schedule(store, d)
    ]
    assert on_days == [dt.date(2025, 1, 8), dt.date(2025, 1, 15), dt.date(2025, 1, 22)]
    # Day D's night belongs to Wednesday even though its morning is on Thursday.
    assert store.switching_state(1, dt.datetime(2025, 1, 16, 5, tzinfo=Z_AMS), AMS).on
    assert not store.switching_state(1, dt.datetime(2025, 1, 16, 23, 30, tzinfo=Z_AMS), AMS).on


def test_none_applies_on_exactly_one_day() -> None:
    store = installed(
        profile(1, 1, NIGHT, kind="None", valid_from="2025-01-08T00:00:00", valid_to="2025-12-31T00:00:00")
    )
    on_days = [
        d for d in (dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(28)) if schedule(store, d)
    ]
    assert on_days == [dt.date(2025, 1, 8)]


def test_daily_without_bounds_applies_always() -> None:
    store = installed(profile(1, 1, NIGHT))
    assert (
        schedule(store, dt.date(1999, 1, 1))
        == schedule(store, dt.date(2090, 6, 30))
        == [["23:00:00", "06:00:00"]]
    )


def test_stack_levels_whole_day_precedence() -> None:
    base = profile(1, 1, (A("18:00:00"), A("23:00:00")))
    special = profile(2, 5, (A("20:00:00"), A("21:00:00")), kind="None", valid_from="2025-01-15T00:00:00")
    store = installed(base, special)
    assert schedule(store, dt.date(2025, 1, 14)) == [["18:00:00", "23:00:00"]]
    assert schedule(store, dt.date(2025, 1, 15)) == [["20:00:00", "21:00:00"]]  # not merged with level 1
    # A winner whose periods all drop out still shadows the lower levels for the whole day.
    dark = profile(3, 9, (A("13:00:00"), A("12:30:00")), kind="None", valid_from="2025-01-16T00:00:00")
    assert store.set_streetlight_profile(request(1, dark)).status == "Accepted"
    assert schedule(store, dt.date(2025, 1, 16)) == []
    assert schedule(store, dt.date(2025, 1, 17)) == [["18:00:00", "23:00:00"]]
    assert store.effective_profile(1, dt.date(2025, 1, 16)).profile_id == 3  # type: ignore[union-attr]


def test_contactors_are_independent() -> None:
    store = ProfileStore()
    for c in (1, 2, 3, 4):
        assert store.set_streetlight_profile(
            request(c, profile(7, 1, (A(f"{14 + c}:00:00"), A("23:00:00"))))
        ).changed
    for c in (1, 2, 3, 4):
        assert schedule(store, DAY, contactor=c) == [[f"{14 + c}:00:00", "23:00:00"]]


# ----------------------------------------------------------------------------------------------------------
# Polar night, polar day, southern hemisphere, west of Greenwich
# ----------------------------------------------------------------------------------------------------------


def test_polar_night_and_day_in_tromso() -> None:
    store = installed(profile(1, 1, (SS(0), SR(0)), (A("06:00:00"), A("08:00:00"))))
    # Polar night: Sunset(D) = D 12:00, Sunrise(D) = D+1 12:00 — lights on all window, merged with 06–08.
    assert schedule(store, dt.date(2025, 12, 21), TROMSO) == [["12:00:00", "12:00:00"]]
    # Polar day: a night of zero length — only the absolute period remains.
    assert schedule(store, dt.date(2025, 6, 21), TROMSO) == [["06:00:00", "08:00:00"]]
    # Offsets around a zero-length night at solar midnight (≈00:44 CEST): a real period around it.
    store = installed(profile(1, 1, (SS(-3600), SR(3600))))
    [[start, end]] = schedule(store, dt.date(2025, 6, 21), TROMSO)
    midnight = sun_times(TROMSO.latitude, TROMSO.longitude, dt.date(2025, 6, 21), TROMSO.timezone).sunset
    assert start == (midnight - dt.timedelta(hours=1)).astimezone(TROMSO.timezone).strftime("%H:%M:%S")
    assert end == (midnight + dt.timedelta(hours=1)).astimezone(TROMSO.timezone).strftime("%H:%M:%S")


def test_polar_night_runs_continuously_across_days() -> None:
    store = installed(profile(1, 1, (SS(0), SR(0))))
    at = dt.datetime(2025, 12, 21, 12, 0, tzinfo=TROMSO.timezone)
    state = store.switching_state(1, at, TROMSO)
    assert state.on
    # No switch at the noon boundaries of the polar night: the next switch is the first sunrise (Jan 15,
    # 2026).
    first_rise = sun_times(TROMSO.latitude, TROMSO.longitude, dt.date(2026, 1, 14), TROMSO.timezone).sunrise
    assert state.next_switch == first_rise
    assert dt.date(2026, 1, 15) == first_rise.astimezone(TROMSO.timezone).date()
    # Polar day: off, and the next switch is the first real sunset after the midnight sun.
    state = store.switching_state(1, dt.datetime(2025, 6, 21, 12, tzinfo=TROMSO.timezone), TROMSO)
    assert not state.on
    assert state.next_switch is not None
    assert dt.date(2025, 7, 20) < state.next_switch.date() < dt.date(2025, 7, 30)


@pytest.mark.parametrize("site", [SYDNEY, NEW_YORK], ids=["southern hemisphere", "west of Greenwich"])
def test_other_hemispheres(site: SiteLocation) -> None:
    store = installed(profile(1, 1, (SS(0), A("23:00:00")), (A("05:00:00"), SR(0))))
    for day in (dt.date(2025, 1, 15), dt.date(2025, 7, 15), dt.date(2025, 12, 21)):
        sun = sun_times(site.latitude, site.longitude, day, site.timezone)
        sunset_text = sun.sunset.astimezone(site.timezone).strftime("%H:%M:%S")
        sunrise_text = sun.sunrise.astimezone(site.timezone).strftime("%H:%M:%S")
        expected = []
        if sunset_text < "23:00:00":
            expected.append([sunset_text, "23:00:00"])
        if sunrise_text > "05:00:00":
            expected.append(["05:00:00", sunrise_text])
        assert schedule(store, day, site) == expected
    # Southern summer in Sydney: sunset after 20:00 in December; northern summer in New York: after 20:00 in
    # July.
    summer = dt.date(2025, 12, 21) if site is SYDNEY else dt.date(2025, 7, 15)
    assert schedule(store, summer, site)[0][0] > "20:00:00"


# ----------------------------------------------------------------------------------------------------------
# Installing: every Rejected case leaves the store untouched
# ----------------------------------------------------------------------------------------------------------

GOOD = profile(1, 1, (A("18:00:00"), A("23:00:00")))


def with_point(point: dict[str, Any]) -> dict[str, Any]:
    return profile(1, 1, (point, A("23:00:00")))


REJECTED_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("stackLevel above max", request(1, profile(1, 17, NIGHT)), "StreetlightProfileMaxStackLevel"),
    ("5 periods", request(1, profile(1, 1, *[NIGHT] * 5)), "at most 4"),
    ("0 periods", request(1, profile(1, 1)), "1 to 4"),
    ("time 24:00:00", request(1, with_point(A("24:00:00"))), "malformed time"),
    ("time 7:00:00", request(1, with_point(A("7:00:00"))), "malformed time"),
    ("time 07:00", request(1, with_point(A("07:00"))), "malformed time"),
    ("time 07:00:60", request(1, with_point(A("07:00:60"))), "malformed time"),
    ("time with 1-digit ms", request(1, with_point(A("07:00:00.5"))), "malformed time"),
    ("time with 4-digit ms", request(1, with_point(A("07:00:00.5000"))), "malformed time"),
    ("time with offset suffix", request(1, with_point(A("07:00:00Z"))), "malformed time"),
    ("Absolute without time", request(1, with_point({"kind": "Absolute"})), "without a 'time'"),
    (
        "Absolute time not a string",
        request(1, with_point({"kind": "Absolute", "time": 7})),
        "without a 'time'",
    ),
    ("Sunset without offset", request(1, with_point({"kind": "Sunset"})), "without an integer 'offset'"),
    ("Sunrise without offset", request(1, with_point({"kind": "Sunrise", "time": "07:00:00"})), "offset"),
    ("offset out of range", request(1, with_point(SS(86401))), "outside"),
    ("offset not integer", request(1, with_point({"kind": "Sunset", "offset": 1.5})), "offset"),
    ("unknown kind", request(1, with_point({"kind": "Noon", "offset": 0})), "kind"),
    ("Weekly without validFrom", request(1, profile(1, 1, NIGHT, kind="Weekly")), "needs validFrom"),
    ("None without validFrom", request(1, profile(1, 1, NIGHT, kind="None")), "needs validFrom"),
    (
        "validTo before validFrom",
        request(1, profile(1, 1, NIGHT, valid_from="2025-02-02T00:00:00", valid_to="2025-02-01T23:00:00")),
        "before validFrom",
    ),
    ("malformed validFrom", request(1, profile(1, 1, NIGHT, valid_from="2025-02-30T00:00:00")), "malformed"),
    ("unknown recurrencyKind", request(1, profile(1, 1, NIGHT, kind="Monthly")), "recurrencyKind"),
    ("same stackLevel twice", request(1, profile(1, 3, NIGHT), profile(2, 3, NIGHT)), "share a stackLevel"),
    ("same profileId twice", request(1, profile(4, 1, NIGHT), profile(4, 2, NIGHT)), "share a profileId"),
    ("contactorId 0", request(0, GOOD), "contactorId"),
    ("contactorId 5", request(5, GOOD), "contactorId"),
    ("no profiles", request(1), "at least one"),
    ("stackLevel a boolean", request(1, profile(1, True, NIGHT)), "stackLevel"),
    ("negative profileId", request(1, profile(-1, 1, NIGHT)), "profileId"),
    ("clearAllSchedules not boolean", {**request(1, GOOD), "clearAllSchedules": "yes"}, "boolean"),
    # Atomic: one bad profile among good ones rejects the whole request, clearAllSchedules included.
    (
        "one bad among good",
        request(1, profile(8, 2, NIGHT), with_point(A("25:00:00")), clear=True),
        "malformed",
    ),
]


@pytest.mark.parametrize(("case", "req", "reason"), REJECTED_CASES, ids=[c[0] for c in REJECTED_CASES])
def test_rejected_cases_change_nothing(case: str, req: dict[str, Any], reason: str) -> None:
    store = installed(profile(50, 0, (A("19:00:00"), A("20:00:00"))), profile(51, 16, NIGHT))
    before = store.snapshot()
    result = store.set_streetlight_profile(req)
    assert result.status == "Rejected"
    assert not result.changed
    assert result.reason is not None
    assert reason in result.reason
    assert result.to_payload() == {"status": "Rejected"}
    assert store.snapshot() == before


def test_max_stack_level_comes_from_configuration() -> None:
    store = ProfileStore()
    assert (
        store.set_streetlight_profile(request(1, profile(1, 3, NIGHT)), max_stack_level=2).status
        == "Rejected"
    )
    assert (
        store.set_streetlight_profile(request(1, profile(1, 2, NIGHT)), max_stack_level=2).status
        == "Accepted"
    )
    assert (
        store.set_streetlight_profile(request(1, profile(2, 0, NIGHT)), max_stack_level=0).status
        == "Accepted"
    )


def test_fields_of_the_other_kind_are_ignored() -> None:
    store = installed(
        profile(
            1,
            1,
            (
                {"kind": "Absolute", "time": "18:00:00", "offset": 999},
                {"kind": "Sunrise", "offset": 0, "time": "x"},
            ),
        )
    )
    [[start, _end]] = schedule(store, DAY)
    assert start == "18:00:00"


# ----------------------------------------------------------------------------------------------------------
# Replacement, clearAllSchedules, ClearSingleStreetlightProfile
# ----------------------------------------------------------------------------------------------------------


def ids(store: ProfileStore, contactor: int = 1) -> list[tuple[int, int]]:
    return sorted((p.profile_id, p.stack_level) for p in store.profiles(contactor))


def test_replacement_by_stack_level_or_profile_id() -> None:
    store = installed(profile(1, 2, NIGHT), profile(5, 4, NIGHT), profile(3, 7, NIGHT))
    store.set_streetlight_profile(request(2, profile(3, 7, NIGHT)))  # another contactor: independent
    # Same profileId → replaces (even at another level).
    assert store.set_streetlight_profile(request(1, profile(1, 3, NIGHT))).status == "Accepted"
    assert ids(store) == [(1, 3), (3, 7), (5, 4)]
    # Same stackLevel → replaces (another profileId).
    store.set_streetlight_profile(request(1, profile(9, 3, NIGHT)))
    assert ids(store) == [(3, 7), (5, 4), (9, 3)]
    # Level of one installed profile and id of another: both are replaced by the one new profile.
    store.set_streetlight_profile(request(1, profile(3, 4, NIGHT)))
    assert ids(store) == [(3, 4), (9, 3)]
    assert ids(store, 2) == [(3, 7)]


def test_clear_all_schedules_is_atomic() -> None:
    store = installed(profile(1, 2, NIGHT), profile(2, 4, NIGHT))
    store.set_streetlight_profile(request(2, profile(1, 2, NIGHT)))
    assert store.set_streetlight_profile(request(1, profile(7, 1, NIGHT), clear=True)).changed
    assert ids(store) == [(7, 1)]
    assert ids(store, 2) == [(1, 2)]
    # The annex's `clearSchedule` spelling does the same.
    assert store.set_streetlight_profile({**request(1, profile(8, 2, NIGHT)), "clearSchedule": True}).changed
    assert ids(store) == [(8, 2)]
    # clearAllSchedules false keeps the others.
    store.set_streetlight_profile(request(1, profile(9, 3, NIGHT), clear=False))
    assert ids(store) == [(8, 2), (9, 3)]


def clear_store() -> ProfileStore:
    store = ProfileStore()
    store.set_streetlight_profile(request(1, profile(1, 1, NIGHT), profile(2, 2, NIGHT)))
    store.set_streetlight_profile(request(2, profile(1, 2, NIGHT), profile(3, 3, NIGHT)))
    store.set_streetlight_profile(request(3, profile(4, 1, NIGHT)))
    return store


def everything(store: ProfileStore) -> dict[int, list[tuple[int, int]]]:
    return {c: ids(store, c) for c in (1, 2, 3, 4)}


@pytest.mark.parametrize(
    ("req", "status", "left"),
    [
        ({"profileId": 2, "contactorId": 1, "stackLevel": 3}, "Rejected", None),  # the annex example: invalid
        ({"profileId": 1, "stackLevel": 1}, "Rejected", None),
        ({"profileId": 1}, "Accepted", {1: [(2, 2)], 2: [(3, 3)], 3: [(4, 1)], 4: []}),  # every contactor
        (
            {"profileId": 1, "contactorId": 2},
            "Accepted",
            {1: [(1, 1), (2, 2)], 2: [(3, 3)], 3: [(4, 1)], 4: []},
        ),
        ({"profileId": 4, "contactorId": 1}, "Unknown", None),  # exists, but not on that contactor
        ({"profileId": 99}, "Unknown", None),
        (
            {"contactorId": 2, "stackLevel": 2},
            "Accepted",
            {1: [(1, 1), (2, 2)], 2: [(3, 3)], 3: [(4, 1)], 4: []},
        ),
        ({"contactorId": 2, "stackLevel": 1}, "Unknown", None),
        ({"stackLevel": 1}, "Accepted", {1: [(2, 2)], 2: [(1, 2), (3, 3)], 3: [], 4: []}),  # all contactors
        ({"contactorId": 1}, "Accepted", {1: [], 2: [(1, 2), (3, 3)], 3: [(4, 1)], 4: []}),
        ({"contactorId": 4}, "Unknown", None),
        ({}, "Accepted", {1: [], 2: [], 3: [], 4: []}),
        ({"contactorId": 7}, "Rejected", None),
    ],
)
def test_clear_single_streetlight_profile(
    req: dict[str, Any], status: str, left: dict[int, list[tuple[int, int]]] | None
) -> None:
    store = clear_store()
    before = everything(store)
    result = store.clear_streetlight_profile(req)
    assert result.status == status
    assert result.to_payload() == {"status": status}
    assert result.changed is (status == "Accepted")
    assert everything(store) == (left if left is not None else before)


def test_clear_everything_on_an_empty_store_is_unknown() -> None:
    assert ProfileStore().clear_streetlight_profile({}).status == "Unknown"


# ----------------------------------------------------------------------------------------------------------
# Durable: snapshot and restore
# ----------------------------------------------------------------------------------------------------------


def test_snapshot_round_trips_through_json() -> None:
    store = clear_store()
    store.set_streetlight_profile(SPEC_PROFILE)
    store.set_streetlight_profile(
        request(
            4,
            profile(
                5, 6, (A("21:00:00.125"), SR(-60)), kind="Weekly", valid_from="2025-01-08T00:00:00+05:00"
            ),
        )
    )
    data = json.loads(json.dumps(store.snapshot()))
    restored = ProfileStore.restore(data)
    assert restored == store
    for c in (1, 2, 3, 4):
        for day in (dt.date(2015, 12, 21), dt.date(2025, 1, 8), dt.date(2025, 3, 29)):
            assert restored.effective_day_schedule(c, day, AMS) == store.effective_day_schedule(c, day, AMS)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"format": "something else", "contactors": {}},
        {"format": "os3p-streetlight-profiles/1"},
        {"format": "os3p-streetlight-profiles/1", "contactors": {"9": []}},
        {"format": "os3p-streetlight-profiles/1", "contactors": {"x": []}},
        {"format": "os3p-streetlight-profiles/1", "contactors": {"1": [{"profileId": 1}]}},
        {
            "format": "os3p-streetlight-profiles/1",
            "contactors": {"1": [profile(1, 1, NIGHT), profile(1, 2, NIGHT)]},
        },
    ],
)
def test_restore_rejects_corrupt_snapshots(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="snapshot"):
        ProfileStore.restore(data)


# ----------------------------------------------------------------------------------------------------------
# Switching timeline
# ----------------------------------------------------------------------------------------------------------


def test_switching_timeline_follows_the_worked_example() -> None:
    store = ProfileStore()
    store.set_streetlight_profile(SPEC_PROFILE)
    at = dt.datetime(2015, 12, 21, 15, 0, tzinfo=Z_AMS)
    seen = []
    for _ in range(6):
        state = store.switching_state(1, at, AMS)
        assert state.next_switch is not None
        seen.append((state.on, state.next_switch.astimezone(Z_AMS).strftime("%d %H:%M:%S")))
        # Exactly at the switch instant, the new state holds.
        assert store.switching_state(1, state.next_switch, AMS).on is not state.on
        at = state.next_switch
    sun21 = sun_times(AMS.latitude, AMS.longitude, dt.date(2015, 12, 21), Z_AMS)
    sun22 = sun_times(AMS.latitude, AMS.longitude, dt.date(2015, 12, 22), Z_AMS)
    fmt = "%d %H:%M:%S"
    assert seen == [
        (False, (sun21.sunset + dt.timedelta(hours=1)).astimezone(Z_AMS).strftime(fmt)),
        (True, "22 01:00:00"),
        (False, "22 06:00:00"),
        (True, sun21.sunrise.astimezone(Z_AMS).strftime(fmt)),
        (False, (sun22.sunset + dt.timedelta(hours=1)).astimezone(Z_AMS).strftime(fmt)),
        (True, "23 01:00:00"),
    ]


def test_switching_across_dst_nights() -> None:
    store = installed(profile(1, 1, (A("22:00:00"), A("02:30:00"))))
    spring = store.switching_state(1, utc(2025, 3, 29, 22), AMS)  # 23:00 CET
    assert spring.on
    assert spring.next_switch == utc(2025, 3, 30, 1, 30)  # 03:30 CEST
    autumn = store.switching_state(1, utc(2025, 10, 26, 0, 29), AMS)  # 02:29 CEST, first pass
    assert autumn.on
    assert autumn.next_switch == utc(2025, 10, 26, 0, 30)  # the first 02:30
    after = store.switching_state(1, utc(2025, 10, 26, 1, 0), AMS)  # 02:00 CET, the second pass
    assert not after.on
    assert after.next_switch == utc(2025, 10, 26, 21, 0)  # 22:00 CET


def test_switching_jumps_to_a_far_valid_from_and_stops_at_the_horizon() -> None:
    store = installed(profile(1, 1, NIGHT, valid_from="2030-05-05T00:00:00"))
    state = store.switching_state(1, utc(2025, 1, 1), AMS, horizon_days=5000)
    assert not state.on
    assert state.next_switch == dt.datetime(2030, 5, 5, 23, tzinfo=Z_AMS)
    # A profile whose only period never switches on: no switch within the horizon.
    store = installed(profile(1, 1, (A("13:00:00"), A("12:30:00"))))
    state = store.switching_state(1, utc(2025, 1, 1), AMS, horizon_days=30)
    assert not state.on
    assert state.next_switch is None
    assert dt.date(2025, 1, 31) <= state.checked_until.date() <= dt.date(2025, 2, 1)
    # No profiles at all.
    assert ProfileStore().switching_state(2, utc(2025, 1, 1), AMS).next_switch is None


def test_always_on_profile_has_no_switch() -> None:
    store = installed(profile(1, 1, (SS(-86400), SR(86400))))
    state = store.switching_state(1, utc(2025, 3, 29, 13), AMS, horizon_days=10)
    assert state.on
    assert state.next_switch is None


def test_os3p_day_of() -> None:
    assert os3p_day_of(dt.datetime(2025, 3, 30, 11, 59, 59, tzinfo=Z_AMS), AMS.timezone) == dt.date(
        2025, 3, 29
    )
    assert os3p_day_of(dt.datetime(2025, 3, 30, 12, 0, tzinfo=Z_AMS), "Europe/Amsterdam") == dt.date(
        2025, 3, 30
    )
    with pytest.raises(ValueError, match="aware"):
        ProfileStore().switching_state(1, dt.datetime(2025, 1, 1), AMS)
    with pytest.raises(ValueError, match="contactor"):
        ProfileStore().profiles(5)


def test_nome_worked_example_lights_the_real_night() -> None:
    # SEM worked example (revised rules): Nome, Alaska, Daily [Sunset+0 → Sunrise+0], day 2025-12-21.  Dark at
    # 12:00 with sunrise at 12:03: the old "first sunset after 12:00" rule lit 3 minutes and left the ~20 h
    # night dark.  Now: the previous night's tail until 12:02:49, and this night from 15:57:15 to 12:00
    # (continuing in the next day's schedule until 12:03:12) — ephemeris values; ±60 s is correct.
    nome = SiteLocation(64.5011, -165.4064, "America/Nome")
    store = installed(profile(1, 1, (SS(0), SR(0))))
    payload = store.get_effective_day_schedule({"contactorId": 1, "at": "2025-12-21T00:00:00"}, nome)
    (tail_start, tail_end), (night_start, night_end) = (
        (p["start"], p["end"]) for p in payload["daySchedule"]
    )
    assert (tail_start, night_end) == ("12:00:00", "12:00:00")

    def seconds(text: str) -> int:
        h, m, s = map(int, text.split(":"))
        return h * 3600 + m * 60 + s

    assert abs(seconds(tail_end) - seconds("12:02:49")) <= 60
    assert abs(seconds(night_start) - seconds("15:57:15")) <= 60
    # The switching timeline follows: on through noon of the 22nd until the sunrise at ≈12:03:12.
    at = dt.datetime(2025, 12, 21, 16, 30, tzinfo=ZoneInfo("America/Nome"))
    state = store.switching_state(1, at, nome)
    assert state.on
    assert state.next_switch is not None
    local_end = state.next_switch.astimezone(ZoneInfo("America/Nome"))
    assert local_end.date() == dt.date(2025, 12, 22)
    assert abs(seconds(local_end.strftime("%H:%M:%S")) - seconds("12:03:12")) <= 60
