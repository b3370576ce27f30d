"""The operator HTTP API: an ASGI (Starlette) application, served by hypercorn's trio worker in the same trio
process as the WebSocket server.

Routes (all JSON; times are OS³P date-times with ``Z``)::

    GET    /api/info                                        URLs (WebSocket, firmware, uploads) and policy
    GET    /api/summary                                     fleet counts (connected, firmware, lights on...)
    GET    /api/stations?connected=&after=&limit=           stations and their state (keyset paging)
    POST   /api/stations                 {"identity", "password"?}   register (201; 409 if it exists)
    GET    /api/stations/{identity}                         record + effective state
    DELETE /api/stations/{identity}                         forget the station and its data
    PUT    /api/stations/{identity}/boot-status  {"status": "Accepted"|"Pending"|"Rejected"|null}
    GET    /api/stations/{identity}/meter-values?measurand=&since=&until=&limit=&format=json|csv|jsonl
    GET    /api/stations/{identity}/events?kind=&limit=&format=json|csv|jsonl&since=&until=
                                  (format=csv|jsonl: the whole range, streamed; see docs/central.md)
    GET    /api/stations/{identity}/uploads
    POST   /api/stations/{identity}/calls/{Action}?timeout=S  payload as body -> {"result": ...}
    PUT    /api/firmware/{name}                             publish a firmware image (raw body)
    GET    /firmware/{name}                                 download it (UpdateFirmware ``location``)
    PUT|POST /files/{identity}/{token}/{name}               a station's GetFile upload (raw body); the
                                                            station's ``uploadLocation`` carries the token

Errors are ``{"error": <kind>, "message": ..., ...}`` with the status codes of ``docs/central.md``: 404
unknown
station or action, 409 station disconnected (or already registered), 422 payload failing its schema (with the
CallError code, path and rule it would have produced), 502 the station answered a CALLERROR (its code,
description and details), 504 the call timed out; in a cluster (docs/cluster.md) also 409 ``OwnerNodeDead``
(the node holding the station is gone) and 503 ``ClusterUnavailable`` (Redis unreachable, the call cannot be
routed).  ``GET /healthz`` (the monitor's, :mod:`._console`) answers 200 without a token (load balancer
health checks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from os3p_core import SchemaViolation
from os3p_trio import CallErrorReceived, CallTimeout, ConnectionClosed, InvalidResult

from ._console import monitor_routes
from ._export import (
    FORMATS,
    MEDIA_TYPES,
    ExportFormat,
    event_json,
    export_events,
    export_meter_values,
    meter_value_json,
)
from ._export import parse_time as _parse_time
from ._monitor import Monitor
from ._routing import ClusterUnavailable, OwnerNodeDead
from ._service import CentralSystem, NotConnected, UnknownAction, format_time
from ._store import (
    BootStatus,
    EventKind,
    StationExists,
    StationRecord,
    StationState,
    UnknownStation,
    UploadRecord,
)
from ._web import console_routes

__all__ = [
    "FileArea",
    "create_api",
    "event_json",
    "meter_value_json",
    "serve_api",
    "state_json",
    "station_json",
]

# A file name we serve or accept: no path separators, no leading dot (no "..", no hidden files).
_FILE_NAME = re.compile(r"(?!\.)[\w.=+-]{1,200}")
_CHUNK = 64 * 1024


@attrs.frozen(slots=True)
class FileArea:
    """Where firmware images are served from and GetFile uploads land.

    ``max_upload_bytes`` bounds one upload (and one published firmware image): a bigger body is refused with
    413
    and the partial file removed.
    """

    firmware_dir: Path
    uploads_dir: Path
    max_upload_bytes: int = 64 * 1024 * 1024

    def ensure(self) -> None:
        """Create the directories."""
        self.firmware_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)


def _time(value: float | None) -> str | None:
    return None if value is None else format_time(value)


def station_json(record: StationRecord) -> dict[str, Any]:
    """A station record as the API shows it (the password hash is never shown, only whether one is set)."""
    return {
        "identity": record.identity,
        "hasPassword": record.password_hash is not None,
        "registeredAt": _time(record.registered_at),
        "registeredBy": record.registered_by,
        "bootStatusOverride": record.boot_status_override,
        "bootStatus": record.boot_status,
        "bootFields": record.boot_fields,
        "bootAt": _time(record.boot_at),
        "accepted": record.accepted,
        "lastHeartbeat": _time(record.last_heartbeat),
        "connected": record.connected,
        "connectedAt": _time(record.connected_at),
        "disconnectedAt": _time(record.disconnected_at),
    }


def upload_json(upload: UploadRecord) -> dict[str, Any]:
    """One received GetFile upload."""
    return {
        "id": upload.id,
        "fileName": upload.file_name,
        "size": upload.size,
        "sha256": upload.sha256,
        "receivedAt": format_time(upload.received_at),
    }


def state_json(state: StationState) -> dict[str, Any]:
    """A station's effective state: contactors, modes, last status, firmware/file status, last readings."""
    return {
        "station": station_json(state.station),
        "contactors": {str(k): event_json(v) for k, v in sorted(state.contactors.items())},
        "modes": {("all" if k == 0 else str(k)): event_json(v) for k, v in sorted(state.modes.items())},
        "lastStatus": None if state.last_status is None else event_json(state.last_status),
        "firmwareStatus": None if state.firmware_status is None else event_json(state.firmware_status),
        "fileStatus": None if state.file_status is None else event_json(state.file_status),
        "lastReadings": {k: meter_value_json(v) for k, v in state.last_readings.items()},
    }


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status)


