"""The simulator on real sockets: one station end to end, and a fleet of 200 against the os3p_trio server."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from test_sim_http import FileServer, TLSFiles, serve_files, serve_files_tls

import os3p_sim.cli as cli_module
from os3p_core import (
    ErrorCode,
    ProfileStore,
    ProtocolError,
    RetryBackOff,
    SiteLocation,
    structure_request,
    unstructure,
)
from os3p_sim import (
    FleetStats,
    LiveStation,
    ScaledClock,
    SQLiteStore,
    StationConfig,
    TransferConfig,
    main,
    run_fleet,
)
from os3p_trio import (
    CentralSystemServer,
    ClientConfig,
    InMemoryRegistry,
    Router,
    ServerConfig,
    Session,
    StationRecord,
    hash_authorization_key,
    open_central_system,
)

STATION_ACTIONS = ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification",
                   "StreetlightStatusNotification", "StreetlightModeStatusNotification",
                   "FirmwareStatusNotification", "GetFileStatusNotification")
FAST_CLIENT = ClientConfig(reconnect_base=0.5, reconnect_max=2.0, ping_interval=0.0)


class Central:
    """A minimal Central System on os3p_trio: accepts every boot, records every call."""

    def __init__(self, heartbeat_interval: int = 2) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.changed = trio.Event()
        #: (identity, action, payload) → a CallError code to answer instead of committing, or None.
        self.inject: Callable[[str, str, dict[str, Any]], str | None] = lambda i, a, p: None
        #: The BootNotification answer's status, and its ``interval`` when not Accepted.
        self.boot_status = "Accepted"
        self.retry_interval = 600
        self.router = Router()
        for action in STATION_ACTIONS:
            self.router.add(action, self._handler(action))

    def _handler(self, action: str) -> Callable[[Session, Any], dict[str, Any]]:
        def handle(session: Session, request: Any) -> dict[str, Any]:
            payload = unstructure(request)
            code = self.inject(session.identity, action, payload)
            if code is not None:
                raise ProtocolError("injected by the test", ErrorCode(code))
            self.received.append((session.identity, action, payload))
            self.counts[(session.identity, action)] += 1
            self.changed.set()
            self.changed = trio.Event()
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if action == "BootNotification":
                interval = self.heartbeat_interval if self.boot_status == "Accepted" else self.retry_interval
                return {"status": self.boot_status, "currentTime": now, "interval": interval}
            if action == "Heartbeat":
                return {"currentTime": now}
            return {}

        return handle

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.changed.wait()

    def of(self, identity: str, action: str) -> list[dict[str, Any]]:
        return [p for i, a, p in self.received if i == identity and a == action]


@pytest.fixture
async def central() -> AsyncIterator[tuple[Central, CentralSystemServer]]:
    app = Central(heartbeat_interval=1)
    async with open_central_system(app.router, 0, host="127.0.0.1") as server:
        yield app, server


files = pytest.fixture(serve_files, name="files")
tls_files = pytest.fixture(serve_files_tls, name="tls_files")


async def _call(server: CentralSystemServer, identity: str, action: str, payload: dict[str, Any]) -> Any:
    return unstructure(await server.call(identity, structure_request(action, payload)))


async def test_one_station_end_to_end(central: tuple[Central, CentralSystemServer],
                                      files: tuple[FileServer, str], tmp_path: Path) -> None:
    app, server = central
    file_app, base = files
    file_app.files["/fw/3.0.0.bin"] = b"OS3PSIM-FIRMWARE 3.0.0\n" + b"\x00" * 4096
    url = f"ws://127.0.0.1:{server.port}/OS3P"
    store = SQLiteStore(str(tmp_path / "one.db"))
    config = StationConfig(transfers=TransferConfig(install_duration=0.5))
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            station = LiveStation(url, "SIM-ONE", store, config=config, seed=1, client_config=FAST_CLIENT,
                                  reboot_pause=0.2)
            await nursery.start(station.run)
            await app.wait_for(lambda: app.counts[("SIM-ONE", "Heartbeat")] >= 1)
            assert app.of("SIM-ONE", "BootNotification")[0]["firmwareVersion"] == "1.0.0"
            # A remote override: answered, then the mode and the switch arrive through the outbox.
            reply = await _call(server, "SIM-ONE", "OverrideStreetlight", {"contactorId": 1, "action": "On"})
            assert reply == {"status": "Accepted"}
            await app.wait_for(lambda: len(app.of("SIM-ONE", "StreetlightStatusNotification")) >= 1)
            assert app.of("SIM-ONE", "StreetlightModeStatusNotification")[0]["mode"] == "RemoteOverride"
            assert app.of("SIM-ONE", "StreetlightStatusNotification")[0]["status"] == "On"
            # TriggerMessage: fresh readings after the answer.
            reply = await _call(server, "SIM-ONE", "TriggerMessage", {"requestedMessage": "MeterValues"})
            assert reply == {"status": "Accepted"}
            await app.wait_for(lambda: len(app.of("SIM-ONE", "MeterValues")) >= 1)
            values = app.of("SIM-ONE", "MeterValues")[0]["meterValue"][0]["sampledValue"]
            p1 = [v for v in values
                  if v.get("location") == "P1Meter" and v["measurand"] == "Power.Active.Import"]
            assert p1[0]["value"] == "1.800"  # contactor 1's lamps are on
            # Configuration round trip through the core's store.
            got = await _call(server, "SIM-ONE", "GetConfiguration", {"key": ["TimeZone"]})
            assert got["configurationKey"][0]["value"] == "Europe/Amsterdam"
            # Reset: the station reboots and comes back without a BootNotification (nothing changed, §5).
            assert await _call(server, "SIM-ONE", "Reset", {}) == {"status": "Accepted"}
            await app.wait_for(lambda: station.power_cycles == 2 and server.get("SIM-ONE") is not None)
            hb = app.counts[("SIM-ONE", "Heartbeat")]
            await app.wait_for(lambda: app.counts[("SIM-ONE", "Heartbeat")] > hb)
            assert app.counts[("SIM-ONE", "BootNotification")] == 1
            # UpdateFirmware over HTTP: every status, a reboot, and a BootNotification with the new version.
            await _call(server, "SIM-ONE", "UpdateFirmware", {
                "location": f"{base}/fw/3.0.0.bin", "retrieveDate": "2020-01-01T00:00:00Z",
                "requestId": "fw-9"})
            await app.wait_for(lambda: app.counts[("SIM-ONE", "BootNotification")] == 2)
            assert [p["status"] for p in app.of("SIM-ONE", "FirmwareStatusNotification")] == [
                "Downloading", "Downloaded", "Installing", "Installed"]
            assert app.of("SIM-ONE", "BootNotification")[1]["firmwareVersion"] == "3.0.0"
            # The unclean-shutdown report never appeared: both reboots were clean.
            assert app.of("SIM-ONE", "StatusNotification") == []
            while store.outbox_pending("SIM-ONE"):
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    assert store.outbox_pending("SIM-ONE") == []


async def test_one_message_per_trigger_while_pending(central: tuple[Central, CentralSystemServer],
                                                    tmp_path: Path) -> None:
    """PROTOCOL-DECISIONS §5 on real sockets: a Pending station (os3p_trio server, os3p_trio client) sends
    exactly one message per TriggerMessage — no refusal counted as an error — and, once Accepted, the full
    picture (every contactor) again."""
    app, server = central
    app.boot_status = "Pending"
    url = f"ws://127.0.0.1:{server.port}/OS3P"
    store = SQLiteStore(str(tmp_path / "pending.db"))
    kinds = ["GetFileStatusNotification", "FirmwareStatusNotification", "Heartbeat", "MeterValues",
             "StatusNotification", "StreetlightModeStatusNotification", "StreetlightStatusNotification",
             "BootNotification"]
    ident = "SIM-PEND"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            station = LiveStation(url, ident, store, seed=1, client_config=FAST_CLIENT, reboot_pause=0.2)
            await nursery.start(station.run)
            await app.wait_for(lambda: app.counts[(ident, "BootNotification")] == 1)
            while server.get(ident) is None:  # the server registers the session after the boot answer
                await trio.sleep(0.01)
            # Two MV indicators in (test) alarm: the accepted form would be one StatusNotification each.
            assert await _call(server, ident, "TestMVFaultIndicator", {}) == {"status": "Accepted"}
            for kind in kinds:
                want = app.counts[(ident, kind)] + 1
                reply = await _call(server, ident, "TriggerMessage", {"requestedMessage": kind})
                assert reply == {"status": "Accepted"}
                await app.wait_for(lambda: app.counts[(ident, kind)] >= want)  # noqa: B023 (awaited here)
            await trio.sleep(0.3)  # anything more would have arrived by now (loopback)
            assert station.client is not None
            assert station.client.boot_state is not None
            assert station.client.boot_state.value == "Pending"
            assert station.stats.errors == 0
            counts = {k: app.counts[(ident, k)] for k in kinds}
            assert counts == {k: 2 if k == "BootNotification" else 1 for k in kinds}
            (status,) = app.of(ident, "StatusNotification")
            assert (status["status"], status["info"]) == ("Faulted", "also in alarm: GroundFailure")
            assert "contactorId" not in app.of(ident, "StreetlightModeStatusNotification")[0]  # all Schedule
            assert app.of(ident, "StreetlightStatusNotification")[0]["contactorId"] == 1
            # Accepted on the next connection: the same trigger reports all four contactors.
            app.boot_status = "Accepted"
            session = server.get(ident)
            assert session is not None
            session.request_close()
            await app.wait_for(lambda: app.counts[(ident, "BootNotification")] == 3)
            while not station.client or not station.client.accepted or server.get(ident) is None:
                await trio.sleep(0.01)
            # The outbox delivers what was queued while Pending (the two test alarms): wait for it to drain.
            while store.outbox_pending(ident):
                await trio.sleep(0.02)
            reply = await _call(server, ident, "TriggerMessage",
                                {"requestedMessage": "StreetlightStatusNotification"})
            assert reply == {"status": "Accepted"}
            await app.wait_for(lambda: len(app.of(ident, "StreetlightStatusNotification")) >= 5)
            nursery.cancel_scope.cancel()
    first, *rest = [p["contactorId"] for p in app.of(ident, "StreetlightStatusNotification")]
    assert (first, sorted(rest)) == (1, [1, 2, 3, 4])  # triggered answers are separate tasks: any order
    assert station.stats.errors == 0


async def test_transfers_over_https_trust_the_configured_ca(central: tuple[Central, CentralSystemServer],
                                                           tls_files: TLSFiles, tmp_path: Path) -> None:
    """LiveStation(transfer_ssl_context=...) on real sockets: with the file server's (trustme) CA trusted, a
    GetFile upload over https succeeds; a station trusting only the system's CA store reports UploadFailed
    and, for UpdateFirmware, DownloadFailed — and nothing reached the file server."""
    app, server = central
    url = f"ws://127.0.0.1:{server.port}/OS3P"
    store = SQLiteStore(str(tmp_path / "tls.db"))
    tls_files.app.files["/fw/6.0.0.bin"] = b"OS3PSIM-FIRMWARE 6.0.0\n"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for ident, context in (("SIM-TLS", tls_files.trusted), ("SIM-NOCA", None)):
                station = LiveStation(url, ident, store, seed=1, client_config=FAST_CLIENT,
                                      transfer_ssl_context=context)
                await nursery.start(station.run)
                await app.wait_for(lambda: app.counts[(ident, "BootNotification")] == 1)  # noqa: B023
                while server.get(ident) is None:
                    await trio.sleep(0.01)
                reply = await _call(server, ident, "GetFile", {
                    "requestId": f"up-{ident}", "fileType": "Syslog", "location": f"{tls_files.base}/logs"})
                assert reply["status"] == "Accepted"
            await _call(server, "SIM-NOCA", "UpdateFirmware", {
                "location": f"{tls_files.base}/fw/6.0.0.bin", "retrieveDate": "2020-01-01T00:00:00Z",
                "retries": 1, "requestId": "fw-noca"})

            def finished() -> bool:
                ends = {"Uploaded", "UploadFailed", "DownloadFailed"}
                return len([p for i, a, p in app.received if p.get("status") in ends]) == 3

            await app.wait_for(finished)
            nursery.cancel_scope.cancel()
    assert [p["status"] for p in app.of("SIM-TLS", "GetFileStatusNotification")] == ["Uploading", "Uploaded"]
    assert [p["status"] for p in app.of("SIM-NOCA", "GetFileStatusNotification")] == [
        "Uploading", "UploadFailed"]
    assert [p["status"] for p in app.of("SIM-NOCA", "FirmwareStatusNotification")] == [
        "Downloading", "DownloadFailed"]
    ((path, _, body),) = tls_files.app.puts
    assert path.startswith("/logs/Syslog-SIM-TLS-")
    assert b"boot #1" in body
    assert tls_files.app.gets == 0


async def test_fleet_of_200_stations_boots_and_heartbeats(central: tuple[Central, CentralSystemServer],
                                                         tmp_path: Path) -> None:
    app, server = central
    url = f"ws://127.0.0.1:{server.port}/OS3P"
    store = SQLiteStore(str(tmp_path / "fleet.db"), synchronous="NORMAL")
    count = 200
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            stats: FleetStats = await nursery.start(functools.partial(
                run_fleet, url, count, prefix="FLEET", ramp=400.0, store=store, client_config=FAST_CLIENT,
                progress=None))
            await app.wait_for(lambda: len({i for (i, a) in app.counts if a == "Heartbeat"}) == count)
            while len(stats.heartbeats) < count:  # the last responses are on their way back
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    booted = {i for (i, a) in app.counts if a == "BootNotification"}
    assert len(booted) == count
    assert stats.booted == count
    assert len(stats.heartbeats) == count
    summary = stats.summary()
    assert summary["errors"] == 0
    assert summary["latencyP99Ms"] is not None
    assert sorted(store.identities())[:2] == ["FLEET-00001", "FLEET-00002"]


def test_cli_fleet_writes_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``os3p-sim fleet`` end to end in a subprocess-free way: a server in a thread-free trio run.

    Every flag of the issue (--url --count --prefix --ramp --duration --state --json), the live progress line
    (connected, booted, messages per second, latency p50/p99, errors) and the final summary."""
    out = tmp_path / "stats.json"

    async def scenario() -> None:
        app = Central(heartbeat_interval=1)
        async with open_central_system(app.router, 0, host="127.0.0.1") as server:
            url = f"ws://127.0.0.1:{server.port}/OS3P"
            code = await trio.to_thread.run_sync(main, [
                "fleet", "--url", url, "--count", "5", "--prefix", "LAMP", "--ramp", "50", "--duration", "4",
                "--json", str(out), "--state", str(tmp_path / "cli.db")])
            assert code == 0
            booted = {i for (i, a) in app.counts if a == "BootNotification"}
            assert booted == {f"LAMP-{n:05d}" for n in range(1, 6)}

    trio.run(scenario)
    summary = json.loads(out.read_text())
    assert summary["stations"] == 5
    assert summary["booted"] == 5
    assert summary["stationsWithHeartbeat"] == 5
    assert summary["errors"] == 0
    assert summary["latencyP50Ms"] <= summary["latencyP99Ms"]
    stored = sorted(SQLiteStore(str(tmp_path / "cli.db")).identities())
    assert stored == [f"LAMP-{n:05d}" for n in range(1, 6)]
    # The live progress line, rewritten in place once a second, then the summary.
    err = capsys.readouterr().err
    lines = [line for line in err.split("\r") if line.startswith("connected ")]
    assert len(lines) >= 3
    pattern = r"connected 5/5  booted 5  msg/s [0-9.]+  p50 [0-9.]+ ms  p99 [0-9.]+ ms  errors 0\s*"
    last = lines[-1].split("\n")[0]  # the summary follows the last progress line
    assert re.fullmatch(pattern, last), last
    assert json.loads(err[err.index("\n{"):])["booted"] == 5


