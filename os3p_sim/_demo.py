"""The one-command demo: the Central System and a fleet of simulated substations on one machine.

``os3p-sim demo [--stations N]`` (or ``python -m os3p_sim._demo``) starts the Central System on a
temporary SQLite database and N simulated substations (``os3p_sim.LiveStation``, default 50) over loopback,
then, through the operator API only, as an operator would:

1. waits until every station has booted (BootNotification Accepted);
2. sets streetlight profiles on all of them — contactor 1 (evening/morning) from sunset to sunrise,
   contactor 2 (night) for half an hour starting a quarter of an hour after sunset;
3. runs the stations' clock fast (``--time-scale``, default 120: two minutes per second), starting shortly
   before today's sunset in Amsterdam, so the lights visibly switch;
4. publishes a firmware image and rolls UpdateFirmware out in waves; each station downloads it from the
   Central System, installs, reboots and boots with the new ``firmwareVersion``.

A status line per second shows stations booted, lights on, switches, meter values and the firmware rollout.
At the end a summary is printed (and returned / written as JSON), and the database stays for
``os3p-central stations list --db PATH`` to read.

The demo lives in ``os3p_sim`` because it needs both sides: ``os3p_sim`` builds on ``os3p_trio`` (and its
Central System service), never the other way round.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

import attrs
import httpx
import trio

from os3p_core import sun_times
from os3p_trio import ClientConfig, ServerConfig
from os3p_trio.central import (
    CentralConfig,
    FileArea,
    StoreConfig,
    StoreUnavailable,
    is_postgres_url,
    open_central_service,
    open_store,
)

from ._live import FleetStats, LiveStation, ScaledClock
from ._meters import iso_utc as format_time
from ._station import StationConfig
from ._store import SQLiteStore
from ._transfers import TransferConfig

__all__ = ["DemoSummary", "main", "run_demo"]

#: Where the demo's substations stand (the semantics file's worked examples).
LATITUDE, LONGITUDE, ZONE = 52.37, 4.90, "Europe/Amsterdam"

#: Contactor 1 (evening/morning, annex §8.1): sunset to sunrise.  Contactor 2 (night): a short demo period.
PROFILES: dict[int, dict[str, Any]] = {
    1: {
        "profileId": 1,
        "stackLevel": 1,
        "recurrencyKind": "Daily",
        "daySchedule": [{"start": {"kind": "Sunset", "offset": 0}, "end": {"kind": "Sunrise", "offset": 0}}],
    },
    2: {
        "profileId": 2,
        "stackLevel": 1,
        "recurrencyKind": "Daily",
        "daySchedule": [
            {"start": {"kind": "Sunset", "offset": 900}, "end": {"kind": "Sunset", "offset": 2700}}
        ],
    },
}


@attrs.frozen
class DemoSummary:
    """What the demo saw, read back from the Central System's database at the end."""

    stations: int
    booted: int
    connected: int
    meter_values: int
    switches: int
    lights_on: int
    target_firmware: str
    firmware_updated: int
    calls_failed: int
    station_time_start: str
    station_time_end: str
    elapsed_seconds: float
    db: str

    def as_json(self) -> dict[str, Any]:
        """camelCase JSON of the summary."""
        return {
            "stations": self.stations,
            "booted": self.booted,
            "connected": self.connected,
            "meterValues": self.meter_values,
            "switches": self.switches,
            "lightsOn": self.lights_on,
            "targetFirmware": self.target_firmware,
            "firmwareUpdated": self.firmware_updated,
            "callsFailed": self.calls_failed,
            "stationTimeStart": self.station_time_start,
            "stationTimeEnd": self.station_time_end,
            "elapsedSeconds": round(self.elapsed_seconds, 1),
            "db": self.db,
        }


def _local(clock: ScaledClock) -> str:
    return dt.datetime.fromtimestamp(clock.now(), ZoneInfo(ZONE)).strftime("%H:%M")


