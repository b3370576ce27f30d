"""Both roles of os3p_trio against each other on loopback: boot flows, heartbeats, calls,
reconnects, keepalive, failure containment, shutdown."""

from __future__ import annotations

import json
import logging
from functools import partial

import attrs
import pytest
import trio
from test_trio_support import BOOT, FAST_CLIENT, FAST_SERVER, CentralApp, now, raw_station

from os3p_core import Action, BootState, ErrorCode, LocalProtocolError, ProtocolError, unstructure
from os3p_core.payloads import (
    BootNotificationRequest,
    BootNotificationResponse,
    ConfigurationKey,
    GenericStatus,
    GetConfigurationRequest,
    GetConfigurationResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    LightStatus,
    Measurand,
    MessageTrigger,
    MeterValue,
    MeterValuesRequest,
    MeterValuesResponse,
    RegistrationStatus,
    SampledValue,
    StreetlightStatusNotificationRequest,
    TriggerMessageRequest,
    TriggerMessageResponse,
)
from os3p_trio import (
    CallErrorReceived,
    CallTimeout,
    CentralSystemServer,
    ConnectionClosed,
    InMemoryRegistry,
    InvalidResult,
    Router,
    ServerConfig,
    Session,
    StationRecord,
    WebSocket,
    client_handshake,
    open_central_system,
    open_substation,
    serve_central_system,
    server_handshake,
)


def station_router(triggered: list[str] | None = None) -> Router:
    router = Router()

    @router.on(Action.GET_CONFIGURATION)
    async def get_configuration(
        session: Session, request: GetConfigurationRequest
    ) -> GetConfigurationResponse:
        return GetConfigurationResponse(
            configuration_key=(ConfigurationKey(key="HeartbeatInterval", readonly=False, value="1"),)
        )

    @router.on(Action.TRIGGER_MESSAGE)
    def trigger(session: Session, request: TriggerMessageRequest) -> TriggerMessageResponse:
        # §M4.1: answer first, then send the requested message (allowed once, even while Pending).
        if request.requested_message is MessageTrigger.HEARTBEAT:

            async def send() -> None:
                await session.call(HeartbeatRequest())
                if triggered is not None:
                    triggered.append("Heartbeat")

            session.start_soon(send)
            return TriggerMessageResponse(status=GenericStatus.ACCEPTED)
        return TriggerMessageResponse(status=GenericStatus.REJECTED)

    return router


def meter_values() -> MeterValuesRequest:
    return MeterValuesRequest(
        meter_value=(
            MeterValue(
                timestamp=now(),
                sampled_value=(SampledValue(value="12", measurand=Measurand.ENERGY_ACTIVE_IMPORT_REGISTER),),
            ),
        )
    )


async def test_boot_accepted_heartbeat_and_server_call() -> None:
    app = CentralApp((RegistrationStatus.ACCEPTED, 1))
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(
                url, "SUBS 001", station_router(), BOOT, config=FAST_CLIENT
            ) as station:
                await station.wait_accepted()
                assert station.heartbeat_interval == 1
                assert station.last_accepted_boot == BOOT
                await app.wait_for("Heartbeat")
                assert app.actions("SUBS 001")[:2] == ["BootNotification", "Heartbeat"]
                session = server.get("SUBS 001")
                assert session is not None
                assert session.subprotocol == "OS3P1.0"
                assert session.connection.boot_state is BootState.ACCEPTED
                response = await server.call("SUBS 001", GetConfigurationRequest())
                assert response.configuration_key[0].key == "HeartbeatInterval"
                await station.call(meter_values())
                assert app.actions()[-1] == "MeterValues"


