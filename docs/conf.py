"""Sphinx configuration of the os3p documentation site.

Build (what CI runs, warnings are errors, every cross-reference must resolve)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

The guides are the Markdown files in ``docs/`` (read through myst-parser); the API reference is generated from
the docstrings of every name in the ``__all__`` of the public packages, and the CLI reference from the argument
parsers.  Choices made here, and why, are on the page "About this documentation" (docs/about-docs.md).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# A source checkout builds its own code; an installed os3p is used only when the checkout is not importable.
sys.path.insert(0, str(ROOT))

import os3p_core  # noqa: E402

project = "os3p"
author = "The os3p authors"
copyright = "the os3p authors, Apache-2.0"  # noqa: A001 - the name Sphinx reads
release = os3p_core.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "LICENSE", "**/.pytest_cache"]
templates_path: list[str] = []
html_static_path = ["_static"]
html_theme = "furo"
html_title = f"os3p {release}"
html_theme_options = {"source_repository": "", "navigation_with_keys": True}
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# -- MyST: the guides stay plain Markdown that reads well on a code host too --------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, as the guides write them

# -- autodoc ---------------------------------------------------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # constants (ACTIONS_SENT_BY, MAX_IDENTITY_LENGTH, ...) carry no docstring of their own
    "show-inheritance": True,
    "member-order": "bysource",
    # Names re-exported from the private modules; ``__all__`` decides which (autodoc's default).
    "imported-members": True,
}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False  # True shows attrs defaults as attr_dict[...] text
autoclass_content = "both"  # a class's docstring and its __init__'s
autodoc_inherit_docstrings = True
python_use_unqualified_type_names = True
add_module_names = False

# -- cross-references ----------------------------------------------------------------------------------------------
nitpicky = True

# CI has no network but package registries: Debian's python3-doc and python-attr-doc packages carry the inventories
# of Python's and attrs' documentation (.ci/run installs them); trio publishes no packaged inventory, so
# docs/_inventories/trio.inv lists the trio names os3p's signatures use, with their addresses on trio's site
# (regenerate with ``python docs/_inventories/make_trio_inv.py``).  Where a local file is missing the inventory is
# fetched from the site itself.


def _local(path: str) -> str | None:
    return path if Path(path).is_file() else None


intersphinx_mapping = {
    "python": ("https://docs.python.org/3", _local("/usr/share/doc/python3.11/html/objects.inv")),
    "attrs": ("https://www.attrs.org/en/stable", _local("/usr/share/doc/python-attr-doc/html/objects.inv")),
    "trio": ("https://trio.readthedocs.io/en/stable", str(HERE / "_inventories" / "trio.inv")),
}
intersphinx_timeout = 10

# Names of third-party packages that publish no inventory reachable from here (their classes appear in os3p
# signatures, as parameter or return types).  Each entry is a type os3p takes from or hands to that package; the
# text of the signature still names it exactly.
nitpick_ignore_regex = [
    ("py:.*", r"wsproto(\..*)?"),
    ("py:.*", r"httpx(\..*)?"),
    ("py:.*", r"starlette(\..*)?"),
    ("py:.*", r"hypercorn(\..*)?"),
    ("py:.*", r"cattrs(\..*)?"),
    ("py:.*", r"trio_websocket(\..*)?"),
    ("py:.*", r"astral(\..*)?"),
    ("py:.*", r"psycopg(\..*)?"),
    ("py:.*", r"coredis(\..*)?"),
    ("py:.*", r"prometheus_client(\..*)?"),
    # attrs' own documentation has no entries for these runtime classes.
    ("py:class", r"attr\..*"),
    # Type variables and aliases local to a signature: rendered as text, nothing to link to.
    ("py:class", r"_[A-Za-z]+"),
    ("py:obj", r"(os3p_\w+\.)?(\w+\.)*_[A-Z]\w*"),
    ("py:class", r"os3p_\w+(\.\w+)*\.(T|P)"),  # TypeVars
    ("py:class", r"os3p_\w+(\.\w+)*\._\w+\.\w+"),  # private helper classes in signatures (timer handles)
    # Docstrings that name private helpers or module constants not in __all__ (left as literal text).
    ("py:meth", r"_on_TriggerMessage"),
    ("py:func", r"_api\.create_api"),
    ("py:data", r"MAX_VALUE_LENGTH|MAX_PROFILES_PER_CONTACTOR"),
    ("py:attr", r"results"),
    ("py:attr", r"type"),
    # Sphinx splits a default value's repr that contains ``Callable[[...]]`` into a bogus reference.
    ("py:class", r"collections\.abc\.Callable\[\[.*"),
]
suppress_warnings = ["ref.python"]  # 'more than one target for "type"': two payload classes have a ``type`` field

PUBLIC_PACKAGES = ["os3p_core", "os3p_core.payloads", "os3p_trio", "os3p_trio.central", "os3p_sim"]


def _public_name(target: str) -> str | None:
    """``os3p_core._events.Call`` → ``os3p_core.Call``: the modules are private and every public name is
    documented where its package exports it, so a signature's reference to the defining module goes there."""
    parts = target.split(".")
    if not parts[0].startswith("os3p_"):
        return None
    for package in sorted(PUBLIC_PACKAGES, key=len, reverse=True):
        prefix = package.split(".")
        if parts[: len(prefix)] != prefix or len(parts) <= len(prefix):
            continue
        rest = parts[len(prefix) :]
        while rest and rest[0].startswith("_"):
            rest = rest[1:]
        if not rest:
            return None
        module = importlib.import_module(package)
        if rest[0] in getattr(module, "__all__", ()):
            return ".".join([package, *rest])
    return None


