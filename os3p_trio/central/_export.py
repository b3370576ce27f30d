"""Export of meter values and the event log as CSV or JSON Lines, streamed in constant memory.

One implementation for both faces: ``os3p-central export`` writes the chunks to stdout, the operator API sends
them as a streamed HTTP body (``GET /api/stations/{id}/meter-values?format=csv``).  Rows come from the store's
keyset-paged :meth:`~._store.Store.stream_meter_values` / :meth:`~._store.Store.stream_events`, one page at a
time, and each page becomes one text chunk: memory is bounded by the page size, whatever the history's length.

CSV columns (header row first; times are OS³P date-times in UTC with ``Z``, empty cells for absent values)::

    meter values: station,timestamp,measurand,value,unit,context,format,location,received_at
    events:       id,station,kind,timestamp,received_at,contactor_id,status,payload

``value`` is the text the station sent, verbatim; ``payload`` is the event's JSON.  JSON Lines carries the
same fields per line, with the API's camelCase names (``receivedAt``...) plus ``numeric`` for meter values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from ._service import format_time
from ._sqlite import parse_timestamp
from ._store import EventKind, EventRecord, MeterValueRecord, Store

__all__ = [
    "EVENT_COLUMNS",
    "METER_COLUMNS",
    "ExportFormat",
    "event_json",
    "export_events",
    "export_meter_values",
    "meter_value_json",
    "parse_time",
]

ExportFormat = Literal["csv", "jsonl"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

METER_COLUMNS = (
    "station", "timestamp", "measurand", "value", "unit", "context", "format", "location", "received_at",
)  # fmt: skip
EVENT_COLUMNS = ("id", "station", "kind", "timestamp", "received_at", "contactor_id", "status", "payload")


def parse_time(text: str, name: str = "time") -> float:
    """A ``--since``/``--until`` (or query parameter) value: POSIX seconds or an OS³P date-time (no offset:
    UTC).  Raises ``ValueError`` naming ``name``."""
    try:
        return float(text)
    except ValueError:
        pass
    value = parse_timestamp(text, float("nan"))
    if value != value:  # NaN: unparsable
        raise ValueError(f"{name} must be a date-time or POSIX seconds, not {text!r}")
    return value


def meter_value_json(value: MeterValueRecord) -> dict[str, Any]:
    """One sampled value as the API shows it."""
    return {
        "timestamp": format_time(value.timestamp),
        "measurand": value.measurand,
        "value": value.value,
        "numeric": value.numeric,
        "unit": value.unit,
        "context": value.context,
        "format": value.format,
        "location": value.location,
        "receivedAt": format_time(value.received_at),
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    """One event-log entry as the API shows it."""
    return {
        "id": event.id,
        "kind": event.kind.value,
        "timestamp": format_time(event.timestamp),
        "receivedAt": format_time(event.received_at),
        "contactorId": event.contactor_id,
        "status": event.status,
        "payload": dict(event.payload),
    }


def _meter_row(v: MeterValueRecord) -> Sequence[Any]:
    return (
        v.identity,
        format_time(v.timestamp),
        v.measurand,
        v.value,
        v.unit,
        v.context,
        v.format,
        v.location,
        format_time(v.received_at),
    )


def _event_row(e: EventRecord) -> Sequence[Any]:
    payload = json.dumps(dict(e.payload), sort_keys=True, ensure_ascii=False)
    return (
        e.id,
        e.identity,
        e.kind.value,
        format_time(e.timestamp),
        format_time(e.received_at),
        e.contactor_id,
        e.status,
        payload,
    )


async def _chunks(
    pages: AsyncIterator[list[Any]],
    fmt: ExportFormat,
    header: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
    line: Callable[[Any], dict[str, Any]],
) -> AsyncIterator[str]:
    if fmt not in FORMATS:
        raise ValueError(f"format must be csv or jsonl, not {fmt!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends
    if fmt == "csv":
        writer.writerow(header)
        yield buffer.getvalue()
    try:
        async for page in pages:
            buffer.seek(0)
            buffer.truncate()
            if fmt == "csv":
                writer.writerows(row(item) for item in page)
            else:
                for item in page:
                    buffer.write(json.dumps(line(item), ensure_ascii=False, separators=(",", ":")))
                    buffer.write("\n")
            yield buffer.getvalue()
    finally:
        # A reader that stops early (client gone, ``| head``) ends the store's paging now, not at GC.
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


def export_meter_values(
    store: Store,
    identity: str | None,
    fmt: ExportFormat = "csv",
    *,
    measurand: str | None = None,
    since: float | None = None,
    until: float | None = None,
    batch: int = 1000,
) -> AsyncIterator[str]:
    """Meter values (one station, or all with ``None``), oldest first, as text chunks of ``fmt``."""
    pages = store.stream_meter_values(identity, measurand=measurand, since=since, until=until, batch=batch)
    return _chunks(
        pages, fmt, METER_COLUMNS, _meter_row, lambda v: {"station": v.identity, **meter_value_json(v)}
    )


def export_events(
    store: Store,
    identity: str | None,
    fmt: ExportFormat = "csv",
    *,
    kind: EventKind | None = None,
    since: float | None = None,
    until: float | None = None,
    batch: int = 1000,
) -> AsyncIterator[str]:
    """Event-log rows (one station, or all), oldest first, as text chunks of ``fmt``."""
    pages = store.stream_events(identity, kind=kind, since=since, until=until, batch=batch)
    return _chunks(pages, fmt, EVENT_COLUMNS, _event_row, lambda e: {"station": e.identity, **event_json(e)})
