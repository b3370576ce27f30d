"""Sun times for the streetlight schedule: Sunset(D) and Sunrise(D) of an OS³P day, and today's events.

STREETLIGHT-SEMANTICS "Points in time": *Sunset(D) is the sunset that starts the night of day D; Sunrise(D) is
the sunrise that ends it ... Sun model: the sun's centre at −0.8333° (refraction plus semi-diameter), sea
level, rounded to the second — the NOAA convention.*  Polar night (already dark at noon): Sunset(D) = D 12:00,
and without a sunrise before the window ends Sunrise(D) = D+1 12:00.  Polar day (no sunset in the window):
Sunset(D) = Sunrise(D) = solar midnight.

How it is computed ------------------ The sun's position (declination and equation of time) comes from astral
3.x's NOAA formulas (``astral.sun.sun_declination`` / ``eq_of_time``), the convention the semantics file
names.  We do not call astral's ``sunset()`` / ``time_at_elevation()``: those answer "the event near this UTC
date", raise ``ValueError`` on polar days, and know nothing of the noon-to-noon window.  Instead, for a window
[a, b) we

1. list the sun's upper and lower transits inside the window.  Between two consecutive transits the elevation
   is monotonic (to within a few seconds of declination drift; see docs/streetlight.md), so each such segment
   holds at most one crossing of −0.8333°, and the sign of (elevation + 0.8333°) at the segment ends says
   whether it does;
2. solve each crossing with Newton's method on sin(elevation), safeguarded by bisection inside its segment, to
   1 ms, then round to the whole second.

At −0.8333° the result agrees with astral's ``time_at_elevation(..., -0.8333, with_refraction=False)`` to well
under a second where astral has an answer (a test checks it), and it is defined everywhere, poles included.
The cost is a dozen evaluations of the NOAA series (~3 µs each) per window; results are cached per (location,
window).

All instants here are POSIX seconds (UTC) as ``int``; the public functions take and return aware ``datetime``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from zoneinfo import ZoneInfo

import attrs
from astral.sun import eq_of_time, sun_declination

__all__ = ["SUN_DEPRESSION_DEGREES", "SunTimes", "sun_events_on_date", "sun_times", "sun_times_utc_seconds"]

#: The elevation of the sun's centre at sunrise and sunset (STREETLIGHT-SEMANTICS: "the sun's centre at
#: −0.8333° (refraction plus semi-diameter)").  34′ of refraction at the horizon plus a 16′ semi-diameter.
SUN_DEPRESSION_DEGREES = 0.8333

_SIN_H0 = math.sin(math.radians(-SUN_DEPRESSION_DEGREES))
_DAY = 86400
_OMEGA = 2.0 * math.pi / _DAY  # hour angle advance, radians per second (mean solar day)
_UNIX_EPOCH_JD = 2440587.5
_J2000_JD = 2451545.0
#: Bounded work per crossing: bisection halves a ≤ 13 h segment below 1 ms in 26 steps; Newton needs ~4.
_MAX_ITERATIONS = 64
#: Per-process cache of computed windows.  One entry is a small tuple (~150 bytes with its key), so the worst
#: case is ~10 MB.  A fleet of 10,000 stations evaluating today and tomorrow needs 20,000 entries.
_CACHE_SIZE = 65536


def _solar(t: float) -> tuple[float, float]:
    """(declination in radians, equation of time in minutes) at POSIX time ``t`` (astral's NOAA series)."""
    jc = (t / _DAY + _UNIX_EPOCH_JD - _J2000_JD) / 36525.0
    return math.radians(sun_declination(jc)), eq_of_time(jc)


def _hour_angle(t: float, longitude: float, eqtime: float) -> float:
    """Local hour angle of the sun in radians at POSIX time ``t`` (0 at upper transit)."""
    true_solar_minutes = (t % _DAY) / 60.0 + eqtime + 4.0 * longitude
    return math.radians(true_solar_minutes / 4.0 - 180.0)


class _Site:
    """Latitude terms and longitude, precomputed once per computation."""

    __slots__ = ("cos_lat", "longitude", "sin_lat")

    def __init__(self, latitude: float, longitude: float) -> None:
        phi = math.radians(latitude)
        self.sin_lat = math.sin(phi)
        self.cos_lat = math.cos(phi)
        self.longitude = longitude

    def f(self, t: float) -> float:
        """sin(elevation) − sin(−0.8333°): positive while the sun is up."""
        decl, eqtime = _solar(t)
        return self.f_at(t, decl, eqtime)

    def f_at(self, t: float, decl: float, eqtime: float) -> float:
        """:meth:`f` with the sun's declination and equation of time already known (they change slowly)."""
        h = _hour_angle(t, self.longitude, eqtime)
        return self.sin_lat * math.sin(decl) + self.cos_lat * math.cos(decl) * math.cos(h) - _SIN_H0

    def f_and_slope(self, t: float) -> tuple[float, float]:
        decl, eqtime = _solar(t)
        h = _hour_angle(t, self.longitude, eqtime)
        cos_decl = math.cos(decl)
        value = self.sin_lat * math.sin(decl) + self.cos_lat * cos_decl * math.cos(h) - _SIN_H0
        # d/dt of sin(elevation), ignoring the slow drift of declination and equation of time.
        return value, -self.cos_lat * cos_decl * math.sin(h) * _OMEGA

    def transits(self, a: float, b: float) -> list[tuple[float, bool, float]]:
        """Upper (True) and lower (False) transits strictly inside (a, b), sorted, each with f there."""
        out: list[tuple[float, bool, float]] = []
        # The equation of time moves by under 30 s a day, so one value for the whole window places every
        # transit within seconds; each transit found inside is then refined once with its own value, and f
        # there reuses that evaluation (declination moves < 0.001″ in the seconds between).
        _decl, eqtime_mid = _solar(0.5 * (a + b))
        for day in range(math.floor(a / _DAY) - 1, math.floor(b / _DAY) + 2):
            base = day * _DAY
            for upper, minute in ((True, 720.0), (False, 0.0)):
                # True solar time is `minute` when UTC minutes-of-day = minute − 4·lng − E(t).
                guess = base + (minute - 4.0 * self.longitude - eqtime_mid) * 60.0
                if a - 3600.0 < guess < b + 3600.0:
                    decl, eqtime = _solar(guess)
                    guess = base + (minute - 4.0 * self.longitude - eqtime) * 60.0
                    if a < guess < b:
                        out.append((guess, upper, self.f_at(guess, decl, eqtime)))
        out.sort()
        return out

    def crossing(self, lo: float, hi: float, f_lo: float) -> float:
        """The one root of f in (lo, hi], given sign(f(lo)) != sign(f(hi)); safeguarded Newton to 1 ms."""
        rising = f_lo <= 0.0
        x = 0.5 * (lo + hi)
        # Start Newton from the classic hour-angle solution, cos H0 = (sin h0 − sin φ sin δ) / (cos φ cos δ),
        # with δ and E taken at the segment's middle: it is within seconds of the root, so Newton then needs
        # one or two steps.  Outside its domain (grazing sun) we keep the middle and let the bisection guard
        # work.
        decl, eqtime = _solar(x)
        denominator = self.cos_lat * math.cos(decl)
        if denominator > 1e-12:
            cos_h0 = (_SIN_H0 - self.sin_lat * math.sin(decl)) / denominator
            if -1.0 < cos_h0 < 1.0:
                target = math.acos(cos_h0) if not rising else -math.acos(cos_h0)  # setting: west, H > 0
                delta = (target - _hour_angle(x, self.longitude, eqtime) + math.pi) % (
                    2.0 * math.pi
                ) - math.pi
                guess = x + delta / _OMEGA
                if lo < guess < hi:
                    x = guess
        for _ in range(_MAX_ITERATIONS):
            fx, slope = self.f_and_slope(x)
            # Keep the bracket: "up" side vs "down" side.
            if (fx > 0.0) == rising:
                hi = x
            else:
                lo = x
            nx = x - fx / slope if slope != 0.0 else lo
            if not lo < nx < hi:
                nx = 0.5 * (lo + hi)
            if abs(nx - x) < 1e-3 or hi - lo < 1e-3:
                return nx
            x = nx
        return 0.5 * (lo + hi)


def _round(t: float) -> int:
    return math.floor(t + 0.5)


def _events(site: _Site, a: float, b: float) -> tuple[bool, list[tuple[int, bool]]]:
    """Whether the sun is up at ``a``, and every crossing in (a, b) as (instant, rising), in order."""
    inner = site.transits(a, b)
    points = [a, *(t for t, _upper, _value in inner), b]
    values = [site.f(a), *(value for _t, _upper, value in inner), site.f(b)]
    events: list[tuple[int, bool]] = []
    for i in range(len(points) - 1):
        f_lo, f_hi = values[i], values[i + 1]
        if (f_lo > 0.0) != (f_hi > 0.0):
            t = site.crossing(points[i], points[i + 1], f_lo)
            events.append((_round(t), f_lo <= 0.0))
    return values[0] > 0.0, events


def _lower_transit(site: _Site, a: float, b: float) -> tuple[float, float]:
    """Day D's solar midnight: the sun's lower transit in [a, b) (and f there).

    A window holds one in every real zone (clock within ~11 h of the site's solar time).  Only when a zone is
    about 12 h off (the poles) can a 23 h window hold none or a 25 h window two: then the one nearest the
    window's middle is taken, so the rule is still defined everywhere.
    """
    inside = [(t, value) for t, upper, value in site.transits(a, b) if not upper]
    if len(inside) == 1:
        return inside[0]
    lows = [(t, value) for t, upper, value in site.transits(a - _DAY, b + _DAY) if not upper]
    middle = 0.5 * (a + b)
    pool = inside or lows  # two in a 25 h window, or none in a 23 h one
    return min(pool, key=lambda x: abs(x[0] - middle))


def night_utc_seconds(
    latitude: float, longitude: float, a: int, b: int
) -> tuple[int | None, int, int | None]:
    """(sunset or None, solar midnight, sunrise or None) of the night of the window [a, b) (POSIX seconds).

    STREETLIGHT-SEMANTICS "The night of day D": the dark interval around the sun's lower transit L between
    D 12:00 and D+1 12:00.  Sunset is the last downward crossing of −0.8333° within a day before L, sunrise
    the first upward crossing within a day after it; ``None`` where there is none (polar night: the caller
    uses D 12:00 / D+1 12:00).  Up at L (polar day): sunset = sunrise = L.
    """
    return _night_parts(float(latitude), float(longitude), int(a), int(b))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _night_parts(latitude: float, longitude: float, a: int, b: int) -> tuple[int | None, int, int | None]:
    site = _Site(latitude, longitude)
    midnight, f_mid = _lower_transit(site, a, b)
    m = _round(midnight)
    if f_mid > 0.0:
        # Polar day: "the sun is up at the lower transit ... a night of zero length".
        return m, m, m
    # One pass over the day before and after: the lower transit itself splits the segments, so every
    # crossing lies strictly on one side of it.
    _up, events = _events(site, midnight - _DAY, midnight + _DAY)
    settings = [t for t, rising in events if not rising and t <= midnight]
    rises = [t for t, rising in events if rising and t >= midnight]
    return (settings[-1] if settings else None), m, (rises[0] if rises else None)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _night_cached(latitude: float, longitude: float, a: int, b: int) -> tuple[int, int]:
    sunset, _midnight, sunrise = _night_parts(latitude, longitude, a, b)
    # Polar night: "Sunset(D) = D 12:00; if no sunrise comes within a day after the lower transit,
    # Sunrise(D) = D+1 12:00".
    return (a if sunset is None else sunset), (b if sunrise is None else sunrise)


def sun_times_utc_seconds(
    latitude: float, longitude: float, window_start: int, window_end: int
) -> tuple[int, int]:
    """Sunset and Sunrise of the window [window_start, window_end) as POSIX seconds (the engine's fast path).

    ``window_start`` / ``window_end`` are the POSIX seconds of D 12:00 and D+1 12:00 local.  Cached.
    """
    return _night_cached(float(latitude), float(longitude), int(window_start), int(window_end))


@attrs.frozen(slots=True)
class SunTimes:
    """Sunset(D) and Sunrise(D) of OS³P day ``day`` (STREETLIGHT-SEMANTICS "The night of day D").

    ``sunset`` and ``sunrise`` are aware UTC datetimes, whole seconds: the night around ``solar_midnight``
    (the lower transit in the window).  Either may lie outside [window_start, window_end) — e.g. Nome in
    December, where the night ends after clock noon.
    """

    day: _dt.date
    window_start: _dt.datetime
    window_end: _dt.datetime
    sunset: _dt.datetime
    sunrise: _dt.datetime
    solar_midnight: _dt.datetime

    @property
    def polar_night(self) -> bool:
        """True when no sunset came within a day before solar midnight (Sunset(D) is D 12:00)."""
        return self.sunset == self.window_start

    @property
    def polar_day(self) -> bool:
        """True when the sun is up at solar midnight (a night of zero length there)."""
        return self.sunset == self.sunrise == self.solar_midnight


def _local_noon_seconds(day: _dt.date, tz: _dt.tzinfo) -> int:
    # fold=0 is the semantics file's rule for local wall times; 12:00 is never ambiguous in real zones anyway.
    return int(_dt.datetime(day.year, day.month, day.day, 12, tzinfo=tz).timestamp())


def _utc(t: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(t, _dt.UTC)


def _zone(tz: _dt.tzinfo | str) -> _dt.tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def sun_times(latitude: float, longitude: float, day: _dt.date, tz: _dt.tzinfo | str) -> SunTimes:
    """Sunset(D) and Sunrise(D) for OS³P day ``day`` (the local window [D 12:00, D+1 12:00)) in zone ``tz``.

    ``latitude`` north-positive, ``longitude`` east-positive, in degrees (STREETLIGHT-SEMANTICS "Inputs").
    """
    zone = _zone(tz)
    a = _local_noon_seconds(day, zone)
    b = _local_noon_seconds(day + _dt.timedelta(days=1), zone)
    sunset, sunrise = sun_times_utc_seconds(latitude, longitude, a, b)
    _s, midnight, _r = night_utc_seconds(latitude, longitude, a, b)
    return SunTimes(
        day=day,
        window_start=_utc(a),
        window_end=_utc(b),
        sunset=_utc(sunset),
        sunrise=_utc(sunrise),
        solar_midnight=_utc(midnight),
    )


def sun_events_on_date(
    latitude: float, longitude: float, date: _dt.date, tz: _dt.tzinfo | str
) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """(sunrise, sunset) on the local *calendar* date ``date``: the first of each in [00:00, next 00:00)
    local.

    ``None`` when there is none that day (polar night, polar day, or — at high latitude — a day whose sunrise
    or sunset falls on the neighbouring date).  This is what the ``Sunrise`` / ``Sunset`` configuration keys
    report (PROTOCOL-DECISIONS §6: "today's events ... empty string when there is none").
    """
    zone = _zone(tz)
    a = int(_dt.datetime(date.year, date.month, date.day, tzinfo=zone).timestamp())
    nxt = date + _dt.timedelta(days=1)
    b = int(_dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp())
    _up, events = _calendar_events(float(latitude), float(longitude), a, b)
    rise = next((t for t, rising in events if rising), None)
    fall = next((t for t, rising in events if not rising), None)
    return (None if rise is None else _utc(rise)), (None if fall is None else _utc(fall))


@functools.lru_cache(maxsize=1024)
def _calendar_events(
    latitude: float, longitude: float, a: int, b: int
) -> tuple[bool, tuple[tuple[int, bool], ...]]:
    up, events = _events(_Site(latitude, longitude), a, b)
    return up, tuple((t, rising) for t, rising in events if a <= t < b)
