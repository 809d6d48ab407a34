"""Concurrency: 8 processes issue random commands against the same 3 containers and 2 images
while the containers' monitors append their exits (c1 and c2 end by themselves within a
second or two of each start).

Afterwards: no illegal move in the log (replayed through the lifecycle from the first
event), replay equals the read model, the hash chain verifies, every conflict that reached a
caller said so in words (ConcurrencyError), no command failed any other way than a clear
refusal, and the host matches the projection (`system check` finds nothing, and
tests/reliability/invariants.py agrees). ~12 s in `make test`; LAMINA_SOAK=1 runs the same
for 60 s. On a machine so loaded that no container has ended by itself when the time is up,
the workers go on until one has (three times as long at most: tests/reliability/workload.py).
The totals go to $LAMINA_CONCURRENCY_REPORT if set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_tar
from tests.reliability.invariants import settled
from tests.reliability.workload import CMDS, IMAGES
from tests.servers import stop_servers_of

WORKERS = 8


def _settle(lam: Lamina, timeout: float = 15) -> list[str]:
    """`system check` once the short-lived containers' monitors have had their say."""
    deadline = time.monotonic() + timeout
    while True:
        check = lam("system", "check")
        if check.returncode == 0 or time.monotonic() > deadline:
            return [] if check.returncode == 0 else check.stdout.splitlines()
        time.sleep(0.5)


def _soak(tmp_path: Path, seconds: float) -> dict:
    require_root()
    lam = Lamina(tmp_path / "root")
    tar = str(busybox_tar(tmp_path))
    for image in IMAGES:
        lam.ok("import", tar, image)
    for name, cmd in CMDS.items():
        lam.ok("create", "--name", name, IMAGES[0], *cmd)
    procs = []
    for seed in range(WORKERS):
        out = tmp_path / f"worker{seed}.json"
        procs.append((out, subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.workload", str(lam.root), str(seed),
             str(seconds), str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, cwd=Path(__file__).parents[2])))
    totals: Counter[str] = Counter()
    crashes, messages = [], set()
    for out, proc in procs:
        _, err = proc.communicate(timeout=3 * seconds + 120)
        assert proc.returncode == 0, err.decode()[-2000:]
        result = json.loads(out.read_text())
        totals.update(result["counts"])
        crashes += result["crashes"]
        messages.update(result["conflict_messages"])
    try:
        left = _settle(lam)
        stop_servers_of(str(lam.root))  # the root's fork server names it, by design
        found = settled(lam.root)
        events = lam.events()
        types = Counter(e["type"] for e in events)
        recovered = [f"{e['data']['exit_code']}: {e['data']['reason']}" for e in events
                     if e["type"] == "ContainerExited"
                     and e["meta"]["command"] == "system recover"]
    finally:
        for cid in lam.container_ids():
            lam("rm", "-f", cid)
    report = {"seconds": seconds, "workers": WORKERS, **totals,
              "events": sum(types.values()), "exits_by_monitors": types["ContainerExited"],
              "recovered_at_start_up": recovered,
              "mismatches": len(left) + len(found), "conflict_messages": sorted(messages)}
    if os.environ.get("LAMINA_CONCURRENCY_REPORT"):
        Path(os.environ["LAMINA_CONCURRENCY_REPORT"]).write_text(json.dumps(report, indent=1))
    assert crashes == [], crashes[0]
    assert left == [] and found == [], (left, found)
    assert all("changed" in m for m in messages), messages
    assert totals["ok"] > 0 and types["ContainerExited"] > 0, report
    return report


def test_eight_processes_at_once(tmp_path: Path) -> None:
    _soak(tmp_path, 12)


@pytest.mark.slow
def test_eight_processes_for_a_minute(tmp_path: Path) -> None:
    _soak(tmp_path, 60)