async def test_time_scale_runs_the_schedule_faster(central: tuple[Central, CentralSystemServer],
                                                   tmp_path: Path) -> None:
    """--time-scale: a real second is an hour of the station's clock; the evening switch comes in seconds."""
    app, server = central
    url = f"ws://127.0.0.1:{server.port}/OS3P"
    store = SQLiteStore(str(tmp_path / "scaled.db"))
    # 2025-12-21 12:00 UTC, three and a half hours before sunset in Amsterdam; the lights go on at sunset.
    start = dt.datetime(2025, 12, 21, 12, 0, tzinfo=dt.UTC).timestamp()
    profile = {"contactorId": 2, "streetlightProfiles": [{
        "profileId": 1, "stackLevel": 0, "recurrencyKind": "Daily", "validFrom": "2025-01-01T00:00:00",
        "daySchedule": [{"start": {"kind": "Sunset", "offset": 0},
                         "end": {"kind": "Sunrise", "offset": 0}}]}]}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            station = LiveStation(url, "SIM-FAST", store, seed=1, client_config=FAST_CLIENT,
                                  clock=ScaledClock(3600.0, start=start))
            await nursery.start(station.run)
            await app.wait_for(lambda: app.counts[("SIM-FAST", "BootNotification")] == 1)
            reply = await _call(server, "SIM-FAST", "SetStreetlightProfile", profile)
            assert reply == {"status": "Accepted"}
            await app.wait_for(lambda: len(app.of("SIM-FAST", "StreetlightStatusNotification")) >= 1)
            nursery.cancel_scope.cancel()
    (switch,) = app.of("SIM-FAST", "StreetlightStatusNotification")[:1]
    assert (switch["contactorId"], switch["status"]) == (2, "On")
    expected = ProfileStore()
    expected.set_streetlight_profile(profile)
    day = expected.effective_day_schedule(2, dt.date(2025, 12, 21), SiteLocation(52.37, 4.90))
    sunset = dt.datetime.fromtimestamp(day.intervals[0][0] / 1000, dt.UTC)
    assert switch["timestamp"] == sunset.strftime("%Y-%m-%dT%H:%M:%SZ")  # 15:28 UTC


