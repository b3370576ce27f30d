"""One entry point that opens whichever store a ``--db`` argument names.

A libpq URL (``postgresql://`` or ``postgres://``) opens the PostgreSQL store (:mod:`._postgres`); anything
else -- a path, or an :class:`os.PathLike` -- is a SQLite file (:func:`~._sqlite.open_sqlite_store`).  The
CLI and the demo call only :func:`open_store`, so every command accepts both.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._postgres import PostgresConfig, open_postgres_store
from ._sqlite import StoreConfig, open_sqlite_store
from ._store import RetentionPolicy, Store

__all__ = ["is_postgres_url", "open_store"]

_PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str | os.PathLike[str]) -> bool:
    """True when ``db`` is a PostgreSQL libpq URL (a path, even one that looks like a URL, is SQLite)."""
    return isinstance(db, str) and db.lower().startswith(_PG_SCHEMES)


@asynccontextmanager
async def open_store(
    db: str | os.PathLike[str],
    *,
    retention: RetentionPolicy | None = None,
    sqlite_config: StoreConfig | None = None,
    postgres_config: PostgresConfig | None = None,
) -> AsyncIterator[Store]:
    """Open the store ``db`` names and run it until the block exits.

    ``retention`` is the store's :class:`RetentionPolicy` (applied by ``apply_retention``);
    ``sqlite_config`` / ``postgres_config`` tune the store that is chosen and are ignored by the other.
    Failures to open raise
    :class:`~._store.StoreUnavailable` with a one-line message.
    """
    if is_postgres_url(db):
        async with open_postgres_store(str(db), postgres_config, retention=retention) as pg_store:
            yield pg_store
        return
    async with open_sqlite_store(os.fspath(db), sqlite_config, retention=retention) as sqlite_store:
        yield sqlite_store