async def test_boot_pending_then_accepted_with_trigger_message_while_pending() -> None:
    app = CentralApp((RegistrationStatus.PENDING, 1), (RegistrationStatus.ACCEPTED, 60))
    triggered: list[str] = []
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(
                url, "S1", station_router(triggered), BOOT, config=FAST_CLIENT
            ) as station:
                await app.wait_for("BootNotification")
                while station.boot_state is not BootState.PENDING:
                    await trio.sleep(0.01)
                # Pending: the station may not initiate (the core refuses, nothing is sent) ...
                with pytest.raises(LocalProtocolError):
                    await station.call(HeartbeatRequest())
                # ... but answers the Central System, and may send what a TriggerMessage asks for.
                config = await server.call("S1", GetConfigurationRequest())
                assert config.configuration_key
                answer = await server.call(
                    "S1", TriggerMessageRequest(requested_message=MessageTrigger.HEARTBEAT)
                )
                assert answer.status is GenericStatus.ACCEPTED
                await app.wait_for("Heartbeat")
                while not triggered:  # the station's side of that call completes a moment later
                    await trio.sleep(0.01)
                assert triggered == ["Heartbeat"]
                # After `interval` (1 s) the station boots again and is accepted.
                await station.wait_accepted()
                assert app.actions() == ["BootNotification", "Heartbeat", "BootNotification"]
                assert station.heartbeat_interval == 60


async def test_call_queued_behind_a_boot_answered_pending_raises_local_protocol_error() -> None:
    # PROTOCOL-DECISIONS §5: "Until a BootNotification is Accepted it sends nothing but BootNotification".
    # A Heartbeat queued behind a re-boot that is answered Pending is never sent; its caller gets the
    # core's LocalProtocolError (its own fault), not a ConnectionClosed -- the connection stays up.
    release = trio.Event()
    central = Router()
    received: list[str] = []

    @central.on(Action.BOOT_NOTIFICATION)
    async def boot(session: Session, request: BootNotificationRequest) -> BootNotificationResponse:
        received.append("BootNotification")
        await release.wait()
        return BootNotificationResponse(status=RegistrationStatus.PENDING, current_time=now(), interval=60)

    @central.on(Action.HEARTBEAT)
    def heartbeat_handler(session: Session, request: HeartbeatRequest) -> HeartbeatResponse:
        received.append("Heartbeat")
        return HeartbeatResponse(current_time=now())

    registry = InMemoryRegistry([StationRecord("S1", previously_accepted=True)])
    with trio.fail_after(10):
        async with open_central_system(
            central, 0, host="127.0.0.1", config=FAST_SERVER, registry=registry
        ) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            # Acceptance remembered on both sides: the station starts ACCEPTED without booting.
            async with open_substation(
                url, "S1", station_router(), BOOT, config=FAST_CLIENT, last_accepted_boot=BOOT
            ) as station:
                session = await station.wait_accepted()
                outcomes: dict[str, object] = {}

                async def reboot() -> None:
                    outcomes["boot"] = await session.call(attrs.evolve(BOOT, firmware_version="9.9.9"))

                async def heartbeat() -> None:
                    try:
                        await session.call(HeartbeatRequest())
                    except Exception as exc:  # the outcome under test
                        outcomes["heartbeat"] = exc

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reboot)
                    while session.connection.outstanding_calls < 1:
                        await trio.sleep(0.005)
                    nursery.start_soon(heartbeat)  # queues behind the BootNotification in flight
                    while session.connection.outstanding_calls < 2:
                        await trio.sleep(0.005)
                    release.set()
                assert outcomes["boot"].status is RegistrationStatus.PENDING  # type: ignore[attr-defined]
                failure = outcomes["heartbeat"]
                assert isinstance(failure, LocalProtocolError)
                assert failure.code is ErrorCode.SECURITY_ERROR
                assert received == ["BootNotification"]
                assert station.connected


async def test_boot_rejected_waits_interval_then_reconnects() -> None:
    app = CentralApp((RegistrationStatus.REJECTED, 1), (RegistrationStatus.ACCEPTED, 60))
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(url, "S1", station_router(), BOOT, config=FAST_CLIENT) as station:
                await app.wait_for("BootNotification")
                rejected_at = trio.current_time()
                # The Central System closes the connection after its Rejected answer (§M3.1).
                await station.wait_disconnected()
                assert trio.current_time() - rejected_at < 0.5
                await station.wait_accepted()
                # PROTOCOL-DECISIONS §5: the station waited `interval` (1 s) before reconnecting.
                assert trio.current_time() - rejected_at >= 1.0
                assert station.connections == 2
                assert app.actions() == ["BootNotification", "BootNotification"]


