"""os3p_sim: an OS³P substation simulator, for one station or a fleet, in real or virtual time.

The station model is sans-IO (state plus pure transitions driven by a clock); drivers connect it to an
in-memory network with a virtual clock or to a real ``os3p_trio`` client.  Everything public is re-exported
here.
"""

# The delivery policy is the core's (one place); re-exported for callers of the simulator.

from ._contactors import (
    CONTACTOR_IDS,
    Contactors,
    ContactorState,
    LocalSwitch,
    Mode,
    OverrideAction,
    OverrideStatus,
    StreetlightEvent,
)
from ._demo import DemoSummary, run_demo
from ._faults import Alarm, FaultConfig, FaultIndicators, Indicator, IndicatorKind, MVStatus
from ._http import TransferError, download, perform_transfer, transfer_client, upload
from ._live import CENTRAL_SYSTEM_ACTIONS, FleetStats, LiveStation, ScaledClock, run_fleet
from ._meters import (
    MeterProfile,
    MeterReading,
    MeterState,
    SampledValue,
    initial_meter_state,
    load_fraction,
)
from ._meters import advance as advance_meters
from ._meters import sample as sample_meters
from ._simulation import (
    CentralModel,
    FaultPlan,
    Link,
    LinkProfile,
    Received,
    SimStation,
    Simulation,
    VirtualLoop,
)
from ._station import (
    DURABLE_ACTIONS,
    Output,
    Station,
    StationConfig,
    boot_fields_for,
    log_text,
    meter_history_csv,
)
from ._store import Change, OutboxEntry, SQLiteStore, StationStore
from ._transfers import (
    FIRMWARE_MAGIC,
    Download,
    Firmware,
    FirmwarePhase,
    Reboot,
    TransferConfig,
    Upload,
    Uploads,
    parse_firmware_image,
)
from .cli import main

__all__ = [
    "CENTRAL_SYSTEM_ACTIONS",
    "CONTACTOR_IDS",
    "DURABLE_ACTIONS",
    "FIRMWARE_MAGIC",
    "Alarm",
    "CentralModel",
    "Change",
    "ContactorState",
    "Contactors",
    "DemoSummary",
    "Download",
    "FaultConfig",
    "FaultIndicators",
    "FaultPlan",
    "Firmware",
    "FirmwarePhase",
    "FleetStats",
    "Indicator",
    "IndicatorKind",
    "Link",
    "LinkProfile",
    "LiveStation",
    "LocalSwitch",
    "MVStatus",
    "MeterProfile",
    "MeterReading",
    "MeterState",
    "Mode",
    "OutboxEntry",
    "Output",
    "OverrideAction",
    "OverrideStatus",
    "Reboot",
    "Received",
    "SQLiteStore",
    "SampledValue",
    "ScaledClock",
    "SimStation",
    "Simulation",
    "Station",
    "StationConfig",
    "StationStore",
    "StreetlightEvent",
    "TransferConfig",
    "TransferError",
    "Upload",
    "Uploads",
    "VirtualLoop",
    "advance_meters",
    "boot_fields_for",
    "download",
    "initial_meter_state",
    "load_fraction",
    "log_text",
    "main",
    "meter_history_csv",
    "parse_firmware_image",
    "perform_transfer",
    "run_demo",
    "run_fleet",
    "sample_meters",
    "transfer_client",
    "upload",
]


def __getattr__(name: str) -> str:
    # ``__version__``, looked up on first use: one distribution, one version (os3p_core._version).
    if name == "__version__":
        import os3p_core

        return str(os3p_core.__version__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
