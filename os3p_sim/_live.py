"""Real sockets: the station model driven by an ``os3p_trio`` Substation client, alone or as a fleet.

Theory of operation
-------------------
:class:`LiveStation` runs one :class:`~os3p_sim.Station` against a real Central System.  The
``os3p_trio.SubstationClient`` owns the connection: connect, BootNotification per PROTOCOL-DECISIONS §5 (only
when the fields changed since the last Accepted one, which the store remembers), heartbeats, pings, reconnect
with back-off and full jitter.  Around it, in one nursery per power cycle:

* a model task sleeps until the model's next deadline (or until a call changed the schedule) and steps it;
* an outbox task delivers the durable outbox (PROTOCOL-DECISIONS §7): one entry at a time, in order, removed
  on its CALLRESULT; ``SecurityError`` / ``InternalError`` / ``GenericError`` / timeout → retry after a
  back-off; any other CALLERROR → dead letter; a lost connection → the same entry again after the reconnect;
* the 13 Central System calls are served by quick synchronous handlers: the model answers, the change is
  committed to SQLite before the answer leaves, and the calls it causes (triggered messages) are sent after;
* transfers (UpdateFirmware, GetFile) run as tasks over HTTP; a Reboot effect (Reset, new firmware) ends the
  power cycle cleanly and starts a new one, which boots with the new fields.

Time: the model's clock is a :class:`ScaledClock` — real time, optionally faster (``--time-scale``), so that
schedules and meter intervals can be watched in minutes.  Protocol timers (heartbeat, call timeout, pings)
stay in real time: they belong to the connection, not to the substation's world.
"""

from __future__ import annotations

import collections
import json
import math
import random
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, NoReturn, TextIO

import attrs
import httpx
import trio

from os3p_core import (
    BootState,
    DeadLettered,
    ErrorCode,
    LocalProtocolError,
    OutboxDelivery,
    ProtocolError,
    RetryBackOff,
    structure_request,
    unstructure,
)
from os3p_trio import (
    CallErrorReceived,
    CallFailure,
    CallTimeout,
    ClientConfig,
    ConnectionClosed,
    Router,
    Session,
    SubstationClient,
)

from ._http import perform_transfer, transfer_client
from ._station import Output, Station, StationConfig
from ._store import SQLiteStore, StationStore
from ._transfers import Download, Reboot, Upload

__all__ = ["CENTRAL_SYSTEM_ACTIONS", "FleetStats", "LiveStation", "ScaledClock", "run_fleet"]

#: The calls a Substation serves (§M7).
CENTRAL_SYSTEM_ACTIONS = (
    "ChangeConfiguration", "ClearSingleStreetlightProfile", "GetConfiguration",
    "GetEffectiveStreetlightDaySchedule", "GetFile", "OverrideStreetlight", "ResumeStreetlight", "Reset",
    "ResetMVFaultIndicator", "SetStreetlightProfile", "TestMVFaultIndicator", "TriggerMessage",
    "UpdateFirmware",
)
#: The os3p_trio client's own heartbeat interval while this module sends the Heartbeats (effectively never).
_PARKED = 1e9
#: Seconds (real) a rebooting station waits for its outbox to drain before it reboots anyway.
REBOOT_DRAIN_TIMEOUT = 30.0
#: Seconds (real) a rebooting station stays off.
REBOOT_PAUSE = 2.0
#: Call latencies kept for the percentiles (a sliding window bounds the memory of a 10,000-station fleet).
LATENCY_WINDOW = 20_000


