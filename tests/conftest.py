"""Shared test fixtures.

Tests that need root skip with a reason when not root, and fail instead of skipping when
CI=true: a skipped kernel test in CI would hide a broken engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def _timing_free_hypothesis() -> None:
    """Hypothesis judges by the clock (a 200 ms deadline per example, a health check on
    slow generation); on two cores shared with the kernel tests a loaded moment fails a
    property that holds (test_codec's generation was once "too slow"). Properties here are
    judged by what they assert; speed lives in bench/."""
    from hypothesis import HealthCheck, settings

    settings.register_profile("lamina", deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("lamina")


def pytest_configure(config: pytest.Config) -> None:
    """Commands go through fork servers, as a user's do by default: the first command of
    each test root starts the root's server, every later one runs in a pre-forked child of
    it, through the native client. LAMINA_TEST_IN_PROCESS=1 runs every command in-process
    instead (LAMINA_NO_SERVER=1, a fresh interpreter each): `make test`'s second pass runs
    the everyday lifecycle's files so (the Makefile's IN_PROCESS_TESTS). A module whose
    commands must run in their own process whatever the pass asks for (the fault injection's
    crash points are armed as lamina loads) uses `in_process_environment`. Served, the
    suite takes under half the time: a command skips the interpreter's start-up and imports
    (the lifecycle's twelve files, 85 s against 212 s in-process on 2 cores, 2026-12-07).
    pytest_sessionfinish makes sure no server is left.

    As root, the whole run moves into a network namespace of its own (lo up), before
    any test or thread exists: every process it starts inherits it. Containers join the
    default bridge unless told otherwise, so a test that runs one makes lamina0, its
    nftables table and veths; here they are the run's own, never the host's (and go with
    the namespace when the run ends). Tests that build networks still make a namespace of
    their own inside this one. LAMINA_TEST_HOST_NETNS=1 keeps the host's (to debug).
    Under pytest-xdist each worker is a process of its own and moves into a namespace of
    its own (its pid is not the one LAMINA_TEST_NETNS names): workers share no bridge,
    nftables table, veth or port."""
    _as_without_workers()
    _timing_free_hypothesis()
    if not served_run():
        os.environ["LAMINA_NO_SERVER"] = "1"
    if os.geteuid() != 0 or os.environ.get("LAMINA_TEST_HOST_NETNS") == "1" \
            or os.environ.get("LAMINA_TEST_NETNS") == str(os.getpid()):
        return
    from adapters.kernel import libc
    from adapters.kernel.syscalls import loopback_up

    libc.unshare(libc.CLONE_NEWNET)
    loopback_up()
    os.environ["LAMINA_TEST_NETNS"] = str(os.getpid())


def served_run() -> bool:
    """Whether this pass runs commands through fork servers (pytest_configure)."""
    return os.environ.get("LAMINA_TEST_IN_PROCESS") != "1"


def served_now() -> bool:
    """Whether a command a test starts now goes through a fork server: this pass's choice,
    unless its module asked otherwise (in_process_environment, served_environment)."""
    return os.environ.get("LAMINA_NO_SERVER") != "1"


# The files that take longest, longest first (their seconds in a `make test` on 2 cores,
# 2026-12-07: 69 ... 15 s; every other file takes less). See pytest_collection_modifyitems.
LONGEST_FIRST = tuple(f"tests/{name}.py" for name in (
    "kernel/test_cp", "reliability/test_faults", "kernel/test_runtime",
    "reliability/test_network_faults", "kernel/test_exec_isolation",
    "kernel/test_bridge_run", "service/test_docker_py_attach_exec",
    "model/test_exhaustive", "kernel/test_restart", "service/test_docker_py_networks",
    "model/test_stateful", "kernel/test_reconcile", "registry/test_registry",
    "kernel/test_logs_attach", "kernel/test_remap", "kernel/test_systemd_units",
    "kernel/test_autostart", "kernel/test_honest_cli", "kernel/test_network_plumbing",
    "kernel/test_health", "kernel/test_storage_layers", "service/test_docker_cli",
    "kernel/test_archives", "kernel/test_everyday_admin", "kernel/test_run_options",
    "kernel/test_mounts", "kernel/test_images_cli", "kernel/test_isolation",
    "service/test_compose", "service/test_networks_api", "reliability/test_concurrency",
    "kernel/test_served_exit", "service/test_docker_py_health", "kernel/test_build"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, the rest in the order collected (each file's tests keep
    theirs): pytest-xdist hands out whole files in this order (the Makefile's
    --no-loadscope-reorder; by default it hands out the files with the most tests first),
    and a long file handed out last runs on alone while the other worker has nothing left
    (the model checker's 90 s did, at the end of every run). Only the order changes."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No fork server a test started may outlive the run: stop any still serving a root
    under this run's temporary directory, and fail the run for it."""
    from tests.servers import servers_under, stop

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    left = servers_under(str(factory.getbasetemp()))
    for pid, root in left:
        stop(pid)
        print(f"\na test left a fork server behind: pid {pid} for {root}")
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module", autouse=True)
def _servers_stop_with_their_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """The servers a module's commands started stop with the module (a fixture's teardown
    may still use its root's server until then)."""
    yield
    if served_run():
        from tests.servers import servers_under, stop

        factory = request.config._tmp_path_factory  # type: ignore[attr-defined]
        for pid, _root in servers_under(str(factory.getbasetemp())):
            stop(pid)


@pytest.fixture(scope="module")
def in_process_environment() -> Iterator[None]:
    """For a module whose commands must each run in a process of their own, whatever the
    pass: LAMINA_NO_SERVER=1 while it runs (a fault injection's crash point is armed from
    the environment as lamina's modules load, adapters/faults.py, and a fork server's child
    has the modules its server loaded before the command's environment came)."""
    saved = os.environ.get("LAMINA_NO_SERVER")
    os.environ["LAMINA_NO_SERVER"] = "1"
    yield
    if saved is None:
        del os.environ["LAMINA_NO_SERVER"]


@pytest.fixture(scope="module")
def served_environment() -> Iterator[None]:
    """For a module whose commands are to go through fork servers whatever the pass: without
    the in-process pass's LAMINA_NO_SERVER (pytest_configure) while it runs."""
    saved = os.environ.pop("LAMINA_NO_SERVER", None)
    yield
    if saved is not None:
        os.environ["LAMINA_NO_SERVER"] = saved


def _as_without_workers() -> None:
    """An xdist worker's environment has COLUMNS=80 and LINES=24 where a run without
    workers has none: the programs tests start would wrap their tables to that width
    (docker-compose ps does), so a worker's children see what they would see without it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


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
