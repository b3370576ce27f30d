"""A lean OS³P load generator for the end-to-end benchmarks (``e2e_compare.py``, ``e2e_scale.py``).

It must cost the same whatever server it drives, so it does no protocol work at all:

- its own minimal WebSocket client on non-blocking sockets and ``select.epoll`` (no trio, no asyncio, no
  wsproto): the upgrade request is written by hand, server frames are split by their length header only;
- requests are pre-encoded frames: ``<header>[2,"`` + an 8-hex-digit message id + ``","Heartbeat",{}]``
  (the id is the only part that changes, and its width is fixed, so the header is built once); frames are
  masked with the all-zero key (legal, RFC 6455 §5.3 — the server cannot tell — and it spares the XOR);
- an answer is checked by one byte (``[3`` = CALLRESULT, anything else counts as an error); nothing is
  decoded.

Several worker processes (``multiprocessing``, fork) each hold a share of the connections, each bound to its
own 127.0.0.x source address (so more than ~28,000 connections never run out of ephemeral ports), and each
runs one epoll loop that also watches its command pipe: between commands it still answers pings and notices
closes.  Every connection boots first (BootNotification, waiting for the answer) because os3p gates every
other call on the boot (PROTOCOL-DECISIONS §5).  Each connection keeps at most one call in flight, the
OCPP-J rule (PROTOCOL-DECISIONS §4).

Bounds: every command has a deadline, every run a duration and a call budget, every worker a lifetime
(``max_lifetime``) and it exits when its parent dies.  Loopback only.

Server-side figures (CPU, RSS) are read from ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` by the
coordinator (``proc_cpu_seconds``, ``proc_rss_kib``, ``proc_hwm_kib``).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import heapq
import json
import multiprocessing as mp
import os
import random
import select
import socket
import time
from array import array
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from typing import Any

__all__ = [
    "KINDS",
    "LoadGen",
    "proc_cpu_seconds",
    "proc_hwm_kib",
    "proc_rss_kib",
    "summarize",
]

SUBPROTOCOL = "OS3P1.0"
# Linux: defer the choice of the source port to connect(), so a bound socket can share ports with other
# destinations (include/uapi/linux/in.h).
IP_BIND_ADDRESS_NO_PORT = 24

# --- the messages (the same as benchmarks/core_bench.py) ---------------------------------------------------

from bench_messages import BOOT_PAYLOAD, METER_PAYLOAD  # noqa: E402  (benchmarks/ is sys.path[0])

#: Message kinds the generator can send: name -> (action, payload).
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "boot": ("BootNotification", BOOT_PAYLOAD),
    "heartbeat": ("Heartbeat", {}),
    "meter": ("MeterValues", METER_PAYLOAD),
}

_ID_WIDTH = 8


def _frame_parts(kind: str) -> tuple[bytes, bytes]:
    """``(head, tail)``: a frame is ``head + id + tail`` with an id of exactly ``_ID_WIDTH`` bytes."""
    action, payload = KINDS[kind]
    prefix = b'[2,"'
    tail = ('","' + action + '",' + json.dumps(payload, separators=(",", ":")) + "]").encode()
    length = len(prefix) + _ID_WIDTH + len(tail)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    elif length < 65536:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + prefix, tail


def _control_frame(opcode: int, payload: bytes) -> bytes:
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


def _upgrade_request(host: str, port: int, path: str, identity: str, n: int) -> bytes:
    key = base64.b64encode(n.to_bytes(16, "big")).decode()
    return (
        f"GET {path}/{identity} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    ).encode()


# --- /proc readers ------------------------------------------------------------------------------------------

_TICK = float(os.sysconf("SC_CLK_TCK"))


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def proc_rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` now (KiB)."""
    return _status_kib(pid, "VmRSS:")


def proc_hwm_kib(pid: int) -> int:
    """Peak resident set size of ``pid`` over its life (KiB)."""
    return _status_kib(pid, "VmHWM:")


# --- the worker ---------------------------------------------------------------------------------------------

