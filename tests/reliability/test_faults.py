"""Fault injection: each state-changing command is killed (SIGKILL) at each of its steps.

For every command the harness first runs it once with LAMINA_FAULT_TRACE to learn the fault
points it passes (adapters/faults.py) and the events a complete run appends; then, for each
point, it prepares the command again, runs the real CLI with LAMINA_FAULT set to that point
(the process dies there), runs `lamina system reconcile`, and checks:
- the crashed command left all of its events or none (one atomic append per command);
- `system check` then finds nothing;
- tests/reliability/invariants.py: hash chain, replay == read model with every move legal,
  no stray mount, cgroup, process, layer directory or staging leftover, every registered
  layer on disk with its digest.

`make test` injects three points a command (see _chosen); LAMINA_SOAK=1 injects every
point it passes. The totals are written to $LAMINA_FAULT_REPORT if set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from core.mounts import VOLUME_NAME
from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar
from tests.reliability.invariants import appended_by, last_seq, settled

SOAK = os.environ.get("LAMINA_SOAK") == "1"

# crash points are armed from the environment as lamina loads: commands run in-process
pytestmark = pytest.mark.usefixtures("in_process_environment")
REPORT: dict[str, dict] = {}


class Root(Lamina):
    """The shared root, with a counter for unique names."""

    n = 0

    def unique(self, prefix: str) -> str:
        Root.n += 1
        return f"{prefix}{Root.n}"

    def run_d(self) -> str:
        return self.ok("run", "-d", "busybox", "sleep", "600").strip()

    def exited(self) -> str:
        """A container that wrote a file and exited: committed by rename (store.py)."""
        cid = self.ok("create", "busybox", "sh", "-c", "echo x > /made").strip()
        self.ok("start", "-a", cid)
        return cid


@pytest.fixture(scope="module")
def lam(tmp_path_factory) -> Root:
    require_root()
    tmp = tmp_path_factory.mktemp("faults")
    lam = Root(tmp / "root")
    lam.tar = str(busybox_tar(tmp))
    lam.ok("import", lam.tar, "busybox")
    # an archive whose top layer is nowhere in the root: load has to install it
    cid = lam.ok("create", "busybox", "sh", "-c", "echo fat > /fat").strip()
    lam.ok("start", "-a", cid)
    lam.ok("commit", cid, "fat:1")
    lam.archive = str(tmp / "fat.tar")
    lam.ok("save", "-o", lam.archive, "fat:1")
    lam.ok("rm", cid)
    lam.ok("rmi", "fat:1")
    lam.context = tmp / "context"
    lam.context.mkdir()
    yield lam
    lam.remove_all()
    assert settled(lam.root) == []


def _load(lam: Root) -> list[str]:
    if any("fat:1" in i["tags"] for i in _images(lam)):
        lam.ok("rmi", "fat:1")
    return ["load", "-i", lam.archive]


def _build(lam: Root) -> list[str]:
    """A RUN step no build has cached yet (a cached step would run nothing)."""
    tag = lam.unique("built:")
    (lam.context / "Dockerfile").write_text(f"FROM busybox\nRUN echo {tag} > /built\n")
    return ["build", "-t", tag, str(lam.context)]


def _prune(lam: Root) -> list[str]:
    """An anonymous volume of this run's own label, and a prune of that label only (an
    earlier run's crash may have left one of its own in the log)."""
    label = f"run={lam.unique('p')}"
    lam.ok("volume", "create", "--label", label)
    return ["volume", "prune", "-f", "--filter", f"label={label}"]


def _create_v(lam: Root) -> list[str]:
    """A create that makes a named volume (a name no run used yet: lam.unique's `volN`,
    a valid docker volume name) and an anonymous one (busybox has nothing at either target
    to fill them with)."""
    name = lam.unique("vol")
    assert VOLUME_NAME.fullmatch(name), name
    return ["create", "-v", f"{name}:/data", "-v", "/anon", "busybox", "sleep", "600"]


def _rm_v(lam: Root) -> list[str]:
    """rm -f -v of a running container with a named volume (kept) and an anonymous one
    (removed: nobody else uses it)."""
    name = lam.unique("vol")
    assert VOLUME_NAME.fullmatch(name), name
    cid = lam.ok("run", "-d", "-v", f"{name}:/data", "-v", "/anon", "busybox", "sleep",
                 "600").strip()
    return ["rm", "-f", "-v", cid]


def _cp(lam: Root) -> list[str]:
    """cp of a small tree into a running container: the copy's child process, killed or
    not with its parent, must leave nothing behind."""
    src = lam.context.parent / "cp-src"
    if not src.exists():
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "f").write_text("copied\n")
    return ["cp", str(src), f"{lam.run_d()}:/tmp/"]


def _images(lam: Root) -> list[dict]:
    return [json.loads(line) for line in lam.ok("images", "--format", "json").splitlines()]


