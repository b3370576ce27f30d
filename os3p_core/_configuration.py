"""The Substation's configuration keys with GetConfiguration / ChangeConfiguration semantics.

Spec annex §M5: "If a settings is marked RW it is also writeable and can be changed via the
ChangeConfiguration request. RO stands for Read Only. If marked RO a ChangeConfiguration attempt will be
rejected."  The keys and their rules are PROTOCOL-DECISIONS §6 (which wins over the spec):

=================================  ====
========================================================================= key
RW    rule =================================  ====
========================================================================= ``Sunrise``, ``Sunset``
RO    today's events, ISO 8601 UTC (``...Z``); empty string when there is none ``Geolocation``
RW    ``"[<lat>, <lng>]"``, lat in [-90, 90], lng in [-180, 180] ``TimeZone``                        RW
IANA zone name, default ``Europe/Amsterdam`` ``HeartbeatInterval``               RW    integer > 0 seconds
(also set from the BootNotification response) ``websocketPingInterval``           RW    integer ≥ 0 seconds
(§J6: "[0..MAXINT]"); 0 disables client pings ``StreetlightProfileMaxStackLevel`` RW    integer ≥ 0, default
16 (§M7.1 example, §M7.10 Table 16) =================================  ====
=========================================================================

Unknown or read-only key in ChangeConfiguration → ``Rejected``.  GetConfiguration without ``key`` (or with an
empty list) returns every key; requested keys that do not exist go to ``unknownKey``.

Keys the spec shows only as examples (``KVCBX_LANG`` in §M7.1.2, ``KVCBX_PROFILE`` in §M7.3.2) are vendor keys
with no defined meaning: by default they are unknown (``unknownKey`` / ``Rejected``).  A station that has
vendor keys declares them with :class:`VendorKey` (read-only, or writable with its own validator).

The store is sans-IO: ``Sunrise`` / ``Sunset`` need the current time, which the caller passes in.  Durability
(PROTOCOL-DECISIONS §6: "Accepted changes are stored durably") is the owner's: when a result has ``changed``,
persist :meth:`ConfigurationStore.snapshot` before answering.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from ._streetlight import SiteLocation, _as_wire
from ._sun import sun_events_on_date

__all__ = ["CONFIGURATION_KEYS", "ConfigurationResult", "ConfigurationStore", "VendorKey"]

#: §J6 Table 8: websocketPingInterval "[0..MAXINT]".  We read MAXINT as the largest signed 32-bit integer, the
#: widest integer every peer (and the JSON schemas' "integer") can be relied on to hold; all integer keys
#: share it.
MAXINT: Final = 2**31 - 1

SUNRISE: Final = "Sunrise"
SUNSET: Final = "Sunset"
GEOLOCATION: Final = "Geolocation"
TIME_ZONE: Final = "TimeZone"
HEARTBEAT_INTERVAL: Final = "HeartbeatInterval"
WEBSOCKET_PING_INTERVAL: Final = "websocketPingInterval"
MAX_STACK_LEVEL: Final = "StreetlightProfileMaxStackLevel"

#: The standard keys, in the order GetConfiguration reports them.
CONFIGURATION_KEYS: Final = (
    SUNRISE,
    SUNSET,
    GEOLOCATION,
    TIME_ZONE,
    HEARTBEAT_INTERVAL,
    WEBSOCKET_PING_INTERVAL,
    MAX_STACK_LEVEL,
)
_READ_ONLY: Final = frozenset({SUNRISE, SUNSET})
_WRITABLE: Final = (GEOLOCATION, TIME_ZONE, HEARTBEAT_INTERVAL, WEBSOCKET_PING_INTERVAL, MAX_STACK_LEVEL)
#: Bound on vendor keys and on the length of any value we store (a ChangeConfiguration value is an unbounded
#: string on the wire; a station keeps at most this much per key).
MAX_VENDOR_KEYS: Final = 64
MAX_VALUE_LENGTH: Final = 500
_SNAPSHOT_FORMAT: Final = "os3p-configuration/1"

#: Defaults, each with its reason.
DEFAULT_GEOLOCATION: Final = (
    "[52.37, 4.90]"  # Amsterdam: the semantics file's worked examples; set the real one
)
DEFAULT_TIME_ZONE: Final = "Europe/Amsterdam"  # PROTOCOL-DECISIONS §6
DEFAULT_HEARTBEAT_INTERVAL: Final = 300  # used until a BootNotification response gives the real one (§M3.1)
DEFAULT_WEBSOCKET_PING_INTERVAL: Final = 60  # issue 5: pings "no more than one a minute" by default
DEFAULT_MAX_STACK_LEVEL: Final = 16  # PROTOCOL-DECISIONS §6, the §M7.1 example value

_NUMBER: Final = r"([-+]?[0-9]+(?:\.[0-9]+)?)"
_GEOLOCATION_RE: Final = re.compile(r"\[\s*" + _NUMBER + r"\s*,\s*" + _NUMBER + r"\s*\]\Z")
_INTEGER_RE: Final = re.compile(r"[0-9]+\Z")


class _Rejected(Exception):
    pass


def parse_geolocation(text: str) -> tuple[float, float, str]:
    """``"[<lat>, <lng>]"`` → (lat, lng, canonical text).  Raises ``ValueError`` (PROTOCOL-DECISIONS §6)."""
    m = _GEOLOCATION_RE.match(text.strip())
    if m is None:
        raise ValueError(f"Geolocation {text!r} is not '[<lat>, <lng>]'")
    lat_text, lng_text = m.groups()
    lat, lng = float(lat_text), float(lng_text)
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude {lat_text} outside [-90, 90]")
    if not -180.0 <= lng <= 180.0:
        raise ValueError(f"longitude {lng_text} outside [-180, 180]")
    # Keep the numbers as written (no float round trip: "4.90" stays "4.90").
    return lat, lng, f"[{lat_text.lstrip('+')}, {lng_text.lstrip('+')}]"


def _parse_int(text: str, minimum: int) -> int:
    # ASCII digits only: Python's int() would also take " 7", "1_0" and non-ASCII digits.
    if not _INTEGER_RE.match(text):
        raise ValueError(f"{text!r} is not a non-negative decimal integer")
    value = int(text)
    if not minimum <= value <= MAXINT:
        raise ValueError(f"{value} outside [{minimum}, {MAXINT}]")
    return value


@functools.cache
def _known_zones() -> frozenset[str]:
    # Computed once (it walks the tz database, ~0.1 s).  Membership, not ZoneInfo(name) alone: ZoneInfo also
    # opens files like "localtime" or "posixrules" that are not IANA zone names.
    # The system tz directory can also list "localtime", "posixrules" and the "posix/" / "right/" copies.
    return frozenset(
        name
        for name in zoneinfo.available_timezones()
        if name not in {"localtime", "posixrules"} and not name.startswith(("posix/", "right/"))
    )


def _parse_zone(text: str) -> zoneinfo.ZoneInfo:
    if text not in _known_zones():
        raise ValueError(f"TimeZone {text!r} is not an IANA zone name")
    return zoneinfo.ZoneInfo(text)


def _utc_text(at: _dt.datetime | None) -> str:
    return "" if at is None else at.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen(slots=True)
class VendorKey:
    """A station-specific configuration key (like the spec's examples ``KVCBX_PROFILE`` / ``KVCBX_LANG``).

    ``validate`` (for writable keys) returns the value to store or raises ``ValueError`` → ``Rejected``;
    without it, any string up to :data:`MAX_VALUE_LENGTH` characters is accepted.
    """

    name: str
    value: str
    readonly: bool = True
    validate: Callable[[str], str] | None = attrs.field(default=None, eq=False)


@attrs.frozen(slots=True)
class ConfigurationResult:
    """Outcome of a ChangeConfiguration: wire ``status``, a ``reason`` for logs, and whether a value
    ``changed`` (persist :meth:`ConfigurationStore.snapshot`; re-read the typed properties — e.g. the
    connection's ping interval, or the switching timeline after TimeZone / Geolocation change)."""

    status: str
    key: str
    reason: str | None = None
    changed: bool = False

    def to_payload(self) -> dict[str, Any]:
        """The ChangeConfiguration response payload."""
        return {"status": self.status}


class ConfigurationStore:
    """Configuration keys of one Substation (PROTOCOL-DECISIONS §6, spec annex §M5, §M7.1, §M7.3, §J6)."""

    __slots__ = ("_latitude", "_longitude", "_values", "_vendor", "_zone")

    def __init__(
        self,
        *,
        geolocation: str = DEFAULT_GEOLOCATION,
        timezone: str = DEFAULT_TIME_ZONE,
        heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
        websocket_ping_interval: int = DEFAULT_WEBSOCKET_PING_INTERVAL,
        max_stack_level: int = DEFAULT_MAX_STACK_LEVEL,
        vendor_keys: Iterable[VendorKey] = (),
    ) -> None:
        self._values: dict[str, str] = {}
        self._vendor: dict[str, VendorKey] = {}
        self._latitude = self._longitude = 0.0
        self._zone = zoneinfo.ZoneInfo(DEFAULT_TIME_ZONE)
        for key, value in (
            (GEOLOCATION, geolocation),
            (TIME_ZONE, timezone),
            (HEARTBEAT_INTERVAL, str(heartbeat_interval)),
            (WEBSOCKET_PING_INTERVAL, str(websocket_ping_interval)),
            (MAX_STACK_LEVEL, str(max_stack_level)),
        ):
            self._set(key, value)  # raises ValueError for a bad constructor argument
        for vendor in vendor_keys:
            if vendor.name in CONFIGURATION_KEYS or vendor.name in self._vendor:
                raise ValueError(f"vendor key {vendor.name!r} duplicates another key")
            if len(self._vendor) >= MAX_VENDOR_KEYS:
                raise ValueError(f"more than {MAX_VENDOR_KEYS} vendor keys")
            self._vendor[vendor.name] = vendor

    # -- typed views
    # ---------------------------------------------------------------------------------------------

    @property
    def geolocation(self) -> tuple[float, float]:
        """(latitude, longitude) in degrees, north and east positive."""
        return self._latitude, self._longitude

    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        """The station's zone: what "local time" means (PROTOCOL-DECISIONS §6)."""
        return self._zone

    @property
    def site(self) -> SiteLocation:
        """Geolocation and TimeZone as the schedule engine's input."""
        return SiteLocation(self._latitude, self._longitude, self._zone)

    @property
    def heartbeat_interval(self) -> int:
        return int(self._values[HEARTBEAT_INTERVAL])

    @property
    def websocket_ping_interval(self) -> int:
        """Seconds between client pings; 0 = no client pings (§J6 Table 8)."""
        return int(self._values[WEBSOCKET_PING_INTERVAL])

    @property
    def max_stack_level(self) -> int:
        """``StreetlightProfileMaxStackLevel``: the highest stackLevel SetStreetlightProfile accepts."""
        return int(self._values[MAX_STACK_LEVEL])

    def value(self, key: str, now: _dt.datetime) -> str | None:
        """The value of ``key`` as GetConfiguration reports it, or ``None`` for an unknown key."""
        if key in (SUNRISE, SUNSET):
            sunrise, sunset = self.sun_events_today(now)
            return _utc_text(sunrise if key == SUNRISE else sunset)
        if key in self._values:
            return self._values[key]
        vendor = self._vendor.get(key)
        return None if vendor is None else vendor.value

    def sun_events_today(self, now: _dt.datetime) -> tuple[_dt.datetime | None, _dt.datetime | None]:
        """(sunrise, sunset) on today's local calendar date — ``None`` where there is none (polar).

        "Today" is the date of ``now`` in the configured TimeZone (§M5: "the sunrise time of today").
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        today = now.astimezone(self._zone).date()
        return sun_events_on_date(self._latitude, self._longitude, today, self._zone)

    def readonly(self, key: str) -> bool:
        if key in _READ_ONLY:
            return True
        vendor = self._vendor.get(key)
        return vendor is not None and vendor.readonly

    def keys(self) -> list[str]:
        """Every key this station has: the standard ones, then the vendor keys."""
        return [*CONFIGURATION_KEYS, *self._vendor]

    # -- the two messages
    # ----------------------------------------------------------------------------------------

    def get_configuration(self, request: object, now: _dt.datetime) -> dict[str, Any]:
        """Answer GetConfiguration (§M7.3) with its response payload.

        No ``key`` (or an empty list, as OCPP 1.6 stations do) → every key.  Requested keys are answered in
        the order asked, each once; unknown ones are listed in ``unknownKey`` (always present, as in the
        §M7.3.2 example).
        """
        wire = _as_wire(request)
        requested = wire.get("key")
        if requested is None or requested == []:
            names = self.keys()
        elif isinstance(requested, list | tuple) and all(isinstance(k, str) for k in requested):
            names = list(dict.fromkeys(requested))
        else:
            raise ValueError("GetConfiguration 'key' must be a list of strings")
        known: list[dict[str, Any]] = []
        unknown: list[str] = []
        for name in names:
            value = self.value(name, now)
            if value is None:
                unknown.append(name)
            else:
                known.append({"key": name, "readonly": self.readonly(name), "value": value})
        return {"configurationKey": known, "unknownKey": unknown}

    def change_configuration(self, request: object) -> ConfigurationResult:
        """Apply ChangeConfiguration (§M7.1): ``Accepted`` and stored, or ``Rejected`` and nothing changes."""
        wire = _as_wire(request)
        key, value = wire.get("key"), wire.get("value")
        if not isinstance(key, str) or not isinstance(value, str):
            return ConfigurationResult("Rejected", str(key), "key and value must be strings")
        if len(value) > MAX_VALUE_LENGTH:
            return ConfigurationResult("Rejected", key, f"value longer than {MAX_VALUE_LENGTH} characters")
        if key in _READ_ONLY:
            return ConfigurationResult("Rejected", key, f"{key} is read-only")
        if key in self._vendor:
            vendor = self._vendor[key]
            if vendor.readonly:
                return ConfigurationResult("Rejected", key, f"{key} is read-only")
            try:
                stored = vendor.validate(value) if vendor.validate is not None else value
            except ValueError as exc:
                return ConfigurationResult("Rejected", key, str(exc))
            changed = stored != vendor.value
            self._vendor[key] = attrs.evolve(vendor, value=stored)
            return ConfigurationResult("Accepted", key, changed=changed)
        if key not in self._values:
            # PROTOCOL-DECISIONS §6: "Unknown key ... in ChangeConfiguration → Rejected".
            return ConfigurationResult("Rejected", key, f"unknown key {key!r}")
        try:
            changed = self._set(key, value)
        except ValueError as exc:
            return ConfigurationResult("Rejected", key, str(exc))
        return ConfigurationResult("Accepted", key, changed=changed)

    def set_heartbeat_interval(self, interval: int) -> bool:
        """Take the heartbeat ``interval`` of an Accepted BootNotification response (PROTOCOL-DECISIONS §6).

        Returns whether the value changed.  An interval ≤ 0 or over MAXINT cannot be a HeartbeatInterval (it
        must be > 0) and is ignored — the current value stays; the caller decides its own fallback for such a
        response.
        """
        if isinstance(interval, bool) or not isinstance(interval, int) or not 0 < interval <= MAXINT:
            return False
        return self._set(HEARTBEAT_INTERVAL, str(interval))

    # -- persistence
    # ---------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The writable values as plain JSON-able data (read-only keys are derived, not stored)."""
        values = dict(self._values)
        values.update({k: v.value for k, v in self._vendor.items() if not v.readonly})
        return {"format": _SNAPSHOT_FORMAT, "values": values}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load :meth:`snapshot` output into this store (whose vendor keys are declared by the constructor).

        All or nothing: raises ``ValueError`` for a corrupt snapshot and then changes nothing.  Keys this
        version does not know are ignored (a snapshot written by a station with more vendor keys).
        """
        if not isinstance(data, Mapping) or data.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError("not a configuration snapshot")
        values = data.get("values")
        if not isinstance(values, Mapping):
            raise ValueError("configuration snapshot without 'values'")
        trial = ConfigurationStore(vendor_keys=self._vendor.values())
        trial._values = dict(self._values)
        trial._vendor = dict(self._vendor)
        trial._latitude, trial._longitude, trial._zone = self._latitude, self._longitude, self._zone
        for key, value in values.items():
            if not isinstance(value, str):
                raise ValueError(f"configuration snapshot: {key!r} is not a string")
            if key in _WRITABLE:
                try:
                    trial._set(key, value)
                except ValueError as exc:
                    raise ValueError(f"configuration snapshot: {exc}") from None
            elif key in trial._vendor and not trial._vendor[key].readonly:
                result = trial.change_configuration({"key": key, "value": value})
                if result.status != "Accepted":
                    raise ValueError(f"configuration snapshot: {result.reason}")
        self._values, self._vendor = trial._values, trial._vendor
        self._latitude, self._longitude, self._zone = trial._latitude, trial._longitude, trial._zone

    @classmethod
    def from_snapshot(
        cls, data: Mapping[str, Any], *, vendor_keys: Iterable[VendorKey] = ()
    ) -> ConfigurationStore:
        """A new store with defaults, then :meth:`restore` of ``data``."""
        store = cls(vendor_keys=vendor_keys)
        store.restore(data)
        return store

    # -- the one funnel for standard values
    # ----------------------------------------------------------------------

    def _set(self, key: str, value: str) -> bool:
        """Validate and store a standard writable key; raises ``ValueError``.  Returns whether it changed."""
        if key == GEOLOCATION:
            lat, lng, value = parse_geolocation(value)
            self._latitude, self._longitude = lat, lng
        elif key == TIME_ZONE:
            self._zone = _parse_zone(value)
        elif key == HEARTBEAT_INTERVAL:
            value = str(_parse_int(value, 1))  # "integer > 0 seconds"; stored canonical ("007" → "7")
        elif key == WEBSOCKET_PING_INTERVAL:
            value = str(_parse_int(value, 0))  # §J6: "Negative values are not allowed ... REJECTED"
        elif key == MAX_STACK_LEVEL:
            value = str(_parse_int(value, 0))
        else:  # pragma: no cover - callers only pass standard writable keys
            raise ValueError(f"unknown key {key!r}")
        changed = self._values.get(key) != value
        self._values[key] = value
        return changed

    def __repr__(self) -> str:
        return f"<ConfigurationStore {self._values!r}>"
