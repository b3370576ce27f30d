"""The Substation side: an OS³P WebSocket client under trio, with the boot flow and reconnects.

:class:`SubstationClient` keeps one station connected for as long as it runs:

- connect to ``<endpoint>/<percent-encoded identity>`` (§J3.1.1) offering the configured
  subprotocols (§J3.1.2), with HTTP Basic auth (OCPP security profile 1/2) and TLS / mutual TLS;
- boot (§M3.1, PROTOCOL-DECISIONS §5): BootNotification until Accepted; Pending → again after
  ``interval``; Rejected → the Central System closes, we wait ``interval`` (60 s if 0) before
  reconnecting.  On a reconnect no BootNotification is sent unless a boot field changed since the
  last Accepted one (§J5.5, §M3.3): the caller supplies ``last_accepted_boot`` (stored durably)
  and is told of every acceptance through ``on_boot_accepted``;
- Heartbeat every ``interval`` of the last Accepted response (§M3.1); WebSocket pings after
  ``ping_interval`` seconds of silence (``websocketPingInterval``, §J6; 0 disables) and a pong
  timeout for dead peers;
- reconnect after any loss with exponential back-off and full jitter: attempt *n* waits
  ``uniform(0, min(reconnect_max, reconnect_base * 2**n))``.  With the defaults (60 s, 900 s) a
  fleet of 100,000 stations that lost a restarted Central System at the same instant comes back
  at about 1,700 per second over the first minute; those that fail spread over 2, 4, 8... minutes.

The gating itself (what may be sent in which boot state) is the core's; this module only decides
*when* to send BootNotification and Heartbeat.
"""

from __future__ import annotations

import base64
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit

import attrs
import trio

from os3p_core import BootState, Config, Connection, LocalProtocolError, Role
from os3p_core.payloads import BootNotificationRequest, HeartbeatRequest, RegistrationStatus

from ._errors import (
    CallErrorReceived,
    CallFailure,
    CallTimeout,
    ConnectionClosed,
    HandshakeFailed,
    InvalidResult,
)
from ._handshake import connection_path
from ._session import Router, Session
from ._timers import TimerService
from ._transport import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_RECEIVE_CHUNK, client_handshake

__all__ = ["ClientConfig", "SubstationClient", "open_substation"]

logger = logging.getLogger("os3p_trio")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Options of the Substation client.  Frozen; every default is sized for a fleet."""

    #: Subprotocols offered, in our order of preference (§J3.1.3).
    subprotocols: tuple[str, ...] = ("OS3P1.0",)
    #: Seconds for TCP connect + TLS + upgrade, per attempt.
    connect_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: ``websocketPingInterval`` (§J6): ping after this many seconds without traffic from the
    #: Central System; 0 disables.  At most one a minute by default: each ping costs the server
    #: about half a millisecond of CPU, and a fleet multiplies it.
    ping_interval: float = attrs.field(default=60.0, validator=_non_negative)
    #: Seconds to wait for the pong (or any byte) before the Central System counts as dead.
    pong_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: Bound on a closing handshake.
    close_timeout: float = attrs.field(default=5.0, validator=_positive)
    #: Largest text message accepted, UTF-8 bytes (PROTOCOL-DECISIONS §1); bigger → close 1009.
    max_message_size: int = attrs.field(default=DEFAULT_MAX_MESSAGE_SIZE, validator=_positive)
    #: Bytes per read.
    receive_chunk: int = attrs.field(default=DEFAULT_RECEIVE_CHUNK, validator=_positive)
    #: Full-jitter window of the first reconnect attempt, seconds; doubles per failed attempt.
    reconnect_base: float = attrs.field(default=60.0, validator=_positive)
    #: Largest jitter window, seconds.
    reconnect_max: float = attrs.field(default=900.0, validator=_positive)
    #: Jitter window before the very first connection (0: connect at once).  Set it when a whole
    #: region of stations powers up together (after a blackout).
    initial_jitter: float = attrs.field(default=0.0, validator=_non_negative)
    #: Heartbeat interval when acceptance is remembered and no BootNotification was answered on
    #: this connection (the station's ``HeartbeatInterval`` key, PROTOCOL-DECISIONS §6).
    heartbeat_interval: float = attrs.field(default=300.0, validator=_positive)
    #: Send Heartbeat every ``heartbeat_interval``.  Off when the application sends its own (a
    #: simulator that drives its station model's clock, for instance).
    send_heartbeats: bool = True
    #: The core's options for every connection.
    connection: Config = attrs.field(factory=Config)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based): full jitter."""
        window = min(self.reconnect_max, self.reconnect_base * 2.0 ** min(attempt, 60))
        return rng.uniform(0.0, window)


OnConnect = Callable[[Session], Awaitable[Any]]
OnBootAccepted = Callable[[BootNotificationRequest], Awaitable[Any]]


