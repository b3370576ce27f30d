"""Test helpers: two sans-IO connections joined by an in-memory link (after h11's tests/helpers.py).

Only the public API of ``os3p_core`` is used.  Other test modules (trio, simulator, central) may
import these helpers and the sample payloads.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from os3p_core import (
    Call,
    CallReceived,
    Config,
    Connection,
    ErrorCode,
    Event,
    ResultReceived,
    Role,
)

# ---------------------------------------------------------------------------------------------
# Valid sample payloads (annex §M6/§M7)

#: The annex §M6.1.2 example request.
BOOT_REQUEST: dict[str, Any] = {
    "vendor": "BrandX",
    "model": "SUBS-A1",
    "stationNumber": "987654321",
    "serialNumber": "AQ1234VB5678",
    "firmwareVersion": "1.1.0",
    "iccid": "83310415107943019317",
    "imsi": "080921439201835338",
}
NOW_TEXT = "2026-11-26T08:00:00Z"
HEARTBEAT_RESPONSE: dict[str, Any] = {"currentTime": NOW_TEXT}
STATUS_REQUEST: dict[str, Any] = {"status": "Ok", "errorCode": "NoError", "timestamp": NOW_TEXT}
RESET_REQUEST: dict[str, Any] = {"type": "Soft"}
RESET_RESPONSE: dict[str, Any] = {"status": "Accepted"}
GET_CONFIGURATION_RESPONSE: dict[str, Any] = {"configurationKey": [{"key": "TimeZone", "readonly": False}]}


# ---------------------------------------------------------------------------------------------
# The annex's examples (§M6.x.2 / §M7.x.2), transcribed as printed (tests/test_schemas.py checks the
# transcription against the spec text), for the schema tests and the typed-payload tests.
# (annex section, action, kind, payload, expected outcome)
# expected None: validates.  Otherwise (ErrorCode, path, rule): rejected for the documented reason.

Expected = tuple[ErrorCode, str, str] | None

ANNEX_METER_VALUES: dict[str, Any] = {
    "meterValue": [
        {
            "timestamp": "2013-03-07T16:52:16Z",
            "sampledValue": [
                {"value": "12", "unit": "A", "measurand": "Current.L1"},
                {"value": "300", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
            ],
        },
        {
            "timestamp": "2013-03-07T19:52:16Z",
            "sampledValue": [
                {"value": "20", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
                {"value": "40", "unit": "kW", "location": "P1Meter", "measurand": "ActivePower.L1"},
            ],
        },
    ]
}
ANNEX_SET_PROFILE: dict[str, Any] = {
    "contactorId": 1,
    "clearSchedule": True,
    "streetlightProfiles": [
        {
            "profileId": 1,
            "stackLevel": 2,
            "recurrencyKind": "Daily",
            "validFrom": "2015-06-06T00:00:00",
            "validTo": "2019-09-06T00:00:00",
            "daySchedule": [
                {
                    "start": {"kind": "Sunset", "offset": 3600},
                    "end": {"kind": "Absolute", "time": "01:00:00"},
                },
                {
                    "start": {"kind": "Absolute", "time": "06:00:00"},
                    "end": {"kind": "Sunrise", "offset": 0},
                },
            ],
        }
    ],
}


ANNEX_EXAMPLES: list[tuple[str, str, str, dict[str, Any], Expected]] = [
    (
        "§M6.1.2",
        "BootNotification",
        "Request",
        BOOT_REQUEST,
        None,
    ),
    (
        "§M6.1.2",
        "BootNotification",
        "Response",
        {"status": "Accepted", "currentTime": "2013-02-01T15:09:18Z", "interval": 1200},
        None,
    ),
    ("§M6.2.3", "GetFileStatusNotification", "Request", {"status": "Uploaded"}, None),
    ("§M6.2.3", "GetFileStatusNotification", "Response", {}, None),
    ("§M6.3.2", "FirmwareStatusNotification", "Request", {"status": "DownloadFailed"}, None),
    ("§M6.3.2", "FirmwareStatusNotification", "Response", {}, None),
    ("§M6.4.2", "Heartbeat", "Request", {}, None),
    ("§M6.4.2", "Heartbeat", "Response", {"currentTime": "2013-02-01T15:09:18Z"}, None),
    (
        "§M6.5.2",
        "MeterValues",
        "Request",
        ANNEX_METER_VALUES,
        None,
    ),
    ("§M6.5.2", "MeterValues", "Response", {}, None),
    (
        "§M6.6.2",
        "StatusNotification",
        "Request",
        {
            "status": "Ok",
            "errorCode": "NoError",
            "info": "",
            "timestamp": "2013-02-01T15:09:18Z",
            "vendorId": "",
            "vendorErrorCode": "",
        },
        None,
    ),
    ("§M6.6.2", "StatusNotification", "Response", {}, None),
    # §M6.7.2 "example for all contactorIds"
    (
        "§M6.7.2",
        "StreetlightModeStatusNotification",
        "Request",
        {"mode": "LocalOverride", "timestamp": "2013-02-01T15:09:18Z"},
        None,
    ),
    # §M6.7.2 "example for specific contactorId"
    (
        "§M6.7.2",
        "StreetlightModeStatusNotification",
        "Request",
        {"contactorId": 1, "mode": "Schedule", "timestamp": "2013-02-01T15:09:18Z"},
        None,
    ),
    ("§M6.7.2", "StreetlightModeStatusNotification", "Response", {}, None),
    (
        "§M6.8.2",
        "StreetlightStatusNotification",
        "Request",
        {"contactorId": 2, "status": "On", "timestamp": "2013-02-01T15:09:18Z"},
        None,
    ),
    ("§M6.8.2", "StreetlightStatusNotification", "Response", {}, None),
    ("§M7.1.2", "ChangeConfiguration", "Request", {"key": "KVCBX_LANG", "value": "FR"}, None),
    ("§M7.1.2", "ChangeConfiguration", "Response", {"status": "Accepted"}, None),
    # Schema-valid; profileId with stackLevel is answered Rejected by the station (§8, see the errata test).
    (
        "§M7.2.2",
        "ClearSingleStreetlightProfile",
        "Request",
        {"profileId": 2, "contactorId": 1, "stackLevel": 3},
        None,
    ),
    ("§M7.2.2", "ClearSingleStreetlightProfile", "Response", {"status": "Accepted"}, None),
    ("§M7.3.2", "GetConfiguration", "Request", {"key": ["KVCBX_PROFILE"]}, None),
    (
        "§M7.3.2",
        "GetConfiguration",
        "Response",
        {
            "configurationKey": [{"key": "KVCBX_PROFILE", "readonly": True, "value": "NQC-ACDC"}],
            "unknownKey": [],
        },
        None,
    ),
    (
        "§M7.4.2",
        "GetEffectiveStreetlightDaySchedule",
        "Request",
        {"contactorId": 1, "at": "2015-07-07T00:00:00"},
        None,
    ),
    (
        "§M7.4.2",
        "GetEffectiveStreetlightDaySchedule",
        "Response",
        {
            "status": "Accepted",
            "contactorId": 1,
            "daySchedule": [
                {"start": "20:11:00", "end": "23:00:00"},
                {"start": "05:30:00", "end": "07:00:00"},
            ],
        },
        None,
    ),
    (
        "§M7.5.2",
        "GetFile",
        "Request",
        {
            "requestId": "08fb86a4-3e9b-11e6-ac61-9e71128cae77",
            "fileType": "MeterValueHistory",
            "location": "ftp://root:root@sftp.oursystem.foo/tmp",
            "startTime": "2013-02-01T15:09:18Z",
            "stopTime": "2013-02-01T15:09:18Z",
        },
        None,
    ),
    (
        "§M7.5.2",
        "GetFile",
        "Response",
        {"status": "Accepted", "fileName": "MeterValuesHistory=20160515-20160615.txt"},
        None,
    ),
    ("§M7.6.2", "OverrideStreetlight", "Request", {"contactorId": 1, "action": "On"}, None),
    ("§M7.6.2", "OverrideStreetlight", "Response", {"status": "Accepted"}, None),
    ("§M7.7.2", "ResumeStreetlight", "Request", {"contactorId": 1, "type": "Immediate"}, None),
    ("§M7.7.2", "ResumeStreetlight", "Response", {"status": "Accepted"}, None),
    ("§M7.8.2", "Reset", "Request", {"type": "Soft"}, None),
    ("§M7.8.2", "Reset", "Response", {"status": "Accepted"}, None),
    ("§M7.9.2", "ResetMVFaultIndicator", "Request", {}, None),
    ("§M7.9.2", "ResetMVFaultIndicator", "Response", {"status": "Accepted"}, None),
    (
        "§M7.10.3",
        "SetStreetlightProfile",
        "Request",
        ANNEX_SET_PROFILE,
        None,
    ),
    ("§M7.10.3", "SetStreetlightProfile", "Response", {"status": "Accepted"}, None),
    ("§M7.11.2", "TestMVFaultIndicator", "Request", {}, None),
    ("§M7.11.2", "TestMVFaultIndicator", "Response", {"status": "Accepted"}, None),
    (
        "§M7.12.2",
        "TriggerMessage",
        "Request",
        {"requestedMessage": "StatusNotification", "connectorId": 2},
        None,
    ),
    ("§M7.12.2", "TriggerMessage", "Response", {"status": "Accepted"}, None),
    (
        "§M7.13.2",
        "UpdateFirmware",
        "Request",
        {
            "retrieveDate": "2013-02-01T15:09:18Z",
            "location": "ftp://root:root@fork.gir.foo/tmp/kvcbx-updt.amx",
            "retries": 4,
            "retryInterval": 20,
        },
        None,
    ),
    ("§M7.13.2", "UpdateFirmware", "Response", {}, None),
    # The two payloads shown in the first part of the spec (§J4.2, §J4.3).  §J4.2's BootNotification
    # is an illustration borrowed from OCPP: it lacks five of the annex's required fields, so it is
    # rejected (docs/errata.md); §J4.3's response is valid.
    (
        "§J4.2",
        "BootNotification",
        "Request",
        {"vendor": "VendorX", "model": "MDL1"},
        (ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION, "data.stationNumber", "required"),
    ),
    (
        "§J4.3",
        "BootNotification",
        "Response",
        {"status": "Accepted", "currentTime": "2013-02-01T20:53:32.486Z", "interval": 300},
        None,
    ),
]


#: A minimal valid SetStreetlightProfile profile: every night, from sunset to sunrise.
NIGHTLY_PROFILE: dict[str, Any] = {
    "profileId": 1,
    "stackLevel": 0,
    "recurrencyKind": "Daily",
    "daySchedule": [{"start": {"kind": "Sunset", "offset": 0}, "end": {"kind": "Sunrise", "offset": 0}}],
}


def profile_request(**changes: Any) -> dict[str, Any]:
    """A SetStreetlightProfile request for contactor 1 with one profile: NIGHTLY_PROFILE with ``changes``."""
    return {"contactorId": 1, "streetlightProfiles": [{**NIGHTLY_PROFILE, **changes}]}


def start_point_request(start: dict[str, Any]) -> dict[str, Any]:
    """A SetStreetlightProfile request whose one period starts at ``start`` and ends at sunrise."""
    return profile_request(daySchedule=[{"start": start, "end": {"kind": "Sunrise", "offset": 0}}])


def boot_response(status: str = "Accepted", interval: int = 300) -> dict[str, Any]:
    """A BootNotificationResponse payload."""
    return {"status": status, "currentTime": NOW_TEXT, "interval": interval}


def trigger_request(action: str) -> dict[str, Any]:
    """A TriggerMessageRequest asking for ``action``."""
    return {"requestedMessage": action}


def meter_values_request(samples: int = 30) -> dict[str, Any]:
    """A MeterValues request with one meterValue of ``samples`` sampledValues."""
    measurands = ["Voltage.L1N", "Voltage.L2N", "Voltage.L3N", "Current.L1", "Current.L2", "Current.L3"]
    return {
        "meterValue": [
            {
                "timestamp": NOW_TEXT,
                "sampledValue": [
                    {
                        "value": f"{230 + i * 0.1:.1f}",
                        "measurand": measurands[i % len(measurands)],
                        "unit": "V" if i % 6 < 3 else "A",
                        "context": "Sample.Periodic",
                        "location": "Out",
                    }
                    for i in range(samples)
                ],
            }
        ]
    }


def counter_ids(prefix: str) -> Callable[[], str]:
    """A deterministic id factory: ``prefix0``, ``prefix1``, ..."""
    numbers = itertools.count()
    return lambda: f"{prefix}{next(numbers)}"


# ---------------------------------------------------------------------------------------------


class ConnectionPair:
    """A Central System and a Substation joined by an in-memory, lossless, in-order link.

    ``now`` is the shared virtual clock.  Messages move only when :meth:`flush` (or a helper that
    calls it) says so, so tests control interleaving exactly.  ``wire`` records every message as
    ``(sender role, text)``.
    """

    def __init__(
        self,
        *,
        central_config: Config | None = None,
        substation_config: Config | None = None,
        previously_accepted: bool = False,
    ) -> None:
        self.central = Connection(
            Role.CENTRAL_SYSTEM,
            central_config or Config(id_factory=counter_ids("cs-")),
            previously_accepted=previously_accepted,
        )
        self.substation = Connection(
            Role.SUBSTATION,
            substation_config or Config(id_factory=counter_ids("ss-")),
            previously_accepted=previously_accepted,
        )
        self.now = 0.0
        self.wire: list[tuple[Role, str]] = []

    @property
    def conns(self) -> tuple[Connection, Connection]:
        return self.central, self.substation

    def peer(self, conn: Connection) -> Connection:
        return self.substation if conn is self.central else self.central

    def flush(self, conn: Connection) -> list[str]:
        """Deliver everything ``conn`` has to send to its peer; return the texts."""
        texts = conn.messages_to_send()
        peer = self.peer(conn)
        for text in texts:
            self.wire.append((conn.role, text))
            peer.receive_message(text, self.now)
        return texts

    def flush_all(self) -> None:
        """Deliver in both directions until both outboxes are empty."""
        for _ in range(100):
            if not (self.flush(self.central) or self.flush(self.substation)):
                return
        raise AssertionError("the link did not settle")

    @staticmethod
    def events(conn: Connection) -> list[Event]:
        """Drain ``conn``'s events."""
        out: list[Event] = []
        while (event := conn.next_event()) is not None:
            out.append(event)
        return out

    def call(
        self, caller: Connection, action: str, payload: Any = None, response: Any = None
    ) -> tuple[CallReceived, list[Event]]:
        """A complete round trip: ``caller`` sends a call, the peer answers with ``response``.

        Returns the peer's CallReceived and the caller's events.
        """
        caller.send(Call(action, {} if payload is None else payload), self.now)
        self.flush(caller)
        callee = self.peer(caller)
        received = [e for e in self.events(callee) if isinstance(e, CallReceived)]
        assert len(received) == 1, received
        callee.send(received[0].result({} if response is None else response), self.now)
        self.flush(callee)
        return received[0], self.events(caller)

    def boot(self, status: str = "Accepted", interval: int = 300) -> list[Event]:
        """The Substation boots; the Central System answers ``status``.  Returns the Substation's events."""
        _, events = self.call(
            self.substation, "BootNotification", BOOT_REQUEST, boot_response(status, interval)
        )
        self.events(self.central)  # the Central System's BootStateChanged
        assert isinstance(events[0], ResultReceived)
        return events


# ---------------------------------------------------------------------------------------------
# Benchmarks


def run_quick_bench(script: str, timeout: float = 300) -> str:
    """Run ``benchmarks/<script> --quick`` in a fresh interpreter; return its output (raise if it fails).

    For smoke tests only: the figures of a quick run mean nothing (``benchmarks/RESULTS.md`` has real ones).
    """
    path = Path(__file__).resolve().parent.parent / "benchmarks" / script
    return subprocess.run(
        [sys.executable, str(path), "--quick"], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout
