"""The one exception hierarchy of ``os3p_trio``.

::

    Os3pTrioError
     ├── HandshakeFailed          the server refused the upgrade (client side), or no subprotocol
     └── CallFailure              an outgoing call produced no result
          ├── CallErrorReceived   the peer answered with a CALLERROR (its code, description, details)
          ├── CallTimeout         no answer before the call's deadline (PROTOCOL-DECISIONS §4)
          ├── InvalidResult       the peer's CALLRESULT broke the response schema (§3, last paragraph)
          └── ConnectionClosed    the connection closed first; also raised by any use of a closed connection

``except CallFailure`` therefore catches every way ``await session.call(request)`` can fail.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CallErrorReceived",
    "CallFailure",
    "CallTimeout",
    "ConnectionClosed",
    "HandshakeFailed",
    "InvalidResult",
    "Os3pTrioError",
]


class Os3pTrioError(Exception):
    """Base class of every exception ``os3p_trio`` raises on purpose."""


class HandshakeFailed(Os3pTrioError):
    """The opening handshake did not produce a usable OS³P connection.

    ``status`` is the server's HTTP status (401, 404, ...) or ``None`` when the server upgraded
    without an acceptable subprotocol (§J3.2) or the handshake broke.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CallFailure(Os3pTrioError):
    """An outgoing call produced no CALLRESULT."""


class CallErrorReceived(CallFailure):
    """The peer answered the call with a CALLERROR (§J4.4)."""

    def __init__(self, action: str, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{action}: peer answered CALLERROR {code}: {description}")
        self.action = action
        self.code = code
        self.description = description
        self.details = details


class CallTimeout(CallFailure):
    """No answer arrived before the call's deadline (PROTOCOL-DECISIONS §4, default 30 s)."""


class InvalidResult(CallFailure):
    """The peer's CALLRESULT payload broke the response schema (PROTOCOL-DECISIONS §3)."""


class ConnectionClosed(CallFailure):
    """The WebSocket connection is closed (``code``/``reason`` of the close, 1006 if none)."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason
