"""A hypothesis state machine drives both ends of a connection pair at random.

Calls in both directions, answers (results and errors, boot answers Accepted / Pending /
Rejected, triggers), duplicates, forged and garbage frames, partial delivery, the clock, and
disconnects.  After every step it checks the invariants of issue 3:

- every call gets exactly one outcome (ResultReceived, ErrorReceived, CallTimedOut or CallFailed),
  and after a disconnect every call has one;
- no reply is ever sent to a response: every CALLRESULT / CALLERROR a side writes answers a CALL
  it received;
- the ids of a side's CALLs never repeat;
- gating is never breached: a Substation whose boot is not accepted initiates only
  BootNotification or a triggered message, a Central System surfaces no other call from it, and a
  Rejected Substation surfaces no call at all (checked against an independent model of trigger
  credits).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from helpers import (
    BOOT_REQUEST,
    GET_CONFIGURATION_RESPONSE,
    HEARTBEAT_RESPONSE,
    RESET_REQUEST,
    RESET_RESPONSE,
    STATUS_REQUEST,
    boot_response,
    counter_ids,
    trigger_request,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from os3p_core import (
    Action,
    BootState,
    BootStateChanged,
    Call,
    CallFailed,
    CallFrame,
    CallReceived,
    CallTimedOut,
    Config,
    Connection,
    ErrorCode,
    ErrorReceived,
    FormationViolation,
    LocalProtocolError,
    ResultReceived,
    Role,
    decode,
)

CS, SS = Role.CENTRAL_SYSTEM, Role.SUBSTATION

STATION_CALLS: dict[str, dict[str, Any]] = {
    "BootNotification": BOOT_REQUEST,
    "Heartbeat": {},
    "StatusNotification": STATUS_REQUEST,
}
CENTRAL_CALLS: dict[str, dict[str, Any]] = {
    "Reset": RESET_REQUEST,
    "GetConfiguration": {},
    "TriggerMessage:StatusNotification": trigger_request("StatusNotification"),
    "TriggerMessage:Heartbeat": trigger_request("Heartbeat"),
    "TriggerMessage:BootNotification": trigger_request("BootNotification"),
}
GARBAGE = [
    "",
    "not json",
    "{}",
    "[]",
    '[9,"x",{}]',
    '[2,"g-1","Heartbeat"]',
    '[2,"g-2","NoSuchAction",{}]',
    '[2,"g-3","Reset",{}]',
    '[2,"g-4","Heartbeat",{"extra":1}]',
    '[2,"' + "g" * 40 + '","Heartbeat",{}]',
    '[3,"g-5",{}]',
    '[4,"g-6","GenericError","",{}]',
    '[4,"g-7",1,2,3]',
]


def result_for(action: Action, payload: dict[str, Any], choice: int) -> dict[str, Any]:
    if action is Action.BOOT_NOTIFICATION:
        return boot_response(["Accepted", "Pending", "Rejected"][choice % 3], interval=choice)
    if action is Action.TRIGGER_MESSAGE:
        return {"status": ["Accepted", "Rejected"][choice % 2]}
    return {
        Action.HEARTBEAT: HEARTBEAT_RESPONSE,
        Action.STATUS_NOTIFICATION: {},
        Action.RESET: RESET_RESPONSE,
        Action.GET_CONFIGURATION: GET_CONFIGURATION_RESPONSE,
    }[action]


class Side:
    """One end: its connection plus what the test has observed of it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transit: list[str] = []  # written by this side, not yet delivered
        self.sent_ids: set[str] = set()  # ids send() returned
        self.outcomes: Counter[str] = Counter()  # id -> number of outcome events
        self.wire_call_ids: set[str] = set()  # ids of CALLs this side wrote
        self.received_call_ids: set[str] = set()  # ids of CALLs (incl. malformed) delivered to this side
        self.pending: list[CallReceived] = []  # calls the application has not answered yet
        self.handling: set[str] = set()  # their ids
        self.credits: Counter[Action] = Counter()  # the model's trigger credits


