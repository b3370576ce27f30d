"""Firmware update and GetFile end to end: the station model, its HTTP transfers, a local HTTP server."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trustme
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from os3p_sim import (
    Download,
    Output,
    Reboot,
    SQLiteStore,
    Station,
    StationConfig,
    TransferConfig,
    TransferError,
    Upload,
    download,
    perform_transfer,
    transfer_client,
    upload,
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class FileServer:
    """A tiny ASGI app: GET serves ``files`` (after ``failures`` 503s), PUT stores the body by path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.failures = 0
        self.gets = 0
        self.puts: list[tuple[str, dict[str, str], bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        status, out = 404, b"not found"
        if scope["method"] == "GET":
            self.gets += 1
            if self.failures > 0:
                self.failures -= 1
                status, out = 503, b"busy"
            elif path in self.files:
                status, out = 200, self.files[path]
        elif scope["method"] == "PUT":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.puts.append((path, headers, body))
            status, out = 201, b""
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        await send({"type": "http.response.body", "body": out})


@contextlib.asynccontextmanager
async def _file_server(nursery: trio.Nursery, tls_pem: Path | None = None
                       ) -> AsyncIterator[tuple[FileServer, str]]:
    """Hypercorn on 127.0.0.1 (port 0) serving a :class:`FileServer`, with TLS when ``tls_pem`` (key and
    certificate chain in one PEM file) is given."""
    app = FileServer()
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    if tls_pem is not None:
        config.certfile = config.keyfile = str(tls_pem)
    done = trio.Event()

    async def shutdown_trigger() -> None:
        await done.wait()

    urls = await nursery.start(functools.partial(serve, app, config,  # type: ignore[arg-type]
                                                 shutdown_trigger=shutdown_trigger))
    try:
        yield app, urls[0]
    finally:
        done.set()


async def serve_files(nursery: trio.Nursery) -> AsyncIterator[tuple[FileServer, str]]:
    """A :class:`FileServer` on 127.0.0.1 (port 0) for one test: (app, base URL).  Also used by
    test_sim_live."""
    async with _file_server(nursery) as served:
        yield served


@attrs.frozen
class TLSFiles:
    """An https file server: the app, its base URL, a context trusting its CA, and one that does not."""

    app: FileServer
    base: str
    trusted: ssl.SSLContext
    untrusted: ssl.SSLContext


async def serve_files_tls(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[TLSFiles]:
    """A :class:`FileServer` over https on 127.0.0.1 (port 0), its certificate issued by a fresh trustme CA.
    ``untrusted`` trusts another trustme CA, so verification fails as it would for a wrong certificate."""
    ca, other = trustme.CA(), trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    trusted, untrusted = ssl.create_default_context(), ssl.create_default_context()
    ca.configure_trust(trusted)
    other.configure_trust(untrusted)
    async with _file_server(nursery, pem) as (app, base):
        assert base.startswith("https://127.0.0.1:")
        yield TLSFiles(app, base, trusted, untrusted)


server = pytest.fixture(serve_files, name="server")
tls_server = pytest.fixture(serve_files_tls, name="tls_server")


async def test_download_and_upload_primitives(server: tuple[FileServer, str]) -> None:
    app, base = server
    app.files["/a.bin"] = b"x" * 1000
    assert await download(f"{base}/a.bin", max_size=1000) == b"x" * 1000
    with pytest.raises(TransferError, match="more than"):
        await download(f"{base}/a.bin", max_size=999)
    with pytest.raises(TransferError, match="404"):
        await download(f"{base}/missing", max_size=10)
    with pytest.raises(TransferError, match="scheme"):
        await download("ftp://127.0.0.1/x", max_size=10)
    await upload(f"{base}/files/SUB 1/", "f 1.txt", b"hello")
    path, headers, body = app.puts[0]
    assert (path, headers["content-type"], body) == ("/files/SUB 1/f 1.txt", "text/plain", b"hello")


Sent = list[tuple[str, dict[str, Any]]]


async def _run(
    station: Station,
    store: SQLiteStore,
    until_done: Callable[[Sent], bool],
    max_virtual: float,
    downloads: list[float] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Sent:
    """Drive the station with a clock that jumps to its deadlines (transfers are real HTTP on loopback).

    ``downloads`` collects the virtual instant of every download attempt."""
    sent: Sent = []
    pending: list[Download | Upload | Reboot] = []
    clock = [station.now]

    def apply(out: Output) -> None:
        store.apply(station.identity, out.change, clock[0])
        sent.extend(out.change.outbox)
        pending.extend(out.effects)

    for _ in range(10_000):
        if until_done(sent):
            return sent
        if pending:
            effect = pending.pop(0)
            if isinstance(effect, Reboot):
                sent.append(("<reboot>", {"firmwareVersion": effect.firmware_version}))
                continue
            if isinstance(effect, Download) and downloads is not None:
                downloads.append(clock[0])
            apply(await perform_transfer(station, effect, store, lambda: clock[0], ssl_context=ssl_context))
            continue
        t = station.next_deadline()
        assert t <= max_virtual, sent
        clock[0] = t
        apply(station.step(t))
    raise AssertionError("bounded loop ran out")


async def test_firmware_update_end_to_end_with_retries(
    server: tuple[FileServer, str], tmp_path: Path
) -> None:
    app, base = server
    app.files["/fw/2.0.0.bin"] = b"OS3PSIM-FIRMWARE 2.0.0\n" + bytes(range(256)) * 64
    app.failures = 2  # the first two attempts get 503
    store = SQLiteStore(str(tmp_path / "fw.db"))
    t0 = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC).timestamp()
    station = Station(
        "SUB-FW", StationConfig(transfers=TransferConfig(install_duration=15.0)), seed=1, now=t0
    )
    store.apply("SUB-FW", station.start(t0).change, t0)
    out = station.handle_call(
        "UpdateFirmware",
        {
            "location": f"{base}/fw/2.0.0.bin",
            "retrieveDate": "2025-06-01T16:00:00+02:00",  # two hours after t0 (14:00 UTC)
            "retries": 3,
            "retryInterval": 20,
            "requestId": "upd-1",
        },
        t0,
    )
    store.apply("SUB-FW", out.change, t0)
    downloads: list[float] = []
    sent = await _run(station, store, lambda s: any(a == "<reboot>" for a, _ in s), t0 + 3 * 3600, downloads)
    statuses = [p["status"] for a, p in sent if a == "FirmwareStatusNotification"]
    assert statuses == ["Downloading", "Downloading", "Downloading", "Downloaded", "Installing", "Installed"]
    assert all(p.get("requestId") == "upd-1" for a, p in sent if a == "FirmwareStatusNotification")
    assert app.gets == 3
    # Nothing before retrieveDate; then an attempt every retryInterval seconds until one succeeds.
    assert downloads == [t0 + 7200, t0 + 7220, t0 + 7240]
    assert sent[-1] == ("<reboot>", {"firmwareVersion": "2.0.0"})
    # The reboot: a new station from the store boots with the new version and needs a BootNotification.
    rebooted = Station("SUB-FW", StationConfig(), seed=1, now=t0 + 3600, stored=store.load("SUB-FW"))
    assert rebooted.boot_fields()["firmwareVersion"] == "2.0.0"


async def test_firmware_download_gives_up_after_retries(
    server: tuple[FileServer, str], tmp_path: Path
) -> None:
    app, base = server
    store = SQLiteStore(str(tmp_path / "fw2.db"))
    t0 = time.time()
    station = Station("SUB-FW2", StationConfig(), seed=1, now=t0)
    station.start(t0)
    station.handle_call(
        "UpdateFirmware",
        {
            "location": f"{base}/nope.bin",
            "retries": 2,
            "retryInterval": 5,
            "retrieveDate": "2020-01-01T00:00:00Z",
        },
        t0,
    )
    sent = await _run(station, store, lambda s: any(p["status"] == "DownloadFailed" for _, p in s), t0 + 60)
    assert [p["status"] for _, p in sent] == ["Downloading", "Downloading", "DownloadFailed"]
    assert app.gets == 2


async def test_get_file_uploads_meter_history_csv_and_log(
    server: tuple[FileServer, str], tmp_path: Path
) -> None:
    app, base = server
    store = SQLiteStore(str(tmp_path / "gf.db"))
    t0 = dt.datetime(2025, 1, 10, 0, tzinfo=dt.UTC).timestamp()
    station = Station("SUB-GF", StationConfig(meter_offset=0.0), seed=2, now=t0)  # readings on the quarter
    store.apply("SUB-GF", station.start(t0).change, t0)
    for _ in range(8):  # two hours of quarter-hour readings
        t = station.next_deadline()
        store.apply("SUB-GF", station.step(t).change, t)
    out = station.handle_call(
        "GetFile",
        {
            "requestId": "get-1",
            "fileType": "MeterValueHistory",
            "location": f"{base}/upload",
            "startTime": "2025-01-10T00:30:00Z",
            "stopTime": "2025-01-10T01:30:00Z",
        },
        t,
    )
    assert out.response == {
        "status": "Accepted",
        "fileName": "MeterValueHistory-SUB-GF-20250110003000-20250110013000.csv",
    }
    store.apply("SUB-GF", out.change, t)
    (effect,) = out.effects
    assert isinstance(effect, Upload)
    done = await perform_transfer(station, effect, store, lambda: t)
    assert [p for _, p in out.change.outbox + done.change.outbox] == [
        {"status": "Uploading", "requestId": "get-1"},
        {"status": "Uploaded", "requestId": "get-1"},
    ]
    path, headers, content = app.puts[0]
    assert path == "/upload/" + out.response["fileName"]
    assert headers["content-type"] == "text/csv"
    lines = content.decode().splitlines()
    assert lines[0] == "timestamp,measurand,location,unit,context,value"
    stamps = sorted({line.split(",")[0] for line in lines[1:]})
    # Inclusive bounds: the readings of 00:30, 00:45, 01:00, 01:15 and 01:30.
    assert stamps == [
        "2025-01-10T00:30:00Z",
        "2025-01-10T00:45:00Z",
        "2025-01-10T01:00:00Z",
        "2025-01-10T01:15:00Z",
        "2025-01-10T01:30:00Z",
    ]
    assert any(",Energy.Active.Import.Register,P1Meter,kWh," in line for line in lines)
    # The log, and a failing upload reported as UploadFailed.
    out = station.handle_call("GetFile", {"fileType": "Syslog", "location": f"{base}/logs"}, t)
    (effect,) = out.effects
    assert isinstance(effect, Upload)
    await perform_transfer(station, effect, store, lambda: t)
    _, _, log = app.puts[1]
    assert b"boot #1" in log
    out = station.handle_call("GetFile", {"fileType": "Syslog", "location": "http://127.0.0.1:1/closed"}, t)
    (effect,) = out.effects
    assert isinstance(effect, Upload)
    done = await perform_transfer(station, effect, store, lambda: t)
    assert [p["status"] for _, p in done.change.outbox] == ["UploadFailed"]


async def test_https_download_and_upload_verify_the_server_certificate(tls_server: TLSFiles) -> None:
    """https with a private CA: the primitives work with a context that trusts it, and fail (no request
    reaches the server) with the system store or a context trusting another CA."""
    app, base = tls_server.app, tls_server.base
    app.files["/a.bin"] = b"y" * 500
    assert await download(f"{base}/a.bin", max_size=500, ssl_context=tls_server.trusted) == b"y" * 500
    await upload(f"{base}/files/SUB-S", "s.txt", b"secret", ssl_context=tls_server.trusted)
    assert app.puts == [("/files/SUB-S/s.txt", app.puts[0][1], b"secret")]
    async with transfer_client(tls_server.trusted) as client:  # a shared client carries its own trust
        assert await download(f"{base}/a.bin", max_size=500, client=client) == b"y" * 500
    for context in (tls_server.untrusted, None):
        with pytest.raises(TransferError, match="CERTIFICATE_VERIFY_FAILED"):
            await download(f"{base}/a.bin", max_size=500, ssl_context=context)
        with pytest.raises(TransferError, match="CERTIFICATE_VERIFY_FAILED"):
            await upload(f"{base}/files/SUB-S", "s.txt", b"secret", ssl_context=context)
    assert (app.gets, len(app.puts)) == (2, 1)


async def test_firmware_and_get_file_over_https(tls_server: TLSFiles, tmp_path: Path) -> None:
    """UpdateFirmware and GetFile through the station model over https: trusted → Installed and Uploaded;
    an untrusted certificate → every attempt fails (DownloadFailed after ``retries``) and UploadFailed."""
    app, base = tls_server.app, tls_server.base
    app.files["/fw/5.0.0.bin"] = b"OS3PSIM-FIRMWARE 5.0.0\n" + bytes(2048)
    store = SQLiteStore(str(tmp_path / "tls.db"))
    t0 = time.time()
    update = {"location": f"{base}/fw/5.0.0.bin", "retrieveDate": "2020-01-01T00:00:00Z", "retries": 2,
              "retryInterval": 5, "requestId": "tls-1"}

    def fresh(identity: str) -> Station:
        station = Station(identity, StationConfig(transfers=TransferConfig(install_duration=1.0)), seed=3,
                          now=t0)
        store.apply(identity, station.start(t0).change, t0)
        store.apply(identity, station.handle_call("UpdateFirmware", update, t0).change, t0)
        return station

    def statuses(sent: Sent, action: str) -> list[str]:
        return [p["status"] for a, p in sent if a == action]

    good = fresh("SUB-TLS")
    sent = await _run(good, store, lambda s: any(a == "<reboot>" for a, _ in s), t0 + 600,
                      ssl_context=tls_server.trusted)
    assert statuses(sent, "FirmwareStatusNotification") == ["Downloading", "Downloaded", "Installing",
                                                             "Installed"]
    assert sent[-1] == ("<reboot>", {"firmwareVersion": "5.0.0"})
    bad = fresh("SUB-UNTRUSTED")
    sent = await _run(bad, store, lambda s: "DownloadFailed" in statuses(s, "FirmwareStatusNotification"),
                      t0 + 600, ssl_context=tls_server.untrusted)
    assert statuses(sent, "FirmwareStatusNotification") == ["Downloading", "Downloading", "DownloadFailed"]
    assert all(p["requestId"] == "tls-1" for _, p in sent)
    assert app.gets == 1  # the trusted download only: the untrusted handshakes never got a request through

    for station, context, want in ((good, tls_server.trusted, "Uploaded"),
                                   (bad, tls_server.untrusted, "UploadFailed")):
        out = station.handle_call("GetFile", {"requestId": f"gf-{want}", "fileType": "Syslog",
                                              "location": f"{base}/upload/{station.identity}"}, t0)
        assert out.response is not None
        assert out.response["status"] == "Accepted"
        (effect,) = out.effects
        assert isinstance(effect, Upload)
        done = await perform_transfer(station, effect, store, lambda: t0, ssl_context=context)
        assert [p for _, p in out.change.outbox + done.change.outbox] == [
            {"status": "Uploading", "requestId": f"gf-{want}"}, {"status": want, "requestId": f"gf-{want}"}]
    ((path, _, body),) = app.puts
    assert path.startswith("/upload/SUB-TLS/Syslog-SUB-TLS-")
    assert b"boot #1" in body
