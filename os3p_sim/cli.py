"""``os3p-sim``: run one simulated substation, or a fleet, against a Central System.

::

    os3p-sim run   --url ws://HOST:PORT/OS3P --identity ID [--password PW] [--state PATH] [--time-scale N]
    os3p-sim fleet --url ws://HOST:PORT/OS3P --count N [--prefix ID] [--ramp PER_SECOND] [--duration S]
                   [--state PATH] [--json FILE] [--password PW] [--time-scale N]
    os3p-sim demo  [--stations N] [--duration S] [--time-scale N] [--db PATH] [--json FILE]

``--state`` is the SQLite database holding every station's durable state (one file for a whole fleet); without
it the state lives in memory and is gone at exit.  ``--time-scale`` runs the stations' clocks faster than real
time (schedules, meter intervals); protocol timers (heartbeats, call timeouts) stay in real time.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import sys
import threading
from collections.abc import Sequence

import trio

import os3p_core

from ._faults import FaultConfig
from ._live import FleetStats, LiveStation, ScaledClock, run_fleet
from ._station import StationConfig
from ._store import SQLiteStore

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="os3p-sim", description="OS³P substation simulator")
    parser.add_argument("--version", action="version", version=f"%(prog)s {os3p_core.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", required=True, help="Central System endpoint, ws://HOST:PORT/OS3P or wss://...")
        p.add_argument("--password", help="AuthorizationKey for HTTP Basic auth (username = identity)")
        p.add_argument("--state", help="SQLite database for durable state (default: in memory)")
        p.add_argument("--time-scale", type=float, default=1.0, help="station clock speed (default 1)")
        p.add_argument("--seed", default="0", help="seed of the stations' random generators")
        p.add_argument("--meter-interval", type=float, default=900.0, help="seconds between MeterValues")
        p.add_argument("--firmware-version", default="1.0.0", help="firmware of a new station")
        p.add_argument("--local-overrides-per-day", type=float, default=0.0,
                       help="mean uses per day of the simulated manual override switch (default 0)")
        p.add_argument("--faults-per-day", type=float, default=0.0,
                       help="mean real MV faults per day (default 0)")
        p.add_argument("--ca", help="CA bundle to verify a wss:// Central System (default: system store)")
        p.add_argument("--transfer-ca", help="CA bundle to verify https:// firmware downloads and GetFile "
                                             "uploads (default: the system's CA store)")
        p.add_argument("-v", "--verbose", action="store_true", help="log connection events")

    run = sub.add_parser("run", help="run one station until interrupted")
    common(run)
    run.add_argument("--identity", required=True, help="the station identity (charge point id)")

    fleet = sub.add_parser("fleet", help="run N stations in this process")
    common(fleet)
    fleet.add_argument("--count", type=int, required=True, help="number of stations")
    fleet.add_argument("--prefix", default="SIM", help="identity prefix (stations are PREFIX-00001...)")
    fleet.add_argument("--ramp", type=float, default=50.0, help="stations started per second")
    fleet.add_argument("--duration", type=float, help="seconds to run (default: until interrupted)")
    fleet.add_argument("--json", help="write the final statistics to this file")

    # Listed for --help only: main() hands ``demo`` and its arguments to the demo's own parser.
    sub.add_parser("demo", help="Central System + N simulated stations on one machine (see os3p-sim demo -h)")
    return parser


def _station_config(args: argparse.Namespace) -> StationConfig:
    return StationConfig(meter_interval=args.meter_interval, firmware_version=args.firmware_version,
                         local_overrides_per_day=args.local_overrides_per_day,
                         faults=FaultConfig(real_faults_per_day=args.faults_per_day))


def _context(cafile: str | None) -> ssl.SSLContext | None:
    """A TLS context trusting ``cafile`` only (None: let the library use the system's CA store)."""
    return ssl.create_default_context(cafile=cafile) if cafile else None


async def _run_one(args: argparse.Namespace) -> None:
    store = SQLiteStore(args.state or ":memory:")
    config = _station_config(args)
    station = LiveStation(args.url, args.identity, store, config=config, seed=args.seed,
                          password=args.password, ssl_context=_context(args.ca),
                          transfer_ssl_context=_context(args.transfer_ca), clock=ScaledClock(args.time_scale))
    try:
        await station.run()
    finally:
        store.close()


async def _run_fleet(args: argparse.Namespace) -> FleetStats:
    store = SQLiteStore(args.state or ":memory:", synchronous="NORMAL")
    try:
        return await run_fleet(args.url, args.count, prefix=args.prefix, ramp=args.ramp,
                               duration=args.duration, store=store, password=args.password,
                               ssl_context=_context(args.ca), transfer_ssl_context=_context(args.transfer_ca),
                               time_scale=args.time_scale, seed=args.seed,
                               config=_station_config(args), json_path=args.json)
    finally:
        store.close()


async def _main(args: argparse.Namespace) -> tuple[int | None, FleetStats | None]:
    """Run the command until it ends or SIGINT / SIGTERM arrives; then stop cleanly (stations shut down,
    connections close with 1001, the fleet summary is written)."""
    stopped: list[int] = []
    result: list[FleetStats] = []
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            if threading.current_thread() is not threading.main_thread():
                return  # embedded (tests): signals can only be received in the main thread
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    stopped.append(signum)
                    nursery.cancel_scope.cancel()
                    return

        async def command() -> None:
            if args.command == "run":
                await _run_one(args)
            else:
                result.append(await _run_fleet(args))
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        nursery.start_soon(command)
    return (stopped[0] if stopped else None), (result[0] if result else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``os3p-sim``.  Exit status 0, or 128 + the signal number after SIGINT / SIGTERM."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["demo"]:
        from ._demo import main as demo_main  # imports the Central System service only when needed

        return demo_main(arguments[1:])
    args = _parser().parse_args(arguments)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signum, stats = trio.run(_main, args)
    if stats is not None and args.json is None:
        json.dump(stats.summary(), sys.stdout)
        sys.stdout.write("\n")
    return 0 if signum is None else 128 + signum


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
