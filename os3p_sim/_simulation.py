"""Deterministic simulation: stations and a Central System model over an in-memory network, in virtual time.

Theory of operation
-------------------
Everything runs on one :class:`VirtualLoop`: a heap of timers ordered by (virtual time, insertion number).
Nothing reads a real clock, nothing sleeps, and every random draw comes from a ``random.Random`` seeded from
the simulation's seed (one for the network, one per station model), so **the same seed reproduces the same run
exactly** — the trace of every message, with its virtual time, is identical.  Days of operation take seconds.

The pieces are the real ones: each station is a :class:`~os3p_sim.Station` (the sans-IO model) with a durable
:class:`~os3p_sim.SQLiteStore` and an ``os3p_core.Connection`` in the Substation role; the Central System
model holds one ``os3p_core.Connection`` per station in the Central System role.  Only the transport is
simulated:

* a :class:`Link` per connection delivers text messages in order after a latency drawn from
  :class:`LinkProfile` (plus rare spikes);
* injected faults (:class:`FaultPlan`): disconnects (both ends see the connection lost; messages in flight are
  gone), partitions (messages in both directions are silently dropped for a while: calls time out, responses
  get lost), and station crashes (``kill -9``: the model's memory is gone, only the store survives; the
  station powers on again later and resumes from the store).

The station driver (:class:`SimStation`) follows PROTOCOL-DECISIONS §5 for boot and reconnect
(BootNotification only when the fields changed since the last Accepted one; Pending → retry after
``interval``; Rejected → wait ``interval`` before reconnecting; reconnect with exponential back-off and full
jitter) and §7 for the outbox: one entry at a time, in order, removed only on its CALLRESULT;
``SecurityError`` / ``InternalError`` / ``GenericError`` / timeout → retry later with back-off; any other
CALLERROR → dead letter.  The Central System model records a notification (its "commit") before it answers,
so at-least-once delivery is observable: a duplicate appears exactly where a CALLRESULT was lost.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from os3p_core import (
    Action,
    BootState,
    BootStateChanged,
    Call,
    CallFailed,
    CallReceived,
    CallTimedOut,
    Config,
    Connection,
    DeadLettered,
    ErrorReceived,
    LocalProtocolError,
    OutboxDelivery,
    ResultReceived,
    RetryBackOff,
    Role,
)

from ._contactors import LocalSwitch
from ._meters import iso_utc
from ._station import Output, Station, StationConfig, log_text, meter_history_csv, parse_time
from ._store import SQLiteStore, StationStore
from ._transfers import Download, Reboot, Upload

__all__ = [
    "CentralModel",
    "FaultPlan",
    "Link",
    "LinkProfile",
    "Received",
    "SimStation",
    "Simulation",
    "VirtualLoop",
]

#: Seconds a rebooting station waits for its outbox to drain before it reboots anyway.
REBOOT_DRAIN_TIMEOUT = 30.0
#: Most timers one :meth:`VirtualLoop.run_until` call fires (every loop bounded in count).
MAX_EVENTS = 50_000_000


class _Timer:
    __slots__ = ("cancelled", "fn")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualLoop:
    """A discrete-event clock: timers fire in (time, insertion) order; ``now`` jumps from one to the next."""

    def __init__(self, start: float) -> None:
        self.now = start
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self.fired = 0

    def at(self, t: float, fn: Callable[[], object]) -> _Timer:
        """Run ``fn`` at virtual time ``t`` (its return value is ignored)."""
        timer = _Timer(fn)
        heapq.heappush(self._heap, (max(t, self.now), next(self._seq), timer))
        return timer

    def after(self, delay: float, fn: Callable[[], object]) -> _Timer:
        return self.at(self.now + max(0.0, delay), fn)

    def run_until(self, end: float) -> None:
        """Fire every timer due up to ``end``, then set ``now`` to ``end``."""
        for _ in range(MAX_EVENTS):
            if not self._heap or self._heap[0][0] > end:
                break
            t, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.now = t
            self.fired += 1
            timer.fn()
        else:  # pragma: no cover - a runaway simulation
            raise RuntimeError(f"more than {MAX_EVENTS} timers before {end}")
        self.now = max(self.now, end)


@attrs.frozen
class LinkProfile:
    """Latency of the simulated network (seconds): ``latency`` + uniform jitter, rare spikes."""

    latency: float = 0.04
    jitter: float = 0.06
    spike_probability: float = 0.002
    spike: float = 3.0
    #: Time to open a connection (TCP + TLS + WebSocket upgrade).
    connect_time: float = 0.3


@attrs.frozen
class FaultPlan:
    """Faults injected on every station's link: Poisson processes (rates per day), scheduled crashes."""

    disconnects_per_day: float = 0.0
    partitions_per_day: float = 0.0
    mean_partition: float = 90.0
    #: Virtual instants at which a station is killed (kill -9), and how long it stays down.
    crashes: tuple[tuple[str, float], ...] = ()
    restart_delay: float = 45.0
    #: Probability that a connection breaks after the Central System committed a station's notification and
    #: before its CALLRESULT left (the case that makes at-least-once delivery send a duplicate).
    lose_response_probability: float = 0.0


