"""Property tests: the effective schedule and the switching timeline agree with a brute-force oracle.

The oracle below is written from STREETLIGHT-SEMANTICS (revised: the union of the periods of days D−1, D
and D+1 in D's window) alone and shares no code with
``os3p_core._streetlight``: it answers "is the light on at instant t?" by finding the OS³P day that contains
t, the winning profile of that day (from the wire dicts), and each period's instants with plain ``datetime``
arithmetic.  The one thing it shares is the sun: Sunset(D) / Sunrise(D) come from ``os3p_core.sun_times``,
an input to the schedule engine that ``test_sun.py`` checks on its own (published tables, astral's solver, an
independent Almanac sun model); a second sun model here could not agree to the millisecond anyway.

We evaluate it minute by minute over each day (at a random second within the minute), at every boundary the
store reports ± 1 ms, and at every instant where the oracle itself can change (its own period points ± 1 ms),
so the comparison is exact over the whole window, periods shorter than a minute included.  The switching
timeline is checked the same way up to its next switch, and walked switch by switch over sparse stacks (days
without any profile in between).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from os3p_core import ProfileStore, SiteLocation, sun_times

SITES = [
    SiteLocation(52.37, 4.90, "Europe/Amsterdam"),
    SiteLocation(69.6492, 18.9553, "Europe/Oslo"),  # Tromsø: polar night and day
    SiteLocation(-33.87, 151.21, "Australia/Sydney"),  # southern hemisphere, DST in December
    SiteLocation(40.71, -74.01, "America/New_York"),  # west of Greenwich
    SiteLocation(64.15, -21.94, "Atlantic/Reykjavik"),  # zone an hour east of its meridian
]
# Days near DST changes and polar transitions are over-represented on purpose.
SPECIAL_DAYS = [
    dt.date(2025, 3, 29),
    dt.date(2025, 3, 30),
    dt.date(2025, 10, 25),
    dt.date(2025, 10, 26),
    dt.date(2025, 4, 5),  # Sydney: DST ends 2025-04-06
    dt.date(2025, 10, 4),  # Sydney: DST starts 2025-10-05
    dt.date(2025, 3, 8),  # New York: DST starts 2025-03-09
    dt.date(2025, 11, 1),  # New York: DST ends 2025-11-02
    dt.date(2025, 11, 26),
    dt.date(2026, 1, 14),
    dt.date(2025, 5, 17),
    dt.date(2025, 7, 25),
]
START = dt.date(2025, 1, 1)


# ----------------------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------------------


def literal_date(text: str | None) -> dt.date | None:
    return None if text is None else dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10]))


def applies(p: dict[str, Any], day: dt.date) -> bool:
    lo, hi = literal_date(p.get("validFrom")), literal_date(p.get("validTo"))
    if (lo is not None and day < lo) or (hi is not None and day > hi):
        return False
    if p["recurrencyKind"] == "Daily":
        return True
    assert lo is not None
    if p["recurrencyKind"] == "Weekly":
        return day.isoweekday() == lo.isoweekday()
    return day == lo


def noon(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone)


def oracle_day(t: dt.datetime, zone: ZoneInfo) -> dt.date:
    for back in range(3):
        day = t.astimezone(zone).date() - dt.timedelta(days=back)
        if noon(day, zone) <= t < noon(day + dt.timedelta(days=1), zone):
            return day
    raise AssertionError("no day contains t")


def point_instant(point: dict[str, Any], day: dt.date, site: SiteLocation) -> dt.datetime:
    zone = site.timezone
    if point["kind"] == "Absolute":
        m = re.fullmatch(r"(\d\d):(\d\d):(\d\d)(?:\.(\d\d\d))?", point["time"])
        assert m is not None
        h, mi, s, ms = int(m[1]), int(m[2]), int(m[3]), int(m[4] or 0)
        date = day if h >= 12 else day + dt.timedelta(days=1)
        # datetime with tzinfo and fold=0: the semantics file's rule for gaps and repeats.
        wall = dt.datetime(date.year, date.month, date.day, h, mi, s, ms * 1000, tzinfo=zone)
        return wall.astimezone(dt.UTC)
    sun = sun_times(site.latitude, site.longitude, day, zone)
    event = sun.sunset if point["kind"] == "Sunset" else sun.sunrise
    return event + dt.timedelta(seconds=point["offset"])


def winner_of(profiles: list[dict[str, Any]], day: dt.date) -> dict[str, Any] | None:
    candidates = [p for p in profiles if applies(p, day)]
    return max(candidates, key=lambda p: p["stackLevel"]) if candidates else None


def oracle_on(profiles: list[dict[str, Any]], t: dt.datetime, site: SiteLocation) -> bool:
    """SEM "Nothing is lost at a window boundary": on when a period of the window's day, or of the day before
    or after it (each from its own day's winner, computed from its own day's events), covers t."""
    zone = site.timezone
    assert isinstance(zone, ZoneInfo)
    day = oracle_day(t, zone)
    for d in (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)):
        winner = winner_of(profiles, d)
        if winner is None:
            continue
        for period in winner["daySchedule"]:
            if point_instant(period["start"], d, site) <= t < point_instant(period["end"], d, site):
                return True
    return False


def oracle_breakpoints(profiles: list[dict[str, Any]], day: dt.date, site: SiteLocation) -> list[dt.datetime]:
    """Every instant of day D's window at which :func:`oracle_on` can change its answer.

    Inside one window the answer depends on the periods of D−1, D and D+1 only, so it is constant between
    the window start and their start and end points; evaluating it there and 1 ms before each point checks
    the whole window exactly, not just at the minute samples.  All profiles' points of the three days are
    listed (a superset of the winners'), computed with the oracle's own :func:`point_instant`.
    """
    zone = site.timezone
    assert isinstance(zone, ZoneInfo)
    w0, w1 = noon(day, zone), noon(day + dt.timedelta(days=1), zone)
    out = {w0}
    for d in (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)):
        for p in profiles:
            for period in p["daySchedule"]:
                for point in (period["start"], period["end"]):
                    t = point_instant(point, d, site)
                    if w0 <= t < w1:
                        out.add(t)
    return sorted(out)


# ----------------------------------------------------------------------------------------------------------
# Random profile stacks
# ----------------------------------------------------------------------------------------------------------

times = st.builds(
    lambda h, m, s, ms: f"{h:02d}:{m:02d}:{s:02d}" + (f".{ms:03d}" if ms else ""),
    st.integers(0, 23),
    st.sampled_from([0, 0, 15, 30, 59]),
    st.sampled_from([0, 0, 0, 30, 59]),
    st.sampled_from([0, 0, 0, 500]),
)
points = st.one_of(
    st.builds(lambda t: {"kind": "Absolute", "time": t}, times),
    st.builds(
        lambda k, o: {"kind": k, "offset": o},
        st.sampled_from(["Sunset", "Sunrise"]),
        st.one_of(st.sampled_from([0, 3600, -3600, 86400, -86400]), st.integers(-86400, 86400)),
    ),
)
periods = st.lists(st.builds(lambda s, e: {"start": s, "end": e}, points, points), min_size=1, max_size=4)


@st.composite
def profile_stacks(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 4))
    levels = draw(st.lists(st.integers(0, 16), min_size=count, max_size=count, unique=True))
    out = []
    for i, level in enumerate(levels):
        kind = draw(st.sampled_from(["Daily", "Daily", "Weekly", "None"]))
        p: dict[str, Any] = {"profileId": i, "stackLevel": level, "recurrencyKind": kind}
        start = draw(st.one_of(st.none(), st.dates(dt.date(2024, 12, 1), dt.date(2026, 2, 1))))
        if start is None and kind != "Daily":
            start = draw(st.dates(dt.date(2024, 12, 1), dt.date(2026, 2, 1)))
        if start is not None:
            # Time and offset of validFrom must not matter: only the literal date counts.
            p["validFrom"] = f"{start}T{draw(st.sampled_from(['00:00:00', '23:59:59Z', '13:00:00-09:00']))}"
            if draw(st.booleans()):
                p["validTo"] = f"{start + dt.timedelta(days=draw(st.integers(0, 60)))}T05:00:00+14:00"
        p["daySchedule"] = draw(periods)
        out.append(p)
    return out


days = st.one_of(st.sampled_from(SPECIAL_DAYS), st.dates(dt.date(2024, 12, 1), dt.date(2026, 3, 1)))


def install(profiles: list[dict[str, Any]]) -> ProfileStore:
    store = ProfileStore()
    result = store.set_streetlight_profile({"contactorId": 3, "streetlightProfiles": profiles})
    assert result.status == "Accepted", result.reason
    return store


# ----------------------------------------------------------------------------------------------------------
# The properties
# ----------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles=profile_stacks(), site=st.sampled_from(SITES), day=days, second=st.integers(0, 59))
def test_effective_schedule_matches_oracle(
    profiles: list[dict[str, Any]], site: SiteLocation, day: dt.date, second: int
) -> None:
    store = install(profiles)
    sched = store.effective_day_schedule(3, day, site)
    zone = site.timezone
    assert isinstance(zone, ZoneInfo)
    w0, w1 = noon(day, zone), noon(day + dt.timedelta(days=1), zone)
    assert (sched.window_start, sched.window_end) == (int(w0.timestamp() * 1000), int(w1.timestamp() * 1000))
    # Sorted, disjoint, non-touching, non-empty, inside the window.
    flat = [x for iv in sched.intervals for x in iv]
    assert flat == sorted(flat)
    assert all(s < e for s, e in sched.intervals)
    assert all(a[1] < b[0] for a, b in zip(sched.intervals, sched.intervals[1:], strict=False))
    assert all(sched.window_start <= s and e <= sched.window_end for s, e in sched.intervals)
    # Minute by minute, at a random second, plus every boundary and 1 ms before it.
    samples = []
    t = w0 + dt.timedelta(seconds=second)
    while t < w1:
        samples.append(t)
        t += dt.timedelta(minutes=1)
    one_ms = dt.timedelta(milliseconds=1)
    for start, end in sched.periods:
        samples += [x for x in (start - one_ms, start, end - one_ms, end) if w0 <= x < w1]
    # And every instant where the oracle itself can change (periods shorter than a minute included).
    for x in oracle_breakpoints(profiles, day, site):
        samples += [y for y in (x - one_ms, x) if w0 <= y < w1]
    for t in samples:
        assert sched.is_on(t) == oracle_on(profiles, t, site), t
    # The wire payload is the same intervals, printed as local time.
    payload = store.get_effective_day_schedule({"contactorId": 3, "at": f"{day}T00:00:00"}, site)
    printed = [[p["start"], p["end"]] for p in payload["daySchedule"]]

    def text(x: dt.datetime) -> str:
        local = x.astimezone(zone)
        ms = local.microsecond // 1000
        return local.strftime("%H:%M:%S") + (f".{ms:03d}" if ms else "")

    assert printed == [[text(s), text(e)] for s, e in sched.periods]


def check_state(profiles: list[dict[str, Any]], site: SiteLocation, at: dt.datetime, state: Any) -> None:
    """``state`` (from ``switching_state(at)``) agrees with the oracle from ``at`` up to its next switch."""
    zone = site.timezone
    assert isinstance(zone, ZoneInfo)
    assert state.on == oracle_on(profiles, at, site)
    horizon_end = state.next_switch if state.next_switch is not None else state.checked_until
    # Constant from `at` up to the switch: brute force minute by minute over the first day ...
    t = at
    while t < min(horizon_end, at + dt.timedelta(days=1)):
        assert oracle_on(profiles, t, site) == state.on, t
        t += dt.timedelta(minutes=1)
    # ... and exactly over the whole stretch: at every instant where the oracle could change, day by day up
    # to the switch (or the horizon), so no short period on a far day slips between samples.
    one_ms = dt.timedelta(milliseconds=1)
    d, last = oracle_day(at, zone), oracle_day(horizon_end - one_ms, zone)
    while d <= last:
        for x in oracle_breakpoints(profiles, d, site):
            if at < x < horizon_end:
                assert oracle_on(profiles, x, site) == state.on, x
        d += dt.timedelta(days=1)
    if state.next_switch is not None:
        assert state.next_switch > at
        assert oracle_on(profiles, state.next_switch - one_ms, site) == state.on
        assert oracle_on(profiles, state.next_switch, site) != state.on


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profiles=profile_stacks(),
    site=st.sampled_from(SITES),
    day=days,
    minute=st.integers(0, 25 * 60),
    ms=st.integers(0, 59_999),
)
def test_switching_timeline_matches_oracle(
    profiles: list[dict[str, Any]], site: SiteLocation, day: dt.date, minute: int, ms: int
) -> None:
    store = install(profiles)
    zone = site.timezone
    assert isinstance(zone, ZoneInfo)
    at = noon(day, zone) + dt.timedelta(minutes=minute, milliseconds=ms)
    state = store.switching_state(3, at, site, horizon_days=60)
    check_state(profiles, site, at, state)
    if state.next_switch is not None:
        # Walking the timeline: the next state is the flipped one.
        assert store.switching_state(3, state.next_switch, site, horizon_days=60).on != state.on


@st.composite
def sparse_stacks(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Stacks whose profiles apply on few days (Weekly, None, short Daily ranges), all starting in the two
    months after 2025-01-01: the timeline has days without any profile and must jump over them."""
    count = draw(st.integers(1, 4))
    levels = draw(st.lists(st.integers(0, 16), min_size=count, max_size=count, unique=True))
    out = []
    for i, level in enumerate(levels):
        kind = draw(st.sampled_from(["Daily", "Weekly", "Weekly", "None", "None"]))
        start = START + dt.timedelta(days=draw(st.integers(0, 60)))
        p: dict[str, Any] = {"profileId": i, "stackLevel": level, "recurrencyKind": kind}
        p["validFrom"] = f"{start}T00:00:00"
        if kind != "None" and draw(st.booleans()):
            p["validTo"] = f"{start + dt.timedelta(days=draw(st.integers(0, 30)))}T00:00:00"
        elif kind == "Daily":
            p["validTo"] = f"{start + dt.timedelta(days=draw(st.integers(0, 3)))}T00:00:00"
        p["daySchedule"] = draw(periods)
        out.append(p)
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles=sparse_stacks(), site=st.sampled_from(SITES), minute=st.integers(0, 24 * 60))
def test_walking_a_sparse_timeline_matches_oracle(
    profiles: list[dict[str, Any]], site: SiteLocation, minute: int
) -> None:
    """Follow next_switch from before the first profile for up to 8 switches: every state and every jump over
    days without a profile agrees with the oracle."""
    store = install(profiles)
    zone = site.timezone
    assert isinstance(zone, ZoneInfo)
    at = noon(START - dt.timedelta(days=3), zone) + dt.timedelta(minutes=minute)
    for _ in range(8):
        state = store.switching_state(3, at, site, horizon_days=120)
        check_state(profiles, site, at, state)
        if state.next_switch is None:
            break
        at = state.next_switch


