"""Bounds before the upgrade (issue 16): half-open handshakes from one address cannot take every slot,
the refusals are logged once per interval (no tracebacks), and the open-file soft limit is raised."""

from __future__ import annotations

import logging
import resource

import pytest
import trio
from test_adversarial_transport import upgrade
from test_trio_support import CentralApp

from os3p_trio import ServerConfig, open_central_system, raise_open_file_limit


async def test_half_open_handshakes_from_one_address_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="os3p_trio")
    cfg = ServerConfig(max_pending_handshakes_per_address=16, handshake_timeout=30.0)
    app = CentralApp()
    async with open_central_system(app.router, 0, host="127.0.0.1", config=cfg) as server:
        attackers = []
        for _ in range(60):
            sock = trio.socket.socket()
            await sock.bind(("127.0.0.2", 0))
            await sock.connect(("127.0.0.1", server.port))
            attackers.append(sock)
        with trio.fail_after(5):
            while server.pending_handshakes < 16:
                await trio.sleep(0.01)
            await trio.sleep(0.2)
        assert server.pending_handshakes == 16  # the other 44 were closed at once
        # A station from another address is not held up.
        with trio.fail_after(5):
            stream = await upgrade(server.port, "S1")
            await stream.aclose()
        for sock in attackers:
            sock.close()
    refusals = [r for r in caplog.records if "refused new TCP connections" in r.getMessage()]
    assert len(refusals) == 1  # one summary line per interval
    assert not any(r.exc_info for r in caplog.records)


def test_open_file_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft == hard and hard > 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_open_file_limit() == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