@attrs.frozen
class Received:
    """One station-initiated call as the Central System model committed it."""

    time: float
    identity: str
    action: str
    payload: dict[str, Any]
    unique_id: str


class Link:
    """One connection's transport: in-order delivery with latency; dies on disconnect; may be partitioned."""

    def __init__(self, sim: Simulation, station: SimStation, number: int) -> None:
        self.sim = sim
        self.station = station
        self.number = number
        self.open = True
        self.partitioned_until = 0.0
        self._last_delivery = {"up": 0.0, "down": 0.0}
        self.lost_results = 0

    def _delay(self) -> float:
        rng = self.sim.rng
        profile = self.sim.profile
        d = profile.latency + rng.uniform(0.0, profile.jitter)
        if rng.random() < profile.spike_probability:
            d += rng.uniform(0.0, profile.spike)
        return d

    def send(self, direction: str, text: str) -> None:
        """``direction`` "up" (station → Central System) or "down"."""
        loop = self.sim.loop
        if not self.open:
            return
        if loop.now < self.partitioned_until:
            self._lost(direction, text)
            return
        # TCP keeps order: a message never overtakes the one before it.
        at = max(loop.now + self._delay(), self._last_delivery[direction])
        self._last_delivery[direction] = at
        loop.at(at, lambda: self._deliver(direction, text))

    def _lost(self, direction: str, text: str) -> None:
        if direction == "down" and text.startswith("[3"):
            self.lost_results += 1
            self.sim.lost_results += 1

    def _deliver(self, direction: str, text: str) -> None:
        if not self.open:
            self._lost(direction, text)
            return
        if self.sim.record:
            self.sim.trace.append((self.sim.loop.now, direction, self.station.identity, text))
        if direction == "up":
            self.sim.central.receive(self, text)
        else:
            self.station.receive(self, text)

    def close_after_flush(self) -> None:
        """A graceful close by the Central System: what it sent arrives first (data before FIN)."""
        last = max(self._last_delivery["down"], self.sim.loop.now)
        self.sim.loop.at(last + 0.001, self.close)

    def close(self) -> None:
        """Both ends see the connection lost (messages still in flight are gone)."""
        if not self.open:
            return
        self.open = False
        self.sim.central.lost(self)
        self.station.lost(self)


