"""Interop with an independent implementation: the mobilityhouse ``ocpp`` package (its OCPP-J RPC
layer, ``ChargePoint``) on the ``websockets`` package (asyncio), run in a thread.

- the peer as a Substation against our Central System server;
- the peer as a Central System that our Substation client connects to.

Exchanged both ways: BootNotification, Heartbeat, MeterValues, StreetlightStatusNotification
(station → Central System), SetStreetlightProfile, GetConfiguration (Central System → station).
OS³P actions are not OCPP 1.6 actions, so the peer uses its custom-action hooks: ``@on("<Action>")``
handlers and ``call()`` with payload dataclasses named after the action, with its OCPP schema
validation skipped (the OS³P schemas are validated on our side).
"""

from __future__ import annotations

import asyncio
import queue
from dataclasses import dataclass, field, make_dataclass
from types import SimpleNamespace
from typing import Any

import trio
from ocpp.routing import on
from ocpp.v16 import ChargePoint
from test_trio_support import BOOT, FAST_CLIENT, FAST_SERVER, CentralApp
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from os3p_core import Action, structure_request
from os3p_core.payloads import (
    GenericStatus,
    GetConfigurationRequest,
    GetConfigurationResponse,
    RegistrationStatus,
    SetStreetlightProfileRequest,
    SetStreetlightProfileResponse,
)
from os3p_trio import Router, Session, open_central_system, open_substation