class SubstationClient:
    """One Substation's connection to its Central System, kept up until cancelled.

    Make it with :func:`open_substation` (or call :meth:`run` in your own nursery).
    """

    def __init__(
        self,
        url: str,
        identity: str,
        router: Router,
        boot: BootNotificationRequest,
        *,
        last_accepted_boot: BootNotificationRequest | None = None,
        password: str | bytes | None = None,
        ssl_context: ssl.SSLContext | None = None,
        config: ClientConfig | None = None,
        on_connect: OnConnect | None = None,
        on_boot_accepted: OnBootAccepted | None = None,
        rng: random.Random | None = None,
        timers: TimerService | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// endpoint URL: {url!r}")
        self.identity = identity
        self.router = router
        #: The BootNotification fields this station sends (change them before a reconnect to
        #: force a new BootNotification, e.g. after a firmware update).
        self.boot = boot
        #: The fields of the last Accepted BootNotification (store it durably; §J5.5).
        self.last_accepted_boot = last_accepted_boot
        self.config = config if config is not None else ClientConfig()
        self.on_connect = on_connect
        self.on_boot_accepted = on_boot_accepted
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "wss" else 80)
        self._netloc = parts.netloc.rpartition("@")[2]
        self._target = connection_path(parts.path or "/", identity)
        if parts.scheme == "wss" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._ssl = ssl_context if parts.scheme == "wss" else None
        self._headers: list[tuple[bytes, bytes]] = []
        if password is not None:
            raw = password.encode() if isinstance(password, str) else password
            token = base64.b64encode(identity.encode("utf-8") + b":" + raw)
            self._headers.append((b"authorization", b"Basic " + token))
        self._rng = rng if rng is not None else random.Random()
        # A fleet in one process (the simulator) shares one timer task: pass one TimerService to
        # every client and run it once; otherwise the client runs its own.
        self._own_timers = timers is None
        self.timers = timers if timers is not None else TimerService()
        self._ping_interval = self.config.ping_interval
        #: Seconds between Heartbeats (from the last Accepted BootNotification response).
        self.heartbeat_interval: float = self.config.heartbeat_interval
        #: The current session, or ``None`` while disconnected.
        self.session: Session | None = None
        #: Completed connection attempts that reached the WebSocket (for tests and monitoring).
        self.connections = 0
        #: BootNotifications sent, over all connections.
        self.boots_sent = 0
        self._accepted = False
        self._changed = trio.Event()
        self._reject_wait: float | None = None
        self._was_accepted = False

    # --- state -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a WebSocket connection is open."""
        return self.session is not None

    @property
    def accepted(self) -> bool:
        """True while connected and accepted (boot Accepted now or remembered)."""
        return self.session is not None and self._accepted

    @property
    def boot_state(self) -> BootState | None:
        """The current connection's boot state, ``None`` while disconnected."""
        return None if self.session is None else self.session.connection.boot_state

    @property
    def ping_interval(self) -> float:
        """``websocketPingInterval`` in force (0: no client pings).  Settable: a ChangeConfiguration
        handler sets it, and it applies to the current connection and the next ones."""
        return self._ping_interval

    @ping_interval.setter
    def ping_interval(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("websocketPingInterval must be >= 0 (§J6)")
        self._ping_interval = seconds
        if self.session is not None:
            self.session.ping_interval = seconds or None
            self.session._update_timer()  # a shorter interval must take effect now

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_connected(self) -> Session:
        """Wait until a WebSocket connection is open; return its session."""
        while self.session is None:
            await self._changed.wait()
        return self.session

    async def wait_accepted(self) -> Session:
        """Wait until connected and accepted; return the session."""
        while self.session is None or not self._accepted:
            await self._changed.wait()
        return self.session

    async def wait_disconnected(self) -> None:
        """Wait until the current connection (if any) has ended."""
        while self.session is not None:
            await self._changed.wait()

    def security_error(self) -> None:
        """A call other than BootNotification was answered ``SecurityError``: the Central System does not know
        this station as accepted (PROTOCOL-DECISIONS §5).  Forget the remembered acceptance, send a
        BootNotification on the current connection at once; :attr:`accepted` is False (so the caller's outbox
        holds) until it is Accepted.  ``on_boot_accepted`` runs again then."""
        self.last_accepted_boot = None
        session = self.session
        if session is None or not self._accepted:
            return  # not connected, or a boot is already under way
        self._accepted = False
        self._notify()
        session.start_soon(self._boot_again, session)

    async def _boot_again(self, session: Session) -> None:
        if await self._boot(session):
            self._accepted = True
            self._notify()

    async def call(self, request: Any, *, timeout: float | None = None) -> Any:
        """``session.call(request)`` on the current connection; :class:`ConnectionClosed` if none."""
        session = self.session
        if session is None:
            raise ConnectionClosed(1006, "not connected")
        return await session.call(request, timeout=timeout)

    # --- running ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[SubstationClient] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Connect, boot, heartbeat, serve calls, reconnect; forever (until cancelled)."""
        if not self._own_timers:
            await self._run(task_status)  # someone else runs the shared timer service
        async with trio.open_nursery() as nursery:
            await nursery.start(self.timers.run)
            await self._run(task_status)

    async def _run(self, task_status: trio.TaskStatus[SubstationClient]) -> NoReturn:
        cfg = self.config
        task_status.started(self)
        if cfg.initial_jitter:
            await trio.sleep(self._rng.uniform(0.0, cfg.initial_jitter))
        attempt = 0
        while True:
            session: Session | None = None
            try:
                session = await self._connect()
            except (
                OSError,
                HandshakeFailed,
                trio.TooSlowError,
                trio.BrokenResourceError,
                ConnectionClosed,
            ) as exc:
                logger.info("os3p client %r: connect failed: %r", self.identity, exc)
            except Exception:
                # Whatever went wrong, a station keeps trying (with back-off): log it loudly.
                logger.exception("os3p client %r: unexpected error while connecting", self.identity)
            if session is not None:
                self.connections += 1
                self._reject_wait = None
                self._accepted = False
                self._was_accepted = False
                self.session = session
                self._notify()
                try:
                    await session.run(on_start=self._session_main)
                finally:
                    self.session = None
                    self._accepted = False
                    self._notify()
                reject_wait = self._rejected_wait()
                if reject_wait is not None:
                    # PROTOCOL-DECISIONS §5: Rejected → wait `interval` (60 when 0) before reconnecting.
                    await trio.sleep(reject_wait)
                    attempt = 0
                    continue
            if session is not None and self._was_accepted:
                attempt = 0  # the connection had worked: start the back-off over
            delay = cfg.backoff(attempt, self._rng)
            attempt += 1
            logger.info("os3p client %r: reconnecting in %.1f s", self.identity, delay)
            await trio.sleep(delay)

    def _rejected_wait(self) -> float | None:
        # Set by the boot flow while the session ran (a method call, so the type checker does not
        # assume the value from before the session).
        return self._reject_wait

    async def _connect(self) -> Session:
        cfg = self.config
        with trio.fail_after(cfg.connect_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
            try:
                if self._ssl is not None:
                    tls = trio.SSLStream(stream, self._ssl, server_hostname=self._host)
                    await tls.do_handshake()
                    stream = tls
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            ws = await client_handshake(
                stream,
                host=self._netloc,
                target=self._target,
                subprotocols=cfg.subprotocols,
                extra_headers=self._headers,
                max_message_size=cfg.max_message_size,
                receive_chunk=cfg.receive_chunk,
            )
        remembered = self.last_accepted_boot is not None and self.last_accepted_boot == self.boot
        conn = Connection(Role.SUBSTATION, cfg.connection, previously_accepted=remembered)
        return Session(
            ws,
            conn,
            self.identity,
            self.router,
            self.timers,
            ping_interval=self._ping_interval or None,
            pong_timeout=cfg.pong_timeout,
            close_timeout=cfg.close_timeout,
        )

    async def _session_main(self, session: Session) -> None:
        conn = session.connection
        if conn.boot_state is not BootState.ACCEPTED and not await self._boot(session):
            return
        self._accepted = True
        self._was_accepted = True
        self._notify()
        if self.on_connect is not None:
            session.start_soon(self.on_connect, session)
        await self._heartbeats(session)

    async def _boot(self, session: Session) -> bool:
        conn = session.connection
        while True:
            boot = self.boot
            self.boots_sent += 1
            try:
                response = await session.call(boot)
            except (CallErrorReceived, CallTimeout, InvalidResult) as exc:
                # No usable answer: start over on a new connection, after the back-off.
                logger.warning("os3p client %r: BootNotification failed: %r", self.identity, exc)
                session.request_close(1000, "boot failed")
                return False
            if response.status is RegistrationStatus.ACCEPTED:
                self.last_accepted_boot = boot
                if response.interval > 0:
                    self.heartbeat_interval = float(response.interval)
                if self.on_boot_accepted is not None:
                    await self.on_boot_accepted(boot)
                return True
            retry = float(conn.boot_retry_interval or 60)
            if response.status is RegistrationStatus.REJECTED:
                # §M3.1: "If rejected, the Central System will terminate the connection."  Wait for
                # it (bounded), then wait `interval` before reconnecting.
                self._reject_wait = retry
                await trio.sleep(self.config.close_timeout)
                session.request_close(1000, "boot rejected")
                return False
            # Pending: answer the Central System's calls (the router does), boot again later.
            self._notify()
            await trio.sleep(retry)

    async def _heartbeats(self, session: Session) -> None:
        if not self.config.send_heartbeats:
            return
        while True:
            await trio.sleep(self.heartbeat_interval)
            try:
                await session.call(HeartbeatRequest())
            except ConnectionClosed:
                return
            except (CallFailure, LocalProtocolError) as exc:
                logger.warning("os3p client %r: Heartbeat failed: %r", self.identity, exc)


@asynccontextmanager
async def open_substation(
    url: str,
    identity: str,
    router: Router,
    boot: BootNotificationRequest,
    **kwargs: Any,
) -> AsyncIterator[SubstationClient]:
    """``async with open_substation(url, identity, router, boot, ...) as station:`` — the station
    connects (and keeps reconnecting) in the background for the body; leaving it closes the
    connection with 1001.  Keyword arguments are those of :class:`SubstationClient`."""
    client = SubstationClient(url, identity, router, boot, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