def _missing_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    public = _public_name(target)
    if public is None:
        # A short name from a signature under ``from __future__ import annotations`` in a module of a public
        # package: try it as a public name of that package.
        module = node.get("py:module") or ""
        if module.startswith("os3p_") and "." not in target:
            public = _public_name(f"{module}.{target}")
    if public is None or public == target:
        return None
    domain = env.get_domain("py")
    builder = app.builder
    for role in ("class", "obj", "func", "data", "exc", "attr", "meth"):
        found = domain.resolve_xref(env, node["refdoc"], builder, role, public, node, contnode)
        if found is not None:
            return found
    return None


def _check_public_api(app: Any, env: Any) -> None:
    """Every name in a public package's ``__all__`` is documented somewhere on the site (warning otherwise)."""
    from sphinx.util import logging

    objects = env.get_domain("py").objects
    log = logging.getLogger(__name__)
    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type(sys)):
                continue  # a subpackage has its own page
            if f"{package}.{name}" not in objects:
                log.warning("public name %s.%s is in __all__ but not in the API reference", package, name)


# The guides, in reading order; any other Markdown page in docs/ follows them (see _guides_toctree).
GUIDES = ["connection", "payloads", "streetlight", "trio", "central", "simulator"]
# Pages the index lists in its other tables of contents (everything else in docs/*.md is a guide).
NOT_GUIDES = {"index", "PROTOCOL-DECISIONS", "errata", "reliability", "benchmarks", "CHANGELOG", "license",
              "about-docs", "cli"}
GUIDES_MARKER = "<!-- os3p-guides:"


def _guides_toctree(app: Any, docname: str, source: list[str]) -> None:
    if docname != "index":
        return
    others = sorted(p.stem for p in HERE.glob("*.md") if p.stem not in NOT_GUIDES and p.stem not in GUIDES)
    pages = [g for g in GUIDES if (HERE / f"{g}.md").is_file()] + others
    toctree = "```{toctree}\n:caption: Guides\n:maxdepth: 2\n\n" + "\n".join(pages) + "\n```\n"
    text = source[0]
    start = text.index(GUIDES_MARKER)
    end = text.index("-->", start) + len("-->")
    source[0] = text[:start] + toctree + text[end:]


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _guides_toctree)
    app.connect("missing-reference", _missing_reference)
    app.connect("env-check-consistency", _check_public_api)
    return {"parallel_read_safe": True}
