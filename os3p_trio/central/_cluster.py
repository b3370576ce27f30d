"""Central System nodes as a cluster: node liveness, station ownership with fencing, the events stream.

Several nodes (processes, on one host or many) share one store (PostgreSQL) and one Redis.  What each piece
is the authority for:

- **The store** owns the truth about connections.  Before the 101 answer a node calls
  :meth:`~._store.Store.claim_connection`, which bumps the station's connection *epoch* and records it as
  connected on this node in one committed write.  A connection that ends writes its disconnect only through
  :meth:`~._store.Store.release_connection` with its own epoch, so a late "Disconnected" of a superseded
  connection never overwrites a newer "Connected".
- **Redis** is the fast path and the messenger: a per-node liveness key with a short TTL (``node:<id>``), an
  ownership cache ``owner:<identity>`` = ``"<epoch> <node>"`` written only forwards (a Lua compare on the
  epoch), a per-node inbox stream (routed operator calls, "replaced" notices), a per-node reply stream, and
  one events stream that anybody may follow (:func:`follow_events`).

Exactly one live owner per identity: a node that claims epoch *E* tells the previous owner (known from the
store and from the cache) to close its connection with 1000 "replaced"; a node whose cache write finds a
newer epoch closes its own connection at once.  When Redis restarts (the cache and the liveness keys are
gone) every node re-publishes the connections it holds; conflicts found then are resolved the same way.

A node that stops refreshing its liveness key (killed, frozen) is swept by the other nodes once the key has
expired: its stations are recorded as disconnected in the store and calls routed to it are answered 409 at
once.  Routed operator calls are in :mod:`._routing`.

Clocks: a routed call carries an absolute deadline in POSIX seconds, so the nodes' clocks must agree (NTP);
on one host they are the same clock.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Final, cast

import attrs
import coredis
import trio
from coredis.exceptions import RedisError

from os3p_core import Action
from os3p_trio import Session

from ._service import CentralSystem
from ._store import Store

__all__ = [
    "Cluster",
    "ClusterConfig",
    "ClusterEvent",
    "connect_redis",
    "follow_events",
    "open_cluster",
]

logger = logging.getLogger("os3p_trio.central.cluster")

_NODE_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")

# KEYS[1] = owner key; ARGV = epoch, node.  Writes only forwards; returns {1, previous} when written (previous
# may be ""), {0, current} when the cache already holds a newer epoch: the caller's connection is superseded.
_CLAIM_SCRIPT: Final = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local e = tonumber(string.match(cur, '^(%d+)'))
  if e and e > tonumber(ARGV[1]) then return {0, cur} end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
return {1, cur or ''}
"""

# KEYS[1] = owner key; ARGV[1] = epoch.  Deletes the cache entry only if it still names this epoch.
_RELEASE_SCRIPT: Final = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(string.match(cur, '^(%d+)')) == tonumber(ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


_EVENT_ACTIONS: Final = (
    Action.BOOT_NOTIFICATION,
    Action.STATUS_NOTIFICATION,
    Action.STREETLIGHT_STATUS_NOTIFICATION,
    Action.STREETLIGHT_MODE_STATUS_NOTIFICATION,
    Action.FIRMWARE_STATUS_NOTIFICATION,
    Action.GET_FILE_STATUS_NOTIFICATION,
)


def _valid_node_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _NODE_ID.fullmatch(value):
        raise ValueError(f"node id {value!r}: use 1-64 letters, digits, '.', '_' or '-'")


@attrs.frozen(slots=True)
class ClusterConfig:
    """One node's cluster settings; the defaults are those of ``os3p-central serve --redis``."""

    #: ``redis://HOST:PORT/DB`` (``rediss://`` for TLS).
    redis_url: str
    #: This node's name, unique in the cluster and stable across restarts of the same node (a restarted
    #: node first records the stations it held before as disconnected).
    node_id: str = attrs.field(validator=_valid_node_id)
    #: Key prefix, so several clusters can share one Redis database.
    prefix: str = "os3p:"
    #: Seconds the liveness key lives; a node silent this long is dead for the others.
    node_ttl: float = attrs.field(default=3.0, validator=attrs.validators.gt(0))
    #: Seconds between refreshes of the liveness key (well under ``node_ttl``).
    refresh_interval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: Seconds between sweeps for dead nodes.
    sweep_interval: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    #: Seconds between re-publications of the ownership cache (after a Redis restart it happens at once).
    resync_interval: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    #: Bound on the per-node inbox and reply streams (approximate MAXLEN trimming).
    stream_maxlen: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    #: Bound on the events stream (approximate MAXLEN trimming): followers further behind lose the oldest.
    events_maxlen: int = attrs.field(default=100_000, validator=attrs.validators.gt(0))
    #: Events waiting in this node for Redis; beyond it new events are dropped (and counted): the store
    #: has them all, the stream is a notification feed.
    event_queue: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    #: Seconds a Redis command may take before the node treats Redis as unavailable.
    redis_timeout: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))

    def key(self, *parts: str) -> str:
        """A Redis key of this cluster."""
        return self.prefix + ":".join(parts)


