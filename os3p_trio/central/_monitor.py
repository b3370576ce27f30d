"""What the operator's console, ``/metrics`` and the security log see of a running Central System.

:class:`Monitor` is fed by a few hooks of the service (:mod:`._server`): a WebSocket upgrade answered, a
batch of frames read or written (:attr:`os3p_trio.Session.on_frames`), a station-initiated CALL handled, an
operator call answered, a station connected or gone.  From them it keeps, all in bounded memory:

* the Prometheus metrics (:mod:`._metrics`, bounded labels only);
* the two-way message log (:mod:`._messagelog`);
* live fleet counters that the store cannot answer cheaply: stations whose last StatusNotification is
  ``Faulted`` (active MV faults, since this service started), the meter-value sample rate of the last minute;
* the streetlight profiles this Central System sent and each station accepted (an ``os3p_core``
  :class:`~os3p_core.ProfileStore` per station), and the ``Geolocation``/``TimeZone`` a GetConfiguration
  answer reported, so the console can compute a station's effective schedule with the core's engine;
* an :class:`EventHub` fanning live events out to the console's Server-Sent-Event streams (drop, never
  block, when a browser reads slowly);
* firmware rollouts in waves (:class:`Rollouts`).

Aggregates over the whole fleet come from the store's ``fleet_summary`` and a paged ``list_stations`` scan
(boot status counts), cached and refreshed at most every ``min_age`` seconds and never more than a tenth of
the time (a scan of 100,000 stations takes a while): however many browsers watch, the store sees one query.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from os3p_core import ConfigurationStore, ProfileStore, SiteLocation

from ._logging import security_event
from ._messagelog import MessageLog, MessageLogConfig
from ._metrics import STATION_STATES, CentralMetrics, counter, gauge, labelled_gauge
from ._store import BootStatus, FleetSummary, Store

if TYPE_CHECKING:
    from ._service import CentralSystem

__all__ = ["EventHub", "FleetSnapshot", "Monitor", "MonitorConfig", "Rollout", "Rollouts"]

logger = logging.getLogger("os3p_trio.central.monitor")


@attrs.frozen(slots=True)
class MonitorConfig:
    """Bounds and cadences of the monitor; the defaults are those of ``os3p-central serve``."""

    messages: MessageLogConfig = attrs.field(factory=MessageLogConfig)
    #: Fleet aggregates are at most this old... unless computing them takes longer (see ``max_duty``).
    min_age: float = 5.0
    #: ...then they are refreshed at most this fraction of the time.
    max_duty: float = 0.1
    #: Stations read per page by the boot-status scan.
    scan_page: int = 2000
    #: Stations tracked in memory (faults, profiles, site) at most.
    max_tracked: int = 200_000
    #: Console live streams at once, and events buffered per stream before they are dropped.
    max_streams: int = 64
    stream_buffer: int = 256
    #: Period of the event-loop lag probe.
    lag_probe: float = 0.5


@attrs.frozen(slots=True)
class FleetSnapshot:
    """The fleet aggregates at one moment."""

    taken_at: float
    #: Seconds the store took to answer.
    took: float
    summary: FleetSummary
    #: Stations by the status of their last BootNotification answer.
    boot_status: Mapping[str, int]
    #: Stations read by the scan (all of them unless the store changed underneath).
    scanned: int


@attrs.define(eq=False)
class _Stream:
    identity: str | None
    send: trio.MemorySendChannel[dict[str, Any]]
    dropped: int = 0


class EventHub:
    """Fan-out of live events to console streams; a stream that cannot keep up loses events (counted and
    reported to it), the publisher never waits."""

    def __init__(self, max_streams: int, buffer: int) -> None:
        self.max_streams = max_streams
        self.buffer = buffer
        self._streams: set[_Stream] = set()
        self._watched: dict[str, int] = {}

    @property
    def streams(self) -> int:
        return len(self._streams)

    def watched(self, identity: str) -> bool:
        """Whether a stream follows ``identity`` (station page open): frames are published only then."""
        return identity in self._watched

    @asynccontextmanager
    async def subscribe(
        self, identity: str | None
    ) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Receive the events of ``identity`` (``None``: fleet events).  Raises ``OverflowError`` when
        ``max_streams`` are open."""
        if len(self._streams) >= self.max_streams:
            raise OverflowError("too many live streams")
        send, receive = trio.open_memory_channel[dict[str, Any]](self.buffer)
        stream = _Stream(identity, send)
        self._streams.add(stream)
        if identity is not None:
            self._watched[identity] = self._watched.get(identity, 0) + 1
        try:
            yield receive
        finally:
            self._streams.discard(stream)
            if identity is not None:
                left = self._watched[identity] - 1
                if left:
                    self._watched[identity] = left
                else:
                    del self._watched[identity]
            send.close()
            receive.close()

    def publish(
        self, kind: str, identity: str | None, data: Mapping[str, Any], *, fleet: bool = True
    ) -> None:
        """Send an event to the streams of ``identity`` and, with ``fleet``, to the fleet streams."""
        if not self._streams:
            return
        event = {"kind": kind, "identity": identity, "time": time.time(), **data}
        for stream in list(self._streams):
            wanted = (stream.identity is None and fleet) or (
                identity is not None and stream.identity == identity
            )
            if not wanted:
                continue
            try:
                stream.send.send_nowait(event)
            except trio.WouldBlock:
                stream.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._streams.discard(stream)


