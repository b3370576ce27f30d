"""A thin WebSocket transport: wsproto over a trio stream, no tasks of its own.

Why not trio-websocket: it starts a reader task and a memory channel per connection, costs about
11 KiB and dozens of Python objects more per idle connection, hands every message through a
channel (a task switch each), and its ``serve_websocket`` lets one handler's exception crash the
server (0.12.2).  Measured in ``benchmarks/transport_bench.py`` (``benchmarks/RESULTS.md``,
"Transports").

The shape is chosen for the server hot path:

- :meth:`WebSocket.receive_messages` reads one large chunk and returns *every* complete text
  message in it, so a burst of N calls costs one read, one wake-up and one batch of work;
- :meth:`WebSocket.send_messages` encodes a whole batch and writes it with one ``send_all``
  under the one write lock (answers to pings ride along), so replies are batched too;
- the transport owns no task: the caller's reader loop drives it, and the only per-connection
  objects are the stream and the wsproto ``Connection``.

The opening handshake (both roles) uses wsproto's ``H11Handshake``; once upgraded we keep only
the small frame-level ``wsproto.connection.Connection`` and drop h11's buffers.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import attrs
import trio
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from ._errors import ConnectionClosed, HandshakeFailed

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_RECEIVE_CHUNK",
    "PendingUpgrade",
    "TransportLimits",
    "WebSocket",
    "client_handshake",
    "server_handshake",
]

#: PROTOCOL-DECISIONS §1: "Default limit 256 KiB of text per message ... Over it: close 1009".
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024

#: One read takes up to this many bytes: large enough to swallow a burst of calls at once.
DEFAULT_RECEIVE_CHUNK = 65536

#: An upgrade request (headers included) larger than this is refused (431); h11's own default.
MAX_REQUEST_HEAD = 16 * 1024

#: ``os.read`` works on socket descriptors on POSIX systems (not on Windows).
_POSIX = os.name == "posix"

#: Headers of unmasked FIN text frames with a 7-bit length (RFC 6455 §5.2), built once.
_TEXT_HEADERS = [bytes([0x81, n]) for n in range(126)]


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes | bytearray:
    """RFC 6455 §5.3: XOR with the 4-byte masking key, done as one big-integer XOR (C speed)."""
    n = len(payload)
    if not n:
        return payload
    key = int.from_bytes((mask * ((n + 3) >> 2))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


# RFC 6455 §7.4.1 close codes used here.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_ABNORMAL = 1006
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


#: RFC 6455 §5.2 opcodes: continuation, text, binary, close, ping, pong.  Everything else is reserved.
_OPCODES = frozenset((0, 1, 2, 8, 9, 10))


@attrs.frozen(kw_only=True)
class TransportLimits:
    """Per-connection bounds that keep one hostile peer from taking more than its share (issue 16).

    Frozen; one instance is shared by every connection.  Every limit closes only the connection
    that breaks it, with the close code named here; none of them affects a conforming station
    (one call in flight, PROTOCOL-DECISIONS §4; a ping now and then; unfragmented messages).
    """

    #: Frames parsed per :meth:`WebSocket.receive_messages` call.  A read of 64 KiB can hold
    #: thousands of small frames; parsing them all before yielding let one flooding station hold
    #: the event loop for tens of milliseconds per read (issue 16: every other station's Heartbeat
    #: went from 1.4 ms to 0.5 s).  The rest stays buffered and is parsed on the next call, after a
    #: checkpoint; the socket is not read meanwhile (backpressure).  32 frames cost well under a
    #: millisecond; a conforming station never has more than a couple in one read.
    max_frames_per_read: int = attrs.field(default=32, validator=_positive)
    #: Control frames (ping, pong) a peer may send in a burst ...
    control_frame_burst: int = attrs.field(default=32, validator=_positive)
    #: ... and per second on average after it (a token bucket).  Excess closes the connection with
    #: 1008 (RFC 6455 §7.4.1 policy violation): each ping costs us a parse and a pong, and a
    #: station pinging as fast as it could (~600 KB/s) took 98 % of the server's CPU (issue 16).
    #: A keepalive pings once per ``websocketPingInterval`` (§J6), far below 4 per second.
    control_frame_rate: float = attrs.field(default=4.0, validator=_positive)
    #: Frames of one fragmented message.  Empty continuation frames cost nothing in size but grow
    #: the message's bookkeeping forever (issue 16: +19 MB over 30 s); more → 1008.  OS³P stations
    #: send unfragmented messages (§J4), so 1,024 is generous.
    max_fragments: int = attrs.field(default=1024, validator=_positive)
    #: Seconds from the first byte of a message (or of a frame) to its last.  Bytes that keep
    #: arriving keep the keepalive quiet, so without this bound a never-finished message lives as
    #: long as the connection; over it → 1008.  60 s lets a 256 KiB message cross a 4.4 KB/s link.
    message_timeout: float = attrs.field(default=60.0, validator=_positive)
    #: While a frame is incomplete and a read brought fewer than ``slow_read_bytes``, wait this long
    #: before the next read, so the kernel gathers the bytes: a peer trickling one byte per
    #: millisecond otherwise costs a wake-up per byte (issue 16: 40 such peers took 47 % of a core
    #: for 17 KB/s).  Throughput is not capped (one read takes everything that has arrived); a
    #: complete frame is never delayed.
    slow_read_delay: float = attrs.field(default=0.01, validator=_positive)
    #: See ``slow_read_delay``: reads smaller than this, while a frame is incomplete, are "slow".
    slow_read_bytes: int = attrs.field(default=512, validator=_positive)
    #: Seconds a write may wait without the socket taking a byte.  A peer that does not read would
    #: otherwise hold the write lock, and every writer behind it (answers, pings, operator calls)
    #: for as long as TCP keeps the connection (issue 16: an operator call with ``timeout=3`` hung
    #: 30-87 s).  Over it the connection is dropped (1006).  30 s matches the pong timeout.
    write_timeout: float = attrs.field(default=30.0, validator=_positive)


DEFAULT_LIMITS = TransportLimits()


class WebSocket:
    """An open WebSocket connection over a trio stream (either role).

    Not a task and not thread-safe: one task reads (:meth:`receive_messages`), any task may
    write (:meth:`send_messages`, :meth:`ping`); writes are serialised by one lock so frames
    never interleave.  :meth:`aclose` runs the closing handshake, bounded in time.
    """

    __slots__ = (
        "_awaiting_pong",
        "_backlog",
        "_chunk",
        "_close_code",
        "_close_reason",
        "_deferred",
        "_discard",
        "_failing",
        "_frag",
        "_fragments",
        "_limits",
        "_max_size",
        "_need",
        "_partial",
        "_partial_size",
        "_pending",
        "_rbuf",
        "_recv",
        "_rpos",
        "_sock",
        "_started",
        "_stream",
        "_tokens",
        "_tokens_at",
        "_write_lot",
        "_writing",
        "_ws",
        "last_receive",
        "subprotocol",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: WsConnection,
        subprotocol: str | None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        receive_chunk: int = DEFAULT_RECEIVE_CHUNK,
        limits: TransportLimits = DEFAULT_LIMITS,
    ) -> None:
        self._stream = stream
        self._ws = ws
        # Plain TCP: read and write the trio socket directly.  SocketStream.receive_some/send_all
        # add a conflict detector and an error-translating context manager (a generator and its
        # manager, alive for as long as an idle connection waits in a read) per call; we are the
        # only reader and write under our own lock, so neither is needed.  TLS goes through the
        # stream.
        self._sock: trio.socket.SocketType | None = None
        self._recv: Callable[[int], Awaitable[bytes | bytearray]] = stream.receive_some
        if type(stream) is trio.SocketStream:
            self._sock = stream.socket
            self._recv = self._recv_posix if _POSIX else stream.socket.recv
        # The write lock: a flag, and a parking lot only once two writers ever meet (a
        # StrictFIFOLock would be three objects per idle connection).  Fairness does not matter
        # for order: whoever holds the lock sends everything queued at that moment.
        self._writing = False
        self._write_lot: trio.lowlevel.ParkingLot | None = None
        self._max_size = max_message_size
        self._chunk = receive_chunk
        self._limits = limits
        self._partial: list[str] | None = None
        self._partial_size = 0
        # Server fast path (receive_messages): bytes of an incomplete frame (a bytearray while one
        # is being gathered: appending is linear, re-joining on every read was quadratic), how many
        # bytes that frame needs, whether complete frames are still buffered (the per-read frame
        # bound stopped the parse); wsproto is inside a fragmented message (every frame goes to it)
        # and the frames of it so far; bytes of an oversized frame still to drop; a close found
        # after messages that were returned first.
        self._rbuf: bytes | bytearray = b""
        self._rpos = 0
        self._need = 0
        self._backlog = False
        self._frag = False
        self._fragments = 0
        self._discard = 0
        self._deferred: tuple[int, str] | None = None
        # ``trio.current_time()`` when the message (or frame) now incomplete began; None if none is.
        self._started: float | None = None
        # Control-frame token bucket (TransportLimits.control_frame_burst/_rate).
        self._tokens = float(limits.control_frame_burst)
        self._tokens_at = 0.0
        # Control-frame answers (pongs, the close reply) waiting for the next write; also the
        # unwritten rest of a write that was cancelled (written first by the next writer, so the
        # byte stream never breaks).
        self._pending = b""
        self._close_code: int | None = None
        self._close_reason = ""
        # We are failing the connection (the peer broke the protocol or a limit): reading is over,
        # but answers to the messages received before may still be written; the close frame
        # (``_close_code``) goes out with :meth:`aclose`.
        self._failing = False
        self._awaiting_pong = False
        #: The negotiated subprotocol (``None`` only while closing a no-match handshake).
        self.subprotocol = subprotocol
        #: ``trio.current_time()`` of the last bytes received: any traffic proves the peer alive.
        self.last_receive = trio.current_time()

    async def _recv_posix(self, max_bytes: int) -> bytes:
        # trio's socket.recv first tries a non-blocking recv, which on a request/response
        # connection almost always fails (the peer has not answered yet): a wasted syscall and a
        # BlockingIOError per read.  Wait for readability first, then read once.  Closing the
        # socket from another task (abort) wakes wait_readable with ClosedResourceError.
        assert self._sock is not None
        fd = self._sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("socket was already closed")
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, max_bytes)
            except BlockingIOError:
                continue  # spurious wake-up

    @property
    def stream(self) -> trio.abc.Stream:
        """The underlying trio stream (a ``SocketStream`` or ``SSLStream``)."""
        return self._stream

    @property
    def limits(self) -> TransportLimits:
        """The per-connection bounds in force."""
        return self._limits

    @property
    def closed(self) -> ConnectionClosed | None:
        """``None`` while open; otherwise the :class:`ConnectionClosed` describing the close."""
        if self._close_code is None:
            return None
        return ConnectionClosed(self._close_code, self._close_reason)

    @property
    def failing(self) -> bool:
        """True once we decided to fail the connection (the peer broke the protocol or a limit):
        nothing more is read, answers to what was received before may still be written, and
        :meth:`aclose` sends the close frame with :attr:`closed`'s code."""
        return self._failing and self._ws.state is ConnectionState.OPEN

    def _has_closed(self) -> bool:
        return self._close_code is not None

    def _record_close(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason

    def _fail(self, code: int, reason: str) -> ConnectionClosed:
        self._record_close(code, reason)
        self._failing = True
        return ConnectionClosed(code, reason)

    # --- reading ---------------------------------------------------------------------------

    async def receive_messages(self) -> list[str]:
        """Wait for data and return every complete text message it finished (at least one).

        Raises :class:`ConnectionClosed` when the peer closes (its code), the TCP connection
        drops (1006), or the peer breaks the protocol or a limit: 1002 for an invalid frame
        header (RFC 6455 §5.1/§5.2, decided from the header alone), 1009 for a message over the
        size limit, 1003 for a binary message (OS³P is UTF-8 JSON text, §J4), 1007 for invalid
        UTF-8, 1008 for a broken :class:`TransportLimits` bound.  In those cases the close frame
        is sent by :meth:`aclose` (see :attr:`failing`), so answers to earlier messages can still
        be written first.  Messages that arrived before a bad frame are returned first; the close
        follows on the next call (nothing lost).  At most ``limits.max_frames_per_read`` frames
        are parsed per call: the rest waits in the buffer for the next call (which yields first).
        """
        if self._deferred is not None:
            raise self._fail(*self._deferred)
        if self._close_code is not None:
            raise ConnectionClosed(self._close_code, self._close_reason)
        if self._ws.client:
            return await self._receive_messages_wsproto()
        return await self._receive_messages_server()

    async def _receive_messages_server(self) -> list[str]:
        # The server hot path.  A complete, unfragmented, masked text frame (what every OS³P
        # station sends, §J4) is unmasked and decoded right here: wsproto's generic path (a
        # generator, a Frame object, an incremental UTF-8 decoder and an event per message) cost
        # about a quarter of the server's CPU per Heartbeat (benchmarks/RESULTS.md, "End-to-end").
        # Every other frame (control frames, fragments) goes to wsproto *whole*, so wsproto never
        # holds a partial frame and the two parsers stay in step.  Every header is validated here
        # first, before any size decision (RFC 6455 §5.1: "The server MUST close the connection
        # upon receiving a frame that is not masked"; §5.2: RSV bits, opcodes, control frames):
        # an invalid header fails the connection at once with 1002, whatever length it announces.
        ws = self._ws
        limits = self._limits
        max_size = self._max_size
        max_frames = limits.max_frames_per_read
        while True:
            if self._backlog:
                # Complete frames left over from the last call (the per-read bound): let the other
                # connections run first, then parse them without reading.
                self._backlog = False
                await trio.lowlevel.checkpoint()
                buf: bytes | bytearray = self._rbuf
                pos = self._rpos
                self._rbuf = b""
                self._rpos = 0
                now = trio.current_time()
            else:
                data = await self._read_chunk()
                now = self.last_receive
                if self._discard:
                    # Read and drop the rest of an oversized frame before closing with 1009: closing
                    # a socket with unread data resets the connection, and a peer still writing
                    # would see 1006 instead of our close frame.  Bounded (2 * max_message_size).
                    if len(data) < self._discard:
                        self._discard -= len(data)
                        continue
                    self._discard = 0
                    await self._local_close(CLOSE_TOO_BIG, "message too big")
                    raise ConnectionClosed(CLOSE_TOO_BIG, "message too big")
                rbuf = self._rbuf
                if rbuf:
                    if type(rbuf) is bytes:
                        rbuf = self._rbuf = bytearray(rbuf)
                    rbuf += data
                    if len(rbuf) < self._need:
                        # Still incomplete: nothing to parse (linear in the bytes received).
                        if await self._slow_frame(now, len(data)):
                            await trio.sleep(limits.slow_read_delay)
                        continue
                    buf = bytes(rbuf)
                    self._rbuf = b""
                else:
                    buf = data
                pos = 0
            size = len(buf)
            frames = 0
            out: list[str] = []
            closing: tuple[int, str] | None = None
            need = 0
            while size - pos >= 2:
                if frames >= max_frames:
                    self._backlog = True
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                if b0 == 0x81 and b1 & 0x80 and not self._frag:
                    # FIN, no RSV bits, text, masked (RFC 6455 §5.2): the fast path.
                    n = b1 & 0x7F
                    hdr = pos + 2
                else:
                    closing = self._check_header(b0, b1)
                    if closing is not None:
                        break
                    n = b1 & 0x7F
                    hdr = pos + 2
                if n >= 126:
                    if n == 126:
                        if size - pos < 4:
                            need = 4
                            break
                        n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                        hdr = pos + 4
                        if n < 126:
                            closing = (CLOSE_PROTOCOL_ERROR, "non-minimal 16-bit length")  # §5.2
                            break
                    else:
                        if size - pos < 10:
                            need = 10
                            break
                        n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                        hdr = pos + 10
                        if n < 65536 or n >> 63:
                            closing = (CLOSE_PROTOCOL_ERROR, "invalid 64-bit length")  # §5.2
                            break
                if n > max_size:
                    # PROTOCOL-DECISIONS §1: over the limit → 1009, decided from the (valid) header.
                    left = hdr + 4 + n - size
                    if 0 < left <= 2 * max_size:
                        self._discard = left
                        pos = size
                    else:
                        closing = (CLOSE_TOO_BIG, "message too big")
                    break
                end = hdr + 4 + n
                if end > size:
                    need = end - pos
                    break  # wait for the whole frame
                frames += 1
                if b0 == 0x81 and self._partial is None and not self._frag:
                    try:
                        out.append(_unmask(buf[hdr + 4 : end], buf[hdr : hdr + 4]).decode("utf-8"))
                    except UnicodeDecodeError:
                        closing = (1007, "invalid UTF-8 in a text message")  # RFC 6455 §8.1
                        break
                    pos = end
                    continue
                if b0 & 0x08:
                    if (b0 & 0x0F) != 8 and not self._control_frame_allowed(now):
                        closing = (CLOSE_POLICY_VIOLATION, "too many control frames")
                        break
                elif self._frag or not b0 & 0x80:
                    # A fragment (RFC 6455 §5.4): bound the frames of one message.
                    self._fragments += 1
                    if self._fragments > limits.max_fragments:
                        closing = (CLOSE_POLICY_VIOLATION, "too many fragments in one message")
                        break
                ws.receive_data(bytes(buf[pos:end]))
                pos = end
                closing = self._wsproto_events(out)
                if closing is not None or self._has_closed():
                    break
            if self._backlog and closing is None:
                self._rbuf = buf  # no copy: the next call goes on at _rpos
                self._rpos = pos
            elif closing is None and not self._discard and pos < size:
                self._rbuf = buf[pos:]
                self._need = need
            else:
                self._rbuf = b""
                self._need = 0
            if self._backlog:
                pass  # complete frames wait for the next call: not a slow message
            elif closing is None and (self._rbuf or self._partial is not None or self._frag):
                # A message (or a frame) is incomplete: it must complete within message_timeout.
                if self._started is None:
                    self._started = now
                elif now - self._started > limits.message_timeout:
                    closing = (CLOSE_POLICY_VIOLATION, "message not completed in time")
            else:
                self._started = None
            if await self._end_of_batch(out, closing):
                return out

    async def _slow_frame(self, now: float, got: int) -> bool:
        """A frame is still incomplete after a read of ``got`` bytes: enforce the message
        deadline (raises), and say whether the read was slow enough to wait before the next."""
        if self._started is None:
            self._started = now
        elif now - self._started > self._limits.message_timeout:
            await self._end_of_batch([], (CLOSE_POLICY_VIOLATION, "message not completed in time"))
        return got < self._limits.slow_read_bytes

    def _check_header(self, b0: int, b1: int) -> tuple[int, str] | None:
        """RFC 6455 §5.1/§5.2 checks of a client frame's first two bytes (any frame but the fast
        path's): the close to make, or ``None`` for a valid header."""
        if not b1 & 0x80:
            return (CLOSE_PROTOCOL_ERROR, "unmasked client frame")  # §5.1 MUST
        if b0 & 0x70:
            return (CLOSE_PROTOCOL_ERROR, "reserved bit set")  # no extension negotiated
        opcode = b0 & 0x0F
        if opcode not in _OPCODES:
            return (CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if opcode >= 8:
            if not b0 & 0x80:
                return (CLOSE_PROTOCOL_ERROR, "fragmented control frame")  # §5.5
            if b1 & 0x7F > 125:
                return (CLOSE_PROTOCOL_ERROR, "control frame longer than 125 bytes")  # §5.5
        elif opcode == 0:
            if not self._frag:
                return (CLOSE_PROTOCOL_ERROR, "continuation frame outside a message")  # §5.4
        elif self._frag:
            return (CLOSE_PROTOCOL_ERROR, "new message inside a fragmented message")  # §5.4
        return None

    def _control_frame_allowed(self, now: float) -> bool:
        # Token bucket: control_frame_burst tokens, refilled at control_frame_rate per second.
        limits = self._limits
        tokens = self._tokens + (now - self._tokens_at) * limits.control_frame_rate
        self._tokens_at = now
        if tokens > limits.control_frame_burst:
            tokens = float(limits.control_frame_burst)
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    async def _end_of_batch(self, out: list[str], closing: tuple[int, str] | None) -> bool:
        """After one read: True when ``out`` is to be returned now.  Messages that arrived before
        a bad frame or a close frame still count (nothing lost); the caller learns of the close
        on its next call.  Raises :class:`ConnectionClosed` when there is nothing to return."""
        if closing is not None:
            if out:
                self._deferred = closing
                return True
            raise self._fail(*closing)
        if self._pending:
            await self._write(b"")
        if self._has_closed() and not out:
            raise ConnectionClosed(self._close_code or CLOSE_ABNORMAL, self._close_reason)
        return bool(out)

    def _wsproto_events(self, out: list[str]) -> tuple[int, str] | None:
        """Handle wsproto's events for the frames given to it: every frame on the client, the
        frames the server's fast path does not decode itself.  Returns the close to make, if any."""
        ws = self._ws
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage:
                assert isinstance(event, TextMessage)
                self._frag = not event.message_finished
                if not self._frag:
                    self._fragments = 0
                text = event.data
                if event.message_finished and self._partial is None:
                    # A whole message in one event.  Characters <= UTF-8 bytes <= 4 * characters,
                    # so encode only in the ambiguous band.
                    n = len(text)
                    if n > self._max_size or (
                        n * 4 > self._max_size and len(text.encode("utf-8")) > self._max_size
                    ):
                        return (CLOSE_TOO_BIG, "message too big")
                    out.append(text)
                    continue
                closing = self._add_fragment(text, event.message_finished, out)
                if closing is not None:
                    return closing
            elif kind is Ping:
                assert isinstance(event, Ping)
                self._pending += ws.send(event.response())
            elif kind is Pong:
                pass  # any received bytes already count as liveness (last_receive)
            elif kind is CloseConnection:
                assert isinstance(event, CloseConnection)
                if ws.state is ConnectionState.OPEN:
                    # Not a close frame but a frame wsproto could not parse (1002 protocol
                    # error, 1007 invalid UTF-8, ...): we close, with wsproto's code.
                    return (int(event.code), (event.reason or "")[:120])
                # RFC 6455 §5.5.1: answer a close with a close (wsproto echoes the code).
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._pending += ws.send(event.response())
                self._record_close(int(event.code), event.reason or "")
                return None
            elif kind is BytesMessage:
                return (CLOSE_UNSUPPORTED_DATA, "binary messages are not OS3P")
        return None

    async def _read_chunk(self) -> bytes | bytearray:
        """One read from the socket (up to ``receive_chunk`` bytes); any data counts as a sign of
        life for keepalive.  A broken or closed socket ends the connection as 1006."""
        try:
            data = await self._recv(self._chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._record_close(CLOSE_ABNORMAL, f"transport error: {exc!r}")
            raise ConnectionClosed(CLOSE_ABNORMAL, "transport error") from exc
        if not data:
            self._record_close(CLOSE_ABNORMAL, "TCP connection closed without a close frame")
            raise ConnectionClosed(CLOSE_ABNORMAL, "")
        self.last_receive = trio.current_time()
        self._awaiting_pong = False
        return data

    async def _receive_messages_wsproto(self) -> list[str]:
        # The generic path (client role): every frame through wsproto.  Events first, then read:
        # wsproto may already hold frames -- the server's first message can arrive in the same TCP
        # segment as its 101 answer, and the handshake hands those bytes to wsproto (trailing
        # data).  Reading first would leave such a message waiting until the peer sent more.
        ws = self._ws
        while True:
            out: list[str] = []
            closing = self._wsproto_events(out)
            if await self._end_of_batch(out, closing):
                return out
            ws.receive_data(bytes(await self._read_chunk()))

    def _add_fragment(self, text: str, finished: bool, out: list[str]) -> tuple[int, str] | None:
        size = self._partial_size + len(text.encode("utf-8"))
        if size > self._max_size:
            self._partial = None
            self._partial_size = 0
            return (CLOSE_TOO_BIG, "message too big")
        if self._partial is None:
            self._partial = []
        if text:
            self._partial.append(text)
        self._partial_size = size
        if finished:
            out.append("".join(self._partial))
            self._partial = None
            self._partial_size = 0
        return None

    # --- writing ---------------------------------------------------------------------------

    async def _lock(self) -> None:
        while self._writing:
            if self._write_lot is None:
                self._write_lot = trio.lowlevel.ParkingLot()
            try:
                await self._write_lot.park()
            except BaseException:
                # Cancelled, perhaps just after being woken: pass the wake-up on.
                if self._write_lot and not self._has_writer():
                    self._write_lot.unpark()
                raise
        self._writing = True

    def _has_writer(self) -> bool:
        return self._writing

    def _unlock(self) -> None:
        self._writing = False
        if self._write_lot is not None and self._write_lot:
            self._write_lot.unpark()

    async def _write(self, data: bytes) -> None:
        await self._lock()
        try:
            if self._pending:
                data = self._pending + data
                self._pending = b""
            if data:
                await self._send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._record_close(CLOSE_ABNORMAL, f"transport error: {exc!r}")
            raise ConnectionClosed(CLOSE_ABNORMAL, "transport error") from exc
        finally:
            self._unlock()

    async def _send_all(self, data: bytes) -> None:
        # Two guarantees (PROTOCOL-DECISIONS §4, issue 16): a write that stalls for
        # ``limits.write_timeout`` (the peer does not read) drops the connection instead of
        # holding the write lock, and a writer cancelled mid-write (its caller's deadline) leaves
        # the unwritten rest in ``_pending``, written first by the next writer, so the byte
        # stream never breaks and no other task's message is lost with it.
        sock = self._sock
        timeout = self._limits.write_timeout
        if sock is None or not _POSIX:
            # TLS (or Windows): the stream cannot give back a partial write; a cancelled
            # SSLStream.send_all breaks the stream, and trio then refuses further use of it.
            with trio.move_on_after(timeout) as scope:
                if sock is None:
                    await self._stream.send_all(data)
                else:
                    view = memoryview(data)
                    total = 0
                    while total < len(view):
                        total += await sock.send(view[total:])
            if scope.cancelled_caught:
                self._write_timed_out()
            return
        # Write at once and wait only when the socket buffer is full.  trio's socket.send adds
        # a schedule point to every send (a task switch per reply); the reader loop yields in
        # every read anyway, so no task can starve another through this path.
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("socket was already closed")
        view = memoryview(data)
        total = 0
        while total < len(view):
            try:
                total += os.write(fd, view[total:])
            except BlockingIOError:
                try:
                    with trio.move_on_after(timeout) as scope:
                        await trio.lowlevel.wait_writable(fd)
                except BaseException:
                    self._pending = bytes(view[total:]) + self._pending
                    raise
                if scope.cancelled_caught:
                    self._write_timed_out()

    def _write_timed_out(self) -> NoReturn:
        self._record_close(CLOSE_ABNORMAL, "write timeout: the peer does not read")
        self._pending = b""
        if self._sock is not None:
            self._sock.close()  # wakes the reader (ClosedResourceError → 1006)
        raise ConnectionClosed(CLOSE_ABNORMAL, "write timeout: the peer does not read")

    def _encode(self, texts: Sequence[str]) -> bytes:
        if self._ws.client:
            send = self._ws.send
            return b"".join([send(TextMessage(data=t)) for t in texts])
        # Server → client: one unfragmented, unmasked text frame per message (RFC 6455 §5.2, §5.6).
        # That frame is a fixed header and the UTF-8 bytes, so we write it ourselves: about five
        # times cheaper than building an event and going through wsproto's generic send path, and
        # wsproto's state is unaffected (only close frames and fragmented sends change it, and
        # neither goes this way).  Client frames need masking and stay with wsproto.
        parts: list[bytes] = []
        for text in texts:
            payload = text.encode("utf-8")
            n = len(payload)
            if n < 126:
                parts.append(_TEXT_HEADERS[n])
            elif n < 65536:
                parts.append(b"\x81\x7e" + n.to_bytes(2, "big"))
            else:
                parts.append(b"\x81\x7f" + n.to_bytes(8, "big"))
            parts.append(payload)
        return b"".join(parts)

    async def send_messages(self, texts: Sequence[str]) -> None:
        """Send text messages in order with one write."""
        if not texts:
            return
        if not self._can_write():
            raise ConnectionClosed(self._close_code or CLOSE_ABNORMAL, self._close_reason)
        await self._write(self._encode(texts))

    def _can_write(self) -> bool:
        # Open, or being failed by us with the close frame not sent yet (answers go first).
        return (self._close_code is None or self._failing) and self._ws.state is ConnectionState.OPEN

    async def flush(self, produce: Callable[[], list[str]]) -> None:
        """Send what ``produce()`` returns, calling it only while holding the write lock.

        Taking the messages under the lock keeps their order when several tasks flush one
        outbox (``Connection.messages_to_send``): whoever holds the lock sends everything that
        is queued at that moment; later flushers find nothing and return at once.
        """
        await self._lock()
        try:
            texts = produce()
            if not texts and not self._pending:
                return
            if not self._can_write():
                raise ConnectionClosed(self._close_code or CLOSE_ABNORMAL, self._close_reason)
            data = self._pending + self._encode(texts)
            self._pending = b""
            await self._send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._record_close(CLOSE_ABNORMAL, f"transport error: {exc!r}")
            raise ConnectionClosed(CLOSE_ABNORMAL, "transport error") from exc
        finally:
            self._unlock()

    async def ping(self, payload: bytes = b"") -> None:
        """Send a WebSocket ping; :attr:`awaiting_pong` stays true until any bytes arrive."""
        if self._ws.state is not ConnectionState.OPEN:
            raise ConnectionClosed(self._close_code or CLOSE_ABNORMAL, self._close_reason)
        self._awaiting_pong = True
        await self._write(self._ws.send(Ping(payload=payload)))

    @property
    def awaiting_pong(self) -> bool:
        """True after :meth:`ping` until the peer sends anything (a pong or other traffic)."""
        return self._awaiting_pong

    # --- closing ---------------------------------------------------------------------------

    async def _local_close(self, code: int, reason: str) -> None:
        self._record_close(code, reason)
        if self._failing:
            # We are failing the connection: the close frame carries that code, whatever the
            # caller of aclose() passed.
            code, reason = self._close_code or code, self._close_reason
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._pending += self._ws.send(CloseConnection(code=code, reason=reason))
        with contextlib.suppress(ConnectionClosed):
            await self._write(b"")

    async def aclose(self, code: int = CLOSE_NORMAL, reason: str = "", *, timeout: float = 5.0) -> None:
        """Close: send a close frame (unless one was sent), wait up to ``timeout`` seconds for the
        peer's close frame, then close the stream.  Safe to call more than once, and from a
        cancelled scope (it shields itself, bounded by ``timeout``).

        Must not run while another task is inside :meth:`receive_messages`.
        """
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + timeout if math.isfinite(timeout) else math.inf
            try:
                await self._local_close(code, reason)
                # RFC 6455 §7.1.1: the server should close TCP only after the close handshake;
                # wait for the peer's close frame (or EOF), bounded by the scope.
                while self._ws.state is ConnectionState.LOCAL_CLOSING and timeout > 0:
                    data = await self._recv(self._chunk)
                    if not data:
                        break
                    self._ws.receive_data(bytes(data))
                    for _ in self._ws.events():
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, WsRemoteProtocolError):
                pass
            finally:
                await _aclose_stream(self._stream)

    async def abort(self) -> None:
        """Close the stream at once, without a closing handshake (dead peer: 1006)."""
        self._record_close(CLOSE_ABNORMAL, "aborted")
        await _aclose_stream(self._stream)


async def _aclose_stream(stream: trio.abc.Stream) -> None:
    # A dead TLS peer could stall a polite close_notify; force-close if needed.
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + 1.0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.aclose()
    if scope.cancelled_caught:
        await trio.aclose_forcefully(stream)


# --- server handshake ----------------------------------------------------------------------


class PendingUpgrade:
    """A received upgrade request, waiting for the server's decision.

    Exactly one of :meth:`accept` or :meth:`reject` must follow.
    """

    __slots__ = ("_handshake", "_stream", "request")

    def __init__(self, stream: trio.abc.Stream, handshake: H11Handshake, request: Request) -> None:
        self._stream = stream
        self._handshake = handshake
        #: wsproto's parsed request: ``target``, ``subprotocols`` (client's preference order),
        #: ``extra_headers`` (lower-cased names).
        self.request = request

    def header(self, name: bytes) -> bytes | None:
        """The first value of request header ``name`` (lower-case), or ``None``."""
        for key, value in self.request.extra_headers:
            if key == name:
                return bytes(value)
        return None

    async def reject(self, status: int, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Answer with an HTTP error status (no body) and close the stream."""
        try:
            data = self._handshake.send(RejectConnection(status_code=status, headers=list(headers)))
            with trio.move_on_after(5):
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await _aclose_stream(self._stream)

    async def accept(
        self,
        subprotocol: str | None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        receive_chunk: int = DEFAULT_RECEIVE_CHUNK,
        limits: TransportLimits = DEFAULT_LIMITS,
    ) -> WebSocket:
        """Send ``101 Switching Protocols`` (with ``subprotocol`` if not ``None``).

        No extensions are negotiated: §J5.2 advises against compression, and a deflate context
        costs hundreds of KiB per connection.
        """
        data = self._handshake.send(AcceptConnection(subprotocol=subprotocol))
        conn = self._handshake.connection
        assert conn is not None
        ws = WebSocket(
            self._stream,
            conn,
            subprotocol,
            max_message_size=max_message_size,
            receive_chunk=receive_chunk,
            limits=limits,
        )
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionClosed(CLOSE_ABNORMAL, "transport error") from exc
        return ws


async def server_handshake(stream: trio.abc.Stream, *, receive_chunk: int = 4096) -> PendingUpgrade | None:
    """Read an upgrade request from ``stream``.

    Returns the :class:`PendingUpgrade`, or ``None`` after answering a malformed request (400,
    426 or 431, with the stream closed) or when the client went away first.  The caller bounds
    the time (PROTOCOL-DECISIONS §1: handshake timeout).
    """
    handshake = H11Handshake(ConnectionType.SERVER)
    received = 0
    while True:
        try:
            data = await stream.receive_some(receive_chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await _aclose_stream(stream)
            return None
        if not data:
            await _aclose_stream(stream)
            return None
        received += len(data)
        try:
            handshake.receive_data(bytes(data))
            for event in handshake.events():
                if isinstance(event, Request):
                    return PendingUpgrade(stream, handshake, event)
        except WsRemoteProtocolError as exc:
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            headers = list(hint.headers) if isinstance(hint, RejectConnection) else []
            await _reject_raw(stream, handshake, status, headers)
            return None
        if received > MAX_REQUEST_HEAD:
            await _reject_raw(stream, handshake, 431, [])
            return None


async def _reject_raw(
    stream: trio.abc.Stream, handshake: H11Handshake, status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    try:
        data = handshake.send(RejectConnection(status_code=status, headers=headers))
    except Exception:  # h11 may refuse to answer a request it could not parse: write it by hand
        data = f"HTTP/1.1 {status} Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
    try:
        with trio.move_on_after(5):
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await _aclose_stream(stream)


# --- client handshake ----------------------------------------------------------------------


async def client_handshake(
    stream: trio.abc.Stream,
    *,
    host: str,
    target: str,
    subprotocols: Sequence[str],
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_chunk: int = DEFAULT_RECEIVE_CHUNK,
    limits: TransportLimits = DEFAULT_LIMITS,
) -> WebSocket:
    """Send the upgrade request and wait for the answer; the caller bounds the time.

    Raises :class:`HandshakeFailed` with the HTTP status when the server refuses, or with
    ``status=None`` when it upgrades without one of our subprotocols (§J3.2: it will close at
    once, so we close first).  The stream is closed on failure.
    """
    handshake = H11Handshake(ConnectionType.CLIENT)
    try:
        await stream.send_all(
            handshake.send(
                Request(
                    host=host,
                    target=target,
                    subprotocols=list(subprotocols),
                    extra_headers=list(extra_headers),
                )
            )
        )
        received = 0
        while True:
            data = await stream.receive_some(4096)
            if not data:
                raise HandshakeFailed("server closed the connection during the handshake")
            received += len(data)
            handshake.receive_data(bytes(data))
            for event in handshake.events():
                if isinstance(event, AcceptConnection):
                    conn = handshake.connection
                    assert conn is not None
                    ws = WebSocket(
                        stream,
                        conn,
                        event.subprotocol,
                        max_message_size=max_message_size,
                        receive_chunk=receive_chunk,
                        limits=limits,
                    )
                    if event.subprotocol is None:
                        await ws.aclose(CLOSE_NORMAL, "no subprotocol", timeout=1.0)
                        raise HandshakeFailed("server accepted none of our subprotocols (§J3.2)")
                    return ws
                if isinstance(event, RejectConnection):
                    raise HandshakeFailed(
                        f"server refused the upgrade: HTTP {event.status_code}", event.status_code
                    )
                if isinstance(event, RejectData):
                    continue
            if received > MAX_REQUEST_HEAD:
                raise HandshakeFailed("handshake response too large")
    except HandshakeFailed:
        await _aclose_stream(stream)
        raise
    except (trio.BrokenResourceError, trio.ClosedResourceError, WsRemoteProtocolError) as exc:
        await _aclose_stream(stream)
        raise HandshakeFailed(f"handshake failed: {exc}") from exc
    except BaseException:
        await _aclose_stream(stream)
        raise
