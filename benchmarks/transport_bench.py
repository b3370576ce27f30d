"""Transport benchmark: the server hot path of three WebSocket stacks under trio.

Compares, each server in its own process, interleaved over several repetitions:

- ``wsproto``: os3p_trio's own thin adapter (``os3p_trio._transport``: wsproto over trio streams,
  batch reads and writes, no task of its own);
- ``triows``: trio-websocket 0.12.2 (``serve_websocket``, ``get_message``/``send_message``);
- ``websockets``: the trio implementation in the ``websockets`` package (``websockets.trio``,
  C-accelerated framing), for reference.

Every server answers each text message with one fixed CALLRESULT text (no JSON work: this
measures the transport only).  The load generator speaks raw pre-encoded frames over plain trio
sockets, so it costs the same whatever server it drives; each connection keeps one call in
flight (OCPP-J's default, PROTOCOL-DECISIONS §4).  Reported: messages/s, latency p50/p99, server
CPU µs per message (user+sys of the server process, from /proc), and for idle connections the RSS and the
number of GC-tracked Python objects per connection (what a full collection walks).

Usage::

    python benchmarks/transport_bench.py run [--connections 100] [--seconds 5] [--idle 2000] [--reps 3]
    python benchmarks/transport_bench.py run --quick          # tiny, for CI smoke runs
    python benchmarks/transport_bench.py handshakes [--count 3000] [--concurrency 50]  # upgrades/s
    python benchmarks/transport_bench.py server --impl wsproto  # one server, prints READY <port>
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import trio

IMPLS = ("wsproto", "triows", "websockets", "os3p", "os3p-auth")
#: Server secret and AuthorizationKey of every station in the ``os3p-auth`` server (benchmark only).
AUTH_SECRET = b"benchmark-secret-0123456789abcdef"
AUTH_KEY = "0123456789abcdef0123456789abcdef01234567"
SUBPROTOCOL = "OS3P1.0"
REQUEST_TEXT = b'[2,"19223201","Heartbeat",{}]'
RESPONSE_TEXT = '[3,"19223201",{"currentTime":"2026-11-26T08:00:00.000Z"}]'


# --- servers -------------------------------------------------------------------------------


def _rss_bytes() -> int:
    # Linux /proc (no psutil needed: the CI smoke test runs with the test extras only).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _report_line(kind: str) -> None:
    gc.collect()
    rss = _rss_bytes()
    print(f"{kind} objects={len(gc.get_objects())} rss={rss}", flush=True)


async def _signal_reporter() -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            _report_line("STATS")


async def _serve_wsproto(nursery: trio.Nursery) -> int:
    from os3p_trio._transport import server_handshake

    async def handle(stream: trio.SocketStream) -> None:
        pending = await server_handshake(stream)
        if pending is None:
            return
        ws = await pending.accept(SUBPROTOCOL)
        try:
            while True:
                msgs = await ws.receive_messages()
                await ws.send_messages([RESPONSE_TEXT] * len(msgs))
        except Exception:
            await ws.aclose(1000, timeout=1)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return int(listeners[0].socket.getsockname()[1])


async def _serve_triows(nursery: trio.Nursery) -> int:
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        try:
            while True:
                await ws.get_message()
                await ws.send_message(RESPONSE_TEXT)
        except ConnectionClosed:
            pass

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return int(server.port)


async def _serve_websockets(nursery: trio.Nursery) -> int:
    from websockets.exceptions import ConnectionClosed
    from websockets.trio.server import serve

    async def handler(ws: Any) -> None:
        try:
            async for _ in ws:
                await ws.send(RESPONSE_TEXT)
        except ConnectionClosed:
            pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
    await nursery.start(
        lambda task_status: serve(
            handler,
            listeners=listeners,
            subprotocols=[SUBPROTOCOL],
            compression=None,
            ping_interval=None,
            task_status=task_status,
        )
    )
    return int(listeners[0].socket.getsockname()[1])


async def _serve_os3p_auth(nursery: trio.Nursery) -> int:
    return await _serve_os3p(nursery, auth=True)


async def _serve_os3p(nursery: trio.Nursery, *, auth: bool = False) -> int:
    # The whole os3p stack on the default transport: handshake rules, the sans-IO Connection with
    # validation both ways and boot gating (acceptance remembered: open registry with
    # previously_accepted), a typed Heartbeat handler.  Not a transport figure: the reference for
    # what a connection costs once everything is on.
    from datetime import UTC, datetime

    from os3p_core import Action
    from os3p_core.payloads import HeartbeatRequest, HeartbeatResponse
    from os3p_trio import (
        Router,
        ServerConfig,
        Session,
        StationRecord,
        hash_authorization_key,
        serve_central_system,
    )

    class Registry:
        async def lookup(self, identity: str) -> StationRecord:
            # With auth, the stored hash is computed here (a store would read it): one HMAC more.
            key_hash = hash_authorization_key(AUTH_SECRET, identity, AUTH_KEY) if auth else None
            return StationRecord(identity, key_hash=key_hash, previously_accepted=True)

        async def remember_boot(self, identity: str, accepted: bool) -> None:
            pass

    router = Router()

    @router.on(Action.HEARTBEAT)
    def heartbeat(session: Session, request: HeartbeatRequest) -> HeartbeatResponse:
        return HeartbeatResponse(current_time=datetime.now(UTC))

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
    await nursery.start(
        lambda task_status: serve_central_system(
            router,
            0,
            registry=Registry(),
            config=ServerConfig(auth_secret=AUTH_SECRET if auth else None),
            listeners=listeners,
            task_status=task_status,
        )
    )
    return int(listeners[0].socket.getsockname()[1])


async def server_main(impl: str) -> None:
    starters = {
        "wsproto": _serve_wsproto,
        "triows": _serve_triows,
        "websockets": _serve_websockets,
        "os3p": _serve_os3p,
        "os3p-auth": _serve_os3p_auth,
    }
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signal_reporter)
        port = await starters[impl](nursery)
        print(f"READY {port}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


# --- load generator ------------------------------------------------------------------------


def _masked_text_frame(payload: bytes) -> bytes:
    # Client frames must be masked (RFC 6455 §5.3); a zero key leaves the payload as is, which is
    # legal on the wire and lets us pre-encode the frame once.
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


REQUEST_FRAME = _masked_text_frame(REQUEST_TEXT)


def _upgrade_request(port: int, n: int) -> bytes:
    key = base64.b64encode(n.to_bytes(16, "big")).decode()
    auth = base64.b64encode(f"BENCH{n}:{AUTH_KEY}".encode()).decode()
    return (
        f"GET /OS3P/BENCH{n} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\nAuthorization: Basic {auth}\r\n\r\n"
    ).encode()


async def _open(port: int, n: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(_upgrade_request(port, n))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise RuntimeError("server closed during handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {buf[:60]!r}")
    return stream


def _frames_complete(buf: bytearray) -> int:
    """Remove every complete server frame from ``buf``; return how many text frames there were."""
    n = 0
    while len(buf) >= 2:
        length = buf[1] & 0x7F
        start = 2
        if length == 126:
            if len(buf) < 4:
                break
            length, start = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                break
            length, start = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < start + length:
            break
        if buf[0] & 0x0F == 0x1:
            n += 1
        del buf[: start + length]
    return n


async def _drive(
    stream: trio.SocketStream, stop_at: float, latencies: list[float], counts: list[int]
) -> None:
    n = 0
    buf = bytearray()
    while trio.current_time() < stop_at:
        t0 = time.perf_counter()
        await stream.send_all(REQUEST_FRAME)
        while not _frames_complete(buf):
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise RuntimeError("server closed")
            buf += chunk
        latencies.append(time.perf_counter() - t0)
        n += 1
    counts.append(n)


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5) (utime, stime); [0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stats(proc: subprocess.Popen[str]) -> tuple[int, int]:
    assert proc.stdout is not None
    proc.send_signal(signal.SIGUSR1)
    line = proc.stdout.readline().split()
    return int(line[1].split("=")[1]), int(line[2].split("=")[1])


async def measure(impl: str, connections: int, seconds: float, idle: int) -> dict[str, float]:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, __file__, "server", "--impl", impl], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"{impl}: server did not start: {line!r}")
        port = int(line.split()[1])
        result: dict[str, float] = {}
        # Throughput: `connections` stations, one call in flight each.
        streams = [await _open(port, i) for i in range(connections)]
        latencies: list[float] = []
        counts: list[int] = []
        cpu0 = _cpu(proc.pid)
        t0 = time.perf_counter()
        with trio.fail_after(seconds + 30):
            async with trio.open_nursery() as nursery:
                stop_at = trio.current_time() + seconds
                for s in streams:
                    nursery.start_soon(_drive, s, stop_at, latencies, counts)
        elapsed = time.perf_counter() - t0
        cpu = _cpu(proc.pid) - cpu0
        total = sum(counts)
        latencies.sort()
        result["msgs_per_s"] = total / elapsed
        result["cpu_us_per_msg"] = cpu / total * 1e6
        result["p50_ms"] = latencies[len(latencies) // 2] * 1e3
        result["p99_ms"] = latencies[int(len(latencies) * 0.99)] * 1e3
        for s in streams:
            await s.aclose()
        await trio.sleep(0.5)
        # Idle connections: RSS and GC-tracked objects per connection.
        objs0, rss0 = _stats(proc)
        idle_streams = []
        with trio.fail_after(120):
            for i in range(idle):
                idle_streams.append(await _open(port, 100000 + i))
        await trio.sleep(0.5)
        objs1, rss1 = _stats(proc)
        result["rss_kib_per_conn"] = (rss1 - rss0) / idle / 1024
        result["objects_per_conn"] = (objs1 - objs0) / idle
        for s in idle_streams:
            await s.aclose()
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def run_main(args: argparse.Namespace) -> None:
    impls = args.impl or list(IMPLS)
    results: dict[str, list[dict[str, float]]] = {i: [] for i in impls}
    for rep in range(args.reps):
        for impl in impls:  # interleaved, so drift in machine load hits every stack alike
            r = await measure(impl, args.connections, args.seconds, args.idle)
            results[impl].append(r)
            print(f"rep {rep + 1} {impl:10s} " + " ".join(f"{k}={v:.1f}" for k, v in r.items()), flush=True)
    keys = ["msgs_per_s", "cpu_us_per_msg", "p50_ms", "p99_ms", "rss_kib_per_conn", "objects_per_conn"]
    print()
    print(
        f"median of {args.reps} reps, {args.connections} connections x {args.seconds:g} s, {args.idle} idle"
    )
    print("| impl | " + " | ".join(keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for impl in impls:
        med = {k: statistics.median(r[k] for r in results[impl]) for k in keys}
        print(f"| {impl} | " + " | ".join(f"{med[k]:.1f}" for k in keys) + " |")


async def _handshake_worker(port: int, counter: Iterator[int], finished: list[int]) -> None:
    for n in counter:
        stream = await _open(port, n)
        await stream.aclose()
        finished.append(n)


async def handshakes_main(args: argparse.Namespace) -> None:
    """Upgrades per second: each of ``concurrency`` workers opens a connection, waits for the 101,
    closes, and again; the server's CPU per handshake includes the close (a reconnect storm)."""
    for impl in args.impl or ["wsproto", "os3p", "os3p-auth"]:
        proc = subprocess.Popen(
            [sys.executable, __file__, "server", "--impl", impl], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline().split()[1])
            counter = iter(range(args.count))
            finished: list[int] = []

            cpu0 = _cpu(proc.pid)
            t0 = time.perf_counter()
            with trio.fail_after(300):
                async with trio.open_nursery() as nursery:
                    for _ in range(args.concurrency):
                        nursery.start_soon(_handshake_worker, port, counter, finished)
            elapsed = time.perf_counter() - t0
            done = len(finished)
            await trio.sleep(0.5)  # let the server finish closing
            cpu = _cpu(proc.pid) - cpu0
            print(
                f"{impl:10s} handshakes={done} per_s={done / elapsed:.0f} "
                f"server_cpu_us_per_handshake={cpu / done * 1e6:.0f}",
                flush=True,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("--impl", choices=IMPLS, required=True)
    run = sub.add_parser("run")
    run.add_argument("--impl", choices=IMPLS, action="append")
    run.add_argument("--connections", type=int, default=100)
    run.add_argument("--seconds", type=float, default=5.0)
    run.add_argument("--idle", type=int, default=2000)
    run.add_argument("--reps", type=int, default=3)
    run.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    hs = sub.add_parser("handshakes", help="upgrade rate (reconnect storm)")
    hs.add_argument("--impl", choices=IMPLS, action="append")
    hs.add_argument("--count", type=int, default=3000)
    hs.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    if args.cmd == "server":
        trio.run(server_main, args.impl)
    elif args.cmd == "handshakes":
        trio.run(handshakes_main, args)
    else:
        if args.quick:
            args.connections, args.seconds, args.idle, args.reps = 4, 0.5, 20, 1
        trio.run(run_main, args)


if __name__ == "__main__":
    main()