def _not_found(identity: str) -> JSONResponse:
    return _error(404, "UnknownStation", f"no station {identity!r} is registered", identity=identity)


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    return json.loads(body)


def _time_param(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    return None if text is None else _parse_time(text, name)


def _limit_param(request: Request, default: int = 1000, maximum: int = 100_000) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return default
    value = int(text)
    if not 0 <= value <= maximum:
        raise ValueError(f"limit must be between 0 and {maximum}")
    return value


# --- streamed export (issue 13) -------------------------------------------------------------------------


def _export_format(request: Request) -> ExportFormat | Response | None:
    """``?format=csv|jsonl``: a streamed export; absent or ``json``: the JSON list answer; else 400."""
    text = request.query_params.get("format")
    if text is None or text == "json":
        return None
    for fmt in FORMATS:
        if text == fmt:
            return fmt
    return _error(400, "BadRequest", "format must be json, csv or jsonl")


def _streamed(chunks: AsyncIterator[str], fmt: ExportFormat, name: str) -> StreamingResponse:
    safe = re.sub(r"[^\w.=+-]", "_", name)
    extension = "csv" if fmt == "csv" else "jsonl"
    return StreamingResponse(
        chunks,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{safe}.{extension}"'},
    )


async def _receive_file(request: Request, target: Path, limit: int) -> tuple[int, str] | None:
    """Stream the request body into ``target``; ``None`` (and no file) when it exceeds ``limit`` bytes."""
    digest = hashlib.sha256()
    size = 0
    partial = target.with_name(target.name + ".part")
    async with await trio.open_file(partial, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                break
            digest.update(chunk)
            await out.write(chunk)
    if size > limit:
        partial.unlink(missing_ok=True)
        return None
    partial.replace(target)
    return size, digest.hexdigest()


def upload_token(secret: bytes | None, identity: str) -> str:
    """The capability token in a station's upload URL: HMAC-SHA256(secret, identity), 32 hex digits.

    Stateless and unguessable without the server secret, so only whoever was handed the ``uploadLocation``
    (the operator, and the station through GetFile's ``location``) can upload files for that station.
    """
    return hmac.new(secret or b"", b"os3p-upload\x00" + identity.encode(), hashlib.sha256).hexdigest()[:32]


def create_api(
    central: CentralSystem,
    files: FileArea,
    *,
    public_url: str | None = None,
    api_token: str | None = None,
    monitor: Monitor | None = None,
) -> Starlette:
    """The operator API of ``central`` as an ASGI application (run it with hypercorn's trio worker).

    ``public_url`` is the base URL stations use to reach this API (for firmware downloads and GetFile
    uploads); by default the URL the request came in on.  ``api_token``: every ``/api/`` route requires
    ``Authorization: Bearer <api_token>`` (401 otherwise); ``None`` leaves them open (bind to loopback then).
    Firmware downloads are open; uploads need the station's capability URL (:func:`upload_token`).
    ``monitor`` (a new, idle one by default) serves ``/metrics``, health, ``/api/fleet`` and the message log.
    """
    store = central.store
    files.ensure()
    expected = None if api_token is None else ("Bearer " + api_token).encode()

    def operator(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        if expected is None:
            return handler

        async def checked(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                response = _error(401, "Unauthorized", "this API needs Authorization: Bearer <token>")
                response.headers["WWW-Authenticate"] = 'Bearer realm="os3p-central"'
                return response
            return await handler(request)

        return checked

    def base_url(request: Request) -> str:
        return (public_url or str(request.base_url)).rstrip("/")

    def locations(request: Request, identity: str) -> dict[str, str]:
        base = base_url(request)
        token = upload_token(central.secret, identity)
        return {
            "uploadLocation": f"{base}/files/{quote(identity, safe='')}/{token}",
            "firmwareBase": f"{base}/firmware/",
        }

    async def info(request: Request) -> Response:
        return JSONResponse(
            {
                "websocket": central.ws_url,
                "firmwareBase": f"{base_url(request)}/firmware/",
                "uploadBase": f"{base_url(request)}/files/",
                "openRegistration": central.config.open_registration,
                "bootStatus": central.config.boot_status.value,
                "heartbeatInterval": central.config.heartbeat_interval,
                "stationsConnected": central.live.count() if central.live is not None else 0,
                # Group commit at work: operations per committed batch (SQLite store only).
                "store": {
                    "batchesCommitted": getattr(store, "batches_committed", None),
                    "operationsCommitted": getattr(store, "operations_committed", None),
                },
            }
        )

    async def summary(request: Request) -> Response:
        fleet = await store.fleet_summary()
        return JSONResponse(
            {
                "stations": fleet.stations,
                "connected": fleet.connected,
                "accepted": fleet.accepted,
                "firmwareVersions": dict(fleet.firmware_versions),
                "lightsOn": fleet.lights_on,
                "meterValues": fleet.meter_values,
                "events": dict(fleet.events),
                "uploads": fleet.uploads,
            }
        )

    async def list_stations(request: Request) -> Response:
        # Keyset paging for large fleets: ?limit=N&after=<last identity of the previous page>.
        query = request.query_params
        try:
            limit = _limit_param(request, default=100_000)
            raw = query.get("connected")
            if raw not in (None, "true", "false"):
                raise ValueError("connected must be true or false")
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        connected = None if raw is None else raw == "true"
        records = await store.list_stations(after=query.get("after"), limit=limit, connected=connected)
        return JSONResponse([station_json(s) for s in records])

    async def add_station(request: Request) -> Response:
        try:
            body = await _json_body(request)
            identity = body["identity"]
            password = body.get("password")
            if not isinstance(identity, str) or not (password is None or isinstance(password, str)):
                raise TypeError("identity and password must be strings")
            record = await central.add_station(identity, password)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _error(400, "BadRequest", f"invalid station: {exc}")
        except StationExists:
            return _error(409, "StationExists", f"station {identity!r} is already registered")
        return JSONResponse(station_json(record), status_code=201)

    async def get_station(request: Request) -> Response:
        identity = request.path_params["identity"]
        state = await store.station_state(identity)
        if state is None:
            return _not_found(identity)
        # Where this station uploads GetFile results (the ``location`` to send) and finds firmware.
        return JSONResponse({**state_json(state), **locations(request, identity)})

    async def delete_station(request: Request) -> Response:
        identity = request.path_params["identity"]
        try:
            await store.remove_station(identity)
        except UnknownStation:
            return _not_found(identity)
        return Response(status_code=204)

    async def set_boot_status(request: Request) -> Response:
        identity = request.path_params["identity"]
        try:
            body = await _json_body(request)
            raw = body.get("status")
            status = None if raw is None else BootStatus(raw)
        except (ValueError, AttributeError) as exc:
            return _error(400, "BadRequest", f"status must be Accepted, Pending, Rejected or null: {exc}")
        try:
            await store.set_boot_status_override(identity, status)
        except UnknownStation:
            return _not_found(identity)
        return JSONResponse({"identity": identity, "bootStatusOverride": status})

    async def meter_values(request: Request) -> Response:
        identity = request.path_params["identity"]
        try:
            since = _time_param(request, "since")
            until = _time_param(request, "until")
            limit = _limit_param(request)
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        if await store.get_station(identity) is None:
            return _not_found(identity)
        export = _export_format(request)
        if isinstance(export, Response):
            return export
        if export is not None:
            # Streamed export (issue 13): every value in the range, page by page, no ``limit``.
            chunks = export_meter_values(
                store,
                identity,
                export,
                measurand=request.query_params.get("measurand"),
                since=since,
                until=until,
            )
            return _streamed(chunks, export, f"{identity}-meter-values")
        rows = await store.meter_values(
            identity, measurand=request.query_params.get("measurand"), since=since, until=until, limit=limit
        )
        return JSONResponse([meter_value_json(r) for r in rows])

    async def events(request: Request) -> Response:
        identity = request.path_params["identity"]
        try:
            raw_kind = request.query_params.get("kind")
            kind = None if raw_kind is None else EventKind(raw_kind)
            limit = _limit_param(request)
            since = _time_param(request, "since")
            until = _time_param(request, "until")
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        if await store.get_station(identity) is None:
            return _not_found(identity)
        export = _export_format(request)
        if isinstance(export, Response):
            return export
        if export is not None:
            # Streamed export, oldest first; since/until select by arrival time (received_at).
            chunks = export_events(store, identity, export, kind=kind, since=since, until=until)
            return _streamed(chunks, export, f"{identity}-events")
        return JSONResponse([event_json(e) for e in await store.events(identity, kind=kind, limit=limit)])

    async def uploads(request: Request) -> Response:
        identity = request.path_params["identity"]
        if await store.get_station(identity) is None:
            return _not_found(identity)
        return JSONResponse([upload_json(u) for u in await store.uploads(identity)])

    async def call(request: Request) -> Response:
        identity = request.path_params["identity"]
        action = request.path_params["action"]
        try:
            payload = await _json_body(request)
        except ValueError as exc:
            return _error(400, "BadRequest", f"the body is not JSON: {exc}")
        try:
            raw_timeout = request.query_params.get("timeout")
            timeout = None if raw_timeout is None else float(raw_timeout)
            if timeout is not None and not 0 < timeout <= 3600:
                raise ValueError("out of range")
        except ValueError:
            return _error(400, "BadRequest", "timeout must be seconds in (0, 3600]")
        try:
            result = await central.call(identity, action, payload, timeout=timeout)
        except UnknownAction:
            return _error(404, "UnknownAction", f"{action!r} is not a Central-System-initiated OS³P action")
        except SchemaViolation as exc:
            return _error(
                422,
                "SchemaViolation",
                exc.description,
                code=exc.code.value,
                path=exc.path,
                rule=exc.rule,
            )
        except UnknownStation:
            return _not_found(identity)
        except OwnerNodeDead as exc:
            return _error(409, "OwnerNodeDead", str(exc), identity=identity)
        except NotConnected:
            return _error(409, "NotConnected", f"station {identity!r} is not connected", identity=identity)
        except ClusterUnavailable as exc:
            return _error(503, "ClusterUnavailable", str(exc), identity=identity)
        except CallErrorReceived as exc:
            return _error(
                502,
                "CallError",
                exc.description,
                code=exc.code,
                description=exc.description,
                details=exc.details,
            )
        except CallTimeout as exc:
            return _error(504, "CallTimeout", str(exc))
        except InvalidResult as exc:
            return _error(502, "InvalidResult", str(exc))
        except ConnectionClosed as exc:
            return _error(409, "NotConnected", f"the connection closed during the call: {exc}")
        return JSONResponse({"action": action, "result": result})

    async def publish_firmware(request: Request) -> Response:
        name = request.path_params["name"]
        if not _FILE_NAME.fullmatch(name):
            return _error(400, "BadRequest", "invalid file name")
        received = await _receive_file(request, files.firmware_dir / name, files.max_upload_bytes)
        if received is None:
            return _error(413, "TooLarge", f"bigger than {files.max_upload_bytes} bytes")
        size, sha256 = received
        return JSONResponse({"name": name, "size": size, "sha256": sha256, "path": f"/firmware/{name}"}, 201)

    async def get_firmware(request: Request) -> Response:
        name = request.path_params["name"]
        path = files.firmware_dir / name
        if not _FILE_NAME.fullmatch(name) or not path.is_file():
            return _error(404, "NotFound", f"no firmware file {name!r}")
        return FileResponse(path, media_type="application/octet-stream")

    async def receive_upload(request: Request) -> Response:
        identity = request.path_params["identity"]
        name = request.path_params["name"]
        token = request.path_params["token"].encode()
        if not hmac.compare_digest(token, upload_token(central.secret, identity).encode()):
            # The same answer for an unknown station: the token is the credential.
            return _error(403, "Forbidden", "not a valid upload location")
        if not _FILE_NAME.fullmatch(name):
            return _error(400, "BadRequest", "invalid file name")
        if await store.get_station(identity) is None:
            return _not_found(identity)
        # One directory per station, named by a hash: identities may hold characters no file system likes.
        directory = files.uploads_dir / hashlib.sha256(identity.encode()).hexdigest()[:16]
        directory.mkdir(parents=True, exist_ok=True)
        received = await _receive_file(request, directory / name, files.max_upload_bytes)
        if received is None:
            return _error(413, "TooLarge", f"bigger than {files.max_upload_bytes} bytes")
        size, sha256 = received
        upload = await store.record_upload(identity, name, size, sha256, central.clock())
        return JSONResponse(upload_json(upload), status_code=201)

    routes = [
        Route("/api/info", operator(info), methods=["GET"]),
        Route("/api/summary", operator(summary), methods=["GET"]),
        Route("/api/stations", operator(list_stations), methods=["GET"]),
        Route("/api/stations", operator(add_station), methods=["POST"]),
        Route("/api/stations/{identity}", operator(get_station), methods=["GET"]),
        Route("/api/stations/{identity}", operator(delete_station), methods=["DELETE"]),
        Route("/api/stations/{identity}/boot-status", operator(set_boot_status), methods=["PUT"]),
        Route("/api/stations/{identity}/meter-values", operator(meter_values), methods=["GET"]),
        Route("/api/stations/{identity}/events", operator(events), methods=["GET"]),
        Route("/api/stations/{identity}/uploads", operator(uploads), methods=["GET"]),
        Route("/api/stations/{identity}/calls/{action}", operator(call), methods=["POST"]),
        Route("/api/firmware/{name}", operator(publish_firmware), methods=["PUT"]),
        Route("/firmware/{name}", get_firmware, methods=["GET"]),
        Route("/files/{identity}/{token}/{name}", receive_upload, methods=["PUT", "POST"]),
    ]
    # --- monitor: metrics, health, fleet aggregates, message log (issue 15) ---
    monitor = monitor or Monitor(store)
    routes += monitor_routes(central, monitor, operator)
    routes += console_routes(central, monitor, api_token)
    # --- end monitor ---
    return Starlette(routes=routes)


async def serve_api(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's trio worker until cancelled; ``task_status.started`` gets the base URL
    (``http://127.0.0.1:PORT``, ``https://`` with a certificate), with the real port when ``port`` is 0.
    ``sock``: serve this bound socket instead of binding ``host``:``port``."""
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if sock is not None:
        # A socket made by the caller (``SO_REUSEPORT`` workers): hypercorn serves it by descriptor.
        config.bind = [f"fd://{sock.fileno()}"]
    config.certfile = certfile
    config.keyfile = keyfile
    config.accesslog = None
    config.loglevel = "WARNING"
    # Operator requests are short; an upload may take a while, but not forever.
    config.graceful_timeout = 2.0

    async def started(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await hypercorn_serve(app, config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(started)
        task_status.started(binds[0])
