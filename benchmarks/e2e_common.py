"""Shared pieces of the end-to-end benchmarks: starting and stopping a benchmark server process, machine
information, small formatting helpers."""

from __future__ import annotations

import os
import platform
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "e2e_server.py"


class Server:
    """One ``e2e_server.py`` process: started, waited for (``READY``), stopped with SIGTERM (then SIGKILL)."""

    def __init__(
        self, impl: str, *, port: int = 0, host: str = "127.0.0.1", start_timeout: float = 60.0
    ) -> None:
        self.impl = impl
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--impl", impl, "--port", str(port), "--host", host],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            cwd=str(HERE.parent),
        )
        self.pid = self.proc.pid
        self.host = host
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout, start_timeout)
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"{impl} server did not start: {line!r}")
        self.ready = time.monotonic()
        fields = dict(f.split("=", 1) for f in line.split()[2:])
        self.port = int(fields["port"])

    def gc_report(self, timeout: float = 60.0) -> tuple[int, float]:
        """Ask the server for a full garbage collection (SIGUSR1): ``(objects, stall in ms)``."""
        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGUSR1)
        line = _readline(self.proc.stdout, timeout)
        fields = dict(f.split("=", 1) for f in line.split()[1:])
        return int(fields["objects"]), float(fields["full_collect_ms"])

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM, wait (bounded), SIGKILL if needed; returns the seconds it took to exit."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return time.monotonic() - t0

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline(stream: IO[str], timeout: float) -> str:
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return ""
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            return stream.readline()


def loadavg() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def sleep_until(t: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``t``."""
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)
