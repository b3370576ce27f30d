"""Contactors 1–4 and their streetlight modes: plain data and pure transitions.

Theory of operation
-------------------
Each contactor (§M8.1: 1 evening/morning, 2 night, 3 tariff, 4 unspecified) is in exactly one mode (§M6.7):

``Schedule``        the station switches it by the effective schedule (the core's switching timeline);
``RemoteOverride``  an OverrideStreetlight (§M7.6) forced it ``On`` / ``Off`` or ``Suspend``-ed switching (the
                    output keeps its current state) until a ResumeStreetlight (§M7.7);
``LocalOverride``   someone turned the station's manual override switch.  The switch is station wide (§M6.7
                    note), so it takes every contactor; while it is active OverrideStreetlight and
                    ResumeStreetlight answer ``RejectedLocalOverride`` (§M7.6 Table 12, §M7.7 Table 13).

The mode is not stored: it is derived from two independent facts — the remote override (or none) and the
position of the hardware switch — so that releasing the local switch returns each contactor to the mode it had
before (a remote override survives a local override).  :data:`MODE_RULES` is that derivation as a table.

Every transition returns the new state plus the notifications it causes.  Mode notifications follow the spec
literally: an accepted OverrideStreetlight sends ``RemoteOverride`` (§M7.6 "When the override mode is
successfully enabled"), an accepted ResumeStreetlight sends the current mode (§M7.7), and the local switch
sends one notification without ``contactorId`` when it takes all contactors (§M6.7 note) and one per
contactor when it releases them (their modes may differ).  A change of output sends
StreetlightStatusNotification (§M6.8: "send on ON→OFF, OFF→ON transitions"); a switch made by the hardware
override switch is flagged ``unexpected`` because the RTU did not control it (§M6.8 Table 8).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

import attrs

__all__ = [
    "CONTACTOR_IDS",
    "MODE_RULES",
    "ContactorState",
    "Contactors",
    "LocalSwitch",
    "Mode",
    "OverrideAction",
    "OverrideStatus",
    "StreetlightEvent",
]

CONTACTOR_IDS = (1, 2, 3, 4)


class Mode(enum.StrEnum):
    """StreetlightModeStatusNotification ``mode`` (§M6.7)."""

    SCHEDULE = "Schedule"
    LOCAL_OVERRIDE = "LocalOverride"
    REMOTE_OVERRIDE = "RemoteOverride"


class OverrideAction(enum.StrEnum):
    """OverrideStreetlight ``action`` (§M7.6 Table 11)."""

    ON = "On"
    OFF = "Off"
    SUSPEND = "Suspend"


class OverrideStatus(enum.StrEnum):
    """OverrideStreetlight / ResumeStreetlight response ``status`` (§M7.6 Table 12, §M7.7 Table 13)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REJECTED_LOCAL_OVERRIDE = "RejectedLocalOverride"


class LocalSwitch(enum.StrEnum):
    """Position of the station-wide manual override switch."""

    AUTO = "Auto"
    ON = "On"
    OFF = "Off"


#: (local switch is AUTO, remote override present) → mode.  The local switch wins over everything.
MODE_RULES: dict[tuple[bool, bool], Mode] = {
    (False, False): Mode.LOCAL_OVERRIDE,
    (False, True): Mode.LOCAL_OVERRIDE,
    (True, True): Mode.REMOTE_OVERRIDE,
    (True, False): Mode.SCHEDULE,
}


@attrs.frozen
class StreetlightEvent:
    """A notification the contactors produce: the OS³P ``action`` and its request ``payload``."""

    action: str
    payload: dict[str, Any]


@attrs.frozen
class ContactorState:
    """One contactor: its output and its remote override (None = following the schedule)."""

    contactor_id: int
    on: bool = False
    remote: OverrideAction | None = None


