"""The payload converter: wire dicts ↔ typed payload objects (:mod:`os3p_core.payloads`).

Theory of operation
-------------------

One cattrs ``Converter`` per :class:`PayloadConverter` does all the work.  Its hooks for the
payload classes come from ``cattrs.gen.make_dict_structure_fn`` / ``make_dict_unstructure_fn``
with every attribute renamed to its camelCase wire name, and are generated lazily, once per
class, the first time that class is (un)structured; after that a call is one dict lookup plus
the generated function.  ``benchmarks/RESULTS.md`` ("typed payloads") has the figures.

Rules the hooks implement:

- camelCase on the wire, snake_case on the objects (``stationNumber`` ↔ ``station_number``;
  OverrideStreetlight's wire ``action`` ↔ ``action_``, because ``action`` is the ClassVar
  naming the OS³P action of every payload class).
- An optional field that is ``None`` is left out of the dict, never sent as ``null``
  (``_cattrs_omit_if_default``; every optional field defaults to ``None``).
- Enums ↔ their wire strings; tuples ↔ lists.
- ``datetime`` ↔ RFC 3339 string.  Output always carries an offset: ``Z`` for UTC, ``±HH:MM``
  otherwise, with milliseconds (or microseconds) only when the value has them.  On input, a
  date-time without offset is local time of the station (PROTOCOL-DECISIONS §8), i.e. in the
  converter's ``local_tz`` (default ``Europe/Amsterdam``, the default of the ``TimeZone``
  configuration key, PROTOCOL-DECISIONS §6).  A wall time that does not exist or occurs twice
  resolves with ``fold=0`` (STREETLIGHT-SEMANTICS "Points in time").
- PROTOCOL-DECISIONS §8 errata on input: SetStreetlightProfile's ``clearSchedule`` is an alias of
  ``clearAllSchedules`` (if both are present, ``clearAllSchedules`` wins); GetEffectiveStreetlightDaySchedule
  responses may carry a ``status``, which is dropped.
- Strict primitives, as strict as the validators: a string field takes only a ``str``, an
  integer field only an ``int`` (not ``1.0``, not ``True``), a boolean field only a ``bool``, and
  ``null`` is nobody's value.  cattrs' defaults would quietly coerce ``"12"`` to ``12`` or
  ``"false"`` to ``True``.
- Unknown keys are errors where the schema says ``additionalProperties: false``, i.e. everywhere
  except inside ``meterValue`` / ``sampledValue`` items, ``configurationKey`` items and
  ``streetlightProfiles`` items, whose annex schemas are open: there they are ignored.

Typed structuring is a choice, not a tax: the connection validates and delivers plain dicts and
never calls this module by itself.  Structuring assumes nothing about prior validation, though:
any input that does not fit raises :class:`~os3p_core.SchemaViolation` with the CallError code
of PROTOCOL-DECISIONS §3, the JSON path (``data.meterValue[0].sampledValue[1].measurand``) and
the rule, the same shape the validators produce.

Importing this module imports neither cattrs nor the payload classes (together ~50 ms); the
default converter is built, and they are imported, on first use.
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Final, TypeVar
from zoneinfo import ZoneInfo

import attrs

from ._errors import ErrorCode, SchemaViolation

if TYPE_CHECKING:
    import cattrs

    from .payloads import Payload

__all__ = [
    "DEFAULT_TIME_ZONE",
    "PayloadConverter",
    "default_converter",
    "format_datetime",
    "parse_datetime",
    "request_class",
    "response_class",
    "structure_request",
    "structure_response",
    "unstructure",
]

P = TypeVar("P")

#: The station zone when nothing else is configured: the ``TimeZone`` key's default (PROTOCOL-DECISIONS §6).
DEFAULT_TIME_ZONE: Final = "Europe/Amsterdam"

#: Longest errorDescription on the wire (PROTOCOL-DECISIONS §3).
_MAX_DESCRIPTION: Final = 255
#: Longest JSON path we report (the validators' bound too, os3p_core._validation).
_MAX_PATH: Final = 200


# ---------------------------------------------------------------------------------------------
# Date-times
# ---------------------------------------------------------------------------------------------

# RFC 3339 §5.6 date-time with the offset optional (PROTOCOL-DECISIONS §8), "T"/"Z" in either
# case: the same language as the validators' ``date-time`` format (os3p_core._validation).
_DATE_TIME_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)


def parse_datetime(text: str, local_tz: tzinfo) -> datetime:
    """Parse an OS³P date-time into an aware ``datetime``.

    No offset means local time of the station, ``local_tz`` (PROTOCOL-DECISIONS §8); the result
    then has the fixed offset that ``local_tz`` had at that wall time.  More than
    six fractional digits are truncated to microseconds.  Raises ``ValueError`` for anything that
    is not an RFC 3339 date-time (offset optional) or not a real instant (``2015-02-30``, ``:60``).
    """
    if _DATE_TIME_RE.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    # fromisoformat (C, Python 3.11) takes any date/time separator, "t" included, and any number of
    # fractional digits, but only an upper-case "Z".
    value = datetime.fromisoformat(text[:-1] + "Z" if text[-1] == "z" else text)
    if value.tzinfo is None:
        # fold=0: a repeated wall time is its first occurrence, a skipped one takes the offset in
        # force before the gap (STREETLIGHT-SEMANTICS "Points in time").  The result carries that
        # fixed offset rather than the zone itself: Python never finds a datetime in a DST fold
        # equal to one in another zone (PEP 495), and a payload's value is an instant.
        offset = value.replace(tzinfo=local_tz).utcoffset()
        value = value.replace(tzinfo=_fixed_offset(offset) if offset else UTC)
    return value


@functools.lru_cache(maxsize=64)
def _fixed_offset(offset: timedelta) -> timezone:
    return timezone(offset)


def format_datetime(value: datetime) -> str:
    """Format an aware ``datetime`` for the wire: ``Z`` for UTC, else ``±HH:MM``; fractional
    seconds only when present (milliseconds when that is exact, else microseconds)."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"naive datetime {value!r}: a date-time on the wire must carry an offset")
    if offset.seconds % 60 or offset.microseconds:
        # An offset with seconds (historic LMT zones) cannot be written as ±HH:MM: send UTC.
        value = value.astimezone(UTC)
        offset = timedelta(0)
    micro = value.microsecond
    timespec = "seconds" if micro == 0 else ("milliseconds" if micro % 1000 == 0 else "microseconds")
    text = value.isoformat(timespec=timespec)
    if not offset:
        return text[:-6] + "Z"  # isoformat wrote "+00:00"
    return text


