"""The proof of shipping: three roots on this machine act as three hosts, each running
containers while its shipper (`lamina ship --follow`) forwards its log; shippers and the
PostgreSQL server are killed with SIGKILL at random points (a bounded number of times) and
started again. Afterwards the central store holds exactly the union of the three local
logs (the same rows, in order, nothing twice, nothing missing), every chain verifies, and
`fleet ps` shows what each host's own `ps` shows.

Small by default (seconds of work); LAMINA_SOAK=1 runs more containers and more kills.
The random seed is printed, and LAMINA_CHAOS_SEED replays a run's choices.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.eventstore.fleet import Fleet
from tests.conftest import require_root
from tests.fleet.rows import central_rows, local_rows
from tests.kernel.runtime_env import Lamina, busybox_tar, leftovers

pytestmark = pytest.mark.kernel

SOAK = os.environ.get("LAMINA_SOAK") == "1"
HOSTS = 3
RUNS = 15 if SOAK else 3  # containers each host runs to their end
SHIPPER_KILLS = 20 if SOAK else 3
SERVER_KILLS = 5 if SOAK else 1


class Shippers:
    """One `lamina ship --follow` per host, killed and started again at will."""

    def __init__(self, roots: list[Path], url: str) -> None:
        self.roots, self.url = roots, url
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, n: int) -> None:
        self.procs[n] = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli", "--root", str(self.roots[n]), "ship",
             "--follow", "--interval", "0.05", "--event-store", self.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, n: int) -> None:
        self.procs[n].send_signal(signal.SIGKILL)
        self.procs[n].wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Lamina]]:
    require_root()
    tar = str(busybox_tar(tmp_path))
    lams = [Lamina(tmp_path / f"host{n}") for n in range(HOSTS)]
    for lam in lams:
        lam.ok("import", tar, "busybox")
    yield lams
    for lam in lams:
        ids = lam.container_ids()
        for cid in ids:
            lam("rm", "-f", cid)
        assert leftovers(lam.root, ids) == []


def workload(lam: Lamina, errors: list[BaseException]) -> None:
    """Containers run to their end, one removed after each, and one left running."""
    try:
        for i in range(RUNS):
            lam.ok("run", "--network", "none", "--name", f"job{i}", "busybox", "true")
            if i % 2:
                lam.ok("rm", f"job{i}")
        lam.ok("run", "-d", "--network", "none", "--name", "server", "busybox", "sleep", "600")
    except BaseException as err:  # noqa: BLE001 - reported by the test
        errors.append(err)


def wait_until(what, timeout: float, say: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, say
        time.sleep(0.1)


def test_three_hosts_ship_through_kills_of_shipper_and_server(
        hosts: list[Lamina], pg_cluster) -> None:
    seed = int(os.environ.get("LAMINA_CHAOS_SEED") or random.randrange(1 << 30))
    print(f"LAMINA_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    url = pg_cluster.new_database()
    names = [f"host{n}" for n in range(HOSTS)]
    for lam, name in zip(hosts, names, strict=True):
        lam.ok("ship", "--host", name, "--event-store", url)  # pins the id, ships the import
    shippers = Shippers([lam.root for lam in hosts], url)
    errors: list[BaseException] = []
    workers = [threading.Thread(target=workload, args=(lam, errors)) for lam in hosts]
    try:
        for n in range(HOSTS):
            shippers.start(n)
        for w in workers:
            w.start()
        kills = ["shipper"] * SHIPPER_KILLS + ["server"] * SERVER_KILLS
        rng.shuffle(kills)
        for what in kills:
            time.sleep(rng.uniform(0.05, 0.6))
            if what == "shipper":
                n = rng.randrange(HOSTS)
                shippers.kill(n)
                time.sleep(rng.uniform(0, 0.3))
                shippers.start(n)
            else:
                pg_cluster.kill()
                time.sleep(rng.uniform(0.1, 1.0))  # the hosts go on without it
                pg_cluster.start()
        for w in workers:
            w.join(300)
        assert not errors, errors

        def caught_up() -> bool:
            return all(central_rows(url, name)[-1:] == local_rows(lam.root)[-1:]
                       for lam, name in zip(hosts, names, strict=True))

        wait_until(caught_up, 90, "the shippers did not catch up")
    finally:
        shippers.stop_all()
        if pg_cluster.process is None or pg_cluster.process.poll() is not None:
            pg_cluster.start()
    for lam, name in zip(hosts, names, strict=True):
        assert central_rows(url, name) == local_rows(lam.root)  # in order, once, complete
        assert lam.ok("ship", "--event-store", url).startswith(f"host {name}: shipped 0 ")
    fleet = Fleet(url)
    try:
        assert [h.host for h in fleet.hosts()] == names
        for name in names:
            verdict = fleet.verify(name)
            assert verdict.ok, (name, verdict)
        central_ps = sorted((h, c.id) for h, c in fleet.containers())
    finally:
        fleet.close()
    local_ps = sorted((name, json.loads(line)["id"])
                      for lam, name in zip(hosts, names, strict=True)
                      for line in lam.ok("ps", "--format", "json").splitlines())
    assert central_ps == local_ps and len(local_ps) == HOSTS
