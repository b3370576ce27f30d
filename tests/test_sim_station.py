"""The station model through its public doors: switching by schedule, calls of §M7, durability, firmware."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from os3p_core import ProfileStore, SiteLocation, validate_request, validate_response
from os3p_sim import (
    Change,
    Download,
    LocalSwitch,
    Output,
    Reboot,
    SQLiteStore,
    Station,
    StationConfig,
    TransferConfig,
    Upload,
)

#: The spec's SetStreetlightProfile example (§M7.10.3), with the normative clearAllSchedules.
SPEC_PROFILE: dict[str, Any] = {
    "contactorId": 1,
    "clearAllSchedules": True,
    "streetlightProfiles": [{
        "profileId": 1, "stackLevel": 2, "recurrencyKind": "Daily",
        "validFrom": "2015-06-06T00:00:00", "validTo": "2019-09-06T00:00:00",
        "daySchedule": [
            {"start": {"kind": "Sunset", "offset": 3600}, "end": {"kind": "Absolute", "time": "01:00:00"}},
            {"start": {"kind": "Absolute", "time": "06:00:00"}, "end": {"kind": "Sunrise", "offset": 0}},
        ],
    }],
}
AMS = SiteLocation(52.37, 4.90, "Europe/Amsterdam")


def _noon(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, 12, 0, tzinfo=AMS.timezone).timestamp()


def expected_switches(profile: dict[str, Any], first: dt.date, days: int) -> list[tuple[int, str, float]]:
    """Switch instants from the core's effective day schedules (independent of the switching timeline)."""
    store = ProfileStore()
    assert store.set_streetlight_profile(profile).status == "Accepted"
    out: list[tuple[int, str, float]] = []
    for i in range(days):
        sched = store.effective_day_schedule(profile["contactorId"], first + dt.timedelta(days=i), AMS)
        for start, end in sched.intervals:
            out += [(profile["contactorId"], "On", start / 1000), (profile["contactorId"], "Off", end / 1000)]
    return out


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_output(out: Output, action: str | None = None) -> None:
    """Every payload the station produces is schema-valid."""
    if action is not None and out.response is not None:
        validate_response(action, out.response)
    for name, payload in out.change.outbox + out.calls:
        validate_request(name, payload)


