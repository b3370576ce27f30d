"""Medium-voltage fault indicators: plain data and pure transitions.

Theory of operation
-------------------
A substation carries one or two MV fault indicators ("optos", §M7.9 note): an over-current indicator and,
depending on the hardware, a ground-fault indicator.  An indicator *latches*: once in alarm it stays there
until a ResetMVFaultIndicator (§M7.9), whether the alarm came from a real fault or from a
TestMVFaultIndicator (§M7.11).

* TestMVFaultIndicator: ``Rejected`` when no indicator is installed, ``RejectedAlreadyFaulted`` when one is
  already in alarm (fault or test); otherwise every indicator enters a *test* alarm and a StatusNotification
  with ``test: true`` is sent per indicator (``OverCurrentFailure``, ``GroundFailure``).  With a configurable
  probability the test finds a broken opto and reports ``MVFaultIndicatorError`` (also ``test: true``).
* ResetMVFaultIndicator: ``Rejected`` without indicators; otherwise each alarm whose cause is gone is cleared
  and reported with the fixed ``info`` strings of §M6.6 Table 5 (``errorCode`` ``NoError``); an alarm whose
  real cause persists re-enters the fault state and is reported again (§M7.9).
* Real faults (optional, off by default) arrive as a Poisson process with a configurable rate per day and
  last an exponentially distributed time; the draws come from the station's seeded ``random.Random``.

``status`` is ``Faulted`` while any indicator is in alarm, else ``Ok`` (PROTOCOL-DECISIONS §8: the statuses
table lists error codes; ``status`` is Ok/Faulted).
"""

from __future__ import annotations

import enum
import random
from typing import Any

import attrs

__all__ = ["Alarm", "FaultConfig", "FaultIndicators", "Indicator", "IndicatorKind", "MVStatus"]


class IndicatorKind(enum.StrEnum):
    """An installed indicator, valued by the StatusNotification ``errorCode`` it raises."""

    OVER_CURRENT = "OverCurrentFailure"
    GROUND = "GroundFailure"


#: §M6.6 Table 5: the ``info`` strings that mark an error as resolved.
RESOLVED_INFO = {
    IndicatorKind.OVER_CURRENT: "Over current error (MV) resolved",
    IndicatorKind.GROUND: "Ground failure resolved",
}
INDICATOR_FAULT_RESOLVED = "Indicator fault (MV) resolved"


class Alarm(enum.StrEnum):
    """Why an indicator is in alarm: not at all, a test (TestMVFaultIndicator), or a real fault."""

    NONE = "None"
    TEST = "Test"
    REAL = "Real"