PREPARE: dict[str, Callable[[Root], list[str]]] = {
    "import": lambda lam: ["import", lam.tar, lam.unique("imp:")],
    "create": lambda lam: ["create", "busybox", "sleep", "600"],
    "start": lambda lam: ["start", lam.ok("create", "busybox", "sleep", "600").strip()],
    "pause": lambda lam: ["pause", lam.run_d()],
    "commit": lambda lam: ["commit", lam.run_d(), lam.unique("snap:")],
    "commit stopped": lambda lam: ["commit", lam.exited(), lam.unique("snap:")],
    "rm": lambda lam: ["rm", "-f", lam.run_d()],
    "run --rm": lambda lam: ["run", "--rm", "--network", "none", "busybox", "true"],
    "rmi": lambda lam: ["rmi", lam.ok("import", lam.tar, lam.unique("gone:")) and
                        f"gone:{Root.n}"],
    "load": _load,
    "build": lambda lam: _build(lam),
    "volume create": lambda lam: ["volume", "create", lam.unique("vol")],
    "volume rm": lambda lam: ["volume", "rm", lam.ok("volume", "create",
                                                     lam.unique("vol")).strip()],
    "volume prune": _prune,
    "create -v": _create_v,
    "rm -v": _rm_v,
    "cp": _cp,
}
# Commands made of several appends: a crash leaves the steps done so far (their layers and
# images are whole), never the final record; the log tells where the command stopped.
FINAL = {"build": "BuildFinished", "run --rm": "ContainerRemoved"}
# Their points (without LAMINA_SOAK): build's RUN step's container started, its layer made,
# then removed; run --rm's exit recorded with its release left to the removal, the removal
# recorded with the run not yet released, released but the layer and files not yet gone.
CHOSEN = {"build": ("store.staged", "after:runtime.start", "after:layers.commit_rw_layer"),
          "run --rm": ("after:log.append#3", "after:log.append#4", "after:runtime.release")}


def _run(lam: Root, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([LAMINA, "--root", str(lam.root), *argv], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, **env})


def _check(lam: Root) -> list[str]:
    """`system check`, in this process (the CLI's is tested in tests/kernel)."""
    from adapters.bootstrap import build_engine

    e = build_engine(str(lam.root), recover=False)
    try:
        return e.reconcile(repair=False)
    finally:
        e.log.suspend()


def _points(lam: Root, command: str, tmp: Path) -> tuple[list[str], list[str]]:
    """The points a complete run passes, and the event types it appends."""
    trace = tmp / f"{command}.trace"
    argv = PREPARE[command](lam)
    since = last_seq(lam.root)
    proc = subprocess.Popen([LAMINA, "--root", str(lam.root), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, "LAMINA_FAULT_TRACE": str(trace)})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    seen: dict[str, int] = {}
    points = []
    for name in trace.read_text().split():  # a point passed again is `name#N`
        seen[name] = seen.get(name, 0) + 1
        points.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return points, appended_by(lam.root, since, proc.pid)


def _chosen(command: str, points: list[str]) -> list[str]:
    """Every point under LAMINA_SOAK=1; else the three crash states that matter most: a
    layer (a volume) staged but not in place, every step done but nothing recorded,
    recorded but the aftermath (deleting files, confirming the start) not done; and a
    removed volume moved out of sight but not deleted."""
    if SOAK:
        return points
    if command in CHOSEN:
        return [p for p in points if p in CHOSEN[command]]
    append = points.index("before:log.append")
    chosen = {"store.staged", "store.rebased", "volumes.staged", "volumes.hidden",
              points[append - 1] if append else points[0], "after:log.append"}
    return [p for p in points if p in chosen]


@pytest.mark.parametrize("command", list(PREPARE))
def test_a_crash_at_any_step_is_recovered(lam: Root, command: str, tmp_path: Path) -> None:
    points, complete = _points(lam, command, tmp_path)
    assert points and complete, f"{command} passed no fault point or appended nothing"
    report = REPORT.setdefault(command, {"points": points, "injected": 0, "happened": 0,
                                         "not_happened": 0, "mismatches": 0})
    for point in _chosen(command, points):
        argv = PREPARE[command](lam)
        since = last_seq(lam.root)
        proc = subprocess.Popen([LAMINA, "--root", str(lam.root), *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "LAMINA_FAULT": point})
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, f"{command}: {point} was not reached"
        report["injected"] += 1
        left = appended_by(lam.root, since, proc.pid)
        if command in FINAL:
            assert FINAL[command] not in left or left == complete, \
                f"{command} killed at {point} left {left}"
        else:
            assert left in ([], complete), f"{command} killed at {point} left {left}"
        report["happened" if left else "not_happened"] += 1
        lam.ok("system", "reconcile")
        check = _check(lam)
        found = settled(lam.root)
        if check or found:
            report["mismatches"] += 1
        assert check == [], f"{command} at {point}: system check found {check}"
        assert found == [], f"{command} at {point}: {found}"
    if os.environ.get("LAMINA_FAULT_REPORT"):
        Path(os.environ["LAMINA_FAULT_REPORT"]).write_text(json.dumps(REPORT, indent=1))
