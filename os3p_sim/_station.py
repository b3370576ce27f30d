"""The station model: one substation as state plus a step function driven by a clock.  No I/O.

Theory of operation
-------------------
A :class:`Station` owns the sub-models (contactors, meters, MV fault indicators, firmware and upload machines)
and the core's station-side stores (``os3p_core.ProfileStore`` for the streetlight profiles,
``os3p_core.ConfigurationStore`` for the configuration keys).  The driver (virtual-time simulation or real
sockets) talks to it through four doors, each returning one :class:`Output`:

* :meth:`Station.handle_call` — a call from the Central System (the 13 actions of §M7) → the response payload
  (or a CallError), plus whatever the call caused;
* :meth:`Station.step` — the clock reached :meth:`Station.next_deadline`: contactor switches at the switching
  timeline's instants, periodic meter readings, random faults, firmware timers;
* :meth:`Station.download_finished` / :meth:`Station.upload_finished` — outcomes of the driver's HTTP
  transfers;
* :meth:`Station.set_local_switch` — a person turns the override switch in the station.

An :class:`Output` carries a :class:`~os3p_sim.Change` (durable state, outbox entries, meter rows, log lines)
that the driver must write in one transaction *before* it sends anything (PROTOCOL-DECISIONS §7), transient
calls to send now (MeterValues, Heartbeat, triggered messages), and effects (download, upload, reboot).

Which notifications are durable: StreetlightStatusNotification and StreetlightModeStatusNotification (§7 says
so), and also StatusNotification, FirmwareStatusNotification and GetFileStatusNotification: a fault or a
firmware outcome is as much an event the Central System must not miss.  MeterValues are not queued while
offline: the readings are in the meter history, which GetFile retrieves.

Time: ``now`` is POSIX seconds (float) from the driver's clock, real or virtual.  Each due item is processed
at its own instant, in order, so a switch is stamped with the switching timeline's instant even when the
driver wakes up late (§M6.8: "actual timestamp of the switch moment", which "may differ slightly from the
scheduled time" — here it does not).  Randomness comes from one ``random.Random`` per station, seeded from
(seed, identity, boot count): the same seed replays the same run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from os3p_core import (
    RETRY_BACKOFF_KEYS,
    ConfigurationStore,
    ProfileStore,
    RetryBackOff,
    retry_backoff_from,
    retry_backoff_keys,
)

from ._contactors import CONTACTOR_IDS, Contactors, LocalSwitch, OverrideAction, StreetlightEvent
from ._faults import FaultConfig, FaultIndicators
from ._meters import MeterProfile, MeterReading, MeterState, advance, initial_meter_state, iso_utc, sample
from ._store import Change
from ._transfers import Download, Firmware, Reboot, TransferConfig, Upload, Uploads

__all__ = [
    "DURABLE_ACTIONS",
    "Output",
    "Station",
    "StationConfig",
    "boot_fields_for",
    "log_text",
    "meter_history_csv",
]

#: Station-initiated actions that go through the durable outbox (PROTOCOL-DECISIONS §7, and see above).
DURABLE_ACTIONS = frozenset({"StreetlightStatusNotification", "StreetlightModeStatusNotification",
                             "StatusNotification", "FirmwareStatusNotification", "GetFileStatusNotification"})
#: Most due items one :meth:`Station.step` processes (bounds CPU after a long stall; the rest wait a step).
MAX_ITEMS_PER_STEP = 10_000

Effect = Download | Upload | Reboot


@attrs.frozen
class StationConfig:
    """Everything about a simulated station that is not protocol state (documented defaults)."""

    #: Seconds between periodic MeterValues (§M4.1 mentions quarterly values).
    meter_interval: float = 900.0
    #: Where in the interval a station samples: None = a fixed per-station offset derived from the identity,
    #: so that a fleet does not send 10,000 readings in the same second (``Sample.Periodic``, not
    #: ``Sample.Clock``); 0.0 aligns every station to the clock.
    meter_offset: float | None = None
    meter: MeterProfile = attrs.field(factory=MeterProfile)
    faults: FaultConfig = attrs.field(factory=FaultConfig)
    transfers: TransferConfig = attrs.field(factory=TransferConfig)
    #: Initial configuration of a new station (PROTOCOL-DECISIONS §6); Amsterdam, as in the semantics file.
    geolocation: str = "[52.37, 4.90]"
    timezone: str = "Europe/Amsterdam"
    firmware_version: str = "1.0.0"
    vendor: str = "os3p-sim"
    model: str = "SIM-SSS-400"
    #: Boot fields to force (e.g. ``(("iccid", "..."),)``); the rest derive from the identity.
    boot_overrides: tuple[tuple[str, str], ...] = ()
    #: Mean number of times per day a person turns the station's manual override switch (0: never), and the
    #: mean time (s) before it is turned back to automatic.  Both exponential, from the station's generator.
    local_overrides_per_day: float = 0.0
    mean_local_override: float = 1800.0
    #: Initial RetryBackOff keys (os3p_core.RetryBackOff defaults: 2 s + up to 10 s, doubling 6 times).
    retry_backoff: RetryBackOff = attrs.field(factory=RetryBackOff)


def boot_fields_for(identity: str, config: StationConfig, firmware_version: str) -> dict[str, str]:
    """BootNotification fields (§M6.1) derived from the identity: stable across restarts, unique per
    station."""
    digest = hashlib.sha256(identity.encode()).hexdigest()
    digits = str(int(digest, 16)).rjust(40, "0")
    fields = {
        "vendor": config.vendor[:20],
        "model": config.model[:20],
        "stationNumber": digits[:10],
        "serialNumber": ("SIM" + digest[:22]).upper(),
        "firmwareVersion": firmware_version[:50],
        "iccid": "8931" + digits[10:26],  # ITU-T E.118: 89 + country 31 (NL) + issuer + number
        "imsi": "20408" + digits[26:36],  # MCC 204 (NL), MNC 08
    }
    fields.update(dict(config.boot_overrides))
    return fields


@attrs.frozen
class Output:
    """What one door of the model produced.  Apply ``change`` first, then answer, then send ``calls``."""

    response: dict[str, Any] | None = None
    #: (errorCode, description) when the call is answered with a CALLERROR instead.
    error: tuple[str, str] | None = None
    change: Change = attrs.field(factory=Change)
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    effects: tuple[Effect, ...] = ()

    def merge(self, other: Output) -> Output:
        return Output(self.response if other.response is None else other.response,
                      self.error if other.error is None else other.error,
                      self.change.merge(other.change), self.calls + other.calls, self.effects + other.effects)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def parse_time(text: str, tz: Any) -> float:
    """A payload date-time → POSIX seconds; no offset: local time of the station (PROTOCOL-DECISIONS §8)."""
    dt = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


class Station:
    """One simulated substation.  Construct from the stored key/value state (empty for a new station)."""

    def __init__(self, identity: str, config: StationConfig, *, seed: int | str, now: float,
                 stored: dict[str, Any] | None = None) -> None:
        stored = stored or {}
        self.identity = identity
        self.config = config
        self.boot_count = int(stored.get("boot_count", 0)) + 1
        self.rng = random.Random(f"{seed}/{identity}/{self.boot_count}")
        # The RetryBackOff keys (os3p_core): reconnect and outbox retry timing, Get/ChangeConfiguration-able.
        keys = retry_backoff_keys(config.retry_backoff)
        self.configuration = (
            ConfigurationStore.from_snapshot(stored["config"], vendor_keys=keys) if "config" in stored
            else ConfigurationStore(geolocation=config.geolocation, timezone=config.timezone,
                                    vendor_keys=keys))
        self.profiles = ProfileStore.restore(stored["profiles"]) if "profiles" in stored else ProfileStore()
        self.contactors = (Contactors.from_json(stored["contactors"]) if "contactors" in stored
                           else Contactors())
        self.faults = (FaultIndicators.from_json(stored["faults"]) if "faults" in stored
                       else FaultIndicators.new(config.faults, now, self.rng))
        self.meters = (MeterState.from_json(stored["meters"]) if "meters" in stored
                       else initial_meter_state(now, self.rng))
        self.firmware = Firmware.from_json(stored["firmware"]) if "firmware" in stored else Firmware()
        self.firmware_version = str(stored.get("firmware_version", config.firmware_version))
        self.accepted_boot_fields: dict[str, str] | None = stored.get("boot_accepted")
        self.uploads = Uploads()  # an upload in flight at a crash is lost: the Central System asks again
        self._unclean = bool(stored.get("running", False))
        self._new = not stored
        if config.meter_offset is None:
            fraction = int(hashlib.sha256(b"meter/" + identity.encode()).hexdigest()[:8], 16) / 2**32
            self._meter_offset = fraction * config.meter_interval
        else:
            self._meter_offset = config.meter_offset % config.meter_interval
        self._next_meter = self._align(now)
        self._next_switch: dict[int, float] = {}
        self._next_local = self._draw_local(now)
        self.now = now

    # -- queries -----------------------------------------------------------------------------------------
    def boot_fields(self) -> dict[str, str]:
        """The BootNotification payload of this boot (§M6.1)."""
        return boot_fields_for(self.identity, self.config, self.firmware_version)

    def boot_needed(self) -> bool:
        """PROTOCOL-DECISIONS §5: a BootNotification is due unless the fields equal the last Accepted ones."""
        return self.accepted_boot_fields != self.boot_fields()

    @property
    def heartbeat_interval(self) -> int:
        return self.configuration.heartbeat_interval

    @property
    def retry_backoff(self) -> RetryBackOff:
        """The back-off in force, from the RetryBackOff configuration keys (os3p_core.RetryBackOff)."""
        epoch = datetime.fromtimestamp(0, UTC)  # the keys do not depend on the time (only Sunrise/Sunset do)
        pairs = [(k, v) for k in RETRY_BACKOFF_KEYS if (v := self.configuration.value(k, epoch)) is not None]
        return retry_backoff_from(pairs, self.config.retry_backoff)

    def next_deadline(self) -> float:
        """When :meth:`step` must run next (POSIX seconds)."""
        times = [self._next_meter, *self._next_switch.values()]
        if self._next_local is not None:
            times.append(self._next_local)
        faults = self.faults.next_deadline()
        if faults is not None:
            times.append(faults)
        if self.firmware.timer_at is not None:
            times.append(self.firmware.timer_at)
        return min(times)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, now: float) -> Output:
        """Power on: persist the boot, bring the contactors to the schedule, report an unexpected reboot.

        §M3.2: "If the reboot was the result of unexpected behaviour, the Substation must report this to the
        Central System via a StatusNotification" — a station that finds its ``running`` flag still set did
        not shut down cleanly (kill -9, power cut).
        """
        self.now = now
        ts = iso_utc(now)
        kv: list[tuple[str, Any]] = [("boot_count", self.boot_count), ("running", True),
                                     ("firmware_version", self.firmware_version)]
        outbox: list[tuple[str, dict[str, Any]]] = []
        log = [(now, f"boot #{self.boot_count}, firmware {self.firmware_version}")]
        if self._new:
            kv += [("config", self.configuration.snapshot()), ("profiles", self.profiles.snapshot()),
                   ("faults", self.faults.to_json()), ("firmware", self.firmware.to_json())]
        if self._unclean:
            status = "Faulted" if self.faults.faulted else "Ok"
            outbox.append(("StatusNotification", {
                "status": status, "errorCode": "OtherError", "info": "Recovered from an unexpected reboot",
                "timestamp": ts, "vendorId": "os3p-sim", "vendorErrorCode": "UnexpectedReboot"}))
            log.append((now, "the previous run ended without a clean shutdown"))
        out = Output(change=Change(kv=tuple(kv), outbox=tuple(outbox), log=tuple(log)))
        self._refresh_timeline(now)
        return out.merge(self._settle(now))

    def shutdown(self, now: float) -> Output:
        """A clean stop (Reset, end of run): the next start is not an unexpected reboot."""
        self.meters = advance(self.meters, self.config.meter, now, self.contactors.lights,
                              self.configuration.timezone)
        return Output(change=Change(kv=(("running", False), ("meters", self.meters.to_json())),
                                    log=((now, "clean shutdown"),)))

    def boot_accepted(self, interval: int, now: float) -> Output:
        """BootNotification Accepted: remember the fields (§5) and take the heartbeat interval (§6)."""
        self.accepted_boot_fields = self.boot_fields()
        kv: list[tuple[str, Any]] = [("boot_accepted", self.accepted_boot_fields)]
        if self.configuration.set_heartbeat_interval(interval):
            kv.append(("config", self.configuration.snapshot()))
        return Output(change=Change(kv=tuple(kv), log=((now, "BootNotification accepted"),)))

    def acceptance_forgotten(self, now: float) -> Output:
        """A SecurityError said the Central System does not know this station as accepted (PROTOCOL-DECISIONS
        §5): the remembered acceptance is gone, durably (the next connection boots whatever happens now)."""
        self.accepted_boot_fields = None
        return Output(change=Change(kv=(("boot_accepted", None),),
                                    log=((now, "SecurityError: acceptance forgotten, booting again"),)))

    # -- the clock ---------------------------------------------------------------------------------------
    def step(self, now: float) -> Output:
        """Process everything due up to ``now``, each item at its own instant, in time order."""
        out = Output()
        for _ in range(MAX_ITEMS_PER_STEP):
            due = self.next_deadline()
            if due > now:
                break
            self.now = due
            if self.firmware.timer_at is not None and self.firmware.timer_at <= due:
                out = out.merge(self._firmware_timer(due))
            elif (fault_at := self.faults.next_deadline()) is not None and fault_at <= due:
                out = out.merge(self._fault_step(due))
            elif self._next_local is not None and self._next_local <= due:
                out = out.merge(self._local_step(due))
            elif any(t <= due for t in self._next_switch.values()):
                self._refresh_timeline(due)
                out = out.merge(self._settle(due))
            else:
                out = out.merge(self._meter_sample(due, "Sample.Periodic", periodic=True))
        self.now = max(self.now, now)
        return out

    def _draw_local(self, now: float) -> float | None:
        rate = self.config.local_overrides_per_day
        if rate <= 0:
            return None
        if self.contactors.local is not LocalSwitch.AUTO:
            return now + self.rng.expovariate(1.0 / self.config.mean_local_override)
        return now + self.rng.expovariate(rate / 86400.0)

    def _local_step(self, t: float) -> Output:
        """The simulated person at the override switch: forces the lights on or off, later back to auto."""
        if self.contactors.local is LocalSwitch.AUTO:
            position = LocalSwitch.ON if self.rng.random() < 0.5 else LocalSwitch.OFF
        else:
            position = LocalSwitch.AUTO
        out = self.set_local_switch(position, t)
        self._next_local = self._draw_local(t)
        return out

    def _align(self, t: float) -> float:
        """The next sampling instant after ``t``: offset + k × interval."""
        interval = self.config.meter_interval
        offset = self._meter_offset
        return (math.floor((t - offset) / interval) + 1) * interval + offset

    def _refresh_timeline(self, t: float) -> None:
        at = _utc(t)
        site = self.configuration.site
        self._sched_on: dict[int, bool] = {}
        for cid in CONTACTOR_IDS:
            state = self.profiles.switching_state(cid, at, site)
            self._sched_on[cid] = state.on
            nxt = state.next_switch if state.next_switch is not None else state.checked_until
            self._next_switch[cid] = nxt.timestamp()

    def _schedule(self) -> Callable[[int], bool]:
        return self._sched_on.__getitem__

    def _apply_contactors(self, new: Contactors, events: list[StreetlightEvent], t: float) -> Output:
        """The one funnel for contactor changes: meters integrate up to the switch, then state is stored."""
        if new == self.contactors and not events:
            return Output()
        if new.lights != self.contactors.lights:
            self.meters = advance(self.meters, self.config.meter, t, self.contactors.lights,
                                  self.configuration.timezone)
        self.contactors = new
        outbox = tuple((e.action, e.payload) for e in events)
        log = tuple((t, f"{e.action} {_describe(e.payload)}") for e in events)
        return Output(change=Change(kv=(("contactors", new.to_json()), ("meters", self.meters.to_json())),
                                    outbox=outbox, log=log))

    def _settle(self, t: float) -> Output:
        new, events = self.contactors.settle(self._schedule(), iso_utc(t))
        return self._apply_contactors(new, events, t)

    def _meter_sample(self, t: float, context: str, *, periodic: bool) -> Output:
        self.meters, reading = sample(self.meters, self.config.meter, t, self.contactors.lights,
                                      self.configuration.timezone, self.rng)
        if periodic:
            self._next_meter = self._align(t)
        return self._reading_output(reading, context)

    def _reading_output(self, reading: MeterReading, context: str) -> Output:
        payload = reading.to_payload(context)
        return Output(change=Change(kv=(("meters", self.meters.to_json()),),
                                    meter=((reading.timestamp, payload["meterValue"][0]["sampledValue"]),)),
                      calls=(("MeterValues", payload),))

    def _fault_step(self, t: float) -> Output:
        self.faults, events = self.faults.step(self.config.faults, t, iso_utc(t), self.rng)
        return self._fault_output(events, t)

    def _fault_output(self, events: list[dict[str, Any]], t: float) -> Output:
        return Output(change=Change(kv=(("faults", self.faults.to_json()),),
                                    outbox=tuple(("StatusNotification", e) for e in events),
                                    log=tuple((t, f"StatusNotification {_describe(e)}") for e in events)))

    def _firmware_timer(self, t: float) -> Output:
        self.firmware, notes, effects = self.firmware.on_timer(t, self.config.transfers)
        kv: list[tuple[str, Any]] = [("firmware", self.firmware.to_json())]
        for effect in effects:
            if isinstance(effect, Reboot) and effect.firmware_version is not None:
                # Installed: the new version is what the next boot reports (§M3.2: a new BootNotification).
                self.firmware_version = effect.firmware_version
                kv.append(("firmware_version", effect.firmware_version))
        return self._firmware_output(kv, notes, tuple(effects), t)

    def _firmware_output(self, kv: list[tuple[str, Any]], notes: list[dict[str, Any]],
                         effects: tuple[Effect, ...], t: float) -> Output:
        outbox = tuple(("FirmwareStatusNotification", n) for n in notes)
        log = tuple((t, f"FirmwareStatusNotification {_describe(n)}") for n in notes)
        return Output(change=Change(kv=tuple(kv), outbox=outbox, log=log), effects=effects)

    # -- transfers ---------------------------------------------------------------------------------------
    def download_finished(self, token: int, data: bytes | None, now: float) -> Output:
        """The driver's download of ``token`` ended (``data`` None: it failed)."""
        self.firmware, notes = self.firmware.download_finished(token, data, now, self.config.transfers)
        return self._firmware_output([("firmware", self.firmware.to_json())], notes, (), now)

    def upload_finished(self, token: int, ok: bool, now: float) -> Output:
        self.uploads, notes = self.uploads.upload_finished(token, ok)
        outbox = tuple(("GetFileStatusNotification", n) for n in notes)
        log = tuple((now, f"GetFileStatusNotification {_describe(n)}") for n in notes)
        return Output(change=Change(outbox=outbox, log=log))

    # -- the hardware switch -----------------------------------------------------------------------------
    def set_local_switch(self, position: LocalSwitch, now: float) -> Output:
        self._refresh_timeline(now)
        new, events = self.contactors.set_local_switch(position, self._schedule(), iso_utc(now))
        return self._apply_contactors(new, events, now)

    # -- calls from the Central System -------------------------------------------------------------------
    def handle_call(self, action: str, payload: dict[str, Any], now: float, *, accepted: bool = True
                    ) -> Output:
        """Answer one call of §M7 (``payload`` already schema-valid).  Unknown action → NotImplemented.

        ``accepted``: the connection's boot state is Accepted (now or remembered, PROTOCOL-DECISIONS §5).
        The driver knows it, the model does not; it matters to TriggerMessage only — while Pending the
        station may send one message per trigger, so a trigger yields exactly one (see
        :meth:`_on_TriggerMessage`).
        """
        if action == "TriggerMessage":
            self.now = now
            return self._on_TriggerMessage(payload, now, accepted=accepted)
        handler = getattr(self, "_on_" + action, None)
        if handler is None:
            return Output(error=("NotImplemented", f"{action} is not implemented by this station"))
        self.now = now
        result: Output = handler(payload, now)
        return result

    def _on_ChangeConfiguration(self, payload: dict[str, Any], now: float) -> Output:
        result = self.configuration.change_configuration(payload)
        out = Output(response=result.to_payload())
        if result.changed:
            out = out.merge(Output(change=Change(kv=(("config", self.configuration.snapshot()),),
                                                 log=((now, f"configuration {result.key} changed"),))))
            # TimeZone and Geolocation move the schedule's instants: the lights may have to switch now.
            self._refresh_timeline(now)
            out = out.merge(self._settle(now))
        return out

    def _on_GetConfiguration(self, payload: dict[str, Any], now: float) -> Output:
        return Output(response=self.configuration.get_configuration(payload, _utc(now)))

    def _profiles_changed(self, response: dict[str, Any], changed: bool, now: float) -> Output:
        out = Output(response=response)
        if changed:
            out = out.merge(Output(change=Change(kv=(("profiles", self.profiles.snapshot()),),
                                                 log=((now, "streetlight profiles changed"),))))
            self._refresh_timeline(now)
            out = out.merge(self._settle(now))
        return out

    def _on_SetStreetlightProfile(self, payload: dict[str, Any], now: float) -> Output:
        result = self.profiles.set_streetlight_profile(payload,
                                                       max_stack_level=self.configuration.max_stack_level)
        return self._profiles_changed(result.to_payload(), result.changed, now)

    def _on_ClearSingleStreetlightProfile(self, payload: dict[str, Any], now: float) -> Output:
        result = self.profiles.clear_streetlight_profile(payload)
        return self._profiles_changed(result.to_payload(), result.changed, now)

    def _on_GetEffectiveStreetlightDaySchedule(self, payload: dict[str, Any], now: float
                                               ) -> Output:
        try:
            return Output(response=self.profiles.get_effective_day_schedule(payload, self.configuration.site))
        except ValueError as exc:
            return Output(error=("PropertyConstraintViolation", str(exc)[:255]))

    def _override(self, status_and_state: tuple[Any, Contactors, list[StreetlightEvent]], now: float
                  ) -> Output:
        status, new, events = status_and_state
        return Output(response={"status": status.value}).merge(self._apply_contactors(new, events, now))

    def _on_OverrideStreetlight(self, payload: dict[str, Any], now: float) -> Output:
        self._refresh_timeline(now)
        return self._override(self.contactors.override(payload.get("contactorId"),
                                                       OverrideAction(payload["action"]), self._schedule(),
                                                       iso_utc(now)), now)

    def _on_ResumeStreetlight(self, payload: dict[str, Any], now: float) -> Output:
        self._refresh_timeline(now)
        return self._override(self.contactors.resume(payload.get("contactorId"), self._schedule(),
                                                     iso_utc(now)), now)

    def _on_TestMVFaultIndicator(self, payload: dict[str, Any], now: float) -> Output:
        status, self.faults, events = self.faults.test(self.config.faults, iso_utc(now), self.rng)
        return Output(response={"status": status.value}).merge(self._fault_output(events, now))

    def _on_ResetMVFaultIndicator(self, payload: dict[str, Any], now: float) -> Output:
        status, self.faults, events = self.faults.reset(iso_utc(now), now)
        return Output(response={"status": status.value}).merge(self._fault_output(events, now))

    def _on_Reset(self, payload: dict[str, Any], now: float) -> Output:
        # §M7.8 "Trigger a hardware reset": answer first, then the driver reboots the station.
        return Output(response={"status": "Accepted"}, change=Change(log=((now, "Reset requested"),)),
                      effects=(Reboot(None),))

    def _on_UpdateFirmware(self, payload: dict[str, Any], now: float) -> Output:
        retrieve_at = parse_time(str(payload["retrieveDate"]), self.configuration.timezone)
        self.firmware = self.firmware.update(payload, retrieve_at, now, self.config.transfers)
        return Output(response={}, change=Change(
            kv=(("firmware", self.firmware.to_json()),),
            log=((now, f"UpdateFirmware from {payload['location']} at {payload['retrieveDate']}"),)))

    def _on_GetFile(self, payload: dict[str, Any], now: float) -> Output:
        compact = _utc(now).strftime("%Y%m%d%H%M%S")
        response, self.uploads, notes, effects = self.uploads.get_file(self.identity, payload, compact)
        return Output(response=response, effects=tuple(effects),
                      change=Change(outbox=tuple(("GetFileStatusNotification", n) for n in notes),
                                    log=((now, f"GetFile {payload['fileType']}: {response['status']}"),)))

    def _on_TriggerMessage(self, payload: dict[str, Any], now: float, *, accepted: bool = True) -> Output:
        """TriggerMessage (§M4.1, §M7.12): all eight kinds, with fresh information, after the response.

        Accepted: the full picture — StreetlightStatusNotification / StreetlightModeStatusNotification for
        every contactor when ``connectorId`` is absent, and a StatusNotification per alarm.  Not Accepted
        (Pending): PROTOCOL-DECISIONS §5 "may send a message only when a TriggerMessage asked for it (once
        per trigger)", and the core grants one credit per accepted trigger, so exactly one message: the
        status of the contactor ``connectorId`` (else contactor 1); the station-wide mode form without
        ``contactorId`` (§M6.7) when all contactors share a mode (else contactor 1's); the station's status
        as a whole in one StatusNotification.
        """
        kind = payload["requestedMessage"]
        cid = payload.get("connectorId")
        ts = iso_utc(now)
        if cid is not None and kind.startswith("Streetlight") and cid not in CONTACTOR_IDS:
            return Output(response={"status": "Rejected"})
        calls: list[tuple[str, dict[str, Any]]]
        out = Output()
        if kind == "BootNotification":
            calls = [("BootNotification", self.boot_fields())]
        elif kind == "Heartbeat":
            calls = [("Heartbeat", {})]
        elif kind == "MeterValues":
            out = self._meter_sample(now, "Trigger", periodic=False)
            calls = []
        elif kind == "StatusNotification":
            events = (self.faults.status_events(ts) if accepted
                      else [self.faults.station_status_event(ts)])
            calls = [("StatusNotification", e) for e in events]
        elif kind == "FirmwareStatusNotification":
            calls = [("FirmwareStatusNotification", self.firmware.reported_status())]
        elif kind == "GetFileStatusNotification":
            calls = [("GetFileStatusNotification", self.uploads.reported_status())]
        elif kind == "StreetlightModeStatusNotification":
            modes = (self.contactors.mode_events(cid, ts) if accepted
                     else [self.contactors.mode_event(cid, ts)])
            calls = [(e.action, e.payload) for e in modes]
        else:
            # StreetlightStatusNotification has no station-wide form (contactorId is required, §M6.8).
            target = cid if accepted or cid is not None else CONTACTOR_IDS[0]
            calls = [(e.action, e.payload) for e in self.contactors.status_events(target, ts)]
        return Output(response={"status": "Accepted"}).merge(out).merge(Output(calls=tuple(calls)))


def _describe(payload: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in payload.items() if k != "timestamp")


def meter_history_csv(rows: list[tuple[float, list[dict[str, Any]]]]) -> bytes:
    """MeterValueHistory file (GetFile, §M7.5): one CSV row per sampled value, oldest first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["timestamp", "measurand", "location", "unit", "context", "value"])
    for ts, values in rows:
        stamp = iso_utc(ts)
        for v in values:
            writer.writerow([stamp, v.get("measurand", ""), v.get("location", ""), v.get("unit", ""),
                             v.get("context", ""), v.get("value", "")])
    return buf.getvalue().encode()


def log_text(lines: list[tuple[float, str]]) -> bytes:
    """Syslog file (GetFile, §M7.5): one timestamped line per log entry."""
    return "".join(f"{iso_utc(ts)} {line}\n" for ts, line in lines).encode()