async def test_reconnect_without_reboot_then_with_changed_boot_fields() -> None:
    app = CentralApp((RegistrationStatus.ACCEPTED, 60))
    registry = InMemoryRegistry(open_registration=True)
    with trio.fail_after(10):
        async with open_central_system(
            app.router, 0, host="127.0.0.1", config=FAST_SERVER, registry=registry
        ) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            stored: list[object] = []

            async def on_boot_accepted(boot: object) -> None:
                stored.append(boot)  # the station's durable store

            async with open_substation(
                url, "S1", station_router(), BOOT, config=FAST_CLIENT, on_boot_accepted=on_boot_accepted
            ) as station:
                first = await station.wait_accepted()
                assert stored == [BOOT]
                while not registry.records.get("S1", None) or not registry.records["S1"].previously_accepted:
                    await trio.sleep(0.01)
                # The Central System drops the connection; the station comes back without booting.
                server.sessions["S1"].request_close(1001, "restart")
                await first.wait_closed()
                second = await station.wait_accepted()
                assert second is not first
                assert second.connection.boot_state is BootState.ACCEPTED
                await station.call(HeartbeatRequest())  # accepted on the server side too (remembered)
                assert app.actions() == ["BootNotification", "Heartbeat"]
                assert station.boots_sent == 1
                # A firmware update changes a boot field: the next connection boots again (§J5.5).
                station.boot = attrs.evolve(BOOT, firmware_version="1.1.0")
                server.sessions["S1"].request_close(1001, "restart")
                await second.wait_closed()
                await station.wait_accepted()
                assert app.actions() == ["BootNotification", "Heartbeat", "BootNotification"]
                assert app.received[-1][2].firmware_version == "1.1.0"
                assert stored[-1] == station.boot == station.last_accepted_boot


async def test_slow_handler_does_not_block_the_connection() -> None:
    app = CentralApp()
    release = trio.Event()
    entered = trio.Event()

    async def slow_meter_values(session: Session, request: MeterValuesRequest) -> object:
        entered.set()
        await release.wait()
        return {}

    app.router.add(Action.METER_VALUES, slow_meter_values)
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(url, "S1", station_router(), BOOT, config=FAST_CLIENT) as station:
                session = await station.wait_accepted()
                answers: list[object] = []

                async def send_meter_values() -> None:
                    answers.append(await station.call(meter_values()))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send_meter_values)
                    await entered.wait()
                    # While the handler sleeps, the server still answers pings: nothing else can
                    # arrive from it now (the MeterValues answer waits for the handler), so the
                    # bytes that end ``awaiting_pong`` are the server's pong.
                    await session.websocket.ping(b"still there?")
                    while session.websocket.awaiting_pong:
                        await trio.sleep(0.01)
                    # ... reads, calls and gets results.
                    for _ in range(3):
                        assert (await server.call("S1", GetConfigurationRequest())).configuration_key
                    assert answers == []  # the handler is still busy
                    release.set()
                assert answers == [MeterValuesResponse()]  # and its answer went out after all


async def test_handler_exceptions_are_contained() -> None:
    app = CentralApp()

    async def crashing(session: Session, request: StreetlightStatusNotificationRequest) -> object:
        raise RuntimeError("bug in the application")

    def refusing(session: Session, request: MeterValuesRequest) -> object:
        raise ProtocolError("meter values are not accepted here", ErrorCode.NOT_SUPPORTED, {"why": "test"})

    app.router.add(Action.STREETLIGHT_STATUS_NOTIFICATION, crashing)
    app.router.add(Action.METER_VALUES, refusing)
    status = StreetlightStatusNotificationRequest(contactor_id=1, status=LightStatus.ON, timestamp=now())
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with (
                open_substation(url, "A", station_router(), BOOT, config=FAST_CLIENT) as a,
                open_substation(url, "B", station_router(), BOOT, config=FAST_CLIENT) as b,
            ):
                await a.wait_accepted()
                await b.wait_accepted()
                session_a = a.session
                with pytest.raises(CallErrorReceived) as info:
                    await a.call(status)
                # PROTOCOL-DECISIONS §3: InternalError, generic description (no internals on the wire).
                assert info.value.code == "InternalError"
                assert "bug" not in info.value.description
                with pytest.raises(CallErrorReceived) as info:
                    await a.call(meter_values())
                assert (info.value.code, info.value.details) == ("NotSupported", {"why": "test"})
                # The failing connection and the others carry on.
                await a.call(HeartbeatRequest())
                await b.call(HeartbeatRequest())
                assert a.session is session_a
                assert set(server.sessions) == {"A", "B"}


