"""Fixtures of the real-kernel tests."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_root

MARKER = b"lamina-loop-marker"


@dataclass(frozen=True)
class Loop:
    device: str  # /dev/loopN on the host
    node: str  # a node for it in a temporary directory
    major: int
    minor: int


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    """A loop device over a temp file starting with MARKER; detached afterwards."""
    require_root()
    backing = tmp_path / "backing.img"
    backing.write_bytes(MARKER.ljust(64 << 10, b"\0"))
    device = subprocess.run(["losetup", "-f", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        rdev = os.stat(device).st_rdev
        node = tmp_path / "loopnode"
        os.mknod(node, stat.S_IFBLK | 0o600, rdev)
        yield Loop(device, str(node), os.major(rdev), os.minor(rdev))
    finally:
        subprocess.run(["losetup", "-d", device], check=True)
        held = subprocess.run(["losetup", "-j", str(backing)], capture_output=True, text=True)
        assert held.stdout.strip() == "", "the loop device was not detached"
        backing.unlink()


