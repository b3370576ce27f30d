"""The OpenAPI 3.1 description of the operator API (``GET /api/openapi.json``) and its human-readable page
(``GET /api/docs``).  ``tests/test_console_openapi.py`` checks real responses against these schemas."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["docs_html", "openapi_document"]

_T = {"type": ["string", "null"], "format": "date-time"}
_S = {"type": "string"}
_I = {"type": "integer"}
_B = {"type": "boolean"}


def _obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": extra,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _S, "message": _S}, ["error", "message"], extra=True),
    "Station": _obj(
        {
            "identity": _S,
            "hasPassword": _B,
            "registeredAt": _T,
            "registeredBy": _S,
            "bootStatusOverride": {"enum": ["Accepted", "Pending", "Rejected", None]},
            "bootStatus": {"enum": ["Accepted", "Pending", "Rejected", None]},
            "bootFields": {"type": ["object", "null"]},
            "bootAt": _T,
            "accepted": _B,
            "lastHeartbeat": _T,
            "connected": _B,
            "connectedAt": _T,
            "disconnectedAt": _T,
        }
    ),
    "Event": _obj(
        {
            "id": _I,
            "kind": _S,
            "timestamp": _T,
            "receivedAt": _T,
            "contactorId": {"type": ["integer", "null"]},
            "status": {"type": ["string", "null"]},
            "payload": {"type": "object"},
        }
    ),
    "MeterValue": _obj(
        {
            "timestamp": _T,
            "measurand": _S,
            "value": _S,
            "numeric": {"type": ["number", "null"]},
            "unit": {"type": ["string", "null"]},
            "context": _S,
            "format": _S,
            "location": {"type": ["string", "null"]},
            "receivedAt": _T,
        }
    ),
    "Upload": _obj({"id": _I, "fileName": _S, "size": _I, "sha256": _S, "receivedAt": _T}),
    "StationState": _obj(
        {
            "station": _ref("Station"),
            "contactors": {"type": "object", "additionalProperties": _ref("Event")},
            "modes": {"type": "object", "additionalProperties": _ref("Event")},
            "lastStatus": {"oneOf": [_ref("Event"), {"type": "null"}]},
            "firmwareStatus": {"oneOf": [_ref("Event"), {"type": "null"}]},
            "fileStatus": {"oneOf": [_ref("Event"), {"type": "null"}]},
            "lastReadings": {"type": "object", "additionalProperties": _ref("MeterValue")},
            "uploadLocation": _S,
            "firmwareBase": _S,
        }
    ),
    "Summary": _obj(
        {
            "stations": _I,
            "connected": _I,
            "accepted": _I,
            "firmwareVersions": {"type": "object", "additionalProperties": _I},
            "lightsOn": _I,
            "meterValues": _I,
            "events": {"type": "object", "additionalProperties": _I},
            "uploads": _I,
        }
    ),
    "Fleet": _obj(
        {
            "stations": _obj(
                {"registered": _I, "connected": _I, "accepted": _I, "pending": _I, "rejected": _I}
            ),
            "lightsOn": _I,
            "activeFaults": _I,
            "firmwareVersions": {"type": "object", "additionalProperties": _I},
            "meterValues": _I,
            "meterValueRate": {"type": "number"},
            "events": {"type": "object", "additionalProperties": _I},
            "uploads": _I,
            "aggregatedAt": {"type": "number"},
            "aggregationSeconds": {"type": "number"},
        }
    ),
    "Info": _obj(
        {
            "websocket": {"type": ["string", "null"]},
            "firmwareBase": _S,
            "uploadBase": _S,
            "openRegistration": _B,
            "bootStatus": _S,
            "heartbeatInterval": _I,
            "stationsConnected": _I,
            "store": {"type": "object"},
        }
    ),
    "LoggedFrame": _obj(
        {
            "seq": _I,
            "time": {"type": "string", "format": "date-time"},
            "direction": {"enum": ["in", "out"]},
            "frame": _S,
            "truncated": _B,
        }
    ),
    "CallAnswer": _obj({"action": _S, "result": {"type": "object"}}),
    "FirmwareFile": _obj({"name": _S, "size": _I, "sha256": _S, "path": _S}),
    "Health": _obj({"status": _S, "uptime": {"type": "number"}}, ["status"], extra=True),
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "error (see docs/central.md for the status codes)")
_ID = {"name": "identity", "in": "path", "required": True, "schema": _S}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_LIMIT = _q("limit", {"type": "integer", "minimum": 0}, "at most this many rows")


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


_PATHS: dict[str, Any] = {
    "/api/info": {"get": _op("URLs (WebSocket, firmware, uploads) and policy", {"200": _json(_ref("Info"))})},
    "/api/summary": {"get": _op("Fleet counts from the store", {"200": _json(_ref("Summary"))})},
    "/api/fleet": {
        "get": _op(
            "Fleet aggregates for dashboards (cached; states, faults, meter-value rate)",
            {"200": _json(_ref("Fleet"))},
        )
    },
    "/api/stations": {
        "get": _op(
            "Stations by identity (keyset paging)",
            {"200": _json({"type": "array", "items": _ref("Station")}), "400": _ERR},
            parameters=[
                _q("after", _S, "the last identity of the previous page"),
                _LIMIT,
                _q("connected", {"enum": ["true", "false"]}, "only (dis)connected stations"),
            ],
        ),
        "post": _op(
            "Register a station",
            {"201": _json(_ref("Station"), "registered"), "400": _ERR, "409": _ERR},
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _obj({"identity": _S, "password": _S}, ["identity"]),
                    }
                },
            },
        ),
    },
    "/api/stations/{identity}": {
        "parameters": [_ID],
        "get": _op(
            "A station's record and effective state", {"200": _json(_ref("StationState")), "404": _ERR}
        ),
        "delete": _op("Forget a station and its data", {"204": {"description": "removed"}, "404": _ERR}),
    },
    "/api/stations/{identity}/boot-status": {
        "parameters": [_ID],
        "put": _op(
            "Set or clear the station's BootNotification answer",
            {
                "200": _json(_obj({"identity": _S, "bootStatusOverride": {"type": ["string", "null"]}})),
                "400": _ERR,
                "404": _ERR,
            },
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _obj({"status": {"enum": ["Accepted", "Pending", "Rejected", None]}})
                    }
                },
            },
        ),
    },
    "/api/stations/{identity}/meter-values": {
        "parameters": [_ID],
        "get": _op(
            "Sampled values, oldest first",
            {"200": _json({"type": "array", "items": _ref("MeterValue")}), "400": _ERR, "404": _ERR},
            parameters=[
                _q("measurand", _S, "only this measurand"),
                _q("since", _S, "date-time or POSIX seconds (inclusive)"),
                _q("until", _S, "date-time or POSIX seconds (exclusive)"),
                _LIMIT,
            ],
        ),
    },
    "/api/stations/{identity}/events": {
        "parameters": [_ID],
        "get": _op(
            "The station's event log, newest first",
            {"200": _json({"type": "array", "items": _ref("Event")}), "400": _ERR, "404": _ERR},
            parameters=[_q("kind", _S, "only this event kind"), _LIMIT],
        ),
    },
    "/api/stations/{identity}/uploads": {
        "parameters": [_ID],
        "get": _op(
            "Files the station uploaded (GetFile)",
            {"200": _json({"type": "array", "items": _ref("Upload")}), "404": _ERR},
        ),
    },
    "/api/stations/{identity}/messages": {
        "parameters": [_ID],
        "get": _op(
            "The two-way message log (in memory, newest first), JSON or CSV",
            {
                "200": {
                    "description": "frames",
                    "content": {
                        "application/json": {"schema": {"type": "array", "items": _ref("LoggedFrame")}},
                        "text/csv": {"schema": _S},
                    },
                },
                "400": _ERR,
                "404": _ERR,
            },
            parameters=[
                _LIMIT,
                _q("before", _I, "only frames with seq below this (paging)"),
                _q("direction", {"enum": ["in", "out"]}, "only this direction"),
                _q("format", {"enum": ["json", "csv"]}, "json (default) or csv"),
            ],
        ),
    },
    "/api/stations/{identity}/calls/{action}": {
        "parameters": [_ID, {"name": "action", "in": "path", "required": True, "schema": _S}],
        "post": _op(
            "Send one of the 13 Central-System-initiated actions; the body is its payload",
            {
                "200": _json(_ref("CallAnswer")),
                "400": _ERR,
                "404": _ERR,
                "409": _ERR,
                "422": _ERR,
                "502": _ERR,
                "504": _ERR,
            },
            parameters=[_q("timeout", {"type": "number"}, "seconds the station has to answer, (0, 3600]")],
            requestBody={"content": {"application/json": {"schema": {"type": "object"}}}},
        ),
    },
    "/api/firmware/{name}": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _S}],
        "put": _op(
            "Publish a firmware image (raw body)",
            {"201": _json(_ref("FirmwareFile"), "published"), "400": _ERR, "413": _ERR},
            requestBody={"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
        ),
    },
    "/firmware/{name}": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _S}],
        "get": _op(
            "Download a firmware image (UpdateFirmware location; open)",
            {"200": {"description": "the image", "content": {"application/octet-stream": {}}}, "404": _ERR},
            security=[],
        ),
    },
    "/files/{identity}/{token}/{name}": {
        "parameters": [
            _ID,
            {"name": "token", "in": "path", "required": True, "schema": _S},
            {"name": "name", "in": "path", "required": True, "schema": _S},
        ],
        "put": _op(
            "A station's GetFile upload (capability URL; raw body)",
            {"201": _json(_ref("Upload"), "stored"), "400": _ERR, "403": _ERR, "404": _ERR, "413": _ERR},
            security=[],
        ),
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics (text format 0.0.4; bounded labels, no station identities)",
            {"200": {"description": "metrics", "content": {"text/plain": {"schema": _S}}}},
        )
    },
    "/healthz": {"get": _op("The process is alive (open)", {"200": _json(_ref("Health"))}, security=[])},
    "/readyz": {
        "get": _op(
            "Store reachable and WebSocket server listening (open)",
            {"200": _json(_ref("Health")), "503": _json(_ref("Health"), "not ready")},
            security=[],
        )
    },
}

# Uploads take PUT or POST alike.
_PATHS["/files/{identity}/{token}/{name}"]["post"] = _PATHS["/files/{identity}/{token}/{name}"]["put"]


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operator API."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "os3p Central System operator API",
            "version": "1",
            "description": "Operator API of os3p-central (docs/central.md, docs/console.md). Times are OS³P "
            "date-times with Z.",
        },
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def docs_html(doc: dict[str, Any]) -> str:
    """A plain, self-contained HTML page listing every route of ``doc`` (no script, no CDN)."""
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            params = [p["name"] for p in item.get("parameters", []) + op.get("parameters", [])]
            codes = ", ".join(op["responses"])
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{html.escape(', '.join(params))}</td>"
                f"<td>{codes}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>os3p operator API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
        "text-align:left}</style></head><body><h1>os3p operator API</h1>"
        "<p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a> (OpenAPI 3.1). "
        "Authentication: <code>Authorization: Bearer &lt;token&gt;</code> when the service has a token.</p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>parameters</th><th>answers</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
