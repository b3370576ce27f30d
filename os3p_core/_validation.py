"""Payload validation against the OS³P schemas, and the mapping of failures to CallError codes.

Theory of operation
-------------------

Each of the 42 schemas (``schemas/*.json``, see :mod:`os3p_core._schemas`) is compiled into a
plain Python function by fastjsonschema the first time it is needed, and that function is kept
for the life of the process.  Compiling is lazy per (action, kind) so that ``import os3p_core``
pays for none of it (and does not even import fastjsonschema); ``benchmarks/RESULTS.md`` has the
figures.

Validation sits on the hot path of every incoming and outgoing message, so the success path is
nothing but a dict lookup and one call of the compiled function.  Only a failure does any extra
work: it turns fastjsonschema's exception into a :class:`~os3p_core.SchemaViolation` that carries

- ``code``: the CallError code per PROTOCOL-DECISIONS §3 (rule kind -> code; spec §J4.4 Table 7),
- ``path``: the JSON path of the offending value (``data.meterValue[0].timestamp``); for a
  missing required property or a property that is not allowed, the path of that property,
- ``rule``: the schema keyword that failed (``type``, ``required``, ``enum``, ...),
- ``description``: one sentence naming the path and the rule, at most 255 characters
  (PROTOCOL-DECISIONS §3), and ``details == {"path": ..., "rule": ...}`` for ``errorDetails``.

The compiled functions are created with ``use_default=False`` (validation never alters the
payload: the annex's "default values of optional fields", §M6.5 Table 3, are the application's
business) and detailed exceptions (which carry the path and the rule).

Date-times (PROTOCOL-DECISIONS §8): the annex's examples carry date-times without a UTC offset
(``"2015-07-07T00:00:00"``), meaning local time of the station.  JSON schema's ``date-time``
format (RFC 3339 §5.6) requires an offset, so we replace it with our own check: RFC 3339
``date-time`` whose offset is optional.  The value must also be a real instant that Python's
``datetime.fromisoformat`` accepts (no 30 February, no hour 24, no leap second ``:60``), so
that every value that validates can be structured into a ``datetime`` by the payload converter.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, cast

from ._errors import ErrorCode, SchemaViolation
from ._schemas import SchemaKind, raw_schema

__all__ = ["is_date_time", "validate_request", "validate_response"]

#: Longest errorDescription on the wire (PROTOCOL-DECISIONS §3).
MAX_DESCRIPTION_LENGTH: Final = 255
#: Longest path we report: the path names attacker-chosen keys, and it goes on the wire in errorDetails.
MAX_PATH_LENGTH: Final = 200

# RFC 3339 §5.6 date-time, with the offset made optional (PROTOCOL-DECISIONS §8: no offset means
# local time of the station).  "T" and "Z" may be lower case (RFC 3339 §5.6 NOTE).  Ranges of
# the fields are left to datetime.fromisoformat below; the offset's ranges are checked here
# because fromisoformat accepts "+01:75".
_DATE_TIME_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)


def is_date_time(value: str) -> bool:
    """True if ``value`` is an OS³P date-time: RFC 3339 ``date-time`` with an optional offset.

    ``"2013-02-01T15:09:18Z"``, ``"2013-02-01T16:09:18.5+01:00"`` and (local time of the
    station, PROTOCOL-DECISIONS §8) ``"2015-07-07T00:00:00"`` are date-times;
    ``"2015-02-30T00:00:00Z"``, ``"2015-07-07 00:00:00"`` and ``"today"`` are not.
    """
    if _DATE_TIME_RE.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value.upper())
    except (ValueError, OverflowError):
        return False
    return True


_FORMATS: Final[dict[str, Callable[[str], bool]]] = {"date-time": is_date_time}

# PROTOCOL-DECISIONS §3: schema rule kind -> CallError code.  Anything not listed (notably
# additionalProperties, and a payload that is not an object at all) is FormationViolation.
_OCCURENCE = ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
_PROPERTY = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
RULE_CODES: Final[dict[str, ErrorCode]] = {
    "type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "required": _OCCURENCE,
    "minItems": _OCCURENCE,
    "maxItems": _OCCURENCE,
    "minProperties": _OCCURENCE,
    "maxProperties": _OCCURENCE,
    "enum": _PROPERTY,
    "const": _PROPERTY,
    "maxLength": _PROPERTY,
    "minLength": _PROPERTY,
    "minimum": _PROPERTY,
    "maximum": _PROPERTY,
    "exclusiveMinimum": _PROPERTY,
    "exclusiveMaximum": _PROPERTY,
    "pattern": _PROPERTY,
    "format": _PROPERTY,
    "multipleOf": _PROPERTY,
}

_Validator = Callable[[Any], Any]

# The caches: action name -> compiled function.  Keyed by the plain string so that the hot path
# is a single dict lookup (an Action member hashes and compares equal to its value).
_request_validators: dict[str, _Validator] = {}
_response_validators: dict[str, _Validator] = {}
_exception_type: type[Exception] | None = None  # fastjsonschema.JsonSchemaValueException, once imported


def _compile(action: str, kind: SchemaKind) -> _Validator:
    """Compile (once) and cache the validator of one schema.  Unknown action -> KeyError."""
    global _exception_type
    schema = raw_schema(action, kind)  # KeyError for an unknown action
    # Imported here, not at module level: importing fastjsonschema costs milliseconds that only a
    # process that validates should pay.
    import fastjsonschema

    _exception_type = fastjsonschema.JsonSchemaValueException
    validator = _compile_fast(schema)
    cache = _request_validators if kind == "Request" else _response_validators
    cache[str(action)] = validator
    return validator


def _compile_fast(schema: dict[str, Any]) -> _Validator:
    """fastjsonschema's compile(), with a code generator tuned for our hot path (see below)."""
    from fastjsonschema.ref_resolver import RefResolver

    resolver = RefResolver.from_schema(schema, handlers={}, store={})
    generator = _generator_class()(
        schema, resolver=resolver, formats=_FORMATS, use_default=False, detailed_exceptions=True
    )
    global_state: dict[str, Any] = generator.global_state
    exec(generator.func_code, global_state)  # what fastjsonschema.compile() does
    function: Any = global_state[resolver.get_scope_name()]
    # fastjsonschema.compile() binds the formats with functools.partial; setting the default
    # does the same without a wrapper call per validation.
    if function.__code__.co_varnames[:3] == ("data", "custom_formats", "name_prefix"):
        function.__defaults__ = (_FORMATS, None)
        return cast(_Validator, function)
    return cast(_Validator, functools.partial(function, custom_formats=_FORMATS))  # pragma: no cover


