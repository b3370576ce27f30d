"""The guaranteed-delivery policy of PROTOCOL-DECISIONS §7, as pure functions.

The outbox itself lives in the durable store (:mod:`os3p_sim._store`); this module decides what an outcome
means and when to try again.  §7: "A CALLERROR ``SecurityError``, ``InternalError`` or ``GenericError``, or a
timeout, means 'retry later' (with back-off); any other CALLERROR means the message can never succeed: it is
moved aside (dead letter), logged, and does not block the queue."  A lost connection is also "retry later"
(the entry was never confirmed, §M6.7/§M6.8: "Only when the backend did send a response, the station
considers the event delivered").
"""

from __future__ import annotations

import enum
import random

import attrs

from os3p_core import ErrorCode

__all__ = ["RETRY_LATER_CODES", "Backoff", "Disposition", "classify_error"]

#: PROTOCOL-DECISIONS §7: CallError codes that mean "try again later".
RETRY_LATER_CODES = frozenset({ErrorCode.SECURITY_ERROR, ErrorCode.INTERNAL_ERROR, ErrorCode.GENERIC_ERROR})


class Disposition(enum.Enum):
    """What happens to an outbox entry after an attempt (PROTOCOL-DECISIONS §7)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead-letter"


def classify_error(code: str) -> Disposition:
    """What a CALLERROR with ``code`` means for an outbox entry (§7)."""
    return Disposition.RETRY if code in RETRY_LATER_CODES else Disposition.DEAD_LETTER


@attrs.frozen
class Backoff:
    """Exponential back-off with jitter between retries of one outbox entry.

    Defaults: 2 s after the first failure, doubling, at most 5 min.  The delay is a uniform draw in
    [cap/2, cap] ("equal jitter"): it spreads a fleet's retries after a Central System outage instead of
    synchronising them, and still guarantees each retry waits at least half the cap (full jitter, [0, cap],
    would let a failing entry be retried almost at once, again and again).
    """

    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 300.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failure (≥ 1) of the same entry."""
        cap = min(self.maximum, self.initial * self.factor ** max(0, min(failures - 1, 60)))
        return rng.uniform(cap / 2.0, cap)