async def test_connection_failure_closes_only_that_connection_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = CentralApp()

    async def on_connect(session: Session) -> None:
        if session.identity == "BAD":
            raise RuntimeError("per-connection code failed")

    with trio.fail_after(10):
        async with open_central_system(
            app.router, 0, host="127.0.0.1", config=FAST_SERVER, on_connect=on_connect
        ) as server:
            good = await raw_station(server.port, "GOOD")
            with caplog.at_level(logging.ERROR, logger="os3p_trio"):
                bad = await raw_station(server.port, "BAD")
                with pytest.raises(ConnectionClosed) as info:
                    await bad.receive_messages()
            assert info.value.code == 1011
            assert "BAD" in caplog.text
            # The server and the other connection are fine.
            await good.send_messages(['[2,"1","BootNotification",{}]'])
            [reply] = await good.receive_messages()
            assert reply.startswith('[4,"1","OccurenceConstraintViolation"')
            while "BAD" in server.sessions:  # gone once its closing handshake is over (bounded)
                await trio.sleep(0.01)
            assert set(server.sessions) == {"GOOD"}
            await good.aclose(timeout=1)


async def test_server_call_errors_timeout_and_closed() -> None:
    app = CentralApp()
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            ws = await raw_station(server.port, "S1")
            while "S1" not in server.sessions:
                await trio.sleep(0.01)
            session = server.sessions["S1"]
            with pytest.raises(CallTimeout):
                await session.call(GetConfigurationRequest(), timeout=0.2)  # the raw peer never answers
            await ws.receive_messages()  # the CALL that timed out
            async with trio.open_nursery() as nursery:

                async def answer_with_error() -> None:
                    [text] = await ws.receive_messages()
                    unique_id = text.split('"')[1]
                    await ws.send_messages([f'[4,"{unique_id}","NotSupported","nope",{{}}]'])

                nursery.start_soon(answer_with_error)
                with pytest.raises(CallErrorReceived) as info:
                    await session.call(GetConfigurationRequest())
                assert (info.value.code, info.value.description) == ("NotSupported", "nope")

            async def close_soon() -> None:
                await ws.receive_messages()
                await ws.aclose(1000, "bye", timeout=1)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(close_soon)
                with pytest.raises(ConnectionClosed):
                    await session.call(GetConfigurationRequest())
            with pytest.raises(ConnectionClosed):
                await server.call("S1", GetConfigurationRequest())


async def test_graceful_shutdown_closes_everyone_with_1001() -> None:
    app = CentralApp()
    codes: list[int] = []

    async def read_close(ws: WebSocket) -> None:
        try:
            await ws.receive_messages()
        except ConnectionClosed as exc:
            codes.append(exc.code)

    with trio.fail_after(10):
        async with (
            trio.open_nursery() as readers,
            open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server,
        ):
            for name in ("A", "B", "C"):
                ws = await raw_station(server.port, f"{name}")
                readers.start_soon(read_close, ws)
            while len(server.sessions) < 3:
                await trio.sleep(0.01)
        # Leaving the context cancels the server: every connection gets 1001 "going away".
    assert codes == [1001, 1001, 1001]


