"""The OS³P Central System service: store, station handlers and boot policy, operator API, CLI."""

from ._api import FileArea, create_api, serve_api
from ._service import CentralConfig, CentralSystem, LiveStations, NotConnected, StationLink, UnknownAction
from ._sqlite import SqliteStore, StoreConfig, open_sqlite_store
from ._store import (
    BootStatus,
    EventKind,
    EventRecord,
    MeterValueRecord,
    StationExists,
    StationRecord,
    StationState,
    Store,
    StoreError,
    UnknownStation,
    UploadRecord,
)

__all__ = [
    "BootStatus",
    "CentralConfig",
    "CentralSystem",
    "EventKind",
    "EventRecord",
    "FileArea",
    "LiveStations",
    "MeterValueRecord",
    "NotConnected",
    "SqliteStore",
    "StationExists",
    "StationLink",
    "StationRecord",
    "StationState",
    "Store",
    "StoreConfig",
    "StoreError",
    "UnknownAction",
    "UnknownStation",
    "UploadRecord",
    "create_api",
    "open_sqlite_store",
    "serve_api",
]
