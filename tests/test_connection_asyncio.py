"""The sans-IO core embedded in asyncio with the ``websockets`` package: nothing from trio needed.

A minimal asyncio adapter (below, ~50 lines) drives one :class:`os3p_core.Connection` per
WebSocket: receive -> ``receive_message`` -> events -> ``messages_to_send`` -> send, with
``next_deadline``/``handle_timeout`` for call deadlines.  A Central System (websockets server on
127.0.0.1, port 0) and a Substation (websockets client) run a boot -> heartbeat -> server-initiated
call exchange over real sockets.

The test is synchronous and calls ``asyncio.run`` itself (pytest-trio runs ``async def`` tests
under trio).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from helpers import BOOT_REQUEST, GET_CONFIGURATION_RESPONSE, HEARTBEAT_RESPONSE, boot_response
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from os3p_core import (
    Action,
    BootState,
    BootStateChanged,
    Call,
    CallError,
    CallReceived,
    CallResult,
    Connection,
    Event,
    ResultReceived,
    Role,
)

SUBPROTOCOL = "OS3P1.0"


class AsyncioSession:
    """Drives one Connection over one websockets connection (client or server side)."""

    def __init__(
        self,
        ws: ClientConnection | ServerConnection,
        conn: Connection,
        handler: Callable[[CallReceived], CallResult | CallError],
    ) -> None:
        self.ws = ws
        self.conn = conn
        self.handler = handler
        self.loop = asyncio.get_running_loop()
        self.waiters: dict[str, asyncio.Future[Event]] = {}
        self.boot_changes: list[BootStateChanged] = []

    async def call(self, action: str, payload: dict[str, Any]) -> Event:
        """Send a CALL and wait for its outcome event."""
        unique_id = self.conn.send(Call(action, payload), self.loop.time())
        future: asyncio.Future[Event] = self.loop.create_future()
        self.waiters[unique_id] = future
        await self.flush()
        return await future

    async def flush(self) -> None:
        for text in self.conn.messages_to_send():
            await self.ws.send(text)

    def dispatch(self) -> None:
        while (event := self.conn.next_event()) is not None:
            if isinstance(event, CallReceived):
                self.conn.send(self.handler(event), self.loop.time())
            elif isinstance(event, BootStateChanged):
                self.boot_changes.append(event)
            else:  # the outcome of one of our calls
                self.waiters.pop(event.unique_id).set_result(event)

    async def run(self) -> None:
        while True:
            deadline = self.conn.next_deadline()
            # Wake at least every 0.2 s so that a deadline set by a later call() is not missed.
            timeout = 0.2 if deadline is None else max(0.0, min(0.2, deadline - self.loop.time()))
            try:
                text = await asyncio.wait_for(self.ws.recv(), timeout)
            except TimeoutError:
                self.conn.handle_timeout(self.loop.time())
            except ConnectionClosed:
                self.conn.connection_lost()
                self.dispatch()
                return
            else:
                self.conn.receive_message(text, self.loop.time())  # type: ignore[arg-type]
            self.dispatch()
            await self.flush()


def central_handler(call: CallReceived) -> CallResult | CallError:
    if call.action is Action.BOOT_NOTIFICATION:
        return call.result(boot_response("Accepted", interval=2))
    if call.action is Action.HEARTBEAT:
        return call.result(HEARTBEAT_RESPONSE)
    return call.error("NotImplemented", f"no handler for {call.action}")


async def scenario() -> dict[str, Any]:
    seen: dict[str, Any] = {}
    server_done = asyncio.Event()

    async def server_handler(ws: ServerConnection) -> None:
        assert ws.subprotocol == SUBPROTOCOL
        conn = Connection(Role.CENTRAL_SYSTEM)
        session = AsyncioSession(ws, conn, central_handler)
        runner = asyncio.create_task(session.run())
        # Server-initiated call once the station is accepted and has sent a heartbeat.
        while conn.statistics()["calls_received"] < 2:
            await asyncio.sleep(0.01)
        seen["central_boot_state"] = conn.boot_state
        seen["central_result"] = await session.call("GetConfiguration", {"key": ["TimeZone"]})
        seen["central_stats"] = conn.statistics()
        server_done.set()
        await runner

    station_calls: list[CallReceived] = []

    def station_handler(call: CallReceived) -> CallResult | CallError:
        station_calls.append(call)
        return call.result(GET_CONFIGURATION_RESPONSE)

    async with serve(server_handler, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/OS3P/SUBS1", subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            conn = Connection(Role.SUBSTATION)
            session = AsyncioSession(ws, conn, station_handler)
            runner = asyncio.create_task(session.run())
            seen["boot"] = await session.call("BootNotification", BOOT_REQUEST)
            seen["station_boot_state"] = conn.boot_state
            seen["heartbeat_interval"] = conn.heartbeat_interval
            seen["heartbeat"] = await session.call("Heartbeat", {})
            await server_done.wait()
            seen["station_calls"] = station_calls
            seen["station_boot_changes"] = session.boot_changes
        await runner  # the close reaches the station's reader: connection_lost, clean exit
        seen["station_closed"] = conn.closed
    return seen


def test_boot_heartbeat_and_server_initiated_call_over_asyncio_websockets() -> None:
    seen = asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    assert isinstance(seen["boot"], ResultReceived)
    assert seen["boot"].payload["status"] == "Accepted"
    assert seen["station_boot_state"] is BootState.ACCEPTED
    assert seen["central_boot_state"] is BootState.ACCEPTED
    assert seen["heartbeat_interval"] == 2
    assert [e.new for e in seen["station_boot_changes"]] == [BootState.ACCEPTED]
    assert isinstance(seen["heartbeat"], ResultReceived)
    assert seen["heartbeat"].payload == HEARTBEAT_RESPONSE
    (call,) = seen["station_calls"]
    assert call.action is Action.GET_CONFIGURATION
    assert call.payload == {"key": ["TimeZone"]}
    assert isinstance(seen["central_result"], ResultReceived)
    assert seen["central_result"].payload == GET_CONFIGURATION_RESPONSE
    assert seen["central_stats"]["auto_errors"] == 0
    assert seen["central_stats"]["ignored"] == 0
    assert seen["station_closed"]
