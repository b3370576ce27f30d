"""Benchmark: effective streetlight day schedules (os3p_core.ProfileStore) and sun times.

Measures, on one core (single process, single thread):

1. effective day schedules per second — one contactor, a stack of 3 profiles with sun-relative points
   (the GetEffectiveStreetlightDaySchedule response payload built each time):
   * "cold": every schedule is for a new (location, day), so Sunset/Sunrise are computed, not cached;
   * "warm": the same days again (sun times cached, as a station evaluating today/tomorrow sees them);
2. switching_state() calls per second (what a station or the simulator calls at every switch);
3. a whole year for N stations (each at its own location in the Netherlands, same 3-profile stack, one
   contactor): 365 × N effective day schedules, all cold.  By default a sample of stations is measured and the
   time for 10,000 stations extrapolated linearly (each station-day is independent work); ``--full`` runs all
   10,000.

Usage::

    python benchmarks/schedule_bench.py            # default sample (200 stations for the year figure)
    python benchmarks/schedule_bench.py --quick    # a few seconds, smaller samples
    python benchmarks/schedule_bench.py --full     # the whole 10,000-station year, measured (~7 minutes)
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import statistics
import time
from typing import Any

from os3p_core import ProfileStore, SiteLocation, _sun

GOAL_PER_SECOND = 5000


def stack() -> dict[str, Any]:
    """Three profiles with sun-relative points: base every day, a weekly variant, a one-off override."""

    def period(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
        return {"start": start, "end": end}

    sunset = {"kind": "Sunset", "offset": 0}
    sunrise = {"kind": "Sunrise", "offset": 0}
    return {
        "contactorId": 1,
        "clearAllSchedules": True,
        "streetlightProfiles": [
            {
                "profileId": 1,
                "stackLevel": 1,
                "recurrencyKind": "Daily",
                "daySchedule": [
                    period({"kind": "Sunset", "offset": 900}, {"kind": "Absolute", "time": "00:30:00"}),
                    period({"kind": "Absolute", "time": "06:00:00"}, {"kind": "Sunrise", "offset": -900}),
                ],
            },
            {
                "profileId": 2,
                "stackLevel": 2,
                "recurrencyKind": "Weekly",
                "validFrom": "2000-01-01T00:00:00",  # Saturdays
                "daySchedule": [
                    period(sunset, {"kind": "Absolute", "time": "02:00:00"}),
                    period({"kind": "Absolute", "time": "06:30:00"}, sunrise),
                ],
            },
            {
                "profileId": 3,
                "stackLevel": 3,
                "recurrencyKind": "Daily",
                "validFrom": "2000-12-24T00:00:00",
                "validTo": "2000-12-31T00:00:00",
                "daySchedule": [
                    period({"kind": "Sunset", "offset": -1800}, {"kind": "Sunrise", "offset": 1800})
                ],
            },
        ],
    }


def make_store() -> ProfileStore:
    store = ProfileStore()
    result = store.set_streetlight_profile(stack())
    assert result.status == "Accepted", result.reason
    return store


def bench_schedules(n: int, site: SiteLocation) -> tuple[float, float]:
    store = make_store()
    start_day = dt.date(2000, 1, 1)
    days = [start_day + dt.timedelta(days=i) for i in range(n)]
    t0 = time.perf_counter()
    for day in days:
        store.effective_day_schedule(1, day, site).to_payload()
    cold = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for day in days:
        store.effective_day_schedule(1, day, site).to_payload()
    warm = n / (time.perf_counter() - t0)
    return cold, warm


def bench_switching(n: int, site: SiteLocation) -> float:
    store = make_store()
    at = dt.datetime(2001, 1, 1, 12, tzinfo=dt.UTC)
    t0 = time.perf_counter()
    for _ in range(n):
        state = store.switching_state(1, at, site)
        assert state.next_switch is not None
        at = state.next_switch
    return n / (time.perf_counter() - t0)


def bench_year(stations: int, seed: int = 7) -> float:
    """Seconds to compute 365 effective day schedules for each of ``stations`` stations (all cold)."""
    rng = random.Random(seed)
    store = make_store()
    sites = [
        SiteLocation(rng.uniform(50.75, 53.55), rng.uniform(3.35, 7.22), "Europe/Amsterdam")
        for _ in range(stations)
    ]
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    t0 = time.perf_counter()
    for site in sites:
        for day in days:
            store.effective_day_schedule(1, day, site).to_payload()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small samples, a few seconds")
    mode.add_argument("--full", action="store_true", help="run the whole 10,000-station year")
    parser.add_argument(
        "--repeat",
        type=int,
        help="repetitions of each measurement, median reported (default 3; 1 with --full, ~7 minutes each)",
    )
    args = parser.parse_args()
    repeat = args.repeat if args.repeat is not None else (1 if args.full else 3)

    n_sched = 3000 if args.quick else 20000
    n_switch = 2000 if args.quick else 10000
    n_stations = 10_000 if args.full else (20 if args.quick else 200)
    ams = SiteLocation(52.37, 4.90, "Europe/Amsterdam")

    print(
        f"python {platform.python_version()} on {platform.machine()},",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
    )
    colds, warms, switches, years = [], [], [], []
    for _ in range(repeat):
        # A fresh sun cache for every repetition, so "cold" stays cold (a private hook, benchmark only).
        _sun._night_cached.cache_clear()
        _sun._night_parts.cache_clear()
        cold, warm = bench_schedules(n_sched, ams)
        colds.append(cold)
        warms.append(warm)
        switches.append(bench_switching(n_switch, ams))
        _sun._night_cached.cache_clear()
        _sun._night_parts.cache_clear()
        years.append(bench_year(n_stations))
    cold, warm = statistics.median(colds), statistics.median(warms)
    print(f"effective day schedules/s, 3-profile sun-relative stack, cold sun cache: {cold:,.0f}")
    print(f"effective day schedules/s, same, warm sun cache:                     {warm:,.0f}")
    print(f"goal >= {GOAL_PER_SECOND:,}/s: {'met' if cold >= GOAL_PER_SECOND else 'NOT met'} (cold)")
    print(
        "switching_state calls/s (walking the timeline):                       ",
        f"{statistics.median(switches):,.0f}",
    )
    year = statistics.median(years)
    per_station = year / n_stations
    print(
        f"whole year, {n_stations} stations x 365 days measured: {year:.2f} s "
        f"({n_stations * 365 / year:,.0f} schedules/s)"
    )
    if n_stations != 10_000:
        print(
            "whole year for 10,000 stations, extrapolated linearly from that sample:",
            f"{per_station * 10_000:.0f} s",
        )


if __name__ == "__main__":
    main()
