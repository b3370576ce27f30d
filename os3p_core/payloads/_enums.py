"""``str``-valued enums for every ``enum`` in the OS³P 0.4 schemas (annex §M6, §M7).

Each member's value is the exact wire spelling; members compare equal to their strings
(``enum.StrEnum``), so ``payload["status"] == RegistrationStatus.ACCEPTED`` holds for raw
dicts too.  Where several messages share the same set of values (``Accepted``/``Rejected``)
they share one enum, :class:`GenericStatus`.
"""

from __future__ import annotations

import enum

__all__ = [
    "ClearProfileStatus",
    "ConfigurationStatus",
    "FileType",
    "FirmwareStatus",
    "GenericStatus",
    "LightStatus",
    "Measurand",
    "MeasurementLocation",
    "MessageTrigger",
    "OverrideAction",
    "OverrideStatus",
    "ReadingContext",
    "RecurrencyKind",
    "RegistrationStatus",
    "ResetType",
    "SchedulePointKind",
    "StationErrorCode",
    "StationStatus",
    "StreetlightMode",
    "TestMVFaultIndicatorStatus",
    "UnitOfMeasure",
    "UploadStatus",
    "ValueFormat",
]


class GenericStatus(enum.StrEnum):
    """``Accepted`` / ``Rejected``: the ``status`` of GetFile, Reset, ResetMVFaultIndicator,
    SetStreetlightProfile and TriggerMessage responses (§M7.5, §M7.8, §M7.9, §M7.10, §M7.12)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class ConfigurationStatus(enum.StrEnum):
    """ChangeConfigurationResponse ``status`` (§M7.1).  An unknown or read-only key is
    ``Rejected`` (PROTOCOL-DECISIONS §6)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class RegistrationStatus(enum.StrEnum):
    """BootNotificationResponse ``status`` (§M3.1, §M6.1)."""

    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


class UploadStatus(enum.StrEnum):
    """GetFileStatusNotificationRequest ``status`` (§M6.2)."""

    NONE = "None"
    UPLOADED = "Uploaded"
    UPLOADING = "Uploading"
    UPLOAD_FAILED = "UploadFailed"


class FirmwareStatus(enum.StrEnum):
    """FirmwareStatusNotificationRequest ``status`` (§M6.3)."""

    NONE = "None"
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    INSTALLING = "Installing"
    INSTALLATION_FAILED = "InstallationFailed"
    INSTALLED = "Installed"


class ReadingContext(enum.StrEnum):
    """SampledValue ``context`` (§M6.5; absent means ``Sample.Periodic``, annex Table 3)."""

    INTERRUPTION_BEGIN = "Interruption.Begin"
    INTERRUPTION_END = "Interruption.End"
    SAMPLE_CLOCK = "Sample.Clock"
    SAMPLE_PERIODIC = "Sample.Periodic"
    TRIGGER = "Trigger"
    OTHER = "Other"


class ValueFormat(enum.StrEnum):
    """SampledValue ``format`` (§M6.5; absent means ``Raw``)."""

    RAW = "Raw"
    SIGNED_DATA = "SignedData"


