"""Deterministic simulation: a week of streetlights in virtual time, the outbox under faults, replay."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_sim_station import SPEC_PROFILE

from os3p_core import ProfileStore, SiteLocation
from os3p_sim import FaultPlan, LocalSwitch, Simulation, StationConfig

#: A second contactor, on all night (Daily, sunset to sunrise): two contactors interleave in the outbox.
NIGHT_PROFILE: dict[str, Any] = {
    "contactorId": 2,
    "streetlightProfiles": [{
        "profileId": 7, "stackLevel": 1, "recurrencyKind": "Daily", "validFrom": "2018-01-01T00:00:00",
        "daySchedule": [{"start": {"kind": "Sunset", "offset": 0}, "end": {"kind": "Sunrise", "offset": 0}}],
    }],
}
AMS = SiteLocation(52.37, 4.90, "Europe/Amsterdam")
TZ = AMS.timezone


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected(profile: dict[str, Any], first: dt.date, days: int) -> list[tuple[int, str, str]]:
    store = ProfileStore()
    assert store.set_streetlight_profile(profile).status == "Accepted"
    cid = profile["contactorId"]
    out: list[tuple[int, str, str]] = []
    for i in range(days):
        for start, end in store.effective_day_schedule(cid, first + dt.timedelta(days=i), AMS).intervals:
            out += [(cid, "On", _iso(start)), (cid, "Off", _iso(end))]
    return out


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 11, 0, tzinfo=TZ)


def test_a_simulated_week_switches_at_the_effective_schedule_and_every_notification_arrives() -> None:
    first = dt.date(2018, 10, 24)  # the OS³P day 2018-10-27 holds the DST night (25 hours)
    sim = Simulation(seed=11, start=_start(first))
    sim.add_station("SUB-WEEK")
    sim.run_for(600)  # booted and heartbeating
    assert "SUB-WEEK" in sim.central.accepted
    sim.central.call("SUB-WEEK", "SetStreetlightProfile", SPEC_PROFILE)
    end = dt.datetime(2018, 10, 31, 12, 0, tzinfo=TZ)
    sim.run_until(end)
    events = sim.central.streetlight_events("SUB-WEEK")
    got = [(r.payload["contactorId"], r.payload["status"], r.payload["timestamp"]) for r in events
           if r.action == "StreetlightStatusNotification"]
    want = expected(SPEC_PROFILE, first, 7)
    assert got == want  # every switch, at the schedule's instant, in order, exactly once
    assert len(got) == 28
    # The notification went out at the switch: it arrived within a few seconds of the instant.
    for r in events:
        switched = dt.datetime.fromisoformat(r.payload["timestamp"].replace("Z", "+00:00")).timestamp()
        assert 0 <= r.time - switched < 5
    # Heartbeats and MeterValues flowed all week.
    actions = [r.action for r in sim.central.received if r.identity == "SUB-WEEK"]
    assert actions.count("Heartbeat") >= 7 * 86400 // 600 - 2
    assert actions.count("MeterValues") >= 7 * 96 - 2
    assert sim.stations["SUB-WEEK"].dead == []


def _run_faulty(seed: int) -> Simulation:
    first = dt.date(2018, 3, 20)  # DST starts in the night of 2018-03-24/25
    t0 = _start(first)
    crash_at = (t0 + dt.timedelta(days=3, hours=9)).timestamp()  # mid-evening of the 4th day
    faults = FaultPlan(disconnects_per_day=6.0, partitions_per_day=6.0, mean_partition=240.0,
                       lose_response_probability=0.1, crashes=(("SUB-F", crash_at),), restart_delay=1800.0)
    sim = Simulation(seed=seed, start=t0, faults=faults)
    sim.add_station("SUB-F", StationConfig(meter_interval=3600.0))
    # The Central System's store hiccups now and then: InternalError means "retry later" (§7).
    flaky = sim.rng

    def inject(identity: str, action: str, payload: dict[str, Any]) -> str | None:
        return "InternalError" if action.startswith("Streetlight") and flaky.random() < 0.1 else None

    sim.central.inject_error = inject

    def configure() -> None:
        sim.central.call("SUB-F", "SetStreetlightProfile", SPEC_PROFILE)
        sim.central.call("SUB-F", "SetStreetlightProfile", NIGHT_PROFILE)
        sim.central.call("SUB-F", "OverrideStreetlight", {"contactorId": 4, "action": "On"})

    sim.at(t0 + dt.timedelta(minutes=10), configure)
    station = sim.stations["SUB-F"]
    sim.at(t0 + dt.timedelta(days=5, hours=2), lambda: station.set_local_switch(LocalSwitch.ON))
    sim.at(t0 + dt.timedelta(days=5, hours=3), lambda: station.set_local_switch(LocalSwitch.AUTO))
    sim.at(t0 + dt.timedelta(days=6), lambda: sim.central.call("SUB-F", "ResumeStreetlight", {}))
    sim.run_until(t0 + dt.timedelta(days=7))
    # Calm at the end (no new faults matter once everything is delivered): let retries drain.
    sim.faults = FaultPlan()
    sim.run_for(3600)
    return sim


def test_outbox_under_disconnects_partitions_and_a_crash_loses_nothing() -> None:
    sim = _run_faulty(seed=5)
    station = sim.stations["SUB-F"]
    assert station.crashes == 1
    assert sim.disconnects > 10
    assert sim.partitions > 10
    truth = [(a, p) for a, p in station.appended if a.startswith("Streetlight")]
    received = [(r.action, r.payload) for r in sim.central.streetlight_events("SUB-F")]
    # Duplicates are adjacent re-sends of one entry whose CALLRESULT was lost; collapse them.
    collapsed = [x for i, x in enumerate(received) if i == 0 or received[i - 1] != x]
    assert collapsed == truth  # every event, in order, none lost
    duplicates = len(received) - len(collapsed)
    assert 0 < duplicates <= sim.lost_results
    assert sim.store.outbox_pending("SUB-F") == []
    assert station.dead == []
    # The model really switched: both contactors, across the crash and the DST night.
    statuses = [p for a, p in truth if a == "StreetlightStatusNotification"]
    assert {p["contactorId"] for p in statuses} == {1, 2, 3, 4}
    assert len(statuses) > 40


def test_same_seed_same_run() -> None:
    def fingerprint(seed: int) -> str:
        first = dt.date(2018, 3, 20)
        sim = Simulation(seed=seed, start=_start(first),
                         faults=FaultPlan(disconnects_per_day=8.0, partitions_per_day=8.0))
        sim.add_station("SUB-D1")
        sim.add_station("SUB-D2", StationConfig(meter_interval=600.0))
        sim.at(_start(first) + dt.timedelta(minutes=5),
               lambda: sim.central.call("SUB-D1", "SetStreetlightProfile", SPEC_PROFILE))
        sim.run_until(_start(first) + dt.timedelta(days=1))
        h = hashlib.sha256()
        for t, direction, identity, text in sim.trace:
            h.update(f"{t:.6f}|{direction}|{identity}|{text}\n".encode())
        return h.hexdigest()

    assert fingerprint(3) == fingerprint(3)
    assert fingerprint(3) != fingerprint(4)


def test_boot_pending_then_rejected_then_accepted() -> None:
    """PROTOCOL-DECISIONS §5: Pending → answer calls, boot again after `interval`, send only what a
    TriggerMessage asked for; Rejected → the Central System closes, the station waits `interval`."""
    t0 = _start(dt.date(2025, 5, 1))
    sim = Simulation(seed=2, start=t0)
    answers = iter(["Pending", "Pending", "Rejected"])
    sim.central.boot_status = lambda identity: next(answers, "Accepted")
    sim.central.retry_interval = 40
    sim.add_station("SUB-P")
    sim.run_for(20)
    assert [r.action for r in sim.central.received] == []  # nothing but BootNotification while Pending
    assert sim.central.call("SUB-P", "TriggerMessage", {"requestedMessage": "StatusNotification"})
    assert sim.central.call("SUB-P", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    sim.run_for(5)
    assert [r.action for r in sim.central.received] == ["StatusNotification"]  # the triggered one only
    answered = [r for r in sim.central.results if r[2] == "GetConfiguration"]
    assert answered[0][3]["configurationKey"][0]["key"] == "HeartbeatInterval"
    sim.run_for(60)  # second Pending at ~40 s, Rejected at ~80 s
    assert "SUB-P" not in sim.central.accepted
    sim.run_for(200)  # waits 40 s after Rejected, reconnects, Accepted
    assert "SUB-P" in sim.central.accepted
    sim.run_for(1300)
    actions = [r.action for r in sim.central.received]
    assert actions.count("Heartbeat") >= 2
    boots = [t for t, d, i, text in sim.trace if d == "up" and '"BootNotification"' in text]
    assert len(boots) == 4
    assert boots[1] - boots[0] >= 40
    assert boots[3] - boots[2] >= 40


def test_one_message_per_trigger_while_pending() -> None:
    """PROTOCOL-DECISIONS §5 "(once per trigger)": while Pending each of the eight TriggerMessage kinds,
    without connectorId and with two MV indicators in alarm, brings exactly one message and the core refuses
    none; once Accepted, the same triggers report every contactor again."""
    t0 = _start(dt.date(2025, 5, 1))
    sim = Simulation(seed=5, start=t0)
    boot = {"status": "Pending"}
    sim.central.boot_status = lambda identity: boot["status"]
    sim.central.retry_interval = 900
    station = sim.add_station("SUB-TP")
    sim.run_for(20)
    assert station.conn is not None
    assert station.conn.boot_state.value == "Pending"
    assert sim.central.call("SUB-TP", "TestMVFaultIndicator", {})
    sim.run_for(5)
    kinds = ["GetFileStatusNotification", "FirmwareStatusNotification", "Heartbeat", "MeterValues",
             "StatusNotification", "StreetlightModeStatusNotification", "StreetlightStatusNotification",
             "BootNotification"]
    for kind in kinds:
        assert sim.central.call("SUB-TP", "TriggerMessage", {"requestedMessage": kind})
    sim.run_for(30)
    assert station.conn is not None
    assert station.conn.boot_state.value == "Pending"
    answers = [r[3] for r in sim.central.results if r[2] == "TriggerMessage"]
    assert answers == [{"status": "Accepted"}] * len(kinds)
    got = [r.action for r in sim.central.received]
    assert sorted(got) == sorted(kinds[:-1])  # one each (the BootNotification is answered, not committed)
    boots = [text for _, d, _, text in sim.trace if d == "up" and '"BootNotification"' in text]
    assert len(boots) == 2  # the boot, and the triggered one
    assert not station.refused
    status = [r.payload for r in sim.central.received if r.action == "StatusNotification"]
    assert status[0]["status"] == "Faulted"
    assert status[0]["info"] == "also in alarm: GroundFailure"
    # Accepted (the next BootNotification, after the retry interval): the full picture again.
    boot["status"] = "Accepted"
    sim.run_for(900)
    assert "SUB-TP" in sim.central.accepted
    before = len(sim.central.received)
    assert sim.central.call("SUB-TP", "TriggerMessage", {"requestedMessage": "StreetlightStatusNotification"})
    sim.run_for(30)
    after = [r.payload["contactorId"] for r in sim.central.received[before:]
             if r.action == "StreetlightStatusNotification"]
    assert after == [1, 2, 3, 4]
    # Nothing refused all along: the periodic MeterValues due while Pending were not even tried (§5); the
    # readings are in the meter history.
    assert not station.refused
    accepted_at = next(t for t, d, _, text in sim.trace if d == "down" and '"Accepted"' in text
                       and '"interval"' in text)
    history = sim.store.meter_history("SUB-TP", t0.timestamp(), accepted_at)
    assert any(v[0]["context"] == "Sample.Periodic" for _, v in history)
    assert not [r for r in sim.central.received if r.action == "MeterValues" and r.time < accepted_at
                and r.payload["meterValue"][0]["sampledValue"][0]["context"] != "Trigger"]


def test_firmware_getfile_and_reset_in_virtual_time() -> None:
    t0 = _start(dt.date(2025, 6, 2))
    sim = Simulation(seed=9, start=t0)
    sim.files["https://files.example/fw/4.2.0.bin"] = b"OS3PSIM-FIRMWARE 4.2.0\n" + bytes(1000)
    station = sim.add_station("SUB-T", StationConfig(meter_interval=300.0))
    sim.run_for(3600)
    retrieve = (t0 + dt.timedelta(hours=2)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sim.central.call("SUB-T", "UpdateFirmware", {"location": "https://files.example/fw/4.2.0.bin",
                                                  "retrieveDate": retrieve, "requestId": "u-1"})
    sim.run_for(3 * 3600)
    statuses = [r.payload["status"] for r in sim.central.received if r.action == "FirmwareStatusNotification"]
    assert statuses == ["Downloading", "Downloaded", "Installing", "Installed"]
    boots = [json.loads(text)[3] for t, d, i, text in sim.trace if d == "up" and '"BootNotification"' in text]
    assert [b["firmwareVersion"] for b in boots] == ["1.0.0", "4.2.0"]  # §M3.2: changed field, new boot
    # GetFile: the meter history of the last hour lands at <location>/<fileName>.
    start = (sim.now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sim.central.call("SUB-T", "GetFile", {"requestId": "g-1", "fileType": "MeterValueHistory",
                                          "location": "https://files.example/up", "startTime": start,
                                          "stopTime": sim.now.strftime("%Y-%m-%dT%H:%M:%SZ")})
    sim.run_for(60)
    uploads = [k for k in sim.files if k.startswith("https://files.example/up/")]
    assert len(uploads) == 1
    rows = sim.files[uploads[0]].decode().splitlines()
    assert len({r.split(",")[0] for r in rows[1:]}) == 12  # twelve 5-minute readings in the hour
    assert [r.payload for r in sim.central.received if r.action == "GetFileStatusNotification"] == [
        {"status": "Uploading", "requestId": "g-1"}, {"status": "Uploaded", "requestId": "g-1"}]
    # Reset: a clean reboot, back without a BootNotification (nothing changed), no unexpected-reboot report.
    sim.central.call("SUB-T", "Reset", {})
    sim.run_for(1800)
    assert station.crashes == 0
    assert len([1 for t, d, i, text in sim.trace if d == "up" and '"BootNotification"' in text]) == 2
    assert not [r for r in sim.central.received if r.action == "StatusNotification"]
    assert sim.store.load("SUB-T")["boot_count"] == 3


def test_a_notification_that_can_never_succeed_is_dead_lettered_and_does_not_block() -> None:
    t0 = _start(dt.date(2018, 12, 1))
    sim = Simulation(seed=4, start=t0)

    refused: list[dict[str, Any]] = []

    def inject(identity: str, action: str, payload: dict[str, Any]) -> str | None:
        # The Central System refuses the first switch-off for good (any code but the three "retry" ones).
        if payload.get("status") == "Off" and (not refused or refused[0] == payload):
            refused.append(payload)
            return "PropertyConstraintViolation"
        return None

    sim.central.inject_error = inject
    sim.add_station("SUB-X")
    sim.at(t0 + dt.timedelta(minutes=5),
           lambda: sim.central.call("SUB-X", "SetStreetlightProfile", SPEC_PROFILE))
    sim.run_until(t0 + dt.timedelta(days=2))
    station = sim.stations["SUB-X"]
    assert [(a, p["status"], code) for a, p, code in station.dead] == [
        ("StreetlightStatusNotification", "Off", "PropertyConstraintViolation")]
    (dead,) = sim.store.dead_letters("SUB-X")
    assert dead.error == "PropertyConstraintViolation"
    truth = [p for a, p in station.appended if a == "StreetlightStatusNotification"]
    got = [r.payload for r in sim.central.streetlight_events("SUB-X")]
    assert got == [p for p in truth if p != dead.payload]  # everything else, in order
    assert sim.store.outbox_pending("SUB-X") == []


@settings(max_examples=6, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_no_streetlight_event_is_lost_for_any_seed(seed: int) -> None:
    """The outbox guarantee does not depend on a lucky seed: two faulty days, a crash, every event arrives."""
    t0 = _start(dt.date(2018, 10, 26))  # across the autumn DST night
    crash_at = (t0 + dt.timedelta(hours=30)).timestamp()
    faults = FaultPlan(disconnects_per_day=12.0, partitions_per_day=12.0, mean_partition=300.0,
                       lose_response_probability=0.2, crashes=(("SUB-H", crash_at),), restart_delay=600.0)
    sim = Simulation(seed=seed, start=t0, faults=faults)
    sim.central.inject_error = lambda i, a, p: "GenericError" if sim.rng.random() < 0.1 else None
    sim.add_station("SUB-H", StationConfig(meter_interval=3600.0, local_overrides_per_day=4.0))
    sim.at(t0 + dt.timedelta(minutes=3),
           lambda: sim.central.call("SUB-H", "SetStreetlightProfile", SPEC_PROFILE))
    sim.run_until(t0 + dt.timedelta(days=2))
    sim.faults = FaultPlan()
    sim.central.inject_error = lambda i, a, p: None
    sim.run_for(3600)
    station = sim.stations["SUB-H"]
    truth = [(a, p) for a, p in station.appended if a.startswith("Streetlight")]
    received = [(r.action, r.payload) for r in sim.central.streetlight_events("SUB-H")]
    collapsed = [x for i, x in enumerate(received) if i == 0 or received[i - 1] != x]
    assert collapsed == truth
    assert len(received) - len(collapsed) <= sim.lost_results
    assert sim.store.outbox_pending("SUB-H") == []
    assert station.crashes == 1
    assert len(truth) >= 8  # two nights of two periods, plus the manual switch's events
