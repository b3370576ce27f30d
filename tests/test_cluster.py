"""Cluster pieces that live in Redis, against a real redis-server (the ``redis`` fixture): coredis under trio,
the liveness key, the forwards-only ownership cache and its "replaced" notice, the events stream, and the
prompt 409/503 answers of call routing.  (End-to-end tests with several nodes need the stores'
claim/release_connection, built on the pg and export branches.)"""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import coredis
import pytest
import trio
from servers import RedisServer

from os3p_trio import Session
from os3p_trio.central import open_sqlite_store
from os3p_trio.central._cluster import Cluster, ClusterConfig, connect_redis, follow_events
from os3p_trio.central._routing import CallRouter, ClusterUnavailable, OwnerNodeDead
from os3p_trio.central._server import _SessionLink
from os3p_trio.central._service import NotConnected


async def test_coredis_runs_under_trio(redis: RedisServer) -> None:
    client = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with client:
        assert await client.set("k", "v", px=200)
        assert await client.get("k") == "v"
        await trio.sleep(0.3)
        assert await client.get("k") is None  # the TTL expired
        first = await client.xadd("s", {"a": "1"})
        got: list[object] = []

        async def reader() -> None:
            answer = await client.xread({"s": first}, count=10, block=5000)
            got.append(answer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.1)
            await client.xadd("s", {"b": "2"})
        [answer] = got
        assert isinstance(answer, dict)
        [(entry,)] = answer.values()
        assert dict(entry.field_values) == {"b": "2"}
        with trio.move_on_after(0.2) as scope:  # a trio cancel scope ends a blocking XREAD
            await client.xread({"s": "$"}, block=5000)
        assert scope.cancelled_caught
        assert await client.ping() == "PONG"


def _config(redis: RedisServer, node: str) -> ClusterConfig:
    return ClusterConfig(redis_url=redis.url, node_id=node, node_ttl=0.5, refresh_interval=0.1)


async def test_node_id_is_validated(redis: RedisServer) -> None:
    with pytest.raises(ValueError, match="node id"):
        ClusterConfig(redis_url=redis.url, node_id="bad id/1")


async def test_liveness_key_and_forwards_only_ownership_cache(redis: RedisServer, tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "c.db") as store:
        a, b = Cluster(store, _config(redis, "a")), Cluster(store, _config(redis, "b"))
        async with a.redis, b.redis:
            await a._refresh()
            assert await b.node_alive("a")
            assert not await b.node_alive("c")
            await trio.sleep(0.7)
            assert not await b.node_alive("a")  # not refreshed within node_ttl: dead for the others
            # a holds epoch 1; b claims epoch 2 and tells a (its inbox gets a "replace" notice).
            assert await a._publish_owner("ST1", 1)
            assert await b._publish_owner("ST1", 2)
            entries = await a.redis.xrange(a.inbox_key("a"))
            assert [dict(e.field_values) for e in entries] == [
                {"kind": "replace", "identity": "ST1", "epoch": "2"}
            ]
            # A late write of the older epoch is refused: a learns it is superseded.
            assert not await a._publish_owner("ST1", 1)
            assert await a.redis.get(a.owner_key("ST1")) == "2 b"
            # Releasing an old epoch leaves the newer entry; releasing the current one removes it.
            await a._release.execute(keys=[a.owner_key("ST1")], args=[1])
            assert await a.redis.get(a.owner_key("ST1")) == "2 b"
            await b._release.execute(keys=[b.owner_key("ST1")], args=[2])
            assert await a.redis.get(a.owner_key("ST1")) is None


async def test_events_are_published_and_followed(redis: RedisServer, tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "c.db") as store:
        node = Cluster(store, _config(redis, "n1"))
        async with node.redis, trio.open_nursery() as nursery:
            nursery.start_soon(node._publisher_loop)
            node.publish("Connected", "ST1", {"epoch": 3})
            node.publish("StreetlightStatusNotification", "ST1", {"payload": {"status": "On"}})
            seen = []
            with trio.fail_after(10):
                async with (
                    connect_redis(redis.url) as client,
                    aclosing(follow_events(client, since="0")) as events,
                ):
                    async for event in events:
                        seen.append(event)
                        if len(seen) == 2:
                            break
            nursery.cancel_scope.cancel()
    assert [(e.kind, e.identity, e.node) for e in seen] == [
        ("Connected", "ST1", "n1"),
        ("StreetlightStatusNotification", "ST1", "n1"),
    ]
    assert seen[0].data == {"epoch": 3}
    assert node.events_published == 2
    assert node.events_dropped == 0