async def test_outbox_retries_internal_errors_and_dead_letters_the_hopeless(
        central: tuple[Central, CentralSystemServer], tmp_path: Path) -> None:
    """PROTOCOL-DECISIONS §7 on real sockets: InternalError → the same entry again after a back-off;
    FormationViolation → dead letter, and the queue goes on in order."""
    app, server = central
    attempts: collections.Counter[str] = collections.Counter()

    def inject(identity: str, action: str, payload: dict[str, Any]) -> str | None:
        if action == "StreetlightModeStatusNotification":
            return "FormationViolation"
        if action == "StreetlightStatusNotification":
            attempts[payload["status"]] += 1
            if attempts[payload["status"]] <= 2:
                return "InternalError"
        return None

    app.inject = inject
    url = f"ws://127.0.0.1:{server.port}/OS3P"
    store = SQLiteStore(str(tmp_path / "retry.db"))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            station = LiveStation(url, "SIM-RETRY", store, seed=1, client_config=FAST_CLIENT,
                                  backoff=RetryBackOff(wait_minimum=0, random_range=0.5, repeat_times=0))
            await nursery.start(station.run)
            await app.wait_for(lambda: app.counts[("SIM-RETRY", "BootNotification")] == 1)
            await _call(server, "SIM-RETRY", "OverrideStreetlight", {"contactorId": 3, "action": "On"})
            await _call(server, "SIM-RETRY", "ResumeStreetlight", {"contactorId": 3})
            await app.wait_for(lambda: len(app.of("SIM-RETRY", "StreetlightStatusNotification")) == 2)
            while store.outbox_pending("SIM-RETRY"):  # the last CALLRESULT is on its way back
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    got = [(p["contactorId"], p["status"]) for p in app.of("SIM-RETRY", "StreetlightStatusNotification")]
    assert got == [(3, "On"), (3, "Off")]
    assert attempts == {"On": 3, "Off": 3}  # two InternalErrors each, then committed
    dead = store.dead_letters("SIM-RETRY")
    assert [(d.action, d.payload["mode"], d.error) for d in dead] == [
        ("StreetlightModeStatusNotification", "RemoteOverride", "FormationViolation"),
        ("StreetlightModeStatusNotification", "Schedule", "FormationViolation")]
    assert store.outbox_pending("SIM-RETRY") == []
    assert station.stats.dead_letters == 2


