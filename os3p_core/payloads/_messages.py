"""One frozen, slotted attrs class per request and per response of the 21 OS³P actions.

Fields are transcribed from the annex schemas (§M6 Substation-initiated, §M7 Central-System-
initiated) as corrected by PROTOCOL-DECISIONS §8.  Each class carries ``action`` (a ``ClassVar``,
not a field) so a payload object knows which CALL it belongs to.

Required fields first, optional ones default to ``None`` and are omitted on the wire.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import attrs

from os3p_core._actions import Action

from ._checks import aware_datetime, boolean, enum_member, integer, items, string
from ._enums import (
    ClearProfileStatus,
    ConfigurationStatus,
    FileType,
    FirmwareStatus,
    GenericStatus,
    LightStatus,
    MessageTrigger,
    OverrideAction,
    OverrideStatus,
    RegistrationStatus,
    ResetType,
    StationErrorCode,
    StationStatus,
    StreetlightMode,
    TestMVFaultIndicatorStatus,
    UploadStatus,
)
from ._values import ConfigurationKey, EffectivePeriod, MeterValue, StreetlightProfile

__all__ = [
    "REQUEST_CLASSES",
    "RESPONSE_CLASSES",
    "BootNotificationRequest",
    "BootNotificationResponse",
    "ChangeConfigurationRequest",
    "ChangeConfigurationResponse",
    "ClearSingleStreetlightProfileRequest",
    "ClearSingleStreetlightProfileResponse",
    "FirmwareStatusNotificationRequest",
    "FirmwareStatusNotificationResponse",
    "GetConfigurationRequest",
    "GetConfigurationResponse",
    "GetEffectiveStreetlightDayScheduleRequest",
    "GetEffectiveStreetlightDayScheduleResponse",
    "GetFileRequest",
    "GetFileResponse",
    "GetFileStatusNotificationRequest",
    "GetFileStatusNotificationResponse",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "MeterValuesRequest",
    "MeterValuesResponse",
    "OverrideStreetlightRequest",
    "OverrideStreetlightResponse",
    "Payload",
    "ResetMVFaultIndicatorRequest",
    "ResetMVFaultIndicatorResponse",
    "ResetRequest",
    "ResetResponse",
    "ResumeStreetlightRequest",
    "ResumeStreetlightResponse",
    "SetStreetlightProfileRequest",
    "SetStreetlightProfileResponse",
    "StatusNotificationRequest",
    "StatusNotificationResponse",
    "StreetlightModeStatusNotificationRequest",
    "StreetlightModeStatusNotificationResponse",
    "StreetlightStatusNotificationRequest",
    "StreetlightStatusNotificationResponse",
    "TestMVFaultIndicatorRequest",
    "TestMVFaultIndicatorResponse",
    "TriggerMessageRequest",
    "TriggerMessageResponse",
    "UpdateFirmwareRequest",
    "UpdateFirmwareResponse",
]

#: §M8.1: contactorId 1 Evening/Morning, 2 Night, 3 Tariff, 4 unspecified.
_CONTACTOR = integer(minimum=1, maximum=4)
_OPTIONAL_CONTACTOR = integer(minimum=1, maximum=4, optional=True)
#: PROTOCOL-DECISIONS §8: every requestId allows 36 characters (a UUID), the notifications included.
_REQUEST_ID = string(max_length=36, optional=True)


class Payload:
    """Base class of every top-level request and response class (no fields of its own).

    ``action`` is the :class:`~os3p_core.Action` the payload belongs to; ``is_request`` says
    which side of the exchange it is.
    """

    __slots__ = ()
    action: ClassVar[Action]
    is_request: ClassVar[bool]


# ---------------------------------------------------------------------------------------------
# Client-initiated messages (annex §6: sent by the Substation)
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class BootNotificationRequest(Payload):
    """§M6.1: the Substation introduces itself; every field is required."""

    action: ClassVar[Action] = Action.BOOT_NOTIFICATION
    is_request: ClassVar[bool] = True

    vendor: str = attrs.field(validator=string(max_length=20))
    model: str = attrs.field(validator=string(max_length=20))
    station_number: str = attrs.field(validator=string(max_length=10))
    serial_number: str = attrs.field(validator=string(max_length=25))
    firmware_version: str = attrs.field(validator=string(max_length=50))
    iccid: str = attrs.field(validator=string(max_length=20))
    imsi: str = attrs.field(validator=string(max_length=20))


@attrs.frozen
class BootNotificationResponse(Payload):
    """§M6.1, §M3.1: registration status, the Central System's clock, the heartbeat interval (s)."""

    action: ClassVar[Action] = Action.BOOT_NOTIFICATION
    is_request: ClassVar[bool] = False

    status: RegistrationStatus = attrs.field(validator=enum_member(RegistrationStatus))
    current_time: datetime = attrs.field(validator=aware_datetime())
    interval: int = attrs.field(validator=integer())


