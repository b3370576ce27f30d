"""``os3p-central``: run the Central System, manage its stations, and send operator calls.

::

    os3p-central serve [--host H] [--port P] [--path /OS3P] [--db PATH] [--open-registration]
                       [--boot-status Accepted|Pending|Rejected] [--heartbeat-interval S] [--api-port Q]
                       [--certfile F --keyfile F [--client-ca F]] [--secret-file F] ...
                       [--retain-meter-days N] [--retain-events-days N]
    os3p-central stations add ID [--password-stdin | --generate-password] [--db PATH]
    os3p-central stations list [--db PATH] [--json]
    os3p-central stations show ID [--db PATH] [--json]
    os3p-central export meter-values|events [--db DB] [--station ID] [--since T] [--until T]
                       [--format csv|jsonl] [--measurand M] [--kind K]
    os3p-central call ID Action [PAYLOAD_JSON | @file] [--api URL] [--api-token-file F]

``--db`` is a SQLite file path or a PostgreSQL URL (``postgresql://USER@HOST:PORT/DBNAME``) on every command.
A database that cannot be opened (wrong URL, unreachable server, missing permissions, a newer release's
schema, a failed upgrade) is one line on stderr and exit status 2.

``stations`` work on the database directly (also while the service runs: SQLite WAL lets them, and writes wait
for the service's write lock), so they also read a database a demo left behind.  ``call`` is the command-line
face of ``POST /api/stations/{identity}/calls/{Action}`` and needs the service running.

Exit status: 0 success; 1 the station answered a CALLERROR or the call failed; 2 usage error, unknown station,
invalid payload, station not connected.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

import os3p_core
from os3p_trio import generate_authorization_key

from ._api import state_json, station_json
from ._export import FORMATS, export_events, export_meter_values, parse_time
from ._open import is_postgres_url, open_store
from ._service import CentralConfig, CentralSystem
from ._store import BootStatus, EventKind, StationExists, StoreUnavailable

__all__ = [
    "API_TOKEN_ENV",
    "DEFAULT_API_PORT",
    "DEFAULT_DB",
    "DEFAULT_PORT",
    "load_or_create_secret",
    "main",
    "read_api_token",
]

DEFAULT_DB = "os3p-central.sqlite"
DEFAULT_PORT = 9220
DEFAULT_API_PORT = 9221
SECRET_BYTES = 32
#: Retention defaults of ``serve`` (days).  Meter values: 400 days, i.e. 13 months, so a month can still be
#: compared with the same month a year earlier and a yearly bill disputed.  Events: 800 days, two full years
#: of fault and switching history for maintenance analysis.  0 keeps for ever.
DEFAULT_RETAIN_METER_DAYS = 400.0
DEFAULT_RETAIN_EVENTS_DAYS = 800.0


def load_or_create_secret(path: Path) -> bytes:
    """The server secret of the keyed password hash, kept in its own file (mode 0600) beside the database.

    Kept apart from the database on purpose: a copy of the database alone cannot be used to check guesses.
    Created with 32 random bytes the first time.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        secret = secrets.token_bytes(SECRET_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile: use theirs
            return load_or_create_secret(path)
        with os.fdopen(fd, "w") as out:
            out.write(secret.hex() + "\n")
        return secret
    secret = bytes.fromhex(text)
    if len(secret) < 16:
        raise ValueError(f"{path}: the secret must be at least 16 bytes of hex")
    return secret


#: Environment variable holding the operator API token (``--api-token-file`` wins).
API_TOKEN_ENV = "OS3P_CENTRAL_API_TOKEN"


def read_api_token(args: argparse.Namespace) -> str | None:
    """The operator API token: the first line of ``--api-token-file``, else ``$OS3P_CENTRAL_API_TOKEN``."""
    if args.api_token_file:
        return Path(args.api_token_file).read_text().strip() or None
    return os.environ.get(API_TOKEN_ENV) or None


def _add_token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-token-file",
        default=None,
        help=f"file holding the operator API bearer token (default: ${API_TOKEN_ENV}; none: no token)",
    )


def beside_db(db: str, suffix: str) -> Path:
    """A file kept beside the database: ``<db><suffix>`` for a SQLite file; for a PostgreSQL URL (no place
    on disk) ``os3p-central<suffix>`` in the working directory."""
    return Path(("os3p-central" if is_postgres_url(db) else str(db)) + suffix)


def _secret_path(args: argparse.Namespace) -> Path:
    return Path(args.secret_file) if args.secret_file else beside_db(args.db, ".secret")


