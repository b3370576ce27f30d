"""A cluster node as its own process, for the kill -9 tests:
``python cluster_node.py PG_URL REDIS_URL NODE FILES``
prints ``ws <url>`` and ``api <url>`` once it listens, then serves until killed."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from os3p_trio.central import FileArea, open_central_service
from os3p_trio.central._cluster import ClusterConfig
from os3p_trio.central._postgres import open_postgres_store


async def main(pg_url: str, redis_url: str, node: str, files: str) -> None:
    config = ClusterConfig(redis_url=redis_url, node_id=node, node_ttl=1.0, refresh_interval=0.2)
    area = FileArea(Path(files) / "fw", Path(files) / "up")
    async with (
        open_postgres_store(pg_url) as store,
        open_central_service(store, files=area, cluster=config) as service,
    ):
        print("ws", service.ws_url, flush=True)
        print("api", service.api_url, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:5])
