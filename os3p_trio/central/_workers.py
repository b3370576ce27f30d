"""``os3p-central serve --workers N``: N node processes on one host behind the same WebSocket and API ports.

Each worker is a full cluster node (its own trio loop, its own store connection, node id ``<node-id>-<i>``)
that binds the shared ports with ``SO_REUSEPORT``; the kernel spreads new connections over the workers, and
the cluster's routing (:mod:`._routing`) carries an operator call to whichever worker holds the station.
Each worker raises its own open-file soft limit to the hard limit (one file per station).

The supervisor (this module's :func:`run_workers`) picks the ports (it binds them with ``SO_REUSEPORT`` but
never listens, so it receives no connections), starts the workers, restarts a worker that dies (after a
second; its stations reconnect to the others meanwhile), and on SIGINT/SIGTERM stops them all.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Final

import trio

__all__ = ["raise_open_file_limit", "reuse_port_socket", "reuse_port_trio_listener", "run_workers"]

#: Seconds before a worker that died is started again (a crash loop must not spin).
RESTART_DELAY: Final = 1.0
#: Seconds workers get to exit after SIGTERM before they are killed.
STOP_TIMEOUT: Final = 15.0


def raise_open_file_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def reuse_port_socket(host: str, port: int, *, listen: bool = True, backlog: int = 4096) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and ``SO_REUSEADDR``), listening unless
    ``listen`` is false (the supervisor only reserves the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def reuse_port_trio_listener(host: str, port: int, *, backlog: int = 4096) -> trio.SocketListener:
    """A trio listener on a ``SO_REUSEPORT`` socket (for ``serve_central_system(listeners=...)``)."""
    sock = reuse_port_socket(host, port, backlog=backlog)
    sock.setblocking(False)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def _option_value(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _without_options(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if any(arg.startswith(name + "=") for name in names):
            continue
        out.append(arg)
    return out


def worker_argv(serve_argv: Sequence[str], index: int, node_id: str, port: int, api_port: int) -> list[str]:
    """The ``serve`` arguments of worker ``index``: the supervisor's own, with the chosen ports, its node id
    and ``--reuse-port`` (and without ``--workers``)."""
    rest = _without_options(serve_argv, ["--workers", "--node-id", "--port", "--api-port"])
    return [*rest, "--node-id", f"{node_id}-{index}", "--port", str(port), "--api-port", str(api_port),
            "--reuse-port"]


def run_workers(serve_argv: Sequence[str], workers: int, node_id: str, host: str, port: int, api_host: str,
                api_port: int) -> int:
    """Supervise ``workers`` node processes running ``os3p-central serve`` with ``serve_argv``.  Prints the
    URLs once every worker listens, like a single ``serve`` does; returns the exit status."""
    # Reserve the ports (SO_REUSEPORT, bound, not listening: no connection is ever queued here).
    ws_sock = reuse_port_socket(host, port, listen=False)
    api_sock = reuse_port_socket(api_host, api_port, listen=False)
    port, api_port = ws_sock.getsockname()[1], api_sock.getsockname()[1]
    command = [sys.executable, "-m", "os3p_trio.central.cli", "serve"]
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(index: int, *, read_urls: bool) -> subprocess.Popen[bytes]:
        argv = worker_argv(serve_argv, index, node_id, port, api_port)
        stdout = subprocess.PIPE if read_urls else subprocess.DEVNULL
        return subprocess.Popen([*command, *argv], stdout=stdout, stderr=None)

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for index in range(workers):
            procs[index] = start(index, read_urls=True)
        for index, proc in procs.items():
            assert proc.stdout is not None
            # Each worker prints "websocket URL" then "api URL" once it listens.
            for _ in range(2):
                line = proc.stdout.readline()
                if not line:
                    print(f"os3p-central: worker {index} exited before listening", file=sys.stderr)
                    return 2
        scheme_host = f"[{host}]" if ":" in host else host
        api_scheme_host = f"[{api_host}]" if ":" in api_host else api_host
        path = _option_value(serve_argv, "--path") or "/OS3P"
        print(f"websocket ws://{scheme_host}:{port}{path}", flush=True)
        print(f"api http://{api_scheme_host}:{api_port}", flush=True)
        print(f"workers {workers} pids {' '.join(str(p.pid) for p in procs.values())}", flush=True)
        died_at: dict[int, float] = {}
        while not stopping:
            time.sleep(0.2)
            for index, proc in list(procs.items()):
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                if index not in died_at:
                    print(f"os3p-central: worker {index} (pid {proc.pid}) exited with {proc.returncode}; "
                          f"restarting in {RESTART_DELAY:.0f} s", file=sys.stderr, flush=True)
                    died_at[index] = now
                elif now - died_at[index] >= RESTART_DELAY:
                    del died_at[index]
                    procs[index] = start(index, read_urls=False)  # same URLs: nothing to read
        return 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ws_sock.close()
        api_sock.close()