@attrs.frozen(slots=True)
class ClusterEvent:
    """One entry of the cluster's events stream (published after the store committed it)."""

    #: The Redis stream entry id (``<ms>-<n>``): pass the last one seen to :func:`follow_events` to resume.
    id: str
    #: ``Connected``, ``Disconnected``, ``NodeLost``, or the OS³P action that reported it
    #: (``BootNotification``, ``StatusNotification``, ``StreetlightStatusNotification``,
    #: ``StreetlightModeStatusNotification``, ``FirmwareStatusNotification``, ``GetFileStatusNotification``).
    kind: str
    identity: str | None
    node: str
    #: POSIX seconds of the node's clock when it was committed.
    time: float
    #: The wire payload (notifications), the epoch (connections), or the number of stations (NodeLost).
    data: Mapping[str, Any]


def _event_fields(kind: str, identity: str | None, node: str, now: float, data: Mapping[str, Any]) -> dict[
    str, str
]:
    return {
        "kind": kind,
        "identity": identity or "",
        "node": node,
        "time": repr(now),
        "data": json.dumps(data, separators=(",", ":")),
    }


def _parse_event(entry_id: str, fields: Mapping[str, str]) -> ClusterEvent | None:
    try:
        data = json.loads(fields.get("data", "{}"))
        return ClusterEvent(
            entry_id,
            fields["kind"],
            fields.get("identity") or None,
            fields.get("node", ""),
            float(fields.get("time", "nan")),
            data if isinstance(data, dict) else {"value": data},
        )
    except (KeyError, ValueError):
        return None  # not written by us: skip, never crash a follower


def _str_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in fields.items()}


def connect_redis(url: str, timeout: float = 2.0) -> coredis.Redis[str]:
    """A coredis client (decoded strings) with bounded connect and command times."""
    return coredis.Redis.from_url(url, decode_responses=True, connect_timeout=timeout, stream_timeout=timeout)