# Connection states.
IDLE = 0  # not connected yet / waiting for a retry
CONNECTING = 1
HANDSHAKE = 2
BOOTING = 3
READY = 4  # booted, no call in flight
WAITING = 5  # one call in flight
CLOSED = 6  # lost, not to be retried
FAILED = 7  # gave up connecting

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLERR = select.EPOLLERR | select.EPOLLHUP


class _Conn:
    __slots__ = (
        "attempts",
        "boots",
        "fails",
        "fd",
        "identity",
        "idx",
        "owed",
        "rbuf",
        "seq",
        "sock",
        "started",
        "state",
        "t0",
        "wbuf",
    )

    def __init__(self, idx: int, identity: str) -> None:
        self.idx = idx
        self.identity = identity
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = IDLE
        self.rbuf = bytearray()
        self.wbuf = b""
        self.t0 = 0.0
        self.seq = 0
        self.attempts = 0
        self.boots = 0
        self.fails = 0  # consecutive failed attempts (exponential back-off)
        self.started = 0.0  # when the current connection attempt began
        self.owed = False  # paced mode: a send fell due while a call was in flight


class _Worker:
    def __init__(self, wid: int, pipe: Pipe, source: str, max_lifetime: float) -> None:
        self.wid = wid
        self.pipe = pipe
        self.source = source
        self.deadline_of_life = time.monotonic() + max_lifetime
        self.parent = os.getppid()
        self.ep = select.epoll()
        self.ep.register(pipe.fileno(), _EPOLLIN)
        self.by_fd: dict[int, _Conn] = {}
        self.conns: list[_Conn] = []
        self.timers: list[tuple[float, int, int, int]] = []  # (due, tiebreak, conn index, kind)
        self.tiebreak = 0
        self.host = "127.0.0.1"
        self.port = 0
        self.path = "/OS3P"
        self.task: dict[str, Any] | None = None
        self.parts = {k: _frame_parts(k) for k in KINDS}
        self.run_kind = "heartbeat"
        self.connecting = 0
        self.pending_connect: list[_Conn] = []
        self.max_concurrent = 256
        self.retry_delay = 0.25
        self.retry_cap = 2.0
        self.retry = False  # reconnect a lost connection (reconnect storm)
        self.boot_kind = "boot"
        # run statistics
        self.lat = array("d")
        self.calls = 0
        self.errors = 0
        self.sent = 0
        self.lost = 0
        self.index: dict[int, _Conn] = {}
        self.next_check = 0.0

    # --- sockets ---

    def _start_connect(self, c: _Conn, now: float) -> None:
        c.attempts += 1
        c.started = now
        c.rbuf = bytearray()
        c.wbuf = b""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        try:
            sock.bind((self.source, 0))
            err = sock.connect_ex((self.host, self.port))
        except OSError as exc:
            sock.close()
            self._connect_failed(c, now, exc.errno or 0)
            return
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._connect_failed(c, now, err)
            return
        c.sock = sock
        c.fd = sock.fileno()
        c.state = CONNECTING
        self.by_fd[c.fd] = c
        self.connecting += 1
        self.ep.register(c.fd, _EPOLLOUT)

    def _retry_at(self, c: _Conn, now: float) -> float:
        """Exponential back-off with full jitter (as a fleet's stations do, issue 5): a uniform delay in
        ``[0, min(retry_cap, retry_delay * 2**fails))``.  Without it, stations refused while the server is
        down would hammer the machine with connection attempts and slow the very server they wait for."""
        c.fails += 1
        return now + random.uniform(0.0, min(self.retry_cap, self.retry_delay * 2 ** min(c.fails - 1, 16)))

    def _connect_failed(self, c: _Conn, now: float, err: int) -> None:
        task = self.task
        if task is not None:
            task["failures"] = task.get("failures", 0) + 1
            task.setdefault("errnos", {})
            task["errnos"][str(err)] = task["errnos"].get(str(err), 0) + 1
        if self.retry or (task is not None and task["retry"]):
            c.state = IDLE
            self._schedule(self._retry_at(c, now), c, 1)
        else:
            c.state = FAILED

    def _drop(self, c: _Conn, now: float, *, retry: bool) -> None:
        """Forget the socket of ``c``; retry later (a new connection) when ``retry``."""
        if c.sock is not None:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.ep.unregister(c.fd)
            self.by_fd.pop(c.fd, None)
            with contextlib.suppress(OSError):
                c.sock.close()
            c.sock = None
            c.fd = -1
        if c.state in (CONNECTING, HANDSHAKE, BOOTING):
            self.connecting -= 1
        was_open = c.state in (READY, WAITING)
        c.rbuf = bytearray()
        c.wbuf = b""
        c.owed = False
        if retry:
            c.state = IDLE
            self._schedule(self._retry_at(c, now), c, 1)
        else:
            c.state = CLOSED
            if was_open:
                self.lost += 1

    def _send(self, c: _Conn, data: bytes, now: float) -> None:
        sock = c.sock
        if sock is None:
            return  # dropped meanwhile
        if c.wbuf:
            c.wbuf += data
            return
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._lost(c, now)
            return
        if n < len(data):
            c.wbuf = data[n:]
            self.ep.modify(c.fd, _EPOLLIN | _EPOLLOUT)

    def _send_call(self, c: _Conn, kind: str, now: float) -> None:
        head, tail = self.parts[kind]
        c.seq += 1
        c.t0 = time.monotonic()
        if c.state != BOOTING:
            c.state = WAITING
        self._send(c, head + b"%08x" % (c.seq & 0xFFFFFFFF) + tail, now)

    def _lost(self, c: _Conn, now: float) -> None:
        booting = c.state in (CONNECTING, HANDSHAKE, BOOTING)
        if booting and self.task is not None and self.task["name"] in ("open", "storm"):
            self.task["failures"] = self.task.get("failures", 0) + 1
        self._drop(c, now, retry=self.retry or (booting and self.task is not None and self.task["retry"]))

    # --- events ---

    def _on_event(self, c: _Conn, ev: int, now: float) -> None:
        state = c.state
        if state == CONNECTING:
            assert c.sock is not None
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                with contextlib.suppress(OSError, KeyError, ValueError):
                    self.ep.unregister(c.fd)
                self.by_fd.pop(c.fd, None)
                c.sock.close()
                c.sock = None
                c.fd = -1
                self.connecting -= 1
                self._connect_failed(c, now, err)
                return
            c.state = HANDSHAKE
            self.ep.modify(c.fd, _EPOLLIN)
            self._send(c, _upgrade_request(self.host, self.port, self.path, c.identity, c.idx), now)
            return
        if ev & _EPOLLOUT and c.wbuf:
            assert c.sock is not None
            try:
                n = c.sock.send(c.wbuf)
            except BlockingIOError:
                n = 0
            except OSError:
                self._lost(c, now)
                return
            c.wbuf = c.wbuf[n:]
            if not c.wbuf:
                self.ep.modify(c.fd, _EPOLLIN)
        if not ev & (_EPOLLIN | _EPOLLERR):
            return
        assert c.sock is not None
        try:
            data = c.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            self._lost(c, now)
            return
        if not data:
            self._lost(c, now)
            return
        rbuf = c.rbuf
        rbuf += data
        if c.state == HANDSHAKE:
            end = rbuf.find(b"\r\n\r\n")
            if end < 0:
                if len(rbuf) > 16384:
                    self._lost(c, now)
                return
            if not rbuf.startswith(b"HTTP/1.1 101"):
                self._lost(c, now)
                return
            del rbuf[: end + 4]
            c.state = BOOTING
            self._send_call(c, self.boot_kind, now)
        self._frames(c, now)

    def _frames(self, c: _Conn, now: float) -> None:
        rbuf = c.rbuf
        pos = 0
        size = len(rbuf)
        while size - pos >= 2:
            b1 = rbuf[pos + 1] & 0x7F
            start = pos + 2
            if b1 == 126:
                if size - pos < 4:
                    break
                b1 = int.from_bytes(rbuf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif b1 == 127:
                if size - pos < 10:
                    break
                b1 = int.from_bytes(rbuf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + b1
            if end > size:
                break
            opcode = rbuf[pos] & 0x0F
            if opcode == 1:
                ok = b1 >= 2 and rbuf[start + 1] == 0x33  # "[3": a CALLRESULT
                self._answer(c, ok, now)
            elif opcode == 8:
                # RFC 6455 §5.5.1: echo the close, then drop the connection.
                code = bytes(rbuf[start : start + 2]) if b1 >= 2 else b""
                if c.sock is not None:
                    with contextlib.suppress(OSError):
                        c.sock.send(_control_frame(8, code))
                self._lost(c, now)
                return
            elif opcode == 9:
                self._send(c, _control_frame(10, bytes(rbuf[start:end])), now)
            pos = end
        if pos:
            del rbuf[:pos]

    def _answer(self, c: _Conn, ok: bool, now: float) -> None:
        if c.state == BOOTING:
            self.connecting -= 1
            if not ok:
                # Boot refused: a configuration problem, not load; count and stop this connection.
                task = self.task
                if task is not None:
                    task["boot_errors"] = task.get("boot_errors", 0) + 1
                c.state = FAILED
                self._drop(c, now, retry=False)
                return
            c.state = READY
            c.boots += 1
            c.fails = 0
            task = self.task
            if task is not None and task["name"] in ("open", "storm"):
                task["booted"] += 1
                task["times"].append(now - c.started)
                task["last"] = now
            return
        if c.state != WAITING:
            return  # not ours (a server-initiated call?): ignore
        c.state = READY
        task = self.task
        if task is None or task["name"] != "run":
            return
        now = time.monotonic()
        if c.t0 >= task["measure_from"] and now <= task["stop"]:
            self.calls += 1
            self.lat.append(now - c.t0)
            if not ok:
                self.errors += 1
        if now < task["stop"] and self.sent < task["max_calls"] and (task["mode"] == "closed" or c.owed):
            c.owed = False
            self.sent += 1
            self._send_call(c, self.run_kind, now)

    # --- timers ---

    def _schedule(self, due: float, c: _Conn, kind: int) -> None:
        self.tiebreak += 1
        heapq.heappush(self.timers, (due, self.tiebreak, c.idx, kind))

    def _fire_timers(self, now: float) -> None:
        timers = self.timers
        task = self.task
        while timers and timers[0][0] <= now:
            due, _, idx, kind = heapq.heappop(timers)
            c = self.index[idx]
            if kind == 1:  # (re)connect
                if c.state != IDLE:
                    continue
                if task is not None and now >= task["deadline"]:
                    c.state = FAILED
                    continue
                if self.connecting >= self.max_concurrent:
                    self.pending_connect.append(c)
                    continue
                self._start_connect(c, now)
            elif kind == 2:  # paced call
                if task is None or task["name"] != "run" or now >= task["stop"]:
                    continue
                if c.state == READY and self.sent < task["max_calls"]:
                    self.sent += 1
                    self._send_call(c, self.run_kind, now)
                elif c.state == WAITING:
                    c.owed = True
                nxt = due + task["interval"]
                if nxt < task["stop"]:
                    self._schedule(nxt, c, 2)
            elif kind == 3:  # closed-loop start
                if task is None or task["name"] != "run":
                    continue
                if c.state == READY and self.sent < task["max_calls"]:
                    self.sent += 1
                    self._send_call(c, self.run_kind, now)
        while self.pending_connect and self.connecting < self.max_concurrent:
            c = self.pending_connect.pop()
            if c.state == IDLE:
                if task is not None and now >= task["deadline"]:
                    c.state = FAILED
                    continue
                self._start_connect(c, now)

    # --- commands ---

    def _command(self, msg: tuple[Any, ...], now: float) -> bool:
        name = msg[0]
        args: dict[str, Any] = msg[1] if len(msg) > 1 else {}
        if name == "quit":
            return False
        if name == "open":
            self.host, self.port, self.path = args["host"], args["port"], args["path"]
            self.max_concurrent = args["concurrency"]
            self.retry_delay = args["retry_delay"]
            new = [_Conn(i, f"{args['prefix']}{i:06d}") for i in args["indices"]]
            for c in new:
                self.index[c.idx] = c
            self.conns.extend(new)
            self.task = {
                "name": "open",
                "targets": new,
                "booted": 0,
                "times": [],
                "started": now,
                "last": now,
                "deadline": now + args["timeout"],
                "retry": args["retry"],
            }
            # Start in order; the rest wait for a free slot.
            self.pending_connect.extend(reversed(new))
            self._fire_timers(now)
        elif name == "run":
            self.run_kind = args["kind"]
            self.lat = array("d")
            self.calls = self.errors = self.sent = self.lost = 0
            start = args["start_at"]
            self.task = {
                "name": "run",
                "mode": args["mode"],
                "measure_from": start + args["warmup"],
                "stop": start + args["warmup"] + args["seconds"],
                "interval": args.get("interval", 0.0),
                "max_calls": args["max_calls"],
                "deadline": start + args["warmup"] + args["seconds"] + args["drain"],
                "retry": False,
            }
            for c in self.conns:
                if c.state != READY:
                    continue
                if args["mode"] == "closed":
                    self._schedule(start, c, 3)
                else:
                    self._schedule(start + random.uniform(0.0, args["interval"]), c, 2)
        elif name == "storm":
            # Arm: every connection that is lost from now on reconnects and boots again.
            self.retry = True
            self.retry_delay = args["retry_delay"]
            self.retry_cap = args["retry_cap"]
            self.max_concurrent = args["concurrency"]
            self.task = {
                "name": "storm",
                "booted": 0,
                "times": [],
                "started": now,
                "last": now,
                "deadline": now + args["timeout"],
                "retry": True,
                "base_boots": {c.idx: c.boots for c in self.conns},
            }
        elif name == "close":
            self.retry = False
            self.task = None
            n = 0
            for c in self.conns:
                if c.sock is not None:
                    if c.state in (READY, WAITING):
                        with contextlib.suppress(OSError):
                            c.sock.send(_control_frame(8, (1000).to_bytes(2, "big")))
                    self._drop(c, now, retry=False)
                    n += 1
            self.conns = []
            self.index = {}
            self.timers = []
            self.pending_connect = []
            self.connecting = 0
            self.pipe.send({"closed": n})
        elif name == "status":
            counts: dict[int, int] = {}
            for c in self.conns:
                counts[c.state] = counts.get(c.state, 0) + 1
            self.pipe.send({"states": counts, "lost": self.lost})
        return True

    def _check_task(self, now: float) -> None:
        task = self.task
        if task is None:
            return
        name = task["name"]
        if name == "open":
            targets = task["targets"]
            done = all(c.state in (READY, WAITING, FAILED, CLOSED) for c in targets)
            if done or now >= task["deadline"]:
                booted = sum(1 for c in targets if c.state in (READY, WAITING))
                self.pipe.send(
                    {
                        "booted": booted,
                        "wanted": len(targets),
                        "failures": task.get("failures", 0),
                        "boot_errors": task.get("boot_errors", 0),
                        "errnos": task.get("errnos", {}),
                        "elapsed": task["last"] - task["started"],
                        "times": array("d", task["times"]).tobytes(),
                    }
                )
                self.task = None
        elif name == "run":
            if now < task["stop"]:
                return
            waiting = any(c.state == WAITING for c in self.conns)
            if now >= task["deadline"] or not waiting:
                self.pipe.send(
                    {
                        "calls": self.calls,
                        "errors": self.errors,
                        "sent": self.sent,
                        "lost": self.lost,
                        "unanswered": sum(1 for c in self.conns if c.state == WAITING),
                        "lat": self.lat.tobytes(),
                    }
                )
                # Unanswered calls stay unanswered: mark them ready so the next run can use them.
                for c in self.conns:
                    if c.state == WAITING:
                        c.state = READY
                self.task = None
        elif name == "storm":
            base = task["base_boots"]
            done = all(c.boots > base.get(c.idx, 0) and c.state in (READY, WAITING) for c in self.conns)
            if done or now >= task["deadline"]:
                rebooted = sum(1 for c in self.conns if c.boots > base.get(c.idx, 0) and c.state == READY)
                self.pipe.send(
                    {
                        "rebooted": rebooted,
                        "wanted": len(self.conns),
                        "failures": task.get("failures", 0),
                        "errnos": task.get("errnos", {}),
                        "last": task["last"],
                        "times": array("d", task["times"]).tobytes(),
                    }
                )
                self.retry = False
                self.task = None

    def serve(self) -> None:
        pipe_fd = self.pipe.fileno()
        while True:
            now = time.monotonic()
            if now > self.deadline_of_life or os.getppid() != self.parent:
                return
            timeout = 0.2
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - now))
            events = self.ep.poll(timeout, 4096)
            now = time.monotonic()
            for fd, ev in events:
                if fd == pipe_fd:
                    if not self._command(self.pipe.recv(), now):
                        return
                    continue
                c = self.by_fd.get(fd)
                if c is not None:
                    self._on_event(c, ev, now)
            if self.timers or self.pending_connect:
                self._fire_timers(now)
            if now >= self.next_check:
                # O(connections): at most every 20 ms.
                self.next_check = now + 0.02
                self._check_task(now)