PROFILE = {
    "contactorId": 1,
    "streetlightProfiles": [
        {
            "profileId": 1,
            "stackLevel": 0,
            "recurrencyKind": "Daily",
            "daySchedule": [
                {"start": {"kind": "Sunset", "offset": 0}, "end": {"kind": "Sunrise", "offset": 0}}
            ],
        }
    ],
}
CONFIG_KEYS = [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
NOW = "2026-11-26T08:00:00.000Z"


class _Result:
    """What the peer's ``call()`` builds from a CALLRESULT (it needs a class per action name)."""

    def __init__(self, **payload: Any) -> None:
        self.payload = payload


_ACTIONS_USED = (
    "BootNotification",
    "Heartbeat",
    "MeterValues",
    "StreetlightStatusNotification",
    "SetStreetlightProfile",
    "GetConfiguration",
)
_RESULTS = SimpleNamespace(**dict.fromkeys(_ACTIONS_USED, _Result))

# Request payloads for the peer's call(): dataclasses named exactly as the OS³P action.
BootNotification = make_dataclass(
    "BootNotification",
    [
        (f, str)
        for f in ("vendor", "model", "station_number", "serial_number", "firmware_version", "iccid", "imsi")
    ],
)
Heartbeat = make_dataclass("Heartbeat", [])
MeterValues = make_dataclass("MeterValues", [("meter_value", list)])
StreetlightStatusNotification = make_dataclass(
    "StreetlightStatusNotification", [("contactor_id", int), ("status", str), ("timestamp", str)]
)
SetStreetlightProfile = make_dataclass(
    "SetStreetlightProfile", [("contactor_id", int), ("streetlight_profiles", list)]
)
GetConfiguration = make_dataclass("GetConfiguration", [("key", list)])


@dataclass
class _Status:
    status: str


@dataclass
class _ConfigurationResult:
    configuration_key: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _BootResult:
    current_time: str
    interval: int
    status: str


@dataclass
class _HeartbeatResult:
    current_time: str


@dataclass
class _Empty:
    pass


class PeerStation(ChargePoint):  # type: ignore[misc]
    """The ``ocpp`` package as an OS³P Substation."""

    _call_result = _RESULTS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.got: dict[str, Any] = {}
        self.done = asyncio.Event()

    @on("SetStreetlightProfile", skip_schema_validation=True)
    def on_profile(self, **payload: Any) -> _Status:
        self.got["SetStreetlightProfile"] = payload
        return _Status("Accepted")

    @on("GetConfiguration", skip_schema_validation=True)
    def on_get_configuration(self, **payload: Any) -> _ConfigurationResult:
        self.got["GetConfiguration"] = payload
        self.done.set()
        return _ConfigurationResult(configuration_key=CONFIG_KEYS)


def run_peer_station(port: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with connect(f"ws://127.0.0.1:{port}/OS3P/PEER%201", subprotocols=["OS3P1.0"]) as ws:  # type: ignore[list-item]
            cp = PeerStation("PEER 1", ws)
            reader = asyncio.create_task(cp.start())
            results: dict[str, Any] = {"subprotocol": ws.subprotocol}
            boot = BootNotification(
                BOOT.vendor,
                BOOT.model,
                BOOT.station_number,
                BOOT.serial_number,
                BOOT.firmware_version,
                BOOT.iccid,
                BOOT.imsi,
            )
            results["BootNotification"] = (await cp.call(boot, skip_schema_validation=True)).payload
            results["Heartbeat"] = (await cp.call(Heartbeat(), skip_schema_validation=True)).payload
            mv = MeterValues(
                [{"timestamp": NOW, "sampled_value": [{"value": "42", "measurand": "Voltage.L1N"}]}]
            )
            results["MeterValues"] = (await cp.call(mv, skip_schema_validation=True)).payload
            sls = StreetlightStatusNotification(1, "On", NOW)
            results["StreetlightStatusNotification"] = (
                await cp.call(sls, skip_schema_validation=True)
            ).payload
            # A payload that breaks the OS³P schema: our server answers with a CALLERROR.
            try:
                await cp.call(
                    StreetlightStatusNotification(9, "On", NOW), suppress=False, skip_schema_validation=True
                )
            except Exception as exc:
                results["invalid"] = type(exc).__name__
            await asyncio.wait_for(cp.done.wait(), 10)
            results["got"] = cp.got
            reader.cancel()
            return results

    return asyncio.run(main())


async def test_ocpp_peer_as_substation_against_our_server() -> None:
    app = CentralApp((RegistrationStatus.ACCEPTED, 300))
    outcome: dict[str, Any] = {}
    with trio.fail_after(20):
        async with (
            open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server,
            trio.open_nursery() as nursery,
        ):

            async def peer() -> None:
                outcome.update(
                    await trio.to_thread.run_sync(run_peer_station, server.port, abandon_on_cancel=True)
                )

            nursery.start_soon(peer)
            await app.wait_for("StreetlightStatusNotification")
            profile = structure_request(Action.SET_STREETLIGHT_PROFILE, PROFILE)
            assert isinstance(profile, SetStreetlightProfileRequest)
            answer = await server.call("PEER 1", profile)
            assert answer == SetStreetlightProfileResponse(status=GenericStatus.ACCEPTED)
            config = await server.call("PEER 1", GetConfigurationRequest(key=("HeartbeatInterval",)))
            assert isinstance(config, GetConfigurationResponse)
            assert config.configuration_key is not None
            assert config.configuration_key[0].value == "300"
    assert outcome["subprotocol"] == "OS3P1.0"
    assert outcome["BootNotification"]["status"] == "Accepted"
    assert outcome["BootNotification"]["interval"] == 300
    assert "current_time" in outcome["Heartbeat"]
    assert outcome["MeterValues"] == {}
    assert outcome["StreetlightStatusNotification"] == {}
    assert outcome["invalid"] == "PropertyConstraintViolationError"  # contactorId 9 > maximum 4
    assert outcome["got"]["SetStreetlightProfile"]["streetlight_profiles"][0]["recurrency_kind"] == "Daily"
    assert outcome["got"]["GetConfiguration"] == {"key": ["HeartbeatInterval"]}
    assert app.actions("PEER 1") == [
        "BootNotification",
        "Heartbeat",
        "MeterValues",
        "StreetlightStatusNotification",
    ]


class PeerCentral(ChargePoint):  # type: ignore[misc]
    """The ``ocpp`` package as an OS³P Central System (one instance per station connection)."""

    _call_result = _RESULTS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.booted = asyncio.Event()
        self.all_in = asyncio.Event()

    def _note(self, action: str, payload: dict[str, Any]) -> None:
        self.got.append((action, payload))
        if {a for a, _ in self.got} >= {
            "BootNotification",
            "Heartbeat",
            "MeterValues",
            "StreetlightStatusNotification",
        }:
            self.all_in.set()

    @on("BootNotification", skip_schema_validation=True)
    def on_boot(self, **payload: Any) -> _BootResult:
        self._note("BootNotification", payload)
        self.booted.set()
        return _BootResult(current_time=NOW, interval=1, status="Accepted")

    @on("Heartbeat", skip_schema_validation=True)
    def on_heartbeat(self, **payload: Any) -> _HeartbeatResult:
        self._note("Heartbeat", payload)
        return _HeartbeatResult(current_time=NOW)

    @on("MeterValues", skip_schema_validation=True)
    def on_meter_values(self, **payload: Any) -> _Empty:
        self._note("MeterValues", payload)
        return _Empty()

    @on("StreetlightStatusNotification", skip_schema_validation=True)
    def on_streetlight_status(self, **payload: Any) -> _Empty:
        self._note("StreetlightStatusNotification", payload)
        return _Empty()


def run_peer_central(ports: queue.Queue[int], stop: queue.Queue[None]) -> dict[str, Any]:
    results: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        cp = PeerCentral(ws.request.path.rsplit("/", 1)[1], ws)
        reader = asyncio.create_task(cp.start())
        await asyncio.wait_for(cp.booted.wait(), 10)
        results["path"] = ws.request.path
        results["subprotocol"] = ws.subprotocol
        results["SetStreetlightProfile"] = (
            await cp.call(
                SetStreetlightProfile(1, PROFILE["streetlightProfiles"]), skip_schema_validation=True
            )
        ).payload
        results["GetConfiguration"] = (
            await cp.call(GetConfiguration(["HeartbeatInterval"]), skip_schema_validation=True)
        ).payload
        await asyncio.wait_for(cp.all_in.wait(), 10)
        results["got"] = cp.got
        await ws.wait_closed()  # returning would close the connection (and our station reconnect)
        reader.cancel()

    async def main() -> dict[str, Any]:
        async with serve(handler, "127.0.0.1", 0, subprotocols=["OS3P1.0"]) as server:  # type: ignore[list-item]
            ports.put(next(iter(server.sockets)).getsockname()[1])
            while "got" not in results:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(stop.get, True, 10)
        return results

    return asyncio.run(main())


async def test_our_client_against_ocpp_peer_as_central_system() -> None:
    router = Router()
    received: list[Any] = []

    @router.on(Action.SET_STREETLIGHT_PROFILE)
    async def set_profile(
        session: Session, request: SetStreetlightProfileRequest
    ) -> SetStreetlightProfileResponse:
        received.append(request)
        return SetStreetlightProfileResponse(status=GenericStatus.ACCEPTED)

    @router.on(Action.GET_CONFIGURATION)
    def get_configuration(session: Session, request: GetConfigurationRequest) -> dict[str, Any]:
        received.append(request)
        return {"configurationKey": CONFIG_KEYS}

    from test_trio_roles import meter_values
    from test_trio_support import now

    from os3p_core.payloads import LightStatus, StreetlightStatusNotificationRequest

    ports: queue.Queue[int] = queue.Queue()
    stop: queue.Queue[None] = queue.Queue()
    outcome: dict[str, Any] = {}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def peer() -> None:
                outcome.update(
                    await trio.to_thread.run_sync(run_peer_central, ports, stop, abandon_on_cancel=True)
                )

            nursery.start_soon(peer)
            port = await trio.to_thread.run_sync(ports.get, True, 10)
            async with open_substation(
                f"ws://127.0.0.1:{port}/OS3P", "SUBS 9", router, BOOT, config=FAST_CLIENT
            ) as station:
                await station.wait_accepted()
                assert station.heartbeat_interval == 1  # from the peer's BootNotification answer
                await station.call(meter_values())
                await station.call(
                    StreetlightStatusNotificationRequest(
                        contactor_id=2, status=LightStatus.OFF, timestamp=now()
                    )
                )
                while len(received) < 2:
                    await trio.sleep(0.02)
                await trio.sleep(1.2)  # one Heartbeat at the interval the peer gave
            stop.put(None)  # our station has closed: the peer may stop
    assert outcome["path"] == "/OS3P/SUBS%209"
    assert outcome["subprotocol"] == "OS3P1.0"
    assert outcome["SetStreetlightProfile"] == {"status": "Accepted"}
    assert outcome["GetConfiguration"] == {"configuration_key": CONFIG_KEYS}
    actions = [a for a, _ in outcome["got"]]
    assert actions[0] == "BootNotification"
    assert {
        "Heartbeat",
        "MeterValues",
        "StreetlightStatusNotification",
    } <= set(actions)
    boot = dict(outcome["got"])["BootNotification"]
    assert boot["firmware_version"] == BOOT.firmware_version
    assert isinstance(received[0], SetStreetlightProfileRequest)
    assert received[0].contactor_id == 1
    assert received[1] == GetConfigurationRequest(key=("HeartbeatInterval",))
