"""Prometheus metrics of the Central System (``GET /metrics``, prometheus-client text format).

Every label has a bounded set of values — the 21 OS³P actions, the CallError codes, two directions, a
handful of handshake results and station states — never a station identity, so a fleet of 100,000 stations
costs no more series than a fleet of one.  Each service gets its own :class:`~prometheus_client.
CollectorRegistry` (two services in one process, e.g. tests, do not share counters).

Children of labelled metrics are resolved once, at start, so the hot path pays a dict lookup and an
increment, not a label lookup.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from os3p_core import Action, ErrorCode

__all__ = ["CONTENT_TYPE", "HANDSHAKE_RESULTS", "STATION_STATES", "CentralMetrics"]

#: The ``Content-Type`` of ``GET /metrics`` (Prometheus text exposition 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: ``os3p_handshakes_total{result}``: 101 is ``accepted``, refusals by HTTP status, everything else ``other``.
HANDSHAKE_RESULTS: Mapping[int, str] = {
    101: "accepted",
    400: "400",
    401: "401",
    403: "403",
    404: "404",
    503: "503",
}

#: ``os3p_stations{state}``.
STATION_STATES = ("registered", "connected", "accepted", "pending", "rejected", "faulted")

_ACTIONS = tuple(a.value for a in Action)
_CODES = tuple(c.value for c in ErrorCode)
# Latencies of a store-first handler (one SQLite commit, usually batched) and of a station's answer.
_HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _Callback(Collector):
    """Gauges and counters read at scrape time (connections, store counters, stations by state)."""

    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Any]:
        return self._collect()


class _Histogram:
    """A lock-free histogram for the event loop's thread (bucket counts, sum), exported at scrape time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((str(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


class CentralMetrics:
    """The metrics of one Central System service and the cheap calls that update them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._handshakes = Counter(
            "os3p_handshakes", "WebSocket upgrade requests answered, by result", ["result"], registry=r
        )
        self._callerrors = Counter(
            "os3p_callerrors",
            "CALLERROR frames by error code and direction",
            ["code", "direction"],
            registry=r,
        )
        self._handler_failures = Counter(
            "os3p_handler_failures",
            "Station-initiated CALLs whose handler raised, by action",
            ["action"],
            registry=r,
        )
        self._call_seconds = Histogram(
            "os3p_call_duration_seconds",
            "Operator calls to stations: time to the station's answer, by action and outcome",
            ["action", "outcome"],
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "os3p_event_loop_lag_seconds",
            "How late the trio event loop woke a periodic probe (scheduling delay)",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.security_events = Counter(
            "os3p_security_events", "Security events logged, by kind", ["kind"], registry=r
        )
        self.sse_clients = Gauge("os3p_console_sse_clients", "Open console live-update streams", registry=r)
        # The per-message counters are plain ints and lists (a dict lookup and an add on the hot path, no
        # lock): prometheus-client's own metrics take a lock per update.  They are read at scrape time.
        self._in = {a: [0] for a in _ACTIONS}
        self._out = {a: [0] for a in _ACTIONS}
        self._handler = {a: _Histogram(_HANDLER_BUCKETS) for a in _ACTIONS}
        self._frame = {
            (t, d): [0] for t in ("call", "callresult", "callerror", "other") for d in ("in", "out")
        }
        self._frame_in = {
            "2": self._frame["call", "in"],
            "3": self._frame["callresult", "in"],
            "4": self._frame["callerror", "in"],
        }
        self._frame_out = {
            "2": self._frame["call", "out"],
            "3": self._frame["callresult", "out"],
            "4": self._frame["callerror", "out"],
        }
        r.register(_Callback(self._collect_fast))

    def _collect_fast(self) -> Iterable[Any]:
        messages = CounterMetricFamily(
            "os3p_messages",
            "OS3P CALLs by action and direction (in: station-initiated, out: sent by the Central System)",
            labels=["action", "direction"],
        )
        for direction, table in (("in", self._in), ("out", self._out)):
            for action, cell in table.items():
                messages.add_metric([action, direction], cell[0])
        yield messages
        frames = CounterMetricFamily(
            "os3p_frames",
            "WebSocket messages by OS3P message type and direction",
            labels=["type", "direction"],
        )
        for (kind, direction), cell in self._frame.items():
            frames.add_metric([kind, direction], cell[0])
        yield frames
        handler = HistogramMetricFamily(
            "os3p_handler_duration_seconds",
            "Station-initiated CALL handling time by action (store commit included: store first, answer "
            "after, PROTOCOL-DECISIONS §7)",
            labels=["action"],
        )
        for action, h in self._handler.items():
            handler.add_metric([action], h.buckets(), h.total)
        yield handler

    def add_collector(self, collect: Callable[[], Iterable[Any]]) -> None:
        """Register a scrape-time collector (yielding ``prometheus_client.core`` metric families)."""
        self.registry.register(_Callback(collect))

    # --- updates (called by the service's hooks) ---------------------------------------------------------
    def handshake(self, status: int) -> None:
        """An upgrade request was answered with ``status`` (101: accepted)."""
        self._handshakes.labels(HANDSHAKE_RESULTS.get(status, "other")).inc()

    def frame_types(self, direction: str, texts: list[str]) -> list[str]:
        """Count a batch of frames by message type; returns the CALLERROR frames (rare) for a closer look."""
        table = self._frame_in if direction == "in" else self._frame_out
        errors: list[str] = []
        for text in texts:
            # "[2," "[3," "[4,": the MessageTypeId is the first character after the bracket in every
            # frame our encoder writes and in nearly every frame a station writes; anything else is "other".
            kind = text[1:2]
            cell = table.get(kind)
            if cell is None:
                stripped = text.lstrip("[ \t\r\n")
                cell = table.get(stripped[:1]) or self._frame["other", direction]
                kind = stripped[:1]
            cell[0] += 1
            if kind == "4":
                errors.append(text)
        return errors

    def callerror(self, code: str, direction: str) -> None:
        """A CALLERROR with ``code`` went ``direction`` (unknown codes count as ``other``)."""
        self._callerrors.labels(code if code in _CODES else "other", direction).inc()

    def handled(self, action: str, seconds: float, ok: bool) -> None:
        """A station-initiated CALL of ``action`` was handled in ``seconds``."""
        self._in[action][0] += 1
        self._handler[action].observe(seconds)
        if not ok:
            self._handler_failures.labels(action).inc()

    def called(self, action: str, seconds: float, outcome: str) -> None:
        """An operator call of ``action`` ended with ``outcome`` (result, callerror, timeout, closed...)."""
        self._out[action][0] += 1
        self._call_seconds.labels(action, outcome).observe(seconds)

    def exposition(self) -> bytes:
        """The text format of every metric."""
        return generate_latest(self.registry)


def gauge(name: str, documentation: str, value: float, labels: Mapping[str, str] | None = None) -> Any:
    """A one-sample gauge family for a scrape-time collector."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels) if labels else None)
    family.add_metric(list(labels.values()) if labels else [], value)
    return family


def counter(name: str, documentation: str, value: float) -> Any:
    """A one-sample counter family for a scrape-time collector."""
    return CounterMetricFamily(name, documentation, value=value)


def labelled_gauge(name: str, documentation: str, label: str, values: Mapping[str, float]) -> Any:
    """A gauge family with one label (a bounded set of values)."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family