# ----------------------------------------------------------------------------------------------------------
# Issue 19's properties of the revised rules
# ----------------------------------------------------------------------------------------------------------

WORLD = [
    *SITES,
    SiteLocation(64.5011, -165.4064, "America/Nome"),  # clock noon before sunrise in December
    SiteLocation(71.2906, -156.7886, "America/Anchorage"),  # polar night, far west of the meridian
    SiteLocation(-77.846, 166.676, "Antarctica/McMurdo"),  # southern polar night and day
    SiteLocation(27.7172, 85.324, "Asia/Kathmandu"),  # +5:45
]
world_days = st.one_of(
    st.sampled_from([*SPECIAL_DAYS, dt.date(2025, 12, 21), dt.date(2025, 6, 21)]),
    st.dates(dt.date(2024, 12, 1), dt.date(2026, 3, 1)),
)


def lit_ms(store: ProfileStore, day: dt.date, site: SiteLocation) -> int:
    return sum(e - s for s, e in store.effective_day_schedule(3, day, site).intervals)


@settings(max_examples=60, deadline=None)
@given(
    site=st.sampled_from(WORLD),
    day=world_days,
    kind=st.sampled_from(["Sunset", "Sunrise"]),
    o1=st.integers(-7200, 7200),
    o2=st.integers(-7200, 7200),
    delta=st.integers(-3600, 3600),
    look=st.integers(-1, 1),
)
def test_lit_time_is_continuous_in_the_sun_events(
    site: SiteLocation, day: dt.date, kind: str, o1: int, o2: int, delta: int, look: int
) -> None:
    """Moving one sun event by δ seconds (here: through its offset) changes the lit duration of any day's
    schedule (the day itself or a neighbour, which sees its periods through the union rule) by at most |δ|."""

    def store_with(shift: int) -> ProfileStore:
        start = {"kind": "Sunset", "offset": o1 + (shift if kind == "Sunset" else 0)}
        end = {"kind": "Sunrise", "offset": o2 + (shift if kind == "Sunrise" else 0)}
        return install([{"profileId": 1, "stackLevel": 0, "recurrencyKind": "Daily",
                         "daySchedule": [{"start": start, "end": end}]}])

    seen = day + dt.timedelta(days=look)
    before, after = lit_ms(store_with(0), seen, site), lit_ms(store_with(delta), seen, site)
    # Every day's events move together here (one profile, Daily), and a day's window sees the periods of
    # at most three days (D−1, D, D+1): at most |δ| per day's period.
    assert abs(after - before) <= 3 * abs(delta) * 1000


