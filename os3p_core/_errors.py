"""Errors, and whose fault they are.

Following h11 (``h11/_util.py``) and h2 (``h2/exceptions.py``): an error says who broke the
protocol and carries the CallError code that answers it (spec §J4.4, Table 7).

- :class:`LocalProtocolError`: this application misused the connection (sent a bad payload,
  answered a call twice, called before boot was accepted). Nothing was sent.
- :class:`RemoteProtocolError`: the peer broke the protocol. Where the peer can be told, the
  connection has already queued the CALLERROR in its outbox.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "ErrorCode",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SchemaViolation",
]


class ErrorCode(enum.StrEnum):
    """CallError codes of spec §J4.4 Table 7, spelled exactly as the spec spells them."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMATION_VIOLATION = "FormationViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    # Sic: "Occurence" is the spec's spelling and the wire value (PROTOCOL-DECISIONS §3).
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"


class ProtocolError(Exception):
    """Base class: a breach of the OS³P protocol, with the CallError that describes it.

    ``code`` is the :class:`ErrorCode` to answer with, ``description`` a short human sentence
    (at most 255 characters on the wire), ``details`` a JSON object (never ``None``).
    """

    def __init__(
        self,
        description: str,
        code: ErrorCode = ErrorCode.GENERIC_ERROR,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.code = code
        self.details: dict[str, Any] = {} if details is None else details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, code={self.code.value!r})"


class LocalProtocolError(ProtocolError):
    """The local application tried to do something the protocol forbids. Nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class SchemaViolation(ValueError):
    """A payload broke its JSON schema.

    Raised by the validators; the connection turns it into a :class:`LocalProtocolError`
    (outgoing) or a CALLERROR / :class:`RemoteProtocolError` (incoming).  ``code`` follows
    PROTOCOL-DECISIONS §3 (rule kind -> error code); ``path`` is the JSON path of the offending
    value (``data.meterValue[0].timestamp`` style), ``rule`` the schema keyword that failed.
    """

    def __init__(self, code: ErrorCode, description: str, path: str, rule: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.path = path
        self.rule = rule

    @property
    def details(self) -> dict[str, Any]:
        """The CALLERROR ``errorDetails`` object for this violation."""
        return {"path": self.path, "rule": self.rule}

    def __repr__(self) -> str:
        return f"SchemaViolation({self.code.value}, path={self.path!r}, rule={self.rule!r})"
