"""What `import core.engine` loads: every un-served command pays for it, so only the parts
the container commands need (create, start, pause, stop, exec, exited, recover). The image
rules, the image and archive parts and the Dockerfile parser load with the commands that
use them."""

from __future__ import annotations

import subprocess
import sys

LAZY = ("core.engine.images", "core.engine.commit", "core.engine.archives",
        "core.engine.loading", "core.images", "core.build", "core.instructions",
        "core.dockerfile", "core.distribution", "core.engine.volumes")

PROBE = """
import sys
import core.engine
print(" ".join(sorted(sys.modules)))
"""


def test_importing_the_engine_loads_only_the_container_and_host_parts() -> None:
    loaded = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True).stdout.split()
    assert [m for m in LAZY if m in loaded] == []
    assert {"core.command", "core.engine.base", "core.engine.containers",
            "core.engine.processes", "core.engine.host"} <= set(loaded)

