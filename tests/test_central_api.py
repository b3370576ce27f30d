"""The operator HTTP API over a live hypercorn (trio worker) on loopback: stations, readings, events, boot
override, firmware files, GetFile uploads, and the error mapping of operator calls.

Calls here go to a scripted station link (the registry protocol of ``os3p_trio.central``) so every outcome
(result, CallError, timeout, closed) is reproducible; ``test_central_live.py`` runs the same endpoint against
real WebSocket stations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from os3p_trio import CallErrorReceived, CallTimeout, ConnectionClosed, InvalidResult
from os3p_trio.central import (
    CentralConfig,
    CentralSystem,
    FileArea,
    StationLink,
    create_api,
    open_sqlite_store,
    serve_api,
    upload_token,
)
from os3p_trio.central.cli import main as cli_main

SECRET = b"s" * 32
T0 = 1_700_000_000.0


@attrs.define
class ScriptedLink:
    """A live connection whose answers a test chooses."""

    answer: Callable[[str, dict[str, Any]], dict[str, Any]]
    calls: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)
    timeouts: list[float | None] = attrs.field(factory=list)

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        self.calls.append((action, payload))
        self.timeouts.append(timeout)
        await trio.lowlevel.checkpoint()
        return self.answer(action, payload)


@attrs.define
class Links:
    by_identity: dict[str, ScriptedLink] = attrs.field(factory=dict)

    def get(self, identity: str) -> StationLink | None:
        return self.by_identity.get(identity)

    def count(self) -> int:
        return len(self.by_identity)


@attrs.define
class Env:
    client: httpx.AsyncClient
    central: CentralSystem
    links: Links
    files: FileArea
    url: str


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_sqlite_store(tmp_path / "cs.sqlite") as store, trio.open_nursery() as nursery:
        central = CentralSystem(store, CentralConfig(), clock=lambda: T0, secret=SECRET)
        links = Links()
        central.live = links
        files = FileArea(tmp_path / "firmware", tmp_path / "uploads", max_upload_bytes=1000)
        url = await nursery.start(
            lambda task_status: serve_api(create_api(central, files), task_status=task_status)
        )
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield Env(client, central, links, files, url)
        nursery.cancel_scope.cancel()


async def test_register_list_show_and_boot_override(env: Env) -> None:
    c = env.client
    r = await c.post("/api/stations", json={"identity": "SUBS 1", "password": "k" * 16})
    assert r.status_code == 201, r.text
    assert r.json()["hasPassword"] is True
    assert (await c.post("/api/stations", json={"identity": "SUBS 1"})).status_code == 409
    assert (await c.post("/api/stations", json={"identity": "a/b"})).status_code == 400
    assert (await c.post("/api/stations", json={"identity": "x", "password": "short"})).status_code == 400
    assert (await c.post("/api/stations", json={})).status_code == 400
    stored = await env.central.store.get_station("SUBS 1")
    assert stored is not None
    # The keyed hash of os3p_trio (HMAC-SHA256 with the server secret), never the password itself.
    assert stored.password_hash is not None
    assert "k" * 16 not in stored.password_hash

    for extra in ("A", "B", "C"):
        await env.central.add_station(extra)
    await env.central.store.record_connection("B", True, T0)
    listing = (await c.get("/api/stations", params={"limit": 2})).json()
    assert [s["identity"] for s in listing] == ["A", "B"]
    page = (await c.get("/api/stations", params={"after": "B"})).json()
    assert [s["identity"] for s in page] == ["C", "SUBS 1"]
    online = (await c.get("/api/stations", params={"connected": "true"})).json()
    assert [s["identity"] for s in online] == ["B"]
    offline = (await c.get("/api/stations", params={"connected": "false", "after": "B", "limit": 1})).json()
    assert [s["identity"] for s in offline] == ["C"]
    assert (await c.get("/api/stations", params={"connected": "maybe"})).status_code == 400
    for extra in ("A", "B", "C"):
        await env.central.store.remove_station(extra)
    listing = (await c.get("/api/stations")).json()
    assert [s["identity"] for s in listing] == ["SUBS 1"]
    assert listing[0]["connected"] is False
    assert "passwordHash" not in listing[0]

    r = await c.put("/api/stations/SUBS%201/boot-status", json={"status": "Pending"})
    assert r.status_code == 200
    assert await env.central.boot_status_for("SUBS 1") == "Pending"
    assert (await c.put("/api/stations/SUBS%201/boot-status", json={"status": "Maybe"})).status_code == 400
    assert (await c.put("/api/stations/nobody/boot-status", json={"status": None})).status_code == 404
    await c.put("/api/stations/SUBS%201/boot-status", json={"status": None})
    assert await env.central.boot_status_for("SUBS 1") == "Accepted"

    assert (await c.get("/api/stations/nobody")).status_code == 404
    shown = (await c.get("/api/stations/SUBS%201")).json()
    assert shown["station"]["identity"] == "SUBS 1"
    assert shown["contactors"] == {}
    assert (await c.delete("/api/stations/SUBS%201")).status_code == 204
    assert (await c.delete("/api/stations/SUBS%201")).status_code == 404


async def test_readings_and_events_reported_by_handlers(env: Env) -> None:
    c = env.client
    central = env.central
    await central.add_station("S1")
    boot = {
        "vendor": "BrandX",
        "model": "SUBS-A1",
        "stationNumber": "987654321",
        "serialNumber": "AQ1234VB5678",
        "firmwareVersion": "1.1.0",
        "iccid": "83310415107943019317",
        "imsi": "080921439201835338",
    }
    answer = await central.handle("S1", "BootNotification", boot)
    assert answer == {"status": "Accepted", "currentTime": "2023-11-14T22:13:20.000Z", "interval": 300}
    assert await central.handle("S1", "Heartbeat", {}) == {"currentTime": "2023-11-14T22:13:20.000Z"}
    meter = {
        "meterValue": [
            {
                "timestamp": "2026-11-26T10:00:00Z",
                "sampledValue": [
                    {"value": "231.5", "measurand": "Voltage.L1N", "unit": "V"},
                    {"value": "12", "measurand": "Current.L1", "unit": "A"},
                ],
            },
            {
                "timestamp": "2026-11-26T10:15:00Z",
                "sampledValue": [{"value": "229.0", "measurand": "Voltage.L1N"}],
            },
        ]
    }
    assert await central.handle("S1", "MeterValues", meter) == {}
    switch = {"contactorId": 1, "status": "On", "timestamp": "2026-11-26T16:30:00Z"}
    assert await central.handle("S1", "StreetlightStatusNotification", switch) == {}
    mode = {"contactorId": 1, "mode": "RemoteOverride", "timestamp": "2026-11-26T16:31:00Z"}
    assert await central.handle("S1", "StreetlightModeStatusNotification", mode) == {}
    assert await central.handle("S1", "StatusNotification", {"status": "Ok", "errorCode": "NoError"}) == {}
    assert await central.handle("S1", "FirmwareStatusNotification", {"status": "Downloading"}) == {}
    assert await central.handle("S1", "GetFileStatusNotification", {"status": "Uploaded"}) == {}

    volts = (await c.get("/api/stations/S1/meter-values", params={"measurand": "Voltage.L1N"})).json()
    assert [v["value"] for v in volts] == ["231.5", "229.0"]
    assert volts[0]["timestamp"] == "2026-11-26T10:00:00.000Z"
    late = (await c.get("/api/stations/S1/meter-values", params={"since": "2026-11-26T10:05:00Z"})).json()
    assert [v["value"] for v in late] == ["229.0"]
    early = await c.get("/api/stations/S1/meter-values", params={"until": "2026-11-26T10:05:00Z", "limit": 1})
    assert len(early.json()) == 1
    assert (await c.get("/api/stations/S1/meter-values", params={"since": "yesterday"})).status_code == 400
    assert (await c.get("/api/stations/nobody/meter-values")).status_code == 404

    events = (await c.get("/api/stations/S1/events")).json()
    assert [e["kind"] for e in events][:2] == ["GetFileStatusNotification", "FirmwareStatusNotification"]
    switches = (
        await c.get("/api/stations/S1/events", params={"kind": "StreetlightStatusNotification"})
    ).json()
    assert switches[0]["payload"] == switch
    assert (await c.get("/api/stations/S1/events", params={"kind": "Nope"})).status_code == 400

    fleet = (await c.get("/api/summary")).json()
    assert (fleet["stations"], fleet["accepted"], fleet["lightsOn"], fleet["meterValues"]) == (1, 1, 1, 3)
    assert fleet["firmwareVersions"] == {"1.1.0": 1}
    state = (await c.get("/api/stations/S1")).json()
    assert state["station"]["accepted"] is True
    assert state["station"]["bootFields"] == boot
    assert state["contactors"]["1"]["status"] == "On"
    assert state["modes"]["1"]["status"] == "RemoteOverride"
    assert state["lastReadings"]["Voltage.L1N"]["value"] == "229.0"
    assert state["firmwareStatus"]["status"] == "Downloading"
    assert state["lastStatus"]["payload"]["errorCode"] == "NoError"


async def test_operator_calls_error_mapping(env: Env) -> None:
    c = env.client
    await env.central.add_station("S1")
    await env.central.add_station("S2")

    def answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("key") == ["boom"]:
            raise CallErrorReceived(action, "NotSupported", "no such thing", {"why": "test"})
        if payload.get("key") == ["slow"]:
            raise CallTimeout(f"{action} timed out")
        if payload.get("key") == ["gone"]:
            raise ConnectionClosed(1006)
        if payload.get("key") == ["garbled"]:
            raise InvalidResult(f"{action}: configurationKey: not an array")
        return {"configurationKey": [{"key": "Geolocation", "readonly": False, "value": "[52.37, 4.9]"}]}

    env.links.by_identity["S1"] = link = ScriptedLink(answer)
    ok = await c.post("/api/stations/S1/calls/GetConfiguration", json={"key": ["Geolocation"]})
    assert ok.status_code == 200
    assert ok.json()["result"]["configurationKey"][0]["value"] == "[52.37, 4.9]"
    assert link.calls == [("GetConfiguration", {"key": ["Geolocation"]})]
    assert link.timeouts == [None]
    r = await c.post("/api/stations/S1/calls/GetConfiguration", params={"timeout": "2.5"}, json={})
    assert r.status_code == 200
    assert link.timeouts[-1] == 2.5
    for bad_timeout in ("0", "-1", "soon", "99999"):
        r = await c.post("/api/stations/S1/calls/GetConfiguration", params={"timeout": bad_timeout}, json={})
        assert r.status_code == 400
    link.calls.clear()

    bad = await c.post("/api/stations/S1/calls/ChangeConfiguration", json={"key": "HeartbeatInterval"})
    assert bad.status_code == 422
    assert bad.json()["code"] == "OccurenceConstraintViolation"
    assert bad.json()["rule"] == "required"
    assert link.calls == []  # nothing was sent
    assert (await c.post("/api/stations/S1/calls/Heartbeat", json={})).status_code == 404
    assert (await c.post("/api/stations/S1/calls/Bogus", json={})).status_code == 404
    assert (await c.post("/api/stations/nobody/calls/GetConfiguration", json={})).status_code == 404
    assert (await c.post("/api/stations/S2/calls/GetConfiguration", json={})).status_code == 409
    assert (await c.post("/api/stations/S1/calls/GetConfiguration", content=b"{")).status_code == 400

    err = await c.post("/api/stations/S1/calls/GetConfiguration", json={"key": ["boom"]})
    assert err.status_code == 502
    assert err.json()["code"] == "NotSupported"
    assert err.json()["details"] == {"why": "test"}
    assert (
        await c.post("/api/stations/S1/calls/GetConfiguration", json={"key": ["slow"]})
    ).status_code == 504
    assert (
        await c.post("/api/stations/S1/calls/GetConfiguration", json={"key": ["gone"]})
    ).status_code == 409
    garbled = await c.post("/api/stations/S1/calls/GetConfiguration", json={"key": ["garbled"]})
    assert (garbled.status_code, garbled.json()["error"]) == (502, "InvalidResult")

    # ``os3p-central call`` maps them to its exit status: 0 result, 1 the station's CALLERROR or a
    # timeout, 2 anything the operator must fix (payload, station unknown or disconnected).
    for station_id, key, status in [
        ("S1", "Geolocation", 0),
        ("S1", "boom", 1),
        ("S1", "slow", 1),
        ("S1", "gone", 2),
        ("S2", "Geolocation", 2),
        ("nobody", "Geolocation", 2),
    ]:
        argv = ["call", station_id, "GetConfiguration", json.dumps({"key": [key]}), "--api", env.url]
        assert await trio.to_thread.run_sync(cli_main, argv) == status, (station_id, key)


async def test_firmware_publish_download_and_getfile_upload(env: Env) -> None:
    c = env.client
    await env.central.add_station("S 1")
    image = b"OS3PSIM-FIRMWARE 2.0.0\npayload\n"
    r = await c.put("/api/firmware/fw-2.0.0.bin", content=image)
    assert r.status_code == 201
    assert r.json()["sha256"] == hashlib.sha256(image).hexdigest()
    got = await c.get("/firmware/fw-2.0.0.bin")
    assert got.status_code == 200
    assert got.content == image
    assert (await c.get("/firmware/missing.bin")).status_code == 404
    assert (await c.get("/firmware/..%2Fcs.sqlite")).status_code == 404
    assert (await c.put("/api/firmware/.hidden", content=b"x")).status_code == 400
    assert (await c.put("/api/firmware/big.bin", content=b"x" * 1001)).status_code == 413
    assert not (env.files.firmware_dir / "big.bin").exists()

    csv = b"timestamp,measurand,value\n2026-11-26T10:00:00Z,Voltage.L1N,231.5\n"
    location = (await c.get("/api/stations/S%201")).json()["uploadLocation"]
    assert location == f"{env.url}/files/S%201/{upload_token(SECRET, 'S 1')}"
    # The GetFile ``location``; the station PUTs <location>/<fileName> (os3p_sim does exactly this).
    up = await c.put(f"{location}/MeterValueHistory-S1.csv", content=csv)
    assert up.status_code == 201, up.text
    assert up.json()["size"] == len(csv)
    post = await c.post(f"{location}/syslog.txt", content=b"log line\n")
    assert post.status_code == 201
    assert (await c.put(f"{location}/Ünïcode-Station.log", content=b"x")).status_code == 201
    # Without the capability token: refused, whoever asks.
    assert (
        await c.put("/files/S%201/0123456789abcdef0123456789abcdef/x.csv", content=b"x")
    ).status_code == 403
    assert (
        await c.put(f"/files/nobody/{upload_token(SECRET, 'nobody')}/x.csv", content=b"x")
    ).status_code == 404
    assert (await c.put(f"{location}/too-big.csv", content=b"x" * 1001)).status_code == 413
    assert (await c.put(f"{location}/.hidden", content=b"x")).status_code == 400
    listed = (await c.get("/api/stations/S%201/uploads")).json()
    assert [u["fileName"] for u in listed] == [
        "Ünïcode-Station.log",
        "syslog.txt",
        "MeterValueHistory-S1.csv",
    ]
    stored = list(env.files.uploads_dir.rglob("MeterValueHistory-S1.csv"))
    assert len(stored) == 1
    assert stored[0].read_bytes() == csv


async def test_api_token_protects_operator_routes_only(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "cs.sqlite") as store, trio.open_nursery() as nursery:
        central = CentralSystem(store, CentralConfig(), clock=lambda: T0, secret=SECRET)
        await central.add_station("S1")
        files = FileArea(tmp_path / "firmware", tmp_path / "uploads")
        (tmp_path / "firmware").mkdir()
        (tmp_path / "firmware" / "fw.bin").write_bytes(b"image")
        app = create_api(central, files, api_token="t0ken")
        url = await nursery.start(lambda task_status: serve_api(app, task_status=task_status))
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            for method, path in [
                ("GET", "/api/stations"),
                ("GET", "/api/stations/S1"),
                ("POST", "/api/stations/S1/calls/Reset"),
                ("PUT", "/api/firmware/x.bin"),
            ]:
                r = await c.request(method, path)
                assert r.status_code == 401, path
                assert r.headers["www-authenticate"].startswith("Bearer")
            assert (
                await c.get("/api/stations", headers={"Authorization": "Bearer wrong"})
            ).status_code == 401
            ok = await c.get("/api/stations", headers={"Authorization": "Bearer t0ken"})
            assert [s["identity"] for s in ok.json()] == ["S1"]
            # Stations need no operator token: firmware is public, uploads carry their capability token.
            assert (await c.get("/firmware/fw.bin")).content == b"image"
            put = await c.put(f"/files/S1/{upload_token(SECRET, 'S1')}/log.txt", content=b"x")
            assert put.status_code == 201
        nursery.cancel_scope.cancel()
