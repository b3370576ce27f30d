"""Every handshake rule of PROTOCOL-DECISIONS §1, auth (Basic + HMAC), TLS and mutual TLS."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trio_support import BOOT, FAST_CLIENT, CentralApp, raw_station

from os3p_trio import (
    CentralSystemServer,
    ClientConfig,
    ConnectionClosed,
    HandshakeFailed,
    HandshakeRejected,
    InMemoryRegistry,
    ServerConfig,
    StationRecord,
    client_handshake,
    connection_path,
    generate_authorization_key,
    hash_authorization_key,
    open_central_system,
    open_substation,
    parse_basic_authorization,
    parse_identity,
    verify_authorization_key,
)

SECRET = b"server-secret-0123456789abcdef"
KEY = generate_authorization_key()


@asynccontextmanager
async def central(
    *,
    registry: InMemoryRegistry | None = None,
    config: ServerConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[CentralSystemServer]:
    app = CentralApp()
    async with open_central_system(
        app.router,
        0,
        host="127.0.0.1",
        registry=registry,
        config=config or ServerConfig(close_timeout=0.3),
        ssl_context=ssl_context,
    ) as server:
        yield server


async def raw_request(
    port: int, path: str, headers: dict[str, str | None] | None = None, *, until_closed: bool = False
) -> bytes:
    """Send an upgrade request by hand and return everything the server sends until it closes
    (bounded): the response head, and for an upgrade also the frames that follow."""
    hdrs = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "OS3P1.0",
    }
    for k, v in (headers or {}).items():
        if v is None:
            hdrs.pop(k, None)
        else:
            hdrs[k] = v
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data = b""
    with trio.move_on_after(3):
        await stream.send_all(head.encode())
        while chunk := await stream.receive_some(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.startswith(b"HTTP/1.1 101") and not until_closed:
                break
    await stream.aclose()
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- pure rules ------------------------------------------------------------------------------

identities = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/:"), min_size=1, max_size=48
).filter(lambda s: not any(c < " " or "\x7f" <= c <= "\x9f" for c in s))


@settings(max_examples=200, deadline=None)
@given(identities)
def test_identity_round_trips_through_percent_encoding(identity: str) -> None:
    # §J3.1.1: the client percent-encodes, the server decodes; any valid identity survives.
    assert parse_identity(connection_path("/OS3P", identity), ["/OS3P"]) == ("/OS3P", identity)


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/OS3P/", 400),  # empty identity (1-48 characters)
        ("/OTHER/SUBS1", 404),  # unknown endpoint
        ("/OS3P/A/B", 404),  # two segments
        ("/OS3P/" + "x" * 49, 400),
        ("/OS3P/SUBS%2F1", 400),  # decodes to "/"
        ("/OS3P/SUBS%3A1", 400),  # decodes to ":"
        ("/OS3P/SUBS%01", 400),  # control character
        ("/OS3P/SUBS%C2%85", 400),  # C1 control (NEL)
        ("/OS3P/%FF", 400),  # not UTF-8
        ("/OS3P/%20", None),  # a single space is an identity
    ],
)
def test_identity_rules(target: str, status: int | None) -> None:
    if status is None:
        assert parse_identity(target, ["/OS3P"]) == ("/OS3P", " ")
        return
    with pytest.raises(HandshakeRejected) as info:
        parse_identity(target, ["/OS3P"])
    assert info.value.status == status


def test_identity_examples_of_the_spec() -> None:
    assert parse_identity("/webServices/OS3P/SUBS123", ["/webServices/OS3P"])[1] == "SUBS123"
    assert parse_identity("/OS3P/SUBS%20123?x=1", ["/OS3P"])[1] == "SUBS 123"
    assert connection_path("/OS3P", "SUBS 123") == "/OS3P/SUBS%20123"


def test_authorization_key_hash_and_verify() -> None:
    stored = hash_authorization_key(SECRET, "S1", KEY)
    assert verify_authorization_key(SECRET, "S1", KEY.encode(), stored)
    assert not verify_authorization_key(SECRET, "S1", b"x" + KEY.encode(), stored)
    assert not verify_authorization_key(SECRET, "S2", KEY.encode(), stored)  # bound to the identity
    assert not verify_authorization_key(SECRET, "S1", KEY.encode(), None)  # unknown station
    short = "k" * 15
    assert not verify_authorization_key(
        SECRET, "S1", short.encode(), hash_authorization_key(SECRET, "S1", short)
    )
    assert len(KEY) == 40
    with pytest.raises(ValueError, match="16"):
        generate_authorization_key(8)
    with pytest.raises(ValueError, match="secret"):
        hash_authorization_key(b"short", "S1", KEY)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        (b"Bearer abc", None),
        (b"Basic !!!", None),
        (b"Basic " + base64.b64encode(b"nocolon"), None),
        (b"Basic " + base64.b64encode(b"S1:pa:ss"), ("S1", b"pa:ss")),
        (b"basic " + base64.b64encode(b"\xff:x"), None),
    ],
)
def test_parse_basic_authorization(header: bytes | None, expected: tuple[str, bytes] | None) -> None:
    assert parse_basic_authorization(header) == expected


# --- over the network --------------------------------------------------------------------------


async def test_http_statuses_before_upgrade() -> None:
    registry = InMemoryRegistry([StationRecord("SUBS1")])
    with trio.fail_after(15):
        async with central(registry=registry) as server:
            assert status_of(await raw_request(server.port, "/OS3P/SUBS1")) == 101
            assert status_of(await raw_request(server.port, "/OS3P/NOBODY")) == 404
            assert status_of(await raw_request(server.port, "/ELSEWHERE/SUBS1")) == 404
            assert status_of(await raw_request(server.port, "/OS3P/SUBS%2F1")) == 400
            assert status_of(await raw_request(server.port, "/OS3P/" + "A" * 49)) == 400
            # Not a WebSocket upgrade at all.
            assert status_of(await raw_request(server.port, "/OS3P/SUBS1", {"Upgrade": None})) == 400


async def test_subprotocol_follows_client_preference() -> None:
    config = ServerConfig(subprotocols=("OS3P1.0", "OS3P2.0"), close_timeout=1.0)
    with trio.fail_after(10):
        async with central(config=config) as server:
            for offered, chosen in (
                (["OS3P2.0", "OS3P1.0"], "OS3P2.0"),
                (["X", "OS3P1.0", "OS3P2.0"], "OS3P1.0"),
            ):
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                ws = await client_handshake(stream, host="h", target="/OS3P/S1", subprotocols=offered)
                assert ws.subprotocol == chosen
                await ws.aclose(timeout=1)


@pytest.mark.parametrize("offered", ["OS3P9.9", None])
async def test_no_subprotocol_overlap_upgrades_then_closes(offered: str | None) -> None:
    with trio.fail_after(10):
        async with central() as server:
            response = await raw_request(
                server.port, "/OS3P/S1", {"Sec-WebSocket-Protocol": offered}, until_closed=True
            )
            head, _, frames = response.partition(b"\r\n\r\n")
            # §J3.2: complete the handshake without Sec-WebSocket-Protocol, then close at once.
            assert status_of(head) == 101
            assert b"sec-websocket-protocol" not in head.lower()
            assert frames[:1] == b"\x88"  # a close frame
            assert int.from_bytes(frames[2:4], "big") == 1002
            assert not server.sessions
            # Our client reports it as a failed handshake.
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            with pytest.raises(HandshakeFailed, match="subprotocol"):
                await client_handshake(stream, host="h", target="/OS3P/S1", subprotocols=["OS3P9.9"])


async def test_basic_auth_401_cases_look_identical() -> None:
    registry = InMemoryRegistry(
        [StationRecord("S1", key_hash=hash_authorization_key(SECRET, "S1", KEY)), StationRecord("S2")]
    )
    config = ServerConfig(auth_secret=SECRET, close_timeout=1.0)
    with trio.fail_after(15):
        async with central(registry=registry, config=config) as server:
            ok = await raw_request(server.port, "/OS3P/S1", {"Authorization": basic("S1", KEY)})
            assert status_of(ok) == 101
            answers = [
                await raw_request(server.port, "/OS3P/S1", {}),  # no credentials
                await raw_request(server.port, "/OS3P/S1", {"Authorization": basic("S1", KEY + "x")}),
                await raw_request(server.port, "/OS3P/S1", {"Authorization": basic("S2", KEY)}),  # user != id
                await raw_request(server.port, "/OS3P/S2", {"Authorization": basic("S2", KEY)}),  # no key
                await raw_request(server.port, "/OS3P/NOBODY", {"Authorization": basic("NOBODY", KEY)}),
                await raw_request(server.port, "/OS3P/S1", {"Authorization": "Bearer " + KEY}),
            ]
            assert {status_of(a) for a in answers} == {401}
            assert len(set(answers)) == 1  # byte-identical: unknown station == wrong password
            assert b'www-authenticate: basic realm="os3p"' in answers[0].lower()


async def test_client_basic_auth_end_to_end() -> None:
    registry = InMemoryRegistry([StationRecord("S 1", key_hash=hash_authorization_key(SECRET, "S 1", KEY))])
    config = ServerConfig(auth_secret=SECRET, close_timeout=1.0)
    with trio.fail_after(15):
        async with central(registry=registry, config=config) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            async with open_substation(
                url, "S 1", CentralApp().router, BOOT, password=KEY, config=FAST_CLIENT
            ) as st1:
                await st1.wait_accepted()
            bad = SubstationClientProbe(url, "S 1", "wrong-password-0123456789")
            assert await bad.status() == 401


class SubstationClientProbe:
    """One connection attempt with our client code, to see the HTTP status it gets."""

    def __init__(
        self, url: str, identity: str, password: str | None, ctx: ssl.SSLContext | None = None
    ) -> None:
        from os3p_trio import SubstationClient

        self.client = SubstationClient(
            url, identity, CentralApp().router, BOOT, password=password, ssl_context=ctx
        )

    async def status(self) -> int | None:
        try:
            session = await self.client._connect()
        except HandshakeFailed as exc:
            return exc.status
        await session.websocket.aclose(timeout=1)
        return 101


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *, mutual: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    if mutual:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return ctx


def client_context(ca: trustme.CA, name: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if name is not None:
        ca.issue_cert(name, common_name=name).configure_cert(ctx)
    return ctx


async def test_tls(ca: trustme.CA) -> None:
    with trio.fail_after(15):
        async with central(ssl_context=server_context(ca, mutual=False)) as server:
            url = f"wss://127.0.0.1:{server.port}/OS3P"
            async with open_substation(
                url, "S1", CentralApp().router, BOOT, ssl_context=client_context(ca), config=FAST_CLIENT
            ) as station:
                await station.wait_accepted()
                assert isinstance(station.session.websocket.stream, trio.SSLStream)  # type: ignore[union-attr]
            # A client that does not trust the server's CA cannot connect.
            probe = SubstationClientProbe(url, "S1", None, ssl.create_default_context())
            with pytest.raises(trio.BrokenResourceError):
                await probe.status()


async def test_mutual_tls_requires_the_identity_in_the_certificate(ca: trustme.CA) -> None:
    config = ServerConfig(require_client_certificate=True, close_timeout=1.0)
    with trio.fail_after(15):
        async with central(ssl_context=server_context(ca, mutual=True), config=config) as server:
            url = f"wss://127.0.0.1:{server.port}/OS3P"
            assert (
                await SubstationClientProbe(url, "SUBS001", None, client_context(ca, "SUBS001")).status()
                == 101
            )
            # Valid certificate, wrong name: refused before the upgrade.
            assert (
                await SubstationClientProbe(url, "SUBS001", None, client_context(ca, "SUBS002")).status()
                == 403
            )
            # No client certificate at all: the TLS handshake fails (or the server drops us).
            # (TLS 1.3 reports the missing certificate after the client's handshake completed,
            # so the client sees either a broken TLS stream or a server that closed at once.)
            try:
                status = await SubstationClientProbe(url, "SUBS001", None, client_context(ca)).status()
            except trio.BrokenResourceError:
                status = None
            assert status is None
            assert not server.sessions


async def test_newer_connection_replaces_older() -> None:
    with trio.fail_after(10):
        async with central() as server:
            first = await raw_station(server.port, "S1")
            while "S1" not in server.sessions:
                await trio.sleep(0.01)
            old_session = server.sessions["S1"]
            second = await raw_station(server.port, "S1")
            with pytest.raises(ConnectionClosed) as info:
                await first.receive_messages()
            assert (info.value.code, info.value.reason) == (1000, "replaced")
            await old_session.wait_closed()
            assert server.sessions["S1"] is not old_session
            assert not server.sessions["S1"].is_closed
            await first.aclose(timeout=1)
            await second.aclose(timeout=1)


async def test_message_size_limit_closes_1009() -> None:
    config = ServerConfig(max_message_size=1000, close_timeout=1.0)
    with trio.fail_after(10):
        async with central(config=config) as server:
            ws = await raw_station(server.port, "S1")
            await ws.send_messages(
                ['[2,"1","Heartbeat",{"x":"' + "é" * 600 + '"}]']
            )  # 1200+ bytes, 600+ chars
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive_messages()
            assert info.value.code == 1009
            await ws.aclose(timeout=1)


async def test_message_size_limit_default_is_256_kib() -> None:
    with trio.fail_after(10):
        async with central() as server:
            ws = await raw_station(server.port, "S1")
            # Just under the limit: not closed (answered: a Heartbeat with an unknown property is
            # a FormationViolation), just over: 1009.
            body = '[2,"1","Heartbeat",{"x":"' + "a" * (256 * 1024 - 40) + '"}]'
            assert len(body) <= 256 * 1024
            await ws.send_messages([body])
            reply = (await ws.receive_messages())[0]  # then TriggerMessage(BootNotification), §5
            assert reply.startswith('[4,"1",')
            await ws.send_messages(['[2,"2","Heartbeat",{"x":"' + "a" * (256 * 1024) + '"}]'])
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive_messages()
            assert info.value.code == 1009
            await ws.aclose(timeout=1)


async def test_handshake_timeout_closes_silent_socket() -> None:
    config = ServerConfig(handshake_timeout=0.3, close_timeout=1.0)
    with trio.fail_after(10):
        async with central(config=config) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            start = trio.current_time()
            await stream.send_all(b"GET /OS3P/S1 HTTP/1.1\r\nHost: x\r\n")  # incomplete, then silence
            assert await stream.receive_some(1000) == b""  # the server closed the socket
            assert 0.25 <= trio.current_time() - start < 3
            await stream.aclose()


async def test_client_reports_404_and_keeps_retrying() -> None:
    registry = InMemoryRegistry([StationRecord("KNOWN")])
    with trio.fail_after(10):
        async with central(registry=registry) as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            assert await SubstationClientProbe(url, "UNKNOWN", None).status() == 404
            config = ClientConfig(reconnect_base=0.02, reconnect_max=0.05)
            async with open_substation(url, "UNKNOWN", CentralApp().router, BOOT, config=config) as station:
                await trio.sleep(0.5)
                assert not station.connected
                registry.add(StationRecord("UNKNOWN"))  # registered meanwhile: the retry gets in
                await station.wait_accepted()


async def test_connection_limit_answers_503() -> None:
    with trio.fail_after(10):
        async with central(config=ServerConfig(max_connections=1, close_timeout=0.3)) as server:
            first = await raw_station(server.port, "S1")
            while "S1" not in server.sessions:
                await trio.sleep(0.01)
            assert status_of(await raw_request(server.port, "/OS3P/S2")) == 503
            await first.aclose(timeout=1)
            while server.sessions:
                await trio.sleep(0.01)
            assert status_of(await raw_request(server.port, "/OS3P/S2")) == 101


async def test_handshake_timeout_covers_a_stalled_tls_handshake(ca: trustme.CA) -> None:
    # The timeout runs from the TCP accept (PROTOCOL-DECISIONS §1): a client that never starts its
    # TLS handshake holds a socket no longer than a silent plain-TCP one.
    config = ServerConfig(handshake_timeout=0.3, close_timeout=1.0)
    with trio.fail_after(10):
        async with central(ssl_context=server_context(ca, mutual=False), config=config) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            start = trio.current_time()
            assert await stream.receive_some(1000) == b""  # closed by the server, nothing sent
            assert 0.25 <= trio.current_time() - start < 3
            await stream.aclose()


async def test_only_an_authenticated_connection_replaces_the_older_one() -> None:
    # PROTOCOL-DECISIONS §1: "A new *authenticated* connection ... replaces the old one": a refused
    # attempt (wrong key, unknown subprotocol) must not knock the live station off.
    registry = InMemoryRegistry([StationRecord("S1", key_hash=hash_authorization_key(SECRET, "S1", KEY))])
    config = ServerConfig(auth_secret=SECRET, close_timeout=1.0)
    good = {"Authorization": basic("S1", KEY)}
    with trio.fail_after(10):
        async with central(registry=registry, config=config) as server:
            first = await client_handshake(
                await trio.open_tcp_stream("127.0.0.1", server.port),
                host="h",
                target="/OS3P/S1",
                subprotocols=["OS3P1.0"],
                extra_headers=[(b"authorization", good["Authorization"].encode())],
            )
            while "S1" not in server.sessions:
                await trio.sleep(0.01)
            live = server.sessions["S1"]
            bad = await raw_request(server.port, "/OS3P/S1", {"Authorization": basic("S1", KEY + "x")})
            assert status_of(bad) == 401
            no_match = await raw_request(
                server.port, "/OS3P/S1", {**good, "Sec-WebSocket-Protocol": "OS3P9.9"}, until_closed=True
            )
            assert status_of(no_match) == 101  # upgraded, then closed at once (§J3.2) ...
            assert server.sessions["S1"] is live  # ... and neither replaced the live connection
            assert not live.is_closed
            await first.send_messages(['[2,"1","Heartbeat",{}]'])
            reply = (await first.receive_messages())[0]  # then TriggerMessage(BootNotification), §5
            assert reply.startswith('[4,"1","SecurityError"')  # served (not booted yet, §5), not closed
            await first.aclose(timeout=1)
