"""os3p_core: the sans-IO core of OS³P (Open Smart Secondary Substation Protocol).

No sockets, no clock, no threads: text and time go in, events and text come out.  The same
objects serve the trio adapters (``os3p_trio``), the simulator (``os3p_sim``) and anyone who
embeds OS³P in another framework (asyncio included).

Everything public is re-exported here; the modules themselves are private.
"""

from typing import Any as _Any

from ._actions import ACTIONS_SENT_BY, Action, Role, sender_of
from ._errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError, SchemaViolation

# --- section: schemas and validation (data layer) ---
from ._schemas import load_schema
from ._validation import validate_request, validate_response

# --- end section ---

# --- section: frames, events, state, config, connection ---
# isort: split
from ._config import Config
from ._connection import Connection
from ._events import (
    BootStateChanged,
    Call,
    CallError,
    CallFailed,
    CallReceived,
    CallResult,
    CallTimedOut,
    ErrorReceived,
    Event,
    FailureReason,
    ResultReceived,
)
from ._frames import (
    CallErrorFrame,
    CallFrame,
    CallResultFrame,
    FormationViolation,
    Frame,
    IgnoredFrame,
    IgnoreReason,
    decode,
    encode,
)
from ._state import BootState

# --- end section ---

# --- section: station-side policy: boot, reconnect back-off, guaranteed delivery ---
# isort: split
from ._backoff import RETRY_BACKOFF_KEYS, RandomSource, RetryBackOff, retry_backoff_from, retry_backoff_keys
from ._delivery import (
    RETRY_LATER_CODES,
    DeadLettered,
    Delivered,
    DeliveryEvent,
    Disposition,
    OutboxDelivery,
    OutboxMessage,
    OutboxStore,
    RetryScheduled,
    classify_error,
)
from ._station_boot import (
    AcceptanceForgotten,
    BootAccepted,
    BootNotificationDue,
    CloseDue,
    ConnectDue,
    HeartbeatDue,
    LinkState,
    StationBoot,
    StationBootConfig,
    StationBootEvent,
)

# --- end section ---

# --- section: typed payloads and converter ---
# isort: split
from ._converter import (
    PayloadConverter,
    default_converter,
    request_class,
    response_class,
    structure_request,
    structure_response,
    unstructure,
)

# os3p_core.payloads is created on first access, not by ``import os3p_core`` (~40 ms of attrs classes):
# see __getattr__ at the end.
from ._converter import _package_getattr as _payloads_getattr

# --- end section ---

# --- section: streetlight schedules, sun times, configuration keys ---
# isort: split
from ._configuration import CONFIGURATION_KEYS, ConfigurationResult, ConfigurationStore, VendorKey
from ._streetlight import (
    DaySchedule,
    InstalledProfile,
    ProfilePeriod,
    ProfilePoint,
    ProfileStore,
    SiteLocation,
    StreetlightResult,
    SwitchingState,
    os3p_day_of,
)
from ._sun import SUN_DEPRESSION_DEGREES, SunTimes, sun_events_on_date, sun_times

# --- end section ---

# isort: split
from ._version import version as _get_version

__all__ = [  # noqa: RUF022 - grouped by owner's section, sorted within each
    "ACTIONS_SENT_BY",
    "Action",
    "ErrorCode",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "SchemaViolation",
    "sender_of",
    # --- section: schemas and validation (data layer) ---
    "load_schema",
    "validate_request",
    "validate_response",
    # --- end section ---
    # --- section: frames, events, state, config, connection ---
    "BootState",
    "BootStateChanged",
    "Call",
    "CallError",
    "CallErrorFrame",
    "CallFailed",
    "CallFrame",
    "CallReceived",
    "CallResult",
    "CallResultFrame",
    "CallTimedOut",
    "Config",
    "Connection",
    "ErrorReceived",
    "Event",
    "FailureReason",
    "FormationViolation",
    "Frame",
    "IgnoreReason",
    "IgnoredFrame",
    "ResultReceived",
    "decode",
    "encode",
    # --- end section ---
    # --- section: station-side policy: boot, reconnect back-off, guaranteed delivery ---
    "RETRY_BACKOFF_KEYS",
    "RETRY_LATER_CODES",
    "AcceptanceForgotten",
    "BootAccepted",
    "BootNotificationDue",
    "CloseDue",
    "ConnectDue",
    "DeadLettered",
    "Delivered",
    "DeliveryEvent",
    "Disposition",
    "HeartbeatDue",
    "LinkState",
    "OutboxDelivery",
    "OutboxMessage",
    "OutboxStore",
    "RandomSource",
    "RetryBackOff",
    "RetryScheduled",
    "StationBoot",
    "StationBootConfig",
    "StationBootEvent",
    "classify_error",
    "retry_backoff_from",
    "retry_backoff_keys",
    # --- end section ---
    # --- section: typed payloads and converter ---
    "PayloadConverter",
    "default_converter",
    "payloads",
    "request_class",
    "response_class",
    "structure_request",
    "structure_response",
    "unstructure",
    # --- end section ---
    # --- section: streetlight schedules, sun times, configuration keys ---
    "CONFIGURATION_KEYS",
    "ConfigurationResult",
    "ConfigurationStore",
    "VendorKey",
    "DaySchedule",
    "InstalledProfile",
    "ProfilePeriod",
    "ProfilePoint",
    "ProfileStore",
    "SiteLocation",
    "StreetlightResult",
    "SwitchingState",
    "os3p_day_of",
    "SUN_DEPRESSION_DEGREES",
    "SunTimes",
    "sun_events_on_date",
    "sun_times",
    # --- end section ---
]


def __getattr__(name: str) -> _Any:
    # Attributes made on first access: ``payloads`` (the typed classes) and ``__version__``
    # (importlib.metadata costs ~30 ms to import; os3p_core._version).
    if name == "__version__":
        return _get_version()
    return _payloads_getattr(name)
