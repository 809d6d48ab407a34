"""Shared test fixtures.

Tests that need root skip with a reason when not root, and fail instead of skipping when
CI=true: a skipped kernel test in CI would hide a broken engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def require_root() -> None:
    """Skip (or, under CI, fail) a test that needs root on a real kernel."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("this test needs root, and CI must run it as root")
    pytest.skip("needs root (overlayfs, namespaces, cgroups)")


@pytest.fixture
def root_required() -> None:
    require_root()


@pytest.fixture
def no_leftover_mounts(tmp_path: Path) -> Iterator[None]:
    """Root required; afterwards nothing may stay mounted under the test's tmp_path."""
    require_root()
    yield
    from adapters.storage.overlay import mounts_under, unmount

    leftover = mounts_under(str(tmp_path))
    for target in reversed(leftover):
        unmount(target)
    assert leftover == [], "a test left mounts behind"
