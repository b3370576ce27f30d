"""The action table: 21 actions, 8 sent by the Substation and 13 by the Central System (annex §6, §7)."""

import pytest

from os3p_core import ACTIONS_SENT_BY, Action, ErrorCode, LocalProtocolError, Role, SchemaViolation, sender_of


def test_twenty_one_actions_split_eight_thirteen() -> None:
    assert len(Action) == 21
    by_role = {role: [a for a, r in ACTIONS_SENT_BY.items() if r is role] for role in Role}
    assert len(by_role[Role.SUBSTATION]) == 8
    assert len(by_role[Role.CENTRAL_SYSTEM]) == 13


@pytest.mark.parametrize(
    ("action", "sender"),
    [
        ("BootNotification", Role.SUBSTATION),
        ("StreetlightStatusNotification", Role.SUBSTATION),
        ("TriggerMessage", Role.CENTRAL_SYSTEM),
        ("ResetMVFaultIndicator", Role.CENTRAL_SYSTEM),
    ],
)
def test_sender_of(action: str, sender: Role) -> None:
    assert sender_of(action) is sender
    assert Action(action).sender is sender
    assert sender.peer is not sender


def test_unknown_and_wrong_case_actions_are_not_actions() -> None:
    # Action names are case-sensitive (spec §J4.2 Table 4).
    assert sender_of("heartbeat") is None
    assert sender_of("GetDiagnostics") is None


def test_error_codes_are_spelled_as_the_spec() -> None:
    assert ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION == "OccurenceConstraintViolation"
    assert len(ErrorCode) == 10


def test_errors_carry_their_code() -> None:
    err = LocalProtocolError("bad", ErrorCode.FORMATION_VIOLATION)
    assert err.code is ErrorCode.FORMATION_VIOLATION
    assert err.details == {}
    assert "FormationViolation" in repr(err)
    violation = SchemaViolation(ErrorCode.TYPE_CONSTRAINT_VIOLATION, "x must be integer", "data.x", "type")
    assert violation.details == {"path": "data.x", "rule": "type"}
    assert "data.x" in repr(violation)