class CentralModel:
    """The Central System as the stations see it: boots them, commits their notifications, then answers."""

    def __init__(self, sim: Simulation, *, heartbeat_interval: int = 600, retry_interval: int = 30,
                 commit_delay: tuple[float, float] = (0.01, 1.5)) -> None:
        self.sim = sim
        self.heartbeat_interval = heartbeat_interval
        #: ``interval`` of a Pending or Rejected BootNotification response (§M3.1).
        self.retry_interval = retry_interval
        #: Seconds between receiving a notification and answering it (the store's commit), uniform in range.
        self.commit_delay = commit_delay
        self.accepted: set[str] = set()
        self.received: list[Received] = []
        self.connections: dict[str, tuple[Link, Connection]] = {}
        #: (identity, action, payload) → CallError code to answer instead of committing, or None.
        self.inject_error: Callable[[str, str, dict[str, Any]], str | None] = lambda i, a, p: None
        #: identity → BootNotification status ("Accepted", "Pending", "Rejected").
        self.boot_status: Callable[[str], str] = lambda identity: "Accepted"
        self.results: list[tuple[float, str, str, Any]] = []
        self._ids = itertools.count(1)

    def _new_id(self) -> str:
        return f"cs-{next(self._ids)}"

    def attach(self, link: Link) -> None:
        identity = link.station.identity
        old = self.connections.get(identity)
        if old is not None:  # PROTOCOL-DECISIONS §1: the newer connection replaces the older
            old[0].close()
        conn = Connection(Role.CENTRAL_SYSTEM, Config(id_factory=self._new_id),
                          previously_accepted=identity in self.accepted)
        self.connections[identity] = (link, conn)

    def lost(self, link: Link) -> None:
        entry = self.connections.get(link.station.identity)
        if entry is not None and entry[0] is link:
            # Calls committed but not answered yet: their CALLRESULTs are lost with the connection.
            unanswered = entry[1].statistics()["incoming"]
            self.sim.lost_results += int(unanswered)
            entry[1].connection_lost()
            self._drain(link, entry[1])
            del self.connections[link.station.identity]

    def receive(self, link: Link, text: str) -> None:
        entry = self.connections.get(link.station.identity)
        if entry is None or entry[0] is not link:
            return
        conn = entry[1]
        conn.receive_message(text, self.sim.loop.now)
        self._drain(link, conn)

    def call(self, identity: str, action: str, payload: dict[str, Any]) -> bool:
        """Send a Central System call to a connected station (its result lands in :attr:`results`)."""
        entry = self.connections.get(identity)
        if entry is None:
            return False
        link, conn = entry
        conn.send(Call(action, payload), self.sim.loop.now)
        self._drain(link, conn)
        return True

    def _drain(self, link: Link, conn: Connection) -> None:
        now = self.sim.loop.now
        identity = link.station.identity
        while (event := conn.next_event()) is not None:
            if isinstance(event, CallReceived):
                action = event.action.value
                if action == "BootNotification":
                    status = self.boot_status(identity)
                    interval = self.heartbeat_interval if status == "Accepted" else self.retry_interval
                    conn.send(event.result({"status": status, "currentTime": iso_utc(now),
                                            "interval": interval}), now)
                    if status == "Accepted":
                        self.accepted.add(identity)  # remembered durably (PROTOCOL-DECISIONS §5 (b))
                    continue
                code = self.inject_error(identity, action, event.payload)
                if code is not None:
                    conn.send(event.error(code, "injected by the simulation"), now)
                    continue
                # PROTOCOL-DECISIONS §7: commit, then answer.  The commit takes a moment; a connection lost
                # in that window loses the CALLRESULT, and the station will send the entry again.
                self.received.append(Received(now, identity, action, event.payload, event.unique_id))
                reply: dict[str, Any] = {"currentTime": iso_utc(now)} if action == "Heartbeat" else {}
                delay = self.sim.rng.uniform(*self.commit_delay)
                if self.sim.rng.random() < self.sim.faults.lose_response_probability:
                    self.sim.loop.after(delay, link.close)
                    self.sim.disconnects += 1
                else:
                    self.sim.loop.after(delay, functools.partial(self._answer, link, conn, event, reply))
            elif isinstance(event, ResultReceived):
                self.results.append((now, identity, event.action.value, event.payload))
            elif isinstance(event, ErrorReceived | CallTimedOut | CallFailed):
                self.results.append((now, identity, event.action.value, event))
        for text in conn.messages_to_send():
            link.send("down", text)
        if conn.should_close:
            link.close_after_flush()  # §M3.1: Rejected → send the CALLRESULT, then close
            return
        deadline = conn.next_deadline()
        if deadline is not None and link.open:
            self.sim.loop.at(deadline, lambda: self._timeout(link, conn))

    def _answer(self, link: Link, conn: Connection, event: CallReceived, reply: dict[str, Any]) -> None:
        if link.open and self.connections.get(link.station.identity, (None,))[0] is link:
            conn.send(event.result(reply), self.sim.loop.now)
            self._drain(link, conn)

    def _timeout(self, link: Link, conn: Connection) -> None:
        if link.open and self.connections.get(link.station.identity, (None,))[0] is link:
            conn.handle_timeout(self.sim.loop.now)
            self._drain(link, conn)

    def streetlight_events(self, identity: str) -> list[Received]:
        return [r for r in self.received if r.identity == identity and r.action.startswith("Streetlight")]


