"""A simulated December week at Nome, Alaska (64.5° N, zone 2 h west of its meridian): every dark hour lit.

Issue 19: under the old rule ("already dark at noon → Sunset(D) = D 12:00") the lights were on 12:00–12:03
and off for the ~20-hour night.  The station simulator drives its contactors by the core's switching timeline,
so with the revised night rule (the dark interval around solar midnight, periods continuing across the noon
boundary) a Daily [Sunset → Sunrise] profile keeps the lights on in every hour the sun is down.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import elevation

from os3p_sim import Simulation, StationConfig

NOME = (64.5011, -165.4064)
ZONE = ZoneInfo("America/Nome")
NIGHT: dict[str, Any] = {
    "contactorId": 1,
    "streetlightProfiles": [{
        "profileId": 1, "stackLevel": 1, "recurrencyKind": "Daily",
        "daySchedule": [{"start": {"kind": "Sunset", "offset": 0}, "end": {"kind": "Sunrise", "offset": 0}}],
    }],
}


def _on_intervals(
    events: list[tuple[str, dt.datetime]], end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    out: list[tuple[dt.datetime, dt.datetime]] = []
    since: dt.datetime | None = None
    for status, when in events:
        if status == "On" and since is None:
            since = when
        elif status == "Off" and since is not None:
            out.append((since, when))
            since = None
    if since is not None:
        out.append((since, end))
    return out


def test_a_december_week_at_nome_lights_every_dark_hour() -> None:
    start = dt.datetime(2025, 12, 18, 11, 0, tzinfo=ZONE)
    sim = Simulation(seed=3, start=start)
    sim.add_station("SUB-NOME", StationConfig(geolocation=f"[{NOME[0]}, {NOME[1]}]", timezone="America/Nome"))
    sim.run_for(600)
    assert "SUB-NOME" in sim.central.accepted
    sim.central.call("SUB-NOME", "SetStreetlightProfile", NIGHT)
    end = dt.datetime(2025, 12, 25, 12, 0, tzinfo=ZONE)
    sim.run_until(end)
    events = [
        (r.payload["status"], dt.datetime.fromisoformat(r.payload["timestamp"].replace("Z", "+00:00")))
        for r in sim.central.streetlight_events("SUB-NOME")
        if r.action == "StreetlightStatusNotification" and r.payload["contactorId"] == 1
    ]
    lit = _on_intervals(events, end)
    assert lit, "the lights never switched on"
    # Every half hour from the first full day: the light is on exactly when the sun's centre is below
    # −0.8333° (astral's elevation, independent of the core's solver), except within 2 minutes of a switch.
    switches = [when for _status, when in events]
    observer = Observer(*NOME)
    t = dt.datetime(2025, 12, 19, 12, 0, tzinfo=ZONE)
    dark_samples = 0
    while t + dt.timedelta(minutes=30) < end:
        t += dt.timedelta(minutes=30)
        if any(abs((t - s).total_seconds()) < 120 for s in switches):
            continue
        dark = elevation(observer, t, with_refraction=False) < -0.8333
        on = any(a <= t < b for a, b in lit)
        assert on == dark, (t, on, dark)
        dark_samples += dark
    # About 20 of every 24 hours are dark at Nome in late December: well over 100 dark hours in 5.5 days.
    assert dark_samples / 2 > 100
