"""SQLite schema versions: a database of the previous release upgrades in place with nothing lost, a newer one
is refused, and a failed upgrade leaves the file exactly as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest

from os3p_trio.central import SchemaTooNew, StoreUnavailable, _sqlite, open_sqlite_store

FIXTURES = Path(__file__).parent / "fixtures"


def _plain(value: Any) -> Any:
    # The same conversion the fixture script used for the expected reads.
    if attrs.has(type(value)):
        return {k: _plain(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _copy_v1(tmp_path: Path) -> Path:
    db = tmp_path / "central.sqlite"
    shutil.copyfile(FIXTURES / "central-v1.db", db)
    return db


def _version(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


async def test_v1_database_upgrades_in_place_with_nothing_lost(tmp_path: Path) -> None:
    expected = json.loads((FIXTURES / "central-v1.expected.json").read_text())
    db = _copy_v1(tmp_path)
    assert _version(db) == 1
    async with open_sqlite_store(db) as store:
        stations = await store.list_stations()
        assert [s.identity for s in stations] == sorted(expected["stations"])
        for identity, want in expected["stations"].items():
            assert _plain(await store.get_station(identity)) == want["record"]
            assert _plain(await store.meter_values(identity, limit=100_000)) == want["meter_values"]
            assert _plain(await store.events(identity, limit=100_000)) == want["events"]
            assert _plain(await store.uploads(identity)) == want["uploads"]
            assert _plain(await store.station_state(identity)) == want["state"]
        assert _plain(await store.fleet_summary()) == expected["summary"]
        # The upgraded file is a working store of the new version: fencing columns, new writes.
        epoch = await store.claim_connection("SUBS-0001", "node-a", 2e9)
        assert epoch == 1
        mv = [
            {"timestamp": "2026-07-01T00:00:00Z", "sampledValue": [{"measurand": "Frequency", "value": "50"}]}
        ]
        assert await store.record_meter_values("SUBS-0001", mv, 2e9) == 1
    assert _version(db) == _sqlite.SCHEMA_VERSION
    # Opening again is a no-op.
    async with open_sqlite_store(db) as store:
        assert len(await store.list_stations()) == len(expected["stations"])


async def test_newer_database_is_refused_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite"
    async with open_sqlite_store(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(_sqlite.SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew) as info:
        async with open_sqlite_store(db):
            pass
    message = str(info.value)
    assert "\n" not in message
    assert str(db) in message
    assert "newer" in message
    assert _version(db) == _sqlite.SCHEMA_VERSION + 1


def _digest(db: Path) -> str:
    # The logical content (schema and every row), not the bytes: opening switches the file to WAL mode.
    conn = sqlite3.connect(db)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


async def test_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _copy_v1(tmp_path)
    before = _digest(db)
    real = _sqlite._MIGRATIONS[1]

    def half_then_fail(conn: sqlite3.Connection) -> None:
        real(conn)  # the whole step ran (tables renamed, rows copied, old tables dropped)...
        raise sqlite3.OperationalError("disk I/O error (injected)")  # ...and then the upgrade failed

    monkeypatch.setitem(_sqlite._MIGRATIONS, 1, half_then_fail)
    with pytest.raises(StoreUnavailable) as info:
        async with open_sqlite_store(db):
            pass
    message = str(info.value)
    assert "\n" not in message
    assert "injected" in message
    assert "unchanged" in message
    # Nothing half-migrated: the same schema and rows as before, and still a version 1 database.
    assert _digest(db) == before
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "meter_values" in tables
        assert "meter_samples" not in tables
    finally:
        conn.close()
    assert _version(db) == 1
    # And the real upgrade still works afterwards.
    monkeypatch.setitem(_sqlite._MIGRATIONS, 1, real)
    async with open_sqlite_store(db) as store:
        assert len(await store.meter_values("SUBS-0001", limit=100_000)) > 0


async def test_a_file_that_is_not_a_database_gives_one_line(tmp_path: Path) -> None:
    db = tmp_path / "junk.sqlite"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable) as info:
        async with open_sqlite_store(db):
            pass
    assert "\n" not in str(info.value)
    assert str(db) in str(info.value)
