"""Write docs/_inventories/trio.inv: the trio names that os3p's public signatures and docstrings use.

trio's documentation inventory is not packaged anywhere the build can reach offline, so this lists the names we
link to, each with its page on trio's site (the addresses are trio's own anchors: ``reference-core.html#trio.X``).
Run it after adding a trio name to a public signature; the docs build (nitpicky) says which name is missing.
"""

from __future__ import annotations

import zlib
from pathlib import Path

# (name, role, page): every entry's anchor is the name itself, as Sphinx writes it.
NAMES = [
    ("trio.Nursery", "class", "reference-core.html"),
    ("trio.TaskStatus", "class", "reference-core.html"),
    ("trio.SocketListener", "class", "reference-io.html"),
    ("trio.abc.Stream", "class", "reference-io.html"),
]


def main() -> None:
    lines = [f"{name} py:{role} 1 {page}#$ -" for name, role, page in sorted(NAMES)]
    header = b"# Sphinx inventory version 2\n# Project: Trio\n# Version: stable\n"
    header += b"# The remainder of this file is compressed using zlib.\n"
    body = zlib.compress(("\n".join(lines) + "\n").encode("utf-8"))
    (Path(__file__).parent / "trio.inv").write_bytes(header + body)


if __name__ == "__main__":
    main()
