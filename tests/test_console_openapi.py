"""``GET /api/openapi.json`` describes every operator route, and real answers of a live service (with a real
WebSocket station) validate against the document's schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from starlette.routing import Route
from trio_websocket import open_websocket_url

from os3p_trio.central import CentralConfig, FileArea, create_api, open_central_service, open_sqlite_store

BOOT = {
    "vendor": "V",
    "model": "M",
    "stationNumber": "1",
    "serialNumber": "S1",
    "firmwareVersion": "1.0",
    "iccid": "1",
    "imsi": "1",
}


def check(doc: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    op = doc["paths"][path][method]
    answer = op["responses"][str(response.status_code)]
    content = answer.get("content", {})
    media = response.headers.get("content-type", "").split(";")[0]
    if not content or media not in content or "schema" not in content[media]:
        assert not content or media in content, (path, method, media)
        return
    schema = {**content[media]["schema"], "components": doc["components"]}
    body = response.json() if media == "application/json" else response.text
    jsonschema.Draft202012Validator(schema).validate(body)


async def test_openapi_document_matches_real_answers(tmp_path: Path) -> None:
    files = FileArea(tmp_path / "fw", tmp_path / "up")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(store, CentralConfig(open_registration=True), files=files) as service,
        httpx.AsyncClient(base_url=service.api_url, timeout=10) as api,
    ):
        doc = (await api.get("/api/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        jsonschema.Draft202012Validator.check_schema({"components": doc["components"]})
        # Every route of the app is documented (the document and the console's own pages aside).
        app = create_api(service.central, files)
        documented = {(p, m) for p, item in doc["paths"].items() for m in item if m != "parameters"}
        api_prefixes = ("/api/", "/metrics", "/healthz", "/readyz", "/firmware/", "/files/")
        for route in app.routes:
            # The console's pages (docs/console.md) are not part of the API.
            if not isinstance(route, Route) or not route.path.startswith(api_prefixes):
                continue
            if route.path in ("/api/openapi.json", "/api/docs"):
                continue
            for method in route.methods or ():
                if method != "HEAD":
                    assert (route.path, method.lower()) in documented, (route.path, method)

        async with open_websocket_url(f"{service.ws_url}/ST-1", subprotocols=["OS3P1.0"]) as ws:
            await ws.send_message(json.dumps([2, "b1", "BootNotification", BOOT]))
            await ws.get_message()
            mv = {"meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1.5"}]}]}
            await ws.send_message(json.dumps([2, "m1", "MeterValues", mv]))
            await ws.get_message()
            sid = "/api/stations/{identity}"
            for path, url in [
                ("/api/info", "/api/info"),
                ("/api/summary", "/api/summary"),
                ("/api/fleet", "/api/fleet"),
                ("/api/stations", "/api/stations"),
                ("/api/stations", "/api/stations?connected=maybe"),
                (sid, "/api/stations/ST-1"),
                (sid, "/api/stations/NOPE"),
                (sid + "/meter-values", "/api/stations/ST-1/meter-values"),
                (sid + "/events", "/api/stations/ST-1/events"),
                (sid + "/uploads", "/api/stations/ST-1/uploads"),
                (sid + "/messages", "/api/stations/ST-1/messages"),
                (sid + "/messages", "/api/stations/ST-1/messages?format=csv"),
                ("/metrics", "/metrics"),
                ("/healthz", "/healthz"),
                ("/readyz", "/readyz"),
            ]:
                check(doc, path, "get", await api.get(url))
            call = sid + "/calls/{action}"
            check(doc, call, "post", await api.post("/api/stations/ST-1/calls/Nope", json={}))
            check(doc, call, "post", await api.post("/api/stations/ST-1/calls/Reset", json={"type": "x"}))
            check(doc, "/api/stations", "post", await api.post("/api/stations", json={"identity": "NEW"}))
            check(doc, "/api/stations", "post", await api.post("/api/stations", json={"identity": "NEW"}))
            put = await api.put(f"{sid}/boot-status".replace("{identity}", "NEW"), json={"status": "Pending"})
            check(doc, sid + "/boot-status", "put", put)
            fw = await api.put("/api/firmware/a.bin", content=b"x")
            check(doc, "/api/firmware/{name}", "put", fw)
            check(doc, "/firmware/{name}", "get", await api.get("/firmware/missing.bin"))


async def test_api_docs_page(tmp_path: Path) -> None:
    files = FileArea(tmp_path / "fw", tmp_path / "up")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(store, files=files) as service,
        httpx.AsyncClient(base_url=service.api_url, timeout=10) as api,
    ):
        page = await api.get("/api/docs")
    assert page.status_code == 200
    assert "/api/stations/{identity}/messages" in page.text
    assert "<script" not in page.text
