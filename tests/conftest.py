"""Shared test fixtures.

Tests that need root skip with a reason when not root, and fail instead of skipping when
CI=true: a skipped kernel test in CI would hide a broken engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """As root, the whole run moves into a network namespace of its own (lo up), before
    any test or thread exists: every process it starts inherits it. Containers join the
    default bridge unless told otherwise, so a test that runs one makes lamina0, its
    nftables table and veths; here they are the run's own, never the host's (and go with
    the namespace when the run ends). Tests that build networks still make a namespace of
    their own inside this one. LAMINA_TEST_HOST_NETNS=1 keeps the host's (to debug)."""
    if os.geteuid() != 0 or os.environ.get("LAMINA_TEST_HOST_NETNS") == "1" \
            or os.environ.get("LAMINA_TEST_NETNS") == str(os.getpid()):
        return
    from adapters.kernel import libc
    from adapters.kernel.syscalls import loopback_up

    libc.unshare(libc.CLONE_NEWNET)
    loopback_up()
    os.environ["LAMINA_TEST_NETNS"] = str(os.getpid())


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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A temporary PostgreSQL cluster for the whole run (tests/pgcluster.py): Debian's
    binaries, a unix socket in its own temporary directory, removed at the end. Skips
    without the postgresql package, except under CI=true (`make test` installs it)."""
    from tests.pgcluster import Cluster, pg_bin

    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server is not installed (make deb installs postgresql)")
        pytest.skip("needs Debian's postgresql package (make deb installs it)")
    cluster = Cluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster: object) -> str:
    """A fresh database of the run's cluster, for one test."""
    return pg_cluster.new_database()  # type: ignore[attr-defined]