@attrs.frozen
class GetFileStatusNotificationRequest(Payload):
    """§M6.2: upload progress of a GetFile; ``request_id`` echoes the GetFile's ``requestId``."""

    action: ClassVar[Action] = Action.GET_FILE_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = True

    status: UploadStatus = attrs.field(validator=enum_member(UploadStatus))
    request_id: str | None = attrs.field(default=None, validator=_REQUEST_ID)


@attrs.frozen
class GetFileStatusNotificationResponse(Payload):
    """§M6.2: empty."""

    action: ClassVar[Action] = Action.GET_FILE_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = False


@attrs.frozen
class FirmwareStatusNotificationRequest(Payload):
    """§M6.3: firmware update progress; ``request_id`` echoes the UpdateFirmware's ``requestId``."""

    action: ClassVar[Action] = Action.FIRMWARE_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = True

    status: FirmwareStatus = attrs.field(validator=enum_member(FirmwareStatus))
    request_id: str | None = attrs.field(default=None, validator=_REQUEST_ID)


@attrs.frozen
class FirmwareStatusNotificationResponse(Payload):
    """§M6.3: empty."""

    action: ClassVar[Action] = Action.FIRMWARE_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = False


@attrs.frozen
class HeartbeatRequest(Payload):
    """§M6.4: empty."""

    action: ClassVar[Action] = Action.HEARTBEAT
    is_request: ClassVar[bool] = True


@attrs.frozen
class HeartbeatResponse(Payload):
    """§M6.4: the Central System's clock (§J5.4: the Substation syncs on it)."""

    action: ClassVar[Action] = Action.HEARTBEAT
    is_request: ClassVar[bool] = False

    current_time: datetime = attrs.field(validator=aware_datetime())


@attrs.frozen
class MeterValuesRequest(Payload):
    """§M6.5: one or more timestamped sets of sampled values."""

    action: ClassVar[Action] = Action.METER_VALUES
    is_request: ClassVar[bool] = True

    meter_value: tuple[MeterValue, ...] = attrs.field(validator=items(MeterValue))


@attrs.frozen
class MeterValuesResponse(Payload):
    """§M6.5: empty."""

    action: ClassVar[Action] = Action.METER_VALUES
    is_request: ClassVar[bool] = False


@attrs.frozen
class StatusNotificationRequest(Payload):
    """§M6.6: station status and error code, with optional detail (Table 4)."""

    action: ClassVar[Action] = Action.STATUS_NOTIFICATION
    is_request: ClassVar[bool] = True

    status: StationStatus = attrs.field(validator=enum_member(StationStatus))
    error_code: StationErrorCode = attrs.field(validator=enum_member(StationErrorCode))
    info: str | None = attrs.field(default=None, validator=string(max_length=128, optional=True))
    timestamp: datetime | None = attrs.field(default=None, validator=aware_datetime(optional=True))
    vendor_id: str | None = attrs.field(default=None, validator=string(max_length=128, optional=True))
    vendor_error_code: str | None = attrs.field(default=None, validator=string(max_length=64, optional=True))
    test: bool | None = attrs.field(default=None, validator=boolean(optional=True))


