"""PROTOCOL-DECISIONS §5 recovery over real sockets: a live os3p-sim station whose Central System lost its state
(``os3p-central`` restarted on an empty database) gets SecurityError for its queued notifications, forgets its
remembered acceptance, boots again and delivers every queued notification, in order."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import trio

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
                infos = [e.payload.get("info") for e in reversed(events) if e.kind.value == "StatusNotification"]
                queued = [i for i in infos if isinstance(i, str) and i.startswith("queued")]
                assert queued == [f"queued {i}" for i in range(5)]  # all of them, in order
                assert sim_store.dead_letters("SIM-1") == []
                boots = [e for e in events if e.kind.value == "BootNotification"]
                assert boots  # it booted again: the empty database knew nothing of it
            nursery.cancel_scope.cancel()
