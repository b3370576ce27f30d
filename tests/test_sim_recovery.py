"""PROTOCOL-DECISIONS §5 recovery over real sockets: a live os3p-sim station whose Central System lost its
state (``os3p-central`` restarted on an empty database, or an independent Central System written here with
``websockets``) gets SecurityError for its queued notifications, forgets its remembered acceptance, boots
again and delivers every queued notification, in order."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import threading
from pathlib import Path

import trio
import websockets

from os3p_sim import Change, LiveStation, SQLiteStore, StationConfig
from os3p_trio import ClientConfig
from os3p_trio.central import CentralConfig, FileArea, open_central_service, open_sqlite_store

FAST_CLIENT = ClientConfig(reconnect_base=0.2, reconnect_max=1.0, ping_interval=0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(i: int) -> dict[str, object]:
    return {"status": "Ok", "errorCode": "OtherError", "info": f"queued {i}",
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "vendorId": "os3p-sim", "vendorErrorCode": "Test"}


async def test_central_restarted_on_an_empty_database_gets_every_queued_notification(tmp_path: Path) -> None:
    port = free_port()
    sim_store = SQLiteStore(str(tmp_path / "sim.sqlite"), synchronous="NORMAL")
    files = FileArea(tmp_path / "firmware", tmp_path / "uploads")
    config = CentralConfig(heartbeat_interval=60, open_registration=True)
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            async with (
                open_sqlite_store(tmp_path / "first.sqlite") as store,
                open_central_service(store, config, port=port, files=files, secret=b"k" * 32) as service,
            ):
                sim = LiveStation(service.ws_url, "SIM-1", sim_store, config=StationConfig(),
                                  client_config=FAST_CLIENT)
                nursery.start_soon(sim.run)
                while sim.client is None or not sim.client.accepted:
                    await trio.sleep(0.05)
                while sim_store.outbox_head("SIM-1") is not None:  # the boot's own notifications
                    await trio.sleep(0.05)
            # The Central System is gone; the station queues notifications durably meanwhile.
            while sim.client is not None and sim.client.connected:
                await trio.sleep(0.05)
            seqs = sim_store.apply("SIM-1", Change(outbox=tuple(("StatusNotification", status(i))
                                                                for i in range(5))), 0.0)
            assert len(seqs) == 5
            async with (
                open_sqlite_store(tmp_path / "empty.sqlite") as store2,
                open_central_service(store2, config, port=port, files=files, secret=b"k" * 32),
            ):
                while sim_store.outbox_head("SIM-1") is not None:
                    await trio.sleep(0.05)
                events = await store2.events("SIM-1", limit=100)
                infos = [e.payload.get("info") for e in reversed(events)
                         if e.kind.value == "StatusNotification"]
                queued = [i for i in infos if isinstance(i, str) and i.startswith("queued")]
                assert queued == [f"queued {i}" for i in range(5)]  # all of them, in order
                assert sim_store.dead_letters("SIM-1") == []
                boots = [e for e in events if e.kind.value == "BootNotification"]
                assert boots  # it booted again: the empty database knew nothing of it
            nursery.cancel_scope.cancel()


class ForgetfulCentral:
    """A minimal independent Central System (the ``websockets`` package, asyncio, in a thread): it accepts
    every BootNotification and answers SecurityError to anything else from a station that has not booted
    *since the last* :meth:`forget` (a restart that lost its state).  It never sends TriggerMessage: the
    station must recover by itself."""

    def __init__(self) -> None:
        self.booted: set[str] = set()
        self.received: list[dict[str, object]] = []
        self.security_errors = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handler(self, ws: websockets.ServerConnection) -> None:
        identity = (ws.request.path if ws.request is not None else "/").rsplit("/", 1)[-1]
        async for text in ws:
            msg = json.loads(text)
            if msg[0] != 2:
                continue
            uid, action, payload = msg[1], msg[2], msg[3]
            if action == "BootNotification":
                self.booted.add(identity)
                reply = [3, uid, {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z",
                                  "interval": 60}]
            elif identity not in self.booted:
                self.security_errors += 1
                reply = [4, uid, "SecurityError", "not booted", {}]
            else:
                self.received.append({"action": action, **payload})
                reply = [3, uid, {"currentTime": "2026-01-01T00:00:00Z"} if action == "Heartbeat" else {}]
            await ws.send(json.dumps(reply))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with websockets.serve(self._handler, "127.0.0.1", 0, subprotocols=["OS3P1.0"]) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def forget(self) -> None:
        self.booted.clear()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def test_an_independent_central_system_that_lost_its_state_gets_every_queued_notification(
    tmp_path: Path,
) -> None:
    central = ForgetfulCentral()
    central.start()
    try:
        sim_store = SQLiteStore(str(tmp_path / "sim.sqlite"), synchronous="NORMAL")
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                sim = LiveStation(f"ws://127.0.0.1:{central.port}/OS3P", "SIM-W", sim_store,
                                  config=StationConfig(), client_config=FAST_CLIENT)
                nursery.start_soon(sim.run)
                while sim.client is None or not sim.client.accepted:
                    await trio.sleep(0.05)
                while sim_store.outbox_head("SIM-W") is not None:
                    await trio.sleep(0.05)
                # The Central System loses its state (no reconnect: the station still thinks it is accepted).
                central.forget()
                sim_store.apply("SIM-W", Change(outbox=tuple(("StatusNotification", status(i))
                                                             for i in range(5))), 0.0)
                sim._outbox_wake.set()  # what the model does when it appends (LiveStation._apply)
                while sim_store.outbox_head("SIM-W") is not None:
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        queued = [r["info"] for r in central.received if str(r.get("info", "")).startswith("queued")]
        assert queued == [f"queued {i}" for i in range(5)]
        assert central.security_errors >= 1
        assert sim_store.dead_letters("SIM-W") == []
    finally:
        central.stop()
