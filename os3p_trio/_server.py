"""The Central System side: an OS³P WebSocket server under trio.

``serve_central_system`` follows trio's ``serve_tcp``: it takes ``task_status`` and
``handler_nursery`` and runs until cancelled; ``open_central_system`` is the async context manager
around it.  Per accepted TCP connection (PROTOCOL-DECISIONS §1, in this order):

1. within ``handshake_timeout`` (10 s) of the TCP accept: the TLS handshake (if any) and a complete
   upgrade request, else the socket is closed;
2. the path → ``(endpoint, identity)``: unknown endpoint 404, bad identity 400;
3. mutual TLS (if on): the client certificate must name the identity, else 403;
4. the station registry (async, pluggable) → :class:`StationRecord` or ``None``;
5. Basic auth (if a server secret is set): user-id == identity and the key's HMAC matches the
   stored hash, else 401 — the same 401 for an unknown station (no enumeration of identities);
   without auth an unknown station gets 404 (§J3.2);
5a. ``on_admit(identity)`` (optional, e.g. a cluster's ownership claim): its result becomes the
   session's ``admission``; a :class:`HandshakeRejected` from it refuses the upgrade with its status,
   any other exception with 503 (the station retries later);
6. subprotocol: the client's first choice we support; none → upgrade without
   ``Sec-WebSocket-Protocol`` and close at once (§J3.2 MUST, close code 1002);
7. one connection per identity: an older live connection is closed with 1000 "replaced";
8. the :class:`~os3p_trio.Session` runs until the connection ends; a failure closes only it (1011).

Graceful shutdown (cancelling the server) closes every connection with 1001.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, NoReturn, Protocol

import attrs
import trio

from os3p_core import BootState, BootStateChanged, Config, Connection, Role

from ._errors import ConnectionClosed
from ._handshake import (
    HandshakeRejected,
    certificate_names,
    choose_subprotocol,
    parse_basic_authorization,
    parse_identity,
    verify_authorization_key,
)
from ._session import Router, Session
from ._timers import TimerService
from ._transport import (
    CLOSE_NORMAL,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_RECEIVE_CHUNK,
    PendingUpgrade,
    TransportLimits,
    WebSocket,
    server_handshake,
)

__all__ = [
    "CentralSystemServer",
    "InMemoryRegistry",
    "ServerConfig",
    "StationRecord",
    "StationRegistry",
    "open_central_system",
    "raise_open_file_limit",
    "serve_central_system",
]

logger = logging.getLogger("os3p_trio")

CLOSE_PROTOCOL_ERROR = 1002


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Options of the Central System server.  Frozen; defaults follow PROTOCOL-DECISIONS §1.

    Worst-case memory per connection: one read buffer (``receive_chunk``), at most one message
    being assembled (``max_message_size``), the core's bounded tables (``connection``, see
    ``docs/connection.md``) and at most ``connection.max_incoming_calls`` handler tasks.
    """

    #: Endpoint paths served (§J3.1.1); the connection URL is ``<endpoint>/<identity>``.
    endpoints: tuple[str, ...] = ("/OS3P",)
    #: Subprotocols we speak, in no particular order: the client's preference decides (§J3.1.3).
    subprotocols: tuple[str, ...] = ("OS3P1.0",)
    #: Seconds from TCP accept to a complete upgrade request (TLS handshake included).
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Largest text message, UTF-8 bytes; bigger → close 1009.
    max_message_size: int = attrs.field(default=DEFAULT_MAX_MESSAGE_SIZE, validator=_positive)
    #: Bytes per read: one read swallows a burst of messages.
    receive_chunk: int = attrs.field(default=DEFAULT_RECEIVE_CHUNK, validator=_positive)
    #: Ping a station silent for this many seconds (``None``: never).  Any traffic resets the clock,
    #: so a station that heartbeats or pings costs no server pings at all.
    ping_interval: float | None = attrs.field(default=60.0, validator=_positive)
    #: Seconds to wait for the pong; then the peer is dead and the socket is closed (1006).
    pong_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: Bound on a closing handshake (replacement, shutdown, errors).
    close_timeout: float = attrs.field(default=5.0, validator=_positive)
    #: Open WebSocket connections at most; more are refused with 503 before the upgrade.
    max_connections: int = attrs.field(default=100_000, validator=_positive)
    #: Secret for the AuthorizationKey hashes (``hash_authorization_key``).  Set → HTTP Basic auth
    #: is required of every station (OCPP security profile 1/2); ``None`` → no Basic auth.
    auth_secret: bytes | None = None
    #: Mutual TLS: the client certificate must name the identity (CN or subjectAltName).  The
    #: ``ssl_context`` must then require client certificates (``verify_mode = CERT_REQUIRED``).
    require_client_certificate: bool = False
    #: The core's options for every connection.
    connection: Config = attrs.field(factory=Config)
    #: Per-connection bounds of the transport (fairness, fragments, control frames, write timeout):
    #: see :class:`~os3p_trio.TransportLimits` for each default and its reason.
    transport: TransportLimits = attrs.field(factory=TransportLimits)
    #: TCP connections accepted and not yet upgraded (TLS and HTTP handshake), at most.  Beyond it a
    #: new connection is closed at once: 1,100 half-open connections used to exhaust the open-file
    #: limit, delaying real stations by ~9 s (issue 16).  1,024 handshakes in flight take a few
    #: seconds of CPU at most (TLS), while a reconnect storm still admits a thousand at a time.
    max_pending_handshakes: int = attrs.field(default=1024, validator=_positive)
    #: The same bound per source IP address, so one host cannot take every slot.  64 leaves room
    #: for a carrier-grade NAT in front of many stations (each handshake lasts milliseconds).
    max_pending_handshakes_per_address: int = attrs.field(default=64, validator=_positive)
    #: Connections refused at those bounds (or when ``accept`` finds no free file descriptor) are
    #: logged as one summary line per this many seconds, never once per connection or as tracebacks.
    refusal_log_interval: float = attrs.field(default=10.0, validator=_positive)
    #: Raise the process's open-file soft limit to its hard limit when the server starts (POSIX):
    #: the soft default (often 1,024) is far below what 100,000 stations need.
    raise_open_file_limit: bool = True
    #: With Basic auth, every refusal (unknown identity, wrong key, no key) is answered this many
    #: seconds after the upgrade request arrived, not sooner: the answer's timing then says nothing
    #: about whether the identity exists, whatever the registry's lookup costs (an unknown identity
    #: used to be answered 8-24 µs sooner, issue 16), and password guessing slows down.
    auth_failure_delay: float = attrs.field(default=0.1, validator=_positive)


