"""Routed operator calls: latency of a call made on a node that does *not* hold the station (through the
owner's Redis inbox and back) against the same call made on the owning node, p50/p99.

Two cluster nodes in one process (one Redis started for the run), one real os3p_trio substation connected to
node b; ``GetConfiguration`` is called N times from b (local) and N times from a (routed), interleaved.

    python benchmarks/cluster_routing.py [--calls 1000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from os3p_core import Action
from os3p_core.payloads import (
    BootNotificationRequest,
    BootNotificationResponse,
    ConfigurationKey,
    GetConfigurationRequest,
    GetConfigurationResponse,
)
from os3p_trio import ClientConfig, Router, Session, open_central_system, open_substation
from os3p_trio.central import open_sqlite_store
from os3p_trio.central._cluster import Cluster, ClusterConfig
from os3p_trio.central._routing import CallRouter
from os3p_trio.central._server import _SessionLink

BOOT = BootNotificationRequest(
    vendor="Acme", model="SS-1", station_number="7", serial_number="SN-0001", firmware_version="1.0.0",
    iccid="8931000000000000001", imsi="204080000000001",
)


def _station_router() -> Router:
    router = Router()

    @router.on(Action.GET_CONFIGURATION)
    def get_configuration(session: Session, request: GetConfigurationRequest) -> GetConfigurationResponse:
        return GetConfigurationResponse(
            configuration_key=(ConfigurationKey(key="HeartbeatInterval", readonly=False, value="300"),)
        )

    return router


def _central_router() -> Router:
    router = Router()

    @router.on(Action.BOOT_NOTIFICATION)
    def boot(session: Session, request: BootNotificationRequest) -> BootNotificationResponse:
        from datetime import UTC, datetime

        from os3p_core.payloads import RegistrationStatus

        return BootNotificationResponse(
            status=RegistrationStatus.ACCEPTED, current_time=datetime.now(UTC), interval=300
        )

    return router


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(redis_url: str, calls: int, tmp: Path) -> None:
    async def epoch(identity: str) -> int:
        return 1

    async with open_sqlite_store(tmp / "bench.db") as store:
        a = Cluster(store, ClusterConfig(redis_url=redis_url, node_id="a"))
        b = Cluster(store, ClusterConfig(redis_url=redis_url, node_id="b"))
        router_a, router_b = CallRouter(a, _SessionLink), CallRouter(b, _SessionLink)
        async with a.redis, b.redis, trio.open_nursery() as nursery:
            for node, router in ((a, router_a), (b, router_b)):
                await nursery.start(router.run)
                nursery.start_soon(node.read_stream, node.inbox_key(node.node_id), node._on_inbox)
            nursery.start_soon(b._liveness_loop)
            async with open_central_system(
                _central_router(), 0, host="127.0.0.1", on_admit=epoch, on_connect=b.run_connection
            ) as server, open_substation(
                f"ws://127.0.0.1:{server.port}/OS3P", "ST1", _station_router(), BOOT, config=ClientConfig()
            ) as station:
                await station.wait_accepted()
                while await a.redis.get(a.owner_key("ST1")) != "1 b":
                    await trio.sleep(0.05)
                local_link = _SessionLink(b.local["ST1"][0])
                local: list[float] = []
                routed: list[float] = []
                for i in range(calls + 50):
                    t0 = time.perf_counter()
                    await local_link.call("GetConfiguration", {}, timeout=10)
                    t1 = time.perf_counter()
                    await router_a.call("ST1", "GetConfiguration", {}, timeout=10)
                    t2 = time.perf_counter()
                    if i >= 50:  # warm-up left out
                        local.append((t1 - t0) * 1000)
                        routed.append((t2 - t1) * 1000)
            nursery.cancel_scope.cancel()
    print(f"calls: {calls} each (GetConfiguration, one station, interleaved); load: {os.getloadavg()}")
    print(f"{'path':<28}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, values in (("on the owning node", local), ("routed from another node", routed)):
        p50, p99, mean = _pct(values, 0.5), _pct(values, 0.99), statistics.mean(values)
        print(f"{name:<28}{p50:>10.3f}{p99:>10.3f}{mean:>10.3f}")
    print(
        f"added by routing: p50 {_pct(routed, 0.5) - _pct(local, 0.5):.3f} ms, "
        f"p99 {_pct(routed, 0.99) - _pct(local, 0.99):.3f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="50 calls (smoke test)")
    args = parser.parse_args()
    calls = 50 if args.quick else args.calls
    tmp = Path(tempfile.mkdtemp(prefix="os3p-bench-"))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        trio.run(_run, f"redis://127.0.0.1:{port}/0", calls, tmp)
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