async def test_dead_peers_are_detected_on_both_sides() -> None:
    app = CentralApp()
    with trio.fail_after(10):
        # Server side: a station that completed the handshake and then went silent (never pongs).
        config = ServerConfig(ping_interval=0.2, pong_timeout=0.3, close_timeout=0.5)
        async with open_central_system(app.router, 0, host="127.0.0.1", config=config) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(
                b"GET /OS3P/MUTE HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Protocol: OS3P1.0\r\n\r\n"
            )
            start = trio.current_time()
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
            elapsed = trio.current_time() - start
            assert b"\r\n\r\n\x89\x00" in data  # a ping frame after the 101 ...
            assert 0.4 <= elapsed < 3  # ... then, no pong within 0.3 s: socket closed
            while "MUTE" in server.sessions:
                await trio.sleep(0.01)
            await stream.aclose()

    # Client side: a "Central System" that upgrades and then never answers anything.
    async def mute_server(stream: trio.SocketStream) -> None:
        from os3p_trio import server_handshake

        pending = await server_handshake(stream)
        assert pending is not None
        await pending.accept("OS3P1.0")
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, mute_server, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            config_c = attrs.evolve(FAST_CLIENT, ping_interval=0.2, pong_timeout=0.3)
            async with open_substation(
                f"ws://127.0.0.1:{port}/OS3P", "S1", station_router(), BOOT, config=config_c
            ) as station:
                session = await station.wait_connected()
                start = trio.current_time()
                # BootNotification waits (call timeout 30 s); the pong timeout ends the connection first.
                await session.wait_closed()
                assert 0.4 <= trio.current_time() - start < 3
            nursery.cancel_scope.cancel()


async def test_unregistered_action_invalid_answers_and_sync_crash(caplog: pytest.LogCaptureFixture) -> None:
    app = CentralApp()

    def bad_answer(session: Session, request: MeterValuesRequest) -> object:
        return {"bogus": 1}  # breaks the MeterValues response schema

    def crash(session: Session, request: HeartbeatRequest) -> object:
        raise KeyError("oops")

    app.router.add(Action.METER_VALUES, bad_answer)
    app.router.add(Action.HEARTBEAT, crash)
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(url, "S1", station_router(), BOOT, config=FAST_CLIENT) as station:
                await station.wait_accepted()
                session = station.session
                assert session is not None
                # No handler for a known action: NotImplemented (PROTOCOL-DECISIONS §3, §M4.2).
                with pytest.raises(CallErrorReceived) as info:
                    await session.call_payload("FirmwareStatusNotification", {"status": "Installed"})
                assert info.value.code == "NotImplemented"
                with caplog.at_level(logging.ERROR, logger="os3p_trio"):
                    with pytest.raises(CallErrorReceived) as info:
                        await station.call(meter_values())
                    assert info.value.code == "InternalError"
                    with pytest.raises(CallErrorReceived) as info:
                        await station.call(HeartbeatRequest())
                    assert info.value.code == "InternalError"
                assert "invalid answer" in caplog.text
                assert "KeyError" in caplog.text
                assert station.session is session  # the connection carries on


async def test_invalid_result_from_peer() -> None:
    app = CentralApp()
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            ws = await raw_station(server.port, "S1")
            while "S1" not in server.sessions:
                await trio.sleep(0.01)

            async def answer_badly() -> None:
                [text] = await ws.receive_messages()
                unique_id = text.split('"')[1]
                await ws.send_messages([f'[3,"{unique_id}",{{"configurationKey":"not a list"}}]'])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_badly)
                with pytest.raises(InvalidResult):
                    await server.call("S1", GetConfigurationRequest())
            await ws.aclose(timeout=1)


async def test_heartbeats_can_be_left_to_the_application() -> None:
    app = CentralApp((RegistrationStatus.ACCEPTED, 1))
    config = attrs.evolve(FAST_CLIENT, send_heartbeats=False)
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(url, "S1", station_router(), BOOT, config=config) as station:
                await station.wait_accepted()
                await trio.sleep(1.3)
                assert app.actions() == ["BootNotification"]


