"""The public surface of os3p_trio: explicit, importable, documented (after trio's test_exports)."""

from __future__ import annotations

import inspect

import os3p_trio


def test_all_is_explicit_and_importable() -> None:
    assert len(set(os3p_trio.__all__)) == len(os3p_trio.__all__)
    for name in os3p_trio.__all__:
        assert hasattr(os3p_trio, name), name
    public = {n for n in vars(os3p_trio) if not n.startswith("_") and n not in {"central", "annotations"}}
    modules = {n for n in public if inspect.ismodule(getattr(os3p_trio, n))}
    assert public - modules <= set(os3p_trio.__all__)


def test_public_callables_have_docstrings() -> None:
    for name in os3p_trio.__all__:
        obj = getattr(os3p_trio, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_one_exception_hierarchy() -> None:
    # ``except CallFailure`` catches every way ``await session.call(request)`` fails on the wire;
    # ``except Os3pTrioError`` everything os3p_trio raises on purpose (docs/trio.md, "Exceptions").
    from os3p_trio import (
        CallErrorReceived,
        CallFailure,
        CallTimeout,
        ConnectionClosed,
        HandshakeFailed,
        InvalidResult,
        Os3pTrioError,
    )

    for failure in (CallErrorReceived, CallTimeout, InvalidResult, ConnectionClosed):
        assert issubclass(failure, CallFailure)
    assert issubclass(CallFailure, Os3pTrioError)
    assert issubclass(HandshakeFailed, Os3pTrioError)
    assert not issubclass(HandshakeFailed, CallFailure)
    closed = ConnectionClosed(1000, "replaced")
    assert (closed.code, closed.reason, str(closed)) == (
        1000,
        "replaced",
        "connection closed (1000: replaced)",
    )
    error = CallErrorReceived("Reset", "NotSupported", "no", {"a": 1})
    assert (error.action, error.code, error.description, error.details) == (
        "Reset",
        "NotSupported",
        "no",
        {"a": 1},
    )
    assert HandshakeFailed("refused", 401).status == 401