class SimStation:
    """Drives one :class:`Station` in the simulation: power, connection, boot, heartbeats, outbox, timers."""

    def __init__(self, sim: Simulation, identity: str, config: StationConfig, store: StationStore) -> None:
        self.sim = sim
        self.identity = identity
        self.config = config
        self.store = store
        self.station: Station | None = None
        self.link: Link | None = None
        self.conn: Connection | None = None
        # Bumped at every power cycle / connection change: timers of an earlier one do nothing.
        self.power_epoch = 0
        self.conn_epoch = 0
        self._station_timer: _Timer | None = None
        self._heartbeat_timer: _Timer | None = None
        self._links = itertools.count(1)
        self._reconnects = 0
        self._inflight: str | None = None  # message id of the outbox entry in flight
        self._delivery: OutboxDelivery | None = None
        self._boot_id: str | None = None
        #: Every durable notification ever appended, in order (ground truth for the tests).
        self.appended: list[tuple[str, dict[str, Any]]] = []
        self.dead: list[tuple[str, dict[str, Any], str]] = []
        #: Transient calls (heartbeats, meter values, triggered messages) the core refused to send, by action
        #: (e.g. the periodic MeterValues while Pending, PROTOCOL-DECISIONS §5).
        self.refused: collections.Counter[str] = collections.Counter()
        self.crashes = 0
        self.boots = 0

    # -- power -------------------------------------------------------------------------------------------
    def power_on(self) -> None:
        now = self.sim.loop.now
        self.power_epoch += 1
        self.station = Station(self.identity, self.config, seed=self.sim.seed, now=now,
                               stored=self.store.load(self.identity))
        self._delivery = OutboxDelivery(self.store, self.identity, rng=self.sim.rng, backoff=self.sim.backoff)
        self._apply(self.station.start(now))
        self._arm_station_timer()
        self._later(self.sim.rng.uniform(0.0, 2.0), self._connect, scope="power")

    def crash(self) -> None:
        """kill -9: memory gone, the store survives; the link drops."""
        if self.station is None:
            return
        self.crashes += 1
        self._power_off()

    def _power_off(self) -> None:
        self.power_epoch += 1
        self.conn_epoch += 1
        link = self.link
        self.station = None
        if link is not None:
            link.close()
        self.link = None
        self.conn = None
        self._interrupted()

    def _reboot_when_drained(self, deadline: float) -> None:
        """Reboot once the outbox is delivered (bounded): a station about to restart first reports what it
        has, so that e.g. ``Installed`` is not sent twice across the reboot."""
        drained = self.store.outbox_head(self.identity) is None and self._inflight is None
        if drained or self.sim.loop.now >= deadline:
            self._reboot(10.0)
        else:
            self._later(0.5, lambda: self._reboot_when_drained(deadline), scope="power")

    def _reboot(self, delay: float) -> None:
        station = self.station
        if station is None:
            return
        self._apply(station.shutdown(self.sim.loop.now))
        self._power_off()
        self.sim.loop.after(delay, self.power_on)

    # -- timers --------------------------------------------------------------------------------------------
    def _later(self, delay: float, fn: Callable[[], None], *, scope: str = "conn") -> _Timer:
        """A timer that does nothing if the station powered off ("power") or the connection changed ("conn")
        in the meantime."""
        power, conn = self.power_epoch, self.conn_epoch

        def fire() -> None:
            if self.power_epoch == power and (scope == "power" or self.conn_epoch == conn):
                fn()

        return self.sim.loop.after(delay, fire)

    def _arm_station_timer(self) -> None:
        """Exactly one pending step timer per station, at the model's next deadline."""
        if self._station_timer is not None:
            self._station_timer.cancel()
            self._station_timer = None
        if self.station is not None:
            self._station_timer = self._later(self.station.next_deadline() - self.sim.loop.now,
                                              self._station_step, scope="power")

    def _station_step(self) -> None:
        self._station_timer = None
        station = self.station
        if station is None:
            return
        now = self.sim.loop.now
        if station.next_deadline() <= now:
            out = station.step(now)
            if self.conn is None or self.conn.boot_state is not BootState.ACCEPTED:
                # PROTOCOL-DECISIONS §5: nothing unasked while not Accepted; the periodic reading stays in
                # the meter history (GetFile), as it does while offline.
                out = attrs.evolve(out, calls=())
            self._apply(out)
        self._arm_station_timer()

    # -- the model's output ----------------------------------------------------------------------------------
    def _apply(self, out: Output, response_to: CallReceived | None = None) -> None:
        """Store first (§7), then answer, then send the calls, then start the effects."""
        now = self.sim.loop.now
        if out.change:
            self.store.apply(self.identity, out.change, now)
            if self.sim.record:
                self.appended.extend(out.change.outbox)
        conn = self.conn
        if response_to is not None and conn is not None:
            if out.error is not None:
                conn.send(response_to.error(out.error[0], out.error[1]), now)
            else:
                conn.send(response_to.result(out.response), now)
        for action, payload in out.calls:
            self._send_transient(action, payload)
        self._flush()
        for effect in out.effects:
            self._effect(effect)
        self._pump()

    def _send_transient(self, action: str, payload: dict[str, Any]) -> None:
        conn = self.conn
        if conn is None:
            return  # offline: MeterValues stay in the history, triggered answers are moot
        # Not allowed in this boot state, or the queue is full: a transient message is dropped (and counted:
        # a live station's core refuses it the same way, and the fleet statistics count it as an error).
        try:
            conn.send(Call(action, payload), self.sim.loop.now)
        except LocalProtocolError:
            self.refused[action] += 1

    def _effect(self, effect: Download | Upload | Reboot) -> None:
        if isinstance(effect, Reboot):
            deadline = self.sim.loop.now + REBOOT_DRAIN_TIMEOUT
            self._later(0.5, lambda: self._reboot_when_drained(deadline), scope="power")
            return
        files = self.sim.files
        delay = 1.0 + self.sim.rng.uniform(0.0, 2.0)
        if isinstance(effect, Download):
            data = files.get(effect.location)
            token = effect.token
            self._later(delay, lambda: self._finish(lambda s, now: s.download_finished(token, data, now)),
                        scope="power")
            return
        station = self.station
        assert station is not None
        tz = station.configuration.timezone
        if effect.file_type == "MeterValueHistory":
            start = parse_time(effect.start_time, tz) if effect.start_time else None
            stop = parse_time(effect.stop_time, tz) if effect.stop_time else None
            content = meter_history_csv(self.store.meter_history(self.identity, start, stop))
        else:
            content = log_text(self.store.log_lines(self.identity))
        ok = effect.location.startswith(("http://", "https://"))
        if ok:
            files[effect.location.rstrip("/") + "/" + effect.file_name] = content
        self._later(delay, lambda: self._finish(lambda s, now: s.upload_finished(effect.token, ok, now)),
                    scope="power")

    def _finish(self, fn: Callable[[Station, float], Output]) -> None:
        if self.station is not None:
            self._apply(fn(self.station, self.sim.loop.now))
            self._arm_station_timer()

    # -- connection ------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        if self.station is None or self.link is not None:
            return
        number = next(self._links)
        link = Link(self.sim, self, number)
        self.sim.central.attach(link)
        self.link = link
        self.conn_epoch += 1
        ids = itertools.count(1)
        tag = f"{self.station.boot_count}.{number}"
        self.conn = Connection(Role.SUBSTATION, Config(id_factory=lambda: f"{tag}-{next(ids)}"),
                               previously_accepted=not self.station.boot_needed())
        self._later(self.sim.profile.connect_time, self._opened)

    def _opened(self) -> None:
        station, conn = self.station, self.conn
        if station is None or conn is None:
            return
        if conn.boot_state is BootState.ACCEPTED:
            self._reconnects = 0
            self._start_heartbeats()
            self._pump()
        else:
            self._send_boot()

    def _send_boot(self) -> None:
        station, conn = self.station, self.conn
        if station is None or conn is None:
            return
        self._boot_id = conn.send(Call(Action.BOOT_NOTIFICATION, station.boot_fields()), self.sim.loop.now)
        self._flush()

    def _start_heartbeats(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        station = self.station
        if station is not None:
            self._heartbeat_timer = self._later(station.heartbeat_interval, self._heartbeat)

    def _heartbeat(self) -> None:
        conn = self.conn
        if conn is not None and conn.boot_state is BootState.ACCEPTED:
            self._send_transient("Heartbeat", {})
            self._flush()
        self._start_heartbeats()

    def lost(self, link: Link) -> None:
        if link is not self.link:
            return
        conn = self.conn
        self.link = None
        if conn is not None:
            conn.connection_lost()
            self._drain()
        self.conn = None
        self._interrupted()
        self._boot_id = None
        self.conn_epoch += 1  # heartbeats and deadline timers of this connection stop
        if self.station is not None:
            retry = conn.boot_retry_interval if conn is not None and conn.boot_state is BootState.REJECTED \
                else None
            self._reconnects += 1
            cap = min(60.0, 1.0 * 2 ** min(self._reconnects, 6))
            delay = float(retry) if retry else self.sim.rng.uniform(0.5, cap)
            self._later(delay, self._connect, scope="power")

    def receive(self, link: Link, text: str) -> None:
        if link is not self.link or self.conn is None:
            return
        self.conn.receive_message(text, self.sim.loop.now)
        self._drain()

    def _flush(self) -> None:
        conn, link = self.conn, self.link
        if conn is None or link is None:
            return
        for text in conn.messages_to_send():
            link.send("up", text)
        deadline = conn.next_deadline()
        if deadline is not None:
            self._later(deadline - self.sim.loop.now, self._timeout)

    def _timeout(self) -> None:
        if self.conn is not None:
            self.conn.handle_timeout(self.sim.loop.now)
            self._drain()

    def _drain(self) -> None:
        conn = self.conn
        if conn is None:
            return
        now = self.sim.loop.now
        while (event := conn.next_event()) is not None:
            if isinstance(event, CallReceived):
                if self.station is not None:
                    out = self.station.handle_call(event.action.value, event.payload, now,
                                                   accepted=conn.boot_state is BootState.ACCEPTED)
                    self._apply(out, response_to=event)
                    self._arm_station_timer()
            elif isinstance(event, BootStateChanged):
                pass  # the BootNotification's own result drives the boot flow (a second Pending is no change)
            elif isinstance(event, ResultReceived):
                if event.unique_id == self._boot_id:
                    self._boot_result(event.payload)
                self._outbox_done(event.unique_id, None)
            elif isinstance(event, ErrorReceived | CallTimedOut) and event.unique_id == self._boot_id:
                # No usable answer to the BootNotification: close, reconnect with the back-off (as the
                # client).
                self._boot_id = None
                if self.link is not None:
                    self.link.close()
                return
            elif isinstance(event, ErrorReceived):
                self._outbox_done(event.unique_id, event.code_text)
                if event.code.value == "SecurityError" and event.action is not Action.BOOT_NOTIFICATION:
                    # The Central System does not know us as accepted: forget it, boot again (§5).
                    if self.station is not None:
                        self._apply(self.station.acceptance_forgotten(now))
                    self._send_boot()
            elif isinstance(event, CallTimedOut):
                self._outbox_done(event.unique_id, "timeout")
            elif isinstance(event, CallFailed) and self._inflight == event.unique_id:
                self._interrupted()  # connection lost: the entry stays at the head, re-sent later
        self._flush()

    def _boot_result(self, payload: dict[str, Any]) -> None:
        """§M3.1: Accepted → heartbeats and the outbox; Pending → boot again after ``interval`` (60 if 0);
        Rejected → the Central System closes the connection (see :meth:`lost`)."""
        station = self.station
        if station is None:
            return
        self._boot_id = None
        now = self.sim.loop.now
        interval = int(payload.get("interval", 0))
        if payload["status"] == "Accepted":
            self.boots += 1
            self._reconnects = 0
            self._apply(station.boot_accepted(interval, now))
            self._start_heartbeats()
            self._pump()
        elif payload["status"] == "Pending":
            self._later(float(interval or 60), self._send_boot)

    # -- the outbox (PROTOCOL-DECISIONS §7): the core's OutboxDelivery decides, this only sends
    # -----------------
    def _pump(self) -> None:
        conn, delivery = self.conn, self._delivery
        if conn is None or delivery is None or self._inflight is not None:
            return
        now = self.sim.loop.now
        # The gate: the connection's boot state, and no BootNotification of ours in flight (§5).
        allowed = conn.boot_state is BootState.ACCEPTED and self._boot_id is None
        message = delivery.next_message(now, allowed=allowed)
        if message is None:
            deadline = delivery.next_deadline()
            if allowed and deadline is not None:
                self._later(max(0.0, deadline - now), self._pump)
            return
        try:
            self._inflight = conn.send(Call(message.action, message.payload), now)
        except LocalProtocolError as exc:
            delivery.refused(exc.code.value, exc.description, now)
            self._delivery_events()
            self._pump()
            return
        self._flush()

    def _interrupted(self) -> None:
        if self._inflight is not None and self._delivery is not None:
            self._delivery.interrupted(self.sim.loop.now)
        self._inflight = None

    def _outbox_done(self, unique_id: str, error: str | None) -> None:
        delivery = self._delivery
        if self._inflight is None or self._inflight != unique_id or delivery is None:
            return
        self._inflight = None
        now = self.sim.loop.now
        if error is None:
            delivery.delivered(now)
        elif error == "timeout":
            delivery.timed_out(now)
        else:
            delivery.answered_error(error, now)
        self._delivery_events()
        self._pump()

    def _delivery_events(self) -> None:
        delivery = self._delivery
        while delivery is not None and (event := delivery.next_event()) is not None:
            if isinstance(event, DeadLettered):
                self.dead.append((event.action, dict(event.payload), event.error.split(":")[0]))

    # -- operator actions ------------------------------------------------------------------------------
    def set_local_switch(self, position: LocalSwitch) -> None:
        if self.station is not None:
            self._apply(self.station.set_local_switch(position, self.sim.loop.now))
            self._arm_station_timer()


class Simulation:
    """A deterministic world: one Central System model, any number of stations, one virtual clock."""

    def __init__(self, *, seed: int, start: float | datetime, profile: LinkProfile | None = None,
                 faults: FaultPlan | None = None, store: StationStore | None = None,
                 heartbeat_interval: int = 600, backoff: RetryBackOff | None = None,
                 record: bool = True) -> None:
        t0 = start.timestamp() if isinstance(start, datetime) else float(start)
        self.seed = seed
        self.rng = random.Random(f"network/{seed}")
        self.loop = VirtualLoop(t0)
        self.profile = profile or LinkProfile()
        self.faults = faults or FaultPlan()
        #: Outbox retry timing (the stations' RetryBackOff keys, os3p_core).
        self.backoff = backoff or RetryBackOff()
        self.store = store or SQLiteStore(":memory:", synchronous="NORMAL")
        self.central = CentralModel(self, heartbeat_interval=heartbeat_interval)
        self.stations: dict[str, SimStation] = {}
        self.files: dict[str, bytes] = {}
        #: Record every delivered message (``trace``) and every durable notification a station appended
        #: (``SimStation.appended``): what tests compare.  Memory grows with the run; turn it off for long,
        #: large simulations (the Central System model's ``received`` list is its store and always kept).
        self.record = record
        self.trace: list[tuple[float, str, str, str]] = []
        self.lost_results = 0
        self.disconnects = 0
        self.partitions = 0

    def add_station(self, identity: str, config: StationConfig | None = None) -> SimStation:
        sim_station = SimStation(self, identity, config or StationConfig(), self.store)
        self.stations[identity] = sim_station
        sim_station.power_on()
        self._schedule_faults(sim_station)
        for who, at in self.faults.crashes:
            if who == identity:
                self.loop.at(at, functools.partial(self._crash, sim_station))
        return sim_station

    def _crash(self, station: SimStation) -> None:
        station.crash()
        self.loop.after(self.faults.restart_delay, station.power_on)

    def _schedule_faults(self, station: SimStation) -> None:
        self._poisson("disconnects_per_day", lambda: self._disconnect(station))
        self._poisson("partitions_per_day", lambda: self._partition(station))

    def _poisson(self, rate_name: str, fn: Callable[[], None]) -> None:
        """A Poisson process whose rate is read from the current :attr:`faults` (set 0 to stop it)."""
        def arm() -> None:
            per_day: float = getattr(self.faults, rate_name)
            if per_day > 0:
                self.loop.after(self.rng.expovariate(per_day / 86400.0), fire)

        def fire() -> None:
            if getattr(self.faults, rate_name) > 0:
                fn()
                arm()

        arm()

    def _disconnect(self, station: SimStation) -> None:
        if station.link is not None:
            self.disconnects += 1
            station.link.close()

    def _partition(self, station: SimStation) -> None:
        if station.link is not None:
            self.partitions += 1
            length = self.rng.expovariate(1.0 / self.faults.mean_partition)
            station.link.partitioned_until = self.loop.now + length

    def run_until(self, end: float | datetime) -> None:
        self.loop.run_until(end.timestamp() if isinstance(end, datetime) else float(end))

    def run_for(self, seconds: float) -> None:
        self.loop.run_until(self.loop.now + seconds)

    def at(self, when: float | datetime, fn: Callable[[], object]) -> None:
        """Schedule a scenario step (a Central System call, a local switch...) at a virtual instant; what
        ``fn`` returns is ignored."""
        self.loop.at(when.timestamp() if isinstance(when, datetime) else float(when), fn)

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.loop.now, UTC)