@attrs.define(eq=False)
class Rollout:
    """A firmware rollout: UpdateFirmware to ``targets`` in waves; progress from FirmwareStatus events."""

    id: int
    location: str
    targets: list[str]
    wave_size: int
    wave_interval: float
    created_at: float
    created_by: str
    #: identity -> last known step: queued, sent, a CallError/failure, then the FirmwareStatus values.
    progress: dict[str, str] = attrs.field(factory=dict)
    waves_sent: int = 0
    state: str = "running"
    cancel_scope: trio.CancelScope | None = None

    @property
    def waves(self) -> int:
        return math.ceil(len(self.targets) / self.wave_size) if self.targets else 0

    def counts(self) -> dict[str, int]:
        """Stations by step."""
        out: dict[str, int] = {}
        for step in self.progress.values():
            out[step] = out.get(step, 0) + 1
        return dict(sorted(out.items()))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "location": self.location,
            "stations": len(self.targets),
            "waveSize": self.wave_size,
            "waveInterval": self.wave_interval,
            "waves": self.waves,
            "wavesSent": self.waves_sent,
            "state": self.state,
            "createdAt": self.created_at,
            "createdBy": self.created_by,
            "progress": self.counts(),
        }


#: FirmwareStatusNotification statuses that end a station's part of a rollout.
_FIRMWARE_DONE = frozenset({"Installed", "InstallationFailed", "DownloadFailed"})


class Rollouts:
    """Firmware rollouts of one service (kept in memory, at most ``max_rollouts``, oldest finished first)."""

    max_rollouts = 50
    max_targets = 200_000

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.by_id: dict[int, Rollout] = {}
        self._next = 1
        # identity -> the running rollout it belongs to (its FirmwareStatusNotifications update that one).
        self._station: dict[str, Rollout] = {}

    def start(
        self,
        central: CentralSystem,
        location: str,
        targets: list[str],
        *,
        wave_size: int,
        wave_interval: float,
        who: str,
    ) -> Rollout:
        """Start a rollout in the monitor's nursery.  Raises ``ValueError`` for bad parameters and
        ``RuntimeError`` when the monitor is not running."""
        nursery = self.monitor.nursery
        if nursery is None:
            raise RuntimeError("rollouts need the running service (the monitor is not running)")
        if not targets:
            raise ValueError("no stations selected")
        if len(targets) > self.max_targets:
            raise ValueError(f"at most {self.max_targets} stations per rollout")
        if not 1 <= wave_size <= 10_000 or not 0 <= wave_interval <= 86_400:
            raise ValueError("wave size must be 1-10000 and the wave interval 0-86400 seconds")
        if not location or len(location) > 512:
            raise ValueError("location must be a URL of at most 512 characters")
        finished = [r for r in self.by_id.values() if r.state != "running"]
        while len(self.by_id) >= self.max_rollouts and finished:
            del self.by_id[finished.pop(0).id]
        if len(self.by_id) >= self.max_rollouts:
            raise ValueError(f"{self.max_rollouts} rollouts are running")
        rollout = Rollout(
            self._next, location, list(dict.fromkeys(targets)), wave_size, wave_interval, time.time(), who
        )
        self._next += 1
        for identity in rollout.targets:
            rollout.progress[identity] = "queued"
            self._station[identity] = rollout
        self.by_id[rollout.id] = rollout
        nursery.start_soon(self._run, central, rollout)
        return rollout

    def cancel(self, rollout_id: int) -> Rollout | None:
        rollout = self.by_id.get(rollout_id)
        if rollout is not None and rollout.state == "running" and rollout.cancel_scope is not None:
            rollout.cancel_scope.cancel()
        return rollout

    async def _run(self, central: CentralSystem, rollout: Rollout) -> None:
        from ._service import format_time

        with trio.CancelScope() as scope:
            rollout.cancel_scope = scope
            limiter = trio.CapacityLimiter(50)

            async def send(identity: str) -> None:
                payload = {
                    "retrieveDate": format_time(central.clock()),
                    "location": rollout.location,
                    "requestId": f"rollout-{rollout.id}-{identity}"[:36],
                }
                async with limiter:
                    try:
                        await central.call(identity, "UpdateFirmware", payload)
                    except Exception as exc:  # every failure is this station's outcome, shown as such
                        rollout.progress[identity] = f"failed: {type(exc).__name__}"
                        return
                if rollout.progress.get(identity) in ("queued", "sent"):
                    rollout.progress[identity] = "sent"

            for start in range(0, len(rollout.targets), rollout.wave_size):
                wave = rollout.targets[start : start + rollout.wave_size]
                for identity in wave:
                    rollout.progress[identity] = "sent"
                async with trio.open_nursery() as calls:
                    for identity in wave:
                        calls.start_soon(send, identity)
                rollout.waves_sent += 1
                self.monitor.hub.publish("rollout", None, {"rollout": rollout.as_json()})
                if start + rollout.wave_size < len(rollout.targets):
                    await trio.sleep(rollout.wave_interval)
        rollout.state = "cancelled" if scope.cancelled_caught else "done"
        self.monitor.hub.publish("rollout", None, {"rollout": rollout.as_json()})

    def firmware_status(self, identity: str, status: str) -> None:
        rollout = self._station.get(identity)
        if rollout is None:
            return
        rollout.progress[identity] = status
        if status in _FIRMWARE_DONE:
            del self._station[identity]


class _Bounded(OrderedDict[str, Any]):
    """A dict of at most ``limit`` entries, least recently set first out."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class Monitor:
    """Metrics, message log, live counters, live events and rollouts of one Central System service."""

    def __init__(self, store: Store, config: MonitorConfig | None = None) -> None:
        self.config = cfg = config or MonitorConfig()
        self.store = store
        self.metrics = CentralMetrics()
        self.messages = MessageLog(cfg.messages)
        self.hub = EventHub(cfg.max_streams, cfg.stream_buffer)
        self.rollouts = Rollouts(self)
        self.started_at = time.time()
        #: The nursery of :meth:`run` (rollouts run there); ``None`` until it runs.
        self.nursery: trio.Nursery | None = None
        #: Whether the WebSocket server listens (``/readyz``).
        self.listening = False
        self.connections: Callable[[], int] = lambda: 0
        self.faulted: _Bounded = _Bounded(cfg.max_tracked)
        self.profiles: _Bounded = _Bounded(cfg.max_tracked)
        self.sites: _Bounded = _Bounded(cfg.max_tracked)
        # Meter-value samples per second over the last minute: a ring of 60 one-second buckets.
        self._samples = [0] * 60
        self._sample_second = 0
        self.samples_total = 0
        self._snapshot: FleetSnapshot | None = None
        self._snapshot_lock = trio.Lock()
        self.metrics.add_collector(self._collect)

    # --- running ----------------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The monitor's own work until cancelled: the event-loop lag probe; rollouts run in this nursery."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            task_status.started()
            try:
                period = self.config.lag_probe
                while True:
                    expected = trio.current_time() + period
                    await trio.sleep(period)
                    self.metrics.loop_lag.observe(max(0.0, trio.current_time() - expected))
            finally:
                self.nursery = None

    # --- fleet aggregates -------------------------------------------------------------------------------
    async def snapshot(self) -> FleetSnapshot:
        """The fleet aggregates, from the cache unless it is stale (one refresh at a time)."""
        if self._snapshot is not None and self._snapshot_lock.locked():
            # A refresh is under way: answer with the last aggregates rather than wait for the store.
            return self._snapshot
        async with self._snapshot_lock:
            current = self._snapshot
            if current is not None:
                age = time.time() - current.taken_at
                if age < max(self.config.min_age, current.took / self.config.max_duty):
                    return current
            started = time.perf_counter()
            summary = await self.store.fleet_summary()
            counts = dict.fromkeys((s.value for s in BootStatus), 0)
            scanned = 0
            after: str | None = None
            while True:
                page = await self.store.list_stations(after=after, limit=self.config.scan_page)
                for record in page:
                    if record.boot_status is not None:
                        counts[record.boot_status.value] = counts.get(record.boot_status.value, 0) + 1
                scanned += len(page)
                if len(page) < self.config.scan_page:
                    break
                after = page[-1].identity
            self._snapshot = FleetSnapshot(
                time.time(), time.perf_counter() - started, summary, counts, scanned
            )
            return self._snapshot

    def cached_snapshot(self) -> FleetSnapshot | None:
        """The last snapshot taken, however old (``/metrics`` never waits for the store)."""
        return self._snapshot

    def meter_rate(self) -> float:
        """Meter-value samples per second over the last minute."""
        self._advance(int(time.time()))
        return sum(self._samples) / 60.0

    def _advance(self, second: int) -> None:
        gap = second - self._sample_second
        if gap <= 0:
            return
        for i in range(min(gap, 60)):
            self._samples[(self._sample_second + 1 + i) % 60] = 0
        self._sample_second = second

    def fleet_json(self, snap: FleetSnapshot) -> dict[str, Any]:
        """The overview's numbers (``GET /api/fleet`` and the console)."""
        s = snap.summary
        return {
            "stations": {
                "registered": s.stations,
                "connected": self.connections(),
                "accepted": s.accepted,
                "pending": snap.boot_status.get("Pending", 0),
                "rejected": snap.boot_status.get("Rejected", 0),
            },
            "lightsOn": s.lights_on,
            "activeFaults": len(self.faulted),
            "firmwareVersions": dict(s.firmware_versions),
            "meterValues": s.meter_values,
            "meterValueRate": round(self.meter_rate(), 3),
            "events": dict(s.events),
            "uploads": s.uploads,
            "aggregatedAt": snap.taken_at,
            "aggregationSeconds": round(snap.took, 4),
        }

    def _collect(self) -> Iterable[Any]:
        yield gauge("os3p_connections_open", "Stations connected now", self.connections())
        yield gauge(
            "os3p_console_message_log_stations", "Stations with a message-log ring", self.messages.stations
        )
        yield counter("os3p_meter_value_samples", "Meter-value samples received", self.samples_total)
        snap = self._snapshot
        states: dict[str, float] = {"connected": self.connections(), "faulted": len(self.faulted)}
        if snap is not None:
            states.update(
                registered=snap.summary.stations,
                accepted=snap.summary.accepted,
                pending=snap.boot_status.get("Pending", 0),
                rejected=snap.boot_status.get("Rejected", 0),
            )
        yield labelled_gauge(
            "os3p_stations",
            "Stations by state (registered/accepted/pending/rejected from the last fleet aggregation)",
            "state",
            {k: states[k] for k in STATION_STATES if k in states},
        )
        batches = getattr(self.store, "batches_committed", None)
        if isinstance(batches, int):
            yield counter("os3p_store_batches_committed", "Store write transactions committed", batches)
        operations = getattr(self.store, "operations_committed", None)
        if isinstance(operations, int):
            yield counter("os3p_store_operations_committed", "Store write operations committed", operations)
        depth = _queue_depth(self.store)
        if depth is not None:
            yield gauge("os3p_store_queue_depth", "Store writes queued for the writer", depth)

    # --- hooks of the service ---------------------------------------------------------------------------
    def on_handshake(self, target: str, status: int, reason: str) -> None:
        """An upgrade request was answered (101 or a refusal)."""
        self.metrics.handshake(status)
        if status != 101:
            self.metrics.security_events.labels("handshake_refused").inc()
            security_event(
                "handshake_refused", f"{status} {reason}", status=status, target=target[:256], reason=reason
            )

    def on_frames(self, identity: str, direction: str, texts: list[str]) -> None:
        """A batch of frames of ``identity`` was read (``in``) or is being written (``out``)."""
        last = self.messages.record(identity, direction, texts, time.time())
        errors = self.metrics.frame_types(direction, texts)
        for text in errors:
            code = _error_code(text)
            self.metrics.callerror(code, direction)
            if code == "SecurityError" and direction == "out":
                self.metrics.security_events.labels("security_error").inc()
                security_event("security_error", "CALL refused with SecurityError", identity=identity)
        if self.hub.watched(identity):
            for e in reversed(self.messages.entries(identity, limit=len(texts), after=last - len(texts))):
                self.hub.publish(
                    "frame",
                    identity,
                    {"seq": e.seq, "direction": e.direction, "text": e.text, "at": e.time},
                    fleet=False,
                )

    def handled(
        self, identity: str, action: str, payload: Mapping[str, Any], seconds: float, ok: bool
    ) -> None:
        """A station-initiated CALL was handled (stored and answered, or failed)."""
        self.metrics.handled(action, seconds, ok)
        if not ok:
            return
        if action == "MeterValues":
            samples = sum(len(v.get("sampledValue", ())) for v in payload.get("meterValue", ()))
            second = int(time.time())
            self._advance(second)
            self._samples[second % 60] += samples
            self.samples_total += samples
            if self.hub.watched(identity):
                self.hub.publish(
                    "meter", identity, {"meterValue": payload.get("meterValue", [])}, fleet=False
                )
            return
        if action == "Heartbeat":
            return
        if action == "StatusNotification":
            if payload.get("status") == "Faulted":
                self.faulted.put(identity, payload.get("errorCode"))
            else:
                self.faulted.pop(identity, None)
        elif action == "FirmwareStatusNotification":
            self.rollouts.firmware_status(identity, str(payload.get("status")))
        self.hub.publish("event", identity, {"action": action, "payload": dict(payload)})

    def called(
        self,
        identity: str,
        action: str,
        payload: Mapping[str, Any],
        seconds: float,
        outcome: str,
        result: Mapping[str, Any] | None,
    ) -> None:
        """An operator call to ``identity`` ended (``outcome``: result, callerror, timeout, closed...)."""
        self.metrics.called(action, seconds, outcome)
        self.metrics.security_events.labels("operator_action").inc()
        security_event(
            "operator_action",
            f"{action} to {identity}: {outcome}",
            who="operator API",
            identity=identity,
            action=action,
            outcome=outcome,
        )
        if result is not None:
            self._learn(identity, action, payload, result)
        self.hub.publish("call", identity, {"action": action, "outcome": outcome})

    def connection(self, identity: str, connected: bool, *, replaced: bool = False) -> None:
        """``identity`` connected, or its connection ended (``replaced``: by a newer one)."""
        if replaced:
            self.metrics.security_events.labels("connection_replaced").inc()
            security_event("connection_replaced", "a newer connection replaced this one", identity=identity)
        self.hub.publish("connection", identity, {"connected": connected, "replaced": replaced})

    def forget(self, identity: str) -> None:
        """The station was removed: drop what memory holds about it."""
        self.messages.forget(identity)
        for table in (self.faulted, self.profiles, self.sites):
            table.pop(identity, None)

    # --- what the console can compute itself ------------------------------------------------------------
    def _learn(
        self, identity: str, action: str, payload: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        if action in ("SetStreetlightProfile", "ClearSingleStreetlightProfile"):
            if result.get("status") != "Accepted":
                return
            profiles = self.profiles.get(identity)
            if profiles is None:
                profiles = ProfileStore()
            try:
                if action == "SetStreetlightProfile":
                    profiles.set_streetlight_profile(dict(payload))
                else:
                    profiles.clear_streetlight_profile(dict(payload))
            except Exception:  # the station accepted what our mirror cannot follow: say nothing wrong
                logger.info("monitor: cannot mirror %s of %r", action, identity)
                return
            self.profiles.put(identity, profiles)
        elif action == "GetConfiguration":
            values = {
                k.get("key"): k.get("value")
                for k in result.get("configurationKey", ())
                if isinstance(k, dict) and k.get("key") in ("Geolocation", "TimeZone")
            }
            if values:
                old = self.sites.get(identity) or {}
                self.sites.put(identity, {**old, **values})

    def site(self, identity: str) -> tuple[SiteLocation, bool]:
        """The station's location for the schedule engine, and whether the station reported it (else the
        default of the configuration keys, Amsterdam)."""
        values = self.sites.get(identity) or {}
        try:
            config = ConfigurationStore(
                **({"geolocation": values["Geolocation"]} if values.get("Geolocation") else {}),
                **({"timezone": values["TimeZone"]} if values.get("TimeZone") else {}),
            )
        except ValueError:
            return ConfigurationStore().site, False
        return config.site, bool(values)


def _error_code(text: str) -> str:
    try:
        frame = json.loads(text)
        code = frame[2]
    except (ValueError, IndexError, TypeError, KeyError):
        return "other"
    return code if isinstance(code, str) else "other"


def _queue_depth(store: Store) -> int | None:
    """Writes waiting for the store's writer, when the store says (``queue_depth``) or, for the SQLite
    store, from its writer channel's statistics."""
    depth = getattr(store, "queue_depth", None)
    if callable(depth):
        value = depth()
        return value if isinstance(value, int) else None
    channel = getattr(store, "_send", None)
    statistics = getattr(channel, "statistics", None)
    if callable(statistics):
        return int(statistics().current_buffer_used)
    return None
