"""Finding and reading the 42 JSON schemas of OS³P 0.4 (spec annex §M6, §M7).

The schemas live as plain files in the repository's top-level ``schemas/`` directory, one per
action and kind (``BootNotificationRequest.json``, ``BootNotificationResponse.json``, ...).
They are draft-04, transcribed from the annex and corrected per PROTOCOL-DECISIONS §8 (see
``docs/errata.md``).

Where they are found:

1. In the installed package, ``os3p_core/schemas/`` — the wheel ships the top-level
   ``schemas/`` directory there (``pyproject.toml``, ``force-include``), so a non-editable
   install finds it next to the code.
2. Failing that, the repository's own ``schemas/`` directory next to the ``os3p_core``
   package — that is what an editable install (or running from a checkout) sees, because
   ``force-include`` only applies when a wheel is built.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._actions import Action

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["SCHEMA_KINDS", "SchemaKind", "load_schema", "schema_directory", "schema_file_name"]

#: The two kinds of payload each action has: the CALL's (request) and the CALLRESULT's (response).
SchemaKind = Literal["Request", "Response"]
SCHEMA_KINDS: tuple[SchemaKind, SchemaKind] = ("Request", "Response")

_KIND_ALIASES: dict[str, SchemaKind] = {
    "Request": "Request",
    "request": "Request",
    "Response": "Response",
    "response": "Response",
}


@functools.cache
def schema_directory() -> Traversable:
    """The directory the schemas are read from (installed package first, then the checkout)."""
    # Imported here: importlib.resources costs ~10 ms at import, and only validation needs it.
    import importlib.resources

    packaged = importlib.resources.files("os3p_core").joinpath("schemas")
    if packaged.is_dir():
        return packaged
    # Editable install / source checkout: <repo>/os3p_core/_schemas.py -> <repo>/schemas
    checkout = Path(__file__).resolve().parent.parent / "schemas"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        "os3p schemas not found: neither the installed package's os3p_core/schemas nor the "
        f"checkout's {checkout} exists (a broken installation?)"
    )


def _normalise(action: str, kind: str) -> tuple[Action, SchemaKind]:
    try:
        act = Action(action)
    except ValueError:
        # An unknown action is a lookup miss, like a missing dict key (the connection maps it to
        # NotImplemented before it ever asks for a schema, PROTOCOL-DECISIONS §3).
        raise KeyError(action) from None
    try:
        return act, _KIND_ALIASES[kind]
    except KeyError:
        raise ValueError(f"schema kind must be 'Request' or 'Response', not {kind!r}") from None


def schema_file_name(action: str, kind: str) -> str:
    """The file name of a schema: ``schema_file_name("Heartbeat", "Request") == "HeartbeatRequest.json"``."""
    act, knd = _normalise(action, kind)
    return f"{act.value}{knd}.json"


@functools.cache
def _schema_text(action: Action, kind: SchemaKind) -> str:
    return schema_directory().joinpath(f"{action.value}{kind}.json").read_text(encoding="utf-8")


def raw_schema(action: str, kind: str) -> dict[str, Any]:
    """Parse a schema file (fresh dict each call). Private helper shared with the validators."""
    act, knd = _normalise(action, kind)
    schema = json.loads(_schema_text(act, knd))
    if not isinstance(schema, dict):  # pragma: no cover - the files are ours; a test checks them
        raise TypeError(f"schema {act.value}{knd}.json is not a JSON object")
    return schema


def load_schema(action: str, kind: str) -> dict[str, Any]:
    """The JSON schema (draft-04, as a dict) of an action's request or response payload.

    ``kind`` is ``"Request"`` or ``"Response"`` (lower case accepted too).  Every call returns a
    fresh dict, so the caller may modify it.  An unknown ``action`` raises :class:`KeyError`;
    an unknown ``kind`` raises :class:`ValueError`.
    """
    return raw_schema(action, kind)
