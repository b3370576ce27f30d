"""The station-side policy engines of os3p_core: StationBoot (boot, heartbeat, reconnect back-off) and
OutboxDelivery (PROTOCOL-DECISIONS §7), with hypothesis over any sequence of outcomes; and the Central
System's TriggerMessage(BootNotification) after a SecurityError (PROTOCOL-DECISIONS §5)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from os3p_core import (
    AcceptanceForgotten,
    BootAccepted,
    BootNotificationDue,
    BootState,
    CloseDue,
    ConfigurationStore,
    ConnectDue,
    Connection,
    HeartbeatDue,
    LinkState,
    OutboxDelivery,
    RetryBackOff,
    Role,
    StationBoot,
    StationBootConfig,
    retry_backoff_from,
    retry_backoff_keys,
)
from os3p_sim import Change, SQLiteStore

FIELDS = {"vendor": "v", "model": "m"}


def drain(boot: StationBoot) -> list[object]:
    out = []
    while (e := boot.next_event()) is not None:
        out.append(e)
    return out


def test_backoff_shape_is_ocpp_201() -> None:
    b = RetryBackOff(wait_minimum=2, random_range=10, repeat_times=3, wait_maximum=12)
    rng = random.Random(1)
    for attempt, base in [(0, 2), (1, 4), (2, 8), (3, 12), (4, 12), (50, 12)]:
        for _ in range(50):
            d = b.delay(attempt, rng)
            assert base <= d <= base + 10
        assert b.longest(attempt) == base + 10
    with pytest.raises(ValueError, match="repeat_times"):
        RetryBackOff(repeat_times=-1)


def test_backoff_keys_through_the_configuration_store() -> None:
    store = ConfigurationStore(vendor_keys=retry_backoff_keys())
    assert store.change_configuration({"key": "RetryBackOffWaitMinimum", "value": "5"}).status == "Accepted"
    assert store.change_configuration({"key": "RetryBackOffRandomRange", "value": "-1"}).status == "Rejected"
    assert store.change_configuration({"key": "RetryBackOffRepeatTimes", "value": "x"}).status == "Rejected"
    snap = store.snapshot()
    again = ConfigurationStore.from_snapshot(snap, vendor_keys=retry_backoff_keys())
    values = [(k, v) for k in ("RetryBackOffWaitMinimum", "RetryBackOffRandomRange")
              if (v := again.value(k, __import__("datetime").datetime.now(__import__("datetime").UTC)))]
    policy = retry_backoff_from(values)
    assert policy.wait_minimum == 5.0
    assert policy.random_range == RetryBackOff().random_range


def test_boot_flow_pending_accepted_security_error_rejected() -> None:
    boot = StationBoot(FIELDS, now=0.0, rng=random.Random(0))
    boot.handle_timeout(0.0)
    assert drain(boot) == [ConnectDue(0, False)]
    boot.connection_opened(1.0)
    assert drain(boot) == [BootNotificationDue(FIELDS)]
    boot.boot_answered("Pending", 0, 2.0)
    assert boot.next_deadline() == 62.0
    assert not boot.accepted  # interval 0 → 60 s
    boot.handle_timeout(62.0)
    assert drain(boot) == [BootNotificationDue(FIELDS)]
    boot.boot_answered("Accepted", 100, 63.0)
    assert drain(boot) == [BootAccepted(FIELDS, 100)]
    assert boot.accepted
    boot.handle_timeout(163.0)
    assert drain(boot) == [HeartbeatDue()]
    boot.security_error(170.0)
    assert drain(boot) == [AcceptanceForgotten("SecurityError"), BootNotificationDue(FIELDS)]
    assert not boot.accepted
    assert not boot.remembered
    boot.boot_answered("Rejected", 0, 171.0)
    boot.handle_timeout(171.0 + boot.config.reject_close_wait)
    assert drain(boot) == [CloseDue("boot rejected")]
    boot.connection_lost(177.0)
    assert boot.state is LinkState.OFFLINE
    assert boot.next_deadline() == 237.0  # Rejected, interval 0 → 60 s


def test_no_boot_notification_when_fields_unchanged_and_a_new_one_when_changed() -> None:
    boot = StationBoot(FIELDS, now=0.0, rng=random.Random(0), accepted_fields=FIELDS)
    boot.handle_timeout(0.0)
    assert drain(boot) == [ConnectDue(0, True)]
    boot.connection_opened(0.5)
    assert drain(boot) == []
    assert boot.accepted
    boot.connection_lost(1.0)
    boot.set_boot_fields({**FIELDS, "firmwareVersion": "2"})
    boot.handle_timeout(boot.next_deadline() or 0.0)
    assert drain(boot) == [ConnectDue(1, False)]  # the first wait after a loss was attempt 0


OPS = st.lists(st.tuples(st.sampled_from(["time", "open", "fail", "lost", "accepted", "pending", "rejected",
                                          "bootfail", "security", "trigger", "hb"]),
                         st.floats(min_value=0.0, max_value=200.0)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, remembered=st.booleans(), seed=st.integers(0, 100))
def test_boot_engine_any_sequence(ops: list[tuple[str, float]], remembered: bool, seed: int) -> None:
    """Deadlines never lie before the clock; nothing but BootNotification while not accepted; at most one
    BootNotification in flight; acceptance only from an Accepted answer or remembered fields."""
    boot = StationBoot(FIELDS, now=0.0, rng=random.Random(seed),
                       accepted_fields=FIELDS if remembered else None,
                       config=StationBootConfig(heartbeat_interval=30.0))
    now = 0.0
    boot_in_flight = False
    for op, dt in ops:
        now += dt
        prev = boot.next_deadline()
        if op == "time":
            boot.handle_timeout(now)
        elif op == "open" and boot.state is LinkState.CONNECTING:
            boot.connection_opened(now)
        elif op == "fail" and boot.state is LinkState.CONNECTING:
            boot.connection_failed(now)
        elif op == "lost":
            boot.connection_lost(now)
            boot_in_flight = False
        elif op in ("accepted", "pending", "rejected") and boot_in_flight:
            boot.boot_answered(op.capitalize(), 0, now)
            boot_in_flight = False
        elif op == "bootfail" and boot_in_flight:
            boot.boot_failed(now)
            boot_in_flight = False
        elif op == "security":
            boot.security_error(now)
        elif op == "trigger":
            boot.boot_requested(now)
        elif op == "hb":
            boot.set_heartbeat_interval(10.0, now)
        for event in drain(boot):
            if isinstance(event, BootNotificationDue):
                assert not boot_in_flight, "two BootNotifications in flight"
                assert boot.state is LinkState.BOOTING
                boot_in_flight = True
            elif isinstance(event, HeartbeatDue):
                assert boot.accepted
            elif isinstance(event, ConnectDue):
                assert boot.state is LinkState.CONNECTING
        deadline = boot.next_deadline()
        if deadline is not None:
            assert deadline >= now or deadline == prev, "a new deadline before the clock"
        if boot.accepted:
            assert boot.accepted_fields == FIELDS
        if not boot.connected:
            assert not boot.accepted
        if op == "time" and deadline is not None:
            assert deadline > now or boot.state is LinkState.CONNECTING


OUTCOMES = st.sampled_from(["ok", "SecurityError", "InternalError", "GenericError", "timeout",
                            "FormationViolation", "NotSupported", "lost", "refused", "restart", "append"])


@settings(max_examples=120, deadline=None)
@given(outcomes=st.lists(st.tuples(OUTCOMES, st.booleans()), max_size=50), n=st.integers(0, 6),
       seed=st.integers(0, 50))
def test_delivery_any_sequence_loses_nothing_and_keeps_order(outcomes: list[tuple[str, bool]], n: int,
                                                           seed: int) -> None:
    store = SQLiteStore(":memory:", synchronous="NORMAL")
    appended: list[int] = []

    def append() -> None:
        i = len(appended)
        appended.extend(store.apply("S", Change(outbox=(("StatusNotification", {"i": i}),)), 0.0))

    for _ in range(n):
        append()
    rng = random.Random(seed)
    backoff = RetryBackOff(wait_minimum=1, random_range=1, repeat_times=3)
    delivery = OutboxDelivery(store, "S", rng=rng, backoff=backoff)
    now = 0.0
    delivered: list[int] = []
    dead: list[int] = []
    sent: list[int] = []
    for outcome, allowed in outcomes:
        now += 10.0  # past any back-off of these settings
        if outcome == "append":
            append()
            continue
        if outcome == "restart":
            delivery = OutboxDelivery(store, "S", rng=rng, backoff=backoff)  # kill -9: the store survives
            continue
        msg = delivery.next_message(now, allowed=allowed)
        if not allowed:
            assert msg is None, "sent while the boot gate is closed"
            continue
        if msg is None:
            assert store.outbox_head("S") is None
            continue
        undecided = [s for s in appended if s not in delivered and s not in dead]
        assert msg.seq == undecided[0], "not the oldest entry"
        assert delivery.next_message(now, allowed=True) is None, "two at once"
        sent.append(msg.seq)
        if outcome == "ok":
            delivery.delivered(now)
            delivered.append(msg.seq)
        elif outcome == "timeout":
            delivery.timed_out(now)
        elif outcome == "lost":
            delivery.interrupted(now)
        elif outcome == "refused":
            delivery.refused("SecurityError", "not accepted", now)
        else:
            if delivery.answered_error(outcome, now).value == "dead-letter":
                dead.append(msg.seq)
        assert delivery.next_deadline() is None or delivery.next_deadline() >= now
    pending = [e.seq for e in store.outbox_pending("S")]
    assert sorted(delivered + dead + pending) == appended, "an entry was lost or duplicated"
    assert delivered == sorted(delivered)
    assert dead == sorted(dead)
    assert [e.seq for e in store.dead_letters("S")] == dead
    assert all(json.dumps(e.payload) for e in store.dead_letters("S"))


def test_central_triggers_one_boot_notification_per_connection_after_security_error() -> None:
    central = Connection(Role.CENTRAL_SYSTEM)
    central.receive_message('[2,"a","Heartbeat",{}]', 1.0)
    first = [json.loads(m) for m in central.messages_to_send()]
    assert first[0][:3] == [4, "a", "SecurityError"]
    assert first[1][2:] == ["TriggerMessage", {"requestedMessage": "BootNotification"}]
    central.receive_message('[2,"b","Heartbeat",{}]', 2.0)
    assert [json.loads(m)[:3] for m in central.messages_to_send()] == [[4, "b", "SecurityError"]]
    assert central.boot_triggered
    assert central.boot_state is BootState.NEW
    # Remembered acceptance, or the option off: no trigger.
    known = Connection(Role.CENTRAL_SYSTEM, previously_accepted=True)
    known.receive_message('[2,"a","Heartbeat",{}]', 1.0)
    assert known.messages_to_send() == []
    assert not known.boot_triggered  # the Heartbeat reaches the app