async def test_cli_run_one_station_until_interrupted(tmp_path: Path) -> None:
    """``os3p-sim run`` in a subprocess with every flag of the issue (--url --identity --password --state
    --time-scale): authenticates with HTTP Basic, boots, heartbeats, stops on SIGINT; its state file
    survives."""
    app = Central(heartbeat_interval=1)
    secret, password = b"a server secret of 32 bytes ....", "sixteen+ chars key"
    registry = InMemoryRegistry([StationRecord("CLI 1", hash_authorization_key(secret, "CLI 1", password))])
    state = tmp_path / "one.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    async with open_central_system(app.router, 0, host="127.0.0.1", registry=registry,
                                   config=ServerConfig(auth_secret=secret)) as server:
        url = f"ws://127.0.0.1:{server.port}/OS3P"
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", "import sys; from os3p_sim.cli import main; sys.exit(main())", "run",
             "--url", url, "--identity", "CLI 1", "--password", password, "--state", str(state),
             "--time-scale", "60", "--firmware-version", "7.7"], env=env)
        try:
            with trio.fail_after(30):
                await app.wait_for(lambda: app.counts[("CLI 1", "Heartbeat")] >= 1)
        finally:
            proc.send_signal(signal.SIGINT)
            with trio.fail_after(20):
                code = await proc.wait()
    assert code == 130
    assert app.of("CLI 1", "BootNotification")[0]["firmwareVersion"] == "7.7"
    stored = SQLiteStore(str(state)).load("CLI 1")
    assert stored["boot_accepted"]["firmwareVersion"] == "7.7"
    assert stored["running"] is False  # a clean shutdown: the next start is not an unexpected reboot