async def test_routing_to_a_dead_owner_is_409_at_once_and_without_redis_503(
    redis: RedisServer, tmp_path: Path
) -> None:
    async with open_sqlite_store(tmp_path / "c.db") as store:
        node = Cluster(store, _config(redis, "n1"))
        router = CallRouter(node, _SessionLink)
        async with node.redis:
            # The cache names node "gone", whose liveness key does not exist.
            await node.redis.set(node.owner_key("ST1"), "4 gone")
            with trio.fail_after(5), pytest.raises(OwnerNodeDead, match="gone"):
                await router.call("ST1", "Reset", {"type": "Soft"}, timeout=30)
            redis.stop()
            with trio.fail_after(10), pytest.raises(ClusterUnavailable):
                await router.call("ST1", "Reset", {"type": "Soft"}, timeout=30)


async def test_routed_call_travels_through_the_owner_inbox_and_back(
    redis: RedisServer, tmp_path: Path
) -> None:
    async with open_sqlite_store(tmp_path / "c.db") as store:
        a, b = Cluster(store, _config(redis, "a")), Cluster(store, _config(redis, "b"))
        router_a, router_b = CallRouter(a, _SessionLink), CallRouter(b, _SessionLink)
        async with a.redis, b.redis, trio.open_nursery() as nursery:
            for node, router in ((a, router_a), (b, router_b)):
                await nursery.start(router.run)
                nursery.start_soon(node.read_stream, node.inbox_key(node.node_id), node._on_inbox)
            nursery.start_soon(b._liveness_loop)
            await trio.sleep(0.3)  # b's liveness key exists, both readers started
            # The cache says b holds ST1, but b has no such session: b answers, a raises NotConnected.
            await a.redis.set(a.owner_key("ST1"), "7 b")
            with trio.fail_after(10), pytest.raises(NotConnected, match="not connected"):
                await router_a.call("ST1", "Reset", {"type": "Soft"}, timeout=5)
            # A call whose deadline has passed when it reaches b is refused, never executed.
            await a.redis.xadd(
                b.inbox_key("b"),
                {"kind": "call", "id": "late1", "identity": "ST1", "action": "Reset",
                 "payload": '{"type":"Soft"}', "deadline": repr(a.clock() - 1), "reply": "a"},
            )
            with trio.fail_after(10):
                while router_b.expired == 0:
                    await trio.sleep(0.05)
            replies = await a.redis.xrange(a.replies_key("a"))
            outcomes = {e.field_values["id"]: e.field_values["outcome"] for e in replies}
            assert outcomes["late1"] == "expired"
            nursery.cancel_scope.cancel()


def test_reuse_port_sockets_share_a_port_and_workers_get_their_own_options() -> None:
    from os3p_trio.central._workers import raise_open_file_limit, reuse_port_socket, worker_argv

    reserved = reuse_port_socket("127.0.0.1", 0, listen=False)
    port = reserved.getsockname()[1]
    first, second = reuse_port_socket("127.0.0.1", port), reuse_port_socket("127.0.0.1", port)
    assert first.getsockname()[1] == second.getsockname()[1] == port
    for sock in (reserved, first, second):
        sock.close()
    assert raise_open_file_limit() >= 1
    argv = worker_argv(["--db", "x", "--workers", "3", "--node-id", "n", "--port=9", "--redis", "r"], 2, "n",
                       9220, 9221)
    assert argv == ["--db", "x", "--redis", "r", "--node-id", "n-2", "--port", "9220", "--api-port", "9221",
                    "--reuse-port"]


