"""The monitor over a live service: /metrics (bounded labels), /healthz, /readyz, /api/fleet, the two-way
message log (JSON and CSV) and the security-event log, with a real WebSocket station on loopback."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from trio_websocket import ConnectionRejected, open_websocket_url

from os3p_trio.central import CentralConfig, FileArea, open_central_service, open_sqlite_store
from os3p_trio.central._logging import SECURITY_LOGGER, JsonFormatter, configure_logging
from os3p_trio.central._messagelog import MessageLog, MessageLogConfig

BOOT = {
    "vendor": "V",
    "model": "M",
    "stationNumber": "1",
    "serialNumber": "S1",
    "firmwareVersion": "1.2.3",
    "iccid": "1",
    "imsi": "1",
}


async def test_metrics_health_fleet_and_message_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER)
    files = FileArea(tmp_path / "fw", tmp_path / "up")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(store, CentralConfig(open_registration=True), files=files) as service,
        httpx.AsyncClient(base_url=service.api_url, timeout=10) as api,
    ):
        assert (await api.get("/healthz")).json()["status"] == "ok"
        assert (await api.get("/readyz")).json() == {"status": "ready"}
        url = f"{service.ws_url}/ST-1"
        async with open_websocket_url(url, subprotocols=["OS3P1.0"]) as ws:
            await ws.send_message(json.dumps([2, "b1", "BootNotification", BOOT]))
            answer = json.loads(await ws.get_message())
            assert answer[0] == 3
            assert answer[2]["status"] == "Accepted"
            await ws.send_message(json.dumps([2, "h1", "Heartbeat", {}]))
            assert json.loads(await ws.get_message())[0] == 3
            # A payload failing its schema: the Central System answers a CALLERROR (counted by code).
            await ws.send_message(json.dumps([2, "x1", "Heartbeat", {"extra": 1}]))
            error = json.loads(await ws.get_message())
            assert error[0] == 4
            code = error[2]

            log = (await api.get("/api/stations/ST-1/messages")).json()
            frames = [(e["direction"], json.loads(e["frame"])[1]) for e in reversed(log)]
            assert frames == [
                ("in", "b1"),
                ("out", "b1"),
                ("in", "h1"),
                ("out", "h1"),
                ("in", "x1"),
                ("out", "x1"),
            ]
            assert all(e["time"].endswith("Z") and e["truncated"] is False for e in log)
            assert [e["seq"] for e in log] == sorted((e["seq"] for e in log), reverse=True)
            page = (
                await api.get("/api/stations/ST-1/messages", params={"limit": 2, "before": log[1]["seq"]})
            ).json()
            assert [e["seq"] for e in page] == [log[2]["seq"], log[3]["seq"]]
            outgoing = (await api.get("/api/stations/ST-1/messages", params={"direction": "out"})).json()
            assert {e["direction"] for e in outgoing} == {"out"}
            assert len(outgoing) == 3
            exported = await api.get("/api/stations/ST-1/messages", params={"format": "csv"})
            assert exported.headers["content-type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(exported.text)))
            assert rows[0] == ["seq", "time", "identity", "direction", "truncated", "frame"]
            assert len(rows) == 7
            assert json.loads(rows[1][5])[1] == "x1"
            assert (await api.get("/api/stations/NOPE/messages")).status_code == 404
            assert (await api.get("/api/stations/ST-1/messages", params={"limit": "x"})).status_code == 400

            fleet = (await api.get("/api/fleet")).json()
            assert fleet["stations"]["registered"] == 1
            assert fleet["stations"]["connected"] == 1
            assert fleet["stations"]["accepted"] == 1
            assert fleet["firmwareVersions"] == {"1.2.3": 1}

            text = (await api.get("/metrics")).text
        # A refused handshake (bad identity: 400) is counted and logged as a security event.
        with pytest.raises(ConnectionRejected):
            async with open_websocket_url(f"{service.ws_url}/a:b", subprotocols=["OS3P1.0"]):
                pass
        text2 = (await api.get("/metrics")).text

    assert 'os3p_handshakes_total{result="accepted"} 1.0' in text
    assert 'os3p_messages_total{action="BootNotification",direction="in"} 1.0' in text
    assert 'os3p_messages_total{action="Heartbeat",direction="in"} 1.0' in text
    assert 'os3p_frames_total{direction="in",type="call"} 3.0' in text
    assert 'os3p_frames_total{direction="out",type="callerror"} 1.0' in text
    assert f'os3p_callerrors_total{{code="{code}",direction="out"}} 1.0' in text
    assert 'os3p_handler_duration_seconds_count{action="Heartbeat"} 1.0' in text
    assert "os3p_connections_open 1.0" in text
    assert 'os3p_stations{state="registered"} 1.0' in text
    assert "os3p_store_operations_committed_total" in text
    assert "os3p_event_loop_lag_seconds_bucket" in text
    assert "ST-1" not in text  # no per-station labels
    assert 'os3p_handshakes_total{result="400"} 1.0' in text2
    events = [r for r in caplog.records if r.name == SECURITY_LOGGER]
    assert any(getattr(r, "os3p", {}).get("event") == "handshake_refused" for r in events)
    assert json.loads(JsonFormatter().format(events[-1]))["status"] == 400


def test_message_log_bounds() -> None:
    log = MessageLog(MessageLogConfig(per_station=3, max_stations=2, max_text=16))
    log.record("A", "in", ["1", "2", "3", "4"], 1.0)
    assert [e.text for e in log.entries("A")] == ["4", "3", "2"]
    log.record("B", "out", ["x" * 40], 2.0)
    assert log.entries("B")[0].truncated
    assert len(log.entries("B")[0].text) == 16
    log.record("C", "in", ["c"], 3.0)  # A is the least recently active: its ring goes
    assert log.entries("A") == []
    assert log.stations == 2


def test_json_log_format() -> None:
    out = io.StringIO()
    handler = configure_logging("json", stream=out)
    try:
        logging.getLogger(SECURITY_LOGGER).info("x", extra={"os3p": {"event": "operator_action", "who": "t"}})
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(out.getvalue())
    assert line["event"] == "operator_action"
    assert line["who"] == "t"
    assert line["logger"] == SECURITY_LOGGER
    with pytest.raises(ValueError, match="text or json"):
        configure_logging("xml")
