"""Throwaway real servers for the tests: PostgreSQL, Redis and HAProxy from Debian's packages.

Each server listens on 127.0.0.1 on a free port, lives in a temporary directory, and is stopped by the
context manager that started it.  Nothing here mocks a server: a test that needs one and cannot start it
fails (``ServerUnavailable``), it never skips.  ``.ci/run`` installs the packages when they are missing.

PostgreSQL runs as the ``postgres`` user when the tests run as root (``initdb`` refuses root).  The tests'
cluster turns ``fsync`` off: durability of the *Central System's* answers is tested by killing the Central
System, never the database server, so the server's own fsync only costs time here.  Benchmarks start their
own cluster with the defaults.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerUnavailable",
    "free_port",
    "haproxy_binary",
    "postgres_server",
    "redis_server",
]


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not start: the test fails with this message."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise ServerUnavailable(f"PostgreSQL's {name} is not installed (Debian package 'postgresql')")
    return candidates[-1]


class PostgresServer:
    """A running PostgreSQL cluster; ``url`` is its ``postgres`` database (superuser, trust auth)."""

    def __init__(self, datadir: Path, port: int, run_as: str | None, fsync: bool = False) -> None:
        self.datadir = datadir
        self.fsync = fsync
        self.port = port
        self._run_as = run_as
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        if self._run_as is None:
            return list(args)
        return ["runuser", "-u", self._run_as, "--", *args]

    def start(self) -> None:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c max_connections=200"
            + ("" if self.fsync else " -c fsync=off -c full_page_writes=off")
        )
        result = subprocess.run(
            self._cmd(_pg_bin("pg_ctl"), "-D", str(self.datadir / "data"), "-o", opts, "-w", "-t", "60",
                      "-l", str(self.datadir / "log"), "start"),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            logfile = self.datadir / "log"
            log = logfile.read_text(errors="replace") if logfile.exists() else ""
            raise ServerUnavailable(f"pg_ctl start failed: {result.stderr.strip()} {log[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``fast`` or ``immediate``, pg_ctl's shutdown modes)."""
        subprocess.run(
            self._cmd(_pg_bin("pg_ctl"), "-D", str(self.datadir / "data"), "-m", mode, "-w", "stop"),
            capture_output=True, text=True,
        )

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        result = subprocess.run(
            [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"'],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise ServerUnavailable(f"CREATE DATABASE failed: {result.stderr.strip()}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def postgres_server(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """Start a PostgreSQL cluster in a temporary directory; stop it and remove the directory afterwards.

    ``fsync=True`` keeps the server's durable defaults (benchmarks); tests turn it off (see above)."""
    run_as = "postgres" if os.geteuid() == 0 else None
    tmp = Path(tempfile.mkdtemp(prefix="os3p-pg-"))
    try:
        if run_as is not None:
            try:
                entry = pwd.getpwnam(run_as)
            except KeyError as exc:
                raise ServerUnavailable("running as root but there is no 'postgres' user") from exc
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        server = PostgresServer(tmp, free_port(), run_as, fsync)
        result = subprocess.run(
            server._cmd(_pg_bin("initdb"), "-D", str(tmp / "data"), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise ServerUnavailable(f"initdb failed: {result.stderr.strip()}")
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RedisServer:
    """A running throwaway Redis server; ``stop()`` / ``start()`` restart it on the same port."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise ServerUnavailable("redis-server is not installed (Debian package 'redis-server')")
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, self._proc, "redis-server")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start redis-server on a free 127.0.0.1 port (no persistence); stop it afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="os3p-redis-"))
    server = RedisServer(tmp, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def haproxy_binary() -> str:
    """The path of Debian's haproxy, or ``ServerUnavailable``."""
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if found is None:
        raise ServerUnavailable("haproxy is not installed (Debian package 'haproxy')")
    return found
