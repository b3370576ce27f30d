"""Operator calls across the cluster: a call made on any node's API reaches the station wherever it is
connected.

The calling node finds the owner (the Redis ownership cache, else the store's
:class:`~._store.ConnectionOwner`), checks that the owner is alive (its liveness key), and appends the call
to the owner's inbox stream with an absolute **deadline** and a request id. The owner node reads its inbox
once (never re-read: at most once), refuses a call whose deadline has passed, waits (until the deadline) for
the station to have no other call outstanding so the call goes on the wire *now*, sends it with the time
left as its timeout, and appends the outcome to the caller's reply stream. A Reset therefore runs before its
deadline or not at all.

The caller maps the outcome onto the same exceptions as a local call, so the operator API answers exactly
as on one node: 200, 502 (CALLERROR, invalid result), 504 (timeout, deadline passed), 422/404 (checked
before routing), and 409 when the station is not connected or its owner node is dead -- the latter found
promptly: the liveness key is checked before sending and every half second while waiting.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, Final

import trio
from coredis import PureToken
from coredis.exceptions import RedisError

from os3p_trio import CallErrorReceived, CallTimeout, ConnectionClosed, InvalidResult, Session

from ._cluster import Cluster
from ._service import NotConnected, StationLink
from ._store import UnknownStation

__all__ = ["CallRouter", "ClusterStations", "ClusterUnavailable", "OwnerNodeDead"]

logger = logging.getLogger("os3p_trio.central.routing")

#: Seconds the caller waits for a reply beyond the call's deadline (the owner's answer is on its way).
REPLY_GRACE: Final = 2.0
#: Seconds between liveness checks of the owner while a routed call is waiting.
OWNER_CHECK_INTERVAL: Final = 0.5
#: Seconds between checks whether the station is free to take the call (one call outstanding at a time).
_BUSY_POLL: Final = 0.02
#: Routed calls served at once by one node; more are answered "busy" (409) rather than queued unbounded.
MAX_SERVING: Final = 10_000
#: Request ids remembered to refuse a duplicate delivery (at most once even if an entry came twice).
_REMEMBER: Final = 20_000


class OwnerNodeDead(NotConnected):
    """The station's owner node stopped answering (its liveness key expired): 409, at once."""


class ClusterUnavailable(Exception):
    """Redis cannot be reached, so a call to a station on another node cannot be routed (503)."""


def _outcome(kind: str, **data: Any) -> dict[str, str]:
    return {"outcome": kind, "data": json.dumps(data, separators=(",", ":"))}


def _raise_outcome(identity: str, action: str, fields: Mapping[str, str]) -> dict[str, Any]:
    kind = fields.get("outcome")
    data = json.loads(fields.get("data", "{}"))
    if kind == "ok":
        result: dict[str, Any] = data["result"]
        return result
    if kind == "call_error":
        raise CallErrorReceived(action, data["code"], data["description"], data["details"])
    if kind in ("timeout", "expired"):
        raise CallTimeout(data.get("message", f"{action}: no answer before the deadline"))
    if kind == "invalid_result":
        raise InvalidResult(data.get("message", ""))
    if kind == "closed":
        raise ConnectionClosed(int(data.get("code", 1006)), data.get("reason", ""))
    raise NotConnected(data.get("message", f"{identity!r} is not connected"))