@attrs.frozen
class StatusNotificationResponse(Payload):
    """§M6.6: empty."""

    action: ClassVar[Action] = Action.STATUS_NOTIFICATION
    is_request: ClassVar[bool] = False


@attrs.frozen
class StreetlightModeStatusNotificationRequest(Payload):
    """§M6.7: the scheduling mode changed; no ``contactor_id`` means all contactors."""

    action: ClassVar[Action] = Action.STREETLIGHT_MODE_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = True

    mode: StreetlightMode = attrs.field(validator=enum_member(StreetlightMode))
    timestamp: datetime = attrs.field(validator=aware_datetime())
    contactor_id: int | None = attrs.field(default=None, validator=_OPTIONAL_CONTACTOR)


@attrs.frozen
class StreetlightModeStatusNotificationResponse(Payload):
    """§M6.7: empty."""

    action: ClassVar[Action] = Action.STREETLIGHT_MODE_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = False


@attrs.frozen
class StreetlightStatusNotificationRequest(Payload):
    """§M6.8: lights of a contactor switched on or off (``unexpected``: not by the RTU)."""

    action: ClassVar[Action] = Action.STREETLIGHT_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = True

    contactor_id: int = attrs.field(validator=_CONTACTOR)
    status: LightStatus = attrs.field(validator=enum_member(LightStatus))
    timestamp: datetime = attrs.field(validator=aware_datetime())
    unexpected: bool | None = attrs.field(default=None, validator=boolean(optional=True))


@attrs.frozen
class StreetlightStatusNotificationResponse(Payload):
    """§M6.8: empty."""

    action: ClassVar[Action] = Action.STREETLIGHT_STATUS_NOTIFICATION
    is_request: ClassVar[bool] = False


# ---------------------------------------------------------------------------------------------
# Server-initiated messages (annex §7: sent by the Central System)
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class ChangeConfigurationRequest(Payload):
    """§M7.1: set configuration ``key`` to ``value`` (always a string on the wire)."""

    action: ClassVar[Action] = Action.CHANGE_CONFIGURATION
    is_request: ClassVar[bool] = True

    key: str = attrs.field(validator=string())
    value: str = attrs.field(validator=string())


@attrs.frozen
class ChangeConfigurationResponse(Payload):
    """§M7.1."""

    action: ClassVar[Action] = Action.CHANGE_CONFIGURATION
    is_request: ClassVar[bool] = False

    status: ConfigurationStatus = attrs.field(validator=enum_member(ConfigurationStatus))


@attrs.frozen
class ClearSingleStreetlightProfileRequest(Payload):
    """§M7.2: clear profiles by ``profile_id``, by ``contactor_id`` + ``stack_level``, or broader.

    ``profile_id`` together with ``stack_level`` is schema-valid but contradicts the text
    ("mutual exclusive"): the station answers ``Rejected`` (PROTOCOL-DECISIONS §8), so this class
    accepts the combination rather than making the request impossible to answer.
    """

    action: ClassVar[Action] = Action.CLEAR_SINGLE_STREETLIGHT_PROFILE
    is_request: ClassVar[bool] = True

    profile_id: int | None = attrs.field(default=None, validator=integer(minimum=0, optional=True))
    contactor_id: int | None = attrs.field(default=None, validator=_OPTIONAL_CONTACTOR)
    stack_level: int | None = attrs.field(default=None, validator=integer(minimum=0, optional=True))


@attrs.frozen
class ClearSingleStreetlightProfileResponse(Payload):
    """§M7.2: ``Unknown`` when nothing matched."""

    action: ClassVar[Action] = Action.CLEAR_SINGLE_STREETLIGHT_PROFILE
    is_request: ClassVar[bool] = False

    status: ClearProfileStatus = attrs.field(validator=enum_member(ClearProfileStatus))


@attrs.frozen
class GetConfigurationRequest(Payload):
    """§M7.3: no ``key`` means all keys (PROTOCOL-DECISIONS §6)."""

    action: ClassVar[Action] = Action.GET_CONFIGURATION
    is_request: ClassVar[bool] = True

    key: tuple[str, ...] | None = attrs.field(default=None, validator=items(str, optional=True))


