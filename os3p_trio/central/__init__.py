"""The OS³P Central System service: store, station handlers and boot policy, operator API, CLI."""

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
    "EventKind",
    "EventRecord",
    "MeterValueRecord",
    "SqliteStore",
    "StationExists",
    "StationRecord",
    "StationState",
    "Store",
    "StoreConfig",
    "StoreError",
    "UnknownStation",
    "UploadRecord",
    "open_sqlite_store",
]
