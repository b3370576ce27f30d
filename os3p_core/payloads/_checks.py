"""Cheap attrs validators for the payload classes.

House style (ARCHITECTURE.md, rule 3): constructors validate, so user code cannot build a payload
that breaks its schema.  Each check is one type test plus at most one comparison; a failure raises
:class:`PayloadValueError`, a ``ValueError`` that names the class, the field, the JSON-schema rule
that was broken (``enum``, ``maximum``, ``maxLength``...) and the field's wire name, so the
converter can turn it into a :class:`~os3p_core.SchemaViolation` with the right CallError code
(PROTOCOL-DECISIONS §3).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "PayloadValueError",
    "aware_datetime",
    "boolean",
    "enum_member",
    "instance",
    "integer",
    "items",
    "string",
    "wire_name",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def wire_name(attribute_name: str) -> str:
    """The camelCase wire name of a snake_case attribute (``action_`` → ``action``)."""
    head, *rest = attribute_name.rstrip("_").split("_")
    # "mv" style acronyms do not occur in field names; plain capitalisation is exact for all 21 actions.
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class PayloadValueError(ValueError):
    """A payload field broke its schema rule (raised by the payload constructors).

    ``rule`` is the JSON-schema keyword (``type``, ``enum``, ``minimum``, ``maximum``,
    ``maxLength``, ``minItems``, ``maxItems``, ``format``); ``field`` the wire name of the field.
    """

    def __init__(self, message: str, rule: str, field: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field


def _fail(inst: Any, attribute: attrs.Attribute[Any], rule: str, what: str) -> PayloadValueError:
    return PayloadValueError(
        f"{type(inst).__name__}.{attribute.name}: {what}", rule=rule, field=wire_name(attribute.name)
    )


def enum_member(cls: type[enum.Enum], *, optional: bool = False) -> Validator:
    """The value must be a member of ``cls`` (not merely an equal string), or ``None`` if optional."""
    if len(cls) <= 8:
        allowed = "expected one of " + ", ".join(repr(m.value) for m in cls)
    else:
        allowed = f"expected one of the {len(cls)} {cls.__name__} values"

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value.__class__ is cls or (optional and value is None):
            return
        if isinstance(value, str) and value in cls._value2member_map_:
            hint = f"; use {cls.__name__}({value!r})"
        else:
            hint = f"; {allowed}"
        raise _fail(inst, attribute, "enum", f"{value!r} is not a valid {cls.__name__}{hint}")

    return check


def integer(*, minimum: int | None = None, maximum: int | None = None, optional: bool = False) -> Validator:
    """An ``int`` (never a ``bool``) within the inclusive bounds, or ``None`` if optional."""

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value.__class__ is not int:
            if optional and value is None:
                return
            raise _fail(inst, attribute, "type", f"expected an integer, got {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise _fail(inst, attribute, "minimum", f"{value} is less than the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise _fail(inst, attribute, "maximum", f"{value} is greater than the maximum {maximum}")

    return check


#: JSON-schema ``format: uri`` exactly as the validators check it (fastjsonschema's draft-04 regex),
#: so that a typed payload accepts precisely what the schema accepts.
_URI_RE = re.compile(r"^\w+:(\/?\/?)[^\s]+\Z")


def string(*, max_length: int | None = None, uri: bool = False, optional: bool = False) -> Validator:
    """A ``str`` of at most ``max_length`` characters (a URI if ``uri``), or ``None`` if optional."""

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value.__class__ is not str:
            if optional and value is None:
                return
            if not isinstance(value, str):
                raise _fail(inst, attribute, "type", f"expected a string, got {type(value).__name__}")
        if max_length is not None and len(value) > max_length:
            raise _fail(
                inst, attribute, "maxLength", f"{len(value)} characters, more than the maximum {max_length}"
            )
        if uri and _URI_RE.match(value) is None:
            raise _fail(inst, attribute, "format", f"{value[:40]!r} is not a URI")

    return check


def boolean(*, optional: bool = False) -> Validator:
    """A ``bool``, or ``None`` if optional."""

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value.__class__ is bool or (optional and value is None):
            return
        raise _fail(inst, attribute, "type", f"expected a boolean, got {type(value).__name__}")

    return check


def aware_datetime(*, optional: bool = False) -> Validator:
    """A timezone-aware ``datetime`` (a naive one has no meaning on the wire), or ``None`` if optional."""

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, datetime):
            if value.utcoffset() is not None:
                return
            raise _fail(
                inst,
                attribute,
                "format",
                "naive datetime; give it a tzinfo (local time is the station zone, PROTOCOL-DECISIONS §8)",
            )
        if optional and value is None:
            return
        raise _fail(inst, attribute, "type", f"expected a datetime, got {type(value).__name__}")

    return check


def instance(cls: type) -> Validator:
    """An instance of ``cls`` (a nested value class)."""

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, cls):
            raise _fail(inst, attribute, "type", f"expected a {cls.__name__}, got {type(value).__name__}")

    return check


def items(
    item_type: type, *, min_items: int = 0, max_items: int | None = None, optional: bool = False
) -> Validator:
    """A ``tuple`` of ``item_type`` with a bounded length, or ``None`` if optional.

    Tuples, not lists: the payload classes are frozen and hashable all the way down.
    """

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value.__class__ is not tuple:
            if optional and value is None:
                return
            raise _fail(inst, attribute, "type", f"expected a tuple, got {type(value).__name__}")
        if len(value) < min_items:
            raise _fail(
                inst, attribute, "minItems", f"{len(value)} items, fewer than the minimum {min_items}"
            )
        if max_items is not None and len(value) > max_items:
            raise _fail(inst, attribute, "maxItems", f"{len(value)} items, more than the maximum {max_items}")
        for index, item in enumerate(value):
            if not isinstance(item, item_type):
                raise _fail(
                    inst,
                    attribute,
                    "type",
                    f"item {index} is a {type(item).__name__}, expected {item_type.__name__}",
                )

    return check
