"""The Central System with the reference Substation (``os3p_sim.LiveStation``) over loopback: boot, meter
values, a firmware update served by the Central System's own file area (UpdateFirmware → download →
Installed → reboot with the new firmwareVersion), a GetFile upload received by it, and streetlight calls —
all driven through the operator API, as an operator would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from os3p_sim import LiveStation, ScaledClock, SQLiteStore, StationConfig, TransferConfig
from os3p_trio import ClientConfig, ServerConfig
from os3p_trio.central import CentralConfig, FileArea, open_central_service, open_sqlite_store
from os3p_trio.central.cli import main as cli_main

FAST_CLIENT = ClientConfig(reconnect_base=0.2, reconnect_max=1.0, ping_interval=0.0)
SIM_CONFIG = StationConfig(
    meter_interval=60.0,
    transfers=TransferConfig(install_duration=0.2, default_retry_interval=0.5),
)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.05)


async def test_firmware_update_getfile_and_streetlight_calls_with_the_simulator(tmp_path: Path) -> None:
    files = FileArea(tmp_path / "firmware", tmp_path / "uploads")
    sim_store = SQLiteStore(str(tmp_path / "sim.sqlite"), synchronous="NORMAL")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(
            store,
            CentralConfig(heartbeat_interval=60),
            server_config=ServerConfig(),
            files=files,
            secret=b"k" * 32,
        ) as service,
        httpx.AsyncClient(base_url=service.api_url, timeout=20) as api,
        trio.open_nursery() as nursery,
    ):
        assert (await api.post("/api/stations", json={"identity": "SIM-1"})).status_code == 201
        sim = LiveStation(service.ws_url, "SIM-1", sim_store, config=SIM_CONFIG, client_config=FAST_CLIENT)
        nursery.start_soon(sim.run)

        async def station() -> dict[str, Any]:
            view: dict[str, Any] = (await api.get("/api/stations/SIM-1")).json()
            return view

        async def booted() -> bool:
            view = await station()
            return bool(view["station"]["accepted"] and view["station"]["connected"])

        await eventually(booted)
        first = await station()
        assert first["station"]["bootFields"]["firmwareVersion"] == "1.0.0"

        # Streetlight and configuration calls through the operator API, answered by the model.
        profile = {
            "contactorId": 1,
            "clearAllSchedules": True,
            "streetlightProfiles": [
                {
                    "profileId": 1,
                    "stackLevel": 2,
                    "recurrencyKind": "Daily",
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
        r = await api.post("/api/stations/SIM-1/calls/SetStreetlightProfile", json=profile)
        assert r.json() == {"action": "SetStreetlightProfile", "result": {"status": "Accepted"}}
        r = await api.post(
            "/api/stations/SIM-1/calls/GetEffectiveStreetlightDaySchedule",
            json={"contactorId": 1, "at": "2015-12-21T12:00:00"},
        )
        assert r.status_code == 200, r.text
        day = r.json()["result"]["daySchedule"]
        # STREETLIGHT-SEMANTICS worked example (2015-12-21): 17:28:40–01:00:00, 06:00:00–08:48:29 (±60 s).
        assert [(p["start"][:2], p["end"][:2]) for p in day] == [("17", "01"), ("06", "08")]
        assert (day[0]["end"], day[1]["start"]) == ("01:00:00", "06:00:00")
        r = await api.post(
            "/api/stations/SIM-1/calls/OverrideStreetlight", json={"contactorId": 2, "action": "On"}
        )
        assert r.json()["result"]["status"] == "Accepted"

        async def overridden() -> bool:
            view = await station()
            mode = view["modes"].get("2", {}).get("status")
            light = view["contactors"].get("2", {}).get("status")
            return bool(mode == "RemoteOverride" and light == "On")

        await eventually(overridden)

        # UpdateFirmware with an image the Central System serves itself.
        image = b"OS3PSIM-FIRMWARE 2.0.0\nrelease notes\n"
        assert (await api.put("/api/firmware/sim-2.0.0.fw", content=image)).status_code == 201
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        update = {
            "retrieveDate": now,
            "location": first["firmwareBase"] + "sim-2.0.0.fw",
            "requestId": "fw-1",
        }
        r = await api.post("/api/stations/SIM-1/calls/UpdateFirmware", json=update)
        assert r.status_code == 200, r.text

        async def updated() -> bool:
            view = await station()
            fields = view["station"]["bootFields"] or {}
            return bool(fields.get("firmwareVersion") == "2.0.0" and view["station"]["accepted"])

        await eventually(updated)
        states = [
            e["status"]
            for e in reversed(
                (
                    await api.get("/api/stations/SIM-1/events", params={"kind": "FirmwareStatusNotification"})
                ).json()
            )
        ]
        assert states[:4] == ["Downloading", "Downloaded", "Installing", "Installed"]

        # GetFile: the station uploads its meter history to the location the API gave for it.
        await eventually(booted)
        getfile = {"requestId": "gf-1", "fileType": "MeterValueHistory", "location": first["uploadLocation"]}
        r = await api.post("/api/stations/SIM-1/calls/GetFile", json=getfile)
        assert r.json()["result"]["status"] == "Accepted", r.text
        file_name = r.json()["result"]["fileName"]

        async def uploaded() -> bool:
            uploads = (await api.get("/api/stations/SIM-1/uploads")).json()
            view = await station()
            status = view["fileStatus"] or {}
            return bool(uploads) and status.get("status") == "Uploaded"

        await eventually(uploaded)
        uploads = (await api.get("/api/stations/SIM-1/uploads")).json()
        assert uploads[0]["fileName"] == file_name
        assert uploads[0]["size"] > 0

        # The remaining Central-System-initiated calls, answered by the station model (the last one, Reset,
        # reboots it); two of them through the CLI, the command-line face of the same endpoint.
        calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}, {"status": "Accepted"}),
            ("ChangeConfiguration", {"key": "Sunrise", "value": "x"}, {"status": "Rejected"}),
            ("ResumeStreetlight", {"contactorId": 2}, {"status": "Accepted"}),
            ("ClearSingleStreetlightProfile", {"profileId": 1}, {"status": "Accepted"}),
            ("ClearSingleStreetlightProfile", {"profileId": 1}, {"status": "Unknown"}),
            ("TestMVFaultIndicator", {}, {"status": "Accepted"}),
            ("TestMVFaultIndicator", {}, {"status": "RejectedAlreadyFaulted"}),
            ("ResetMVFaultIndicator", {}, {"status": "Accepted"}),
            ("TriggerMessage", {"requestedMessage": "MeterValues"}, {"status": "Accepted"}),
        ]
        for action, request, expected in calls:
            r = await api.post(f"/api/stations/SIM-1/calls/{action}", json=request)
            assert r.status_code == 200, (action, r.text)
            assert r.json()["result"] == expected, action
        config = await trio.to_thread.run_sync(
            cli_main,
            ["call", "SIM-1", "GetConfiguration", '{"key": ["HeartbeatInterval"]}', "--api", service.api_url],
        )
        assert config == 0

        async def triggered() -> bool:
            values = (await api.get("/api/stations/SIM-1/meter-values", params={"limit": 100_000})).json()
            return any(v["context"] == "Trigger" for v in values)

        await eventually(triggered)
        reset = await trio.to_thread.run_sync(
            cli_main, ["call", "SIM-1", "Reset", '{"type": "Soft"}', "--api", service.api_url]
        )
        assert reset == 0

        async def rebooted() -> bool:
            boots = (await api.get("/api/stations/SIM-1/events", params={"kind": "Connected"})).json()
            return len(boots) >= 3 and (await station())["station"]["connected"]

        await eventually(rebooted)
        nursery.cancel_scope.cancel()


async def test_reference_station_served_without_reboot_after_a_restart_of_the_service(tmp_path: Path) -> None:
    """PROTOCOL-DECISIONS §5 with the reference Substation: it reconnects to a restarted Central System
    without a new BootNotification (its boot fields did not change) and is served — the acceptance came from
    the database, not from memory."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    files = FileArea(tmp_path / "firmware", tmp_path / "uploads")
    sim_store = SQLiteStore(str(tmp_path / "sim.sqlite"), synchronous="NORMAL")
    config = StationConfig(meter_interval=30.0)

    async def meter_values(api: httpx.AsyncClient) -> int:
        return len((await api.get("/api/stations/SIM-R/meter-values", params={"limit": 100_000})).json())

    async with trio.open_nursery() as nursery:
        async with (
            open_sqlite_store(tmp_path / "cs.sqlite") as store,
            open_central_service(store, port=port, files=files, secret=b"k" * 32) as service,
            httpx.AsyncClient(base_url=service.api_url, timeout=20) as api,
        ):
            await service.central.add_station("SIM-R")
            sim = LiveStation(
                service.ws_url,
                "SIM-R",
                sim_store,
                config=config,
                client_config=FAST_CLIENT,
                clock=ScaledClock(60.0),
            )
            nursery.start_soon(sim.run)

            async def accepted_and_reporting() -> bool:
                view = (await api.get("/api/stations/SIM-R")).json()
                return bool(view["station"]["accepted"]) and await meter_values(api) > 0

            await eventually(accepted_and_reporting)
        # The service is gone (its connections closed with 1001); the station keeps trying to reconnect.
        async with (
            open_sqlite_store(tmp_path / "cs.sqlite") as store,
            open_central_service(store, port=port, files=files, secret=b"k" * 32) as service,
            httpx.AsyncClient(base_url=service.api_url, timeout=20) as api,
        ):
            before = await meter_values(api)

            async def served_again() -> bool:
                view = (await api.get("/api/stations/SIM-R")).json()
                return bool(view["station"]["connected"]) and await meter_values(api) > before

            await eventually(served_again)
            boots = (await api.get("/api/stations/SIM-R/events", params={"kind": "BootNotification"})).json()
            assert len(boots) == 1  # no new BootNotification after the restart
            connects = (await api.get("/api/stations/SIM-R/events", params={"kind": "Connected"})).json()
            assert len(connects) >= 2
        nursery.cancel_scope.cancel()