@attrs.frozen
class StationRecord:
    """What the registry knows about a station.

    ``key_hash``: ``hash_authorization_key(secret, identity, key)`` of its AuthorizationKey (or
    ``None``: it has none, so Basic auth fails).  ``previously_accepted``: its last BootNotification
    was Accepted on an earlier connection (PROTOCOL-DECISIONS §5 (b), remembered durably).
    """

    identity: str
    key_hash: bytes | None = None
    previously_accepted: bool = False


class StationRegistry(Protocol):
    """Decides which stations may connect, and remembers boot acceptance.

    ``lookup`` returns ``None`` for an unknown identity (→ 404, or 401 with auth), or a record; an
    open-registration registry returns a record for every identity.  It runs inside the handshake
    timeout.  ``remember_boot`` is called (in the connection's nursery) whenever the Central
    System's answer to a BootNotification has been sent: ``accepted`` is true for Accepted, false
    for Pending/Rejected.  A durable registry stores it, so that ``previously_accepted`` of the next
    lookup lets the station reconnect without a new BootNotification (PROTOCOL-DECISIONS §5 (b)).
    """

    async def lookup(self, identity: str) -> StationRecord | None: ...

    async def remember_boot(self, identity: str, accepted: bool) -> None: ...


class InMemoryRegistry:
    """A dict-backed :class:`StationRegistry` (tests, small deployments).

    ``open_registration=True`` admits unknown identities (as never accepted, without a key).
    """

    def __init__(self, records: Iterable[StationRecord] = (), *, open_registration: bool = False) -> None:
        self.records: dict[str, StationRecord] = {r.identity: r for r in records}
        self.open_registration = open_registration

    def add(self, record: StationRecord) -> None:
        """Add or replace a record."""
        self.records[record.identity] = record

    async def lookup(self, identity: str) -> StationRecord | None:
        """The record of ``identity``, a fresh one under open registration, else ``None``."""
        record = self.records.get(identity)
        if record is None and self.open_registration:
            return StationRecord(identity)
        return record

    async def remember_boot(self, identity: str, accepted: bool) -> None:
        """Record the boot outcome in memory (a fresh record under open registration)."""
        record = self.records.get(identity)
        if record is None:
            if not self.open_registration:
                return
            record = StationRecord(identity)
        self.records[identity] = attrs.evolve(record, previously_accepted=accepted)