class MVStatus(enum.StrEnum):
    """TestMVFaultIndicator / ResetMVFaultIndicator response status (§M7.11 Table 19, §M7.9 Table 14)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REJECTED_ALREADY_FAULTED = "RejectedAlreadyFaulted"


@attrs.frozen
class FaultConfig:
    """Which indicators exist and how often real faults happen (all documented defaults)."""

    installed: tuple[IndicatorKind, ...] = (IndicatorKind.OVER_CURRENT, IndicatorKind.GROUND)
    #: Mean number of real MV faults per day; 0 disables them (the default: a quiet grid).
    real_faults_per_day: float = 0.0
    #: Mean duration of a real fault's cause (s).
    mean_fault_duration: float = 1800.0
    #: Probability that a test finds a broken opto (MVFaultIndicatorError).
    broken_opto_probability: float = 0.0


@attrs.frozen
class Indicator:
    """One installed MV fault indicator and its latched alarm."""

    kind: IndicatorKind
    alarm: Alarm = Alarm.NONE
    #: Real faults only: when the cause disappears (the alarm stays latched until a reset).
    cause_until: float | None = None


@attrs.frozen
class FaultIndicators:
    """All indicators of one station, immutable."""

    indicators: tuple[Indicator, ...]
    #: A test found a broken opto; cleared (reported resolved) by the next reset.
    opto_error: bool = False
    next_fault_at: float | None = None

    @classmethod
    def new(cls, config: FaultConfig, now: float, rng: random.Random) -> FaultIndicators:
        return cls(tuple(Indicator(k) for k in config.installed), next_fault_at=_next_fault(config, now, rng))

    @property
    def faulted(self) -> bool:
        return self.opto_error or any(i.alarm is not Alarm.NONE for i in self.indicators)

    def _status(self) -> str:
        return "Faulted" if self.faulted else "Ok"

    def next_deadline(self) -> float | None:
        times = [t for t in [self.next_fault_at, *(i.cause_until for i in self.indicators)] if t is not None]
        return min(times) if times else None

    # -- transitions -------------------------------------------------------------------------------------
    def test(self, config: FaultConfig, timestamp: str, rng: random.Random
             ) -> tuple[MVStatus, FaultIndicators, list[dict[str, Any]]]:
        """TestMVFaultIndicator (§M7.11)."""
        if not self.indicators:
            return MVStatus.REJECTED, self, []
        if self.faulted:
            return MVStatus.REJECTED_ALREADY_FAULTED, self, []
        tested = tuple(attrs.evolve(i, alarm=Alarm.TEST) for i in self.indicators)
        state = attrs.evolve(self, indicators=tested)
        broken = config.broken_opto_probability > 0 and rng.random() < config.broken_opto_probability
        if broken:
            state = attrs.evolve(state, opto_error=True)
        events = [_notification("Faulted", i.kind.value, timestamp, test=True) for i in state.indicators]
        if broken:
            events.append(_notification("Faulted", "MVFaultIndicatorError", timestamp, test=True))
        return MVStatus.ACCEPTED, state, events

    def reset(self, timestamp: str, now: float) -> tuple[MVStatus, FaultIndicators, list[dict[str, Any]]]:
        """ResetMVFaultIndicator (§M7.9)."""
        if not self.indicators:
            return MVStatus.REJECTED, self, []
        new: list[Indicator] = []
        resolved: list[tuple[Indicator, bool]] = []  # (indicator, was a test)
        still: list[Indicator] = []
        for ind in self.indicators:
            if ind.alarm is Alarm.REAL and ind.cause_until is not None and ind.cause_until > now:
                new.append(ind)  # the cause persists: re-enters the fault state at once
                still.append(ind)
            else:
                if ind.alarm is not Alarm.NONE:
                    resolved.append((ind, ind.alarm is Alarm.TEST))
                new.append(Indicator(ind.kind))
        had_opto_error = self.opto_error
        state = attrs.evolve(self, indicators=tuple(new), opto_error=False)
        status = state._status()
        events: list[dict[str, Any]] = []
        for ind, was_test in resolved:
            events.append(_notification(status, "NoError", timestamp, info=RESOLVED_INFO[ind.kind],
                                        test=True if was_test else None))
        if had_opto_error:
            events.append(_notification(status, "NoError", timestamp, info=INDICATOR_FAULT_RESOLVED,
                                        test=True))
        events.extend(_notification("Faulted", ind.kind.value, timestamp) for ind in still)
        return MVStatus.ACCEPTED, state, events

    def step(self, config: FaultConfig, now: float, timestamp: str, rng: random.Random
             ) -> tuple[FaultIndicators, list[dict[str, Any]]]:
        """Advance the random real-fault process to ``now``."""
        state = self
        events: list[dict[str, Any]] = []
        # Causes that ended: the indicator stays latched (no message); only a reset reports it resolved.
        inds = tuple(attrs.evolve(i, cause_until=None) if i.cause_until is not None and i.cause_until <= now
                     else i for i in state.indicators)
        state = attrs.evolve(state, indicators=inds)
        if state.next_fault_at is not None and state.next_fault_at <= now and state.indicators:
            kind_index = rng.randrange(len(state.indicators))
            duration = rng.expovariate(1.0 / config.mean_fault_duration)
            target = state.indicators[kind_index]
            hit = attrs.evolve(target, alarm=Alarm.REAL, cause_until=now + duration)
            inds = tuple(hit if j == kind_index else i for j, i in enumerate(state.indicators))
            state = attrs.evolve(state, indicators=inds, next_fault_at=_next_fault(config, now, rng))
            events.append(_notification("Faulted", target.kind.value, timestamp))
        return state, events

    def status_events(self, timestamp: str) -> list[dict[str, Any]]:
        """The current state for TriggerMessage(StatusNotification): one per alarm, or a single Ok."""
        events = [_notification("Faulted", i.kind.value, timestamp,
                                test=True if i.alarm is Alarm.TEST else None)
                  for i in self.indicators if i.alarm is not Alarm.NONE]
        if self.opto_error:
            events.append(_notification("Faulted", "MVFaultIndicatorError", timestamp, test=True))
        return events or [_notification("Ok", "NoError", timestamp)]

    def station_status_event(self, timestamp: str) -> dict[str, Any]:
        """The station's status as a whole in ONE StatusNotification (TriggerMessage while not Accepted).

        PROTOCOL-DECISIONS §5 allows a Pending station one message per TriggerMessage, so the per-alarm
        form of :meth:`status_events` cannot be used.  §M6.6: ``status`` is "the status of the transformer
        station as a whole"; the message describes one alarm (a real one before a test one, so ``test`` is
        set only when every alarm is a test), and ``info`` names the other alarms, if any.
        """
        alarms = [(i.kind.value, i.alarm is Alarm.TEST) for i in self.indicators if i.alarm is not Alarm.NONE]
        if self.opto_error:
            alarms.append(("MVFaultIndicatorError", True))
        if not alarms:
            return _notification("Ok", "NoError", timestamp)
        alarms.sort(key=lambda a: a[1])  # stable: real alarms first, then tests, each in indicator order
        code, is_test = alarms[0]
        others = [c for c, _ in alarms[1:]]
        info = ("also in alarm: " + ", ".join(others))[:128] if others else None
        return _notification("Faulted", code, timestamp, info=info, test=True if is_test else None)

    # -- persistence -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"opto_error": self.opto_error, "next_fault_at": self.next_fault_at,
                "indicators": [{"kind": i.kind.value, "alarm": i.alarm.value, "cause_until": i.cause_until}
                               for i in self.indicators]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultIndicators:
        return cls(tuple(Indicator(IndicatorKind(i["kind"]), Alarm(i["alarm"]), i["cause_until"])
                         for i in data["indicators"]),
                   opto_error=bool(data["opto_error"]), next_fault_at=data["next_fault_at"])


def _next_fault(config: FaultConfig, now: float, rng: random.Random) -> float | None:
    if config.real_faults_per_day <= 0 or not config.installed:
        return None
    return now + rng.expovariate(config.real_faults_per_day / 86400.0)


def _notification(status: str, error_code: str, timestamp: str, *, info: str | None = None,
                  test: bool | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"status": status, "errorCode": error_code, "timestamp": timestamp}
    if info is not None:
        payload["info"] = info
    if test is not None:
        payload["test"] = test
    return payload