async def run_demo(
    *,
    stations: int = 50,
    duration: float = 60.0,
    time_scale: float = 120.0,
    db: Path | str | None = None,
    out: TextIO | Literal["stdout"] | None = "stdout",
    firmware_version: str = "2.0.0",
    lead_seconds: float = 6.0,
    keep_open: bool = False,
) -> DemoSummary:
    """Run the demo for ``duration`` real seconds (after the fleet booted) and return its summary.

    ``lead_seconds``: real seconds between the start and today's sunset on the stations' clock.  ``out``
    receives the status lines and the summary (``"stdout"``: whatever ``sys.stdout`` is when the demo starts;
    ``None``: silent).  ``keep_open``: after the run, keep the Central System, its web console and the
    fleet running until SIGINT/SIGTERM (Ctrl-C), then print the summary (``os3p-sim demo`` without
    ``--headless``).
    """
    if isinstance(out, str):
        out = sys.stdout
    if stations < 1 or duration <= 0 or time_scale <= 0:
        raise ValueError("stations ≥ 1, duration > 0 and time scale > 0")
    started = time.monotonic()
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="os3p-demo-")) / "central.sqlite"
    # A PostgreSQL database has no place on disk: its files go to a temporary directory.
    base = Path(tempfile.mkdtemp(prefix="os3p-demo-")) / "central" if is_postgres_url(db) else Path(db)
    files = FileArea(Path(str(base) + ".files") / "firmware", Path(str(base) + ".files") / "uploads")

    def say(text: str) -> None:
        if out is not None:
            out.write(text + "\n")
            out.flush()

    today = dt.datetime.now(ZoneInfo(ZONE)).date()
    sunset = sun_times(LATITUDE, LONGITUDE, today, ZONE).sunset.timestamp()
    clock = ScaledClock(time_scale, start=sunset - lead_seconds * time_scale)
    station_start = format_time(clock.now())
    stats = FleetStats()
    config = StationConfig(meter_interval=300.0, transfers=TransferConfig(install_duration=60.0))
    client_config = ClientConfig(reconnect_base=0.5, reconnect_max=2.0, ping_interval=0.0)
    sim_store = SQLiteStore(":memory:", synchronous="NORMAL")
    width = max(3, len(str(stations)))
    failed = 0

    async with (
        open_store(db, sqlite_config=StoreConfig(synchronous="NORMAL")) as store,
        open_central_service(
            store,
            CentralConfig(open_registration=True, heartbeat_interval=60),
            server_config=ServerConfig(),
            files=files,
            secret=secrets.token_bytes(32),
        ) as service,
        httpx.AsyncClient(base_url=service.api_url, timeout=30) as api,
        httpx.AsyncClient(timeout=None) as http,
        trio.open_nursery() as nursery,
    ):
        say(f"Central System  {service.ws_url}  (operator API {service.api_url}, database {db})")
        say(f"operator console  {service.api_url}/")
        sunset_local = dt.datetime.fromtimestamp(sunset, ZoneInfo(ZONE))
        say(
            f"starting {stations} simulated substations; their clocks run {time_scale:g}x, from "
            f"{_local(clock)} local time (sunset in Amsterdam today: {sunset_local:%H:%M})"
        )
        identities = [f"DEMO-{i + 1:0{width}d}" for i in range(stations)]

        async def start_fleet() -> None:
            for identity in identities:
                station = LiveStation(
                    service.ws_url,
                    identity,
                    sim_store,
                    config=config,
                    client_config=client_config,
                    clock=clock,
                    stats=stats,
                    http=http,
                )
                nursery.start_soon(station.run)
                await trio.sleep(0.01)

        nursery.start_soon(start_fleet)

        async def summary() -> dict[str, Any]:
            fleet: dict[str, Any] = (await api.get("/api/summary")).json()
            return fleet

        def line(fleet: dict[str, Any], elapsed: float) -> str:
            switches = fleet["events"].get("StreetlightStatusNotification", 0)
            done = fleet["firmwareVersions"].get(firmware_version, 0)
            return (
                f"[{elapsed:5.1f}s] {_local(clock)}  connected {fleet['connected']}/{stations}  "
                f"accepted {fleet['accepted']}  lights on {fleet['lightsOn']}  switches {switches}  "
                f"meter values {fleet['meterValues']:,}  firmware {firmware_version} {done}/{stations}"
            )

        with trio.move_on_after(max(30.0, stations * 0.2)):
            while (await summary())["accepted"] < stations:
                await trio.sleep(0.2)
        say(line(await summary(), time.monotonic() - started))
        say(f"all {stations} stations booted; setting streetlight profiles through the operator API")

        limiter = trio.CapacityLimiter(20)

        async def call(identity: str, action: str, payload: dict[str, Any]) -> None:
            nonlocal failed
            async with limiter:
                response = await api.post(f"/api/stations/{identity}/calls/{action}", json=payload)
            if response.status_code != 200:
                failed += 1
                say(f"  {identity} {action}: HTTP {response.status_code} {response.text[:120]}")

        async with trio.open_nursery() as calls:
            for identity in identities:
                for contactor, profile in PROFILES.items():
                    payload = {
                        "contactorId": contactor,
                        "clearAllSchedules": True,
                        "streetlightProfiles": [profile],
                    }
                    calls.start_soon(call, identity, "SetStreetlightProfile", payload)

        image_name = f"os3p-sim-{firmware_version}.fw"
        image = f"OS3PSIM-FIRMWARE {firmware_version}\nbuilt for the os3p demo\n".encode()
        published = await api.put(f"/api/firmware/{image_name}", content=image)
        published.raise_for_status()
        location = (await api.get("/api/info")).json()["firmwareBase"] + image_name

        async def roll_out() -> None:
            # Waves of a tenth of the fleet, half-way through the run; each station fetches the image from us.
            await trio.sleep(duration / 3)
            say(f"rolling out firmware {firmware_version} in waves")
            wave = max(1, math.ceil(stations / 10))
            for start in range(0, stations, wave):
                retrieve = format_time(clock.now())
                async with trio.open_nursery() as calls:
                    for identity in identities[start : start + wave]:
                        update = {
                            "retrieveDate": retrieve,
                            "location": location,
                            "requestId": f"fw-{identity}",
                        }
                        calls.start_soon(call, identity, "UpdateFirmware", update)
                await trio.sleep(duration / 30)

        nursery.start_soon(roll_out)
        deadline = trio.current_time() + duration
        while trio.current_time() < deadline:
            await trio.sleep(min(1.0, max(0.0, deadline - trio.current_time())))
            say(line(await summary(), time.monotonic() - started))
        if keep_open:
            say(f"the demo keeps running: open the console at {service.api_url}/  (Ctrl-C to stop)")
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
        final = await summary()
        nursery.cancel_scope.cancel()

    result = DemoSummary(
        stations=stations,
        booted=stats.booted,
        connected=final["connected"],
        meter_values=final["meterValues"],
        switches=final["events"].get("StreetlightStatusNotification", 0),
        lights_on=final["lightsOn"],
        target_firmware=firmware_version,
        firmware_updated=final["firmwareVersions"].get(firmware_version, 0),
        calls_failed=failed,
        station_time_start=station_start,
        station_time_end=format_time(clock.now()),
        elapsed_seconds=time.monotonic() - started,
        db=str(db),
    )
    say("")
    say("summary")
    say(f"  stations booted          {result.booted}/{stations}")
    say(f"  meter values stored      {result.meter_values:,}")
    say(f"  streetlight switches     {result.switches}  (lights on at the end: {result.lights_on})")
    say(f"  firmware {firmware_version} installed  {result.firmware_updated}/{stations}")
    say(f"  operator calls failed    {result.calls_failed}")
    say(f"  station time             {result.station_time_start} .. {result.station_time_end}")
    say(f"  database                 {db}")
    say(f"  see it again with        os3p-central stations list --db {db}")
    return result