@functools.cache
def _generator_class() -> type[Any]:
    """fastjsonschema's draft-04 code generator, emitting cheaper checks for three keywords.

    The stock generator is correct but slow where our payloads are big: an ``enum`` becomes a
    chain of ``isinstance(x, str) and x == 'a' or ...`` (82 links for a measurand), ``required``
    builds two sets per object, and ``properties`` copies the keys into a set and removes each
    known one so that ``additionalProperties`` can look at what is left.  For the shapes our
    schemas use we emit instead (same rules, same exceptions, same paths):

    - ``enum`` of strings: ``isinstance(x, str) and x in {...}`` (CPython folds the literal into
      a frozenset constant: one hash lookup);
    - ``required``: ``'a' in x and 'b' in x``, building the set of missing keys only on failure;
    - ``properties`` + ``additionalProperties: false`` (no ``patternProperties``): a direct
      ``in`` test per known property, and one pass over the keys against a constant set.

    A test runs every schema through both generators' semantics (hypothesis, against jsonschema)
    and checks this class is the one in use, so a fastjsonschema upgrade cannot quietly change it.
    """
    from fastjsonschema.draft04 import CodeGeneratorDraft04

    base: Any = CodeGeneratorDraft04  # the generator is untyped; we subclass it as Any

    def escape(code: str) -> str:  # for text passed as the *format string* of self.l()
        return code.replace("{", "{{").replace("}", "}}")

    def set_literal(values: list[str]) -> str:
        return "{" + ", ".join(repr(v) for v in dict.fromkeys(values)) + "}"

    def all_str(values: Any) -> bool:
        return isinstance(values, list) and bool(values) and all(type(v) is str for v in values)

    class Generator(base):  # type: ignore[misc]
        def _simple_object(self) -> bool:
            definition = self._definition
            return (
                "patternProperties" not in definition
                and definition.get("additionalProperties", True) in (True, False, {})
                and isinstance(definition.get("properties", {}), dict)
            )

        def generate_enum(self) -> None:
            enum = self._definition["enum"]
            if not all_str(enum):
                super().generate_enum()
                return
            with self.l("if not (isinstance({variable}, str) and {variable} in {}):", set_literal(enum)):
                self.exc("{name} must be one of {}", self.e(enum), rule="enum")

        def generate_required(self) -> None:
            required = self._definition["required"]
            if not all_str(required) or len(set(required)) != len(required):
                super().generate_required()
                return
            self.create_variable_is_dict()
            with self.l("if {variable}_is_dict:"):
                test = " and ".join(f"{escape(repr(key))} in {{variable}}" for key in required)
                with self.l(f"if not ({test}):"):
                    self.l("{variable}__missing_keys = set({required}) - {variable}.keys()")
                    dynamic = 'str(sorted({variable}__missing_keys)) + " properties"'
                    self.exc("{name} must contain ", self.e(required), rule="required", append_to_msg=dynamic)

        def generate_properties(self) -> None:
            if not self._simple_object():
                super().generate_properties()
                return
            self.create_variable_is_dict()
            with self.l("if {variable}_is_dict:"):
                for key, prop_definition in self._definition["properties"].items():
                    # Variable and path naming exactly as the stock generator does it.
                    key_name = re.sub(r"($[^a-zA-Z]|[^a-zA-Z0-9])", "", key)
                    if not isinstance(prop_definition, dict | bool):
                        super().generate_properties()  # let the stock code raise its definition error
                        return
                    with self.l("if {} in {variable}:", repr(key)):
                        self.l("{variable}__{0} = {variable}[{1}]", key_name, repr(key))
                        self.generate_func_code_block(
                            prop_definition,
                            f"{self._variable}__{key_name}",
                            f"{self._variable_name}.{escape(self.e(key))}",
                            clear_variables=True,
                        )

        def generate_additional_properties(self) -> None:
            if not self._simple_object():
                super().generate_additional_properties()
                return
            if self._definition["additionalProperties"] is not False:
                return  # true or {}: anything goes, nothing to generate
            known = list(self._definition.get("properties", {}))
            self.create_variable_is_dict()
            with self.l("if {variable}_is_dict:"):
                if known:
                    test = "for {variable}_key in {variable}:"
                    with self.l(test), self.l("if {variable}_key not in {}:", set_literal(known)):
                        self.l("{variable}_keys = set({variable}) - {}", set_literal(known))
                        self.exc(
                            '{name} must not contain "+str({variable}_keys)+" properties',
                            rule="additionalProperties",
                        )
                else:
                    with self.l("if {variable}:"):
                        self.l("{variable}_keys = set({variable})")
                        self.exc(
                            '{name} must not contain "+str({variable}_keys)+" properties',
                            rule="additionalProperties",
                        )

    return Generator


