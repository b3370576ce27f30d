"""The thin wsproto transport on the wire: pings, fragments, batching, close codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from test_trio_support import CentralApp

from os3p_trio import (
    ConnectionClosed,
    ServerConfig,
    WebSocket,
    client_handshake,
    open_central_system,
    server_handshake,
)

UPGRADE = (
    b"GET /OS3P/RAW HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: OS3P1.0\r\n\r\n"
)


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client frame (masked, RFC 6455 §5.3)."""
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


@asynccontextmanager
async def raw_connection() -> AsyncIterator[tuple[trio.SocketStream, bytearray]]:
    app = CentralApp()
    async with open_central_system(
        app.router, 0, host="127.0.0.1", config=ServerConfig(close_timeout=0.3)
    ) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(UPGRADE)
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some(4096)
        del buf[: buf.index(b"\r\n\r\n") + 4]
        yield stream, buf
        await stream.aclose()


async def read_frame(stream: trio.SocketStream, buf: bytearray) -> tuple[int, bytes]:
    """The next server frame (unmasked): (opcode, payload)."""
    while True:
        if len(buf) >= 2:
            n = buf[1] & 0x7F
            start = 2
            if n == 126 and len(buf) >= 4:
                n, start = int.from_bytes(buf[2:4], "big"), 4
            if n < 126 and len(buf) >= start + n:
                opcode, payload = buf[0] & 0x0F, bytes(buf[start : start + n])
                del buf[: start + n]
                return opcode, payload
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError
        buf += chunk


async def test_ping_is_answered_with_pong_carrying_its_payload() -> None:
    with trio.fail_after(5):
        async with raw_connection() as (stream, buf):
            await stream.send_all(frame(0x9, b"are you there"))
            assert await read_frame(stream, buf) == (0xA, b"are you there")


async def test_fragmented_message_is_reassembled() -> None:
    with trio.fail_after(5):
        async with raw_connection() as (stream, buf):
            text = b'[2,"f1","Heartbeat",{}]'
            # Three fragments with a ping in between (control frames may interleave, RFC 6455 §5.4).
            await stream.send_all(
                frame(0x1, text[:5], fin=False) + frame(0x9, b"p") + frame(0x0, text[5:12], fin=False)
            )
            await stream.send_all(frame(0x0, text[12:]))
            assert await read_frame(stream, buf) == (0xA, b"p")
            opcode, payload = await read_frame(stream, buf)
            # Not accepted yet: the core answers SecurityError (PROTOCOL-DECISIONS §5): an answer
            # to the reassembled call, with its id.
            assert opcode == 0x1
            assert payload.startswith(b'[4,"f1","SecurityError"')


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x2, b"\x00\x01"), 1003),  # binary: OS3P is UTF-8 JSON text (§J4)
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
        (bytes([0x81, 0x01]) + b"x", 1002),  # unmasked client frame (RFC 6455 §5.1)
    ],
)
async def test_bad_frames_close_with_the_right_code(data: bytes, code: int) -> None:
    with trio.fail_after(5):
        async with raw_connection() as (stream, buf):
            await stream.send_all(data)
            opcode, payload = await read_frame(stream, buf)
            assert opcode == 0x8
            assert int.from_bytes(payload[:2], "big") == code


async def test_batch_of_calls_is_read_and_answered_in_batches() -> None:
    app = CentralApp()
    with trio.fail_after(5):
        async with open_central_system(app.router, 0, host="127.0.0.1") as server:
            ws: WebSocket = await client_handshake(
                await trio.open_tcp_stream("127.0.0.1", server.port),
                host="h",
                target="/OS3P/S1",
                subprotocols=["OS3P1.0"],
            )
            # One write of 10 calls (the peer may cross calls, §4: handled concurrently) ...
            await ws.send_messages([f'[2,"id{i}","Heartbeat",{{}}]' for i in range(10)])
            replies: list[str] = []
            reads = 0
            while len(replies) < 10:
                # (minus the Central System's one TriggerMessage(BootNotification), PROTOCOL-DECISIONS §5)
                replies += [r for r in await ws.receive_messages() if not r.startswith("[2,")]
                reads += 1
            # ... every one answered, in order, with far fewer reads than messages.
            assert [r.split('"')[1] for r in replies] == [f"id{i}" for i in range(10)]
            assert reads <= 3
            await ws.aclose(timeout=1)
            with pytest.raises(ConnectionClosed):
                await ws.send_messages(["x"])