@attrs.frozen
class GetConfigurationResponse(Payload):
    """§M7.3: known keys with their values, and the requested keys that are unknown."""

    action: ClassVar[Action] = Action.GET_CONFIGURATION
    is_request: ClassVar[bool] = False

    configuration_key: tuple[ConfigurationKey, ...] | None = attrs.field(
        default=None, validator=items(ConfigurationKey, optional=True)
    )
    unknown_key: tuple[str, ...] | None = attrs.field(default=None, validator=items(str, optional=True))


@attrs.frozen
class GetEffectiveStreetlightDayScheduleRequest(Payload):
    """§M7.4: the effective schedule of ``contactor_id`` on the OS³P day whose date is ``at``'s
    literal date part (time and offset ignored, STREETLIGHT-SEMANTICS "The OS³P day")."""

    action: ClassVar[Action] = Action.GET_EFFECTIVE_STREETLIGHT_DAY_SCHEDULE
    is_request: ClassVar[bool] = True

    contactor_id: int = attrs.field(validator=_CONTACTOR)
    at: datetime = attrs.field(validator=aware_datetime())


@attrs.frozen
class GetEffectiveStreetlightDayScheduleResponse(Payload):
    """§M7.4: the merged "lights on" periods of that day, local ``"HH:mm:ss"`` strings.

    The annex example carries ``"status": "Accepted"``, which the schema does not define;
    stations omit it and the Central System tolerates it on input (PROTOCOL-DECISIONS §8), so the
    converter drops it when structuring and this class has no such field.
    """

    action: ClassVar[Action] = Action.GET_EFFECTIVE_STREETLIGHT_DAY_SCHEDULE
    is_request: ClassVar[bool] = False

    contactor_id: int = attrs.field(validator=_CONTACTOR)
    day_schedule: tuple[EffectivePeriod, ...] = attrs.field(validator=items(EffectivePeriod))


@attrs.frozen
class GetFileRequest(Payload):
    """§M7.5: upload a file (e.g. meter value history between ``start_time`` and ``stop_time``)
    to ``location`` (a URI)."""

    action: ClassVar[Action] = Action.GET_FILE
    is_request: ClassVar[bool] = True

    file_type: FileType = attrs.field(validator=enum_member(FileType))
    location: str = attrs.field(validator=string(uri=True))
    request_id: str | None = attrs.field(default=None, validator=_REQUEST_ID)
    start_time: datetime | None = attrs.field(default=None, validator=aware_datetime(optional=True))
    stop_time: datetime | None = attrs.field(default=None, validator=aware_datetime(optional=True))


@attrs.frozen
class GetFileResponse(Payload):
    """§M7.5."""

    action: ClassVar[Action] = Action.GET_FILE
    is_request: ClassVar[bool] = False

    status: GenericStatus = attrs.field(validator=enum_member(GenericStatus))
    file_name: str = attrs.field(validator=string())


@attrs.frozen
class OverrideStreetlightRequest(Payload):
    """§M7.6: force lights on/off or suspend the schedule; no ``contactor_id`` means all.

    The wire field is ``action``, which on the class is taken by the ``action`` ClassVar (the
    OS³P action of every payload), so the attribute is ``action_`` (PEP 8's trailing underscore).
    """

    action: ClassVar[Action] = Action.OVERRIDE_STREETLIGHT
    is_request: ClassVar[bool] = True

    action_: OverrideAction = attrs.field(validator=enum_member(OverrideAction))
    contactor_id: int | None = attrs.field(default=None, validator=_OPTIONAL_CONTACTOR)


@attrs.frozen
class OverrideStreetlightResponse(Payload):
    """§M7.6."""

    action: ClassVar[Action] = Action.OVERRIDE_STREETLIGHT
    is_request: ClassVar[bool] = False

    status: OverrideStatus = attrs.field(validator=enum_member(OverrideStatus))