async def test_raw_handlers_take_and_return_wire_dicts() -> None:
    # Issue 2: typed structuring is a choice, not a tax.  A raw handler gets the validated payload
    # exactly as received (camelCase, a date-time without offset left as it is) and answers a dict,
    # which is still validated against the response schema before it is sent.
    seen: list[tuple[str, object]] = []
    router = Router()

    @router.on_raw(Action.HEARTBEAT)
    def heartbeat(session: Session, payload: dict[str, object]) -> dict[str, object]:
        seen.append(("Heartbeat", payload))
        return {"currentTime": "2026-11-26T10:00:00Z"}

    async def meter_values(session: Session, payload: dict[str, object]) -> dict[str, object]:
        seen.append(("MeterValues", payload))
        return {}

    async def refusing(session: Session, payload: dict[str, object]) -> dict[str, object]:
        raise ProtocolError("no", ErrorCode.NOT_SUPPORTED, {"raw": True})

    def invalid(session: Session, payload: dict[str, object]) -> dict[str, object]:
        return {"currentTime": 5}  # breaks the response schema

    router.add(Action.METER_VALUES, meter_values, raw=True)
    router.add(Action.STATUS_NOTIFICATION, refusing, raw=True)
    router.add(Action.STREETLIGHT_STATUS_NOTIFICATION, invalid, raw=True)
    registry = InMemoryRegistry([StationRecord("S1", previously_accepted=True)])
    meter = {
        "meterValue": [
            {
                "timestamp": "2026-11-26T10:00:00",
                "sampledValue": [{"value": "231.2", "measurand": "Voltage.L1N", "unit": "V"}],
            }
        ]
    }
    with trio.fail_after(10):
        async with open_central_system(
            router, 0, host="127.0.0.1", registry=registry, config=FAST_SERVER
        ) as server:
            ws = await raw_station(server.port, "S1")
            frames = [
                '[2,"1","Heartbeat",null]',
                '[2,"2","MeterValues",' + json.dumps(meter) + "]",
                '[2,"3","StatusNotification",{"status":"Ok","errorCode":"NoError"}]',
                '[2,"4","StreetlightStatusNotification",'
                '{"contactorId":1,"status":"On","timestamp":"2026-11-26T16:00:00Z"}]',
            ]
            await ws.send_messages(frames)
            replies: dict[str, list[object]] = {}
            while len(replies) < len(frames):
                for text in await ws.receive_messages():
                    frame = json.loads(text)
                    replies[frame[1]] = frame
            assert replies["1"] == [3, "1", {"currentTime": "2026-11-26T10:00:00Z"}]
            assert replies["2"] == [3, "2", {}]
            assert replies["3"][:3] == [4, "3", "NotSupported"]
            assert replies["3"][4] == {"raw": True}
            assert replies["4"][:3] == [4, "4", "InternalError"]
            assert seen == [("Heartbeat", {}), ("MeterValues", meter)]
            assert all(type(payload) is dict for _, payload in seen)
            await ws.aclose(timeout=1)

    # The Substation side too: a raw GetConfiguration handler, and a typed result for the caller.
    station = Router()

    @station.on_raw(Action.GET_CONFIGURATION)
    async def get_configuration(session: Session, payload: dict[str, object]) -> dict[str, object]:
        assert payload == {"key": ["HeartbeatInterval"]}
        return {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]}

    app = CentralApp()
    with trio.fail_after(10):
        async with open_central_system(app.router, 0, host="127.0.0.1", config=FAST_SERVER) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(url, "S1", station, BOOT, config=FAST_CLIENT) as client:
                await client.wait_accepted()
                response = await server.call("S1", GetConfigurationRequest(key=("HeartbeatInterval",)))
                assert isinstance(response, GetConfigurationResponse)
                assert response.configuration_key == (
                    ConfigurationKey(key="HeartbeatInterval", readonly=False, value="300"),
                )


