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

from os3p_trio.central import open_sqlite_store
from os3p_trio.central._cluster import Cluster, ClusterConfig, connect_redis, follow_events
from os3p_trio.central._routing import CallRouter, ClusterUnavailable, OwnerNodeDead
from os3p_trio.central._server import _SessionLink


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
