"""The throwaway servers start, answer, and stop (a failure here explains every store/cluster failure)."""

from __future__ import annotations

import socket

import psycopg
from servers import PostgresServer, RedisServer, haproxy_binary


def test_postgres_databases_are_separate(pg_server: PostgresServer) -> None:
    first, second = pg_server.create_database(), pg_server.create_database()
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with psycopg.connect(second) as conn:
        rows = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'").fetchone()
    assert rows == (0,)


def test_redis_answers_ping_and_restarts(redis: RedisServer) -> None:
    def ping() -> bytes:
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)

    assert ping() == b"+PONG\r\n"
    redis.stop()
    redis.start()
    assert ping() == b"+PONG\r\n"


def test_haproxy_is_installed() -> None:
    assert haproxy_binary()