def run(station: Station, until: float, store: SQLiteStore | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Drive the station's clock to ``until``; return the durable notifications, in order."""
    sent: list[tuple[str, dict[str, Any]]] = []
    for _ in range(100_000):
        t = station.next_deadline()
        if t > until:
            break
        out = station.step(t)
        _check_output(out)
        if store is not None:
            store.apply(station.identity, out.change, t)
        sent += list(out.change.outbox)
    return sent


def test_a_week_with_a_dst_night_switches_exactly_at_the_effective_schedule() -> None:
    first = dt.date(2018, 10, 24)  # DST ends in the night of 2018-10-27/28 (OS³P day 2018-10-27 lasts 25 h)
    t0 = _noon(first)
    station = Station("SUB-WEEK", StationConfig(), seed=7, now=t0)
    start = station.start(t0)
    assert [a for a, _ in start.change.outbox] == []  # lights off at noon, a clean first boot
    out = station.handle_call("SetStreetlightProfile", SPEC_PROFILE, t0)
    _check_output(out, "SetStreetlightProfile")
    assert out.response == {"status": "Accepted"}
    sent = run(station, _noon(first + dt.timedelta(days=7)) - 1)
    switches = [(p["contactorId"], p["status"], p["timestamp"]) for a, p in sent
                if a == "StreetlightStatusNotification"]
    want = [(c, s, _iso(t)) for c, s, t in expected_switches(SPEC_PROFILE, first, 7)]
    assert switches == want
    assert len(switches) == 28  # two periods a night, every night (sunrise after 06:00 in late October)
    # Meter readings every 15 minutes, and the P1 meter saw the lamps (1.8 kW on contactor 1).
    assert station.meters.p1_kwh > 0


def test_calls_of_the_central_system() -> None:
    t0 = _noon(dt.date(2025, 12, 21))
    station = Station("SUB-CALLS", StationConfig(), seed=1, now=t0)
    station.start(t0)

    def call(action: str, payload: dict[str, Any]) -> Output:
        out = station.handle_call(action, payload, t0)
        _check_output(out, action)
        return out

    assert call("GetConfiguration", {"key": ["TimeZone", "Nope"]}).response == {
        "configurationKey": [{"key": "TimeZone", "readonly": False, "value": "Europe/Amsterdam"}],
        "unknownKey": ["Nope"]}
    assert call("ChangeConfiguration", {"key": "Sunset", "value": "x"}).response == {"status": "Rejected"}
    out = call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"})
    assert out.response == {"status": "Accepted"}
    assert station.heartbeat_interval == 120
    assert ("config", station.configuration.snapshot()) in out.change.kv
    out = call("OverrideStreetlight", {"contactorId": 2, "action": "On"})
    assert out.response == {"status": "Accepted"}
    assert [a for a, _ in out.change.outbox] == ["StreetlightModeStatusNotification",
                                                 "StreetlightStatusNotification"]
    station.set_local_switch(LocalSwitch.OFF, t0)
    assert call("ResumeStreetlight", {"contactorId": 2}).response == {"status": "RejectedLocalOverride"}
    station.set_local_switch(LocalSwitch.AUTO, t0)
    assert call("ResumeStreetlight", {}).response == {"status": "Accepted"}
    assert call("TestMVFaultIndicator", {}).response == {"status": "Accepted"}
    assert call("TestMVFaultIndicator", {}).response == {"status": "RejectedAlreadyFaulted"}
    assert call("ResetMVFaultIndicator", {}).response == {"status": "Accepted"}
    assert call("SetStreetlightProfile", SPEC_PROFILE).response == {"status": "Accepted"}
    # SEM: GetEffectiveStreetlightDaySchedule reports the schedule, not the override mode.
    assert call("OverrideStreetlight", {"contactorId": 1, "action": "Off"}).response == {"status": "Accepted"}
    get = {"contactorId": 1, "at": "2015-12-21T00:00:00"}
    reference = ProfileStore()
    reference.set_streetlight_profile(SPEC_PROFILE)
    answer = call("GetEffectiveStreetlightDaySchedule", get).response
    assert answer == reference.get_effective_day_schedule(get, AMS)
    assert answer is not None
    assert len(answer["daySchedule"]) == 2
    assert call("ClearSingleStreetlightProfile", {"profileId": 99}).response == {"status": "Unknown"}
    # TriggerMessage serves all eight kinds, answering first and sending fresh information.
    kinds = ["BootNotification", "GetFileStatusNotification", "FirmwareStatusNotification", "Heartbeat",
             "MeterValues", "StatusNotification", "StreetlightModeStatusNotification",
             "StreetlightStatusNotification"]
    for kind in kinds:
        out = call("TriggerMessage", {"requestedMessage": kind, "connectorId": 1})
        assert out.response == {"status": "Accepted"}
        assert [a for a, _ in out.calls] == [kind]
    assert call("TriggerMessage", {"requestedMessage": "StreetlightStatusNotification", "connectorId": 9}
                ).response == {"status": "Rejected"}
    assert len(call("TriggerMessage", {"requestedMessage": "StreetlightModeStatusNotification"}).calls) == 4
    out = call("Reset", {})
    assert out.response == {"status": "Accepted"}
    assert out.effects == (Reboot(None),)
    out = call("GetFile", {"requestId": "f1", "fileType": "Syslog", "location": "http://127.0.0.1:1/u"})
    assert out.response is not None
    assert out.response["status"] == "Accepted"
    assert isinstance(out.effects[0], Upload)
    assert station.handle_call("Bogus", {}, t0).error is not None


def test_restart_from_the_store_keeps_profiles_configuration_contactors(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    t0 = _noon(dt.date(2018, 12, 20))
    station = Station("SUB-R", StationConfig(), seed=3, now=t0)
    store.apply("SUB-R", station.start(t0).change, t0)
    for action, payload in (("SetStreetlightProfile", SPEC_PROFILE),
                            ("ChangeConfiguration", {"key": "StreetlightProfileMaxStackLevel", "value": "8"}),
                            ("OverrideStreetlight", {"contactorId": 3, "action": "On"})):
        store.apply("SUB-R", station.handle_call(action, payload, t0).change, t0)
    store.apply("SUB-R", station.boot_accepted(600, t0).change, t0)
    events = run(station, t0 + 20 * 3600, store)
    assert any(p.get("contactorId") == 1 for _, p in events)
    # "kill -9": no shutdown.  The restarted station has everything, and reports the unexpected reboot.
    again = Station("SUB-R", StationConfig(), seed=3, now=t0 + 20 * 3600, stored=store.load("SUB-R"))
    assert again.profiles == station.profiles
    assert again.configuration.max_stack_level == 8
    assert again.configuration.heartbeat_interval == 600
    assert again.contactors == station.contactors
    assert again.meters == station.meters
    assert not again.boot_needed()
    out = again.start(t0 + 20 * 3600)
    assert [(a, p["errorCode"]) for a, p in out.change.outbox] == [("StatusNotification", "OtherError")]
    _check_output(out)
    # A clean shutdown is not reported at the next start.
    store.apply("SUB-R", out.change, t0)
    store.apply("SUB-R", again.shutdown(t0 + 20 * 3600 + 5).change, t0)
    third = Station("SUB-R", StationConfig(), seed=3, now=t0 + 20 * 3600 + 10, stored=store.load("SUB-R"))
    assert third.start(t0 + 20 * 3600 + 10).change.outbox == ()
    # Down across a scheduled switch (sunrise): the station catches up at its next start.
    late = t0 + 21 * 3600
    fourth = Station("SUB-R", StationConfig(), seed=3, now=late, stored=store.load("SUB-R"))
    assert [p["status"] for _, p in fourth.start(late).change.outbox] == ["Off"]
    assert third.boot_count == 3


def test_firmware_update_reboots_with_the_new_version_and_needs_a_new_boot() -> None:
    t0 = _noon(dt.date(2025, 6, 1))
    cfg = StationConfig(transfers=TransferConfig(install_duration=30.0))
    station = Station("SUB-FW", cfg, seed=5, now=t0)
    station.start(t0)
    station.boot_accepted(300, t0)
    assert not station.boot_needed()
    out = station.handle_call("UpdateFirmware", {"location": "http://127.0.0.1:9/fw.bin", "requestId": "u1",
                                                  "retrieveDate": _iso(t0 + 60)}, t0)
    assert out.response == {}
    out = station.step(t0 + 60)
    (download,) = out.effects
    assert isinstance(download, Download)
    assert [p["status"] for _, p in out.change.outbox] == ["Downloading"]
    out = station.download_finished(download.token, b"OS3PSIM-FIRMWARE 2.1.0\n...", t0 + 61)
    assert [p["status"] for _, p in out.change.outbox] == ["Downloaded", "Installing"]
    out = station.step(t0 + 91)
    assert [p for _, p in out.change.outbox] == [{"status": "Installed", "requestId": "u1"}]
    assert out.effects == (Reboot("2.1.0"),)
    assert ("firmware_version", "2.1.0") in out.change.kv
    assert station.boot_fields()["firmwareVersion"] == "2.1.0"
    assert station.boot_needed()  # §M3.2: a changed field means a new BootNotification
    validate_request("BootNotification", station.boot_fields())


def test_same_seed_same_readings() -> None:
    t0 = _noon(dt.date(2025, 3, 1))

    def readings(seed: int) -> list[Any]:
        station = Station("SUB-D", StationConfig(), seed=seed, now=t0)
        station.start(t0)
        calls: list[Any] = []
        for _ in range(50):
            calls += station.step(station.next_deadline()).calls
        return calls

    assert readings(1) == readings(1)
    assert readings(1) != readings(2)


def test_store_change_from_station_round_trips(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "x.db"))
    t0 = _noon(dt.date(2025, 3, 1))
    station = Station("SUB-H", StationConfig(meter_interval=60.0), seed=1, now=t0)
    store.apply("SUB-H", station.start(t0).change, t0)
    run(station, t0 + 3600, store)
    rows = store.meter_history("SUB-H", t0, t0 + 3600)
    assert len(rows) == 60
    assert store.apply("SUB-H", Change(), t0) == []


def test_simulated_local_override_switch_comes_and_goes() -> None:
    t0 = _noon(dt.date(2025, 2, 1))
    station = Station("SUB-LO", StationConfig(local_overrides_per_day=6.0, mean_local_override=900.0),
                      seed=4, now=t0)
    station.start(t0)
    station.handle_call("SetStreetlightProfile", SPEC_PROFILE | {"streetlightProfiles": [
        SPEC_PROFILE["streetlightProfiles"][0] | {"validTo": "2030-01-01T00:00:00"}]}, t0)
    sent = run(station, t0 + 3 * 86400)
    modes = [p for a, p in sent if a == "StreetlightModeStatusNotification"]
    assert any(p["mode"] == "LocalOverride" and "contactorId" not in p for p in modes)
    assert any(p["mode"] == "Schedule" for p in modes)
    # Switches forced by the hardware switch are flagged unexpected (§M6.8); scheduled ones are not.
    switches = [p for a, p in sent if a == "StreetlightStatusNotification"]
    assert any(p.get("unexpected") for p in switches)
    assert any(not p.get("unexpected") for p in switches)
    # While the switch is active, remote commands are refused.
    for _ in range(1000):
        if station.contactors.local is not LocalSwitch.AUTO:
            break
        station.step(station.next_deadline())
    assert station.handle_call("OverrideStreetlight", {"action": "Off"}, station.now).response == {
        "status": "RejectedLocalOverride"}


def test_meter_readings_are_spread_over_the_interval_across_a_fleet() -> None:
    t0 = _noon(dt.date(2025, 3, 1))
    firsts = []
    for i in range(50):
        station = Station(f"SUB-{i}", StationConfig(), seed=1, now=t0)
        station.start(t0)
        firsts.append(station.next_deadline() - t0)
    assert all(0 < f <= 900 for f in firsts)
    assert len({round(f) for f in firsts}) > 40  # not all in the same second
    aligned = Station("SUB-A", StationConfig(meter_offset=0.0), seed=1, now=t0)
    aligned.start(t0)
    assert aligned.next_deadline() == t0 + 900


KINDS = ("BootNotification", "GetFileStatusNotification", "FirmwareStatusNotification", "Heartbeat",
         "MeterValues", "StatusNotification", "StreetlightModeStatusNotification",
         "StreetlightStatusNotification")


def test_trigger_while_not_accepted_yields_exactly_one_message() -> None:
    """PROTOCOL-DECISIONS §5: a Pending station sends one message per TriggerMessage (the core grants one
    credit); Accepted, the same triggers report every contactor and every alarm."""
    t0 = _noon(dt.date(2025, 12, 21))
    station = Station("SUB-TRIG", StationConfig(), seed=1, now=t0)
    station.start(t0)

    def trigger(payload: dict[str, Any], *, accepted: bool) -> list[tuple[str, dict[str, Any]]]:
        out = station.handle_call("TriggerMessage", payload, t0, accepted=accepted)
        _check_output(out, "TriggerMessage")
        assert out.response == {"status": "Accepted"}
        return list(out.calls)

    # Contactors in different modes, and both indicators (over-current and ground) in test alarm.
    assert station.handle_call("OverrideStreetlight", {"contactorId": 3, "action": "On"}, t0).response == {
        "status": "Accepted"}
    assert station.handle_call("TestMVFaultIndicator", {}, t0).response == {"status": "Accepted"}
    for kind in KINDS:
        for extra in ({}, {"connectorId": 3}):
            calls = trigger({"requestedMessage": kind, **extra}, accepted=False)
            assert [a for a, _ in calls] == [kind], (kind, extra)
    # Streetlight status without connectorId: contactor 1 (contactorId is required, §M6.8); with: that one.
    assert trigger({"requestedMessage": "StreetlightStatusNotification"}, accepted=False)[0][1] == {
        "contactorId": 1, "status": "Off", "timestamp": _iso(t0)}
    assert trigger({"requestedMessage": "StreetlightStatusNotification", "connectorId": 3},
                   accepted=False)[0][1]["status"] == "On"
    # Modes differ (3 is RemoteOverride): no station-wide form, contactor 1's mode.
    assert trigger({"requestedMessage": "StreetlightModeStatusNotification"}, accepted=False)[0][1] == {
        "contactorId": 1, "mode": "Schedule", "timestamp": _iso(t0)}
    assert trigger({"requestedMessage": "StreetlightModeStatusNotification", "connectorId": 3},
                   accepted=False)[0][1]["mode"] == "RemoteOverride"
    # Two alarms: the station as a whole in one StatusNotification, the other alarm named in info.
    assert trigger({"requestedMessage": "StatusNotification"}, accepted=False)[0][1] == {
        "status": "Faulted", "errorCode": "OverCurrentFailure", "timestamp": _iso(t0), "test": True,
        "info": "also in alarm: GroundFailure"}
    # Accepted: the full picture, as before.
    assert len(trigger({"requestedMessage": "StreetlightStatusNotification"}, accepted=True)) == 4
    assert len(trigger({"requestedMessage": "StreetlightModeStatusNotification"}, accepted=True)) == 4
    assert [p["errorCode"] for _, p in trigger({"requestedMessage": "StatusNotification"}, accepted=True)
            ] == ["OverCurrentFailure", "GroundFailure"]
    # All contactors back on the schedule: the station-wide mode form without contactorId (§M6.7).
    assert station.handle_call("ResumeStreetlight", {}, t0).response == {"status": "Accepted"}
    assert trigger({"requestedMessage": "StreetlightModeStatusNotification"}, accepted=False)[0][1] == {
        "mode": "Schedule", "timestamp": _iso(t0)}
    # No alarm: a single Ok either way.
    assert station.handle_call("ResetMVFaultIndicator", {}, t0).response == {"status": "Accepted"}
    for accepted in (False, True):
        assert trigger({"requestedMessage": "StatusNotification"}, accepted=accepted) == [
            ("StatusNotification", {"status": "Ok", "errorCode": "NoError", "timestamp": _iso(t0)})]
