#!/usr/bin/env python3
"""What recording the end of a long-lived container costs: the lean monitor asking the
root's fork server (adapters/runtime/supervise.py _served) against it exec'ing a fresh
`python -m adapters.record_exit` (what it does without a server, and all it did before).

    unshare --net -- .venv/bin/python bench/recorder.py [--count 20] [--kill]

For each way, N containers (`run -d --network none -v DIR:/sig busybox sh -c 'read x <
/sig/I'`: they live until told, well past the monitor's warm window, so every monitor is
the lean supervisor) are started, then ended one at a time (the FIFO /sig/I opened and
closed: `read` gets EOF). Measured:
- CPU per recorded exit: the cpuacct.usage of cgroup v1 cpuacct groups (or cpu.stat of v2
  ones) holding every lamina process of the run (the commands, the server and its
  children, the monitors; each container's init is in a cgroup of its own), from before
  the first end until the last monitor is gone, divided by N, split into what the
  monitors spend (moved to a group of their own once started: the supervisor's end, the
  recorder it may exec) and the rest (the server: its child that records, the next
  spare); this script stays outside;
- end to record: from the monitor's exit.json (written as init is reaped) to the
  ContainerExited event's time, median and the worst;
- the monitors' memory while all N run (PSS and RSS each, smaps_rollup).

"server": the root's fork server runs (started by the first command, as a user gets it).
"no server": none runs and the commands run in-process (LAMINA_NO_SERVER=1, which the
monitors inherit): each end execs the recorder. Not part of `make test`; needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LAMINA = str(Path(sys.executable).with_name("lamina"))
ENV = {k: v for k, v in os.environ.items()
       if k not in ("PYTHONDONTWRITEBYTECODE", "LAMINA_ROOT", "LAMINA_NO_SERVER")}


class Account:
    """A cgroup that counts the CPU of the processes put in it and of their descendants."""

    def __init__(self, name: str) -> None:
        v1 = Path("/sys/fs/cgroup/cpuacct")
        self.v1 = (v1 / "cpuacct.usage").exists()
        base = v1 if self.v1 else Path("/sys/fs/cgroup/unified")
        if not (base / "cgroup.procs").exists():
            base = Path("/sys/fs/cgroup")
        self.dir = base / f"lamina-bench-recorder-{os.getpid()}-{name}"
        self.dir.mkdir()

    def join(self) -> None:
        """In a child before its exec (preexec_fn): into the group."""
        self.put(os.getpid())

    def put(self, pid: int) -> None:
        (self.dir / "cgroup.procs").write_text(str(pid))

    def usage(self) -> float:
        """CPU seconds used in the group so far."""
        if self.v1:
            return int((self.dir / "cpuacct.usage").read_text()) / 1e9
        stat = dict(line.split() for line in (self.dir / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6

    def remove(self, wait: float = 10) -> None:
        deadline = time.monotonic() + wait
        while (self.dir / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.dir.rmdir()


def lamina(root: Path, account: Account, *argv: str, served: bool) -> str:
    env = ENV if served else {**ENV, "LAMINA_NO_SERVER": "1"}
    done = subprocess.run([LAMINA, "--root", str(root), *argv], capture_output=True,
                          text=True, env=env, timeout=300, preexec_fn=account.join)
    if done.returncode != 0:
        raise SystemExit(f"lamina {' '.join(argv[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def monitor_of(root: Path, cid: str) -> int:
    return int((root / "containers" / cid / "monitor").read_text().partition(".")[0])


def kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.002)


def exited_times(root: Path, cids: list[str]) -> dict[str, float]:
    out = lamina_events(root)
    return {e["data"]["id"]: datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
            for e in out if e["type"] == "ContainerExited" and e["data"]["id"] in cids}


def lamina_events(root: Path) -> list[dict]:
    done = subprocess.run([LAMINA, "--root", str(root), "events", "--format", "json"],
                          capture_output=True, text=True, check=True,
                          env={**ENV, "LAMINA_NO_SERVER": "1"})
    return [json.loads(line) for line in done.stdout.splitlines()]


def one_way(base: Path, tar: Path, count: int, served: bool, kill: bool) -> list[str]:
    root, sig = base / ("served" if served else "in-process"), base / "sig"
    shutil.rmtree(sig, ignore_errors=True)
    sig.mkdir()
    account, tails = Account("lamina"), Account("monitors")
    try:
        lamina(root, account, "import", str(tar), "busybox", served=False)
        lamina(root, account, "ps", served=served)  # the server, when there is to be one
        cids = []
        for i in range(count):
            os.mkfifo(sig / str(i))
            cids.append(lamina(root, account, "run", "-d", "--network", "none", "-v",
                               f"{sig}:/sig", "busybox", "sh", "-c",
                               f"read x < /sig/{i}; exit 0", served=served).strip())
        time.sleep(0.5)  # every monitor past its warm window, exec'd into the supervisor
        monitors = [monitor_of(root, cid) for cid in cids]
        pss = [kib(pid, "Pss") for pid in monitors]
        rss = [kib(pid, "Rss") for pid in monitors]
        for pid in monitors:  # apart: what the monitors spend, and the rest (the server)
            tails.put(pid)
        before = account.usage(), tails.usage()
        for i, pid in enumerate(monitors):
            if kill:  # in-process and outside the groups: only the monitor's end counts
                subprocess.run([LAMINA, "--root", str(root), "kill", cids[i]], check=True,
                               capture_output=True, env={**ENV, "LAMINA_NO_SERVER": "1"})
            else:
                os.close(os.open(sig / str(i), os.O_WRONLY))  # the reader's EOF: it ends
            wait_gone(pid)
        time.sleep(0.5)  # the server's next spare, forked after the last request
        rest, tail = account.usage() - before[0], tails.usage() - before[1]
        at = exited_times(root, cids)
        lags = [0.0] if kill else [
            at[cid] - (root / "containers" / cid / "exit.json").stat().st_mtime
            for cid in cids]
        ids = lamina(root, account, "ps", "-aq", served=served).split()
        lamina(root, account, "rm", "-f", *ids, served=served)
    finally:
        from adapters.fastpath.forkserver import stop_server

        stop_server(str(root))
        account.remove()
        tails.remove()
    return ["fork server" if served else "no server (recorder exec'd)",
            "lamina kill" if kill else "by itself", str(count),
            f"{(rest + tail) / count * 1000:.1f} ms",
            f"{tail / count * 1000:.1f} ms", f"{rest / count * 1000:.1f} ms",
            "-" if kill else f"{statistics.median(lags) * 1000:.1f} ms",
            "-" if kill else f"{max(lags) * 1000:.1f} ms", f"{statistics.mean(pss) / 1024:.2f} MiB",
            f"{statistics.mean(rss) / 1024:.1f} MiB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--kill", action="store_true",
                        help="end them with `lamina kill` (run outside the groups), which "
                        "records the end itself: what the monitor then spends finding so")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    base = Path(tempfile.mkdtemp(prefix="lamina-bench-recorder-"))
    try:
        from adapters.storage.busybox import write_busybox_rootfs_tar

        tar = base / "busybox.tar"
        with open(tar, "wb") as f:
            write_busybox_rootfs_tar(f)
        rows = [one_way(base, tar, args.count, served, args.kill) for served in (True, False)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    head = ["recorded by", "ended", "exits", "CPU per exit", "in the monitor", "in the server",
            "end to record (median)",
            "end to record (worst)", "monitor PSS each", "monitor RSS each"]
    print(f"load average at the start {load:.1f}, at the end {os.getloadavg()[0]:.1f}")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
