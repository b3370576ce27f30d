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
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from os3p_core import Action, LocalProtocolError, Role
from os3p_trio import CentralSystemServer, Router, ServerConfig, Session, open_central_system
from os3p_trio import StationRecord as RegistryRecord

from ._api import FileArea, create_api, serve_api
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

    def __init__(self, session: Session) -> None:
        self.session = session

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        try:
            return await self.session.call_payload(action, payload, timeout=timeout)
        except LocalProtocolError as exc:
            # The core refused to send (e.g. its queue of outgoing calls is full): nothing was sent.
            raise NotConnected(f"{self.session.identity}: cannot send now: {exc}") from exc


class _LiveSessions:
    def __init__(self, server: CentralSystemServer) -> None:
        self.server = server

    def get(self, identity: str) -> StationLink | None:
        session = self.server.get(identity)
        return None if session is None or session.is_closed else _SessionLink(session)

    def count(self) -> int:
        return len(self.server.sessions)


def build_router(central: CentralSystem) -> Router:
    """A router with a handler for each of the 8 station-initiated actions (annex §6): store, then answer."""
    router = Router()
    for action in Action:
        if action.sender is Role.SUBSTATION:
            # Raw handlers: the store takes wire dicts (its columns follow the schema), so typed structuring
            # and unstructuring would only cost time (~0.46 ms for an 80-value MeterValues).
            router.add(action, _handler(central, action), raw=True)
    return router


def _handler(central: CentralSystem, action: Action) -> Callable[[Session, Any], Awaitable[dict[str, Any]]]:
    async def handle(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        # A raw handler: ``payload`` is the validated wire dict, the answer a wire dict (validated when sent).
        return await central.handle(session.identity, action.value, payload)

    handle.__name__ = f"handle_{action.value}"
    return handle


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
    retention_interval: float | None = 3600.0,
) -> AsyncIterator[CentralService]:
    """Run the Central System on ``store`` for the body of the ``async with``.

    ``server_config`` is ``os3p_trio``'s (endpoints, auth secret, limits, mutual TLS); ``ssl_context`` serves
    ``wss://``; ``certfile``/``keyfile`` serve the API over https; ``public_url`` is the API's base URL as
    stations see it (firmware downloads, GetFile uploads), by default the URL of each request; ``api_token``
    protects the operator routes (see :func:`~._api.create_api`).  ``retention_interval``: seconds between
    two :meth:`~._store.Store.apply_retention` passes (the first right after start; ``None``: never; the
    store's :class:`~._store.RetentionPolicy` says what goes).  On exit every connection is closed (1001) and
    queued store writes are committed.
    """
    central = CentralSystem(store, config, secret=secret)
    # A crash may have left stations marked connected: nothing is connected before we listen.
    await store.mark_all_disconnected(central.clock())
    server_config = server_config or ServerConfig()

    async def on_connect(session: Session) -> None:
        identity = session.identity
        await central.connected(identity)
        try:
            await trio.sleep_forever()
        finally:
            # Replaced by a newer connection (PROTOCOL-DECISIONS §1)?  Then the station is still connected.
            current = server.get(identity)
            if current is None or current is session:
                with trio.CancelScope(shield=True):
                    try:
                        await central.disconnected(identity)
                    except Exception:  # the station was removed meanwhile: nothing to record
                        logger.info("central: could not record the disconnection of %r", identity)

    async with trio.open_nursery() as nursery:
        if retention_interval is not None:
            nursery.start_soon(_apply_retention, central, retention_interval)
        server = await nursery.start(
            lambda task_status: _serve_ws(
                central, port, host, server_config, ssl_context, on_connect, task_status=task_status
            )
        )
        central.live = _LiveSessions(server)
        scheme = "wss" if ssl_context is not None else "ws"
        endpoint = server_config.endpoints[0]
        ws_url = f"{scheme}://{_host_for_url(host)}:{server.port}{endpoint}"
        central.ws_url = ws_url
        api_url = await nursery.start(
            lambda task_status: serve_api(
                create_api(central, files, public_url=public_url, api_token=api_token),
                host=api_host,
                port=api_port,
                certfile=certfile,
                keyfile=keyfile,
                task_status=task_status,
            )
        )
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
    *,
    task_status: trio.TaskStatus[CentralSystemServer],
) -> None:
    async with open_central_system(
        build_router(central),
        port,
        host=host,
        registry=StoreRegistry(central),
        config=server_config,
        ssl_context=ssl_context,
        on_connect=on_connect,
    ) as server:
        task_status.started(server)
        await trio.sleep_forever()


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
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
