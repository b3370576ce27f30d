"""The 21 OS³P actions and who sends them.

Spec annex §6 lists the Client-initiated messages (sent by the Substation) and §7 the
Server-initiated messages (sent by the Central System).  Direction matters on the wire:
PROTOCOL-DECISIONS §3 answers a known action arriving in the wrong direction with
``NotSupported`` and an unknown action with ``NotImplemented``.
"""

from __future__ import annotations

import enum

__all__ = ["ACTIONS_SENT_BY", "Action", "Role", "sender_of"]


class Role(enum.Enum):
    """The two ends of an OS³P connection (spec §J3: the Central System is the WebSocket server)."""

    CENTRAL_SYSTEM = "CentralSystem"
    SUBSTATION = "Substation"

    @property
    def peer(self) -> Role:
        """The role at the other end of the connection."""
        return Role.SUBSTATION if self is Role.CENTRAL_SYSTEM else Role.CENTRAL_SYSTEM


class Action(enum.StrEnum):
    """Every OS³P 0.4 action name, spelled exactly as on the wire (case-sensitive, spec §J4.2)."""

    # Client-initiated, annex §6 (Substation -> Central System)
    BOOT_NOTIFICATION = "BootNotification"
    GET_FILE_STATUS_NOTIFICATION = "GetFileStatusNotification"
    FIRMWARE_STATUS_NOTIFICATION = "FirmwareStatusNotification"
    HEARTBEAT = "Heartbeat"
    METER_VALUES = "MeterValues"
    STATUS_NOTIFICATION = "StatusNotification"
    STREETLIGHT_MODE_STATUS_NOTIFICATION = "StreetlightModeStatusNotification"
    STREETLIGHT_STATUS_NOTIFICATION = "StreetlightStatusNotification"
    # Server-initiated, annex §7 (Central System -> Substation)
    CHANGE_CONFIGURATION = "ChangeConfiguration"
    CLEAR_SINGLE_STREETLIGHT_PROFILE = "ClearSingleStreetlightProfile"
    GET_CONFIGURATION = "GetConfiguration"
    GET_EFFECTIVE_STREETLIGHT_DAY_SCHEDULE = "GetEffectiveStreetlightDaySchedule"
    GET_FILE = "GetFile"
    OVERRIDE_STREETLIGHT = "OverrideStreetlight"
    RESUME_STREETLIGHT = "ResumeStreetlight"
    RESET = "Reset"
    RESET_MV_FAULT_INDICATOR = "ResetMVFaultIndicator"
    SET_STREETLIGHT_PROFILE = "SetStreetlightProfile"
    TEST_MV_FAULT_INDICATOR = "TestMVFaultIndicator"
    TRIGGER_MESSAGE = "TriggerMessage"
    UPDATE_FIRMWARE = "UpdateFirmware"

    @property
    def sender(self) -> Role:
        """The role that sends this action's CALL."""
        return ACTIONS_SENT_BY[self]


_SUBSTATION_ACTIONS = frozenset(
    {
        Action.BOOT_NOTIFICATION,
        Action.GET_FILE_STATUS_NOTIFICATION,
        Action.FIRMWARE_STATUS_NOTIFICATION,
        Action.HEARTBEAT,
        Action.METER_VALUES,
        Action.STATUS_NOTIFICATION,
        Action.STREETLIGHT_MODE_STATUS_NOTIFICATION,
        Action.STREETLIGHT_STATUS_NOTIFICATION,
    }
)

#: Which role sends the CALL of each action.
ACTIONS_SENT_BY: dict[Action, Role] = {
    action: Role.SUBSTATION if action in _SUBSTATION_ACTIONS else Role.CENTRAL_SYSTEM for action in Action
}


def sender_of(action: str) -> Role | None:
    """The role that sends ``action``, or ``None`` if it is not an OS³P action."""
    try:
        return ACTIONS_SENT_BY[Action(action)]
    except ValueError:
        return None
