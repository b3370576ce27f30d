"""The server's fast path for client frames (``os3p_trio.WebSocket.receive_messages``) against wsproto.

Complete, unfragmented, masked text frames are decoded by the transport itself; every other frame goes
to wsproto whole.  Hypothesis builds client byte streams (text messages of every length class, ASCII and
not, fragmented messages with pings between the fragments, then possibly one bad frame: unmasked, RSV bit,
reserved opcode, long or fragmented ping, invalid UTF-8, over the size limit) and splits them into random
reads; the messages and the close code must be what wsproto alone makes of the same bytes, whatever the
split.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from os3p_trio import ConnectionClosed, TransportLimits, WebSocket

MAX = 4096  # a small size limit, so that the "too big" cases stay cheap

_BAD_FRAMES = [
    bytes([0x81, 5]) + b"hello",  # unmasked (RFC 6455 §5.1) → 1002
    bytes([0xC1, 0x82, 0, 0, 0, 0]) + b"hi",  # RSV1 without an extension → 1002
    bytes([0x83, 0x82, 0, 0, 0, 0]) + b"hi",  # reserved opcode → 1002
    bytes([0x89, 0xFE]) + (200).to_bytes(2, "big") + bytes(4) + b"x" * 200,  # ping over 125 bytes → 1002
    bytes([0x09, 0x81, 0, 0, 0, 0]) + b"x",  # fragmented ping → 1002
    bytes([0x81, 0x82, 0, 0, 0, 0]) + b"\xff\xfe",  # invalid UTF-8 → 1007
    bytes([0x81, 0xFE]) + (MAX + 10).to_bytes(2, "big") + bytes(4) + b"a" * (MAX + 10),  # too big → 1009
    # Issue 16: invalid headers that announce large lengths fail from the header (1002), not 1009.
    bytes([0x81, 0x7F]) + (200 * 2**20).to_bytes(8, "big"),  # unmasked, 200 MiB announced
    bytes([0xC1, 0xFF]) + (MAX * 50).to_bytes(8, "big") + bytes(4),  # RSV1, large
    bytes([0x8B, 0xFF]) + (MAX * 50).to_bytes(8, "big") + bytes(4),  # reserved opcode, large
    bytes([0x81, 0xFE, 0, 5]) + bytes(4) + b"hello",  # non-minimal 16-bit length → 1002 (§5.2)
    bytes([0x81, 0xFF]) + (5).to_bytes(8, "big") + bytes(4) + b"hello",  # non-minimal 64-bit length
    bytes([0x80, 0x81, 0, 0, 0, 0]) + b"x",  # continuation outside a message → 1002
]

_text = st.text(alphabet=st.sampled_from('ax{}[]",é€😀'), max_size=300) | st.sampled_from(
    ["", "a" * 125, "a" * 126, "é" * 1000, "a" * MAX]
)
_item = st.one_of(
    st.tuples(st.just("text"), _text),
    st.tuples(st.just("frag"), st.lists(_text, min_size=2, max_size=4), st.booleans()),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
)


def _client_bytes(items: list[Any], bad: int | None) -> tuple[bytes, list[str]]:
    client = Connection(ConnectionType.CLIENT)
    data = b""
    expected: list[str] = []
    for item in items:
        if item[0] == "text":
            data += client.send(TextMessage(data=item[1]))
            expected.append(item[1])
        elif item[0] == "frag":
            parts, ping_between = item[1], item[2]
            for i, part in enumerate(parts):
                data += client.send(TextMessage(data=part, message_finished=i == len(parts) - 1))
                if ping_between and i < len(parts) - 1:
                    data += client.send(Ping(payload=b"p"))
            expected.append("".join(parts))
        else:
            data += client.send(Ping(payload=item[1]))
    if bad is not None:
        data += _BAD_FRAMES[bad]
    return data, expected


def _reference(data: bytes) -> tuple[list[str], int]:
    """What wsproto alone makes of ``data``: the complete messages and the close code."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(data)
    messages: list[str] = []
    partial: list[str] = []
    for event in server.events():
        if isinstance(event, TextMessage):
            partial.append(event.data)
            if event.message_finished:
                text = "".join(partial)
                partial = []
                if len(text.encode()) > MAX:
                    return messages, 1009
                messages.append(text)
        elif isinstance(event, CloseConnection):
            return messages, int(event.code)
    return messages, 1006  # the stream ends without a close frame


#: The defaults but for the pause after a slow read (real time; these reads are not slow).
_LIMITS = TransportLimits(slow_read_delay=1e-6)


class _Reads(trio.abc.Stream):
    """The receiving end of a byte stream, in reads of the given sizes; writes are dropped."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes
        self.pos = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        n = self.sizes[self.pos % len(self.sizes)] if self.sizes else 1
        chunk = self.data[: min(n, max_bytes or n)]
        self.data = self.data[len(chunk) :]
        self.pos += 1
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def _through_transport(data: bytes, sizes: list[int]) -> tuple[list[str], int]:
    ws = WebSocket(
        _Reads(data, sizes),
        Connection(ConnectionType.SERVER),
        "OS3P1.0",
        max_message_size=MAX,
        limits=_LIMITS,
    )
    messages: list[str] = []
    with trio.fail_after(10):
        while True:
            try:
                messages.extend(await ws.receive_messages())
            except ConnectionClosed as exc:
                return messages, exc.code


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(_item, max_size=8),
    bad=st.none() | st.integers(0, len(_BAD_FRAMES) - 1),
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=8),
)
def test_fast_path_agrees_with_wsproto(items: list[Any], bad: int | None, sizes: list[int]) -> None:
    data, expected = _client_bytes(items, bad)
    ref_messages, ref_code = _reference(data)
    messages, code = trio.run(_through_transport, data, sizes)
    assert code == ref_code
    # Every message before the bad frame is delivered, in order, whatever the reads.
    assert messages == ref_messages == expected[: len(ref_messages)]
    if ref_code == 1006:  # no bad frame and no message over the limit: everything arrives
        assert messages == expected


def test_unmasking_every_length_class() -> None:
    client = Connection(ConnectionType.CLIENT)
    texts = ["", "a", "a" * 125, "a" * 126, "é" * 2000, "x" * MAX]
    data = b"".join(client.send(TextMessage(data=t)) for t in texts)
    messages, code = trio.run(_through_transport, data, [7, 1, 65536])
    assert messages == texts
    assert code == 1006