@attrs.frozen
class ResumeStreetlightRequest(Payload):
    """§M7.7: end a remote override; no ``contactor_id`` means all.

    ``type`` is an optional free string: the annex example sends ``"type": "Immediate"`` although
    its schema has no such field (PROTOCOL-DECISIONS §8 accepts it).
    """

    action: ClassVar[Action] = Action.RESUME_STREETLIGHT
    is_request: ClassVar[bool] = True

    contactor_id: int | None = attrs.field(default=None, validator=_OPTIONAL_CONTACTOR)
    type: str | None = attrs.field(default=None, validator=string(optional=True))


@attrs.frozen
class ResumeStreetlightResponse(Payload):
    """§M7.7 (the annex titles its schema ``OverrideStreetlightResponse``; same statuses)."""

    action: ClassVar[Action] = Action.RESUME_STREETLIGHT
    is_request: ClassVar[bool] = False

    status: OverrideStatus = attrs.field(validator=enum_member(OverrideStatus))


@attrs.frozen
class ResetRequest(Payload):
    """§M7.8: hardware reset; optional ``type`` ``Hard``/``Soft`` (PROTOCOL-DECISIONS §8, from the
    annex example)."""

    action: ClassVar[Action] = Action.RESET
    is_request: ClassVar[bool] = True

    type: ResetType | None = attrs.field(default=None, validator=enum_member(ResetType, optional=True))


@attrs.frozen
class ResetResponse(Payload):
    """§M7.8."""

    action: ClassVar[Action] = Action.RESET
    is_request: ClassVar[bool] = False

    status: GenericStatus = attrs.field(validator=enum_member(GenericStatus))


@attrs.frozen
class ResetMVFaultIndicatorRequest(Payload):
    """§M7.9: empty."""

    action: ClassVar[Action] = Action.RESET_MV_FAULT_INDICATOR
    is_request: ClassVar[bool] = True


@attrs.frozen
class ResetMVFaultIndicatorResponse(Payload):
    """§M7.9: ``Rejected`` means no medium-voltage fault indicator is available (Table 14)."""

    action: ClassVar[Action] = Action.RESET_MV_FAULT_INDICATOR
    is_request: ClassVar[bool] = False

    status: GenericStatus = attrs.field(validator=enum_member(GenericStatus))


@attrs.frozen
class SetStreetlightProfileRequest(Payload):
    """§M7.10: install profiles on a contactor.

    ``clear_all_schedules`` (wire ``clearAllSchedules``) is normative; the annex example's
    ``clearSchedule`` is accepted as an alias on input and never sent (PROTOCOL-DECISIONS §8).
    """

    action: ClassVar[Action] = Action.SET_STREETLIGHT_PROFILE
    is_request: ClassVar[bool] = True

    contactor_id: int = attrs.field(validator=_CONTACTOR)
    streetlight_profiles: tuple[StreetlightProfile, ...] = attrs.field(
        validator=items(StreetlightProfile, min_items=1)
    )
    clear_all_schedules: bool | None = attrs.field(default=None, validator=boolean(optional=True))


@attrs.frozen
class SetStreetlightProfileResponse(Payload):
    """§M7.10."""

    action: ClassVar[Action] = Action.SET_STREETLIGHT_PROFILE
    is_request: ClassVar[bool] = False

    status: GenericStatus = attrs.field(validator=enum_member(GenericStatus))


@attrs.frozen
class TestMVFaultIndicatorRequest(Payload):
    """§M7.11: empty."""

    __test__: ClassVar[bool] = False  # a payload, not a pytest test class
    action: ClassVar[Action] = Action.TEST_MV_FAULT_INDICATOR
    is_request: ClassVar[bool] = True


@attrs.frozen
class TestMVFaultIndicatorResponse(Payload):
    """§M7.11 (Table 19)."""

    __test__: ClassVar[bool] = False  # a payload, not a pytest test class
    action: ClassVar[Action] = Action.TEST_MV_FAULT_INDICATOR
    is_request: ClassVar[bool] = False

    status: TestMVFaultIndicatorStatus = attrs.field(validator=enum_member(TestMVFaultIndicatorStatus))


