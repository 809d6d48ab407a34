"""cgroups._mkdir racing another root's last container taking the shared `lamina` parent
away (its remove() rmdirs the parent once empty), on a plain directory tree: the race is in
the parent's mkdir, not in cgroupfs."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from adapters.kernel.cgroups import CgroupError, _mkdir


def test_a_parent_that_comes_and_goes_is_never_taken_for_our_own_directory(
        tmp_path: Path) -> None:
    parent = tmp_path / "lamina"
    pid = os.fork()
    if pid == 0:  # the other root: make the parent and take it away, over and over
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            for step in (os.mkdir, os.rmdir):
                with contextlib.suppress(OSError):
                    step(parent)
        os._exit(0)
    refused = []
    try:
        end = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < end:
            i += 1
            path = parent / f"{i:064x}"
            try:
                _mkdir(path)
            except CgroupError as err:
                if "already exists" in str(err):
                    refused.append(str(err))
                continue
            path.rmdir()
    finally:
        os.waitpid(pid, 0)
    assert refused == []
