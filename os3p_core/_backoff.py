"""The one back-off of a Substation: reconnects and outbox retries, shaped like OCPP 2.0.1's RetryBackOff.

§M3.3 asks a station "to reconnect as soon as possible"; a Central System that restarts under 100,000 stations
must not be flattened by all of them at once.  OCPP 2.0.1 (B04 / "Reconnecting", OCPPCommCtrlr variables)
settles it with three numbers, and we add the cap it leaves implicit:

- ``RetryBackOffWaitMinimum`` — the first attempt waits this many seconds, **plus**
- ``RetryBackOffRandomRange`` — a fresh uniform random value in ``[0, range]`` on *every* attempt;
- ``RetryBackOffRepeatTimes`` — after each failed attempt the wait doubles, at most this many times; later
  attempts keep the last wait ("keep reconnecting with the last back-off time, not increasing it any
  further");
- ``RetryBackOffWaitMaximum`` (os3p vendor key) — the doubled wait never exceeds this (the random part is
  added
  on top, so the cap does not re-synchronise a fleet at one value).

Attempt *n* (0-based) therefore waits ``min(maximum, minimum * 2**min(n, repeat_times)) + uniform(0, range)``.

The same formula paces the durable outbox's "retry later" (PROTOCOL-DECISIONS §7): one policy, one place.  The
keys are station configuration (vendor keys in :class:`~os3p_core.ConfigurationStore`, readable and changeable
with Get/ChangeConfiguration): :func:`retry_backoff_keys` declares them, :func:`retry_backoff_from` reads
them.

Defaults and why (docs/simulator.md has the measured storm figures): a lone station that lost its connection
tries again after 2–12 s (2 s minimum + up to 10 s random); a fleet that lost a restarted Central System
all at
once spreads its first wave over 10 s and, as long as attempts fail, each station's wait doubles (4, 8, ...
128
s after 6 doublings) with fresh randomness each time, so the failing part of a storm thins out geometrically
instead of hammering at a fixed rate.  No clock or entropy here: the caller passes a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Protocol

import attrs

from ._configuration import MAXINT, VendorKey

__all__ = [
    "RETRY_BACKOFF_KEYS",
    "RandomSource",
    "RetryBackOff",
    "retry_backoff_from",
    "retry_backoff_keys",
]

WAIT_MINIMUM_KEY: Final = "RetryBackOffWaitMinimum"
RANDOM_RANGE_KEY: Final = "RetryBackOffRandomRange"
REPEAT_TIMES_KEY: Final = "RetryBackOffRepeatTimes"
WAIT_MAXIMUM_KEY: Final = "RetryBackOffWaitMaximum"
#: The four station configuration keys, in the order GetConfiguration reports them.
RETRY_BACKOFF_KEYS: Final = (WAIT_MINIMUM_KEY, RANDOM_RANGE_KEY, REPEAT_TIMES_KEY, WAIT_MAXIMUM_KEY)
#: Doublings are bounded whatever the key says: 2**60 seconds is already beyond any cap.
_MAX_DOUBLINGS: Final = 60


class RandomSource(Protocol):
    """What the policies draw from: a seeded ``random.Random`` (the core never owns entropy)."""

    def uniform(self, a: float, b: float) -> float: ...


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAXINT:
        raise ValueError(f"{attribute.name} must be a number of seconds in [0, {MAXINT}], got {value!r}")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= MAXINT:
        raise ValueError(f"{attribute.name} must be an integer in [0, {MAXINT}], got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class RetryBackOff:
    """Back-off between attempts (reconnects, outbox retries).  Frozen; documented defaults (see module)."""

    #: ``RetryBackOffWaitMinimum``: seconds before the first attempt, doubled per failed attempt.
    wait_minimum: float = attrs.field(default=2.0, validator=_non_negative)
    #: ``RetryBackOffRandomRange``: a fresh ``uniform(0, random_range)`` is added to every wait.
    random_range: float = attrs.field(default=10.0, validator=_non_negative)
    #: ``RetryBackOffRepeatTimes``: how many times the wait doubles before it stays the same.
    repeat_times: int = attrs.field(default=6, validator=_count)
    #: ``RetryBackOffWaitMaximum``: bound on the doubled part of the wait.
    wait_maximum: float = attrs.field(default=600.0, validator=_non_negative)

    def delay(self, attempt: int, rng: RandomSource) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based: 0 is the first try after a loss)."""
        doublings = min(max(attempt, 0), self.repeat_times, _MAX_DOUBLINGS)
        base = min(self.wait_maximum, self.wait_minimum * 2.0**doublings)
        return base + (rng.uniform(0.0, self.random_range) if self.random_range > 0 else 0.0)

    def longest(self, attempt: int) -> float:
        """The largest value :meth:`delay` can return for ``attempt`` (for bounds in tests and docs)."""
        doublings = min(max(attempt, 0), self.repeat_times, _MAX_DOUBLINGS)
        return min(self.wait_maximum, self.wait_minimum * 2.0**doublings) + self.random_range


def _seconds(text: str) -> str:
    # The same rule as the standard integer keys (PROTOCOL-DECISIONS §6): ASCII digits, [0, MAXINT].
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not a non-negative decimal integer")
    value = int(text)
    if value > MAXINT:
        raise ValueError(f"{value} outside [0, {MAXINT}]")
    return str(value)


def retry_backoff_keys(policy: RetryBackOff | None = None) -> tuple[VendorKey, ...]:
    """The four RetryBackOff keys as writable vendor keys holding ``policy`` (default: the defaults).

    Integers (seconds, or a count) in [0, MAXINT]; anything else is ``Rejected``.  Pass them to
    ``ConfigurationStore(vendor_keys=...)`` (and to ``from_snapshot``) and read them back with
    :func:`retry_backoff_from` after an Accepted ChangeConfiguration.
    """
    p = policy if policy is not None else RetryBackOff()
    values = (p.wait_minimum, p.random_range, p.repeat_times, p.wait_maximum)
    return tuple(
        VendorKey(name, str(int(value)), readonly=False, validate=_seconds)
        for name, value in zip(RETRY_BACKOFF_KEYS, values, strict=True)
    )


def retry_backoff_from(
    values: Iterable[tuple[str, str]], default: RetryBackOff | None = None
) -> RetryBackOff:
    """A :class:`RetryBackOff` from ``(key, value)`` pairs (e.g. GetConfiguration's); keys missing or not
    integers keep ``default``'s value."""
    base = default if default is not None else RetryBackOff()
    known = dict(values)
    changes: dict[str, Any] = {}
    fields = ("wait_minimum", "random_range", "repeat_times", "wait_maximum")
    for key, field in zip(RETRY_BACKOFF_KEYS, fields, strict=True):
        text = known.get(key)
        if text is not None and text.isascii() and text.isdigit() and int(text) <= MAXINT:
            changes[field] = int(text) if field == "repeat_times" else float(int(text))
    return attrs.evolve(base, **changes) if changes else base