@attrs.frozen
class TriggerMessageRequest(Payload):
    """§M7.12: ask the Substation to send one of its messages now.

    ``connector_id`` keeps the spec's name and means the contactor (PROTOCOL-DECISIONS §8); its
    schema is a bare integer.
    """

    action: ClassVar[Action] = Action.TRIGGER_MESSAGE
    is_request: ClassVar[bool] = True

    requested_message: MessageTrigger = attrs.field(validator=enum_member(MessageTrigger))
    connector_id: int | None = attrs.field(default=None, validator=integer(optional=True))


@attrs.frozen
class TriggerMessageResponse(Payload):
    """§M7.12."""

    action: ClassVar[Action] = Action.TRIGGER_MESSAGE
    is_request: ClassVar[bool] = False

    status: GenericStatus = attrs.field(validator=enum_member(GenericStatus))


@attrs.frozen
class UpdateFirmwareRequest(Payload):
    """§M7.13: fetch firmware from ``location`` (a URI) at or after ``retrieve_date``."""

    action: ClassVar[Action] = Action.UPDATE_FIRMWARE
    is_request: ClassVar[bool] = True

    retrieve_date: datetime = attrs.field(validator=aware_datetime())
    location: str = attrs.field(validator=string(uri=True))
    retries: int | None = attrs.field(default=None, validator=integer(optional=True))
    retry_interval: int | None = attrs.field(default=None, validator=integer(optional=True))
    request_id: str | None = attrs.field(default=None, validator=_REQUEST_ID)


@attrs.frozen
class UpdateFirmwareResponse(Payload):
    """§M7.13: empty."""

    action: ClassVar[Action] = Action.UPDATE_FIRMWARE
    is_request: ClassVar[bool] = False


def _by_action(*classes: type[Payload]) -> dict[Action, type[Payload]]:
    table = {cls.action: cls for cls in classes}
    if set(table) != set(Action) or len(classes) != len(Action):
        raise AssertionError("every action needs exactly one class of each kind")
    return table


#: The request class of each action.
REQUEST_CLASSES: dict[Action, type[Payload]] = _by_action(
    BootNotificationRequest,
    GetFileStatusNotificationRequest,
    FirmwareStatusNotificationRequest,
    HeartbeatRequest,
    MeterValuesRequest,
    StatusNotificationRequest,
    StreetlightModeStatusNotificationRequest,
    StreetlightStatusNotificationRequest,
    ChangeConfigurationRequest,
    ClearSingleStreetlightProfileRequest,
    GetConfigurationRequest,
    GetEffectiveStreetlightDayScheduleRequest,
    GetFileRequest,
    OverrideStreetlightRequest,
    ResumeStreetlightRequest,
    ResetRequest,
    ResetMVFaultIndicatorRequest,
    SetStreetlightProfileRequest,
    TestMVFaultIndicatorRequest,
    TriggerMessageRequest,
    UpdateFirmwareRequest,
)
#: The response class of each action.
RESPONSE_CLASSES: dict[Action, type[Payload]] = _by_action(
    BootNotificationResponse,
    GetFileStatusNotificationResponse,
    FirmwareStatusNotificationResponse,
    HeartbeatResponse,
    MeterValuesResponse,
    StatusNotificationResponse,
    StreetlightModeStatusNotificationResponse,
    StreetlightStatusNotificationResponse,
    ChangeConfigurationResponse,
    ClearSingleStreetlightProfileResponse,
    GetConfigurationResponse,
    GetEffectiveStreetlightDayScheduleResponse,
    GetFileResponse,
    OverrideStreetlightResponse,
    ResumeStreetlightResponse,
    ResetResponse,
    ResetMVFaultIndicatorResponse,
    SetStreetlightProfileResponse,
    TestMVFaultIndicatorResponse,
    TriggerMessageResponse,
    UpdateFirmwareResponse,
)