class Measurand(enum.StrEnum):
    """SampledValue ``measurand`` (§M6.5 schema enum and Table 1).

    ``BoardTemperature`` is in Table 1 but missing from the annex's enum; PROTOCOL-DECISIONS §8
    adds it.  The ``ReactiveEnergyInductive.*`` / ``ReactiveEnergyCapacitive.*`` members are
    deprecated (annex Table 2) but older firmware still sends them.
    """

    AMBIENT_TEMPERATURE = "AmbientTemperature"
    OIL_TEMPERATURE = "OilTemperature"
    BOARD_TEMPERATURE = "BoardTemperature"
    VOLTAGE_L1N = "Voltage.L1N"
    VOLTAGE_L2N = "Voltage.L2N"
    VOLTAGE_L3N = "Voltage.L3N"
    CURRENT_L1 = "Current.L1"
    CURRENT_L2 = "Current.L2"
    CURRENT_L3 = "Current.L3"
    CURRENT_N = "Current.N"
    CURRENT_SUM = "Current.Sum"
    POWER_FACTOR_L1 = "PowerFactor.L1"
    POWER_FACTOR_L2 = "PowerFactor.L2"
    POWER_FACTOR_L3 = "PowerFactor.L3"
    POWER_FACTOR_SUM = "PowerFactor.Sum"
    ACTIVE_POWER_L1 = "ActivePower.L1"
    ACTIVE_POWER_L2 = "ActivePower.L2"
    ACTIVE_POWER_L3 = "ActivePower.L3"
    ACTIVE_POWER_SUM = "ActivePower.Sum"
    APPARENT_POWER_L1 = "ApparentPower.L1"
    APPARENT_POWER_L2 = "ApparentPower.L2"
    APPARENT_POWER_L3 = "ApparentPower.L3"
    APPARENT_POWER_SUM = "ApparentPower.Sum"
    REACTIVE_POWER_L1 = "ReactivePower.L1"
    REACTIVE_POWER_L2 = "ReactivePower.L2"
    REACTIVE_POWER_L3 = "ReactivePower.L3"
    REACTIVE_POWER_SUM = "ReactivePower.Sum"
    REAL_ENERGY_CONSUMED_L1 = "RealEnergyConsumed.L1"
    REAL_ENERGY_CONSUMED_L2 = "RealEnergyConsumed.L2"
    REAL_ENERGY_CONSUMED_L3 = "RealEnergyConsumed.L3"
    REAL_ENERGY_CONSUMED_SUM = "RealEnergyConsumed.Sum"
    REAL_ENERGY_DELIVERED_L1 = "RealEnergyDelivered.L1"
    REAL_ENERGY_DELIVERED_L2 = "RealEnergyDelivered.L2"
    REAL_ENERGY_DELIVERED_L3 = "RealEnergyDelivered.L3"
    REAL_ENERGY_DELIVERED_SUM = "RealEnergyDelivered.Sum"
    APPARENT_ENERGY_L1 = "ApparentEnergy.L1"
    APPARENT_ENERGY_L2 = "ApparentEnergy.L2"
    APPARENT_ENERGY_L3 = "ApparentEnergy.L3"
    APPARENT_ENERGY_SUM = "ApparentEnergy.Sum"
    REACTIVE_ENERGY_L1 = "ReactiveEnergy.L1"
    REACTIVE_ENERGY_L2 = "ReactiveEnergy.L2"
    REACTIVE_ENERGY_L3 = "ReactiveEnergy.L3"
    REACTIVE_ENERGY_SUM = "ReactiveEnergy.Sum"
    THD_V_L1N = "THDv.L1N"
    THD_V_L2N = "THDv.L2N"
    THD_V_L3N = "THDv.L3N"
    THD_C_L1 = "THDc.L1"
    THD_C_L2 = "THDc.L2"
    THD_C_L3 = "THDc.L3"
    FREQUENCY = "Frequency"
    ENERGY_ACTIVE_IMPORT_REGISTER = "Energy.Active.Import.Register"
    POWER_ACTIVE_IMPORT = "Power.Active.Import"
    REACTIVE_ENERGY_INDUCTIVE_L1 = "ReactiveEnergyInductive.L1"
    REACTIVE_ENERGY_INDUCTIVE_L2 = "ReactiveEnergyInductive.L2"
    REACTIVE_ENERGY_INDUCTIVE_L3 = "ReactiveEnergyInductive.L3"
    REACTIVE_ENERGY_INDUCTIVE_SUM = "ReactiveEnergyInductive.Sum"
    REACTIVE_ENERGY_CAPACITIVE_L1 = "ReactiveEnergyCapacitive.L1"
    REACTIVE_ENERGY_CAPACITIVE_L2 = "ReactiveEnergyCapacitive.L2"
    REACTIVE_ENERGY_CAPACITIVE_L3 = "ReactiveEnergyCapacitive.L3"
    REACTIVE_ENERGY_CAPACITIVE_SUM = "ReactiveEnergyCapacitive.Sum"
    DAY_MAX_VOLTAGE_L1 = "DayMax.Voltage.L1"
    DAY_MAX_VOLTAGE_L2 = "DayMax.Voltage.L2"
    DAY_MAX_VOLTAGE_L3 = "DayMax.Voltage.L3"
    DAY_MAX_CURRENT_L1 = "DayMax.Current.L1"
    DAY_MAX_CURRENT_L2 = "DayMax.Current.L2"
    DAY_MAX_CURRENT_L3 = "DayMax.Current.L3"
    DAY_MAX_ACTIVE_POWER_L1 = "DayMax.ActivePower.L1"
    DAY_MAX_ACTIVE_POWER_L2 = "DayMax.ActivePower.L2"
    DAY_MAX_ACTIVE_POWER_L3 = "DayMax.ActivePower.L3"
    DAY_MAX_REACTIVE_POWER_L1 = "DayMax.ReactivePower.L1"
    DAY_MAX_REACTIVE_POWER_L2 = "DayMax.ReactivePower.L2"
    DAY_MAX_REACTIVE_POWER_L3 = "DayMax.ReactivePower.L3"
    DAY_MAX_ENERGY_ACTIVE_IMPORT_REGISTER = "DayMax.Energy.Active.Import.Register"
    DAY_MIN_VOLTAGE_L1 = "DayMin.Voltage.L1"
    DAY_MIN_VOLTAGE_L2 = "DayMin.Voltage.L2"
    DAY_MIN_VOLTAGE_L3 = "DayMin.Voltage.L3"
    DAY_MIN_ACTIVE_POWER_L1 = "DayMin.ActivePower.L1"
    DAY_MIN_ACTIVE_POWER_L2 = "DayMin.ActivePower.L2"
    DAY_MIN_ACTIVE_POWER_L3 = "DayMin.ActivePower.L3"
    DAY_MIN_REACTIVE_POWER_L1 = "DayMin.ReactivePower.L1"
    DAY_MIN_REACTIVE_POWER_L2 = "DayMin.ReactivePower.L2"
    DAY_MIN_REACTIVE_POWER_L3 = "DayMin.ReactivePower.L3"


