"""Recording a change of a container's health status: what its health process
(adapters/runtime/health.py) execs when a probe changed the status.

`python -m adapters.record_health JSON` with {root, id, pid, status, failing_streak,
exit_code, output}: Engine.health_changed records ContainerHealthChanged for the run of init
`pid`, or nothing when that run is over. Beside the composition root, as record_exit.py is:
it builds an engine, which wires the runtime, so the runtime names it to exec and never
imports it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def record(data: dict[str, Any]) -> int:
    from adapters.bootstrap import build_engine
    from core.errors import LaminaError

    try:
        engine = build_engine(data["root"], monitor=True)
        engine.health_changed(data["id"], data["pid"], data["status"],
                              data["failing_streak"], data["exit_code"], data["output"])
    except LaminaError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(record(json.loads(sys.argv[1])))