async def test_concurrent_writers_never_interleave_frames() -> None:
    from functools import partial

    from os3p_trio import server_handshake

    received: list[str] = []
    done = trio.Event()

    async def serve(stream: trio.SocketStream) -> None:
        pending = await server_handshake(stream)
        assert pending is not None
        ws = await pending.accept("OS3P1.0")
        while len(received) < 50:
            received.extend(await ws.receive_messages())
            await trio.sleep(0.001)  # a slow reader: the writers' socket buffer fills up
        done.set()
        await ws.aclose(timeout=1)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            ws = await client_handshake(
                await trio.open_tcp_stream("127.0.0.1", port), host="h", target="/x", subprotocols=["OS3P1.0"]
            )

            async def writer(n: int) -> None:
                for k in range(5):
                    await ws.send_messages([chr(ord("a") + n) * (100_000 + k)])

            async with trio.open_nursery() as writers:
                for n in range(10):
                    writers.start_soon(writer, n)
            await done.wait()
            nursery.cancel_scope.cancel()
    assert len(received) == 50
    for text in received:
        assert len(set(text)) == 1  # one writer's message, whole
    assert sorted(len(t) for t in received) == sorted(100_000 + k for _ in range(10) for k in range(5))


async def test_server_frames_of_every_length_class() -> None:
    """7-bit, 16-bit and 64-bit payload lengths (RFC 6455 §5.2), non-ASCII included, read back by
    wsproto on the client side."""
    from functools import partial

    from os3p_trio import server_handshake

    texts = ["", "x" * 125, "é" * 63, "y" * 126, "z" * 65535, "w" * 65536, "ü" * 100_000]

    async def serve(stream: trio.SocketStream) -> None:
        pending = await server_handshake(stream)
        assert pending is not None
        ws = await pending.accept("OS3P1.0")
        await ws.send_messages(texts)
        await ws.aclose(timeout=1)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            ws = await client_handshake(
                await trio.open_tcp_stream("127.0.0.1", port), host="h", target="/x", subprotocols=["OS3P1.0"]
            )
            received: list[str] = []
            close_code = None
            while close_code is None:
                try:
                    received += await ws.receive_messages()
                except ConnectionClosed as exc:
                    close_code = exc.code
            nursery.cancel_scope.cancel()
    assert received == texts
    assert close_code == 1000


class _GatedStream(trio.abc.Stream):
    """A stream whose reads wait for a gate: lets a test put the server's 101 answer and its first
    frame in the client's buffer before the client reads either."""

    def __init__(self, inner: trio.abc.Stream, gate: trio.Event) -> None:
        self.inner = inner
        self.gate = gate

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self.gate.wait()
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def _client_after(messages: list[str], raw: bytes = b"") -> AsyncIterator[WebSocket]:
    """A client WebSocket whose first read finds the server's 101 answer, ``messages`` and then
    ``raw`` bytes all already in its buffer (one TCP segment, as far as the client can tell)."""
    client_side, server_side = trio.testing.memory_stream_pair()
    gate = trio.Event()

    async def server() -> None:
        pending = await server_handshake(server_side)
        assert pending is not None
        ws = await pending.accept("OS3P1.0")
        await ws.send_messages(messages)
        if raw:
            await server_side.send_all(raw)
        gate.set()

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            ws = await client_handshake(
                _GatedStream(client_side, gate), host="cs", target="/OS3P/S1", subprotocols=["OS3P1.0"]
            )
            assert ws.subprotocol == "OS3P1.0"
            yield ws
            nursery.cancel_scope.cancel()


async def test_client_sees_a_message_that_arrives_with_the_101_answer() -> None:
    # The server's first CALL can share a TCP segment with its 101 answer; the client must deliver it
    # at once, not only when the server happens to send something else (it used to wait for more data).
    first = '[2,"cs-1","GetConfiguration",{}]'
    async with _client_after([first]) as ws:
        assert await ws.receive_messages() == [first]


async def test_client_returns_messages_before_a_bad_frame_then_closes() -> None:
    # "Messages that arrived before a bad frame are returned first; the close follows on the next
    # call (nothing lost)" holds on the client too: a good CALL, then a binary frame (OS³P is text,
    # §J4) in the same read.
    good = '[2,"cs-1","GetConfiguration",{}]'
    async with _client_after([good], raw=b"\x82\x03abc") as ws:  # an unmasked binary frame
        assert await ws.receive_messages() == [good]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.receive_messages()
        assert closed.value.code == 1003
