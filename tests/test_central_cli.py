"""``os3p-central`` as a process: ``stations add/list/show``, ``serve`` printing its URLs and stopping cleanly
on SIGTERM and SIGINT, and crash consistency of the whole service: kill -9 while a fleet sends MeterValues,
then every value whose CALLRESULT a station received is in the database after restart."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from os3p_trio.central import open_sqlite_store
from os3p_trio.central.cli import main

KEY = "fedcba9876543210fedc"
BOOT = {
    "vendor": "BrandX",
    "model": "SUBS-A1",
    "stationNumber": "1",
    "serialNumber": "S1",
    "firmwareVersion": "1.0.0",
    "iccid": "1",
    "imsi": "1",
}
CLI = [sys.executable, "-m", "os3p_trio.central.cli"]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``os3p-central`` in this process (as its entry point does) and capture its output.

    Called from a worker thread when a trio loop runs (``main`` runs its own ``trio.run``)."""
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse
                code = int(exc.code or 0)
    finally:
        sys.stdin = saved_stdin
    return subprocess.CompletedProcess(["os3p-central", *args], code, out.getvalue(), err.getvalue())


async def acli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(lambda: cli(*args, stdin=stdin))


@contextmanager
def serve(db: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """Start ``os3p-central serve`` on loopback, port 0, and return it with its WebSocket and API URLs."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--db", str(db), "--port", "0", "--api-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ws_line = proc.stdout.readline()
        api_line = proc.stdout.readline()
        assert ws_line.startswith("websocket ws://127.0.0.1:"), ws_line + (
            proc.stderr.read() if proc.stderr else ""
        )
        assert api_line.startswith("api http://127.0.0.1:"), api_line
        yield proc, ws_line.split()[1], api_line.split()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def wait_exit(proc: subprocess.Popen[str], timeout: float = 15) -> int:
    return proc.wait(timeout)


@asynccontextmanager
async def raw_station(
    url: str, identity: str, password: str | None = None
) -> AsyncIterator[WebSocketConnection]:
    headers: list[tuple[bytes, bytes]] = []
    if password is not None:
        headers.append((b"Authorization", b"Basic " + base64.b64encode(f"{identity}:{password}".encode())))
    async with open_websocket_url(f"{url}/{identity}", subprotocols=["OS3P1.0"], extra_headers=headers) as ws:
        yield ws


async def call(ws: WebSocketConnection, unique_id: str, action: str, payload: Mapping[str, Any]) -> list[Any]:
    await ws.send_message(json.dumps([2, unique_id, action, payload]))
    with trio.fail_after(10):
        reply: list[Any] = json.loads(await ws.get_message())
    assert reply[1] == unique_id
    return reply


async def test_stations_commands_and_serve_stops_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "central.sqlite"
    assert (await acli("stations", "list", "--db", str(db))).returncode == 2  # no database yet
    added = await acli("stations", "add", "S1", "--db", str(db), "--password-stdin", stdin=KEY + "\n")
    assert added.returncode == 0, added.stderr
    assert (await acli("stations", "add", "S2", "--db", str(db))).returncode == 0
    generated = await acli("stations", "add", "S4", "--db", str(db), "--generate-password")
    assert generated.returncode == 0
    generated_key = generated.stdout.split("password ", 1)[1].strip()
    assert len(bytes.fromhex(generated_key)) == 20
    assert (await acli("stations", "add", "S2", "--db", str(db))).returncode == 2  # exists
    assert (await acli("stations", "add", "bad/id", "--db", str(db))).returncode == 2
    assert (
        await acli("stations", "add", "S3", "--db", str(db), "--password-stdin", stdin="short\n")
    ).returncode == 2
    secret = Path(str(db) + ".secret")
    assert secret.stat().st_mode & 0o777 == 0o600
    listed = json.loads((await acli("stations", "list", "--db", str(db), "--json")).stdout)
    assert [(s["identity"], s["hasPassword"]) for s in listed] == [("S1", True), ("S2", False), ("S4", True)]

    with serve(db, "--heartbeat-interval", "45") as (proc, ws_url, _api_url):
        assert ws_url.endswith("/OS3P")
        async with raw_station(ws_url, "S1", KEY) as ws:
            boot = await call(ws, "1", "BootNotification", BOOT)
            assert boot[2] == {"status": "Accepted", "currentTime": boot[2]["currentTime"], "interval": 45}
            meter = {
                "meterValue": [
                    {
                        "timestamp": "2026-11-26T10:00:00Z",
                        "sampledValue": [{"value": "230.1", "measurand": "Voltage.L1N", "unit": "V"}],
                    }
                ]
            }
            assert (await call(ws, "2", "MeterValues", meter))[0] == 3
            switch = {"contactorId": 1, "status": "On", "timestamp": "2026-11-26T16:30:00Z"}
            assert (await call(ws, "3", "StreetlightStatusNotification", switch))[0] == 3
            # stations show reads the database while the service runs (WAL).
            shown = await acli("stations", "show", "S1", "--db", str(db))
            assert shown.returncode == 0
            assert "connected since" in shown.stdout
            assert "Accepted" in shown.stdout
            assert "Voltage.L1N" in shown.stdout
            assert "contactor 1    On" in shown.stdout
            as_json = json.loads((await acli("stations", "show", "S1", "--db", str(db), "--json")).stdout)
            assert as_json["station"]["bootFields"] == BOOT
            # The generated key works too.
            async with raw_station(ws_url, "S4", generated_key) as ws4:
                assert (await call(ws4, "1", "BootNotification", BOOT))[0] == 3
            # Wrong password: refused before the upgrade.
            with pytest.raises(Exception, match="401"):
                async with raw_station(ws_url, "S2", "nope-nope-nope-nope"):
                    pass
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                with trio.fail_after(10):
                    await ws.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1001  # going away: a graceful shutdown
        assert await trio.to_thread.run_sync(wait_exit, proc) == 0
    assert (await acli("stations", "show", "nobody", "--db", str(db))).returncode == 2
    after = json.loads((await acli("stations", "show", "S1", "--db", str(db), "--json")).stdout)
    assert after["station"]["connected"] is False

    flags = ["--open-registration", "--auth", "none", "--host", "127.0.0.1", "--path", "/ocpp/OS3P"]
    with serve(db, *flags, "--boot-status", "Pending", "--retry-interval", "7") as (proc, ws_url, _api):
        assert ws_url.startswith("ws://127.0.0.1:")
        assert ws_url.endswith("/ocpp/OS3P")  # the printed URL names the endpoint served
        async with raw_station(ws_url, "NEWCOMER") as ws:
            boot = await call(ws, "1", "BootNotification", BOOT)
            assert (boot[0], boot[2]["status"], boot[2]["interval"]) == (3, "Pending", 7)
        proc.send_signal(signal.SIGINT)
        assert await trio.to_thread.run_sync(wait_exit, proc) == 0
    assert "NEWCOMER" in (await acli("stations", "list", "--db", str(db))).stdout
    refused = await acli("serve", "--db", str(db), "--open-registration", "--port", "0", "--api-port", "0")
    assert refused.returncode == 2
    assert "--auth none" in refused.stderr


async def test_kill_9_service_loses_no_acknowledged_meter_value(tmp_path: Path) -> None:
    db = tmp_path / "central.sqlite"
    acknowledged: set[tuple[str, str]] = set()
    stations = [f"F{i}" for i in range(6)]
    enough = trio.Event()

    with serve(db, "--open-registration", "--auth", "none") as (proc, ws_url, _api):

        async def station(identity: str) -> None:
            try:
                async with raw_station(ws_url, identity) as ws:
                    assert (await call(ws, "b", "BootNotification", BOOT))[0] == 3
                    for k in itertools.count():
                        ts = f"2026-11-26T{k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"
                        values = [
                            {"value": str(k), "measurand": "Frequency"},
                            {"value": str(k), "measurand": "Current.L1", "unit": "A"},
                        ]
                        reply = await call(
                            ws,
                            f"m{k}",
                            "MeterValues",
                            {"meterValue": [{"timestamp": ts, "sampledValue": values}]},
                        )
                        assert reply[0] == 3
                        # A CALLRESULT: PROTOCOL-DECISIONS §7 says this value is committed.
                        acknowledged.add((identity, ts))
                        if len(acknowledged) >= 300:
                            enough.set()
            except (ConnectionClosed, OSError, trio.BrokenResourceError):
                return  # the service was killed under us

        async with trio.open_nursery() as nursery:
            for identity in stations:
                nursery.start_soon(station, identity)
            with trio.fail_after(30):
                await enough.wait()
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: batches are being written and committed
            with trio.fail_after(10):
                while proc.poll() is None:
                    await trio.sleep(0.01)
            # Whatever CALLRESULTs were already in flight still count: let the stations read them.
    assert proc.returncode == -signal.SIGKILL

    # Restart: the store reopens the file as the service does (WAL recovery).
    async with open_sqlite_store(db) as store:
        stored: set[tuple[str, str]] = set()
        for identity in stations:
            for row in await store.meter_values(identity, measurand="Frequency", limit=100_000):
                k = int(row.value)
                stored.add((identity, f"2026-11-26T{k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"))
            # Each MeterValues is atomic: both sampled values or neither.
            assert len(await store.meter_values(identity, measurand="Current.L1", limit=100_000)) == len(
                await store.meter_values(identity, measurand="Frequency", limit=100_000)
            )
        assert await store.mark_all_disconnected(0.0) == len(stations)  # the crash left them "connected"
    assert len(acknowledged) >= 300
    assert sorted(acknowledged - stored) == []
