"""Test helpers: two sans-IO connections joined by an in-memory link (after h11's tests/helpers.py).

Only the public API of ``os3p_core`` is used.  Other test modules (trio, simulator, central) may
import these helpers and the sample payloads.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from os3p_core import (
    Call,
    CallReceived,
    Config,
    Connection,
    Event,
    ResultReceived,
    Role,
)

# ---------------------------------------------------------------------------------------------
# Valid sample payloads (annex §M6/§M7)

BOOT_REQUEST: dict[str, Any] = {
    "vendor": "BrandX",
    "model": "SUBS-A1",
    "stationNumber": "987654321",
    "serialNumber": "AQ1234VB5678",
    "firmwareVersion": "1.1.0",
    "iccid": "83310415107943019317",
    "imsi": "080921439201835338",
}
NOW_TEXT = "2026-11-26T08:00:00Z"
HEARTBEAT_RESPONSE: dict[str, Any] = {"currentTime": NOW_TEXT}
STATUS_REQUEST: dict[str, Any] = {"status": "Ok", "errorCode": "NoError", "timestamp": NOW_TEXT}
RESET_REQUEST: dict[str, Any] = {"type": "Soft"}
RESET_RESPONSE: dict[str, Any] = {"status": "Accepted"}
GET_CONFIGURATION_RESPONSE: dict[str, Any] = {"configurationKey": [{"key": "TimeZone", "readonly": False}]}


def boot_response(status: str = "Accepted", interval: int = 300) -> dict[str, Any]:
    """A BootNotificationResponse payload."""
    return {"status": status, "currentTime": NOW_TEXT, "interval": interval}


def trigger_request(action: str) -> dict[str, Any]:
    """A TriggerMessageRequest asking for ``action``."""
    return {"requestedMessage": action}


def meter_values_request(samples: int = 30) -> dict[str, Any]:
    """A MeterValues request with one meterValue of ``samples`` sampledValues."""
    measurands = ["Voltage.L1N", "Voltage.L2N", "Voltage.L3N", "Current.L1", "Current.L2", "Current.L3"]
    return {
        "meterValue": [
            {
                "timestamp": NOW_TEXT,
                "sampledValue": [
                    {
                        "value": f"{230 + i * 0.1:.1f}",
                        "measurand": measurands[i % len(measurands)],
                        "unit": "V" if i % 6 < 3 else "A",
                        "context": "Sample.Periodic",
                        "location": "Out",
                    }
                    for i in range(samples)
                ],
            }
        ]
    }


def counter_ids(prefix: str) -> Callable[[], str]:
    """A deterministic id factory: ``prefix0``, ``prefix1``, ..."""
    numbers = itertools.count()
    return lambda: f"{prefix}{next(numbers)}"


# ---------------------------------------------------------------------------------------------


class ConnectionPair:
    """A Central System and a Substation joined by an in-memory, lossless, in-order link.

    ``now`` is the shared virtual clock.  Messages move only when :meth:`flush` (or a helper that
    calls it) says so, so tests control interleaving exactly.  ``wire`` records every message as
    ``(sender role, text)``.
    """

    def __init__(
        self,
        *,
        central_config: Config | None = None,
        substation_config: Config | None = None,
        previously_accepted: bool = False,
    ) -> None:
        self.central = Connection(
            Role.CENTRAL_SYSTEM,
            central_config or Config(id_factory=counter_ids("cs-")),
            previously_accepted=previously_accepted,
        )
        self.substation = Connection(
            Role.SUBSTATION,
            substation_config or Config(id_factory=counter_ids("ss-")),
            previously_accepted=previously_accepted,
        )
        self.now = 0.0
        self.wire: list[tuple[Role, str]] = []

    @property
    def conns(self) -> tuple[Connection, Connection]:
        return self.central, self.substation

    def peer(self, conn: Connection) -> Connection:
        return self.substation if conn is self.central else self.central

    def flush(self, conn: Connection) -> list[str]:
        """Deliver everything ``conn`` has to send to its peer; return the texts."""
        texts = conn.messages_to_send()
        peer = self.peer(conn)
        for text in texts:
            self.wire.append((conn.role, text))
            peer.receive_message(text, self.now)
        return texts

    def flush_all(self) -> None:
        """Deliver in both directions until both outboxes are empty."""
        for _ in range(100):
            if not (self.flush(self.central) or self.flush(self.substation)):
                return
        raise AssertionError("the link did not settle")

    @staticmethod
    def events(conn: Connection) -> list[Event]:
        """Drain ``conn``'s events."""
        out: list[Event] = []
        while (event := conn.next_event()) is not None:
            out.append(event)
        return out

    def call(
        self, caller: Connection, action: str, payload: Any = None, response: Any = None
    ) -> tuple[CallReceived, list[Event]]:
        """A complete round trip: ``caller`` sends a call, the peer answers with ``response``.

        Returns the peer's CallReceived and the caller's events.
        """
        caller.send(Call(action, {} if payload is None else payload), self.now)
        self.flush(caller)
        callee = self.peer(caller)
        received = [e for e in self.events(callee) if isinstance(e, CallReceived)]
        assert len(received) == 1, received
        callee.send(received[0].result({} if response is None else response), self.now)
        self.flush(callee)
        return received[0], self.events(caller)

    def boot(self, status: str = "Accepted", interval: int = 300) -> list[Event]:
        """The Substation boots; the Central System answers ``status``.  Returns the Substation's events."""
        _, events = self.call(
            self.substation, "BootNotification", BOOT_REQUEST, boot_response(status, interval)
        )
        self.events(self.central)  # the Central System's BootStateChanged
        assert isinstance(events[0], ResultReceived)
        return events