OnConnect = Callable[[Session], Awaitable[Any]]
OnAdmit = Callable[[str], Awaitable[Any]]

#: accept(2) errors that mean "no resources now", not "this listener is broken".
_ACCEPT_CAPACITY_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the process's open-file soft limit (``RLIMIT_NOFILE``) to its hard limit.

    Returns the ``(soft, hard)`` limits now in force, or ``None`` where there is no such limit
    (Windows).  Never raises: a limit that cannot be raised is left as it is.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


class _Refusals:
    """Counts refused connections and logs one summary line per interval (never a traceback)."""

    __slots__ = ("_counts", "_interval", "_last")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -float("inf")
        self._counts: dict[str, int] = {}

    def note(self, why: str) -> None:
        self._counts[why] = self._counts.get(why, 0) + 1
        now = trio.current_time()
        if now - self._last >= self._interval:
            summary = ", ".join(f"{n} {w}" for w, n in sorted(self._counts.items()))
            logger.warning("os3p server: refused new TCP connections (%s)", summary)
            self._counts.clear()
            self._last = now


class CentralSystemServer:
    """A running Central System server: its listeners and the live connections by identity.

    Reach a station from outside its connection (operator API, scheduler) with
    ``server.sessions[identity]`` or ``await server.call(identity, request)``.
    """

    def __init__(
        self,
        router: Router,
        registry: StationRegistry,
        config: ServerConfig,
        ssl_context: ssl.SSLContext | None,
        on_connect: OnConnect | None,
        on_admit: OnAdmit | None = None,
    ) -> None:
        self.router = router
        self.on_admit = on_admit
        self.registry = registry
        self.config = config
        self.ssl_context = ssl_context
        self.on_connect = on_connect
        self.listeners: list[trio.SocketListener] = []
        #: The one timer task's heap for every connection of this server (call deadlines, keepalive).
        self.timers = TimerService()
        self._sessions: dict[str, Session] = {}
        self._open = 0
        #: Called with ``(target, status, reason)`` for every upgrade request answered: 101 accepted, or
        #: the refusal's HTTP status (metrics, security-event log); ``None``: nothing is called.
        self.on_handshake: Callable[[str, int, str], None] | None = None
        # Handshakes in progress, in total and by source address (bounded, see ServerConfig).
        self._pending = 0
        self._pending_by_address: dict[str, int] = {}
        self._refusals = _Refusals(config.refusal_log_interval)
        # Compared against when the identity is unknown, so that an unknown identity and a wrong
        # key take the same work (constant-time admission).
        self._dummy_hash = secrets.token_bytes(32)

    @property
    def pending_handshakes(self) -> int:
        """TCP connections accepted by :meth:`serve` and not yet upgraded or closed."""
        return self._pending

    @property
    def port(self) -> int:
        """The TCP port of the first listener (handy with port 0)."""
        return int(self.listeners[0].socket.getsockname()[1])

    @property
    def sessions(self) -> Mapping[str, Session]:
        """Live connections by identity (read-only view)."""
        return self._sessions

    def get(self, identity: str) -> Session | None:
        """The live session of ``identity``, or ``None``."""
        return self._sessions.get(identity)

    async def call(self, identity: str, request: Any, *, timeout: float | None = None) -> Any:
        """``await sessions[identity].call(request)``; :class:`ConnectionClosed` if not connected."""
        session = self._sessions.get(identity)
        if session is None:
            raise ConnectionClosed(1006, f"{identity!r} is not connected")
        return await session.call(request, timeout=timeout)

    # --- per connection --------------------------------------------------------------------

    async def handle_stream(self, stream: trio.abc.Stream, *, address: str | None = None) -> None:
        """Serve one accepted TCP stream to the end.  Never raises (failures are logged).

        ``address``: the source address under which the caller counted this stream as a pending
        handshake (the server's own accept loop does); its slot is freed when the handshake ends.

        (One function, not a wrapper around another: every coroutine frame on an idle
        connection's stack is kept for the life of the connection.)
        """
        try:
            cfg = self.config
            accepted: tuple[WebSocket, str, StationRecord, Any] | None = None
            try:
                with trio.move_on_after(cfg.handshake_timeout):
                    accepted = await self._handshake(stream)
            finally:
                if address is not None:
                    self._release(address)
                    address = None
            if accepted is None:
                await trio.aclose_forcefully(stream)
                return
            ws, identity, record, admission = accepted
            previously_accepted = record.previously_accepted
            del accepted, record  # this frame lives as long as the connection
            if ws.subprotocol is None:
                # §J3.2: "it MUST complete the websocket handshake with a response without a
                # Sec-websocket-Protocol header and then immediately close the websocket connection."
                await ws.aclose(
                    CLOSE_PROTOCOL_ERROR, "no supported subprotocol offered", timeout=cfg.close_timeout
                )
                return
            conn = Connection(Role.CENTRAL_SYSTEM, cfg.connection, previously_accepted=previously_accepted)
            session = Session(
                ws,
                conn,
                identity,
                self.router,
                self.timers,
                ping_interval=cfg.ping_interval,
                pong_timeout=cfg.pong_timeout,
                close_timeout=cfg.close_timeout,
            )
            session.on_boot_state = self._boot_state_changed
            session.admission = admission
            del admission
            old = self._sessions.get(identity)
            self._sessions[identity] = session
            if old is not None:
                # PROTOCOL-DECISIONS §1: the newer authenticated connection replaces the older.
                logger.info("os3p server: %r reconnected; closing its older connection", identity)
                old.request_close(CLOSE_NORMAL, "replaced")
            self._open += 1
            try:
                await session.run(on_start=self.on_connect)
            finally:
                self._open -= 1
                if self._sessions.get(identity) is session:
                    del self._sessions[identity]
        except Exception:
            # Session.run contains its own failures; this catches the handshake phase.
            logger.exception("os3p server: connection handling failed")
            await trio.aclose_forcefully(stream)

    def _release(self, address: str) -> None:
        self._pending -= 1
        left = self._pending_by_address[address] - 1
        if left:
            self._pending_by_address[address] = left
        else:
            del self._pending_by_address[address]

    async def serve(
        self,
        listener: trio.SocketListener,
        handler_nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Accept connections on ``listener`` until cancelled, each served by :meth:`handle_stream`
        in ``handler_nursery``.  Unlike ``trio.serve_listeners``: pending handshakes are bounded (in
        total and per source address) and, at a bound or when no file descriptor is free, the new
        connection is closed at once and counted in one log line per interval (no tracebacks).
        """
        cfg = self.config
        by_address = self._pending_by_address
        # One descriptor kept in reserve: when accept() finds none free (EMFILE), giving this one
        # up lets us accept the waiting connection and close it, instead of leaving it to hang in
        # the backlog while accept() fails in a loop.
        spare: int | None = _open_spare()
        async with listener:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    self._refusals.note(f"accept failed: {errno.errorcode.get(exc.errno or 0, exc)}")
                    if spare is not None:
                        os.close(spare)
                        spare = None
                        with trio.move_on_after(0.01):
                            await trio.aclose_forcefully(await listener.accept())
                        spare = _open_spare()
                    if spare is None:
                        await trio.sleep(0.1)
                    continue
                try:
                    address = str(stream.socket.getpeername()[0])
                except OSError:  # already reset by the peer
                    await trio.aclose_forcefully(stream)
                    continue
                if self._pending >= cfg.max_pending_handshakes:
                    self._refusals.note("at max_pending_handshakes")
                    _refuse(stream)
                    continue
                if by_address.get(address, 0) >= cfg.max_pending_handshakes_per_address:
                    self._refusals.note("at max_pending_handshakes_per_address")
                    _refuse(stream)
                    continue
                self._pending += 1
                by_address[address] = by_address.get(address, 0) + 1
                handler_nursery.start_soon(self._handle_accepted, stream, address)

    async def _handle_accepted(self, stream: trio.SocketStream, address: str) -> None:
        try:
            await self.handle_stream(stream, address=address)
        finally:
            await trio.aclose_forcefully(stream)

    def _boot_state_changed(self, session: Session, change: BootStateChanged) -> None:
        if change.new in (BootState.ACCEPTED, BootState.PENDING, BootState.REJECTED):
            accepted = change.new is BootState.ACCEPTED
            with contextlib.suppress(ConnectionClosed):  # the session ended meanwhile
                session.start_soon(self.registry.remember_boot, session.identity, accepted)

    async def _handshake(
        self, stream: trio.abc.Stream
    ) -> tuple[WebSocket, str, StationRecord, Any] | None:
        cfg = self.config
        peercert: dict[str, Any] | None = None
        if self.ssl_context is not None:
            tls = trio.SSLStream(stream, self.ssl_context, server_side=True)
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                logger.info("os3p server: TLS handshake failed")
                return None
            peercert = tls.getpeercert()
            stream = tls
        pending = await server_handshake(stream)
        if pending is None:
            return None
        admission: Any = None
        received = trio.current_time()
        try:
            identity, record = await self._admit(pending, peercert)
            if self.on_admit is not None:
                try:
                    admission = await self.on_admit(identity)
                except HandshakeRejected:
                    raise
                except Exception as exc:
                    logger.warning("os3p server: admission of %r failed: %r", identity, exc)
                    raise HandshakeRejected(503, "the server cannot admit the station now") from exc
        except HandshakeRejected as exc:
            logger.info("os3p server: refused %r with %d: %s", pending.request.target, exc.status, exc.reason)
            if self.on_handshake is not None:
                self.on_handshake(pending.request.target, exc.status, exc.reason)
            headers: list[tuple[bytes, bytes]] = []
            if exc.status == 401:
                headers.append((b"WWW-Authenticate", b'Basic realm="OS3P", charset="UTF-8"'))
                # Every Basic-auth refusal leaves at the same time after the request, whatever
                # the registry's lookup of a known or unknown identity cost (constant-time
                # admission, ServerConfig.auth_failure_delay).
                await trio.sleep_until(received + cfg.auth_failure_delay)
            await pending.reject(exc.status, headers)
            return None
        subprotocol = choose_subprotocol(pending.request.subprotocols, cfg.subprotocols)
        if self.on_handshake is not None:
            self.on_handshake(pending.request.target, 101, subprotocol or "no subprotocol")
        ws = await pending.accept(
            subprotocol,
            max_message_size=cfg.max_message_size,
            receive_chunk=cfg.receive_chunk,
            limits=cfg.transport,
        )
        return ws, identity, record, admission

    async def _admit(
        self, pending: PendingUpgrade, peercert: dict[str, Any] | None
    ) -> tuple[str, StationRecord]:
        cfg = self.config
        _endpoint, identity = parse_identity(pending.request.target, cfg.endpoints)
        if self._open >= cfg.max_connections:
            raise HandshakeRejected(503, "connection limit reached")
        if cfg.require_client_certificate and identity not in certificate_names(peercert):
            raise HandshakeRejected(403, "client certificate does not name the identity")
        record = await self.registry.lookup(identity)
        if cfg.auth_secret is not None:
            creds = parse_basic_authorization(pending.header(b"authorization"))
            user, key = creds if creds is not None else ("", b"")
            # An unknown identity (or one without a key) is checked against a dummy hash: the same
            # HMAC, the same comparison, the same branches as a wrong key for a known station.
            stored = record.key_hash if record is not None and record.key_hash is not None else None
            ok = verify_authorization_key(
                cfg.auth_secret, identity, key, stored if stored is not None else self._dummy_hash
            )
            ok = ok and stored is not None
            # One answer for every failure (no identity enumeration).
            if not ok or user != identity or record is None:
                raise HandshakeRejected(401, "authentication failed")
        elif record is None:
            raise HandshakeRejected(404, "unknown station identity")
        return identity, record


async def serve_central_system(
    router: Router,
    port: int,
    *,
    host: str | None = None,
    registry: StationRegistry | None = None,
    config: ServerConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    on_connect: OnConnect | None = None,
    on_admit: OnAdmit | None = None,
    listeners: list[trio.SocketListener] | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[CentralSystemServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve OS³P on ``host``:``port`` (or the given ``listeners``) until cancelled.

    ``router``: handlers for station-initiated calls.  ``registry``: who may connect (default: open
    registration, everyone).  ``on_connect(session)``: runs for the life of each connection in its
    nursery (cancelled when the connection ends; its exception closes only that connection with
    1011).  ``on_admit(identity)``: runs after authentication, before the 101 (step 5a of the module
    docstring); its result is the session's ``admission``.  ``ssl_context``: serve ``wss://``.
    ``task_status.started`` gets the :class:`CentralSystemServer`.  Cancelling closes every
    connection with 1001 (unless ``handler_nursery`` is an outside nursery, as with
    ``trio.serve_tcp``).
    """
    cfg = config if config is not None else ServerConfig()
    reg = registry if registry is not None else InMemoryRegistry(open_registration=True)
    server = CentralSystemServer(router, reg, cfg, ssl_context, on_connect, on_admit)
    if cfg.raise_open_file_limit:
        limits = raise_open_file_limit()
        if limits is not None:
            logger.debug("os3p server: open-file limit %d (hard %d)", *limits)
    if listeners is None:
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
    server.listeners = listeners
    async with trio.open_nursery() as nursery:
        # The timer service lives where the connections live: with an outside handler_nursery the
        # connections outlive this function, and so must their call deadlines and keepalive.
        await (handler_nursery or nursery).start(server.timers.run)
        for listener in listeners:
            await nursery.start(server.serve, listener, handler_nursery or nursery)
        task_status.started(server)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


@asynccontextmanager
async def open_central_system(
    router: Router,
    port: int,
    *,
    host: str | None = None,
    registry: StationRegistry | None = None,
    config: ServerConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    on_connect: OnConnect | None = None,
    on_admit: OnAdmit | None = None,
    listeners: list[trio.SocketListener] | None = None,
) -> AsyncIterator[CentralSystemServer]:
    """``async with open_central_system(router, 0, host="127.0.0.1") as server:`` — the server runs
    for the body; leaving it closes every connection with 1001."""
    async with trio.open_nursery() as nursery:
        server: CentralSystemServer = await nursery.start(
            lambda task_status: serve_central_system(
                router,
                port,
                host=host,
                registry=registry,
                config=config,
                ssl_context=ssl_context,
                on_connect=on_connect,
                on_admit=on_admit,
                listeners=listeners,
                task_status=task_status,
            )
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def _refuse(stream: trio.SocketStream) -> None:
    # Close at once, synchronously: no task, no buffers, the descriptor is free again.  The peer
    # sees the connection closed before any HTTP, and retries with its backoff.
    stream.socket.close()