async def test_serve_central_system_two_endpoints_and_an_outside_handler_nursery() -> None:
    # trio's idiom (as trio.serve_tcp): task_status gives the server, it runs until cancelled; with
    # an outside handler_nursery the connections (and their call deadlines) outlive the listener.
    app = CentralApp()
    config = attrs.evolve(FAST_SERVER, endpoints=("/OS3P", "/webServices/OS3P"))
    codes: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as readers, trio.open_nursery() as handlers:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    partial(
                        serve_central_system,
                        app.router,
                        0,
                        host="127.0.0.1",
                        config=config,
                        handler_nursery=handlers,
                    )
                )
                assert isinstance(server, CentralSystemServer)
                port = server.port
                sockets = {}
                for identity, target in (("A", "/OS3P/A"), ("B", "/webServices/OS3P/B")):
                    sockets[identity] = await client_handshake(
                        await trio.open_tcp_stream("127.0.0.1", port),
                        host="h",
                        target=target,
                        subprotocols=["OS3P1.0"],
                    )
                while len(server.sessions) < 2:
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()  # stop serving: the listener closes
            with pytest.raises(OSError, match="connect"):
                await trio.open_tcp_stream("127.0.0.1", port)
            # The connections carry on: calls are answered, and call deadlines still fire.
            boot = '[2,"b1","BootNotification",' + json.dumps(unstructure(BOOT)) + "]"
            await sockets["B"].send_messages([boot])
            [reply] = await sockets["B"].receive_messages()
            assert json.loads(reply)[:2] == [3, "b1"]
            with pytest.raises(CallTimeout):
                await server.sessions["A"].call(GetConfigurationRequest(), timeout=0.2)

            async def read_close(ws: WebSocket) -> None:
                try:
                    while True:
                        await ws.receive_messages()
                except ConnectionClosed as exc:
                    codes.append(exc.code)

            for ws in sockets.values():
                readers.start_soon(read_close, ws)
            handlers.cancel_scope.cancel()  # the connections' nursery ends: 1001 for each
    assert codes == [1001, 1001]


async def test_websocket_ping_interval_can_be_changed_on_a_live_client() -> None:
    # websocketPingInterval (§J6): 0 disables client pings; a ChangeConfiguration handler sets
    # ``client.ping_interval``, which applies to the current connection at once and to the next ones.
    async def mute_server(stream: trio.SocketStream) -> None:
        pending = await server_handshake(stream)
        assert pending is not None
        await pending.accept("OS3P1.0")
        await trio.sleep_forever()  # never reads: pings go unanswered

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, mute_server, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            config = attrs.evolve(FAST_CLIENT, ping_interval=0.0, pong_timeout=0.3)
            async with open_substation(
                f"ws://127.0.0.1:{port}/OS3P", "S1", station_router(), BOOT, config=config
            ) as station:
                session = await station.wait_connected()
                assert session.ping_interval is None
                await trio.sleep(0.8)  # no pings, so no pong timeout either
                assert not session.is_closed
                with pytest.raises(ValueError, match="websocketPingInterval"):
                    station.ping_interval = -1
                start = trio.current_time()
                station.ping_interval = 0.2
                await session.wait_closed()  # ping after 0.2 s of silence, no pong in 0.3 s: dead
                assert trio.current_time() - start < 2
                while station.session is None or station.session is session:
                    await trio.sleep(0.01)
                assert station.session.ping_interval == 0.2  # the next connection pings too
            nursery.cancel_scope.cancel()


async def test_client_message_size_limit_closes_1009() -> None:
    # PROTOCOL-DECISIONS §1's size limit holds on the Substation side too (ClientConfig.max_message_size).
    got: list[int] = []

    async def oversized_server(stream: trio.SocketStream) -> None:
        pending = await server_handshake(stream)
        assert pending is not None
        ws = await pending.accept("OS3P1.0")
        await ws.send_messages(['[2,"x","GetConfiguration",{"key":["' + "k" * 2000 + '"]}]'])
        # Read until the close arrives: the client's BootNotification may come first.
        with trio.fail_after(5):
            try:
                while True:
                    await ws.receive_messages()
            except ConnectionClosed as exc:
                got.append(exc.code)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, oversized_server, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            config = attrs.evolve(FAST_CLIENT, max_message_size=1000)
            async with open_substation(
                f"ws://127.0.0.1:{port}/OS3P", "S1", station_router(), BOOT, config=config
            ) as station:
                session = await station.wait_connected()
                await session.wait_closed()
                closed = session.websocket.closed
                assert closed is not None
                assert closed.code == 1009
            while not got:
                await trio.sleep(0.01)
            assert got[0] == 1009  # the server was told why
            nursery.cancel_scope.cancel()