class CallRouter:
    """Routed operator calls of one node: the caller side (:meth:`call`) and the owner side (the cluster's
    inbox hands over each call).  Run with :meth:`run` in the service's nursery."""

    def __init__(
        self,
        cluster: Cluster,
        link: Callable[[Session], StationLink],
        *,
        call_timeout: float = 30.0,
    ) -> None:
        self.cluster = cluster
        self.link = link
        self.call_timeout = call_timeout
        self._waiting: dict[str, trio.MemorySendChannel[Mapping[str, str]]] = {}
        self._seen: dict[str, None] = {}
        self._serving = 0
        self._nursery: trio.Nursery | None = None
        #: Calls refused on arrival because their deadline had passed.
        self.expired = 0
        cluster.router = self

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve routed calls and read this node's reply stream until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            key = self.cluster.replies_key(self.cluster.node_id)
            nursery.start_soon(self.cluster.read_stream, key, self._on_reply)
            task_status.started()
            await trio.sleep_forever()

    # --- caller side ----------------------------------------------------------------------------------------
    async def locate(self, identity: str) -> str:
        """The node that holds ``identity``'s connection.  Raises :class:`~._store.UnknownStation`,
        :class:`~._service.NotConnected`, :class:`OwnerNodeDead`, :class:`ClusterUnavailable`."""
        cluster = self.cluster
        try:
            with trio.fail_after(cluster.config.redis_timeout):
                cached = await cluster.redis.get(cluster.owner_key(identity))
        except (RedisError, OSError, trio.TooSlowError) as exc:
            raise ClusterUnavailable(f"cannot reach Redis to route the call: {exc!r}") from exc
        node: str | None = None
        if cached:
            node = cached.partition(" ")[2] or None
        if node is None or node == cluster.node_id:
            owner = await cluster.store.connection_owner(identity)
            if owner is None:
                raise UnknownStation(identity)
            if not owner.connected or owner.node_id is None or owner.node_id == cluster.node_id:
                raise NotConnected(f"station {identity!r} is not connected")
            node = owner.node_id
        try:
            with trio.fail_after(cluster.config.redis_timeout):
                alive = await cluster.node_alive(node)
        except (RedisError, OSError, trio.TooSlowError) as exc:
            raise ClusterUnavailable(f"cannot reach Redis to route the call: {exc!r}") from exc
        if not alive:
            raise OwnerNodeDead(f"station {identity!r} was connected to node {node!r}, which is gone")
        return node

    async def call(
        self, identity: str, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send ``action`` to ``identity`` through its owner node; same exceptions as a local call."""
        cluster = self.cluster
        timeout = self.call_timeout if timeout is None else timeout
        deadline = cluster.clock() + timeout
        node = await self.locate(identity)
        request_id = uuid.uuid4().hex
        send, receive = trio.open_memory_channel[Mapping[str, str]](1)
        self._waiting[request_id] = send
        try:
            fields = {
                "kind": "call",
                "id": request_id,
                "identity": identity,
                "action": action,
                "payload": json.dumps(payload, separators=(",", ":")),
                "deadline": repr(deadline),
                "reply": cluster.node_id,
            }
            try:
                with trio.fail_after(cluster.config.redis_timeout):
                    await cluster.redis.xadd(
                        cluster.inbox_key(node),
                        fields,
                        trim_strategy=PureToken.MAXLEN,
                        threshold=cluster.config.stream_maxlen,
                        trim_operator=PureToken.APPROXIMATELY,
                    )
            except (RedisError, OSError, trio.TooSlowError) as exc:
                raise ClusterUnavailable(f"cannot reach Redis to route the call: {exc!r}") from exc
            with trio.move_on_after(timeout + REPLY_GRACE):
                while True:
                    with trio.move_on_after(OWNER_CHECK_INTERVAL):
                        reply = await receive.receive()
                        return _raise_outcome(identity, action, reply)
                    try:
                        with trio.fail_after(cluster.config.redis_timeout):
                            alive = await cluster.node_alive(node)
                    except (RedisError, OSError, trio.TooSlowError):
                        alive = True  # Redis is restarting: keep waiting for the reply until the deadline
                    if not alive:
                        raise OwnerNodeDead(
                            f"node {node!r}, which held station {identity!r}, died during the call "
                            "(the station may or may not have received it)"
                        )
            raise CallTimeout(f"{action}: no answer from node {node!r} before the deadline")
        finally:
            del self._waiting[request_id]

    def _on_reply(self, entry_id: str, fields: Mapping[str, str]) -> None:
        waiter = self._waiting.get(fields.get("id", ""))
        if waiter is not None:
            with suppress(trio.WouldBlock):  # a duplicate reply: the first one counts
                waiter.send_nowait(fields)

    # --- owner side -----------------------------------------------------------------------------------------
    def on_call(self, fields: Mapping[str, str]) -> None:
        """A routed call arrived on this node's inbox (called by the inbox reader, never blocks)."""
        request_id = fields.get("id", "")
        reply_to = fields.get("reply", "")
        if not request_id or not reply_to or request_id in self._seen or self._nursery is None:
            return
        self._seen[request_id] = None
        if len(self._seen) > _REMEMBER:
            del self._seen[next(iter(self._seen))]
        if self._serving >= MAX_SERVING:
            self._nursery.start_soon(
                self._reply, reply_to, request_id, _outcome("busy", message="the owner node is overloaded")
            )
            return
        self._nursery.start_soon(self._serve, dict(fields))

    async def _serve(self, fields: dict[str, str]) -> None:
        self._serving += 1
        try:
            outcome = await self._execute(fields)
        finally:
            self._serving -= 1
        await self._reply(fields["reply"], fields["id"], outcome)

    async def _execute(self, fields: Mapping[str, str]) -> dict[str, str]:
        cluster = self.cluster
        identity, action = fields.get("identity", ""), fields.get("action", "")
        try:
            deadline = float(fields["deadline"])
            payload = json.loads(fields["payload"])
        except (KeyError, ValueError):
            return _outcome("not_connected", message="malformed routed call")
        if cluster.clock() >= deadline:
            self.expired += 1
            return _outcome("expired", message=f"{action}: deadline passed before it reached the owner node")
        entry = cluster.local.get(identity)
        if entry is None:
            return _outcome("not_connected", message=f"station {identity!r} is not connected")
        session = entry[0]
        # One call outstanding per station (the core queues the rest and starts their timeout only when
        # sent): wait until the station is free, so the call is on the wire before its deadline or never.
        with trio.move_on_at(trio.current_time() + (deadline - cluster.clock())):
            while session.connection.outstanding_calls and not session.is_closed:
                await trio.sleep(_BUSY_POLL)
            remaining = deadline - cluster.clock()
            if remaining > 0 and not session.is_closed:
                return await self._send(session, action, payload, remaining)
        if session.is_closed:
            return _outcome("not_connected", message=f"station {identity!r} disconnected")
        self.expired += 1
        return _outcome("expired", message=f"{action}: not sent, the station was busy until the deadline")

    async def _send(self, session: Session, action: str, payload: dict[str, Any], timeout: float) -> dict[
        str, str
    ]:
        try:
            result = await self.link(session).call(action, payload, timeout=timeout)
        except CallErrorReceived as exc:
            return _outcome("call_error", code=exc.code, description=exc.description, details=exc.details)
        except CallTimeout as exc:
            return _outcome("timeout", message=str(exc))
        except InvalidResult as exc:
            return _outcome("invalid_result", message=str(exc))
        except ConnectionClosed as exc:
            return _outcome("closed", code=exc.code, reason=exc.reason)
        except NotConnected as exc:
            return _outcome("not_connected", message=str(exc))
        return _outcome("ok", result=result)

    async def _reply(self, node: str, request_id: str, outcome: dict[str, str]) -> None:
        cluster = self.cluster
        for _attempt in range(3):
            try:
                with trio.fail_after(cluster.config.redis_timeout):
                    await cluster.redis.xadd(
                        cluster.replies_key(node),
                        {"id": request_id, **outcome},
                        trim_strategy=PureToken.MAXLEN,
                        threshold=cluster.config.stream_maxlen,
                        trim_operator=PureToken.APPROXIMATELY,
                    )
                return
            except (RedisError, OSError, trio.TooSlowError) as exc:
                logger.info("routing: reply %s to %s failed: %r", request_id, node, exc)
                await trio.sleep(0.5)


class _RoutedLink:
    def __init__(self, router: CallRouter, identity: str) -> None:
        self.router = router
        self.identity = identity

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        return await self.router.call(self.identity, action, payload, timeout=timeout)


class ClusterStations:
    """:class:`~._service.LiveStations` of a cluster node: a station connected here is called directly, any
    other through :class:`CallRouter` (which raises ``UnknownStation`` / ``NotConnected`` itself)."""

    def __init__(self, router: CallRouter) -> None:
        self.router = router

    def get(self, identity: str) -> StationLink | None:
        entry = self.router.cluster.local.get(identity)
        if entry is not None and not entry[0].is_closed:
            return self.router.link(entry[0])
        return _RoutedLink(self.router, identity)

    def count(self) -> int:
        return len(self.router.cluster.local)