def build_parser(prog: str = "os3p-sim demo") -> argparse.ArgumentParser:
    """Options of the demo (``os3p-sim demo`` passes its arguments here)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Central System + simulated fleet, on one machine."
    )
    parser.add_argument("--stations", type=int, default=50, help="simulated substations (default 50)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="real seconds to run after boot (default 60)"
    )
    parser.add_argument("--time-scale", type=float, default=120.0, help="station clock speed (default 120)")
    parser.add_argument(
        "--db",
        default=None,
        help="SQLite file to keep or postgresql://USER@HOST:PORT/DBNAME (default: a new temporary file)",
    )
    parser.add_argument("--json", default=None, help="write the summary as JSON to this file")
    parser.add_argument(
        "--headless",
        action="store_true",
        help="end after --duration (CI); by default the console stays up until Ctrl-C",
    )
    return parser


def main(argv: list[str] | None = None, *, prog: str = "os3p-sim demo") -> int:
    """Run the demo from the command line; exit status 0 when every station booted and updated."""
    args = build_parser(prog).parse_args(argv)
    try:
        result = trio.run(
            lambda: run_demo(
                stations=args.stations,
                duration=args.duration,
                time_scale=args.time_scale,
                db=None if not args.db else args.db if is_postgres_url(args.db) else Path(args.db),
                keep_open=not args.headless,
            )
        )
    except KeyboardInterrupt:
        return 130
    except StoreUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_json(), indent=2) + "\n")
    ok = result.booted == result.stations and result.firmware_updated == result.stations
    return 0 if ok and result.calls_failed == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(prog="python -m os3p_sim._demo"))
