"""Configuration keys: GetConfiguration / ChangeConfiguration semantics (PROTOCOL-DECISIONS §6, annex §M5,
§J6)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from os3p_core import (
    CONFIGURATION_KEYS,
    ConfigurationStore,
    ProfileStore,
    SiteLocation,
    VendorKey,
    sun_events_on_date,
    validate_response,
)

NOW = dt.datetime(2025, 6, 21, 10, 0, tzinfo=dt.UTC)


def values(store: ConfigurationStore, now: dt.datetime = NOW) -> dict[str, tuple[bool, str]]:
    payload = store.get_configuration({}, now)
    assert payload["unknownKey"] == []
    return {k["key"]: (k["readonly"], k["value"]) for k in payload["configurationKey"]}


def change(store: ConfigurationStore, key: str, value: str) -> str:
    return store.change_configuration({"key": key, "value": value}).status


def test_all_keys_with_defaults() -> None:
    store = ConfigurationStore()
    got = values(store)
    assert list(got) == list(CONFIGURATION_KEYS)
    validate_response("GetConfiguration", store.get_configuration({"key": ["TimeZone", "nope"]}, NOW))
    validate_response(
        "ChangeConfiguration", store.change_configuration({"key": "x", "value": "y"}).to_payload()
    )
    assert got["Geolocation"] == (False, "[52.37, 4.90]")
    assert got["TimeZone"] == (False, "Europe/Amsterdam")
    assert got["StreetlightProfileMaxStackLevel"] == (False, "16")
    assert got["HeartbeatInterval"] == (False, "300")
    assert got["websocketPingInterval"] == (False, "60")
    assert got["Sunrise"][0] is True
    assert got["Sunset"][0] is True


def test_sunrise_and_sunset_of_today_in_utc() -> None:
    store = ConfigurationStore()
    got = values(store)
    # Today in Amsterdam is 2025-06-21: sunrise ≈ 03:18 UTC, sunset ≈ 20:06 UTC.
    rise, fall = sun_events_on_date(52.37, 4.90, dt.date(2025, 6, 21), "Europe/Amsterdam")
    assert rise is not None
    assert fall is not None
    assert got["Sunrise"][1] == rise.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["Sunset"][1] == fall.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["Sunrise"][1].startswith("2025-06-21T03:")
    assert got["Sunset"][1].startswith("2025-06-21T20:")
    # "Today" is the local date: 23:30 UTC on the 21st is already the 22nd in Amsterdam.
    late = values(store, dt.datetime(2025, 6, 21, 23, 30, tzinfo=dt.UTC))
    assert late["Sunrise"][1].startswith("2025-06-22T")


def test_sunrise_and_sunset_follow_geolocation_and_timezone_and_are_empty_when_polar() -> None:
    store = ConfigurationStore()
    assert change(store, "Geolocation", "[69.6492, 18.9553]") == "Accepted"
    assert change(store, "TimeZone", "Europe/Oslo") == "Accepted"
    # PROTOCOL-DECISIONS §6: "empty string when there is none (polar)".
    assert values(store, NOW)["Sunrise"][1] == ""  # midnight sun
    assert values(store, dt.datetime(2025, 12, 21, 12, tzinfo=dt.UTC))["Sunset"][1] == ""  # polar night
    autumn = values(store, dt.datetime(2025, 10, 1, 12, tzinfo=dt.UTC))
    assert autumn["Sunrise"][1].startswith("2025-10-01T")
    assert autumn["Sunrise"][1].endswith("Z")
    # The typed views used by the schedule engine follow too.
    assert store.site == SiteLocation(69.6492, 18.9553, ZoneInfo("Europe/Oslo"))
    with pytest.raises(ValueError, match="aware"):
        store.get_configuration({}, dt.datetime(2025, 1, 1))


def test_requested_keys_and_unknown_keys() -> None:
    store = ConfigurationStore()
    payload = store.get_configuration({"key": ["TimeZone", "KVCBX_PROFILE", "TimeZone", "timezone"]}, NOW)
    assert payload == {
        "configurationKey": [{"key": "TimeZone", "readonly": False, "value": "Europe/Amsterdam"}],
        "unknownKey": ["KVCBX_PROFILE", "timezone"],  # keys are case-sensitive
    }
    # An empty list means "all keys", as OCPP 1.6 stations answer it.
    assert store.get_configuration({"key": []}, NOW) == store.get_configuration({}, NOW)


@pytest.mark.parametrize(
    ("key", "value", "status", "stored"),
    [
        ("Geolocation", "[51.5, -0.125]", "Accepted", "[51.5, -0.125]"),
        ("Geolocation", "[ -33.87 ,151.21 ]", "Accepted", "[-33.87, 151.21]"),
        ("Geolocation", "[90, 180]", "Accepted", "[90, 180]"),
        ("Geolocation", "[-90, -180]", "Accepted", "[-90, -180]"),
        ("Geolocation", "[90.0001, 0]", "Rejected", None),
        ("Geolocation", "[0, 180.5]", "Rejected", None),
        ("Geolocation", "52.37, 4.90", "Rejected", None),
        ("Geolocation", "[52.37]", "Rejected", None),
        ("Geolocation", "[52.37, 4.90, 0]", "Rejected", None),
        ("Geolocation", "[nan, 4.9]", "Rejected", None),
        ("Geolocation", "[1e1, 4.9]", "Rejected", None),
        ("Geolocation", "", "Rejected", None),
        ("TimeZone", "America/New_York", "Accepted", "America/New_York"),
        ("TimeZone", "UTC", "Accepted", "UTC"),
        ("TimeZone", "Mars/Olympus", "Rejected", None),
        ("TimeZone", "europe/amsterdam", "Rejected", None),
        ("TimeZone", "localtime", "Rejected", None),
        ("TimeZone", "../etc/passwd", "Rejected", None),
        ("TimeZone", "", "Rejected", None),
        ("HeartbeatInterval", "600", "Accepted", "600"),
        ("HeartbeatInterval", "0", "Rejected", None),  # "integer > 0"
        ("HeartbeatInterval", "-5", "Rejected", None),
        ("HeartbeatInterval", "1.5", "Rejected", None),
        ("HeartbeatInterval", "2147483647", "Accepted", "2147483647"),
        ("HeartbeatInterval", "2147483648", "Rejected", None),
        ("websocketPingInterval", "0", "Accepted", "0"),  # §J6: 0 disables client pings
        ("websocketPingInterval", "007", "Accepted", "7"),
        ("websocketPingInterval", "-1", "Rejected", None),  # §J6: "Negative values are not allowed"
        ("websocketPingInterval", " 10", "Rejected", None),
        ("websocketPingInterval", "1_0", "Rejected", None),
        ("websocketPingInterval", "١٠", "Rejected", None),  # non-ASCII digits that int() would take
        ("websocketPingInterval", "ten", "Rejected", None),
        ("StreetlightProfileMaxStackLevel", "0", "Accepted", "0"),
        ("StreetlightProfileMaxStackLevel", "32", "Accepted", "32"),
        ("StreetlightProfileMaxStackLevel", "-1", "Rejected", None),
        # Read-only and unknown keys → Rejected (§M5, PROTOCOL-DECISIONS §6); the spec's example key too.
        ("Sunrise", "2025-01-01T08:00:00Z", "Rejected", None),
        ("Sunset", "", "Rejected", None),
        ("KVCBX_LANG", "FR", "Rejected", None),
        ("geolocation", "[1, 2]", "Rejected", None),
    ],
)
def test_change_configuration(key: str, value: str, status: str, stored: str | None) -> None:
    store = ConfigurationStore()
    before = values(store)
    result = store.change_configuration({"key": key, "value": value})
    assert result.status == status
    assert result.to_payload() == {"status": status}
    after = values(store)
    if status == "Accepted":
        assert after[key] == (False, stored)
        # Everything else is unchanged (Sunrise / Sunset are derived from Geolocation and TimeZone).
        derived = {key, "Sunrise", "Sunset"}
        assert {k: v for k, v in after.items() if k not in derived} == {
            k: v for k, v in before.items() if k not in derived
        }
    else:
        assert result.reason
        assert after == before
        assert not result.changed


def test_changed_flag_and_typed_views() -> None:
    store = ConfigurationStore()
    assert store.change_configuration({"key": "websocketPingInterval", "value": "60"}).changed is False
    assert store.change_configuration({"key": "websocketPingInterval", "value": "30"}).changed is True
    assert store.websocket_ping_interval == 30
    change(store, "StreetlightProfileMaxStackLevel", "3")
    assert store.max_stack_level == 3
    # The profile store takes the maximum from the configuration.
    profiles = ProfileStore()
    req = {
        "contactorId": 1,
        "streetlightProfiles": [
            {
                "profileId": 1,
                "stackLevel": 4,
                "recurrencyKind": "Daily",
                "daySchedule": [
                    {"start": {"kind": "Sunset", "offset": 0}, "end": {"kind": "Sunrise", "offset": 0}}
                ],
            }
        ],
    }
    assert profiles.set_streetlight_profile(req, max_stack_level=store.max_stack_level).status == "Rejected"
    change(store, "Geolocation", "[-33.87, 151.21]")
    assert store.geolocation == (-33.87, 151.21)


def test_heartbeat_interval_from_boot_notification() -> None:
    store = ConfigurationStore()
    assert store.set_heartbeat_interval(900) is True
    assert store.heartbeat_interval == 900
    assert store.set_heartbeat_interval(900) is False
    # 0 / negative cannot be a HeartbeatInterval ("> 0"): ignored, the value stays.
    assert store.set_heartbeat_interval(0) is False
    assert store.set_heartbeat_interval(-3) is False
    assert store.set_heartbeat_interval(True) is False
    assert store.heartbeat_interval == 900


def test_vendor_keys() -> None:
    def lang(value: str) -> str:
        if value not in {"EN", "FR", "NL"}:
            raise ValueError("unsupported language")
        return value

    store = ConfigurationStore(
        vendor_keys=[VendorKey("KVCBX_PROFILE", "NQC-ACDC"), VendorKey("KVCBX_LANG", "EN", False, lang)]
    )
    # The §M7.3.2 example answer.
    assert store.get_configuration({"key": ["KVCBX_PROFILE"]}, NOW) == {
        "configurationKey": [{"key": "KVCBX_PROFILE", "readonly": True, "value": "NQC-ACDC"}],
        "unknownKey": [],
    }
    assert change(store, "KVCBX_PROFILE", "X") == "Rejected"
    assert change(store, "KVCBX_LANG", "FR") == "Accepted"  # the §M7.1.2 example
    assert change(store, "KVCBX_LANG", "XX") == "Rejected"
    assert values(store)["KVCBX_LANG"] == (False, "FR")
    restored = ConfigurationStore(
        vendor_keys=[VendorKey("KVCBX_PROFILE", "NQC-ACDC"), VendorKey("KVCBX_LANG", "EN", False, lang)]
    )
    restored.restore(json.loads(json.dumps(store.snapshot())))
    assert values(restored) == values(store)
    with pytest.raises(ValueError, match="duplicates"):
        ConfigurationStore(vendor_keys=[VendorKey("TimeZone", "x")])


def test_snapshot_and_restore() -> None:
    store = ConfigurationStore()
    for key, value in (
        ("Geolocation", "[40.71, -74.01]"),
        ("TimeZone", "America/New_York"),
        ("HeartbeatInterval", "120"),
        ("websocketPingInterval", "0"),
        ("StreetlightProfileMaxStackLevel", "4"),
    ):
        assert change(store, key, value) == "Accepted"
    data = json.loads(json.dumps(store.snapshot()))
    restored = ConfigurationStore.from_snapshot(data)
    assert values(restored) == values(store)
    assert restored.site == store.site


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"format": "os3p-configuration/1"},
        {"format": "os3p-configuration/1", "values": {"TimeZone": "Nowhere/Never"}},
        {
            "format": "os3p-configuration/1",
            "values": {"Geolocation": "[52.37, 4.90]", "HeartbeatInterval": "0"},
        },
        {"format": "os3p-configuration/1", "values": {"HeartbeatInterval": 60}},
    ],
)
def test_restore_is_all_or_nothing(data: dict[str, Any]) -> None:
    store = ConfigurationStore()
    change(store, "Geolocation", "[1, 2]")
    before = values(store)
    with pytest.raises(ValueError, match="snapshot"):
        store.restore(data)
    assert values(store) == before
    assert store.geolocation == (1.0, 2.0)


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="Geolocation"):
        ConfigurationStore(geolocation="here")
    with pytest.raises(ValueError, match="TimeZone"):
        ConfigurationStore(timezone="Nowhere")


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from([*CONFIGURATION_KEYS, "Other"]), value=st.text(max_size=30))
def test_arbitrary_changes_never_break_the_store(key: str, value: str) -> None:
    store = ConfigurationStore()
    before = values(store)
    result = store.change_configuration({"key": key, "value": value})
    after = values(store)
    if result.status == "Rejected":
        assert after == before
    else:
        assert result.status == "Accepted"
        assert after[key][1] == store.get_configuration({"key": [key]}, NOW)["configurationKey"][0]["value"]
        # Whatever was accepted survives a snapshot round trip.
        assert values(ConfigurationStore.from_snapshot(store.snapshot())) == after
