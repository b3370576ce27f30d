"""The Central System service end to end on loopback: the os3p_trio server, the store, the operator API and
the CLI, with WebSocket stations (trio-websocket, raw OCPP-J frames, so the station side is independent of
our own client).

Covered: registration policy (404 / open registration / Basic auth 401), boot policy (Accepted, per-station
Pending and Rejected overrides), every station-initiated action stored before its CALLRESULT, all 13
Central-System-initiated calls through the API and through ``os3p-central call``, 409 for a disconnected
station, acceptance remembered across a restart of the service, and the connection state in the store.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from os3p_core import structure_request, unstructure
from os3p_trio import ServerConfig
from os3p_trio.central import (
    BootStatus,
    CentralConfig,
    CentralService,
    EventKind,
    FileArea,
    open_central_service,
    open_sqlite_store,
    upload_token,
)
from os3p_trio.central.cli import main as cli_main

SECRET = b"x" * 32
KEY = "0123456789abcdef0123"

BOOT = {
    "vendor": "BrandX",
    "model": "SUBS-A1",
    "stationNumber": "987654321",
    "serialNumber": "AQ1234VB5678",
    "firmwareVersion": "1.1.0",
    "iccid": "83310415107943019317",
    "imsi": "080921439201835338",
}

PROFILE = {
    "profileId": 1,
    "stackLevel": 2,
    "recurrencyKind": "Daily",
    "validFrom": "2015-06-06T00:00:00",
    "daySchedule": [
        {"start": {"kind": "Sunset", "offset": 3600}, "end": {"kind": "Absolute", "time": "01:00:00"}},
        {"start": {"kind": "Absolute", "time": "06:00:00"}, "end": {"kind": "Sunrise", "offset": 0}},
    ],
}

# The 13 Central-System-initiated calls (annex §7): a request the operator sends and the station's answer.
CS_CALLS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ChangeConfiguration": ({"key": "HeartbeatInterval", "value": "600"}, {"status": "Accepted"}),
    "ClearSingleStreetlightProfile": ({"profileId": 1}, {"status": "Accepted"}),
    "GetConfiguration": (
        {"key": ["Geolocation"]},
        {"configurationKey": [{"key": "Geolocation", "readonly": False, "value": "[52.37, 4.90]"}]},
    ),
    "GetEffectiveStreetlightDaySchedule": (
        {"contactorId": 1, "at": "2015-12-21T12:00:00Z"},
        {
            "contactorId": 1,
            "daySchedule": [
                {"start": "17:28:40", "end": "01:00:00"},
                {"start": "06:00:00", "end": "08:48:29"},
            ],
        },
    ),
    "GetFile": (
        {"requestId": "r-1", "fileType": "MeterValueHistory", "location": "http://127.0.0.1/files/S"},
        {"status": "Accepted", "fileName": "MeterValueHistory.csv"},
    ),
    "OverrideStreetlight": ({"contactorId": 1, "action": "On"}, {"status": "Accepted"}),
    "ResumeStreetlight": ({"contactorId": 1}, {"status": "Accepted"}),
    "Reset": ({"type": "Soft"}, {"status": "Accepted"}),
    "ResetMVFaultIndicator": ({}, {"status": "Accepted"}),
    "SetStreetlightProfile": (
        {"contactorId": 1, "clearAllSchedules": True, "streetlightProfiles": [PROFILE]},
        {"status": "Accepted"},
    ),
    "TestMVFaultIndicator": ({}, {"status": "RejectedAlreadyFaulted"}),
    "TriggerMessage": ({"requestedMessage": "MeterValues"}, {"status": "Accepted"}),
    "UpdateFirmware": (
        {
            "retrieveDate": "2026-11-26T12:00:00Z",
            "location": "http://127.0.0.1/firmware/fw.bin",
            "retries": 2,
        },
        {},
    ),
}


@attrs.define
class Station:
    """A WebSocket station speaking raw OCPP-J frames (§J4): answers the Central System's calls from
    ``CS_CALLS`` and records them; ``call`` sends a station-initiated CALL and returns the reply frame."""

    ws: WebSocketConnection
    received: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)
    replies: dict[str, trio.MemorySendChannel[list[Any]]] = attrs.field(factory=dict)
    ids: itertools.count[int] = attrs.field(factory=itertools.count)

    async def run(self) -> None:
        try:
            while True:
                frame = json.loads(await self.ws.get_message())
                if frame[0] == 2:
                    _, unique_id, action, payload = frame
                    self.received.append((action, payload))
                    await self.ws.send_message(json.dumps([3, unique_id, CS_CALLS[action][1]]))
                else:
                    channel = self.replies.pop(frame[1], None)
                    if channel is not None:
                        channel.send_nowait(frame)
        except ConnectionClosed:
            pass

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        unique_id = f"m{next(self.ids)}"
        send, receive = trio.open_memory_channel[list[Any]](1)
        self.replies[unique_id] = send
        await self.ws.send_message(json.dumps([2, unique_id, action, payload]))
        with trio.fail_after(10):
            return await receive.receive()

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        frame = await self.call(action, payload)
        assert frame[0] == 3, frame
        result: dict[str, Any] = frame[2]
        return result


@asynccontextmanager
async def station(
    service: CentralService, identity: str, password: str | None = None
) -> AsyncIterator[Station]:
    headers: list[tuple[bytes, bytes]] = []
    if password is not None:
        token = base64.b64encode(f"{identity}:{password}".encode())
        headers.append((b"Authorization", b"Basic " + token))
    url = f"{service.ws_url}/{identity.replace(' ', '%20')}"
    async with (
        open_websocket_url(url, subprotocols=["OS3P1.0"], extra_headers=headers) as ws,
        trio.open_nursery() as nursery,
    ):
        st = Station(ws)
        nursery.start_soon(st.run)
        yield st
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def running(
    tmp_path: Path, config: CentralConfig | None = None, *, auth: bool = False
) -> AsyncIterator[tuple[CentralService, httpx.AsyncClient]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    server_config = ServerConfig(auth_secret=SECRET if auth else None)
    files = FileArea(tmp_path / "firmware", tmp_path / "uploads")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(
            store, config, server_config=server_config, files=files, secret=SECRET
        ) as service,
        httpx.AsyncClient(base_url=service.api_url, timeout=10) as client,
    ):
        yield service, client


async def wait_connected(client: httpx.AsyncClient, identity: str, connected: bool = True) -> None:
    with trio.fail_after(5):
        while (await client.get(f"/api/stations/{identity}")).json()["station"]["connected"] is not connected:
            await trio.sleep(0.01)


async def test_registration_policy_404_open_registration_and_basic_auth(tmp_path: Path) -> None:
    async with running(tmp_path / "a") as (service, client):
        with pytest.raises(ConnectionRejected) as rejected:
            async with station(service, "STRANGER"):
                pass
        assert rejected.value.status_code == 404
        assert (await client.get("/api/stations")).json() == []

    async with running(tmp_path / "b", CentralConfig(open_registration=True)) as (service, client):
        async with station(service, "NEW 1") as st:
            assert (await st.result("BootNotification", BOOT))["status"] == "Accepted"
        listed = (await client.get("/api/stations")).json()
        assert [(s["identity"], s["registeredBy"]) for s in listed] == [("NEW 1", "open-registration")]

    async with running(tmp_path / "c", auth=True) as (service, client):
        assert (
            await client.post("/api/stations", json={"identity": "S1", "password": KEY})
        ).status_code == 201
        for password in (None, "wrong-password-123456"):
            with pytest.raises(ConnectionRejected) as rejected:
                async with station(service, "S1", password):
                    pass
            assert rejected.value.status_code == 401
        # Unknown station under auth: the same 401 (no enumeration of identities).
        with pytest.raises(ConnectionRejected) as rejected:
            async with station(service, "S2", KEY):
                pass
        assert rejected.value.status_code == 401
        async with station(service, "S1", KEY) as st:
            assert (await st.result("BootNotification", BOOT))["status"] == "Accepted"


async def test_station_messages_are_committed_before_their_callresult(tmp_path: Path) -> None:
    async with running(tmp_path, CentralConfig(heartbeat_interval=120)) as (service, client):
        await service.central.add_station("S 1")
        store = service.central.store
        async with station(service, "S 1") as st:
            await wait_connected(client, "S%201")
            # Not accepted yet: anything but BootNotification is refused (PROTOCOL-DECISIONS §5).
            refused = await st.call("Heartbeat", {})
            assert refused[0] == 4
            assert refused[2] == "SecurityError"
            boot = await st.result("BootNotification", BOOT)
            assert (boot["status"], boot["interval"]) == ("Accepted", 120)
            assert boot["currentTime"].endswith("Z")
            record = await store.get_station("S 1")
            assert record is not None
            assert record.accepted
            assert record.boot_fields == BOOT

            assert record.last_heartbeat is None
            assert "currentTime" in await st.result("Heartbeat", {})
            beat = await store.get_station("S 1")
            assert beat is not None
            assert beat.last_heartbeat is not None  # committed before the answer, like everything else
            shown = (await client.get("/api/stations/S%201")).json()["station"]
            assert shown["lastHeartbeat"] is not None
            meter = {
                "meterValue": [
                    {
                        "timestamp": "2026-11-26T10:00:00Z",
                        "sampledValue": [
                            {"value": "231.2", "measurand": "Voltage.L1N", "unit": "V"},
                            {"value": "50.01", "measurand": "Frequency", "unit": "Hz"},
                        ],
                    }
                ]
            }
            assert await st.result("MeterValues", meter) == {}
            # The CALLRESULT arrived, so the rows are committed: readable at once, from another connection.
            assert len(await store.meter_values("S 1")) == 2
            notifications: dict[str, dict[str, Any]] = {
                "StatusNotification": {"status": "Faulted", "errorCode": "GroundFailure", "test": True},
                "StreetlightStatusNotification": {
                    "contactorId": 2,
                    "status": "On",
                    "timestamp": "2026-11-26T16:40:00Z",
                },
                "StreetlightModeStatusNotification": {
                    "mode": "LocalOverride",
                    "timestamp": "2026-11-26T17:00:00Z",
                },
                "FirmwareStatusNotification": {"status": "Downloading", "requestId": "fw-1"},
                "GetFileStatusNotification": {"status": "Uploaded", "requestId": "r-1"},
            }
            for action, payload in notifications.items():
                assert await st.result(action, payload) == {}
                assert (await store.events("S 1", limit=1))[0].kind.value == action
            # Invalid payload: answered by the core's validation, nothing stored.
            bad = await st.call("StatusNotification", {"status": "Broken", "errorCode": "NoError"})
            assert (bad[0], bad[2]) == (4, "PropertyConstraintViolation")

            state = (await client.get("/api/stations/S%201")).json()
            assert state["station"]["connected"] is True
            assert state["contactors"]["2"]["status"] == "On"
            assert state["modes"]["all"]["status"] == "LocalOverride"
            assert state["lastStatus"]["payload"]["errorCode"] == "GroundFailure"
            assert state["firmwareStatus"]["status"] == "Downloading"
            assert state["fileStatus"]["status"] == "Uploaded"
            assert state["lastReadings"]["Frequency"]["value"] == "50.01"

            # A write that cannot be committed gets no CALLRESULT: the station sees InternalError and keeps
            # the message for a retry (PROTOCOL-DECISIONS §7); here the station was removed meanwhile.
            await store.remove_station("S 1")
            switch_off = {"contactorId": 1, "status": "Off", "timestamp": "2026-11-27T07:00:00Z"}
            failed = await st.call("StreetlightStatusNotification", switch_off)
            assert (failed[0], failed[2]) == (4, "InternalError")
            assert await store.events("S 1") == []
            await store.add_station("S 1", None, 0.0)
            # The retry succeeds once the write can be committed.
            assert await st.result("StreetlightStatusNotification", switch_off) == {}
            stored = await store.events("S 1", kind=EventKind.STREETLIGHT_STATUS)
            assert [e.payload for e in stored] == [switch_off]
        await wait_connected(client, "S%201", connected=False)


async def test_every_cs_initiated_call_through_api_and_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(tmp_path) as (service, client):
        await service.central.add_station("S1")
        await service.central.add_station("OFFLINE")
        async with station(service, "S1") as st:
            await st.result("BootNotification", BOOT)
            info = (await client.get("/api/info")).json()
            assert info["websocket"] == service.ws_url
            assert info["stationsConnected"] == 1
            assert info["store"]["operationsCommitted"] >= info["store"]["batchesCommitted"] > 0
            assert info["firmwareBase"] == f"{service.api_url}/firmware/"
            view = (await client.get("/api/stations/S1")).json()
            # The GetFile ``location`` an operator gives this station: uploads land in /files/S1/<fileName>.
            assert view["uploadLocation"] == f"{service.api_url}/files/S1/{upload_token(SECRET, 'S1')}"
            for action, (request, response) in CS_CALLS.items():
                r = await client.post(f"/api/stations/S1/calls/{action}", json=request)
                assert r.status_code == 200, (action, r.text)
                assert r.json() == {"action": action, "result": response}
            assert [a for a, _ in st.received] == list(CS_CALLS)
            assert [p for _, p in st.received] == [req for req, _ in CS_CALLS.values()]

            # 422 before sending, 404 unknown station, 409 disconnected.
            r = await client.post("/api/stations/S1/calls/OverrideStreetlight", json={"action": "Dim"})
            assert r.status_code == 422
            assert r.json()["code"] == "PropertyConstraintViolation"
            assert (await client.post("/api/stations/NOPE/calls/Reset", json={})).status_code == 404
            assert (await client.post("/api/stations/OFFLINE/calls/Reset", json={})).status_code == 409
            assert len(st.received) == len(CS_CALLS)

            # The CLI face of the same endpoint (a blocking client: run it in a thread): all 13 calls.
            capsys.readouterr()
            for action, (request, response) in CS_CALLS.items():
                argv = ["call", "S1", action, json.dumps(request), "--api", service.api_url]
                assert await trio.to_thread.run_sync(cli_main, argv) == 0, action
                assert json.loads(capsys.readouterr().out) == response, action
            assert [p for _, p in st.received[len(CS_CALLS) :]] == [req for req, _ in CS_CALLS.values()]
            payload_file = tmp_path / "profile.json"
            payload_file.write_text(json.dumps(CS_CALLS["SetStreetlightProfile"][0]))
            for argv, status in [
                (["call", "S1", "GetConfiguration", '{"key": ["Geolocation"]}'], 0),
                (["call", "S1", "SetStreetlightProfile", f"@{payload_file}"], 0),
                (["call", "S1", "ResetMVFaultIndicator"], 0),
                (["call", "S1", "OverrideStreetlight", '{"action": "Dim"}'], 2),
                (["call", "OFFLINE", "Reset", "{}"], 2),
                (["call", "S1", "Reset", "{not json"], 2),
            ]:
                code = await trio.to_thread.run_sync(cli_main, [*argv, "--api", service.api_url])
                assert code == status, argv
            out = capsys.readouterr().out
            first, _end = json.JSONDecoder().raw_decode(out)
            assert first == CS_CALLS["GetConfiguration"][1]
            assert [a for a, _ in st.received[-3:]] == [
                "GetConfiguration",
                "SetStreetlightProfile",
                "ResetMVFaultIndicator",
            ]


async def test_boot_override_pending_and_rejected(tmp_path: Path) -> None:
    async with running(tmp_path, CentralConfig(retry_interval=30)) as (service, client):
        await service.central.add_station("P")
        await service.central.add_station("R")
        await client.put("/api/stations/P/boot-status", json={"status": "Pending"})
        await client.put("/api/stations/R/boot-status", json={"status": "Rejected"})
        async with station(service, "P") as st:
            boot = await st.result("BootNotification", BOOT)
            assert (boot["status"], boot["interval"]) == ("Pending", 30)
            # Pending: the station must answer the Central System's calls (annex §3.1) — commissioning.
            r = await client.post("/api/stations/P/calls/GetConfiguration", json={})
            assert r.status_code == 200
            # Pending: the station may not initiate anything else.
            assert (await st.call("Heartbeat", {}))[2] == "SecurityError"
            # The operator accepts it; its next BootNotification is Accepted.
            await client.put("/api/stations/P/boot-status", json={"status": "Accepted"})
            assert (await st.result("BootNotification", BOOT))["status"] == "Accepted"
            assert "currentTime" in await st.result("Heartbeat", {})
        async with station(service, "R") as st:
            boot = await st.result("BootNotification", BOOT)
            assert (boot["status"], boot["interval"]) == ("Rejected", 30)
        record = await service.central.store.get_station("R")
        assert record is not None
        assert record.boot_status is BootStatus.REJECTED
        assert not record.accepted


async def test_rejected_boot_closes_the_connection(tmp_path: Path) -> None:
    async with running(tmp_path, CentralConfig(boot_status=BootStatus.REJECTED)) as (service, _):
        await service.central.add_station("R")
        async with station(service, "R") as st:
            assert (await st.result("BootNotification", BOOT))["status"] == "Rejected"
            # Rejected: the Central System closes the connection after the CALLRESULT (annex §3.1).
            with trio.fail_after(2):
                while st.ws.closed is None:
                    await trio.sleep(0.01)
            assert st.ws.closed.code == 1000


async def test_acceptance_remembered_across_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as (service, client):
        await service.central.add_station("KNOWN")
        await service.central.add_station("NEVER")
        async with station(service, "KNOWN") as st:
            await st.result("BootNotification", BOOT)
        async with station(service, "NEVER") as st:
            assert (await st.call("Heartbeat", {}))[2] == "SecurityError"

    # A new service process on the same database (the store is reopened from the file).
    async with running(tmp_path) as (service, client):
        listed = {s["identity"]: s for s in (await client.get("/api/stations")).json()}
        assert listed["KNOWN"]["connected"] is False
        assert listed["KNOWN"]["accepted"] is True
        async with station(service, "KNOWN") as st:
            # Reconnect without BootNotification (§J5.5, annex §3.3): served, not SecurityError.
            assert "currentTime" in await st.result("Heartbeat", {})
            assert (
                await st.result(
                    "StreetlightStatusNotification",
                    {"contactorId": 1, "status": "Off", "timestamp": "2026-11-27T07:30:00Z"},
                )
                == {}
            )
            r = await client.post("/api/stations/KNOWN/calls/Reset", json={"type": "Hard"})
            assert r.status_code == 200
        async with station(service, "NEVER") as st:
            assert (await st.call("Heartbeat", {}))[2] == "SecurityError"


async def test_tls_and_mutual_tls_for_stations_and_https_api(tmp_path: Path) -> None:
    import argparse
    import ssl

    import trustme

    from os3p_trio.central._server import _ssl_context

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    pem = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    # The context `os3p-central serve --certfile --keyfile --client-ca` builds.
    server_ctx = _ssl_context(argparse.Namespace(certfile=str(pem), keyfile=str(pem), client_ca=str(ca_pem)))
    assert server_ctx is not None
    assert server_ctx.verify_mode is ssl.CERT_REQUIRED

    files = FileArea(tmp_path / "firmware", tmp_path / "uploads")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(
            store,
            server_config=ServerConfig(require_client_certificate=True),
            ssl_context=server_ctx,
            certfile=str(pem),
            keyfile=str(pem),
            files=files,
            secret=SECRET,
        ) as service,
    ):
        assert service.ws_url.startswith("wss://127.0.0.1:")
        assert service.api_url.startswith("https://127.0.0.1:")
        # (trustme writes DNS names in lower case: the identities here are lower case.)
        await service.central.add_station("subs-a")
        await service.central.add_station("subs-b")

        def client_context(identity: str) -> ssl.SSLContext:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            ca.configure_trust(ctx)
            ca.issue_cert(identity).configure_cert(ctx)
            return ctx

        url = f"{service.ws_url}/subs-a"
        async with open_websocket_url(url, client_context("subs-a"), subprotocols=["OS3P1.0"]) as ws:
            await ws.send_message(json.dumps([2, "1", "BootNotification", BOOT]))
            assert json.loads(await ws.get_message())[2]["status"] == "Accepted"
        # A certificate naming another station: refused before the upgrade.
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url, client_context("subs-b"), subprotocols=["OS3P1.0"]):
                pass
        assert rejected.value.status_code == 403

        api_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(api_ctx)
        async with httpx.AsyncClient(base_url=service.api_url, verify=api_ctx, timeout=10) as client:
            station = (await client.get("/api/stations/subs-a")).json()
            assert station["station"]["accepted"] is True
            assert station["uploadLocation"].startswith("https://127.0.0.1:")


async def test_raw_handlers_store_what_the_typed_path_stored(tmp_path: Path) -> None:
    # The service registers raw handlers (no typed structuring on the hot path).  What it stores must be
    # what structuring and unstructuring stored: a date-time without offset is local time of the station
    # (PROTOCOL-DECISIONS §8, default zone Europe/Amsterdam), stored with its offset; vendor fields that a
    # schema allows do not change the rows.
    async with running(tmp_path) as (service, _client):
        await service.central.add_station("S1")
        store = service.central.store
        async with station(service, "S1") as st:
            assert (await st.result("BootNotification", BOOT))["status"] == "Accepted"
            meter = {
                "meterValue": [
                    {
                        "timestamp": "2026-07-01T12:00:00",
                        "sampledValue": [{"value": "230.0", "measurand": "Voltage.L1N", "unit": "V"}],
                    },
                    {
                        "timestamp": "2026-07-01T12:15:00.5+02:00",
                        "sampledValue": [{"value": "231.0", "measurand": "Voltage.L1N"}],
                    },
                ]
            }
            assert await st.result("MeterValues", meter) == {}
            rows = await store.meter_values("S1")
            assert sorted((r.timestamp, r.value) for r in rows) == [
                (datetime.fromisoformat("2026-07-01T10:00:00+00:00").timestamp(), "230.0"),
                (datetime.fromisoformat("2026-07-01T10:15:00.5+00:00").timestamp(), "231.0"),
            ]
            switch = {"contactorId": 1, "status": "On", "timestamp": "2026-11-26T17:00:00"}
            assert await st.result("StreetlightStatusNotification", switch) == {}
            [event] = await store.events("S1", kind=EventKind.STREETLIGHT_STATUS)
            typed = unstructure(structure_request("StreetlightStatusNotification", switch))
            assert event.payload == typed == {**switch, "timestamp": "2026-11-26T17:00:00+01:00"}
            assert event.timestamp == datetime.fromisoformat("2026-11-26T16:00:00+00:00").timestamp()
