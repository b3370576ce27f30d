"""The version of os3p, in one place: the installed distribution's metadata.

``os3p_core.__version__``, ``os3p_trio.__version__``, ``os3p_sim.__version__`` and both CLIs' ``--version``
all come from :func:`version`.  The three packages ship in one distribution (``os3p``), so they share
one version.  An installed wheel or sdist answers from its metadata (``importlib.metadata``); a source
checkout that is not installed (``PYTHONPATH=$PWD``, as the developers run the tests) answers from the
``pyproject.toml`` beside the packages.  Looked up on first use, not at import: ``importlib.metadata`` costs
~30 ms to import.
"""

from __future__ import annotations

import functools
from pathlib import Path

DISTRIBUTION = "os3p"


@functools.cache
def version() -> str:
    """The os3p version: from the distribution metadata, else the source checkout, else ``0+unknown``."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _checkout_version(Path(__file__).resolve().parent.parent / "pyproject.toml")


def _checkout_version(pyproject: Path) -> str:
    import tomllib

    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return "0+unknown"
    if project.get("name") != DISTRIBUTION or not isinstance(project.get("version"), str):
        return "0+unknown"
    return str(project["version"])