class Cluster:
    """This node's view of the cluster.  Made and run by :func:`open_cluster`.

    :attr:`local` maps the identities connected *to this node* to ``(session, epoch)``.
    """

    def __init__(
        self, store: Store, config: ClusterConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.config = config
        self.node_id = config.node_id
        self.clock = clock
        self.redis = connect_redis(config.redis_url, config.redis_timeout)
        self.local: dict[str, tuple[Session, int]] = {}
        #: Information the liveness key carries (URLs of this node), JSON.
        self.info: dict[str, Any] = {}
        #: Events dropped because Redis could not take them fast enough (or was down).
        self.events_dropped = 0
        #: Events written to the stream.
        self.events_published = 0
        #: Whether the last Redis command of the liveness task succeeded.
        self.redis_ok = False
        self._events_send, self._events_recv = trio.open_memory_channel[dict[str, str]](config.event_queue)
        self._resync_now = trio.Event()
        self._claim = self.redis.register_script(_CLAIM_SCRIPT)
        self._release = self.redis.register_script(_RELEASE_SCRIPT)
        #: Set by :mod:`._routing` (the inbox reader hands it routed calls).
        self.router: Any = None

    # --- keys -----------------------------------------------------------------------------------------------
    def node_key(self, node: str) -> str:
        return self.config.key("node", node)

    def owner_key(self, identity: str) -> str:
        return self.config.key("owner", identity)

    def inbox_key(self, node: str) -> str:
        return self.config.key("inbox", node)

    def replies_key(self, node: str) -> str:
        return self.config.key("replies", node)

    @property
    def events_key(self) -> str:
        return self.config.key("events")

    @property
    def nodes_key(self) -> str:
        return self.config.key("nodes")

    # --- liveness -------------------------------------------------------------------------------------------
    async def node_alive(self, node: str) -> bool:
        """Whether ``node``'s liveness key exists (raises ``RedisError`` when Redis cannot say)."""
        if node == self.node_id:
            return True
        return bool(await self.redis.exists([self.node_key(node)]))

    async def _refresh(self) -> None:
        ttl_ms = max(1, math.ceil(self.config.node_ttl * 1000))
        previous = await self.redis.set(
            self.node_key(self.node_id), json.dumps(self.info), px=ttl_ms, get=True
        )
        await self.redis.sadd(self.nodes_key, [self.node_id])
        if previous is None:
            # First refresh, or the key vanished (Redis restarted, or we were too slow): the ownership cache
            # may be gone too, so publish what we hold again.
            self._resync_now.set()

    async def _liveness_loop(self) -> None:
        while True:
            try:
                with trio.fail_after(self.config.redis_timeout):
                    await self._refresh()
                if not self.redis_ok:
                    logger.info("cluster %s: Redis reachable", self.node_id)
                self.redis_ok = True
            except (RedisError, OSError, trio.TooSlowError) as exc:
                if self.redis_ok:
                    logger.warning("cluster %s: Redis unavailable: %r", self.node_id, exc)
                self.redis_ok = False
            await trio.sleep(self.config.refresh_interval)

    async def _sweep_once(self) -> None:
        nodes = await self.redis.smembers(self.nodes_key)
        for node in sorted(nodes):
            if node == self.node_id or await self.node_alive(node):
                continue
            # Every live node may sweep; the store's update is idempotent, so doing it twice is harmless.
            count = await self.store.mark_node_disconnected(node, self.clock())
            await self.redis.srem(self.nodes_key, [node])
            await self.redis.delete([self.inbox_key(node), self.replies_key(node)])
            logger.warning("cluster %s: node %s is gone; %d stations recorded disconnected", self.node_id,
                           node, count)
            self.publish("NodeLost", None, {"lostNode": node, "stations": count})

    async def _sweep_loop(self) -> None:
        while True:
            await trio.sleep(self.config.sweep_interval)
            try:
                with trio.fail_after(self.config.redis_timeout * 4):
                    await self._sweep_once()
            except Exception as exc:  # Redis or the store unavailable: try again next time
                logger.info("cluster %s: sweep failed: %r", self.node_id, exc)

    # --- ownership ------------------------------------------------------------------------------------------
    async def claim(self, identity: str) -> int:
        """The ``on_admit`` hook: claim ``identity`` for this node in the store (before the 101) and tell the
        previous owner, if another node, to close its connection.  Returns the new epoch."""
        previous = await self.store.connection_owner(identity)
        epoch = await self.store.claim_connection(identity, self.node_id, self.clock())
        if previous is not None and previous.connected and previous.node_id not in (None, self.node_id):
            await self._tell_replaced(previous.node_id, identity, epoch)
        return epoch

    async def _tell_replaced(self, node: str, identity: str, epoch: int) -> None:
        try:
            with trio.fail_after(self.config.redis_timeout):
                await self.redis.xadd(
                    self.inbox_key(node),
                    {"kind": "replace", "identity": identity, "epoch": str(epoch)},
                    trim_strategy=coredis.PureToken.MAXLEN,
                    threshold=self.config.stream_maxlen,
                    trim_operator=coredis.PureToken.APPROXIMATELY,
                )
        except (RedisError, OSError, trio.TooSlowError) as exc:
            # The resync after Redis is back finds the conflict; the store's epoch fences writes meanwhile.
            logger.warning(
                "cluster %s: could not tell %s that %r moved: %r", self.node_id, node, identity, exc
            )
            self._resync_now.set()

    async def _publish_owner(self, identity: str, epoch: int) -> bool:
        """Write the ownership cache forwards; False when a newer epoch is there (we are superseded)."""
        answer = await self._claim.execute(keys=[self.owner_key(identity)], args=[epoch, self.node_id])
        written, previous = cast("list[Any]", answer)
        if not written:
            return False
        if previous:
            _, _, node = str(previous).partition(" ")
            if node and node != self.node_id:
                await self._tell_replaced(node, identity, epoch)
        return True

    def replaced(self, identity: str, epoch: int) -> None:
        """A newer connection (``epoch``) of ``identity`` exists elsewhere: close ours if it is older."""
        entry = self.local.get(identity)
        if entry is not None and entry[1] < epoch:
            logger.info("cluster %s: %r reconnected elsewhere; closing it here", self.node_id, identity)
            entry[0].request_close(1000, "replaced")

    async def run_connection(self, session: Session) -> None:
        """The ``on_connect`` hook: hold the connection in :attr:`local` for its life and release it in the
        store (by its epoch) when it ends."""
        identity = session.identity
        epoch: int = session.admission
        entry = (session, epoch)
        older = self.local.get(identity)
        if older is None or older[1] < epoch:
            self.local[identity] = entry
        try:
            try:
                with trio.fail_after(self.config.redis_timeout):
                    current = await self._publish_owner(identity, epoch)
            except (RedisError, OSError, trio.TooSlowError):
                current = True  # Redis down: the resync publishes it when Redis is back
                self._resync_now.set()
            if not current:
                session.request_close(1000, "replaced")
                return
            self.publish("Connected", identity, {"epoch": epoch})
            await trio.sleep_forever()
        finally:
            if self.local.get(identity) is entry:
                del self.local[identity]
            with trio.CancelScope(shield=True):
                await self._release_connection(identity, epoch)

    async def _release_connection(self, identity: str, epoch: int) -> None:
        try:
            with trio.fail_after(10):
                newest = await self.store.release_connection(identity, epoch, self.clock())
        except Exception as exc:  # the station was removed, or the store is down: the sweep/restart fixes it
            logger.info(
                "cluster %s: could not record the disconnection of %r: %r", self.node_id, identity, exc
            )
            return
        if not newest:
            return
        try:
            with trio.fail_after(self.config.redis_timeout):
                await self._release.execute(keys=[self.owner_key(identity)], args=[epoch])
        except (RedisError, OSError, trio.TooSlowError):
            pass  # a stale cache entry only costs a store lookup: routing checks the owner's liveness
        self.publish("Disconnected", identity, {"epoch": epoch})

    async def _resync_once(self) -> None:
        entries = list(self.local.items())
        for start in range(0, len(entries), 500):
            for identity, (session, epoch) in entries[start : start + 500]:
                if self.local.get(identity) is not None and not await self._publish_owner(identity, epoch):
                    logger.info("cluster %s: %r is owned by a newer connection; closing", self.node_id,
                                identity)
                    session.request_close(1000, "replaced")
            await trio.sleep(0)

    async def _resync_loop(self) -> None:
        while True:
            with trio.move_on_after(self.config.resync_interval):
                await self._resync_now.wait()
            self._resync_now = trio.Event()
            try:
                await self._resync_once()
            except (RedisError, OSError) as exc:
                logger.info("cluster %s: resync failed: %r", self.node_id, exc)
                self._resync_now.set()
                await trio.sleep(self.config.refresh_interval)

    # --- events ---------------------------------------------------------------------------------------------
    def instrument(self, central: CentralSystem) -> None:
        """Publish every stored notification (boot, status, streetlight, firmware, file status) on the events
        stream once its handler has returned, i.e. after commit; heartbeats and meter values are not
        events (the store has them)."""
        for action in _EVENT_ACTIONS:
            central.handlers[action] = self._published(action, central.handlers[action])

    def _published(
        self, action: Action, handler: Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]
    ) -> Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]:
        kind = action.value

        async def publishing(identity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
            answer = await handler(identity, payload)
            self.publish(kind, identity, {"payload": payload, "answer": answer})
            return answer

        publishing.__name__ = handler.__name__
        return publishing

    def publish(self, kind: str, identity: str | None, data: Mapping[str, Any]) -> None:
        """Queue an event for the stream (call it after the store committed what it reports).  Never
        blocks: when the queue is full the event is dropped and counted in :attr:`events_dropped`."""
        try:
            self._events_send.send_nowait(_event_fields(kind, identity, self.node_id, self.clock(), data))
        except trio.WouldBlock:
            self.events_dropped += 1

    async def _publisher_loop(self) -> None:
        while True:
            batch = [await self._events_recv.receive()]
            while len(batch) < 500:
                try:
                    batch.append(self._events_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                with trio.fail_after(self.config.redis_timeout):
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for fields in batch:
                            pipe.xadd(
                                self.events_key,
                                fields,
                                trim_strategy=coredis.PureToken.MAXLEN,
                                threshold=self.config.events_maxlen,
                                trim_operator=coredis.PureToken.APPROXIMATELY,
                            )
                self.events_published += len(batch)
            except (RedisError, OSError, trio.TooSlowError) as exc:
                self.events_dropped += len(batch)
                logger.info("cluster %s: %d events not published: %r", self.node_id, len(batch), exc)
                await trio.sleep(self.config.refresh_interval)

    # --- streams --------------------------------------------------------------------------------------------
    async def stream_start(self) -> str:
        """A stream id just before now by Redis's clock: read from it so nothing sent after start is missed
        and nothing older (a previous life of this node) is replayed."""
        now = await self.redis.time()
        return f"{int(now.timestamp() * 1000) - 1}-0"

    async def read_stream(self, key: str, handle: Callable[[str, Mapping[str, str]], None]) -> None:
        """Follow ``key`` for ever, handing each entry to ``handle``.  Survives Redis restarts: the last id
        seen is kept (never re-read: at most once), and a restarted Redis gives new entries ids from its
        clock, which are later than any it gave before."""
        last: str | None = None
        while True:
            try:
                if last is None:
                    with trio.fail_after(self.config.redis_timeout):
                        last = await self.stream_start()
                with trio.fail_after(self.config.redis_timeout + 1.0):
                    answer = await self.redis.xread({key: last}, count=500, block=1000)
            except (RedisError, OSError, trio.TooSlowError):
                await trio.sleep(0.2)
                continue
            for entries in (answer or {}).values():
                for entry in entries:
                    last = str(entry.identifier)
                    try:
                        handle(last, _str_fields(entry.field_values))
                    except Exception:
                        logger.exception("cluster %s: bad entry on %s", self.node_id, key)

    def _on_inbox(self, entry_id: str, fields: Mapping[str, str]) -> None:
        kind = fields.get("kind")
        if kind == "replace":
            self.replaced(fields.get("identity", ""), int(fields.get("epoch", "0")))
        elif kind == "call" and self.router is not None:
            self.router.on_call(fields)


@asynccontextmanager
async def open_cluster(
    store: Store, config: ClusterConfig, *, info: Mapping[str, Any] | None = None
) -> AsyncIterator[Cluster]:
    """Join the cluster for the body of the ``async with``: records the stations this node held in an
    earlier life as disconnected, then runs liveness, sweeping, ownership resync, the inbox and the events
    publisher in its own nursery.  Leaving deletes the liveness key, so the others sweep at once."""
    cluster = Cluster(store, config)
    cluster.info = dict(info or {})
    await store.mark_node_disconnected(config.node_id, cluster.clock())
    async with cluster.redis, trio.open_nursery() as nursery:
        nursery.start_soon(cluster._liveness_loop)
        nursery.start_soon(cluster._sweep_loop)
        nursery.start_soon(cluster._resync_loop)
        nursery.start_soon(cluster._publisher_loop)
        nursery.start_soon(cluster.read_stream, cluster.inbox_key(config.node_id), cluster._on_inbox)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                with suppress(RedisError, OSError):
                    await cluster.redis.delete([cluster.node_key(config.node_id)])


async def follow_events(
    redis: coredis.Redis[str], *, since: str = "$", prefix: str = "os3p:", block: float = 1.0
) -> AsyncIterator[ClusterEvent]:
    """Follow the cluster's events stream (for the operator console, or a script): yields every event after
    ``since`` (a stream id; ``"$"``: only new ones, ``"0"``: all the stream still holds), for ever.

    ``redis`` is a client the caller has entered (``async with connect_redis(url) as redis``); close the
    generator with ``contextlib.aclosing``.  Raises ``coredis`` errors when Redis is unreachable (the
    caller decides how to retry, resuming from the last :attr:`ClusterEvent.id`)."""
    key = prefix + "events"
    last = since
    while True:
        answer = await redis.xread({key: last}, count=500, block=max(1, int(block * 1000)))
        for entries in (answer or {}).values():
            for entry in entries:
                last = str(entry.identifier)
                event = _parse_event(last, _str_fields(entry.field_values))
                if event is not None:
                    yield event
