"""Shared helpers for the ``os3p_trio`` tests (no tests here): a Central System router whose boot
answer the test controls, a standard BootNotification, fast configs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import trio

from os3p_core import Action
from os3p_core.payloads import (
    BootNotificationRequest,
    BootNotificationResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    MeterValuesRequest,
    MeterValuesResponse,
    RegistrationStatus,
    StreetlightStatusNotificationRequest,
    StreetlightStatusNotificationResponse,
)
from os3p_trio import ClientConfig, Router, ServerConfig, Session, WebSocket, client_handshake

BOOT = BootNotificationRequest(
    vendor="Acme",
    model="SS-1",
    station_number="7",
    serial_number="SN-0001",
    firmware_version="1.0.0",
    iccid="8931000000000000001",
    imsi="204080000000001",
)

FAST_SERVER = ServerConfig(close_timeout=1.0, handshake_timeout=2.0)
FAST_CLIENT = ClientConfig(reconnect_base=0.05, reconnect_max=0.2, close_timeout=0.5, connect_timeout=5.0)


def now() -> datetime:
    return datetime.now(UTC)


class CentralApp:
    """A scriptable Central System application: boot answers come from ``boot_answers`` (the
    last one repeats), every station-initiated call is recorded in ``received``."""

    def __init__(self, *boot_answers: tuple[RegistrationStatus, int]) -> None:
        self.boot_answers = list(boot_answers) or [(RegistrationStatus.ACCEPTED, 300)]
        self.received: list[tuple[str, str, Any]] = []
        self.changed = trio.Event()
        self.router = Router()
        self.router.add(Action.BOOT_NOTIFICATION, self.boot)
        self.router.add(Action.HEARTBEAT, self.heartbeat)
        self.router.add(Action.METER_VALUES, self.meter_values)
        self.router.add(Action.STREETLIGHT_STATUS_NOTIFICATION, self.streetlight_status)

    def _record(self, session: Session, request: Any) -> None:
        self.received.append((session.identity, type(request).action.value, request))
        self.changed.set()
        self.changed = trio.Event()

    def actions(self, identity: str | None = None) -> list[str]:
        return [a for i, a, _ in self.received if identity is None or i == identity]

    async def wait_for(self, action: str, count: int = 1) -> None:
        while self.actions().count(action) < count:
            await self.changed.wait()

    async def boot(self, session: Session, request: BootNotificationRequest) -> BootNotificationResponse:
        self._record(session, request)
        status, interval = self.boot_answers.pop(0) if len(self.boot_answers) > 1 else self.boot_answers[0]
        return BootNotificationResponse(status=status, current_time=now(), interval=interval)

    def heartbeat(self, session: Session, request: HeartbeatRequest) -> HeartbeatResponse:
        self._record(session, request)
        return HeartbeatResponse(current_time=now())

    async def meter_values(self, session: Session, request: MeterValuesRequest) -> MeterValuesResponse:
        self._record(session, request)
        return MeterValuesResponse()

    async def streetlight_status(
        self, session: Session, request: StreetlightStatusNotificationRequest
    ) -> StreetlightStatusNotificationResponse:
        self._record(session, request)
        return StreetlightStatusNotificationResponse()


async def raw_station(port: int, identity: str) -> WebSocket:
    """A bare WebSocket client of the server on ``port`` (no os3p Connection behind it): connects to
    ``/OS3P/<identity>`` offering ``OS3P1.0``, for tests that speak raw frames."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return await client_handshake(stream, host="h", target=f"/OS3P/{identity}", subprotocols=["OS3P1.0"])