def _add_db_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"SQLite database file or postgresql://USER@HOST:PORT/DBNAME URL (default {DEFAULT_DB})",
    )
    parser.add_argument(
        "--secret-file", default=None, help="server secret of the password hash (default: <db>.secret)"
    )


def _add_cluster_options(serve: argparse.ArgumentParser) -> None:
    """``serve``'s cluster options (docs/cluster.md)."""
    group = serve.add_argument_group("cluster", "run as one node of a cluster sharing a database and Redis")
    group.add_argument(
        "--redis", default=None, metavar="URL", help="redis://HOST:PORT/N: join the cluster that Redis holds"
    )
    group.add_argument(
        "--node-id", default=None, help="this node's unique, stable name (default: the host name and port)"
    )
    group.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="start N node processes sharing the ports (SO_REUSEPORT; needs --redis; default 1)",
    )
    group.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind the ports with SO_REUSEPORT (what --workers gives each worker)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``os3p-central``."""
    parser = argparse.ArgumentParser(prog="os3p-central", description="The OS³P Central System.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {os3p_core.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the Central System (WebSocket server and operator API)")
    _add_db_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="WebSocket listen address (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"WebSocket port (default {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--path", action="append", default=None, help="endpoint path, repeatable (default /OS3P)"
    )
    serve.add_argument(
        "--open-registration", action="store_true", help="register unknown identities on first connection"
    )
    serve.add_argument(
        "--boot-status",
        choices=[s.value for s in BootStatus],
        default=BootStatus.ACCEPTED.value,
        help="BootNotification answer unless overridden per station (default Accepted)",
    )
    serve.add_argument("--heartbeat-interval", type=int, default=300, help="seconds (default 300)")
    serve.add_argument(
        "--retry-interval", type=int, default=60, help="interval of Pending/Rejected answers (default 60)"
    )
    serve.add_argument(
        "--api-host", default="127.0.0.1", help="operator API listen address (default 127.0.0.1)"
    )
    serve.add_argument(
        "--api-port",
        type=int,
        default=DEFAULT_API_PORT,
        help=f"operator API port (default {DEFAULT_API_PORT})",
    )
    _add_token_option(serve)
    serve.add_argument(
        "--public-url", default=None, help="base URL stations use to reach the API (firmware, uploads)"
    )
    serve.add_argument("--files-dir", default=None, help="firmware and upload directory (default <db>.files)")
    serve.add_argument("--certfile", default=None, help="TLS certificate (PEM): serve wss:// and https://")
    serve.add_argument("--keyfile", default=None, help="TLS private key (PEM)")
    serve.add_argument(
        "--client-ca",
        default=None,
        help="CA bundle for mutual TLS: stations must present a certificate naming them",
    )
    serve.add_argument(
        "--auth",
        choices=["basic", "none"],
        default="basic",
        help="basic: stations must send HTTP Basic auth with their password (default); none: no password",
    )
    serve.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite synchronous mode (FULL: survives power loss; NORMAL: survives a crash)",
    )
    serve.add_argument(
        "--retain-meter-days",
        type=float,
        default=DEFAULT_RETAIN_METER_DAYS,
        help=f"keep meter values this many days, 0: for ever (default {DEFAULT_RETAIN_METER_DAYS:g})",
    )
    serve.add_argument(
        "--retain-events-days",
        type=float,
        default=DEFAULT_RETAIN_EVENTS_DAYS,
        help=f"keep the event log this many days, 0: for ever (default {DEFAULT_RETAIN_EVENTS_DAYS:g})",
    )

    export = commands.add_parser("export", help="stream meter values or the event log as CSV or JSON Lines")
    export.add_argument("what", choices=["meter-values", "events"])
    _add_db_options(export)
    export.add_argument("--station", default=None, help="one station (default: all)")
    export.add_argument("--since", default=None, help="from this date-time or POSIX second (inclusive)")
    export.add_argument("--until", default=None, help="up to this date-time or POSIX second (exclusive)")
    export.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or jsonl")
    export.add_argument("--measurand", default=None, help="meter values: only this measurand")
    export.add_argument("--kind", choices=[k.value for k in EventKind], default=None, help="events: one kind")

    _add_cluster_options(serve)

    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines as text or one JSON object per line; security events go to the os3p.security logger",
    )

    stations = commands.add_parser("stations", help="manage registered stations")
    station_commands = stations.add_subparsers(dest="stations_command", required=True)
    add = station_commands.add_parser("add", help="register a station")
    add.add_argument("identity")
    secret_source = add.add_mutually_exclusive_group()
    secret_source.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the station's password (AuthorizationKey) from stdin",
    )
    secret_source.add_argument(
        "--generate-password",
        action="store_true",
        help="generate a random AuthorizationKey (20 bytes, hex) and print it once",
    )
    _add_db_options(add)
    listing = station_commands.add_parser("list", help="list stations and their state")
    listing.add_argument("--json", action="store_true", help="print JSON")
    _add_db_options(listing)
    show = station_commands.add_parser("show", help="boot info, connection, last readings, contactor states")
    show.add_argument("identity")
    show.add_argument("--json", action="store_true", help="print JSON")
    _add_db_options(show)

    call = commands.add_parser("call", help="send a Central-System-initiated call through the operator API")
    call.add_argument("identity")
    call.add_argument("action")
    call.add_argument("payload", nargs="?", default="{}", help="JSON payload, or @FILE (default {})")
    call.add_argument(
        "--api",
        default=f"http://127.0.0.1:{DEFAULT_API_PORT}",
        help=f"operator API base URL (default http://127.0.0.1:{DEFAULT_API_PORT})",
    )
    _add_token_option(call)
    call.add_argument(
        "--timeout", type=float, default=30.0, help="seconds the station has to answer (default 30)"
    )
    return parser


# --- stations ---------------------------------------------------------------------------------------------


async def _stations(args: argparse.Namespace) -> int:
    if args.stations_command != "add" and not _exists(args.db):
        print(f"os3p-central: no database at {args.db}", file=sys.stderr)
        return 2
    async with open_store(args.db) as store:
        if args.stations_command == "add":
            password = None
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\r\n")
            elif args.generate_password:
                password = generate_authorization_key()
            secret = load_or_create_secret(_secret_path(args)) if password is not None else None
            central = CentralSystem(store, CentralConfig(), secret=secret)
            try:
                record = await central.add_station(args.identity, password)
            except StationExists:
                print(f"os3p-central: station {args.identity!r} is already registered", file=sys.stderr)
                return 2
            except ValueError as exc:
                print(f"os3p-central: {exc}", file=sys.stderr)
                return 2
            print(f"registered {record.identity}" + (" (with password)" if password is not None else ""))
            if args.generate_password:
                # Shown once: only its keyed hash is stored.
                print(f"password {password}")
            return 0
        if args.stations_command == "list":
            records = await store.list_stations()
            if args.json:
                print(json.dumps([station_json(r) for r in records], indent=2))
                return 0
            print(f"{'IDENTITY':<24} {'CONNECTED':<9} {'BOOT':<9} {'ACCEPTED':<8} {'LAST HEARTBEAT':<24}")
            for view in (station_json(r) for r in records):
                print(
                    f"{view['identity']:<24} {'yes' if view['connected'] else 'no':<9} "
                    f"{view['bootStatus'] or '-':<9} {'yes' if view['accepted'] else 'no':<8} "
                    f"{view['lastHeartbeat'] or '-':<24}"
                )
            return 0
        state = await store.station_state(args.identity)
        if state is None:
            print(f"os3p-central: no station {args.identity!r}", file=sys.stderr)
            return 2
        view = state_json(state)
        if args.json:
            print(json.dumps(view, indent=2))
        else:
            _print_state(view)
        return 0


def _print_state(view: dict[str, Any]) -> None:
    station = view["station"]
    print(f"station        {station['identity']}")
    print(f"registered     {station['registeredAt']} ({station['registeredBy']})")
    connection = f"connected since {station['connectedAt']}" if station["connected"] else "disconnected"
    print(f"connection     {connection}")
    print(
        f"boot           {station['bootStatus'] or '-'} at {station['bootAt'] or '-'}"
        f"{'  (accepted: remembered)' if station['accepted'] else ''}"
    )
    if station["bootStatusOverride"]:
        print(f"boot override  {station['bootStatusOverride']}")
    for key, value in (station["bootFields"] or {}).items():
        print(f"  {key:<13} {value}")
    print(f"heartbeat      {station['lastHeartbeat'] or '-'}")
    for contactor, event in view["contactors"].items():
        print(f"contactor {contactor}    {event['status']} since {event['timestamp']}")
    for contactor, event in view["modes"].items():
        print(f"mode {contactor:<9} {event['status']} since {event['timestamp']}")
    if view["lastStatus"]:
        payload = view["lastStatus"]["payload"]
        info = payload.get("info", "")
        print(f"status         {payload.get('status')} {payload.get('errorCode')} {info}".strip())
    for label, key in (("firmware", "firmwareStatus"), ("file", "fileStatus")):
        if view[key]:
            print(f"{label:<14} {view[key]['status']} at {view[key]['timestamp']}")
    if view["lastReadings"]:
        print("last readings")
        for measurand, reading in view["lastReadings"].items():
            unit = reading["unit"] or ""
            location = f" @{reading['location']}" if reading["location"] else ""
            print(f"  {measurand:<32} {reading['value']:>12} {unit:<5} {reading['timestamp']}{location}")


def _exists(db: str) -> bool:
    return is_postgres_url(db) or Path(db).exists()


# --- export -------------------------------------------------------------------------------------------------


async def _export(args: argparse.Namespace) -> int:
    try:
        since = None if args.since is None else parse_time(args.since, "--since")
        until = None if args.until is None else parse_time(args.until, "--until")
    except ValueError as exc:
        print(f"os3p-central: {exc}", file=sys.stderr)
        return 2
    if not _exists(args.db):
        print(f"os3p-central: no database at {args.db}", file=sys.stderr)
        return 2
    async with open_store(args.db) as store:
        if args.station is not None and await store.get_station(args.station) is None:
            print(f"os3p-central: no station {args.station!r}", file=sys.stderr)
            return 2
        if args.what == "meter-values":
            chunks = export_meter_values(
                store, args.station, args.format, measurand=args.measurand, since=since, until=until
            )
        else:
            kind = None if args.kind is None else EventKind(args.kind)
            chunks = export_events(store, args.station, args.format, kind=kind, since=since, until=until)
        # Page by page to stdout: memory stays constant however long the history.
        out = sys.stdout
        async for chunk in chunks:
            out.write(chunk)
        out.flush()
    return 0


def store_failure(exc: BaseException) -> StoreUnavailable | None:
    """The :class:`StoreUnavailable` behind ``exc`` (also inside an exception group), else ``None``."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = store_failure(inner)
            if found is not None:
                return found
    return None


