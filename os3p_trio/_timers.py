"""One timer task for many connections.

Every connection needs a wake-up now and then: the core's call deadlines (``next_deadline()`` →
``handle_timeout(now)``) and the keepalive (ping a silent peer, give up on one that does not
pong).  A task per connection for that costs a task, its context, a cancel scope and a chain of
coroutine frames — about twenty GC-tracked objects per idle connection, which a full collection
walks: with 10,000 connections a full collection was measured at 0.6–0.9 s here (issue 5), longer
than some ping timeouts.  So a server (or a client, or a whole simulated fleet) runs one
:class:`TimerService`: one task sleeping until the earliest wake-up in a heap.

Wake-ups only ever move *earlier* through :meth:`TimerService.schedule`; a connection whose wake-up
moved later (traffic arrived, a call was answered) is simply woken early once, finds nothing due and
schedules its next wake-up.  Stale heap entries are skipped (lazy deletion) and hold only a small
:class:`TimerHandle`, never the connection itself, so a closed connection is freed at once.

The callback runs synchronously in the timer task and must not block; a connection that has to
write (a ping, a call released from the queue) starts a short task in its own nursery.
"""

from __future__ import annotations

import heapq
import logging
import math
from typing import NoReturn, Protocol

import trio

__all__ = ["TimerHandle", "TimerService"]

logger = logging.getLogger("os3p_trio")


class _Timed(Protocol):
    def _on_timer(self, now: float) -> None: ...


class TimerHandle:
    """A connection's place in a :class:`TimerService`: ``at`` is its earliest scheduled wake-up."""

    __slots__ = ("at", "owner")

    def __init__(self, owner: _Timed) -> None:
        self.owner: _Timed | None = owner
        self.at = math.inf

    def cancel(self) -> None:
        """Never call the owner again (its heap entries become stale)."""
        self.owner = None
        self.at = math.inf


class TimerService:
    """A heap of wake-up times served by one task (:meth:`run`).

    Bounds: one live entry per connection plus stale entries, each of which is dropped at its own
    time; at most one entry is added per wake-up that moved earlier (a new call, a ping sent).
    """

    __slots__ = ("_deadline", "_heap", "_scope", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._scope: trio.CancelScope | None = None
        self._deadline = math.inf
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, handle: TimerHandle, when: float) -> None:
        """Wake ``handle``'s owner at ``when`` (``trio.current_time()`` clock) unless it is already
        scheduled earlier."""
        if when >= handle.at or handle.owner is None:
            return
        handle.at = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, handle))
        if when < self._deadline:
            self._deadline = when
            if self._scope is not None:
                self._scope.deadline = when

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Serve wake-ups until cancelled."""
        heap = self._heap
        task_status.started()
        while True:
            with trio.CancelScope() as scope:
                self._deadline = heap[0][0] if heap else math.inf
                scope.deadline = self._deadline
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            # Take what is due first: a wake-up scheduled by a callback waits for the next round
            # (after a checkpoint), so no owner can keep this loop from yielding.
            due = []
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap))
            for when, _, handle in due:
                owner = handle.owner
                if owner is None or handle.at != when:
                    continue  # stale: cancelled, or rescheduled earlier and already served
                handle.at = math.inf
                try:
                    owner._on_timer(now)
                except Exception:  # one connection's bug must not stop every connection's timers
                    logger.exception("os3p timer callback failed")
