"""Wiring the Central System onto the ``os3p_trio`` server: the store as the station registry, the handlers
as a :class:`~os3p_trio.Router`, the live sessions as the operator API's :class:`~._service.LiveStations`, and
the operator API beside it in the same trio process.

:func:`open_central_service` is the whole service as an async context manager (it owns its nursery: store
writer, WebSocket server, HTTP server); ``os3p-central serve`` is :func:`run_serve`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from os3p_core import Action, LocalProtocolError, Role
from os3p_trio import CentralSystemServer, Router, ServerConfig, Session, open_central_system
from os3p_trio import StationRecord as RegistryRecord

from ._api import FileArea, create_api, serve_api
from ._cluster import Cluster, ClusterConfig, open_cluster
from ._logging import configure_logging
from ._monitor import Monitor
from ._open import open_store
from ._service import CentralConfig, CentralSystem, NotConnected, StationLink
from ._sqlite import StoreConfig
from ._store import RetentionPolicy, Store

__all__ = ["CentralService", "StoreRegistry", "build_router", "open_central_service", "run_serve"]

logger = logging.getLogger("os3p_trio.central")


class StoreRegistry:
    """The ``os3p_trio`` station registry backed by the store: unknown → ``None`` (404, or 401 with auth)
    unless open registration registers it; the key hash and the remembered acceptance come from the store."""

    def __init__(self, central: CentralSystem) -> None:
        self.central = central

    async def lookup(self, identity: str) -> RegistryRecord | None:
        """The registry record of ``identity`` (see :meth:`CentralSystem.admit`)."""
        record = await self.central.admit(identity)
        if record is None:
            return None
        key_hash = bytes.fromhex(record.password_hash) if record.password_hash is not None else None
        # PROTOCOL-DECISIONS §5 (b): a station whose last BootNotification was Accepted, on an earlier
        # connection or before a restart of this service, is served without a new BootNotification.
        return RegistryRecord(identity, key_hash=key_hash, previously_accepted=record.accepted)

    async def remember_boot(self, identity: str, accepted: bool) -> None:
        """Nothing to do: the BootNotification handler stored the answer (and with it the acceptance)
        *before* the answer was sent, so it is already durable when the server reports it here."""


class _SessionLink:
    """A live session as the operator side needs it (:class:`~._service.StationLink`)."""

    def __init__(self, session: Session, monitor: Monitor | None = None) -> None:
        self.session = session
        self.monitor = monitor

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "error"
        result: dict[str, Any] | None = None
        try:
            result = await self.session.call_payload(action, payload, timeout=timeout)
            outcome = "result"
            return result
        except LocalProtocolError as exc:
            # The core refused to send (e.g. its queue of outgoing calls is full): nothing was sent.
            outcome = "refused"
            raise NotConnected(f"{self.session.identity}: cannot send now: {exc}") from exc
        except Exception as exc:
            outcome = _OUTCOMES.get(type(exc).__name__, "error")
            raise
        finally:
            if self.monitor is not None:
                self.monitor.called(
                    self.session.identity, action, payload, time.perf_counter() - started, outcome, result
                )


#: ``os3p_call_duration_seconds{outcome}`` by the exception an operator call ended with.
_OUTCOMES = {
    "CallErrorReceived": "callerror",
    "CallTimeout": "timeout",
    "ConnectionClosed": "closed",
    "InvalidResult": "invalid",
}


class _LiveSessions:
    def __init__(self, server: CentralSystemServer, monitor: Monitor | None = None) -> None:
        self.server = server
        self.monitor = monitor

    def get(self, identity: str) -> StationLink | None:
        session = self.server.get(identity)
        return None if session is None or session.is_closed else _SessionLink(session, self.monitor)

    def count(self) -> int:
        return len(self.server.sessions)


def build_router(central: CentralSystem, monitor: Monitor | None = None) -> Router:
    """A router with a handler for each of the 8 station-initiated actions (annex §6): store, then answer.

    With ``monitor``, each handled CALL is reported to it (metrics, live counters, console events)."""
    router = Router()
    for action in Action:
        if action.sender is Role.SUBSTATION:
            # Raw handlers: the store takes wire dicts (its columns follow the schema), so typed structuring
            # and unstructuring would only cost time (~0.46 ms for an 80-value MeterValues).
            router.add(action, _handler(central, action, monitor), raw=True)
    return router


def _handler(
    central: CentralSystem, action: Action, monitor: Monitor | None = None
) -> Callable[[Session, Any], Awaitable[dict[str, Any]]]:
    name = action.value

    async def handle(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        # A raw handler: ``payload`` is the validated wire dict, the answer a wire dict (validated when sent).
        return await central.handle(session.identity, name, payload)

    async def observed(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        assert monitor is not None
        started = time.perf_counter()
        ok = False
        try:
            answer = await central.handle(session.identity, name, payload)
            ok = True
            return answer
        finally:
            monitor.handled(session.identity, name, payload, time.perf_counter() - started, ok)

    chosen = handle if monitor is None else observed
    chosen.__name__ = f"handle_{action.value}"
    return chosen


@attrs.define
class CentralService:
    """A running Central System: the WebSocket server, the operator API and the policy object."""

    central: CentralSystem
    server: CentralSystemServer
    #: ``ws://host:port/OS3P`` (``wss://`` with TLS); a station connects to ``<ws_url>/<identity>``.
    ws_url: str
    #: ``http://host:port`` of the operator API (``https://`` with TLS).
    api_url: str


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@asynccontextmanager
async def open_central_service(
    store: Store,
    config: CentralConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_host: str = "127.0.0.1",
    api_port: int = 0,
    server_config: ServerConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    files: FileArea,
    secret: bytes | None = None,
    public_url: str | None = None,
    api_token: str | None = None,
    monitor: Monitor | None = None,
    cluster: ClusterConfig | None = None,
    reuse_port: bool = False,
    retention_interval: float | None = 3600.0,
) -> AsyncIterator[CentralService]:
    """Run the Central System on ``store`` for the body of the ``async with``.

    ``server_config`` is ``os3p_trio``'s (endpoints, auth secret, limits, mutual TLS); ``ssl_context`` serves
    ``wss://``; ``certfile``/``keyfile`` serve the API over https; ``public_url`` is the API's base URL as
    stations see it (firmware downloads, GetFile uploads), by default the URL of each request; ``api_token``
    protects the operator routes (see :func:`~._api.create_api`); ``monitor`` (a new one by default) sees
    frames, calls and connections for ``/metrics`` and the message log.  ``cluster``: run as one node of a
    cluster (docs/cluster.md): ownership claimed in the store before the 101, operator calls routed to
    the node holding the station, events published on Redis.  ``reuse_port``: bind both ports with
    ``SO_REUSEPORT`` (workers sharing them).  ``retention_interval``: seconds between two
    :meth:`Store.apply_retention <os3p_trio.central.Store.apply_retention>` passes (the first right
    after start; ``None``: never; the store's :class:`~._store.RetentionPolicy` says what goes).  On exit
    every connection is closed (1001) and queued store writes are committed.
    """
    central = CentralSystem(store, config, secret=secret)
    if cluster is None:
        # A crash may have left stations marked connected: nothing is connected before we listen.
        await store.mark_all_disconnected(central.clock())
    server_config = server_config or ServerConfig()
    monitor = monitor or Monitor(store)
    record_frames = monitor.on_frames

    def frames(session: Session, direction: str, texts: list[str]) -> None:
        record_frames(session.identity, direction, texts)

    async def on_connect(session: Session) -> None:
        identity = session.identity
        # First, before any await: the message log sees the session's frames from here on.
        session.on_frames = frames
        await central.connected(identity)
        monitor.connection(identity, True)
        try:
            await trio.sleep_forever()
        finally:
            # Replaced by a newer connection (PROTOCOL-DECISIONS §1)?  Then the station is still connected.
            current = server.get(identity)
            monitor.connection(identity, False, replaced=current is not None and current is not session)
            if current is None or current is session:
                with trio.CancelScope(shield=True):
                    try:
                        await central.disconnected(identity)
                    except Exception:  # the station was removed meanwhile: nothing to record
                        logger.info("central: could not record the disconnection of %r", identity)

    async with AsyncExitStack() as stack:
        node = None if cluster is None else await stack.enter_async_context(open_cluster(store, cluster))
        nursery = await stack.enter_async_context(trio.open_nursery())
        await nursery.start(monitor.run)
        if retention_interval is not None:
            nursery.start_soon(_apply_retention, central, retention_interval)
        listeners = [_reuse_port_listener(host, port)] if reuse_port else None
        connect = on_connect
        if node is not None:
            run_connection = node.run_connection

            async def connect(session: Session) -> None:
                # The cluster node records the connection (fenced by its epoch); the monitor sees it too.
                session.on_frames = frames
                monitor.connection(session.identity, True)
                try:
                    await run_connection(session)
                finally:
                    current = server.get(session.identity)
                    monitor.connection(
                        session.identity, False, replaced=current is not None and current is not session
                    )

        server = await nursery.start(
            lambda task_status: _serve_ws(
                central,
                port,
                host,
                server_config,
                ssl_context,
                connect,
                monitor,
                None if node is None else node.claim,
                listeners,
                task_status=task_status,
            )
        )
        monitor.connections = lambda: len(server.sessions)
        monitor.listening = True
        central.live = _LiveSessions(server, monitor)
        if node is not None:
            await _join_cluster(central, node, server_config, nursery)
        scheme = "wss" if ssl_context is not None else "ws"
        endpoint = server_config.endpoints[0]
        ws_url = f"{scheme}://{_host_for_url(host)}:{server.port}{endpoint}"
        central.ws_url = ws_url
        api_socket = _reuse_port_socket(api_host, api_port) if reuse_port else None
        api_url = await nursery.start(
            lambda task_status: serve_api(
                create_api(central, files, public_url=public_url, api_token=api_token, monitor=monitor),
                host=api_host,
                port=api_port,
                certfile=certfile,
                keyfile=keyfile,
                sock=api_socket,
                task_status=task_status,
            )
        )
        if node is not None:
            node.info.update(websocket=ws_url, api=api_url)
        try:
            yield CentralService(central, server, ws_url, api_url)
        finally:
            nursery.cancel_scope.cancel()


async def _apply_retention(central: CentralSystem, interval: float) -> None:
    """Retention, periodically: the store deletes in small batches, interleaved with the stations' writes."""
    while True:
        try:
            report = await central.store.apply_retention(central.clock())
        except Exception:  # a failed pass is retried next time; the service goes on
            logger.exception("central: retention pass failed")
        else:
            if report.meter_values or report.events:
                removed = (report.meter_values, report.events)
                logger.info("central: retention removed %d meter values, %d events", *removed)
        await trio.sleep(interval)


async def _serve_ws(
    central: CentralSystem,
    port: int,
    host: str,
    server_config: ServerConfig,
    ssl_context: ssl.SSLContext | None,
    on_connect: Callable[[Session], Awaitable[None]],
    monitor: Monitor,
    on_admit: Callable[[str], Awaitable[Any]] | None = None,
    listeners: list[trio.SocketListener] | None = None,
    *,
    task_status: trio.TaskStatus[CentralSystemServer],
) -> None:
    async with open_central_system(
        build_router(central, monitor),
        port,
        host=host,
        registry=StoreRegistry(central),
        config=server_config,
        ssl_context=ssl_context,
        on_connect=on_connect,
        on_admit=on_admit,
        listeners=listeners,
    ) as server:
        server.on_handshake = monitor.on_handshake
        task_status.started(server)
        await trio.sleep_forever()


# --- cluster wiring (docs/cluster.md) -----------------------------------------------------------------------


async def _join_cluster(
    central: CentralSystem, node: Cluster, server_config: ServerConfig, nursery: trio.Nursery
) -> None:
    """Operator calls go through the router (local stations directly), notifications to the events stream."""
    from ._routing import CallRouter, ClusterStations

    router = CallRouter(node, _SessionLink, call_timeout=server_config.connection.call_timeout)
    await nursery.start(router.run)
    central.live = ClusterStations(router)
    node.instrument(central)


def _reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    from ._workers import reuse_port_trio_listener

    return reuse_port_trio_listener(host, port)


def _reuse_port_socket(host: str, port: int) -> Any:
    from ._workers import reuse_port_socket

    return reuse_port_socket(host, port)


def _cluster_config(args: argparse.Namespace) -> ClusterConfig | None:
    if getattr(args, "redis", None) is None:
        return None
    node_id = args.node_id or f"{socket.gethostname()}-{args.port}"
    return ClusterConfig(redis_url=args.redis, node_id=node_id)


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.certfile:
        if args.client_ca:
            raise ValueError("--client-ca needs --certfile and --keyfile (mutual TLS runs over TLS)")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.client_ca)
    return context


