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
