"""The Docker API's wait on a run whose monitor died with it: the wait records the end itself
(the engine's recover(), run in a worker once a second), as `lamina wait` does
(tests/kernel/test_restart.py), instead of waiting until the next command that changes
state."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path

import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel


def _until(what, timeout: float = 10, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := what():
            return got
        time.sleep(step)
    raise AssertionError("timed out")


def _gone_or_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_the_api_wait_records_a_run_whose_monitor_died_with_it(service: Service) -> None:
    client = service.client()
    box = client.containers.run("busybox", ["sleep", "1000"], detach=True, name="lost",
                                network_mode="none")
    try:
        box.reload()
        init = box.attrs["State"]["Pid"]
        stamp = service.root / "containers" / box.id / "monitor"
        monitor = int(stamp.read_text().split(".")[0])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(client.api.wait, box.id, timeout=10)
            time.sleep(0.3)  # the wait is polling
            assert not waiting.done()
            os.kill(monitor, signal.SIGKILL)
            _until(lambda: _gone_or_zombie(monitor))
            t0 = time.monotonic()
            os.kill(init, signal.SIGKILL)
            answer = waiting.result()  # docker-py's read timeout (10 s): fails as a hang
            took = time.monotonic() - t0
        assert answer["StatusCode"] == 255, answer  # its status unknown: nobody reaped it
        assert took < 5, took
        box.reload()
        assert box.status == "exited"
        # the finding is the recovery's last append, just after the exit the wait answered
        checked = _until(lambda: [e for e in service.events() if e["type"] == "HostChecked"])
        assert checked[-1]["data"]["repaired"], checked
        meta = checked[-1]["meta"]  # recorded by a worker (run_job), as the wait's caller
        assert meta["via"] == "docker-api", meta
    finally:
        box.remove(force=True)