@attrs.frozen
class Contactors:
    """All four contactors and the hardware switch. Immutable: every method returns a new value."""

    contactors: tuple[ContactorState, ...] = tuple(ContactorState(i) for i in CONTACTOR_IDS)
    local: LocalSwitch = LocalSwitch.AUTO

    # -- queries -------------------------------------------------------------------------------------------
    def mode(self, contactor_id: int) -> Mode:
        return MODE_RULES[(self.local is LocalSwitch.AUTO, self[contactor_id].remote is not None)]

    def __getitem__(self, contactor_id: int) -> ContactorState:
        if contactor_id not in CONTACTOR_IDS:
            raise KeyError(contactor_id)
        return self.contactors[contactor_id - 1]

    @property
    def lights(self) -> tuple[bool, ...]:
        """Output of contactors 1–4."""
        return tuple(c.on for c in self.contactors)

    def desired(self, contactor_id: int, scheduled_on: bool) -> bool:
        """The output the contactor should have, given what the schedule says right now."""
        c = self[contactor_id]
        if self.local is not LocalSwitch.AUTO:
            return self.local is LocalSwitch.ON
        if c.remote is OverrideAction.ON:
            return True
        if c.remote is OverrideAction.OFF:
            return False
        if c.remote is OverrideAction.SUSPEND:
            return c.on
        return scheduled_on

    def follows_schedule(self, contactor_id: int) -> bool:
        return self.mode(contactor_id) is Mode.SCHEDULE

    # -- transitions ---------------------------------------------------------------------------------------
    def _replace(self, contactor_id: int, **changes: Any) -> Contactors:
        cs = list(self.contactors)
        cs[contactor_id - 1] = attrs.evolve(cs[contactor_id - 1], **changes)
        return attrs.evolve(self, contactors=tuple(cs))

    def settle(self, schedule: Callable[[int], bool], timestamp: str, *, unexpected: bool = False
               ) -> tuple[Contactors, list[StreetlightEvent]]:
        """Switch every contactor whose output differs from what it should be; one status event per switch."""
        state = self
        events: list[StreetlightEvent] = []
        for cid in CONTACTOR_IDS:
            want = state.desired(cid, schedule(cid))
            if want != state[cid].on:
                state = state._replace(cid, on=want)
                payload: dict[str, Any] = {"contactorId": cid, "status": "On" if want else "Off",
                                           "timestamp": timestamp}
                if unexpected:
                    payload["unexpected"] = True
                events.append(StreetlightEvent("StreetlightStatusNotification", payload))
        return state, events

    def override(self, contactor_id: int | None, action: OverrideAction, schedule: Callable[[int], bool],
                 timestamp: str) -> tuple[OverrideStatus, Contactors, list[StreetlightEvent]]:
        """OverrideStreetlight (§M7.6); ``contactor_id`` None means all contactors."""
        if self.local is not LocalSwitch.AUTO:
            return OverrideStatus.REJECTED_LOCAL_OVERRIDE, self, []
        ids = CONTACTOR_IDS if contactor_id is None else (contactor_id,)
        state = self
        for cid in ids:
            state = state._replace(cid, remote=action)
        events = [_mode_event(contactor_id, Mode.REMOTE_OVERRIDE, timestamp)]
        state, switched = state.settle(schedule, timestamp)
        return OverrideStatus.ACCEPTED, state, events + switched

    def resume(self, contactor_id: int | None, schedule: Callable[[int], bool], timestamp: str
               ) -> tuple[OverrideStatus, Contactors, list[StreetlightEvent]]:
        """ResumeStreetlight (§M7.7): back to the schedule, then report the current mode."""
        if self.local is not LocalSwitch.AUTO:
            return OverrideStatus.REJECTED_LOCAL_OVERRIDE, self, []
        ids = CONTACTOR_IDS if contactor_id is None else (contactor_id,)
        state = self
        for cid in ids:
            state = state._replace(cid, remote=None)
        events = [_mode_event(contactor_id, state.mode(ids[0]), timestamp)]
        state, switched = state.settle(schedule, timestamp)
        return OverrideStatus.ACCEPTED, state, events + switched

    def set_local_switch(self, position: LocalSwitch, schedule: Callable[[int], bool], timestamp: str
                         ) -> tuple[Contactors, list[StreetlightEvent]]:
        """Turn the hardware override switch (a simulated person in the station)."""
        if position is self.local:
            return self, []
        was_auto = self.local is LocalSwitch.AUTO
        state = attrs.evolve(self, local=position)
        events: list[StreetlightEvent] = []
        if was_auto:
            events.append(_mode_event(None, Mode.LOCAL_OVERRIDE, timestamp))
        elif position is LocalSwitch.AUTO:
            events.extend(_mode_event(cid, state.mode(cid), timestamp) for cid in CONTACTOR_IDS)
        # Switches forced by the hardware switch were not made by the RTU (§M6.8 "unexpected").
        state, switched = state.settle(schedule, timestamp, unexpected=position is not LocalSwitch.AUTO)
        return state, events + switched

    def mode_events(self, contactor_id: int | None, timestamp: str) -> list[StreetlightEvent]:
        """Current mode(s) for TriggerMessage(StreetlightModeStatusNotification)."""
        ids: Sequence[int] = CONTACTOR_IDS if contactor_id is None else (contactor_id,)
        return [_mode_event(cid, self.mode(cid), timestamp) for cid in ids]

    def mode_event(self, contactor_id: int | None, timestamp: str) -> StreetlightEvent:
        """ONE mode notification (TriggerMessage while not Accepted, PROTOCOL-DECISIONS §5: one message per
        trigger).  Without ``contactor_id``: the station-wide form without ``contactorId`` (§M6.7: "if left
        out the mode is valid for all contactors") when all four share a mode, else contactor 1's."""
        if contactor_id is None:
            modes = {self.mode(cid) for cid in CONTACTOR_IDS}
            if len(modes) == 1:
                return _mode_event(None, modes.pop(), timestamp)
            contactor_id = CONTACTOR_IDS[0]
        return _mode_event(contactor_id, self.mode(contactor_id), timestamp)

    def status_events(self, contactor_id: int | None, timestamp: str) -> list[StreetlightEvent]:
        """Current output(s) for TriggerMessage(StreetlightStatusNotification)."""
        ids: Sequence[int] = CONTACTOR_IDS if contactor_id is None else (contactor_id,)
        return [StreetlightEvent("StreetlightStatusNotification",
                                 {"contactorId": cid, "status": "On" if self[cid].on else "Off",
                                  "timestamp": timestamp}) for cid in ids]

    # -- persistence ---------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"local": self.local.value,
                "contactors": [{"on": c.on, "remote": c.remote.value if c.remote else None}
                               for c in self.contactors]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contactors:
        cs = tuple(ContactorState(i + 1, bool(c["on"]), OverrideAction(c["remote"]) if c["remote"] else None)
                   for i, c in enumerate(data["contactors"]))
        return cls(contactors=cs, local=LocalSwitch(data["local"]))


def _mode_event(contactor_id: int | None, mode: Mode, timestamp: str) -> StreetlightEvent:
    payload: dict[str, Any] = {"mode": mode.value, "timestamp": timestamp}
    if contactor_id is not None:
        payload["contactorId"] = contactor_id
    return StreetlightEvent("StreetlightModeStatusNotification", payload)