@settings(max_examples=60, deadline=None)
@given(site=st.sampled_from(WORLD), day=world_days)
def test_no_gap_at_noon_while_dark_and_covered(site: SiteLocation, day: dt.date) -> None:
    """Daily [Sunset → Sunrise]: when D 12:00 lies in a night (of D−1 or D), the light is on on both sides
    of the boundary and the switching timeline does not switch there."""
    store = install([{"profileId": 1, "stackLevel": 0, "recurrencyKind": "Daily",
                      "daySchedule": [{"start": {"kind": "Sunset", "offset": 0},
                                       "end": {"kind": "Sunrise", "offset": 0}}]}])
    zone = site.timezone
    assert isinstance(zone, ZoneInfo)
    boundary = noon(day, zone)
    nights = [sun_times(site.latitude, site.longitude, d, zone) for d in (day - dt.timedelta(days=1), day)]
    covered = any(n.sunset < boundary < n.sunrise for n in nights)
    one_ms = dt.timedelta(milliseconds=1)
    before = store.effective_day_schedule(3, day - dt.timedelta(days=1), site).is_on(boundary - one_ms)
    after = store.effective_day_schedule(3, day, site).is_on(boundary)
    if covered:
        assert before
        assert after
        state = store.switching_state(3, boundary - dt.timedelta(seconds=1), site, horizon_days=5)
        assert state.on
        assert state.next_switch != boundary
    # The union rule never lights an instant that no day's period covers.
    if after:
        nights.append(sun_times(site.latitude, site.longitude, day + dt.timedelta(days=1), zone))
        assert any(n.sunset <= boundary < n.sunrise for n in nights)
