"""Operator routes of the monitor: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/fleet`` and the message log
(``/api/stations/{identity}/messages``, JSON or CSV).

``/metrics`` and the ``/api/`` routes take the API's bearer token (through the ``operator`` wrapper of
:func:`~._api.create_api`); ``/healthz`` and ``/readyz`` are open (probes carry no credentials and the
answers reveal nothing).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ._messagelog import frames_csv
from ._metrics import CONTENT_TYPE
from ._monitor import Monitor
from ._openapi import docs_html, openapi_document
from ._service import CentralSystem, format_time

__all__ = ["monitor_routes"]

Handler = Callable[[Request], Awaitable[Response]]


def _int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def monitor_routes(
    central: CentralSystem, monitor: Monitor, operator: Callable[[Handler], Handler]
) -> list[Route]:
    """The routes; ``operator`` wraps those that need the API token."""
    store = central.store

    async def metrics(request: Request) -> Response:
        return Response(monitor.metrics.exposition(), media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "uptime": round(time.time() - monitor.started_at, 1)})

    async def readyz(request: Request) -> Response:
        problems: list[str] = []
        if not monitor.listening:
            problems.append("the WebSocket server is not listening")
        try:
            await store.get_station("\x00readyz")
        except Exception as exc:  # the store's own failure: not ready
            problems.append(f"store unreachable: {type(exc).__name__}: {exc}")
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def fleet(request: Request) -> Response:
        return JSONResponse(monitor.fleet_json(await monitor.snapshot()))

    async def messages(request: Request) -> Response:
        identity = request.path_params["identity"]
        try:
            limit = _int(request, "limit", 100, 0, monitor.messages.config.per_station)
            before = _int(request, "before", None, 0, 2**62)
            direction = request.query_params.get("direction")
            if direction not in (None, "in", "out"):
                raise ValueError("direction must be in or out")
            fmt = request.query_params.get("format", "json")
            if fmt not in ("json", "csv"):
                raise ValueError("format must be json or csv")
        except ValueError as exc:
            return JSONResponse({"error": "BadRequest", "message": str(exc)}, status_code=400)
        if await store.get_station(identity) is None:
            return JSONResponse(
                {
                    "error": "UnknownStation",
                    "message": f"no station {identity!r} is registered",
                    "identity": identity,
                },
                status_code=404,
            )
        assert limit is not None
        entries = monitor.messages.entries(identity, limit=limit, before=before, direction=direction)
        if fmt == "csv":
            return PlainTextResponse(
                frames_csv(identity, entries, format_time),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="messages.csv"'},
            )
        body: list[dict[str, Any]] = [
            {
                "seq": e.seq,
                "time": format_time(e.time),
                "direction": e.direction,
                "frame": e.text,
                "truncated": e.truncated,
            }
            for e in entries
        ]
        return JSONResponse(body)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def api_docs(request: Request) -> Response:
        return HTMLResponse(docs_html(openapi_document()))

    return [
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/docs", api_docs, methods=["GET"]),
        Route("/metrics", operator(metrics), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/api/fleet", operator(fleet), methods=["GET"]),
        Route("/api/stations/{identity}/messages", operator(messages), methods=["GET"]),
    ]