class ConnectionMachine(RuleBasedStateMachine):
    @initialize(
        previously_accepted=st.booleans(),
        max_outstanding=st.sampled_from([1, 1, 2]),
    )
    def start(self, previously_accepted: bool, max_outstanding: int) -> None:
        self.generation = 0
        self.max_outstanding = max_outstanding
        self.now = 0.0
        self.unsolicited = 0
        self.connect(previously_accepted)

    def connect(self, previously_accepted: bool) -> None:
        g = self.generation
        self.sides = {
            CS: Side(
                Connection(
                    CS,
                    Config(id_factory=counter_ids(f"cs{g}-"), max_outstanding_calls=self.max_outstanding,
                           trigger_boot_on_security_error=False),
                    previously_accepted=previously_accepted,
                )
            ),
            SS: Side(
                Connection(
                    SS,
                    Config(id_factory=counter_ids(f"ss{g}-"), max_outstanding_calls=self.max_outstanding),
                    previously_accepted=previously_accepted,
                )
            ),
        }

    # -----------------------------------------------------------------------------------------
    # Bookkeeping

    def collect(self, role: Role) -> None:
        """Take what the side wrote and its events, checking invariants on each."""
        side = self.sides[role]
        for text in side.conn.messages_to_send():
            frame = decode(text)
            if isinstance(frame, CallFrame):
                # Ids never repeat.
                assert frame.unique_id not in side.wire_call_ids, frame
                side.wire_call_ids.add(frame.unique_id)
                assert frame.unique_id in side.sent_ids
            else:
                # No reply is ever sent to a response: it answers a CALL this side received.
                assert not isinstance(frame, FormationViolation)
                assert frame.unique_id in side.received_call_ids, (role, frame)  # type: ignore[union-attr]
            side.transit.append(text)
        while (event := side.conn.next_event()) is not None:
            self.observe(role, event)

    def observe(self, role: Role, event: Any) -> None:
        side = self.sides[role]
        conn = side.conn
        if isinstance(event, CallReceived):
            if role is SS:
                assert conn.boot_state is not BootState.REJECTED  # a Rejected station answers nothing
            elif conn.boot_state is not BootState.ACCEPTED and event.action is not Action.BOOT_NOTIFICATION:
                assert side.credits[event.action] > 0, (event, side.credits)
                side.credits[event.action] -= 1
            # A duplicate id of a call still being handled never reaches the application.
            assert event.unique_id not in side.handling, event
            side.handling.add(event.unique_id)
            side.pending.append(event)
        elif isinstance(event, ResultReceived | ErrorReceived | CallTimedOut | CallFailed):
            assert event.unique_id in side.sent_ids
            side.outcomes[event.unique_id] += 1
            assert side.outcomes[event.unique_id] == 1, event  # exactly one outcome
            if (
                isinstance(event, ResultReceived)
                and event.action is Action.TRIGGER_MESSAGE
                and event.payload["status"] == "Accepted"
                and conn.boot_state is not BootState.ACCEPTED
            ):
                requested = Action(event.call.payload["requestedMessage"])
                if requested is not Action.BOOT_NOTIFICATION:
                    side.credits[requested] += 1
        else:
            assert isinstance(event, BootStateChanged)
            assert event.new is conn.boot_state
            side.credits.clear()

    def deliver_one(self, role: Role) -> None:
        side, peer_role = self.sides[role], (SS if role is CS else CS)
        peer = self.sides[peer_role]
        text = side.transit.pop(0)
        frame = decode(text)
        if isinstance(frame, CallFrame | FormationViolation):
            peer.received_call_ids.add(frame.unique_id)
        peer.conn.receive_message(text, self.now)
        self.collect(peer_role)

    def inject(self, role: Role, text: str) -> None:
        side = self.sides[role]
        frame = decode(text)
        if isinstance(frame, CallFrame | FormationViolation):
            side.received_call_ids.add(frame.unique_id)
        side.conn.receive_message(text, self.now)
        self.collect(role)

    # -----------------------------------------------------------------------------------------
    # Rules

    @rule(which=st.sampled_from(sorted(STATION_CALLS)))
    def station_calls(self, which: str) -> None:
        side = self.sides[SS]
        action = Action(which)
        state = side.conn.boot_state
        allowed = action is Action.BOOT_NOTIFICATION or state is BootState.ACCEPTED
        triggered = not allowed and state is not BootState.REJECTED and side.credits[action] > 0
        try:
            unique_id = side.conn.send(Call(action, STATION_CALLS[which]), self.now)
        except LocalProtocolError as exc:
            if exc.code is ErrorCode.SECURITY_ERROR:
                assert not allowed
                assert not triggered
            else:
                assert side.conn.outstanding_calls > 0  # the queue is full
            return
        # Gating: only what the boot state or a trigger credit allows goes out.
        assert allowed or triggered, (action, state, side.credits)
        if triggered:
            side.credits[action] -= 1
        side.sent_ids.add(unique_id)
        self.collect(SS)

    @rule(which=st.sampled_from(sorted(CENTRAL_CALLS)))
    def central_calls(self, which: str) -> None:
        side = self.sides[CS]
        try:
            unique_id = side.conn.send(Call(which.split(":")[0], CENTRAL_CALLS[which]), self.now)
        except LocalProtocolError:
            assert side.conn.outstanding_calls > 0  # only a full queue stops the Central System
            return
        side.sent_ids.add(unique_id)
        self.collect(CS)

    @rule(role=st.sampled_from([CS, SS]), count=st.integers(1, 4))
    def deliver(self, role: Role, count: int) -> None:
        for _ in range(min(count, len(self.sides[role].transit))):
            self.deliver_one(role)

    @rule(role=st.sampled_from([CS, SS]), index=st.integers(0, 7), choice=st.integers(0, 11))
    def answer(self, role: Role, index: int, choice: int) -> None:
        side = self.sides[role]
        if not side.pending:
            return
        call = side.pending.pop(index % len(side.pending))
        side.handling.discard(call.unique_id)
        if choice >= 9:
            side.conn.send(call.error(ErrorCode.NOT_SUPPORTED, "no"), self.now)
        else:
            payload = result_for(call.action, call.payload, choice)
            state = side.conn.boot_state
            side.conn.send(call.result(payload), self.now)
            if (
                role is SS
                and call.action is Action.TRIGGER_MESSAGE
                and payload["status"] == "Accepted"
                and state is not BootState.ACCEPTED
            ):
                requested = Action(call.payload["requestedMessage"])
                if requested is not Action.BOOT_NOTIFICATION:
                    side.credits[requested] += 1
        self.collect(role)

    @rule(choices=st.lists(st.integers(0, 11), min_size=1, max_size=6))
    def settle(self, choices: list[int]) -> None:
        """Deliver everything both ways and answer every pending call, a few rounds."""
        i = 0
        for _ in range(3):
            for role in (CS, SS):
                while self.sides[role].transit:
                    self.deliver_one(role)
            for role in (CS, SS):
                while self.sides[role].pending:
                    self.answer(role, 0, choices[i % len(choices)])
                    i += 1

    @rule(
        role=st.sampled_from([CS, SS]),
        kind=st.sampled_from(["garbage", "text", "duplicate", "unsolicited", "forged", "forged-invalid"]),
        text=st.sampled_from(GARBAGE) | st.text(max_size=30),
        index=st.integers(0, 20),
    )
    def adversary(self, role: Role, kind: str, text: str, index: int) -> None:
        """Garbage, a duplicate of one of the peer's CALLs (same id, maybe still being handled), or
        a response to one of this side's calls that the peer never sent."""
        side, peer = self.sides[role], self.sides[SS if role is CS else CS]
        if kind in ("garbage", "text"):
            self.inject(role, text)
        elif kind == "unsolicited":
            # A CALL the peer's connection would not have let out (fresh id, any boot state).
            if role is CS:
                action, payload = (
                    ["Heartbeat", "StatusNotification"][index % 2],
                    [{}, STATUS_REQUEST][index % 2],
                )
            else:
                action, payload = "Reset", RESET_REQUEST
            self.inject(role, json.dumps([2, f"u-{self.generation}-{self.unsolicited}", action, payload]))
            self.unsolicited += 1
        elif kind == "duplicate":
            calls = sorted(peer.wire_call_ids)
            if calls:
                action = "Heartbeat" if role is CS else "Reset"
                self.inject(role, json.dumps([2, calls[index % len(calls)], action, {}]))
        else:
            calls = sorted(side.wire_call_ids)
            if calls:
                forged = {"bogus": 1} if kind == "forged-invalid" else {"currentTime": "2026-11-26T08:00:00Z"}
                self.inject(role, json.dumps([3, calls[index % len(calls)], forged]))

    @rule(dt=st.sampled_from([0.5, 5.0, 29.0, 31.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        for role in (CS, SS):
            conn = self.sides[role].conn
            deadline = conn.next_deadline()
            conn.handle_timeout(self.now)
            if deadline is not None and deadline <= self.now:
                assert conn.next_deadline() is None or conn.next_deadline() > self.now  # type: ignore[operator]
            self.collect(role)

    @precondition(lambda self: self.generation < 3)
    @rule()
    def disconnect(self) -> None:
        self.check_all_outcomes()
        self.generation += 1
        self.connect(previously_accepted=self.sides[SS].conn.boot_state is BootState.ACCEPTED)

    # -----------------------------------------------------------------------------------------

    def check_all_outcomes(self) -> None:
        for role in (CS, SS):
            side = self.sides[role]
            side.conn.connection_lost()
            self.collect(role)
            assert side.conn.messages_to_send() == []
            # Every call gets exactly one outcome.
            assert set(side.outcomes) == side.sent_ids
            assert all(n == 1 for n in side.outcomes.values())

    @invariant()
    def bounded(self) -> None:
        for role in (CS, SS):
            stats = self.sides[role].conn.statistics()
            assert stats["in_flight"] <= self.max_outstanding
            assert stats["incoming"] <= 16

    def teardown(self) -> None:
        if hasattr(self, "sides"):
            self.check_all_outcomes()


TestConnectionMachine = ConnectionMachine.TestCase
TestConnectionMachine.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
