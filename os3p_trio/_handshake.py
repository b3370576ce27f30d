"""The opening-handshake rules of OS³P, as plain functions (no I/O).

PROTOCOL-DECISIONS §1 fixes what the Central System does with an upgrade request before any
WebSocket frame flows: where the identity comes from, which subprotocol is chosen, which HTTP
status refuses what.  Authentication follows OCPP's security profiles (HTTP Basic with the
AuthorizationKey, TLS, mutual TLS).  Everything here is pure so the transports (wsproto today,
others later) share one copy of the rules and the tests can hit every branch directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "MAX_IDENTITY_LENGTH",
    "MIN_AUTHORIZATION_KEY_BYTES",
    "HandshakeRejected",
    "certificate_names",
    "choose_subprotocol",
    "connection_path",
    "generate_authorization_key",
    "hash_authorization_key",
    "parse_basic_authorization",
    "parse_identity",
    "validate_identity",
    "verify_authorization_key",
]

#: PROTOCOL-DECISIONS §1: "1–48 characters after decoding".
MAX_IDENTITY_LENGTH = 48

#: OCPP security profile 1/2: the AuthorizationKey (Basic-auth password) has at least 16 bytes.
MIN_AUTHORIZATION_KEY_BYTES = 16


class HandshakeRejected(Exception):
    """The upgrade request is refused with an HTTP status before the upgrade (no WebSocket).

    ``status`` is the HTTP status code (400, 401, 404, ...); ``reason`` a short text for logs.
    The reason is never sent on the wire: a 401 for an unknown station and for a wrong
    password must look identical to the client.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _bad_char(ch: str) -> bool:
    # C0 controls, DEL and C1 controls are "control characters" (PROTOCOL-DECISIONS §1);
    # "/" would make a second path segment, ":" breaks the Basic-auth user-id (RFC 7617 §2).
    return ch < " " or "\x7f" <= ch <= "\x9f" or ch in "/:"


def validate_identity(identity: str) -> None:
    """Raise :class:`HandshakeRejected` (400) unless ``identity`` is a valid station identity.

    PROTOCOL-DECISIONS §1: 1–48 characters, no control characters, no ``/``, no ``:``.
    """
    if not 1 <= len(identity) <= MAX_IDENTITY_LENGTH:
        raise HandshakeRejected(400, f"identity must be 1-{MAX_IDENTITY_LENGTH} characters")
    if any(_bad_char(ch) for ch in identity):
        raise HandshakeRejected(400, "identity contains a control character, '/' or ':'")


def parse_identity(target: str, endpoints: Sequence[str]) -> tuple[str, str]:
    """Split a request target into ``(endpoint, identity)``.

    §J3.1.1: the connection URL is the endpoint URL with ``/`` and the percent-encoded identity
    appended.  The target must be ``<endpoint>/<one segment>`` for one of ``endpoints``
    (query string ignored); an unknown endpoint is a 404, a bad identity a 400.
    """
    path = target.split("?", 1)[0]
    for endpoint in endpoints:
        prefix = endpoint.rstrip("/") + "/"
        if path.startswith(prefix):
            raw = path[len(prefix) :]
            if "/" in raw:
                # A second raw segment: not "<endpoint>/<identity>" for this endpoint, but a
                # longer endpoint might match; the identity itself can never contain "/".
                continue
            try:
                identity = unquote(raw, errors="strict")
            except UnicodeDecodeError:
                raise HandshakeRejected(400, "identity is not valid percent-encoded UTF-8") from None
            validate_identity(identity)
            return endpoint, identity
    raise HandshakeRejected(404, "no OS3P endpoint at this path")


def connection_path(endpoint_path: str, identity: str) -> str:
    """The client's request path: §J3.1.1 appends ``/`` and the percent-encoded identity."""
    validate_identity(identity)
    return endpoint_path.rstrip("/") + "/" + quote(identity, safe="")


def choose_subprotocol(offered: Iterable[str], supported: Sequence[str]) -> str | None:
    """The first of the client's subprotocols (its order of preference, §J3.1.3) we support.

    ``None`` means no overlap, or nothing offered: §J3.2 says the server MUST complete the
    handshake without ``Sec-WebSocket-Protocol`` and close at once.
    """
    for name in offered:
        if name in supported:
            return name
    return None


def parse_basic_authorization(value: bytes | None) -> tuple[str, bytes] | None:
    """Decode an ``Authorization: Basic`` header value into ``(user_id, password_bytes)``.

    ``None`` for a missing or malformed header (the caller answers 401 either way).  RFC 7617:
    the user-id ends at the first colon, the password may contain colons.
    """
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def _mac_input(identity: str, key: bytes) -> bytes:
    # Binding the identity into the MAC means a leaked hash of one station cannot be replayed
    # as another station's entry; the NUL cannot occur in a valid identity.
    return identity.encode("utf-8") + b"\x00" + key


def hash_authorization_key(secret: bytes, identity: str, key: bytes | str) -> bytes:
    """The stored form of a station's AuthorizationKey: HMAC-SHA256(secret, identity, key).

    A keyed hash, not a slow KDF: the key is at least 16 random bytes (no dictionary to
    attack), and a reconnect storm of 100,000 stations would spend CPU-hours in a KDF.  The
    ``secret`` lives with the server (not in the store), so a stolen store alone is useless.
    """
    if len(secret) < 16:
        raise ValueError("the server secret must be at least 16 bytes")
    raw = key.encode("utf-8") if isinstance(key, str) else key
    return hmac.new(secret, _mac_input(identity, raw), hashlib.sha256).digest()


def verify_authorization_key(secret: bytes, identity: str, key: bytes, stored: bytes | None) -> bool:
    """Check a presented key against the stored hash in constant time.

    ``stored`` may be ``None`` (unknown station): a hash is still computed and compared so
    an unknown station and a wrong key take the same time and get the same answer.
    """
    candidate = hmac.new(secret, _mac_input(identity, key), hashlib.sha256).digest()
    reference = stored if stored is not None else bytes(len(candidate))
    same = hmac.compare_digest(candidate, reference)
    return same and stored is not None and len(key) >= MIN_AUTHORIZATION_KEY_BYTES


def generate_authorization_key(nbytes: int = 20) -> str:
    """A fresh AuthorizationKey: ``nbytes`` random bytes as hex (OCPP allows 16–40 bytes)."""
    if nbytes < MIN_AUTHORIZATION_KEY_BYTES:
        raise ValueError(f"an AuthorizationKey needs at least {MIN_AUTHORIZATION_KEY_BYTES} bytes")
    return secrets.token_hex(nbytes)


def certificate_names(peercert: dict[str, Any] | None) -> set[str]:
    """Every name a client certificate asserts: subject commonName and subjectAltName values.

    ``peercert`` is what :meth:`ssl.SSLSocket.getpeercert` returns.  Mutual TLS accepts a
    station only when its identity is one of these names.
    """
    names: set[str] = set()
    if not peercert:
        return names
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(str(value))
    for _kind, value in peercert.get("subjectAltName", ()):
        names.add(str(value))
    return names
