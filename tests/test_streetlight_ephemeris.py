"""Sun times against a high-precision ephemeris: Skyfield with JPL DE421 (the file ``skyfield-data`` ships).

STREETLIGHT-SEMANTICS "Sun model" / "Accuracy": the sun's centre at −0.8333°, geocentric altitude (the
direction from the Earth's centre, referred to the site's horizon), an implementation within ±60 s of a
high-precision ephemeris is correct; at grazing geometry (altitude changing by less than 0.01°/min at the
event) an event also counts when the ephemeris altitude at the implementation's instant is within 10″ of
−0.8333°; the kind of night must match (unless the deciding altitude itself is within 10″ of −0.8333°).

The reference applies the semantics file's night rule on its own (lower transit in the window, the last
sunset within a day before it, the first sunrise within a day after), from the ephemeris alone.  Nothing is
downloaded: the ephemeris is loaded from ``skyfield_data``'s bundled directory.  The Sun's geocentric
apparent direction is site-independent, so it is computed once per date on a 2-minute grid (Earth-fixed
frame) and every site's altitude is a dot product; crossings are refined with direct ephemeris evaluations.

Run as a script (``PYTHONPATH=. python tests/test_streetlight_ephemeris.py``) to print the accuracy table by
latitude band that docs/streetlight.md quotes.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from os3p_core import SUN_DEPRESSION_DEGREES, sun_times

H0 = -SUN_DEPRESSION_DEGREES
ARCSEC = 1 / 3600
STEP = 120.0

# (name, lat, lng, zone): polar transitions both hemispheres, zones far from their meridian, the date line,
# +5:45, +12:45/+13:45, 30-minute DST, +14 and −11.
SITES = [
    ("Nome", 64.5011, -165.4064, "America/Nome"),
    ("Utqiagvik", 71.2906, -156.7886, "America/Anchorage"),
    ("Tromso", 69.6492, 18.9553, "Europe/Oslo"),
    ("Longyearbyen", 78.2232, 15.6267, "Arctic/Longyearbyen"),
    ("Alert", 82.5018, -62.3481, "America/Toronto"),
    ("Murmansk", 68.9585, 33.0827, "Europe/Moscow"),
    ("Reykjavik", 64.1466, -21.9426, "Atlantic/Reykjavik"),
    ("Amsterdam", 52.37, 4.90, "Europe/Amsterdam"),
    ("ACoruna", 43.3623, -8.4115, "Europe/Madrid"),
    ("Kashgar", 39.4704, 75.9898, "Asia/Shanghai"),
    ("Kathmandu", 27.7172, 85.324, "Asia/Kathmandu"),
    ("Quito", -0.1807, -78.4678, "America/Guayaquil"),
    ("Kiritimati", 1.8721, -157.4278, "Pacific/Kiritimati"),
    ("PagoPago", -14.2756, -170.702, "Pacific/Pago_Pago"),
    ("LordHowe", -31.5553, 159.082, "Australia/Lord_Howe"),
    ("Sydney", -33.87, 151.21, "Australia/Sydney"),
    ("Chatham", -43.95, -176.56, "Pacific/Chatham"),
    ("Ushuaia", -54.8019, -68.303, "America/Argentina/Ushuaia"),
    ("McMurdo", -77.846, 166.676, "Antarctica/McMurdo"),
]
DATES = [
    dt.date(*d)
    for d in (
        (2025, 3, 9), (2025, 3, 20), (2025, 3, 30), (2025, 4, 6), (2025, 4, 20), (2025, 4, 24),
        (2025, 5, 17), (2025, 6, 21), (2025, 7, 25), (2025, 8, 20), (2025, 8, 23), (2025, 9, 22),
        (2025, 9, 28), (2025, 10, 5), (2025, 10, 24), (2025, 10, 26), (2025, 11, 2), (2025, 11, 11),
        (2025, 11, 26), (2025, 12, 21), (2026, 1, 14), (2026, 1, 30), (2026, 2, 20),
    )
]


class Ephemeris:
    """Geocentric apparent Sun (DE421) as unit vectors in the Earth-fixed frame, plus site altitudes."""

    def __init__(self) -> None:
        import skyfield_data
        from skyfield.api import Loader
        from skyfield.framelib import itrs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skyfield-data's IERS file age warning: not used (builtin=True)
            load = Loader(skyfield_data.get_skyfield_data_path(), expire=False)
            self.ts = load.timescale(builtin=True)
            eph = load("de421.bsp")  # bundled: no download
        self.earth, self.sun, self.itrs = eph["earth"], eph["sun"], itrs

    def vectors(self, unix: np.ndarray) -> np.ndarray:
        # No leap second after 2016-12-31: seconds after a 2025 epoch map to UTC exactly.
        base = 1735689600.0  # 2025-01-01T00:00:00Z
        t = self.ts.utc(2025, 1, 1, 0, 0, unix - base)
        xyz = self.earth.at(t).observe(self.sun).apparent().frame_xyz(self.itrs).au
        out: np.ndarray = xyz / np.linalg.norm(xyz, axis=0)
        return out

    @staticmethod
    def normal(lat: float, lng: float) -> np.ndarray:
        p, q = math.radians(lat), math.radians(lng)
        return np.array([math.cos(p) * math.cos(q), math.cos(p) * math.sin(q), math.sin(p)])

    def altitude(self, lat: float, lng: float, unix: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.degrees(np.arcsin(self.normal(lat, lng) @ self.vectors(unix)))
        return out


def reference_night(eph: Ephemeris, grid: np.ndarray, vec: np.ndarray, site: tuple[Any, ...],
                    day: dt.date) -> dict[str, Any]:
    _name, lat, lng, zone_name = site
    zone = ZoneInfo(zone_name)
    a = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone).timestamp()
    nxt = day + dt.timedelta(days=1)
    b = dt.datetime(nxt.year, nxt.month, nxt.day, 12, tzinfo=zone).timestamp()
    n = eph.normal(lat, lng)
    f = np.degrees(np.arcsin(n @ vec)) - H0
    # Hour angle: the site's longitude minus the Sun's Earth-fixed longitude; lower transit at H = 180°.
    hour = (math.radians(lng) - np.arctan2(vec[1], vec[0])) % (2 * math.pi)
    ups = np.nonzero((hour[:-1] < math.pi) & (hour[1:] >= math.pi))[0]
    lows = [grid[i] + STEP * (math.pi - hour[i]) / (hour[i + 1] - hour[i]) for i in ups]
    inside = [t for t in lows if a <= t < b]
    assert len(inside) == 1, (site, day)
    midnight = inside[0]
    f_mid = float(eph.altitude(lat, lng, np.array([midnight]))[0] - H0)

    def crossings(lo: float, hi: float) -> list[tuple[float, bool]]:
        i = np.nonzero((grid[:-1] >= lo - STEP) & (grid[1:] <= hi + STEP)
                       & (np.sign(f[:-1]) != np.sign(f[1:])))[0]
        if not len(i):
            return []
        t = grid[i] + STEP * f[i] / (f[i] - f[i + 1])
        for _ in range(2):  # secant refinement on the ephemeris itself
            t2 = t + 1.0
            g1 = eph.altitude(lat, lng, t) - H0
            g2 = eph.altitude(lat, lng, t2) - H0
            t = t - g1 / np.where(g2 - g1 == 0, 1e-12, g2 - g1)
        return [(float(x), bool(f[j] < 0)) for x, j in zip(t, i, strict=True) if lo <= x <= hi]

    if f_mid > 0:
        return {"kind": "polar day", "midnight": midnight, "f_mid": f_mid, "a": a, "b": b}
    sets = [t for t, rising in crossings(midnight - 86400, midnight) if not rising]
    rises = [t for t, rising in crossings(midnight, midnight + 86400) if rising]
    return {
        "kind": "night", "midnight": midnight, "f_mid": f_mid, "a": a, "b": b,
        "sunset": sets[-1] if sets else None, "sunrise": rises[0] if rises else None,
    }


def compare(eph: Ephemeris) -> list[dict[str, Any]]:
    rows = []
    for day in DATES:
        t0 = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
        grid = np.arange(t0 - 2 * 86400, t0 + 3 * 86400, STEP)
        vec = eph.vectors(grid)
        for site in SITES:
            ref = reference_night(eph, grid, vec, site, day)
            impl = sun_times(site[1], site[2], day, site[3])
            rows.append({"site": site, "day": day, "ref": ref, "impl": impl})
    return rows


@pytest.fixture(scope="module")
def comparison() -> tuple[Ephemeris, list[dict[str, Any]]]:
    eph = Ephemeris()
    return eph, compare(eph)


def rate(eph: Ephemeris, lat: float, lng: float, t: float) -> float:
    """|d altitude / dt| in degrees per minute at t."""
    h = eph.altitude(lat, lng, np.array([t - 30.0, t + 30.0]))
    return float(abs(h[1] - h[0]))


def check_event(eph: Ephemeris, lat: float, lng: float, ref: float | None, impl: float, boundary: float,
                errors: list[float]) -> str | None:
    """None when the implementation's event is correct, else why not."""
    if ref is None and impl == boundary:
        return None
    alt = float(eph.altitude(lat, lng, np.array([impl]))[0] - H0) if impl != boundary else None
    if ref is not None and impl != boundary:
        errors.append(abs(impl - ref))
        if abs(impl - ref) <= 60:
            return None
        if rate(eph, lat, lng, ref) < 0.01 and alt is not None and abs(alt) <= 10 * ARCSEC:
            return None
        return f"off by {impl - ref:+.0f} s (altitude error {alt / ARCSEC if alt else 0:.1f}″)"
    # One says polar night (window boundary), the other has a crossing: only at grazing geometry.
    t = ref if ref is not None else impl
    if rate(eph, lat, lng, t) < 0.01 and (alt is None or abs(alt) <= 10 * ARCSEC):
        return None
    return f"kind differs (reference {ref}, implementation {impl})"


