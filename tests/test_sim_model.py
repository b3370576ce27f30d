"""Unit tests of the simulator's sans-IO sub-models: meters, contactors, MV fault indicators, transfers."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from os3p_core import validate_request
from os3p_sim import (
    Contactors,
    Download,
    FaultConfig,
    FaultIndicators,
    Firmware,
    FirmwarePhase,
    LocalSwitch,
    MeterProfile,
    MeterReading,
    MeterState,
    OverrideAction,
    Reboot,
    TransferConfig,
    Uploads,
    advance_meters,
    initial_meter_state,
    load_fraction,
    parse_firmware_image,
    sample_meters,
)

AMS = ZoneInfo("Europe/Amsterdam")
T0 = datetime(2025, 12, 21, 12, 0, tzinfo=UTC).timestamp()
TS = "2025-12-21T12:00:00Z"


# -- meters ----------------------------------------------------------------------------------------

def _run_meters(hours: int, step: float = 900.0) -> list[tuple[MeterState, MeterReading]]:
    rng = random.Random(1)
    state = initial_meter_state(T0, rng)
    profile = MeterProfile()
    out = []
    t = T0
    for _ in range(int(hours * 3600 / step)):
        t += step
        lights = (True, True, False, False)
        state, reading = sample_meters(state, profile, t, lights, AMS, rng)
        out.append((state, reading))
    return out


def test_meter_values_payload_validates_and_is_realistic() -> None:
    samples = _run_meters(48)
    for _state, reading in samples:
        payload = reading.to_payload()
        validate_request("MeterValues", payload)
        for phase in (1, 2, 3):
            v = reading.get(f"Voltage.L{phase}N")
            assert 220.0 < v < 240.0
            i = reading.get(f"Current.L{phase}")
            pf = reading.get(f"PowerFactor.L{phase}")
            p = reading.get(f"ActivePower.L{phase}")
            # P = V·I·cos φ (the sign of P says whether the station imports or exports).
            assert abs(abs(p) - v * i * pf) <= 0.01 * abs(p) + 1.0
        assert 49.9 <= reading.get("Frequency") <= 50.1
        assert -20.0 < reading.get("AmbientTemperature") < 40.0
        assert reading.get("OilTemperature") > reading.get("AmbientTemperature") - 5.0
    # Every Table 1 measurand and the P1 meter appear, with the schema's unit spellings.
    values = samples[0][1].values
    names = {(v.measurand, v.location) for v in values}
    assert ("Energy.Active.Import.Register", "P1Meter") in names
    assert ("DayMax.Energy.Active.Import.Register", "P1Meter") in names
    assert ("BoardTemperature", None) in names
    assert ("Current.N", None) in names
    units = {v.measurand: v.unit for v in values if v.location is None}
    assert units["AmbientTemperature"] == "C"
    assert units["PowerFactor.Sum"] is None
    assert units["ReactivePower.Sum"] == "var"


def test_energy_registers_never_decrease_and_follow_the_load_curve() -> None:
    samples = _run_meters(72)
    kinds = ("RealEnergyConsumed", "RealEnergyDelivered", "ApparentEnergy", "ReactiveEnergy")
    registers = [f"{n}.Sum" for n in kinds]
    for (_, a), (_, b) in itertools.pairwise(samples):
        for name in registers:
            assert b.get(name) >= a.get(name)
        assert b.get("Energy.Active.Import.Register", "P1Meter") >= a.get(
            "Energy.Active.Import.Register", "P1Meter")
    # The evening peak draws more current than the small hours.
    by_hour: dict[int, list[float]] = {}
    for _, r in samples:
        hour = datetime.fromtimestamp(r.timestamp, AMS).hour
        by_hour.setdefault(hour, []).append(r.get("Current.Sum"))
    assert sum(by_hour[19]) / len(by_hour[19]) > 1.8 * sum(by_hour[3]) / len(by_hour[3])
    assert load_fraction(18.75) > load_fraction(3.0)


def test_p1_meter_follows_the_contactors() -> None:
    rng = random.Random(2)
    profile = MeterProfile()
    state = initial_meter_state(T0, rng)
    state, dark = sample_meters(state, profile, T0 + 60, (False, False, False, False), AMS, rng)
    assert dark.get("Power.Active.Import", "P1Meter") == 0.0
    assert dark.get("Current.L1", "P1Meter") == 0.0
    state, lit = sample_meters(state, profile, T0 + 120, (True, True, False, False), AMS, rng)
    assert lit.get("Power.Active.Import", "P1Meter") == pytest.approx(4.2)
    before = state.p1_kwh
    # One hour with lamps 1 and 2 on (4.2 kW) adds 4.2 kWh exactly: the integration is deterministic.
    state = advance_meters(state, profile, T0 + 120 + 3600, (True, True, False, False), AMS)
    assert state.p1_kwh - before == pytest.approx(4.2)


def test_meter_state_round_trips_through_json() -> None:
    state = _run_meters(2)[-1][0]
    assert MeterState.from_json(state.to_json()) == state


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=86400.0), min_size=1, max_size=20),
       st.lists(st.booleans(), min_size=4, max_size=4))
def test_advance_is_monotonic_for_any_gaps(gaps: list[float], lights: list[bool]) -> None:
    state = MeterState(last_time=T0)
    t = T0
    for gap in gaps:
        t += gap
        new = advance_meters(state, MeterProfile(), t, lights, AMS)
        old_regs = state.consumed_wh + state.delivered_wh + state.apparent_vah + state.reactive_varh
        new_regs = new.consumed_wh + new.delivered_wh + new.apparent_vah + new.reactive_varh
        for a, b in zip(old_regs, new_regs, strict=True):
            assert b >= a
            assert math.isfinite(b)
        assert new.p1_kwh >= state.p1_kwh
        state = new


# -- contactors ------------------------------------------------------------------------------------

def _schedule(on: set[int]) -> Callable[[int], bool]:
    return lambda cid: cid in on


def test_schedule_switches_report_each_transition() -> None:
    c = Contactors()
    c, events = c.settle(_schedule({1, 2}), TS)
    assert [(e.action, e.payload["contactorId"], e.payload["status"]) for e in events] == [
        ("StreetlightStatusNotification", 1, "On"), ("StreetlightStatusNotification", 2, "On")]
    for e in events:
        validate_request(e.action, e.payload)
    c, events = c.settle(_schedule({1, 2}), TS)
    assert events == []  # no transition, no message (§M6.8)
    c, events = c.settle(_schedule({2}), TS)
    assert [(e.payload["contactorId"], e.payload["status"]) for e in events] == [(1, "Off")]
    assert c.lights == (False, True, False, False)


def test_remote_override_and_resume() -> None:
    sched = _schedule({1})
    c, _ = Contactors().settle(sched, TS)
    status, c, events = c.override(1, OverrideAction.OFF, sched, TS)
    assert status.value == "Accepted"
    assert [e.action for e in events] == ["StreetlightModeStatusNotification",
                                          "StreetlightStatusNotification"]
    assert events[0].payload == {"contactorId": 1, "mode": "RemoteOverride", "timestamp": TS}
    assert c.mode(1).value == "RemoteOverride"
    assert c.mode(2).value == "Schedule"
    c, events = c.settle(sched, TS)
    assert events == []
    assert not c[1].on
    # Suspend keeps the current output whatever the schedule says.
    status, c, events = c.override(None, OverrideAction.SUSPEND, _schedule({1, 2, 3, 4}), TS)
    assert events[0].payload == {"mode": "RemoteOverride", "timestamp": TS}
    assert c.lights == (False, False, False, False)
    status, c, events = c.resume(None, sched, TS)
    assert status.value == "Accepted"
    assert events[0].payload == {"mode": "Schedule", "timestamp": TS}
    assert [e.payload["contactorId"] for e in events[1:]] == [1]
    assert c.lights == (True, False, False, False)
    for e in events:
        validate_request(e.action, e.payload)


def test_local_override_switch_rejects_remote_commands_and_restores_modes() -> None:
    sched = _schedule(set())
    _, c, _ = Contactors().override(2, OverrideAction.ON, sched, TS)
    c, events = c.set_local_switch(LocalSwitch.OFF, sched, TS)
    assert events[0].payload == {"mode": "LocalOverride", "timestamp": TS}
    assert events[1].payload == {"contactorId": 2, "status": "Off", "timestamp": TS, "unexpected": True}
    assert all(c.mode(i).value == "LocalOverride" for i in (1, 2, 3, 4))
    for status, same, evs in (c.override(1, OverrideAction.ON, sched, TS), c.resume(1, sched, TS)):
        assert status.value == "RejectedLocalOverride"
        assert same is c
        assert evs == []
    c, events = c.set_local_switch(LocalSwitch.AUTO, sched, TS)
    modes = [(e.payload["contactorId"], e.payload["mode"]) for e in events
             if e.action == "StreetlightModeStatusNotification"]
    assert modes == [(1, "Schedule"), (2, "RemoteOverride"), (3, "Schedule"), (4, "Schedule")]
    assert c.lights == (False, True, False, False)  # the remote override On survived the local override
    assert Contactors.from_json(c.to_json()) == c


# -- MV fault indicators ---------------------------------------------------------------------------

def test_mv_fault_test_and_reset() -> None:
    rng = random.Random(3)
    config = FaultConfig()
    f = FaultIndicators.new(config, T0, rng)
    status, f, events = f.test(config, TS, rng)
    assert status.value == "Accepted"
    assert [(e["status"], e["errorCode"], e["test"]) for e in events] == [
        ("Faulted", "OverCurrentFailure", True), ("Faulted", "GroundFailure", True)]
    status, f2, events2 = f.test(config, TS, rng)
    assert status.value == "RejectedAlreadyFaulted"
    assert f2 is f
    assert events2 == []
    assert [e["errorCode"] for e in f.status_events(TS)] == ["OverCurrentFailure", "GroundFailure"]
    status, f, events = f.reset(TS, T0)
    assert status.value == "Accepted"
    assert [(e["status"], e["errorCode"], e["info"]) for e in events] == [
        ("Ok", "NoError", "Over current error (MV) resolved"), ("Ok", "NoError", "Ground failure resolved")]
    for e in events:
        validate_request("StatusNotification", e)
    assert f.status_events(TS) == [{"status": "Ok", "errorCode": "NoError", "timestamp": TS}]


def test_mv_fault_without_indicators_is_rejected_and_broken_opto_is_reported() -> None:
    rng = random.Random(4)
    none = FaultConfig(installed=())
    f = FaultIndicators.new(none, T0, rng)
    assert f.test(none, TS, rng)[0].value == "Rejected"
    assert f.reset(TS, T0)[0].value == "Rejected"
    broken = FaultConfig(installed=(FaultConfig().installed[0],), broken_opto_probability=1.0)
    f = FaultIndicators.new(broken, T0, rng)
    _, f, events = f.test(broken, TS, rng)
    assert [e["errorCode"] for e in events] == ["OverCurrentFailure", "MVFaultIndicatorError"]
    _, f, events = f.reset(TS, T0)
    assert [e["info"] for e in events] == ["Over current error (MV) resolved",
                                           "Indicator fault (MV) resolved"]


def test_random_real_faults_latch_until_reset_and_reenter_while_the_cause_persists() -> None:
    rng = random.Random(5)
    config = FaultConfig(real_faults_per_day=4.0, mean_fault_duration=3600.0)
    f = FaultIndicators.new(config, T0, rng)
    t = T0
    raised: list[dict[str, object]] = []
    for _ in range(1000):  # bounded
        deadline = f.next_deadline()
        assert deadline is not None
        t = deadline
        f, events = f.step(config, t, TS, rng)
        raised.extend(events)
        if raised:
            break
    assert raised
    assert raised[0]["status"] == "Faulted"
    assert "test" not in raised[0]
    active = next(i for i in f.indicators if i.alarm.value == "Real")
    assert active.cause_until is not None
    # Reset while the cause persists: the indicator re-enters the fault state and says so again (§M7.9).
    _, f, events = f.reset(TS, t + 1.0)
    assert [(e["status"], e["errorCode"]) for e in events] == [("Faulted", active.kind.value)]
    # After the cause is gone, a reset resolves it with the Table 5 info string.
    f, _ = f.step(config, active.cause_until + 1.0, TS, rng)
    _, f, events = f.reset(TS, active.cause_until + 2.0)
    assert events[0]["errorCode"] == "NoError"
    assert events[0]["info"].endswith("resolved")
    assert FaultIndicators.from_json(f.to_json()) == f


# -- firmware and uploads --------------------------------------------------------------------------

def test_firmware_update_happy_path() -> None:
    cfg = TransferConfig(install_duration=10.0)
    request = {"location": "http://x/fw", "retrieveDate": TS, "requestId": "r1"}
    fw = Firmware().update(request, T0 + 100, T0, cfg)
    assert fw.phase is FirmwarePhase.WAITING
    assert fw.timer_at == T0 + 100
    assert fw.reported_status() == {"status": "None", "requestId": "r1"}
    fw, notes, effects = fw.on_timer(T0 + 100, cfg)
    assert notes == [{"status": "Downloading", "requestId": "r1"}]
    (dl,) = effects
    assert isinstance(dl, Download)
    fw, notes = fw.download_finished(dl.token, b"OS3PSIM-FIRMWARE 2.0.1\nbinary...", T0 + 105, cfg)
    assert [n["status"] for n in notes] == ["Downloaded", "Installing"]
    fw, notes, effects = fw.on_timer(T0 + 115, cfg)
    assert notes == [{"status": "Installed", "requestId": "r1"}]
    assert effects == [Reboot("2.0.1")]
    assert fw.phase is FirmwarePhase.IDLE
    assert fw.reported_status() == {"status": "None"}
    for n in notes:
        validate_request("FirmwareStatusNotification", n)


def test_firmware_retries_then_fails_and_superseded_attempts_are_ignored() -> None:
    cfg = TransferConfig()
    fw = Firmware().update({"location": "http://x/fw", "retrieveDate": TS, "retries": 2, "retryInterval": 30},
                           T0, T0, cfg)
    fw, notes, (dl,) = fw.on_timer(T0, cfg)
    assert isinstance(dl, Download)
    fw, notes = fw.download_finished(dl.token, None, T0 + 1, cfg)
    assert notes == []
    assert fw.timer_at == T0 + 31
    fw, notes, (dl2,) = fw.on_timer(T0 + 31, cfg)
    assert isinstance(dl2, Download)
    assert dl2.attempt == 2
    stale = Firmware.from_json(fw.to_json())
    fw, notes = fw.download_finished(dl2.token - 1, b"OS3PSIM-FIRMWARE 9\n", T0 + 32, cfg)
    assert fw == stale
    assert notes == []
    fw, notes = fw.download_finished(dl2.token, None, T0 + 33, cfg)
    assert notes == [{"status": "DownloadFailed"}]
    assert fw.phase is FirmwarePhase.IDLE
    bad = Firmware().update({"location": "http://x", "retrieveDate": TS}, T0, T0, cfg)
    bad, _, (dl3,) = bad.on_timer(T0, cfg)
    assert isinstance(dl3, Download)
    bad, notes = bad.download_finished(dl3.token, b"not firmware", T0, cfg)
    assert [n["status"] for n in notes] == ["Downloaded", "Installing", "InstallationFailed"]
    assert parse_firmware_image(b"OS3PSIM-FIRMWARE 1.2.3\n") == "1.2.3"
    assert parse_firmware_image(b"\xff\xfe") is None


def test_get_file_machine() -> None:
    up = Uploads()
    req = {"requestId": "g1", "fileType": "MeterValueHistory", "location": "https://h/up",
           "startTime": "2025-12-01T00:00:00Z", "stopTime": "2025-12-02T00:00:00Z"}
    resp, up, notes, (effect,) = up.get_file("SUB 1", req, "20251221120000")
    assert resp == {"status": "Accepted",
                    "fileName": "MeterValueHistory-SUB_1-20251201000000-20251202000000.csv"}
    assert notes == [{"status": "Uploading", "requestId": "g1"}]
    assert up.get_file("SUB 1", req, "x")[0]["status"] == "Rejected"  # one at a time
    up, notes = up.upload_finished(effect.token, True)
    assert notes == [{"status": "Uploaded", "requestId": "g1"}]
    assert up.reported_status() == {"status": "None"}
    assert Uploads().get_file("S", {**req, "location": "ftp://h/x"}, "x")[0]["status"] == "Rejected"
    assert Uploads().get_file("S", {**req, "fileType": "VendorSpecific"}, "x")[0]["status"] == "Rejected"
    resp, up, _, (eff,) = Uploads().get_file("S", {"fileType": "Syslog", "location": "http://h"}, "20251221")
    up, notes = up.upload_finished(eff.token, False)
    assert notes == [{"status": "UploadFailed"}]
    for n in notes:
        validate_request("GetFileStatusNotification", n)


def test_public_surface_is_exported_and_documented() -> None:
    import inspect

    import os3p_sim

    for name in os3p_sim.__all__:
        obj = getattr(os3p_sim, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), name
    public = {n for n in dir(os3p_sim) if not n.startswith("_") and n != "cli"}
    assert public == set(os3p_sim.__all__)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["override", "resume", "local", "schedule"]),
                          st.sampled_from([None, 1, 2, 3, 4]),
                          st.sampled_from(list(OverrideAction)),
                          st.sampled_from(list(LocalSwitch)),
                          st.frozensets(st.sampled_from([1, 2, 3, 4]))), max_size=25))
def test_contactor_invariants_under_any_command_sequence(
        steps: list[tuple[str, int | None, OverrideAction, LocalSwitch, frozenset[int]]]) -> None:
    """Whatever happens: outputs equal what the modes demand, every output change is reported exactly once
    (in order), and remote commands are refused exactly while the local switch is active."""
    c = Contactors()
    scheduled: frozenset[int] = frozenset()
    for kind, cid, action, position, sched_on in steps:
        before = c.lights
        if kind == "schedule":
            scheduled = sched_on
            c, events = c.settle(scheduled.__contains__, TS)
        elif kind == "local":
            c, events = c.set_local_switch(position, scheduled.__contains__, TS)
        else:
            local_active = c.local is not LocalSwitch.AUTO
            if kind == "override":
                status, c, events = c.override(cid, action, scheduled.__contains__, TS)
            else:
                status, c, events = c.resume(cid, scheduled.__contains__, TS)
            assert (status.value == "RejectedLocalOverride") == local_active
        switched = [(e.payload["contactorId"], e.payload["status"] == "On") for e in events
                    if e.action == "StreetlightStatusNotification"]
        pairs = enumerate(zip(before, c.lights, strict=True))
        changed = [(i + 1, now) for i, (was, now) in pairs if was != now]
        assert switched == changed
        for e in events:
            validate_request(e.action, e.payload)
        for i in (1, 2, 3, 4):
            if c.local is not LocalSwitch.AUTO:
                assert c.mode(i).value == "LocalOverride"
                assert c[i].on == (c.local is LocalSwitch.ON)
            elif c[i].remote in (OverrideAction.ON, OverrideAction.OFF):
                assert c[i].on == (c[i].remote is OverrideAction.ON)
            elif c[i].remote is None and kind in ("schedule", "resume"):
                assert c[i].on == (i in scheduled)
