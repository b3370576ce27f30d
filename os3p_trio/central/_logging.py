"""Logging of the Central System: ``--log-format text|json`` and the security-event logger.

Everything logs through the standard library.  :func:`configure_logging` installs one handler on the root
logger writing either the classic text lines or one JSON object per line (for log shippers).

Security events go to their own logger, :data:`SECURITY_LOGGER` (``os3p.security``), so an operator can
route them elsewhere (e.g. ``logging.handlers.SysLogHandler``, IEC 62351-14 style security event logs)
without the rest.  Each record carries structured fields in ``record.os3p`` (``event``, ``identity``,
``status``, ``who``, ``action``, ...), which the JSON formatter writes as top-level keys.  Events:

* ``handshake_refused``: an upgrade refused (400 bad identity/path, 401 authentication failed, 403 client
  certificate does not name the identity, 404 unknown station, 503 connection limit);
* ``connection_replaced``: a newer authenticated connection replaced an older one (PROTOCOL-DECISIONS §1);
* ``security_error``: a CALL refused with ``SecurityError`` (boot gating, annex §3);
* ``operator_action``: a state-changing operator request (who: ``token``, ``console-session`` or
  ``loopback``; what: method, route, station, action), with its outcome;
* ``console_login`` / ``console_login_failed`` / ``console_logout``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, TextIO

__all__ = ["SECURITY_LOGGER", "JsonFormatter", "configure_logging", "security_event"]

#: The logger of security events (route it with ``logging.getLogger("os3p.security").addHandler(...)``).
SECURITY_LOGGER: Final = "os3p.security"
_security = logging.getLogger(SECURITY_LOGGER)
# Standard LogRecord attributes: everything else a caller passed in ``extra`` is written as a field.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ms), ``level``, ``logger``, ``message``, the structured
    fields of ``record.os3p`` and any other ``extra`` fields, and ``exception`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key == "os3p" and isinstance(value, dict):
                out.update(value)
            elif key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(
    log_format: str = "text", level: int = logging.WARNING, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as ``text`` or ``json`` lines; security events are
    logged at INFO and always pass (their logger is set to INFO).  Returns the installed handler."""
    if log_format not in ("text", "json"):
        raise ValueError("log format must be text or json")
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _security.setLevel(logging.INFO)
    return handler


def security_event(event: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one security event on :data:`SECURITY_LOGGER` with structured ``fields``."""
    if _security.isEnabledFor(level):
        _security.log(level, "%s: %s", event, message, extra={"os3p": {"event": event, **fields}})