class ScaledClock:
    """The station's clock: POSIX seconds that run ``scale`` times as fast as real time from ``start``."""

    def __init__(self, scale: float = 1.0, start: float | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self.scale = scale
        self._wall0 = time.time() if start is None else start
        self._trio0 = trio.current_time()

    def now(self) -> float:
        return self._wall0 + (trio.current_time() - self._trio0) * self.scale

    def to_trio(self, t: float) -> float:
        """The trio clock reading at which this clock shows ``t``."""
        return self._trio0 + (t - self._wall0) / self.scale


@attrs.define
class FleetStats:
    """Counters of a fleet run (one object shared by every station of the process)."""

    stations: int = 0
    connected: int = 0
    booted: int = 0
    boots: int = 0
    calls: int = 0
    errors: int = 0
    dead_letters: int = 0
    started_at: float = attrs.field(factory=time.monotonic)
    latencies: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    booted_ids: set[str] = attrs.field(factory=set)
    heartbeats: collections.Counter[str] = attrs.field(factory=collections.Counter)

    def record(self, action: str, identity: str, latency: float) -> None:
        self.calls += 1
        self.latencies.append(latency)
        if action == "Heartbeat":
            self.heartbeats[identity] += 1

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100.0 * len(ordered)) - 1))]

    def summary(self) -> dict[str, Any]:
        elapsed = max(1e-9, time.monotonic() - self.started_at)
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "stations": self.stations, "connected": self.connected, "booted": self.booted,
            "bootNotifications": self.boots, "calls": self.calls, "errors": self.errors,
            "deadLetters": self.dead_letters, "elapsedSeconds": round(elapsed, 3),
            "callsPerSecond": round(self.calls / elapsed, 2),
            "latencyP50Ms": None if p50 is None else round(p50 * 1000, 3),
            "latencyP99Ms": None if p99 is None else round(p99 * 1000, 3),
            "stationsWithHeartbeat": len(self.heartbeats),
        }

    def progress_line(self, window_calls: int, window: float) -> str:
        p50, p99 = self.percentile(50), self.percentile(99)

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.1f}"

        return (f"connected {self.connected}/{self.stations}  booted {self.booted}  "
                f"msg/s {window_calls / max(window, 1e-9):.1f}  p50 {ms(p50)} ms  p99 {ms(p99)} ms  "
                f"errors {self.errors}")