def _worker_main(wid: int, pipe: Pipe, source: str, max_lifetime: float) -> None:
    worker = _Worker(wid, pipe, source, max_lifetime)
    try:
        worker.serve()
    finally:
        for c in worker.conns:
            if c.sock is not None:
                c.sock.close()
        with contextlib.suppress(OSError):
            pipe.close()


# --- the coordinator ----------------------------------------------------------------------------------------


def summarize(lat: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of latencies (seconds in, milliseconds out)."""
    if not lat:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    s = sorted(lat)
    return {
        "p50_ms": s[len(s) // 2] * 1e3,
        "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3,
        "max_ms": s[-1] * 1e3,
    }


class LoadGen:
    """Worker processes holding the connections; every method waits for all workers (bounded).

    ``sources``: source addresses, one per worker in turn (127.0.0.x: all of 127/8 is local on Linux).
    """

    def __init__(
        self,
        workers: int,
        *,
        sources: Sequence[str] = ("127.0.0.1",),
        max_lifetime: float = 3600.0,
        prefix: str = "CS",
    ) -> None:
        ctx = mp.get_context("fork")
        self.pipes: list[Pipe] = []
        self.procs: list[Any] = []
        self.prefix = prefix
        self.next_index = 0
        self.count = [0] * workers
        for i in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(i, child, sources[i % len(sources)], max_lifetime), daemon=True
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def _gather(self, timeout: float) -> list[dict[str, Any]]:
        out = []
        end = time.monotonic() + timeout
        for p in self.pipes:
            if not p.poll(max(0.0, end - time.monotonic())):
                raise TimeoutError("load generator worker did not answer in time")
            out.append(p.recv())
        return out

    def open(
        self,
        n: int,
        *,
        host: str,
        port: int,
        path: str = "/OS3P",
        timeout: float = 120.0,
        concurrency: int = 256,
        retry: bool = True,
        retry_delay: float = 0.25,
    ) -> dict[str, Any]:
        """Open ``n`` more connections (spread evenly over the workers), each booted; wait for them.

        Failed attempts are retried after ``retry_delay`` (with jitter) until ``timeout``.
        """
        t0 = time.monotonic()
        shares = [
            n // len(self.pipes) + (1 if i < n % len(self.pipes) else 0) for i in range(len(self.pipes))
        ]
        for w, (p, share) in enumerate(zip(self.pipes, shares, strict=True)):
            indices = list(range(self.next_index, self.next_index + share))
            self.next_index += share
            self.count[w] += share
            p.send(
                (
                    "open",
                    {
                        "host": host,
                        "port": port,
                        "path": path,
                        "indices": indices,
                        "prefix": self.prefix,
                        "timeout": timeout,
                        "concurrency": concurrency,
                        "retry": retry,
                        "retry_delay": retry_delay,
                    },
                )
            )
        res = self._gather(timeout + 30)
        times: list[float] = []
        for r in res:
            times.extend(array("d", r["times"]))
        return {
            "booted": sum(r["booted"] for r in res),
            "wanted": n,
            "failures": sum(r["failures"] for r in res),
            "boot_errors": sum(r["boot_errors"] for r in res),
            "errnos": _merge_counts(r["errnos"] for r in res),
            "elapsed": time.monotonic() - t0,
            **{f"connect_{k}": v for k, v in summarize(times).items()},
        }

    def start_run(
        self,
        kind: str,
        *,
        mode: str = "closed",
        seconds: float,
        warmup: float = 0.0,
        interval: float = 0.0,
        max_calls: int = 10_000_000,
        drain: float = 10.0,
        lead: float = 0.1,
    ) -> tuple[float, float, float]:
        """Start a run on every worker; returns ``(start, measure_from, stop)`` (``time.monotonic``).

        ``closed``: each connection sends its next call as soon as the answer arrives (throughput);
        ``paced``: each connection calls every ``interval`` seconds from a random phase (stations).
        ``max_calls`` bounds the calls each worker sends.  Collect with :meth:`finish_run`.
        """
        start = time.monotonic() + lead
        for p in self.pipes:
            p.send(
                (
                    "run",
                    {
                        "kind": kind,
                        "mode": mode,
                        "start_at": start,
                        "warmup": warmup,
                        "seconds": seconds,
                        "interval": interval,
                        "max_calls": max_calls,
                        "drain": drain,
                    },
                )
            )
        self._run_end = start + warmup + seconds + drain
        return start, start + warmup, start + warmup + seconds

    def finish_run(self, seconds: float) -> dict[str, Any]:
        """Wait for the run and merge the workers' results: calls/s over ``seconds``, latencies, errors."""
        res = self._gather(max(0.0, self._run_end - time.monotonic()) + 30)
        lat = array("d")
        for r in res:
            lat.frombytes(r["lat"])
        calls = sum(r["calls"] for r in res)
        return {
            "calls": calls,
            "calls_per_s": calls / seconds if seconds > 0 else 0.0,
            "errors": sum(r["errors"] for r in res),
            "lost": sum(r["lost"] for r in res),
            "unanswered": sum(r["unanswered"] for r in res),
            **summarize(lat),
        }

    def start_storm(
        self, *, timeout: float, retry_delay: float = 0.25, retry_cap: float = 2.0, concurrency: int = 100_000
    ) -> None:
        """Arm the reconnect storm: every connection lost from now on reconnects (exponential back-off with
        full jitter from ``retry_delay`` up to ``retry_cap`` seconds, again and again until ``timeout``) and
        boots again.  Collect with :meth:`finish_storm`."""
        args = {
            "timeout": timeout,
            "retry_delay": retry_delay,
            "retry_cap": retry_cap,
            "concurrency": concurrency,
        }
        for p in self.pipes:
            p.send(("storm", args))
        self._storm_end = time.monotonic() + timeout

    def finish_storm(self) -> dict[str, Any]:
        """Wait until every connection has reconnected and booted again (or the timeout)."""
        res = self._gather(max(0.0, self._storm_end - time.monotonic()) + 30)
        times: list[float] = []
        for r in res:
            times.extend(array("d", r["times"]))
        return {
            "rebooted": sum(r["rebooted"] for r in res),
            "wanted": sum(r["wanted"] for r in res),
            "failures": sum(r["failures"] for r in res),
            "errnos": _merge_counts(r["errnos"] for r in res),
            "last": max(r["last"] for r in res),
            **{f"attempt_{k}": v for k, v in summarize(times).items()},
        }

    def status(self) -> dict[str, Any]:
        """Connection states over all workers (for diagnostics)."""
        for p in self.pipes:
            p.send(("status",))
        res = self._gather(30)
        return {
            "states": _merge_counts({str(k): v for k, v in r["states"].items()} for r in res),
            "lost": sum(r["lost"] for r in res),
        }

    def close_all(self) -> int:
        """Close every connection (close frame, then the socket)."""
        for p in self.pipes:
            p.send(("close",))
        n = sum(int(r["closed"]) for r in self._gather(60))
        self.count = [0] * len(self.pipes)
        return n

    def shutdown(self) -> None:
        """Stop every worker process (bounded: terminate, then kill)."""
        for p in self.pipes:
            with contextlib.suppress(OSError, BrokenPipeError):
                p.send(("quit",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for p in self.pipes:
            p.close()

    def __enter__(self) -> LoadGen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _merge_counts(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out
