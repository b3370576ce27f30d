"""One version in one place: the three packages and both CLIs report the distribution's version.

The version is written once, in ``pyproject.toml``; an installed os3p answers from its metadata and a source
checkout from that file (``os3p_core._version``).  docs/CHANGELOG.md has a section for it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import os3p_core
import os3p_sim
import os3p_trio
from os3p_core._version import _checkout_version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_package_reports_the_pyproject_version() -> None:
    assert os3p_core.__version__ == PYPROJECT["version"]
    assert os3p_trio.__version__ == os3p_core.__version__
    assert os3p_sim.__version__ == os3p_core.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", os3p_core.__version__)


def test_unknown_attributes_still_raise() -> None:
    for package in (os3p_core, os3p_trio, os3p_sim):
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            package.nope  # noqa: B018


@pytest.mark.parametrize("module", ["os3p_trio.central.cli", "os3p_sim.cli"])
def test_cli_version(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    prog = {"os3p_trio.central.cli": "os3p-central", "os3p_sim.cli": "os3p-sim"}[module]
    assert done.stdout == f"{prog} {os3p_core.__version__}\n"


def test_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "docs" / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    heading = rf"^## \[{re.escape(os3p_core.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$"
    assert re.search(heading, changelog, re.M)


def test_checkout_fallback(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    assert _checkout_version(pyproject) == "0+unknown"  # no file
    pyproject.write_text('[project]\nname = "os3p"\nversion = "9.8.7"\n', encoding="utf-8")
    assert _checkout_version(pyproject) == "9.8.7"
    pyproject.write_text('[project]\nname = "other"\nversion = "1.0"\n', encoding="utf-8")
    assert _checkout_version(pyproject) == "0+unknown"  # somebody else's project
    pyproject.write_text("[project\n", encoding="utf-8")
    assert _checkout_version(pyproject) == "0+unknown"  # not TOML
