"""CPU per served command, beside its wall time: what a tight loop of commands is bound by
on a 2-core host, taken apart from what other processes on the machine use.

    python bench/percommand.py [--runs N] NAME=CHECKOUT [NAME=CHECKOUT ...]

Each CHECKOUT is a worktree with its own venv and native client (`make pyc client`). For
each build, in turn: a root of its own (/tmp/percommand-NAME, busybox imported once), its
fork server stopped, and this process moved into a cgroup v1 cpuacct group of its own, so
that the clients, the server the first command starts and everything it forks (children,
spare monitors, monitors, inits before they join their container's cgroup) are counted
there and nothing else is. Then N back-to-back runs each of `version`, a pause + unpause
pair, `exec true` into a detached sleep and `run --rm --network none busybox true`, after
three unmeasured ones; printed: CPU ms (cpuacct.usage) and wall ms per command. Needs root.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("builds", nargs="+", help="NAME=CHECKOUT")
    args = parser.parse_args()
    group = CPUACCT / f"percommand.{os.getpid()}"
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(str(os.getpid()))
        for build in args.builds:
            name, checkout = build.split("=", 1)
            for work, (cpu, wall) in measure(group, name, checkout, args.runs).items():
                print(f"{name:10s} {work:10s} CPU {cpu:6.1f} ms  wall {wall:6.1f} ms  per command")
    finally:
        (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(20):  # the last server's children end a moment after it
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.25)


def measure(group: Path, name: str, checkout: str,
            runs: int) -> dict[str, tuple[float, float]]:
    root = f"/tmp/percommand-{name}"
    python = f"{checkout}/.venv/bin/python"

    def lamina(*argv: str) -> str:
        return subprocess.run([f"{checkout}/.venv/bin/lamina", "--root", root, *argv],
                              check=True, capture_output=True, text=True).stdout.strip()

    stop = ["-c", f"from adapters.fastpath.forkserver import stop_server; stop_server({root!r})"]
    subprocess.run([python, *stop], check=True, cwd=checkout)
    if not os.path.exists(f"{root}/events.db"):
        tar = f"{root}.tar"
        subprocess.run([python, "-c", "import sys; from adapters.storage.busybox import "
                        "write_busybox_rootfs_tar as w; w(open(sys.argv[1], 'wb'))", tar],
                       check=True, cwd=checkout)
        lamina("import", tar, "busybox")
    cid = lamina("run", "-d", "--network", "none", "busybox", "sleep", "600")
    works: dict[str, Callable[[], object]] = {
        "version": lambda: lamina("version"),
        "pause pair": lambda: (lamina("pause", cid), lamina("unpause", cid)),
        "exec": lambda: lamina("exec", cid, "true"),
        "run --rm": lambda: lamina("run", "--rm", "--network", "none", "busybox", "true"),
    }
    out = {}
    try:
        for work, fn in works.items():
            for _ in range(3):
                fn()
            time.sleep(0.5)
            used, t0 = _usage(group), time.perf_counter()
            for _ in range(runs):
                fn()
            wall = (time.perf_counter() - t0) * 1000 / runs
            time.sleep(0.5)  # what the last command left for after its answer
            out[work] = ((_usage(group) - used) / 1e6 / runs, wall)
    finally:
        lamina("rm", "-f", cid)
        subprocess.run([python, *stop], check=True, cwd=checkout)
    return out


def _usage(group: Path) -> int:
    return int((group / "cpuacct.usage").read_text())


if __name__ == "__main__":
    main()
