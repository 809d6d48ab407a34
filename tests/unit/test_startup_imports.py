"""Every lamina command imports adapters.cli and every command module (to build its
parser), so what those import at load time is paid by `lamina pause` as much as by `lamina
pull`. Heavy libraries must be imported inside the command that needs them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("http.client", "asyncio", "rich", "sqlite_utils", "structlog", "ssl", "email",
         "concurrent.futures", "graphviz", "tarfile", "docker", "msgspec")

PROBE = """
import sys
from adapters.cli import build_parser
build_parser(["pause"])
build_parser()
print(" ".join(sorted(sys.modules)))
"""


def test_building_the_parsers_imports_nothing_heavy() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout.split()
    loaded = [m for m in out if m in HEAVY or m.split(".")[0] in HEAVY]
    assert loaded == [], f"imported when the CLI starts: {loaded}"