def validate_request(action: str, payload: Any) -> None:
    """Check a CALL payload against ``<action>Request.json``.

    Raises :class:`~os3p_core.SchemaViolation` (code per PROTOCOL-DECISIONS §3, ``path``,
    ``rule``, ``details``) if it does not conform; :class:`KeyError` if ``action`` is not one of
    the 21 OS³P actions.  The payload is never modified.
    """
    validator = _request_validators.get(action)
    if validator is None:
        validator = _compile(action, "Request")
    try:
        validator(payload)
    except ValueError as exc:  # fastjsonschema's JsonSchemaValueException is a ValueError
        raise _violation(exc) from None


def validate_response(action: str, payload: Any) -> None:
    """Check a CALLRESULT payload against ``<action>Response.json``.

    Same contract as :func:`validate_request`.  (An invalid CALLRESULT fails the call on the
    caller's side; nothing is sent back, PROTOCOL-DECISIONS §3.)
    """
    validator = _response_validators.get(action)
    if validator is None:
        validator = _compile(action, "Response")
    try:
        validator(payload)
    except ValueError as exc:
        raise _violation(exc) from None


# -- the slow path: building the error -------------------------------------------------------------


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _violation(exc: ValueError) -> SchemaViolation:
    """Turn a fastjsonschema exception into a SchemaViolation (anything else is re-raised)."""
    if _exception_type is None or not isinstance(exc, _exception_type):  # pragma: no cover - a bug
        raise exc
    rule: str = getattr(exc, "rule", None) or "unknown"
    name: str = getattr(exc, "name", None) or "data"
    value: Any = getattr(exc, "value", None)
    definition: Any = getattr(exc, "definition", None)
    message: str = getattr(exc, "message", "") or str(exc)

    path = name
    if rule == "required" and isinstance(value, dict) and isinstance(definition, dict):
        # Point at the first missing property, in the schema's order.
        missing = [key for key in definition.get("required", ()) if key not in value]
        if missing:
            path = f"{name}.{missing[0]}"
        detail = "the property is missing"
    elif rule == "additionalProperties" and isinstance(value, dict) and isinstance(definition, dict):
        allowed = definition.get("properties", {})
        extra = sorted(str(key) for key in value if key not in allowed)
        if extra:
            path = f"{name}.{extra[0]}"
        detail = "no such property" if len(extra) <= 1 else f"no such property ({len(extra)} unknown)"
    else:
        # fastjsonschema's message is "<name> <what is wrong>"; keep the "what".
        detail = message[len(name) + 1 :] if message.startswith(name + " ") else message

    if rule == "type" and name == "data":
        # PROTOCOL-DECISIONS §3: a payload that is not an object is malformed, not mistyped.
        code = ErrorCode.FORMATION_VIOLATION
    else:
        code = RULE_CODES.get(rule, ErrorCode.FORMATION_VIOLATION)

    path = _bounded(path, MAX_PATH_LENGTH)
    # Path and rule first, so that truncation only ever cuts the detail.
    description = _bounded(f"{path} violates schema rule '{rule}': {detail}", MAX_DESCRIPTION_LENGTH)
    return SchemaViolation(code, description, path, rule)