def test_cli_ca_options_reach_the_station_and_the_fleet(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--ca`` (wss:// Central System) and ``--transfer-ca`` (https transfers) become TLS contexts that trust
    exactly the given bundles, for ``run`` and for ``fleet``."""
    wss_ca, files_ca = trustme.CA(), trustme.CA()
    wss_pem, files_pem = tmp_path / "wss.pem", tmp_path / "files.pem"
    wss_ca.cert_pem.write_to_path(str(wss_pem))
    files_ca.cert_pem.write_to_path(str(files_pem))
    seen: list[dict[str, Any]] = []

    class FakeStation:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(kwargs)

        async def run(self) -> None:
            return None

    async def fake_fleet(*args: Any, **kwargs: Any) -> FleetStats:
        seen.append(kwargs)
        return FleetStats()

    monkeypatch.setattr(cli_module, "LiveStation", FakeStation)
    monkeypatch.setattr(cli_module, "run_fleet", fake_fleet)
    tls = ["--ca", str(wss_pem), "--transfer-ca", str(files_pem)]
    assert main(["run", "--url", "wss://127.0.0.1:1/OS3P", "--identity", "X", *tls]) == 0
    assert main(["fleet", "--url", "wss://127.0.0.1:1/OS3P", "--count", "1",
                 "--json", str(tmp_path / "s.json"), *tls]) == 0
    assert main(["run", "--url", "ws://127.0.0.1:1/OS3P", "--identity", "X"]) == 0

    def subjects(ctx: ssl.SSLContext) -> list[Any]:
        return [c["subject"] for c in ctx.get_ca_certs()]

    wss_subject = subjects(ssl.create_default_context(cafile=str(wss_pem)))
    files_subject = subjects(ssl.create_default_context(cafile=str(files_pem)))
    assert wss_subject != files_subject
    for kwargs in seen[:2]:
        assert subjects(kwargs["ssl_context"]) == wss_subject
        assert subjects(kwargs["transfer_ssl_context"]) == files_subject
    assert (seen[2]["ssl_context"], seen[2]["transfer_ssl_context"]) == (None, None)