def test_sun_times_match_the_ephemeris_worldwide(comparison: tuple[Ephemeris, list[dict[str, Any]]]) -> None:
    eph, rows = comparison
    failures = []
    errors: list[float] = []
    for row in rows:
        (name, lat, lng, _zone), day, ref, impl = row["site"], row["day"], row["ref"], row["impl"]
        a, b = impl.window_start.timestamp(), impl.window_end.timestamp()
        assert (a, b) == (ref["a"], ref["b"])
        assert abs(impl.solar_midnight.timestamp() - ref["midnight"]) <= 60, (name, day)
        grazing_mid = abs(ref["f_mid"]) <= 10 * ARCSEC
        if ref["kind"] == "polar day":
            if not impl.polar_day and not grazing_mid:
                failures.append((name, day, "polar day expected"))
            continue
        if impl.polar_day:
            if not grazing_mid:
                failures.append((name, day, "night expected, got polar day"))
            continue
        for what, ref_t, impl_t, boundary in (
            ("sunset", ref["sunset"], impl.sunset.timestamp(), a),
            ("sunrise", ref["sunrise"], impl.sunrise.timestamp(), b),
        ):
            why = check_event(eph, lat, lng, ref_t, impl_t, boundary, errors)
            if why:
                failures.append((name, day, what, why))
    assert not failures, failures
    assert len(errors) > 500  # the comparison really compared


def accuracy_table(eph: Ephemeris, rows: list[dict[str, Any]]) -> list[str]:
    bands = [(0, 30), (30, 50), (50, 60), (60, 66.6), (66.6, 90)]
    out = ["| \\|latitude\\| | events | median \\|Δt\\| | max \\|Δt\\| |", "| --- | --- | --- | --- |"]
    for lo, hi in bands:
        errs = []
        for row in rows:
            lat = abs(row["site"][1])
            ref, impl = row["ref"], row["impl"]
            if not lo <= lat < hi or ref["kind"] != "night" or impl.polar_day:
                continue
            for r, i in ((ref["sunset"], impl.sunset), (ref["sunrise"], impl.sunrise)):
                if r is not None and i not in (impl.window_start, impl.window_end):
                    errs.append(abs(i.timestamp() - r))
        if errs:
            out.append(f"| {lo}°–{hi}° | {len(errs)} | {np.median(errs):.1f} s | {max(errs):.1f} s |")
    return out


if __name__ == "__main__":
    e = Ephemeris()
    print("\n".join(accuracy_table(e, compare(e))))
