"""The shared timer service: earliest-first, lazy deletion, containment of callback failures."""

from __future__ import annotations

import math

import trio

from os3p_trio import TimerService
from os3p_trio._timers import TimerHandle


class Owner:
    def __init__(self, name: str, log: list[tuple[str, float]], *, fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail

    def _on_timer(self, now: float) -> None:
        self.log.append((self.name, now))
        if self.fail:
            raise RuntimeError("owner bug")


async def test_wakeups_in_order_only_earlier_moves_and_cancel() -> None:
    timers = TimerService()
    log: list[tuple[str, float]] = []
    a, b, c, d = (TimerHandle(Owner(n, log, fail=n == "c")) for n in "abcd")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(timers.run)
            t0 = trio.current_time()
            timers.schedule(a, t0 + 0.3)
            timers.schedule(a, t0 + 0.5)  # later: ignored (a stays at 0.3)
            timers.schedule(b, t0 + 0.4)
            timers.schedule(b, t0 + 0.1)  # earlier: moves (the 0.4 entry becomes stale)
            timers.schedule(c, t0 + 0.2)  # its callback raises: logged, the service goes on
            timers.schedule(d, t0 + 0.25)
            d.cancel()  # never called
            assert a.at == t0 + 0.3
            await trio.sleep(0.6)
            nursery.cancel_scope.cancel()
    assert [name for name, _ in log] == ["b", "c", "a"]
    assert all(now >= t0 for _, now in log)
    assert len(timers) == 0  # stale entries were dropped at their time
    assert a.at == math.inf


async def test_many_owners_one_task() -> None:
    timers = TimerService()
    log: list[tuple[str, float]] = []
    handles = [TimerHandle(Owner(str(i), log)) for i in range(1000)]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(timers.run)
            t0 = trio.current_time()
            for i, h in enumerate(handles):
                timers.schedule(h, t0 + (i % 10) * 0.01)
            while len(log) < 1000:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert sorted(int(n) for n, _ in log) == list(range(1000))


def test_reconnect_backoff_is_full_jitter_bounded_and_spreads_a_fleet() -> None:
    import random
    import statistics

    from os3p_trio import ClientConfig

    config = ClientConfig()
    rng = random.Random(5)
    # Attempt n waits uniform(0, min(reconnect_max, reconnect_base * 2**n)).
    for attempt, window in ((0, 60.0), (1, 120.0), (3, 480.0), (4, 900.0), (40, 900.0), (10_000, 900.0)):
        delays = [config.backoff(attempt, rng) for _ in range(2000)]
        assert min(delays) >= 0.0
        assert max(delays) <= window
        assert max(delays) > 0.9 * window  # the whole window is used ...
        assert abs(statistics.mean(delays) - window / 2) < 0.05 * window  # ... uniformly
    # 100,000 stations that lost a restarted Central System at once: the first attempts spread
    # over a minute, no second sees more than ~2% of the fleet.
    first = [config.backoff(0, rng) for _ in range(100_000)]
    per_second = [0] * 60
    for d in first:
        per_second[min(int(d), 59)] += 1
    assert max(per_second) < 2_000
