"""Where a served `lamina run --rm busybox true` spends its time: a timeline of the client,
the command's child (the fork server's spare that took it), the monitor and init, from the
kernel's tracepoints (perf record -a: no ptrace, so the processes run at full speed).

    python bench/timeline.py [--runs N] [--root DIR]

Each run's marks are taken relative to the client's exec and printed as medians over the
runs, with the step from the mark before. Needs `perf` and root. The marks are syscalls
lamina makes on its way (see docs/benchmarks.md "Where run --rm's time goes"): what lies
between two of them is the Python the process ran meanwhile.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
LAMINA = str(Path(sys.executable).with_name("lamina"))

EVENTS = ["sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit",
          "syscalls:sys_enter_fdatasync", "syscalls:sys_exit_fdatasync",
          "syscalls:sys_enter_unshare", "syscalls:sys_enter_pivot_root",
          "syscalls:sys_enter_execve", "syscalls:sys_enter_setsid",
          "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg",
          "syscalls:sys_enter_recvmsg", "syscalls:sys_enter_mount",
          "syscalls:sys_enter_umount", "syscalls:sys_exit_umount",
          "syscalls:sys_enter_connect",
          "syscalls:sys_enter_exit_group"]
LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")


def parse(text: str) -> list[tuple[float, int, str, str, str]]:
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            comm, pid, _tid, t, event, rest = m.groups()
            out.append((float(t), int(pid), comm, event.split(":")[1], rest))
    return out


def marks(rows: list[tuple[float, int, str, str, str]]) -> list[dict[str, float]]:
    """Per run (one client exec of lamina each), its marks in ms after the exec."""
    runs = []
    starts = [i for i, r in enumerate(rows)
              if r[3] == "sched_process_exec" and r[4].startswith(f"filename={LAMINA}")]
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(rows)
        runs.append(_one(rows[i:end]))
    return [r for r in runs if "client exits" in r]


def _one(rows: list[tuple[float, int, str, str, str]]) -> dict[str, float]:
    t0, client = rows[0][0], rows[0][1]
    m: dict[str, float] = {}
    cmd = monitor = init = None
    forked: dict[int, float] = {}

    def mark(name: str, t: float) -> None:
        m.setdefault(name, (t - t0) * 1000)

    syncs: list[str] = []
    for t, pid, _comm, ev, rest in rows:
        if cmd is None and ev == "sys_enter_sendto" and "len: 0x00000004" in rest and \
                pid != client:  # its pid, sent once it has the request (a child that
            cmd = pid           # served before makes no setsid: fastpath/reuse.py)
            mark("child has the request", t)
            continue
        if pid == cmd:
            if ev == "sys_enter_fdatasync":
                syncs.append("enter")
                mark(f"fsync {len(syncs)} begins", t)
            elif ev == "sys_exit_fdatasync":
                mark(f"fsync {len(syncs)} done", t)
            elif ev == "sys_enter_mount":
                mark("overlay mounted", t)
            elif ev == "sched_process_fork":  # the monitor, or the start's cgroup helper
                forked[int(rest.rsplit("child_pid=", 1)[1].split()[0])] = t
            elif ev == "sys_enter_umount":
                mark("overlay unmount begins", t)
            elif ev == "sys_exit_umount":
                mark("overlay unmount done", t)
            elif ev == "sys_enter_sendto" and "len: 0x00000004" in rest:
                mark("exit code to the client", t)
        elif monitor is None and pid in forked and ev == "sys_enter_setsid":
            monitor = pid  # the monitor's first call (cgroups.warm_migration's sh makes none)
            mark("monitor forked", forked[pid])
        elif monitor is None and cmd is not None and ev == "sched_process_fork" and \
                _comm in ("lamina-spare", "lamina-monitor") and pid != cmd:
            monitor = pid  # a spare monitor the server forked ahead, handed this start
            init = int(rest.rsplit("child_pid=", 1)[1].split()[0])
            mark("monitor: init forked", t)
        elif pid == monitor:
            if ev == "sys_enter_unshare":
                mark("monitor: PID namespace", t)
            elif ev == "sched_process_fork" and init is None:
                init = int(rest.rsplit("child_pid=", 1)[1].split()[0])
                mark("monitor: init forked", t)
            elif ev == "sys_enter_execve":
                mark("monitor: exec of the supervisor", t)
            elif ev == "sched_process_exec":
                mark("monitor: supervisor exec'd", t)
            elif ev == "sys_enter_sendto":
                mark("monitor: start reported" if "monitor: start reported" not in m
                     else "monitor: exit sent", t)
        elif pid == init:
            if ev == "sys_enter_unshare":
                mark("init: cgroups joined, unshare", t)
            elif ev == "sys_enter_pivot_root":
                mark("init: pivot_root", t)
            elif ev == "sys_enter_execve":
                mark("init: execve", t)
            elif ev == "sched_process_exec":
                mark("init: /bin/true runs", t)
            elif ev == "sched_process_exit":
                mark("init: exits", t)
        elif pid == client and ev == "sched_process_exit":
            mark("client exits", t)
    return m


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--root", help="a root with busybox imported (default: a new one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lamina-timeline-"))
    root = args.root or str(work / "root")
    argv = [LAMINA, "--root", root, "run", "--rm", "--network", "none", "busybox", "true"]
    if not args.root:
        from adapters.storage.busybox import write_busybox_rootfs_tar

        with open(work / "busybox.tar", "wb") as f:
            write_busybox_rootfs_tar(f)
        subprocess.run([LAMINA, "--root", root, "import", str(work / "busybox.tar"),
                        "busybox"], check=True, capture_output=True)
    for _ in range(3):  # the server up, its spare warm
        subprocess.run(argv, check=True)
    data = str(work / "perf.data")
    perf = subprocess.Popen(["perf", "record", "-q", "-a", "-o", data,
                             "-e", ",".join(EVENTS)], stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    walls = []
    try:
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(argv, check=True)
            walls.append((time.perf_counter() - t) * 1000)
            time.sleep(0.2)
    finally:
        perf.send_signal(2)
        perf.wait()
        if not args.root:
            from adapters.fastpath.forkserver import stop_server

            stop_server(root)
    text = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid,tid,time,event,trace"],
                          capture_output=True, text=True).stdout
    runs = marks(parse(text))
    names: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        for k, v in r.items():
            names[k].append(v)
    load = os.getloadavg()[0]
    print(f"{len(runs)} runs, wall median {statistics.median(walls):.1f} ms "
          f"(under perf), load {load:.1f}")
    table(names)
    subprocess.run(["rm", "-rf", str(work)])  # the perf data, and the root it made


def table(names: dict[str, list[float]], digits: int = 1) -> None:
    """The marks in the order of their medians, each with its step from the one before."""
    print("| mark | ms after the client's exec (median) | step |")
    print("|---|---:|---:|")
    prev = 0.0
    for name, vals in sorted(names.items(), key=lambda kv: statistics.median(kv[1])):
        med = statistics.median(vals)
        print(f"| {name} | {med:.{digits}f} | {med - prev:+.{digits}f} |")
        prev = med


if __name__ == "__main__":
    main()