async def test_admission_hook_runs_before_the_101_and_its_refusals_are_http_answers() -> None:
    from test_trio_support import FAST_SERVER, CentralApp, raw_station

    from os3p_trio import HandshakeFailed, HandshakeRejected, open_central_system

    admitted: list[str] = []
    sessions: list[object] = []

    async def on_admit(identity: str) -> int:
        if identity == "GONE":
            raise HandshakeRejected(404, "removed meanwhile")
        if identity == "DOWN":
            raise OSError("store unavailable")
        admitted.append(identity)
        return 41 + len(admitted)

    async def on_connect(session: Session) -> None:
        sessions.append(session.admission)
        await trio.sleep_forever()

    app = CentralApp()
    async with open_central_system(
        app.router, 0, host="127.0.0.1", config=FAST_SERVER, on_admit=on_admit, on_connect=on_connect
    ) as server:
        ws = await raw_station(server.port, "S1")
        with trio.fail_after(5):
            while not sessions:
                await trio.sleep(0.01)
        assert admitted == ["S1"]
        assert sessions == [42]
        assert server.get("S1") is not None
        assert server.get("S1").admission == 42  # type: ignore[union-attr]
        for identity, status in (("GONE", 404), ("DOWN", 503)):
            with pytest.raises(HandshakeFailed) as failed:
                await raw_station(server.port, identity)
            assert failed.value.status == status
        await ws.aclose()


async def test_healthz_answers_without_a_token(tmp_path: Path) -> None:
    import httpx

    from os3p_trio.central import FileArea, open_central_service

    files = FileArea(tmp_path / "fw", tmp_path / "up")
    async with (
        open_sqlite_store(tmp_path / "c.db") as store,
        open_central_service(store, files=files, api_token="t0ken") as service,  # type: ignore[arg-type]
        httpx.AsyncClient() as client,
    ):
        health = await client.get(service.api_url + "/healthz")
        info = await client.get(service.api_url + "/api/info")
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    assert info.status_code == 401


async def test_routed_call_reaches_a_station_on_another_node(redis: RedisServer, tmp_path: Path) -> None:
    """Node b holds the station (its ownership published by ``run_connection``); node a's router reaches
    it through b's inbox: a CALLRESULT comes back as the result, a CALLERROR as CallErrorReceived."""
    from test_trio_roles import station_router
    from test_trio_support import BOOT, FAST_CLIENT, FAST_SERVER, CentralApp

    from os3p_trio import CallErrorReceived, open_central_system, open_substation

    async def epoch_seven(identity: str) -> int:
        return 7  # what the store's claim_connection returns; the cluster takes it from session.admission

    async with open_sqlite_store(tmp_path / "c.db") as store:
        a, b = Cluster(store, _config(redis, "a")), Cluster(store, _config(redis, "b"))
        router_a, router_b = CallRouter(a, _SessionLink), CallRouter(b, _SessionLink)
        app = CentralApp()
        async with a.redis, b.redis, trio.open_nursery() as nursery:
            for node, router in ((a, router_a), (b, router_b)):
                await nursery.start(router.run)
                nursery.start_soon(node.read_stream, node.inbox_key(node.node_id), node._on_inbox)
            nursery.start_soon(b._liveness_loop)
            async with open_central_system(
                app.router, 0, host="127.0.0.1", config=FAST_SERVER, on_admit=epoch_seven,
                on_connect=b.run_connection,
            ) as server, open_substation(
                f"ws://127.0.0.1:{server.port}/OS3P", "ST1", station_router(), BOOT, config=FAST_CLIENT
            ) as station:
                await station.wait_accepted()
                with trio.fail_after(10):
                    while await a.redis.get(a.owner_key("ST1")) != "7 b":
                        await trio.sleep(0.05)
                assert "ST1" in b.local
                with trio.fail_after(10):
                    result = await router_a.call("ST1", "GetConfiguration", {}, timeout=5)
                    assert result["configurationKey"][0]["key"] == "HeartbeatInterval"
                    with pytest.raises(CallErrorReceived) as refused:
                        await router_a.call("ST1", "Reset", {"type": "Soft"}, timeout=5)
                assert refused.value.code == "NotImplemented"
            nursery.cancel_scope.cancel()
