"""The station's meters: plain data plus pure functions.

Theory of operation
-------------------
A secondary substation meters the low-voltage side of its transformer (three phases and the neutral) and,
through a separate P1 meter, the streetlight circuits its contactors switch (spec annex §M6.5, Table 1,
location ``P1Meter``).

* :class:`MeterState` holds everything that must persist between two samples: the energy registers (which
  only ever grow), the transformer oil temperature (a first-order lag behind the load), and the running daily
  extremes for the ``DayMax.*`` / ``DayMin.*`` measurands.
* :func:`advance` integrates energy from the last instant to ``now``, deterministically (no noise), using the
  load at the midpoint of slices of at most :data:`INTEGRATION_STEP` seconds, so that a long gap (a station
  that was off for a day) still follows the daily load curve.  The streetlight load is held constant over the
  interval: the station calls :func:`advance` at every contactor switch, so the P1 energy register is exact.
* :func:`sample` advances and then draws one noisy instantaneous reading with the station's seeded
  ``random.Random``.  The reading becomes a MeterValues payload with :meth:`MeterReading.to_payload`.

Physics kept honest: P = V·I·cos φ per phase, S = V·I, Q = V·I·sin φ, the neutral current is the magnitude of
the phasor sum of the three phase currents, and energy registers are integrals of power.  Units are those of
Table 1; where the table says ``Celsius`` / ``Amp`` / ``-`` the schema's enum spellings ``C`` / ``A`` / no
unit are used (PROTOCOL-DECISIONS §8 corrected the schema; ``BoardTemperature`` is in its enum).
"""

from __future__ import annotations

import cmath
import math
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs

__all__ = [
    "INTEGRATION_STEP",
    "MeterProfile",
    "MeterReading",
    "MeterState",
    "SampledValue",
    "advance",
    "initial_meter_state",
    "load_fraction",
    "sample",
]

#: Longest slice (seconds) over which :func:`advance` holds the load constant.
INTEGRATION_STEP = 900.0
#: Longest gap :func:`advance` integrates; after a longer outage only the last 31 days count (bounds CPU).
MAX_INTEGRATION_SPAN = 31 * 86400.0

_PHASES = (0, 1, 2)
_A = cmath.rect(1.0, -2.0 * math.pi / 3.0)  # 120° phase rotation, for the neutral current


@attrs.frozen
class MeterProfile:
    """The electrical character of one station (the defaults describe a 400 kVA residential substation)."""

    #: Nominal phase-to-neutral voltage; EN 50160 allows ±10 %; a lightly loaded station runs a little high.
    nominal_voltage: float = 230.0
    #: Phase current at the evening peak of the load curve (≈ 46 kW per phase at cos φ 0.95).
    peak_current: float = 210.0
    #: Per-phase share of the load; residential feeders are never perfectly balanced.
    phase_balance: tuple[float, float, float] = (1.0, 0.93, 1.06)
    #: Rooftop PV peak per phase (W); at noon the net load drops and may reverse (energy delivered).
    pv_peak: float = 12_000.0
    #: Streetlight load switched by each contactor (W). Contactor 3 is the tariff switch (§M8.1): no lamps.
    lamp_power: tuple[float, float, float, float] = (1_800.0, 2_400.0, 0.0, 600.0)
    #: cos φ of the LED drivers behind the contactors.
    lamp_power_factor: float = 0.95
    #: Transformer oil thermal time constant (s) and its temperature rise over ambient at full load (K).
    oil_time_constant: float = 3 * 3600.0
    oil_rise_full_load: float = 38.0
    #: Mean yearly ambient temperature (°C) and the seasonal and daily swings.
    ambient_mean: float = 10.5
    ambient_season_swing: float = 7.5
    ambient_day_swing: float = 4.0


