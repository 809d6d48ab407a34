"""adapters/runtime/exec.py `_sync_start`, on real processes: an exec's start, committed
without its fsync, goes on the disk at once when its process may wait for us, after
START_SYNC_WITHIN when it runs on, and not at all when it ends sooner (its end's record
takes the start with it: one fsync for `exec true`)."""

from __future__ import annotations

import os
import time

from adapters.runtime.exec import _sync_start
from adapters.runtime.frames import START_SYNC_WITHIN


def _child(seconds: float) -> int:
    pid = os.fork()
    if pid == 0:
        time.sleep(seconds)
        os._exit(0)
    return pid


def _synced(seconds: float, waits_for_us: bool) -> tuple[int, float]:
    calls: list[float] = []
    pid = _child(seconds)
    if seconds == 0:  # ended before we look, however loaded the host (not reaped yet)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    t0 = time.monotonic()
    try:
        _sync_start(pid, waits_for_us, lambda: calls.append(time.monotonic() - t0))
    finally:
        os.waitpid(pid, 0)
    return len(calls), (calls[0] if calls else -1.0)


def test_a_process_that_ends_at_once_leaves_the_fsync_to_its_end() -> None:
    assert _synced(0, waits_for_us=False)[0] == 0


def test_a_process_that_runs_on_is_synced_after_the_wait() -> None:
    calls, at = _synced(1.0, waits_for_us=False)
    assert calls == 1 and START_SYNC_WITHIN * 0.9 <= at < 0.9


def test_a_process_that_may_wait_for_us_is_synced_at_once() -> None:
    calls, at = _synced(1.0, waits_for_us=True)
    assert calls == 1 and at < START_SYNC_WITHIN