class MeasurementLocation(enum.StrEnum):
    """SampledValue ``location`` (§M6.5)."""

    IN = "In"
    OUT = "Out"
    BODY = "Body"
    P1_METER = "P1Meter"


class UnitOfMeasure(enum.StrEnum):
    """SampledValue ``unit`` (§M6.5 schema enum).

    Table 1's ``Celsius`` and ``Amp`` are ``C`` and ``A`` on the wire.
    """

    WH = "Wh"
    KWH = "kWh"
    VARH = "varh"
    KVARH = "kvarh"
    W = "W"
    KW = "kW"
    VA = "VA"
    VAH = "VAh"
    KVA = "kVA"
    VAR = "var"
    KVAR = "kvar"
    A = "A"
    V = "V"
    KELVIN = "K"
    HZ = "Hz"
    CELSIUS = "C"
    PERCENT = "%"


class StationStatus(enum.StrEnum):
    """StatusNotificationRequest ``status`` (§M6.6).  The annex's "statuses" table lists
    ``errorCode`` values; ``status`` is only ``Ok``/``Faulted`` (PROTOCOL-DECISIONS §8)."""

    OK = "Ok"
    FAULTED = "Faulted"


class StationErrorCode(enum.StrEnum):
    """StatusNotificationRequest ``errorCode`` (§M6.6)."""

    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    MV_FAULT_INDICATOR_ERROR = "MVFaultIndicatorError"
    NO_ERROR = "NoError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    OVER_VOLTAGE = "OverVoltage"
    WEAK_SIGNAL = "WeakSignal"


class StreetlightMode(enum.StrEnum):
    """StreetlightModeStatusNotificationRequest ``mode`` (§M6.7)."""

    SCHEDULE = "Schedule"
    LOCAL_OVERRIDE = "LocalOverride"
    REMOTE_OVERRIDE = "RemoteOverride"


class LightStatus(enum.StrEnum):
    """StreetlightStatusNotificationRequest ``status`` (§M6.8)."""

    ON = "On"
    OFF = "Off"


class ClearProfileStatus(enum.StrEnum):
    """ClearSingleStreetlightProfileResponse ``status`` (§M7.2; nothing matched → ``Unknown``)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN = "Unknown"


class FileType(enum.StrEnum):
    """GetFileRequest ``fileType`` (§M7.5)."""

    SYSLOG = "Syslog"
    METER_VALUE_HISTORY = "MeterValueHistory"
    VENDOR_SPECIFIC = "VendorSpecific"


class OverrideAction(enum.StrEnum):
    """OverrideStreetlightRequest ``action`` (§M7.6): force on, force off, or freeze the current state."""

    ON = "On"
    OFF = "Off"
    SUSPEND = "Suspend"


class OverrideStatus(enum.StrEnum):
    """OverrideStreetlightResponse and ResumeStreetlightResponse ``status`` (§M7.6, §M7.7)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REJECTED_LOCAL_OVERRIDE = "RejectedLocalOverride"


class ResetType(enum.StrEnum):
    """ResetRequest ``type`` (§M7.8 example; optional per PROTOCOL-DECISIONS §8)."""

    HARD = "Hard"
    SOFT = "Soft"


class RecurrencyKind(enum.StrEnum):
    """StreetlightProfile ``recurrencyKind`` (§M7.10)."""

    NONE = "None"
    DAILY = "Daily"
    WEEKLY = "Weekly"


class SchedulePointKind(enum.StrEnum):
    """Start/end point ``kind`` of a daySchedule period (§M7.10, Table 18)."""

    ABSOLUTE = "Absolute"
    SUNSET = "Sunset"
    SUNRISE = "Sunrise"


class TestMVFaultIndicatorStatus(enum.StrEnum):
    """TestMVFaultIndicatorResponse ``status`` (§M7.11, Table 19)."""

    __test__ = False  # not a pytest test class despite the name

    ACCEPTED = "Accepted"
    REJECTED_ALREADY_FAULTED = "RejectedAlreadyFaulted"
    REJECTED = "Rejected"


class MessageTrigger(enum.StrEnum):
    """TriggerMessageRequest ``requestedMessage`` (§M7.12): the eight Substation-initiated actions."""

    BOOT_NOTIFICATION = "BootNotification"
    GET_FILE_STATUS_NOTIFICATION = "GetFileStatusNotification"
    FIRMWARE_STATUS_NOTIFICATION = "FirmwareStatusNotification"
    HEARTBEAT = "Heartbeat"
    METER_VALUES = "MeterValues"
    STATUS_NOTIFICATION = "StatusNotification"
    STREETLIGHT_MODE_STATUS_NOTIFICATION = "StreetlightModeStatusNotification"
    STREETLIGHT_STATUS_NOTIFICATION = "StreetlightStatusNotification"
