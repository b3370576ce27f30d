"""One live OS³P connection under trio, for either role: the glue between a WebSocket and the
sans-IO :class:`os3p_core.Connection`.

Theory of operation
===================

All protocol rules live in the core; a session only moves text and time in and out and runs
application handlers (ARCHITECTURE.md, "os3p_trio").  Per connection, one nursery holds:

- the **reader** (the task that called :meth:`Session.run`): one large read → every complete
  message → ``receive_message(text, now)`` → events dispatched → one batched write of the outbox;
- a **wake-up** in the server's (or client's) shared :class:`~os3p_trio._timers.TimerService` at
  the earliest of the core's ``next_deadline()`` (call timeouts) and the keepalive check — not a
  task per connection, which would cost ~20 GC-tracked objects per idle connection; waking, it
  calls ``handle_timeout(now)``, pings a peer silent for ``ping_interval`` and aborts one that sent
  nothing within ``pong_timeout`` of the ping (dead peer), starting a short task only to write;
- the **handler tasks** of incoming calls being handled: at most ``Config.max_incoming_calls``
  (the core answers any excess itself), so a slow handler never blocks reading, pings or results.
  Plain (non-async) handlers run inline in the reader: no task, no switch — for quick answers
  such as Heartbeat.

Every write goes through the WebSocket's one lock, taking the outbox while holding it
(``WebSocket.flush``), so messages leave in the order the core produced them.

Failure containment (PROTOCOL-DECISIONS §1): a handler's exception becomes a CALLERROR
``InternalError`` for that call (logged, generic description on the wire, §3); any other error
inside the session closes this connection with 1011 and is logged; :meth:`Session.run` never
raises it to the server's nursery.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import trio

from os3p_core import (
    Action,
    BootStateChanged,
    Call,
    CallFailed,
    CallReceived,
    CallTimedOut,
    Connection,
    ErrorCode,
    ErrorReceived,
    LocalProtocolError,
    ProtocolError,
    ResultReceived,
)
from os3p_core import FailureReason as _FailureReason

from ._errors import CallErrorReceived, CallTimeout, ConnectionClosed, InvalidResult
from ._timers import TimerHandle, TimerService
from ._transport import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, WebSocket

__all__ = ["Handler", "Router", "Session"]

logger = logging.getLogger("os3p_trio")

T = TypeVar("T")

#: A handler: ``(session, typed_request) -> typed_response`` (a dict is accepted too; with
#: ``Router.add(..., raw=True)``: ``(session, request_dict) -> response_dict``).  Async
#: handlers run in their own task; plain functions run inline and must be quick and never block.
Handler = Callable[["Session", Any], Awaitable[Any]] | Callable[["Session", Any], Any]

_INTERNAL_ERROR_TEXT = "internal error while handling the call"


class Router:
    """Handlers for incoming calls, one per action.

    ::

        router = Router()

        @router.on(Action.HEARTBEAT)
        def heartbeat(session, request: HeartbeatRequest) -> HeartbeatResponse:
            return HeartbeatResponse(current_time=...)

    A handler gets the :class:`Session` and the typed request object (``os3p_core.payloads``)
    and returns the typed response (or a dict).  Raising :class:`os3p_core.ProtocolError` (any
    subclass) answers with that CALLERROR (its ``code``, ``description``, ``details``); any
    other exception answers ``InternalError`` with a generic description and is logged.  An
    action without a handler is answered ``NotImplemented`` (PROTOCOL-DECISIONS §3).

    Typed structuring is a choice, not a tax (issue 2): a handler registered with ``raw=True``
    (or :meth:`on_raw`) gets the request payload as the validated wire ``dict`` (unless
    ``Config.validate_incoming`` is off; camelCase keys, exactly as received, a date-time without
    offset not yet given the station's zone; do not mutate it) and returns the response as a wire
    ``dict`` (still validated against the response schema before it is sent).  Structuring an
    80-value MeterValues and turning it back into a dict for a store costs 0.2-0.5 ms.
    """

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        # action -> (handler, is_async, raw)
        self._handlers: dict[Action, tuple[Handler, bool, bool]] = {}

    def add(self, action: Action | str, handler: Handler, *, raw: bool = False) -> None:
        """Register ``handler`` for ``action`` (replacing any earlier one).

        ``raw=True``: the handler takes and returns wire dicts instead of typed payload objects.
        """
        self._handlers[Action(action)] = (handler, inspect.iscoroutinefunction(handler), raw)

    def on(self, action: Action | str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def register(handler: T) -> T:
            self.add(action, cast(Handler, handler))
            return handler

        return register

    def on_raw(self, action: Action | str) -> Callable[[T], T]:
        """Decorator form of ``add(action, handler, raw=True)``: the handler gets and returns dicts."""

        def register(handler: T) -> T:
            self.add(action, cast(Handler, handler), raw=True)
            return handler

        return register

    def get(self, action: Action) -> tuple[Handler, bool, bool] | None:
        """The registered ``(handler, is_async, raw)`` for ``action``, or ``None``."""
        return self._handlers.get(action)

    def __contains__(self, action: object) -> bool:
        return action in self._handlers


class _Waiter:
    __slots__ = ("event", "outcome")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.outcome: Any = None


class Session:
    """One open OS³P connection: the WebSocket, the core :class:`~os3p_core.Connection`, the
    handlers.  Made by the server (one per station) and by the client (one per connection attempt).

    Use :meth:`call` to send a call and await its typed result; :attr:`identity` names the station.
    """

    __slots__ = (
        "_busy",
        "_close_request",
        "_closed",
        "_closed_event",
        "_conn",
        "_final_close",
        "_nursery",
        "_ping_sent",
        "_room",
        "_router",
        "_timer",
        "_timers",
        "_waiters",
        "_ws",
        "admission",
        "close_timeout",
        "identity",
        "on_boot_state",
        "on_frames",
        "ping_interval",
        "pong_timeout",
    )

    def __init__(
        self,
        ws: WebSocket,
        connection: Connection,
        identity: str,
        router: Router,
        timers: TimerService,
        *,
        ping_interval: float | None = 60.0,
        pong_timeout: float = 30.0,
        close_timeout: float = 5.0,
    ) -> None:
        self._ws = ws
        self._conn = connection
        self._router = router
        #: The station identity (from the URL path, §J3.1.1).
        self.identity = identity
        #: Seconds of silence from the peer before we ping it (``None`` or 0: never).  Settable
        #: at any time (``websocketPingInterval``, §J6); takes effect at the next timer wake-up.
        self.ping_interval = ping_interval
        #: Seconds to wait for a pong (or any byte) after a ping before declaring the peer dead.
        self.pong_timeout = pong_timeout
        #: Bound on the closing handshake.
        self.close_timeout = close_timeout
        #: Called (synchronously, in the reader) with every :class:`os3p_core.BootStateChanged`.
        self.on_boot_state: Callable[[Session, BootStateChanged], None] | None = None
        #: Called (synchronously) with ``(session, "in"|"out", texts)`` for every batch of messages read
        #: or about to be written, e.g. by a message log; ``None`` costs nothing.
        self.on_frames: Callable[[Session, str, list[str]], None] | None = None
        #: What the server's ``on_admit`` hook returned for this connection (e.g. a cluster's
        #: connection epoch); ``None`` without one.
        self.admission: Any = None
        self._waiters: dict[str, _Waiter] = {}
        self._nursery: trio.Nursery | None = None
        self._timers = timers
        self._timer = TimerHandle(self)
        self._ping_sent: float | None = None
        self._close_request: tuple[int, str] | None = None
        # A flag, and an Event only once somebody waits (three objects less per idle connection).
        self._closed = False
        self._closed_event: trio.Event | None = None
        self._final_close: ConnectionClosed | None = None
        # Async handler tasks running (incoming calls not answered yet), and the Event the reader
        # waits on while they are at Config.max_incoming_calls (backpressure, PROTOCOL-DECISIONS §4).
        self._busy = 0
        self._room: trio.Event | None = None

    # --- public ----------------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The sans-IO core of this connection (boot state, statistics, ...)."""
        return self._conn

    @property
    def websocket(self) -> WebSocket:
        """The transport under this session."""
        return self._ws

    @property
    def subprotocol(self) -> str | None:
        """The negotiated WebSocket subprotocol (§J3.1.2)."""
        return self._ws.subprotocol

    @property
    def is_closed(self) -> bool:
        """True once the session has ended."""
        return self._closed

    async def wait_closed(self) -> None:
        """Wait until the session has ended (closing handshake done)."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    async def call(self, request: Any, *, timeout: float | None = None) -> Any:
        """Send a typed request (``os3p_core.payloads.<Action>Request``) and return the typed response.

        ``timeout`` overrides the connection's call timeout for this call (PROTOCOL-DECISIONS §4);
        the call may first wait in the core's FIFO queue behind calls in flight.  Raises
        :class:`CallErrorReceived`, :class:`CallTimeout`, :class:`InvalidResult` or
        :class:`ConnectionClosed` (all :class:`CallFailure`), or :class:`os3p_core.LocalProtocolError`
        when the core refuses to send (invalid payload, boot gating, queue full): nothing was sent.
        """
        result = await self._call(Call.of(request, timeout))
        try:
            return result.response()
        except Exception as exc:
            # The payload passed the response schema but not the typed model (a converter rule
            # stricter than the schema): still the peer's answer that we cannot use.
            raise InvalidResult(f"{result.action.value}: response cannot be typed: {exc}") from exc

    async def call_payload(
        self, action: Action | str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Like :meth:`call` with a plain dict payload; returns the response payload dict."""
        result = await self._call(Call(action, payload, timeout))
        return result.payload

    def request_close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Ask the session to close with ``code``/``reason``; returns at once (see :meth:`wait_closed`)."""
        if self._close_request is None:
            self._close_request = (code, reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def start_soon(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``async_fn(*args)`` in this connection's nursery: it is cancelled when the connection
        ends, and its exception closes only this connection (1011).  For work a handler must do
        after its answer is sent, e.g. the message a TriggerMessage asked for (§M4.1)."""
        if self._nursery is None:
            raise ConnectionClosed(CLOSE_NORMAL, "session not running")
        self._nursery.start_soon(async_fn, *args)

    # --- running ---------------------------------------------------------------------------

    async def run(
        self,
        *,
        on_start: Callable[[Session], Awaitable[Any]] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the connection until it closes; ``on_start(session)`` runs alongside, in the nursery.

        Never raises for a connection failure (it is logged and the connection closed with 1011);
        cancellation (server shutdown) closes with 1001.
        """
        code, reason = CLOSE_GOING_AWAY, "going away"
        peer_closed = False
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if on_start is not None:
                    nursery.start_soon(self._run_on_start, on_start)
                task_status.started()
                # Outgoing calls queued before run() (none usually) go out now.
                await self._flush()
                # The reader, inline (one coroutine less per idle connection): one read → every
                # complete message → the core → events → one batched write.
                ws = self._ws
                conn = self._conn
                room = conn.config.max_incoming_calls
                while True:
                    try:
                        texts = await ws.receive_messages()
                        if self.on_frames is not None:
                            self.on_frames(self, "in", texts)
                        now = trio.current_time()
                        for text in texts:
                            if self._busy >= room:
                                # PROTOCOL-DECISIONS §4: "A well-formed CALL is never dropped
                                # silently": with every handler slot taken, stop here (the socket is
                                # not read meanwhile: backpressure) until one answers.
                                await ws.flush(conn.messages_to_send)
                                await self._wait_for_room()
                                now = trio.current_time()
                            conn.receive_message(text, now)
                            self._dispatch()
                        self._update_timer()
                        await ws.flush(self._outbox)
                    except ConnectionClosed:
                        peer_closed = True
                        break
                    if self._close_request is not None:
                        break
                if ws.failing and self._busy:
                    # We fail the connection (the peer broke the protocol or a limit), but the calls
                    # that arrived before are handled and answered first (bounded by close_timeout).
                    with trio.move_on_after(self.close_timeout):
                        while self._busy:
                            await self._wait_for_room()
                        with contextlib.suppress(ConnectionClosed):
                            await ws.flush(conn.messages_to_send)
                nursery.cancel_scope.cancel()
            if self._close_request is not None:
                code, reason = self._close_request
            else:
                code, reason = CLOSE_NORMAL, ""
        except Exception:
            logger.exception("os3p connection %r failed; closing it with 1011", self.identity)
            code, reason = CLOSE_INTERNAL_ERROR, "internal error"
        finally:
            self._nursery = None
            self._timer.cancel()
            with trio.CancelScope(shield=True):
                self._lost(self._ws.closed or ConnectionClosed(code, reason))
                if peer_closed or (self._ws.closed is not None and self._ws.closed.code == 1006):
                    await self._ws.aclose(timeout=0)
                else:
                    await self._ws.aclose(code, reason, timeout=self.close_timeout)
                self._closed = True
                if self._closed_event is not None:
                    self._closed_event.set()

    async def _wait_for_room(self) -> None:
        if self._room is None:
            self._room = trio.Event()
        await self._room.wait()

    async def _run_on_start(self, on_start: Callable[[Session], Awaitable[Any]]) -> None:
        # A ConnectionClosed: the connection ended under it, not a failure of the application.
        with contextlib.suppress(ConnectionClosed):
            await on_start(self)

    def _keepalive_due(self) -> float:
        interval = self.ping_interval
        if self._ping_sent is not None:
            return self._ping_sent + self.pong_timeout
        if not interval:
            return math.inf
        return self._ws.last_receive + interval

    def _update_timer(self) -> None:
        # The earliest of the core's deadline and the keepalive check.  The timer service only
        # ever moves a wake-up earlier: the keepalive time moves later with every byte received,
        # and re-arming per message would cost more than waking once per ping interval to find
        # that traffic arrived meanwhile.
        wake = self._keepalive_due()
        deadline = self._conn.next_deadline()
        if deadline is not None and deadline < wake:
            wake = deadline
        if wake < self._timer.at:
            self._timers.schedule(self._timer, wake)

    def _on_timer(self, now: float) -> None:
        """Called by the timer service (synchronously, must not block)."""
        conn = self._conn
        ws = self._ws
        work: str | None = None
        deadline = conn.next_deadline()
        if deadline is not None and deadline <= now:
            conn.handle_timeout(now)
            self._dispatch()
            work = "flush"  # a queued call may go out now
        if self._ping_sent is not None:
            if ws.last_receive >= self._ping_sent:
                self._ping_sent = None  # the pong (or any traffic) arrived
            elif now >= self._ping_sent + self.pong_timeout:
                work = "dead"
                self._ping_sent = None
                self.ping_interval = None  # no more keepalive: the connection is being aborted
        elif self.ping_interval and now - ws.last_receive >= self.ping_interval:
            self._ping_sent = now
            work = "ping"
        if work is not None and self._nursery is not None:
            self._nursery.start_soon(self._timer_work, work)
        self._update_timer()

    async def _timer_work(self, work: str) -> None:
        try:
            if work == "dead":
                logger.info(
                    "os3p connection %r: no pong in %.0f s, dead peer", self.identity, self.pong_timeout
                )
                # Closing the stream wakes the reader with a 1006 close; no closing handshake
                # with a peer that does not answer.
                await self._ws.abort()
                return
            if work == "ping":
                await self._ws.ping()
            await self._flush()
        except ConnectionClosed:
            pass  # the reader sees the close too and ends the session

    def _outbox(self) -> list[str]:
        texts = self._conn.messages_to_send()
        if texts and self.on_frames is not None:
            self.on_frames(self, "out", texts)
        return texts

    async def _flush(self) -> None:
        await self._ws.flush(self._outbox)
        self._update_timer()
        if self._close_request is not None:
            # e.g. boot Rejected: the answer is written, now close (§M3.1).
            self.request_close(*self._close_request)

    # --- events ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        conn = self._conn
        while (event := conn.next_event()) is not None:
            kind = type(event)
            if kind is CallReceived:
                self._start_handler(cast(CallReceived, event))
            elif kind is ResultReceived:
                self._resolve(cast(ResultReceived, event).unique_id, event)
            elif kind is ErrorReceived:
                err = cast(ErrorReceived, event)
                self._resolve(
                    err.unique_id,
                    CallErrorReceived(err.action.value, err.code_text, err.description, err.details),
                )
            elif kind is CallTimedOut:
                tmo = cast(CallTimedOut, event)
                self._resolve(tmo.unique_id, CallTimeout(f"{tmo.action.value}: no answer in time"))
            elif kind is CallFailed:
                failed = cast(CallFailed, event)
                if failed.reason is _FailureReason.INVALID_RESPONSE:
                    exc: Exception = InvalidResult(f"{failed.action.value}: {failed.error.description}")
                elif failed.reason is _FailureReason.NOT_ALLOWED:
                    # A queued call whose turn came after the boot state stopped allowing it (a
                    # BootNotification ahead of it answered Pending/Rejected, PROTOCOL-DECISIONS §5):
                    # the caller's fault, not the connection's -- raise the core's LocalProtocolError.
                    exc = failed.error
                else:
                    closed = self._final_close or self._ws.closed
                    exc = closed if closed is not None else ConnectionClosed(1006, "connection lost")
                self._resolve(failed.unique_id, exc)
            elif kind is BootStateChanged:
                change = cast(BootStateChanged, event)
                if self.on_boot_state is not None:
                    self.on_boot_state(self, change)
                # §M3.1 / PROTOCOL-DECISIONS §5: "Rejected: send the CALLRESULT, then close the
                # connection."  The reader writes the outbox first, then sees the request.
                if change.close_connection and self._close_request is None:
                    self._close_request = (CLOSE_NORMAL, "boot rejected")

    def _resolve(self, unique_id: str, outcome: Any) -> None:
        waiter = self._waiters.pop(unique_id, None)
        if waiter is not None:  # None: the caller was cancelled and left
            waiter.outcome = outcome
            waiter.event.set()

    async def _call(self, call: Call) -> ResultReceived:
        if self._closed or self._ws.closed is not None:
            closed = self._ws.closed
            raise closed if closed is not None else ConnectionClosed(CLOSE_NORMAL, "session closed")
        now = trio.current_time()
        unique_id = self._conn.send(call, now)
        waiter = _Waiter()
        self._waiters[unique_id] = waiter
        try:
            self._dispatch()
            # PROTOCOL-DECISIONS §4: "An operator's or application's call deadline covers the whole
            # call: waiting for the connection's write, the write itself and the answer."  The
            # core's deadline (armed now, served by the timer) bounds the answer; this scope bounds
            # the wait for the write lock and the write.  A write cut short leaves its rest for the
            # next writer (WebSocket._send_all), so nothing another task queued is lost.
            self._update_timer()
            timeout = call.timeout if call.timeout is not None else self._conn.config.call_timeout
            with trio.move_on_at(now + timeout):
                await self._flush()
            await waiter.event.wait()
        finally:
            self._waiters.pop(unique_id, None)
        outcome = waiter.outcome
        if isinstance(outcome, Exception):
            raise outcome
        return cast(ResultReceived, outcome)

    def _start_handler(self, event: CallReceived) -> None:
        entry = self._router.get(event.action)
        if entry is None:
            # PROTOCOL-DECISIONS §3: "known action, no handler registered → NotImplemented" (§M4.2).
            self._answer(
                event, event.error(ErrorCode.NOT_IMPLEMENTED, f"{event.action.value} is not implemented")
            )
            return
        handler, is_async, raw = entry
        if is_async:
            assert self._nursery is not None
            self._busy += 1
            self._nursery.start_soon(self._run_async_handler, handler, event, raw)
            return
        try:
            request = event.payload if raw else event.request()
            response = handler(self, request)
        except Exception as exc:
            self._answer_failure(event, exc)
        else:
            self._answer(event, event.result(response))

    async def _run_async_handler(self, handler: Handler, event: CallReceived, raw: bool) -> None:
        try:
            try:
                request = event.payload if raw else event.request()
                response = await cast(Callable[[Session, Any], Awaitable[Any]], handler)(self, request)
            except Exception as exc:
                self._answer_failure(event, exc)
            else:
                self._answer(event, event.result(response))
        finally:
            self._busy -= 1
            if self._room is not None:
                self._room.set()
                self._room = None
        with contextlib.suppress(ConnectionClosed):
            await self._flush()

    def _answer_failure(self, event: CallReceived, exc: Exception) -> None:
        # Called inside the handler's ``except`` block, so logger.exception still has the traceback.
        if isinstance(exc, ProtocolError):
            # The handler's deliberate CALLERROR (its code, description, details).
            self._answer(event, event.error(exc.code, exc.description[:255], exc.details))
            return
        # PROTOCOL-DECISIONS §3: InternalError, generic description (no internals on the wire).
        logger.exception("os3p handler for %s from %r failed", event.action.value, self.identity)
        self._answer(event, event.error(ErrorCode.INTERNAL_ERROR, _INTERNAL_ERROR_TEXT))

    def _answer(self, event: CallReceived, reply: Any) -> None:
        try:
            self._conn.send(reply, trio.current_time())
        except LocalProtocolError as exc:
            # The handler's answer broke the response schema (or similar): the caller still gets
            # exactly one answer, a generic InternalError; the details go to the log only.
            logger.error(
                "os3p handler for %s from %r gave an invalid answer: %s",
                event.action.value,
                self.identity,
                exc,
            )
            try:
                self._conn.send(
                    event.error(ErrorCode.INTERNAL_ERROR, _INTERNAL_ERROR_TEXT), trio.current_time()
                )
            except LocalProtocolError:
                return  # the connection is gone (the call was abandoned): nothing to answer
        self._dispatch()

    def _lost(self, closed: ConnectionClosed) -> None:
        self._final_close = closed
        try:
            self._conn.connection_lost()
            self._dispatch()
        except Exception:
            logger.exception("os3p connection %r: error while failing outstanding calls", self.identity)
        for unique_id in list(self._waiters):
            self._resolve(unique_id, closed)
