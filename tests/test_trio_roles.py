"""Both roles of os3p_trio against each other on loopback: boot flows, heartbeats, calls."""

from __future__ import annotations

import trio
from test_trio_support import BOOT, FAST_CLIENT, FAST_SERVER, CentralApp

from os3p_core import Action
from os3p_core.payloads import (
    ConfigurationKey,
    GetConfigurationRequest,
    GetConfigurationResponse,
    RegistrationStatus,
)
from os3p_trio import Router, Session, open_central_system, open_substation


def station_router() -> Router:
    router = Router()

    @router.on(Action.GET_CONFIGURATION)
    async def get_configuration(session: Session, request: GetConfigurationRequest) -> GetConfigurationResponse:
        return GetConfigurationResponse(
            configuration_key=(ConfigurationKey(key="HeartbeatInterval", readonly=False, value="1"),)
        )

    return router


async def test_boot_accepted_heartbeat_and_server_call() -> None:
    app = CentralApp((RegistrationStatus.ACCEPTED, 1))
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(url, "SUBS 001", station_router(), BOOT, config=FAST_CLIENT) as station:
                await station.wait_accepted()
                assert station.heartbeat_interval == 1
                assert station.last_accepted_boot == BOOT
                await app.wait_for("Heartbeat")
                assert app.actions("SUBS 001")[:2] == ["BootNotification", "Heartbeat"]
                session = server.get("SUBS 001")
                assert session is not None
                assert session.subprotocol == "OS3P1.0"
                response = await server.call("SUBS 001", GetConfigurationRequest())
                assert response.configuration_key[0].key == "HeartbeatInterval"