def _time_zone(local_tz: tzinfo | str) -> tzinfo:
    return ZoneInfo(local_tz) if isinstance(local_tz, str) else local_tz


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class _HookError(ValueError):
    """Raised by our own hooks; carries the JSON-schema rule that the value broke."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _violation(exc: BaseException, cls: type) -> SchemaViolation:
    """Turn a structuring failure into a SchemaViolation naming the JSON path and the rule.

    Walks cattrs' detailed-validation tree (ClassValidationError / IterableValidationError with
    attribute and index notes) down to the first leaf.
    """
    from cattrs.errors import (
        AttributeValidationNote,
        ForbiddenExtraKeysError,
        IterableValidationNote,
    )

    from .payloads._checks import PayloadValueError, wire_name

    path = container = "data"  # container: the object that held the failing value
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
        container = path
        for note in getattr(exc, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                path += f".{wire_name(note.name)}"
            elif isinstance(note, IterableValidationNote):
                path += f"[{note.index}]"
                container = path

    if isinstance(exc, ForbiddenExtraKeysError):
        rule, what = "additionalProperties", "no such property"
        path += f".{sorted(map(str, exc.extra_fields))[0]}"
    elif isinstance(exc, KeyError):
        rule, what = "required", "the property is missing"
    elif isinstance(exc, PayloadValueError):
        rule, what = exc.rule, str(exc).partition(": ")[2]
        path += f".{exc.field}"
    elif isinstance(exc, _HookError):
        rule, what = exc.rule, str(exc)
    elif isinstance(exc, TypeError | AttributeError):
        # Our hooks raise _HookError for wrong types; a bare TypeError comes from the generated
        # code indexing something that is not an object (o["timestamp"] on a string), so the
        # culprit is the object, not the attribute being read.
        rule, what, path = "type", "expected an object", container
    else:
        rule, what = "format", str(exc) or type(exc).__name__

    if rule == "type" and path == "data":
        code = ErrorCode.FORMATION_VIOLATION  # PROTOCOL-DECISIONS §3: payload not an object
    elif rule == "required" or rule in ("minItems", "maxItems"):
        code = ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
    elif rule == "type":
        code = ErrorCode.TYPE_CONSTRAINT_VIOLATION
    elif rule == "additionalProperties":
        code = ErrorCode.FORMATION_VIOLATION
    else:
        code = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    # The path can hold attacker-chosen keys and goes on the wire in errorDetails: bound it too.
    path = _bounded(path, _MAX_PATH)
    description = _bounded(
        f"{path} violates schema rule '{rule}' of {cls.__name__}: {what}", _MAX_DESCRIPTION
    )
    return SchemaViolation(code, description, path, rule)


# ---------------------------------------------------------------------------------------------
# Strict primitive hooks
# ---------------------------------------------------------------------------------------------


def _structure_str(value: Any, _: Any) -> str:
    if value.__class__ is str:
        return value
    raise _HookError(f"expected a string, got {_json_type(value)}", "type")


def _structure_int(value: Any, _: Any) -> int:
    if value.__class__ is int:
        return value
    raise _HookError(f"expected an integer, got {_json_type(value)}", "type")


def _structure_bool(value: Any, _: Any) -> bool:
    if value.__class__ is bool:
        return value
    raise _HookError(f"expected a boolean, got {_json_type(value)}", "type")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    if value.__class__ in names:
        return names[value.__class__]
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _enum_hook(cls: type[enum.Enum]) -> Callable[[Any, Any], Any]:
    # A dict lookup is ~5x faster than cls(value), which goes through EnumMeta.__call__.
    members: Mapping[Any, enum.Enum] = dict(cls._value2member_map_)
    if len(members) <= 8:
        allowed = "expected one of " + ", ".join(repr(v) for v in members)
    else:  # Measurand has 82 values: naming them all would only be cut off at 255 characters
        allowed = f"expected one of the {len(members)} {cls.__name__} values"

    def structure_enum(value: Any, _: Any) -> Any:
        try:
            return members[value]
        except (KeyError, TypeError):
            if value.__class__ is not str:
                raise _HookError(f"expected a string, got {_json_type(value)}", "type") from None
            raise _HookError(
                f"{_bounded(repr(value), 40)} is not a valid {cls.__name__}; {allowed}", "enum"
            ) from None

    return structure_enum


def _is_optional(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------


class PayloadConverter:
    """Maps wire dicts to :mod:`os3p_core.payloads` objects and back.

    ``local_tz`` (a ``tzinfo`` or an IANA name) is the station's zone: the meaning of a date-time
    without offset on input (PROTOCOL-DECISIONS §8).  A Central System talking to stations in
    several zones keeps one converter per zone; the module-level functions use
    :func:`default_converter` (``Europe/Amsterdam``).

    ``cattrs_converter`` is the underlying ``cattrs.Converter``, for registering hooks of your
    own types; the payload hooks are generated on first use of each class and cached.
    """

    def __init__(self, local_tz: tzinfo | str = DEFAULT_TIME_ZONE) -> None:
        import cattrs
        from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

        # Imported here, not at module level: building ~50 attrs classes costs ~40 ms, which only
        # a process that uses typed payloads should pay (like cattrs itself).
        from .payloads import _enums, _messages, _values
        from .payloads._checks import wire_name

        # The objects whose annex schema does not say ``additionalProperties: false`` (nor does
        # PROTOCOL-DECISIONS §8): unknown keys inside them are valid, so they are ignored (and
        # dropped).  Everywhere else an unknown key is an error, as it is for the validators.
        open_classes = {
            _values.ConfigurationKey,
            _values.MeterValue,
            _values.SampledValue,
            _values.StreetlightProfile,
        }
        self._requests: Final[Mapping[str, type[Payload]]] = _messages.REQUEST_CLASSES  # type: ignore[assignment]
        self._responses: Final[Mapping[str, type[Payload]]] = _messages.RESPONSE_CLASSES  # type: ignore[assignment]

        self.local_tz: Final[tzinfo] = _time_zone(local_tz)
        conv = cattrs.Converter(
            forbid_extra_keys=True,
            detailed_validation=True,
            unstruct_collection_overrides={tuple: list},
        )
        self.cattrs_converter: Final[cattrs.Converter] = conv
        local = self.local_tz

        # cattrs dispatches on the class first (functools.singledispatch), so the str hook would
        # also catch every StrEnum; each payload enum therefore gets its own, more specific, hooks.
        conv.register_structure_hook(str, _structure_str)
        conv.register_structure_hook(int, _structure_int)
        conv.register_structure_hook(bool, _structure_bool)
        for enum_cls in (getattr(_enums, name) for name in _enums.__all__):
            conv.register_structure_hook(enum_cls, _enum_hook(enum_cls))
            conv.register_unstructure_hook(enum_cls, _unstructure_enum)

        def structure_datetime(value: Any, _: Any) -> datetime:
            if value.__class__ is not str:
                raise _HookError(f"expected a date-time string, got {_json_type(value)}", "type")
            try:
                return parse_datetime(value, local)
            except ValueError as exc:
                raise _HookError(str(exc), "format") from None

        conv.register_structure_hook(datetime, structure_datetime)
        conv.register_unstructure_hook(datetime, format_datetime)

        def tuple_hook(tp: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
            from cattrs.errors import IterableValidationError, IterableValidationNote

            item_type = typing.get_args(tp)[0]
            item_hook = conv.get_structure_hook(item_type)

            def structure_tuple(value: Any, _: Any) -> tuple[Any, ...]:
                if value.__class__ is not list and value.__class__ is not tuple:
                    raise _HookError(f"expected an array, got {_json_type(value)}", "type")
                try:
                    return tuple([item_hook(item, item_type) for item in value])
                except Exception:
                    pass
                # Slow path, only on failure: find the failing index for the error path.
                for index, item in enumerate(value):
                    try:
                        item_hook(item, item_type)
                    except Exception as exc:
                        exc.add_note(
                            IterableValidationNote(f"Structuring item @ index {index}", index, item_type)
                        )
                        raise IterableValidationError(f"While structuring {tp!r}", [exc], tp) from None
                raise AssertionError("unreachable")  # pragma: no cover

            return structure_tuple

        conv.register_structure_hook_factory(_is_homogeneous_tuple, tuple_hook)

        def optional_hook(tp: Any) -> Callable[[Any, Any], Any]:
            # "Optional" means the key may be absent (the attribute then keeps its default,
            # None): absent keys never reach a hook.  A JSON null is not a valid value of any
            # field in the schemas, so it is a type error here too.  (cattrs' own Optional hook
            # would accept it, and dispatch on the inner type at every call besides.)
            (inner_type,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
            return conv.get_structure_hook(inner_type)

        conv.register_structure_hook_factory(_is_optional, optional_hook)

        def optional_unstructure_hook(tp: Any) -> Callable[[Any], Any]:
            # Resolve the inner type's hook once (cattrs' own dispatches on every call).  Absent
            # optionals are omitted before any hook runs; the None guard is for completeness.
            (inner_type,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
            inner_hook = conv.get_unstructure_hook(inner_type)

            def unstructure_optional(value: Any) -> Any:
                return None if value is None else inner_hook(value)

            return unstructure_optional

        conv.register_unstructure_hook_factory(_is_optional, optional_unstructure_hook)

        def renames(cls: type) -> dict[str, Any]:
            return {a.name: override(rename=wire_name(a.name)) for a in attrs.fields(cls)}

        def structure_factory(cls: type) -> Callable[[Any, Any], Any]:
            fn: Callable[[Any, Any], Any] = make_dict_structure_fn(
                cls, conv, _cattrs_forbid_extra_keys=cls not in open_classes, **renames(cls)
            )
            if cls is _messages.SetStreetlightProfileRequest:
                return _with_clear_schedule_alias(fn)
            if cls is _messages.GetEffectiveStreetlightDayScheduleResponse:
                return _without_status(fn)
            return fn

        def unstructure_factory(cls: type) -> Callable[[Any], dict[str, Any]]:
            return make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **renames(cls))

        conv.register_structure_hook_factory(attrs.has, structure_factory)
        conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)

        # Per-class caches of the generated functions: one dict lookup on the hot path, no dispatch.
        self._structure_fns: dict[type, Callable[[Any, Any], Any]] = {}
        self._unstructure_fns: dict[type, Callable[[Any], dict[str, Any]]] = {}

    def structure(self, payload: Mapping[str, Any], cls: type[P]) -> P:
        """Build a ``cls`` object from a wire dict.

        (A ``null`` CALL payload is ``{}`` by then: the frame decoder applies PROTOCOL-DECISIONS §2.)

        Raises :class:`~os3p_core.SchemaViolation` if the dict does not fit ``cls``.
        """
        fn = self._structure_fns.get(cls)
        if fn is None:
            fn = self._structure_fns[cls] = self.cattrs_converter.get_structure_hook(cls)
        if payload.__class__ is not dict and not isinstance(payload, Mapping):  # ABC check: slow path
            raise SchemaViolation(
                ErrorCode.FORMATION_VIOLATION,
                f"data violates schema rule 'type' of {cls.__name__}: the payload is not a JSON object",
                "data",
                "type",
            )
        try:
            return fn(payload, cls)  # type: ignore[no-any-return]
        except Exception as exc:
            raise _violation(exc, cls) from exc

    def structure_request(self, action: str, payload: Mapping[str, Any]) -> Payload:
        """The typed CALL payload of ``action``; ``KeyError`` if ``action`` is not an OS³P action."""
        return self.structure(payload, self._requests[action])

    def structure_response(self, action: str, payload: Mapping[str, Any]) -> Payload:
        """The typed CALLRESULT payload of ``action``; ``KeyError`` if ``action`` is unknown."""
        return self.structure(payload, self._responses[action])

    def unstructure(self, obj: Any) -> dict[str, Any]:
        """The wire dict of a payload object: camelCase keys, absent optionals omitted."""
        cls = obj.__class__
        fn = self._unstructure_fns.get(cls)
        if fn is None:
            if not attrs.has(cls):
                raise TypeError(f"{cls.__name__} is not a payload class")
            fn = self._unstructure_fns[cls] = self.cattrs_converter.get_unstructure_hook(cls)
        return fn(obj)


def _unstructure_enum(value: enum.Enum) -> Any:
    return value._value_  # the plain attribute; ``.value`` is a property and 3x slower


def _with_clear_schedule_alias(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """PROTOCOL-DECISIONS §8: SetStreetlightProfile ``clearSchedule`` (annex §M7.10 example) is
    an alias of the normative ``clearAllSchedules``."""

    def structure(payload: Mapping[str, Any], cls: Any) -> Any:
        if "clearSchedule" in payload:
            payload = dict(payload)
            alias = payload.pop("clearSchedule")
            # Both present: the normative name wins (the schema accepts both, so must we).
            payload.setdefault("clearAllSchedules", alias)
        return fn(payload, cls)

    return structure


def _without_status(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """PROTOCOL-DECISIONS §8: the annex §M7.4 example response carries ``"status"``; stations
    omit it, and a Central System tolerates (and drops) it."""

    def structure(payload: Mapping[str, Any], cls: Any) -> Any:
        if "status" in payload:
            if payload["status"].__class__ is not str:  # tolerated, but only as the schema allows it
                from .payloads._checks import PayloadValueError

                raise PayloadValueError(
                    f"GetEffectiveStreetlightDayScheduleResponse.status: expected a string, "
                    f"got {_json_type(payload['status'])}",
                    rule="type",
                    field="status",
                )
            payload = {key: value for key, value in payload.items() if key != "status"}
        return fn(payload, cls)

    return structure


def _package_getattr(name: str) -> Any:
    """``os3p_core.__getattr__``: the typed payload classes are opt-in, so ``import os3p_core``
    does not create them (~40 ms of attrs class creation); ``os3p_core.payloads`` does."""
    if name == "payloads":
        import importlib

        return importlib.import_module("os3p_core.payloads")
    raise AttributeError(f"module 'os3p_core' has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Module-level API over the default converter
# ---------------------------------------------------------------------------------------------

_default: PayloadConverter | None = None


def default_converter() -> PayloadConverter:
    """The shared converter with the default station zone (``Europe/Amsterdam``), built on first use."""
    global _default
    if _default is None:
        _default = PayloadConverter()
    return _default


def request_class(action: str) -> type[Payload]:
    """The request payload class of ``action`` (``KeyError`` if it is not an OS³P action)."""
    from .payloads._messages import REQUEST_CLASSES

    # An Action is a StrEnum: a plain string finds its member's entry.
    return REQUEST_CLASSES[action]  # type: ignore[index]


def response_class(action: str) -> type[Payload]:
    """The response payload class of ``action`` (``KeyError`` if it is not an OS³P action)."""
    from .payloads._messages import RESPONSE_CLASSES

    return RESPONSE_CLASSES[action]  # type: ignore[index]


def structure_request(action: str, payload: Mapping[str, Any]) -> Payload:
    """Turn a CALL payload dict into its typed request object (default converter).

    Raises :class:`~os3p_core.SchemaViolation` if it does not fit, ``KeyError`` for an unknown action.
    """
    return (_default or default_converter()).structure_request(action, payload)


def structure_response(action: str, payload: Mapping[str, Any]) -> Payload:
    """Turn a CALLRESULT payload dict into its typed response object (default converter)."""
    return (_default or default_converter()).structure_response(action, payload)


def unstructure(obj: Any) -> dict[str, Any]:
    """Turn a payload object into its wire dict (default converter; date-times keep their offsets)."""
    return (_default or default_converter()).unstructure(obj)