# --- call ---------------------------------------------------------------------------------------------------


def _call(args: argparse.Namespace) -> int:
    text = args.payload
    try:
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        payload = json.loads(text)
    except (OSError, ValueError) as exc:
        print(f"os3p-central: cannot read the payload: {exc}", file=sys.stderr)
        return 2
    url = f"{args.api.rstrip('/')}/api/stations/{_quote(args.identity)}/calls/{_quote(args.action)}"
    token = read_api_token(args)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        # The station gets ``--timeout`` to answer; the HTTP request a little more.
        response = httpx.post(
            url, params={"timeout": args.timeout}, json=payload, headers=headers, timeout=args.timeout + 10
        )
    except httpx.HTTPError as exc:
        print(f"os3p-central: cannot reach the operator API at {args.api}: {exc}", file=sys.stderr)
        return 2
    try:
        body = response.json()
    except ValueError:
        body = {"error": "HTTP", "message": response.text}
    if response.status_code == 200:
        print(json.dumps(body["result"], indent=2))
        return 0
    print(json.dumps(body, indent=2), file=sys.stderr)
    return 1 if response.status_code in (502, 504) else 2


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# --- entry point --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``os3p-central``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "stations":
            # Output is written once the database is closed, so a reader that goes away early
            # (``stations show ID | head``) cannot interrupt the store.
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                code = trio.run(_stations, args)
            sys.stdout.write(buffer.getvalue())
            sys.stdout.flush()
            return code
        if args.command == "export":
            return trio.run(_export, args)
        if args.command == "call":
            return _call(args)
    except BrokenPipeError:
        # The reader of our output went away: not an error of ours; keep the interpreter from reporting it
        # again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except BaseException as exc:
        failure = store_failure(exc)
        if failure is None:
            raise
        print(f"os3p-central: {failure}", file=sys.stderr)
        return 2
    if args.workers != 1:
        return _run_workers(args, list(argv) if argv is not None else sys.argv[1:])
    from ._server import run_serve

    return run_serve(args)


def _run_workers(args: argparse.Namespace, argv: list[str]) -> int:
    from ._workers import run_workers

    if args.workers < 1 or args.redis is None:
        print("os3p-central: --workers N needs N >= 1 and --redis (the workers route calls through it)",
              file=sys.stderr)
        return 2
    serve_argv = argv[argv.index("serve") + 1 :]
    node_id = args.node_id or f"{socket.gethostname()}-{args.port}"
    return run_workers(serve_argv, args.workers, node_id, args.host, args.port, args.api_host, args.api_port)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
