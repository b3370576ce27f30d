"""Shared fixtures for tests that need a real server (see ``servers.py``).

``pg_server`` is one throwaway PostgreSQL cluster for the whole test session; ``pg_url`` gives each test a
fresh, empty database in it, so tests never see each other's rows.  ``redis`` gives each test its own
redis-server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import PostgresServer, RedisServer, postgres_server, redis_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server
