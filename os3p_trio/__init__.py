"""os3p_trio: trio transports for OS³P, for the Central System (server) and the Substation (client).

The sans-IO :class:`os3p_core.Connection` holds every protocol rule; this package moves text and
time between it and real WebSockets (wsproto over trio streams), runs handlers, and adds the
handshake rules, authentication, TLS, keepalive and reconnects.  See ``docs/trio.md``.
"""

from ._client import ClientConfig, SubstationClient, open_substation
from ._errors import (
    CallErrorReceived,
    CallFailure,
    CallTimeout,
    ConnectionClosed,
    HandshakeFailed,
    InvalidResult,
    Os3pTrioError,
)
from ._handshake import (
    MAX_IDENTITY_LENGTH,
    MIN_AUTHORIZATION_KEY_BYTES,
    HandshakeRejected,
    certificate_names,
    choose_subprotocol,
    connection_path,
    generate_authorization_key,
    hash_authorization_key,
    parse_basic_authorization,
    parse_identity,
    validate_identity,
    verify_authorization_key,
)
from ._server import (
    CentralSystemServer,
    InMemoryRegistry,
    ServerConfig,
    StationRecord,
    StationRegistry,
    open_central_system,
    raise_open_file_limit,
    serve_central_system,
)
from ._session import Handler, Router, Session
from ._timers import TimerService
from ._transport import PendingUpgrade, TransportLimits, WebSocket, client_handshake, server_handshake

__all__ = [
    "MAX_IDENTITY_LENGTH",
    "MIN_AUTHORIZATION_KEY_BYTES",
    "CallErrorReceived",
    "CallFailure",
    "CallTimeout",
    "CentralSystemServer",
    "ClientConfig",
    "ConnectionClosed",
    "Handler",
    "HandshakeFailed",
    "HandshakeRejected",
    "InMemoryRegistry",
    "InvalidResult",
    "Os3pTrioError",
    "PendingUpgrade",
    "Router",
    "ServerConfig",
    "Session",
    "StationRecord",
    "StationRegistry",
    "SubstationClient",
    "TimerService",
    "TransportLimits",
    "WebSocket",
    "certificate_names",
    "choose_subprotocol",
    "client_handshake",
    "connection_path",
    "generate_authorization_key",
    "hash_authorization_key",
    "open_central_system",
    "open_substation",
    "parse_basic_authorization",
    "parse_identity",
    "raise_open_file_limit",
    "serve_central_system",
    "server_handshake",
    "validate_identity",
    "verify_authorization_key",
]


def __getattr__(name: str) -> str:
    # ``__version__``, looked up on first use: one distribution, one version (os3p_core._version).
    if name == "__version__":
        import os3p_core

        return str(os3p_core.__version__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