class LiveStation:
    """One simulated station on a real connection, until cancelled (survives reboots and reconnects)."""

    def __init__(self, url: str, identity: str, store: StationStore, *, config: StationConfig | None = None,
                 seed: int | str = 0, password: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 client_config: ClientConfig | None = None, clock: ScaledClock | None = None,
                 stats: FleetStats | None = None, http: httpx.AsyncClient | None = None,
                 transfer_ssl_context: ssl.SSLContext | None = None,
                 backoff: RetryBackOff | None = None, reboot_pause: float = REBOOT_PAUSE) -> None:
        self.url = url
        self.identity = identity
        self.store = store
        self.config = config or StationConfig()
        self.seed = seed
        self.password = password
        self.ssl_context = ssl_context
        self.client_config = client_config
        self._clock = clock
        self.stats = stats or FleetStats()
        #: The HTTP client of the transfers (a fleet shares one; None: one per transfer), and the TLS trust
        #: for https ``location``s when there is no shared client (None: the system's CA store).  Separate
        #: from ``ssl_context`` (the wss:// Central System): a file server may use another CA.
        self.http = http
        self.transfer_ssl_context = transfer_ssl_context
        #: Outbox retry timing override (None: the station's RetryBackOff configuration keys); real seconds.
        self.backoff = backoff
        self._real = ScaledClock(1.0)
        self._delivery: OutboxDelivery | None = None
        #: Real seconds a rebooting station stays off (Reset, new firmware).
        self.reboot_pause = reboot_pause
        self.rng = random.Random(f"live/{seed}/{identity}")
        self.station: Station | None = None
        self.client: SubstationClient | None = None
        self.power_cycles = 0
        self._nursery: trio.Nursery | None = None
        self._reboot = trio.Event()
        self._model_wake = trio.Event()
        self._outbox_wake = trio.Event()

    @property
    def clock(self) -> ScaledClock:
        if self._clock is None:
            self._clock = ScaledClock()
        return self._clock

    async def run(self, *, task_status: trio.TaskStatus[LiveStation] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Power on, run, reboot when asked; forever."""
        started = False
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    self._power_on(nursery)
                    if not started:
                        task_status.started(self)
                        started = True
                    await self._reboot.wait()
                    nursery.cancel_scope.cancel()
            finally:
                # A reboot, or the end of the run (cancelled): either way a clean shutdown, so the next start
                # is not reported as an unexpected reboot.
                self._power_off()
            await trio.sleep(self.reboot_pause)

    # -- power -------------------------------------------------------------------------------------------
    def _power_on(self, nursery: trio.Nursery) -> None:
        now = self.clock.now()
        self.power_cycles += 1
        self._nursery = nursery
        self._reboot = trio.Event()
        station = Station(self.identity, self.config, seed=self.seed, now=now,
                          stored=self.store.load(self.identity))
        self.station = station
        self._apply(station.start(now))
        boot = structure_request("BootNotification", station.boot_fields())
        accepted = station.accepted_boot_fields
        last = structure_request("BootNotification", accepted) if accepted else None
        cfg = self.client_config or ClientConfig()
        # The station sends its own Heartbeats (to time them for the statistics): the client's are parked.
        cfg = attrs.evolve(cfg, heartbeat_interval=_PARKED,
                           ping_interval=float(station.configuration.websocket_ping_interval))
        self.client = SubstationClient(
            self.url, self.identity, self._router(), boot, last_accepted_boot=last,  # type: ignore[arg-type]
            password=self.password, ssl_context=self.ssl_context, config=cfg, on_connect=self._on_connect,
            on_boot_accepted=self._on_boot_accepted, rng=random.Random(f"client/{self.seed}/{self.identity}"))
        self.stats.stations += 1
        nursery.start_soon(self.client.run)
        nursery.start_soon(self._model_loop, station)
        nursery.start_soon(self._outbox_loop, station)
        nursery.start_soon(self._heartbeat_loop, station)

    def _power_off(self) -> None:
        station = self.station
        if station is not None:
            self.store.apply(self.identity, station.shutdown(self.clock.now()).change, self.clock.now())
        self.stats.stations -= 1
        self.station = None
        self.client = None
        self._nursery = None

    # -- applying the model's output -----------------------------------------------------------------------
    def _apply(self, out: Output) -> None:
        """Commit first (§7), then let the tasks send: outbox, transient calls, effects."""
        now = self.clock.now()
        if out.change:
            self.store.apply(self.identity, out.change, now)
            if out.change.outbox:
                self._outbox_wake.set()
        nursery = self._nursery
        if nursery is not None:
            for action, payload in out.calls:
                nursery.start_soon(self._send_transient, action, payload)
            for effect in out.effects:
                nursery.start_soon(self._effect, effect)
        self._model_wake.set()

    def _router(self) -> Router:
        router = Router()
        for action in CENTRAL_SYSTEM_ACTIONS:
            router.add(action, self._handler(action))
        return router

    def _handler(self, action: str) -> Callable[[Session, Any], Any]:
        def handle(session: Session, request: Any) -> Any:
            station = self.station
            if station is None:
                raise ProtocolError("the station is rebooting", ErrorCode.GENERIC_ERROR)
            # The boot state of the connection the call came on: while Pending a TriggerMessage gets one
            # message (PROTOCOL-DECISIONS §5, one credit per trigger in the core).
            accepted = session.connection.boot_state is BootState.ACCEPTED
            out = station.handle_call(action, unstructure(request), self.clock.now(), accepted=accepted)
            self._apply(out)
            if action == "ChangeConfiguration" and self._delivery is not None and self.backoff is None:
                self._delivery.set_backoff(station.retry_backoff)  # RetryBackOff keys apply at once
            if action == "ChangeConfiguration" and self.client is not None:
                # websocketPingInterval (§J6) and HeartbeatInterval take effect at once.
                self.client.ping_interval = float(station.configuration.websocket_ping_interval)
            if out.error is not None:
                raise ProtocolError(out.error[1], ErrorCode(out.error[0]))
            return out.response

        return handle

    async def _on_connect(self, session: Session) -> None:
        self.stats.connected += 1
        self._outbox_wake.set()
        try:
            await session.wait_closed()
        finally:
            self.stats.connected -= 1

    async def _on_boot_accepted(self, boot: Any) -> None:
        station, client = self.station, self.client
        if station is None or client is None:
            return
        self.stats.boots += 1
        if self.identity not in self.stats.booted_ids:
            self.stats.booted_ids.add(self.identity)
            self.stats.booted += 1
        interval = int(client.heartbeat_interval)
        client.heartbeat_interval = _PARKED
        self._apply(station.boot_accepted(interval, self.clock.now()))

    # -- tasks -----------------------------------------------------------------------------------------------
    async def _model_loop(self, station: Station) -> None:
        clock = self.clock
        while True:
            self._model_wake = trio.Event()
            with trio.move_on_at(clock.to_trio(station.next_deadline())):
                await self._model_wake.wait()
            now = clock.now()
            if station.next_deadline() <= now:
                out = station.step(now)
                client = self.client
                if client is None or not client.accepted:
                    # PROTOCOL-DECISIONS §5: nothing unasked while not Accepted (the core would refuse it and
                    # the fleet count an error); the periodic reading stays in the meter history (GetFile).
                    out = attrs.evolve(out, calls=())
                self._apply(out)

    async def _heartbeat_loop(self, station: Station) -> None:
        """Heartbeat every ``HeartbeatInterval`` (real) seconds while accepted (§M3.1)."""
        while True:
            client = self.client
            if client is None:
                return
            session = await client.wait_accepted()
            with trio.move_on_after(float(station.heartbeat_interval)):
                await session.wait_closed()
                continue
            if client.accepted:
                await self._send_transient("Heartbeat", {})

    async def _send_transient(self, action: str, payload: dict[str, Any]) -> None:
        client = self.client
        session = None if client is None else client.session
        if session is None:
            return  # offline: MeterValues stay in the history; a triggered answer is moot
        started = trio.current_time()
        try:
            await session.call_payload(action, payload)
        except ConnectionClosed:
            return
        except (CallFailure, LocalProtocolError):
            self.stats.errors += 1
            return
        self.stats.record(action, self.identity, trio.current_time() - started)

    async def _outbox_loop(self, station: Station) -> None:
        """Drive the core's :class:`~os3p_core.OutboxDelivery` (PROTOCOL-DECISIONS §7): this task only sends
        what it hands out and reports the outcome.  Outbox timing is real time (a protocol timer, like the
        call timeout), whatever ``--time-scale`` does to the model's clock."""
        real = self._real
        delivery = OutboxDelivery(self.store, self.identity, rng=self.rng,
                                  backoff=self.backoff or station.retry_backoff)
        self._delivery = delivery
        while True:
            client = self.client
            if client is None:
                return
            session = await client.wait_accepted()
            message = delivery.next_message(real.now(), allowed=client.accepted)
            if message is None:
                self._outbox_wake = trio.Event()
                deadline = delivery.next_deadline()
                with trio.move_on_at(math.inf if deadline is None else real.to_trio(deadline)):
                    await self._outbox_wake.wait()
                continue
            started = trio.current_time()
            try:
                await session.call_payload(message.action, message.payload)
            except ConnectionClosed:
                delivery.interrupted(real.now())  # the same entry goes again on the next connection
            except CallErrorReceived as exc:
                self.stats.errors += 1
                delivery.answered_error(exc.code, real.now(), exc.description)
                if exc.code == ErrorCode.SECURITY_ERROR.value:
                    # PROTOCOL-DECISIONS §5: the Central System does not know us as accepted.
                    self._apply(station.acceptance_forgotten(self.clock.now()))
                    client.security_error()
            except CallTimeout:
                self.stats.errors += 1
                delivery.timed_out(real.now())
            except CallFailure:
                delivery.delivered(real.now())  # answered (with an invalid result): delivered (§M6.8)
            except LocalProtocolError as exc:
                delivery.refused(exc.code.value, exc.description, real.now())
            else:
                self.stats.record(message.action, self.identity, trio.current_time() - started)
                delivery.delivered(real.now())
            while (event := delivery.next_event()) is not None:
                if isinstance(event, DeadLettered):
                    self.stats.dead_letters += 1

    async def _effect(self, effect: Download | Upload | Reboot) -> None:
        station = self.station
        if station is None:
            return
        if isinstance(effect, Reboot):
            # Let the answer (Reset) leave, and the outbox drain (bounded): a station about to restart first
            # reports what it has, so that e.g. ``Installed`` is not sent twice across the reboot.
            await trio.sleep(0.5)
            with trio.move_on_after(REBOOT_DRAIN_TIMEOUT):
                while self.store.outbox_head(self.identity) is not None:
                    await trio.sleep(0.1)
            self._reboot.set()
            return
        out = await perform_transfer(station, effect, self.store, self.clock.now, client=self.http,
                                     ssl_context=self.transfer_ssl_context)
        if self.station is station:
            self._apply(out)


async def run_fleet(url: str, count: int, *, prefix: str = "SIM", ramp: float = 50.0,
                    duration: float | None = None, store: StationStore | None = None,
                    password: str | None = None, ssl_context: ssl.SSLContext | None = None,
                    transfer_ssl_context: ssl.SSLContext | None = None,
                    time_scale: float = 1.0, seed: int | str = 0,
                    config: StationConfig | None = None, client_config: ClientConfig | None = None,
                    progress: TextIO | Literal["stderr"] | None = "stderr", json_path: str | None = None,
                    stats: FleetStats | None = None,
                    task_status: trio.TaskStatus[FleetStats] = trio.TASK_STATUS_IGNORED) -> FleetStats:
    """Run ``count`` stations named ``<prefix>-00001``... in this process, starting ``ramp`` per second.

    Runs for ``duration`` seconds (forever when None, until cancelled), printing a progress line every second
    to ``progress`` (``"stderr"``: whatever ``sys.stderr`` is when the fleet starts; ``None``: silent) and the
    summary at the end; returns the statistics, and writes them as JSON to ``json_path``.  ``ssl_context``
    verifies a wss:// Central System, ``transfer_ssl_context`` https firmware downloads and GetFile uploads
    (both None: the system's CA store).
    """
    if isinstance(progress, str):
        progress = sys.stderr
    if count < 1 or ramp <= 0:
        raise ValueError("count must be ≥ 1 and ramp > 0")
    stats = stats or FleetStats()
    store = store or SQLiteStore(":memory:", synchronous="NORMAL")
    clock = ScaledClock(time_scale)
    width = max(5, len(str(count)))
    async with transfer_client(transfer_ssl_context) as http, trio.open_nursery() as nursery:
        task_status.started(stats)

        async def start_all() -> None:
            for i in range(count):
                station = LiveStation(url, f"{prefix}-{i + 1:0{width}d}", store, config=config, seed=seed,
                                      password=password, ssl_context=ssl_context,
                                      client_config=client_config, clock=clock,
                                      stats=stats, http=http)
                nursery.start_soon(station.run)
                await trio.sleep(1.0 / ramp)

        async def report() -> None:
            last_calls, last_t = stats.calls, time.monotonic()
            while True:
                await trio.sleep(1.0)
                now = time.monotonic()
                if progress is not None:
                    progress.write("\r" + stats.progress_line(stats.calls - last_calls, now - last_t) + "  ")
                    progress.flush()
                last_calls, last_t = stats.calls, now

        try:
            nursery.start_soon(start_all)
            nursery.start_soon(report)
            if duration is not None:
                await trio.sleep(duration)
                nursery.cancel_scope.cancel()
        finally:
            # Also when the run is cancelled (Ctrl-C): the summary is what the user ran it for.
            if progress is not None:
                progress.write("\n" + json.dumps(stats.summary(), indent=2) + "\n")
                progress.flush()
            if json_path is not None:
                with open(json_path, "w") as fh:
                    json.dump(stats.summary(), fh, indent=2)
    return stats