@attrs.frozen
class MeterState:
    """Everything the meters remember between samples (persisted by the station store)."""

    last_time: float
    #: Per-phase registers (Wh, Wh, VAh, varh), non-decreasing.
    consumed_wh: tuple[float, float, float] = (0.0, 0.0, 0.0)
    delivered_wh: tuple[float, float, float] = (0.0, 0.0, 0.0)
    apparent_vah: tuple[float, float, float] = (0.0, 0.0, 0.0)
    reactive_varh: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: P1 streetlight register (kWh) and its value at the start of the current local day.
    p1_kwh: float = 0.0
    p1_kwh_day_start: float = 0.0
    oil_temperature: float = 25.0
    #: Local calendar day the extremes below belong to (ISO date), and the extremes, by measurand name.
    day: str = ""
    day_max: tuple[tuple[str, float], ...] = ()
    day_min: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able data for the durable store."""
        data = attrs.asdict(self)
        data["day_max"] = dict(self.day_max)
        data["day_min"] = dict(self.day_min)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MeterState:
        """Inverse of :meth:`to_json`."""
        def t3(v: Any) -> tuple[float, float, float]:
            return (float(v[0]), float(v[1]), float(v[2]))

        return cls(
            last_time=float(data["last_time"]),
            consumed_wh=t3(data["consumed_wh"]),
            delivered_wh=t3(data["delivered_wh"]),
            apparent_vah=t3(data["apparent_vah"]),
            reactive_varh=t3(data["reactive_varh"]),
            p1_kwh=float(data["p1_kwh"]),
            p1_kwh_day_start=float(data["p1_kwh_day_start"]),
            oil_temperature=float(data["oil_temperature"]),
            day=str(data["day"]),
            day_max=tuple(sorted((str(k), float(v)) for k, v in data["day_max"].items())),
            day_min=tuple(sorted((str(k), float(v)) for k, v in data["day_min"].items())),
        )


@attrs.frozen
class SampledValue:
    """One entry of ``sampledValue`` (§M6.5): measurand, value, unit (None for the unitless power factor)."""

    measurand: str
    value: float
    unit: str | None
    location: str | None = None
    decimals: int = 2

    def to_json(self, context: str) -> dict[str, Any]:
        out: dict[str, Any] = {"value": f"{self.value:.{self.decimals}f}", "measurand": self.measurand,
                               "context": context}
        if self.unit is not None:
            out["unit"] = self.unit
        if self.location is not None:
            out["location"] = self.location
        return out


@attrs.frozen
class MeterReading:
    """One instantaneous reading of all meters at ``timestamp`` (epoch seconds)."""

    timestamp: float
    values: tuple[SampledValue, ...]

    def get(self, measurand: str, location: str | None = None) -> float:
        """The value of one measurand (KeyError when absent)."""
        for v in self.values:
            if v.measurand == measurand and v.location == location:
                return v.value
        raise KeyError((measurand, location))

    def sampled_values(self, context: str = "Sample.Periodic") -> list[dict[str, Any]]:
        return [v.to_json(context) for v in self.values]

    def to_payload(self, context: str = "Sample.Periodic") -> dict[str, Any]:
        """A MeterValues request payload (§M6.5) holding this one reading."""
        return {"meterValue": [{"timestamp": iso_utc(self.timestamp),
                                "sampledValue": self.sampled_values(context)}]}


def iso_utc(t: float) -> str:
    """Epoch seconds → ISO 8601 UTC with ``Z`` (PROTOCOL-DECISIONS §8: always send an offset or ``Z``)."""
    dt = datetime.fromtimestamp(t, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def initial_meter_state(now: float, rng: random.Random) -> MeterState:
    """A plausible meter of a station that has been in service for a few years (registers not at zero)."""
    years = rng.uniform(2.0, 12.0)
    base = years * 365 * 24 * 14_000.0  # ≈ 14 kW average per phase
    consumed = _t3([round(base * rng.uniform(0.9, 1.1), 1) for _ in _PHASES])
    delivered = _t3([round(base * rng.uniform(0.04, 0.08), 1) for _ in _PHASES])
    apparent = _t3([round(c * 1.05, 1) for c in consumed])
    reactive = _t3([round(c * 0.32, 1) for c in consumed])
    p1 = round(years * 365 * 11 * 4.8, 3)  # ≈ 4.8 kW of lamps, 11 h a night
    return MeterState(last_time=now, consumed_wh=consumed, delivered_wh=delivered, apparent_vah=apparent,
                      reactive_varh=reactive, p1_kwh=p1, p1_kwh_day_start=p1)


def _t3(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def load_fraction(local_hour: float) -> float:
    """The daily residential load curve (fraction of the peak, ≤ 1): night trough, morning, evening peak."""
    h = local_hour % 24.0

    def bump(centre: float, width: float) -> float:
        # Wrap around midnight so 23:30 and 00:30 see the same evening tail.
        d = min(abs(h - centre), 24.0 - abs(h - centre))
        return math.exp(-((d / width) ** 2))

    return min(1.0, 0.30 + 0.22 * bump(7.75, 1.4) + 0.12 * bump(13.0, 3.0) + 0.60 * bump(18.75, 2.2))


def _pv_fraction(local_hour: float) -> float:
    h = local_hour % 24.0
    return max(0.0, math.sin(math.pi * (h - 6.0) / 14.0)) if 6.0 < h < 20.0 else 0.0


def _local(now: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(now, tz)


def _hour(dt: datetime) -> float:
    return dt.hour + dt.minute / 60.0 + dt.second / 3600.0


def _phase_powers(profile: MeterProfile, hour: float, scale: Sequence[float] = (1.0, 1.0, 1.0)
                  ) -> list[tuple[float, float]]:
    """Deterministic (net active W, power factor) per phase at ``hour``, before lamps."""
    f = load_fraction(hour)
    out = []
    for i in _PHASES:
        current = profile.peak_current * f * profile.phase_balance[i] * scale[i]
        pf = 0.965 - 0.04 * (1.0 - f)
        load_w = profile.nominal_voltage * current * pf
        out.append((load_w - profile.pv_peak * _pv_fraction(hour), pf))
    return out


def _lamp_watts(profile: MeterProfile, lights: Sequence[bool]) -> float:
    return sum(p for p, on in zip(profile.lamp_power, lights, strict=False) if on)


def advance(state: MeterState, profile: MeterProfile, now: float, lights: Sequence[bool], tz: ZoneInfo
            ) -> MeterState:
    """Integrate the energy registers from ``state.last_time`` to ``now`` with the lamps held at ``lights``.

    Deterministic and monotonic: registers never decrease, and ``now`` earlier than ``last_time`` (a clock set
    back by a BootNotification's ``currentTime``) integrates nothing but moves ``last_time``.
    """
    if now <= state.last_time:
        return attrs.evolve(state, last_time=now) if now < state.last_time else state
    start = max(state.last_time, now - MAX_INTEGRATION_SPAN)
    consumed = list(state.consumed_wh)
    delivered = list(state.delivered_wh)
    apparent = list(state.apparent_vah)
    reactive = list(state.reactive_varh)
    lamp_w = _lamp_watts(profile, lights)
    oil = state.oil_temperature
    p1 = state.p1_kwh
    t = start
    while t < now:
        dt = min(INTEGRATION_STEP, now - t)
        mid = _local(t + dt / 2.0, tz)
        hour = _hour(mid)
        f = load_fraction(hour)
        for i, (net_w, pf) in enumerate(_phase_powers(profile, hour)):
            net_w += lamp_w / 3.0
            wh = net_w * dt / 3600.0
            if wh >= 0:
                consumed[i] += wh
            else:
                delivered[i] -= wh
            s_wh = abs(net_w) / pf * dt / 3600.0
            apparent[i] += s_wh
            reactive[i] += s_wh * math.sqrt(max(0.0, 1.0 - pf * pf))
        p1 += lamp_w * dt / 3_600_000.0
        target = _ambient(profile, mid) + profile.oil_rise_full_load * f * f  # losses ∝ I²
        oil += (target - oil) * (1.0 - math.exp(-dt / profile.oil_time_constant))
        t += dt
    return attrs.evolve(state, last_time=now, consumed_wh=_t3(consumed), delivered_wh=_t3(delivered),
                        apparent_vah=_t3(apparent), reactive_varh=_t3(reactive), p1_kwh=p1,
                        oil_temperature=oil)


def _ambient(profile: MeterProfile, local: datetime) -> float:
    doy = local.timetuple().tm_yday
    season = profile.ambient_season_swing * math.sin(2.0 * math.pi * (doy - 110) / 365.0)
    day = profile.ambient_day_swing * math.sin(2.0 * math.pi * (_hour(local) - 9.0) / 24.0)
    return profile.ambient_mean + season + day


def sample(state: MeterState, profile: MeterProfile, now: float, lights: Sequence[bool], tz: ZoneInfo,
           rng: random.Random) -> tuple[MeterState, MeterReading]:
    """Advance to ``now`` and take one noisy reading of every meter (Table 1 of §M6.5)."""
    state = advance(state, profile, now, lights, tz)
    local = _local(now, tz)
    hour = _hour(local)
    f = load_fraction(hour)
    today = local.date().isoformat()
    if state.day != today:
        state = attrs.evolve(state, day=today, day_max=(), day_min=(), p1_kwh_day_start=state.p1_kwh)
    noise = [rng.gauss(1.0, 0.02) for _ in _PHASES]
    lamp_w = _lamp_watts(profile, lights)
    volts = [profile.nominal_voltage + 1.8 - 4.5 * f * profile.phase_balance[i] + rng.gauss(0.0, 0.35)
             for i in _PHASES]
    values: list[SampledValue] = []
    add = values.append
    currents: list[float] = []
    actives: list[float] = []
    apparents: list[float] = []
    reactives: list[float] = []
    pfs: list[float] = []
    for i, (net_w, pf) in enumerate(_phase_powers(profile, hour, noise)):
        pf = min(0.999, max(0.5, pf + rng.gauss(0.0, 0.003)))
        p = net_w + lamp_w / 3.0
        current = abs(p) / (volts[i] * pf)
        s = volts[i] * current
        q = s * math.sqrt(1.0 - pf * pf)
        currents.append(current)
        actives.append(p)
        apparents.append(s)
        reactives.append(q)
        pfs.append(pf)
    neutral = abs(currents[0] + currents[1] * _A + currents[2] * _A * _A)
    ambient = _ambient(profile, local) + rng.gauss(0.0, 0.2)
    add(SampledValue("AmbientTemperature", ambient, "C", decimals=1))
    add(SampledValue("OilTemperature", state.oil_temperature + rng.gauss(0.0, 0.1), "C", decimals=1))
    add(SampledValue("BoardTemperature", ambient + 9.0 + 3.0 * f + rng.gauss(0.0, 0.2), "C", decimals=1))
    for i in _PHASES:
        add(SampledValue(f"Voltage.L{i + 1}N", volts[i], "V", decimals=1))
    add(SampledValue("Current.N", neutral, "A", decimals=1))
    for i in _PHASES:
        add(SampledValue(f"Current.L{i + 1}", currents[i], "A", decimals=1))
    add(SampledValue("Current.Sum", sum(currents), "A", decimals=1))
    for i in _PHASES:
        add(SampledValue(f"PowerFactor.L{i + 1}", pfs[i], None, decimals=3))
    total_s = sum(apparents)
    add(SampledValue("PowerFactor.Sum", abs(sum(actives)) / total_s if total_s else 1.0, None, decimals=3))
    for name, per_phase, unit in (("ActivePower", actives, "W"), ("ApparentPower", apparents, "VA"),
                                  ("ReactivePower", reactives, "var")):
        for i in _PHASES:
            add(SampledValue(f"{name}.L{i + 1}", per_phase[i], unit, decimals=0))
        add(SampledValue(f"{name}.Sum", sum(per_phase), unit, decimals=0))
    for name, regs, unit in (("RealEnergyConsumed", state.consumed_wh, "Wh"),
                             ("RealEnergyDelivered", state.delivered_wh, "Wh"),
                             ("ApparentEnergy", state.apparent_vah, "VAh"),
                             ("ReactiveEnergy", state.reactive_varh, "varh")):
        for i in _PHASES:
            add(SampledValue(f"{name}.L{i + 1}", regs[i], unit, decimals=0))
        add(SampledValue(f"{name}.Sum", sum(regs), unit, decimals=0))
    for i in _PHASES:
        add(SampledValue(f"THDv.L{i + 1}N", max(0.3, rng.gauss(1.8 + 1.2 * f, 0.15)), "%", decimals=2))
    for i in _PHASES:
        add(SampledValue(f"THDc.L{i + 1}", max(1.0, rng.gauss(6.0 + 8.0 * (1.0 - f), 0.6)), "%", decimals=2))
    add(SampledValue("Frequency", 50.0 + max(-0.1, min(0.1, rng.gauss(0.0, 0.02))), "Hz", decimals=3))
    # P1 meter: the streetlight circuits behind the contactors (Table 1, location P1Meter, kW / kWh / Amp).
    lamp_phase_w = lamp_w / 3.0
    for i in _PHASES:
        amps = lamp_phase_w / (volts[i] * profile.lamp_power_factor) if lamp_w else 0.0
        add(SampledValue(f"Current.L{i + 1}", amps, "A", "P1Meter", decimals=2))
    for i in _PHASES:
        add(SampledValue(f"ActivePower.L{i + 1}", lamp_phase_w / 1000.0, "kW", "P1Meter", decimals=3))
    add(SampledValue("Energy.Active.Import.Register", state.p1_kwh, "kWh", "P1Meter", decimals=3))
    add(SampledValue("Power.Active.Import", lamp_w / 1000.0, "kW", "P1Meter", decimals=3))
    # Daily extremes over the local calendar day, including this reading.
    hi = dict(state.day_max)
    lo = dict(state.day_min)
    for i in _PHASES:
        n = i + 1
        for key, v, track_min in ((f"Voltage.L{n}", volts[i], True), (f"Current.L{n}", currents[i], False),
                                  (f"ActivePower.L{n}", actives[i], True),
                                  (f"ReactivePower.L{n}", reactives[i], True)):
            hi[key] = max(hi.get(key, v), v)
            if track_min:
                lo[key] = min(lo.get(key, v), v)
    state = attrs.evolve(state, day_max=tuple(sorted(hi.items())), day_min=tuple(sorted(lo.items())))
    units = {"Voltage": "V", "Current": "A", "ActivePower": "W", "ReactivePower": "var"}
    for key, v in state.day_max:
        add(SampledValue(f"DayMax.{key}", v, units[key.split(".")[0]], decimals=1))
    add(SampledValue("DayMax.Energy.Active.Import.Register", state.p1_kwh - state.p1_kwh_day_start, "kWh",
                     "P1Meter", decimals=3))
    for key, v in state.day_min:
        add(SampledValue(f"DayMin.{key}", v, units[key.split(".")[0]], decimals=1))
    return state, MeterReading(now, tuple(values))


def local_day(now: float, tz: ZoneInfo) -> date:
    """The local calendar date of ``now``."""
    return _local(now, tz).date()
