"""kill -9 of a node that holds a station with a call in flight (real PostgreSQL, real Redis, the node in
its own process): the call fails promptly with 409 OwnerNodeDead, the other node sweeps the dead node's
stations to disconnected, and the station is accepted again on the other node with exactly one owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from servers import RedisServer
from test_trio_support import BOOT, FAST_CLIENT

from os3p_core import Action
from os3p_trio import Router, Session, open_substation
from os3p_trio.central import FileArea, open_central_service
from os3p_trio.central._cluster import ClusterConfig
from os3p_trio.central._postgres import open_postgres_store

HERE = Path(__file__).resolve().parent


def slow_station() -> Router:
    router = Router()

    async def reset(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep(30)  # the call is in flight when its node dies
        return {"status": "Accepted"}

    router.add(Action.RESET, reset, raw=True)
    return router


async def test_kill_9_of_a_node_with_a_call_in_flight(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "cluster_node.py"), pg_url, redis.url, "n1", str(tmp_path / "n1")],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ws1 = proc.stdout.readline().decode().split()[1]
        proc.stdout.readline()
        files = FileArea(tmp_path / "fw", tmp_path / "up")
        config = ClusterConfig(
            redis_url=redis.url, node_id="n2", node_ttl=1.0, refresh_interval=0.2, sweep_interval=0.3
        )
        once = attrs.evolve(FAST_CLIENT, reconnect_base=600.0, reconnect_max=900.0)
        with trio.fail_after(60):
            async with open_postgres_store(pg_url) as store:
                await store.add_station("ST1", None, 0.0)
                async with (
                    open_central_service(store, files=files, cluster=config) as two,
                    httpx.AsyncClient(timeout=30) as http,
                ):
                    async with open_substation(f"{ws1}", "ST1", slow_station(), BOOT, config=once) as station:
                        await station.wait_accepted()
                        owner = await store.connection_owner("ST1")
                        assert owner is not None
                        assert (owner.node_id, owner.connected) == ("n1", True)
                        answers: list[httpx.Response] = []

                        async def call() -> None:
                            answers.append(
                                await http.post(
                                    f"{two.api_url}/api/stations/ST1/calls/Reset?timeout=20",
                                    json={"type": "Soft"},
                                )
                            )

                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(call)
                            await trio.sleep(0.5)  # the Reset is at the station now
                            proc.send_signal(signal.SIGKILL)
                            proc.wait()
                        [answer] = answers
                        assert answer.status_code == 409, answer.text
                        assert answer.json()["error"] == "OwnerNodeDead"
                        # The sweep of n2 records the dead node's station as disconnected.
                        while (owner := await store.connection_owner("ST1")) is not None and owner.connected:
                            await trio.sleep(0.1)
                    # The station comes back on the surviving node: exactly one owner, n2.
                    async with open_substation(
                        f"{two.ws_url}", "ST1", slow_station(), BOOT, config=FAST_CLIENT
                    ) as again:
                        await again.wait_accepted()
                        owner = await store.connection_owner("ST1")
                        assert owner is not None
                        assert (owner.node_id, owner.connected) == ("n2", True)
                        assert set(two.central.live.router.cluster.local) == {"ST1"}  # type: ignore[union-attr]
                        fast = await http.post(
                            f"{two.api_url}/api/stations/NOPE/calls/Reset", json={"type": "Soft"}
                        )
                        assert fast.status_code == 404
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