async def _serve(args: argparse.Namespace) -> int:
    from .cli import beside_db, load_or_create_secret, read_api_token

    if args.open_registration and args.auth == "basic":
        print(
            "os3p-central: --open-registration admits stations that have no password, so it needs "
            "--auth none (with mutual TLS, --client-ca, if stations must still prove who they are)",
            file=sys.stderr,
        )
        return 2
    db = args.db
    secret_path = Path(args.secret_file) if args.secret_file else beside_db(db, ".secret")
    secret = load_or_create_secret(secret_path)
    files_dir = Path(args.files_dir) if args.files_dir else beside_db(db, ".files")
    files = FileArea(files_dir / "firmware", files_dir / "uploads")
    ssl_context = _ssl_context(args)
    api_token = read_api_token(args)
    if api_token is None and args.api_host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"os3p-central: warning: the operator API on {args.api_host} has no token (--api-token-file)",
            file=sys.stderr,
        )
    config = CentralConfig(
        open_registration=args.open_registration,
        boot_status=args.boot_status,
        heartbeat_interval=args.heartbeat_interval,
        retry_interval=args.retry_interval,
    )
    server_config = ServerConfig(
        endpoints=tuple(args.path or ["/OS3P"]),
        auth_secret=secret if args.auth == "basic" else None,
        require_client_certificate=bool(args.client_ca),
    )
    cluster_config = _cluster_config(args)
    if cluster_config is not None or args.reuse_port:
        from ._workers import raise_open_file_limit

        raise_open_file_limit()  # one file per station: a node takes what the hard limit allows
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_store(
                db, retention=_retention(args), sqlite_config=StoreConfig(synchronous=args.synchronous)
            ) as store,
            open_central_service(
                store,
                config,
                host=args.host,
                port=args.port,
                api_host=args.api_host,
                api_port=args.api_port,
                server_config=server_config,
                ssl_context=ssl_context,
                certfile=args.certfile,
                keyfile=args.keyfile,
                files=files,
                secret=secret,
                public_url=args.public_url,
                api_token=api_token,
                cluster=cluster_config,
                reuse_port=args.reuse_port,
            ) as service,
        ):
            print(f"websocket {service.ws_url}", flush=True)
            print(f"api {service.api_url}", flush=True)
            async for signum in signals:
                print(f"stopping ({signal.Signals(signum).name})", file=sys.stderr, flush=True)
                break
    return 0


def _retention(args: argparse.Namespace) -> RetentionPolicy:
    meter = getattr(args, "retain_meter_days", None)
    events = getattr(args, "retain_events_days", None)
    for name, value in (("--retain-meter-days", meter), ("--retain-events-days", events)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be 0 (keep for ever) or more days")
    return RetentionPolicy(meter_days=meter or None, events_days=events or None)


def run_serve(args: argparse.Namespace) -> int:
    """``os3p-central serve``: run until SIGINT or SIGTERM, then close every connection (1001), commit what is
    queued, and exit 0."""
    configure_logging(getattr(args, "log_format", "text"))
    from .cli import store_failure

    try:
        return trio.run(_serve, args)
    except (OSError, ValueError) as exc:
        print(f"os3p-central: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:
        failure = store_failure(exc)
        if failure is None:
            raise
        print(f"os3p-central: {failure}", file=sys.stderr)
        return 2
