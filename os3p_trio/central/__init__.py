"""The OS³P Central System service: store, station handlers and boot policy, operator API, CLI."""

from ._api import FileArea, create_api, serve_api, upload_token
from ._server import CentralService, StoreRegistry, build_router, open_central_service, run_serve
from ._service import CentralConfig, CentralSystem, LiveStations, NotConnected, StationLink, UnknownAction
from ._sqlite import SqliteStore, StoreConfig, open_sqlite_store
from ._store import (
    BootStatus,
    EventKind,
    EventRecord,
    FleetSummary,
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
    "CentralService",
    "CentralSystem",
    "EventKind",
    "EventRecord",
    "FileArea",
    "FleetSummary",
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
    "StoreRegistry",
    "UnknownAction",
    "UnknownStation",
    "UploadRecord",
    "build_router",
    "create_api",
    "open_central_service",
    "open_sqlite_store",
    "run_serve",
    "serve_api",
    "upload_token",
]
