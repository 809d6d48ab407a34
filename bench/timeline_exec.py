"""Where a served `lamina exec C true`, or a `pause C` + `unpause C` pair, spends its time:
bench/timeline.py's way (perf record -a of kernel tracepoints: no ptrace, the processes run
at full speed) for the two other commands issue 20 times.

    python bench/timeline_exec.py [--work exec|pause] [--runs N]

Marks, as medians over the runs in ms after the client's exec: the command's child (the
fork server's spare that took it: "P"), for exec its joiner J (forked by P, joins the
container's namespaces and cgroups) and J's child E (which execs `true`), and every
one-byte write: P's is exec's no-op cgroup migration (cgroups.Warming), J's first is its
first cgroup.procs join. `fsync N` counts SQLite's fdatasyncs in P. Makes its own root
with a `sleep` container and removes both. Needs perf and root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# bench/timeline.py, beside this file; importing it puts lamina's checkout on sys.path
from timeline import LAMINA, parse, table

EVENTS = ["sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit",
          "syscalls:sys_enter_fdatasync", "syscalls:sys_exit_fdatasync",
          "syscalls:sys_enter_setns", "syscalls:sys_exit_setns", "syscalls:sys_enter_execve",
          "syscalls:sys_enter_setsid", "syscalls:sys_enter_sendto"]
ONE_BYTE = ["-e", "syscalls:sys_enter_write", "--filter", "count == 1",
            "-e", "syscalls:sys_exit_write", "--filter", "ret == 1"]
Row = tuple[float, int, str, str, str]


def _child(rest: str) -> int:
    return int(rest.rsplit("child_pid=", 1)[1].split()[0])


# What each process's events mark (the command's child P, the joiner J, the execer E).
P_MARKS = {"sys_enter_write": "P: warming write begins", "sys_exit_write": "P: warming write done"}
J_MARKS = {"sys_enter_write": "J: first cgroup join begins",
           "sys_exit_write": "J: first cgroup join done", "sched_process_exit": "J exits"}
E_MARKS = {"sys_enter_execve": "E: first execve", "sched_process_exec": "E: true runs"}


def _one(rows: list[Row], spares: set[int]) -> dict[str, float]:
    """One command's marks, in ms after its client's exec (the first row); `spares`: the
    fork server's children, one of which takes the command (perf -a sees every process's
    setsid, the other sessions' too)."""
    t0, client = rows[0][0], rows[0][1]
    m: dict[str, float] = {}
    cmd = joiner = execer = None
    forked: dict[int, float] = {}
    syncs = 0

    def mark(name: str | None, t: float) -> None:
        if name is not None:
            m.setdefault(name, (t - t0) * 1000)

    for t, pid, _comm, ev, rest in rows:
        if cmd is None and ev == "sys_enter_setsid" and pid in spares:
            cmd = pid
            mark("P has the request", t)
        elif pid == cmd:
            if ev == "sys_enter_fdatasync":
                syncs += 1
            if ev.endswith("_fdatasync"):
                mark(f"P: fsync {syncs} {'begins' if 'enter' in ev else 'done'}", t)
            elif ev == "sched_process_fork":
                forked[_child(rest)] = t
            elif ev == "sys_enter_sendto" and "len: 0x00000004" in rest:
                mark("P: exit code to the client", t)
            mark(P_MARKS.get(ev), t)
        elif joiner is None and pid in forked and ev == "sys_enter_setns":
            joiner = pid
            mark("J forked", forked[pid])
            mark("J: setns", t)
        elif pid == joiner:
            if ev == "sched_process_fork":
                execer = _child(rest)
                mark("J: joined, E forked", t)
            mark(J_MARKS.get(ev), t)
        elif pid == execer:
            mark(E_MARKS.get(ev), t)
        elif pid == client and ev == "sched_process_exit":
            mark("client exits", t)
    return m


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", choices=["exec", "pause"], default="exec")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lamina-timeline-"))
    root = str(work / "root")
    from adapters.fastpath.forkserver import stop_server
    from adapters.storage.busybox import write_busybox_rootfs_tar

    def lamina(*argv: str) -> str:
        return subprocess.run([LAMINA, "--root", root, *argv], check=True, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL).stdout

    try:
        with open(work / "busybox.tar", "wb") as f:
            write_busybox_rootfs_tar(f)
        lamina("import", str(work / "busybox.tar"), "busybox")
        cid = lamina("run", "-d", "--network", "none", "busybox", "sleep", "3600").strip()
        commands = [["exec", cid, "true"]] if args.work == "exec" else \
            [["pause", cid], ["unpause", cid]]
        for _ in range(3):  # the server up, its spare warm
            for argv in commands:
                lamina(*argv)
        server = int(Path(root, "cli.pid").read_text())
        spares = {int(p) for p in
                  Path(f"/proc/{server}/task/{server}/children").read_text().split()}
        data = str(work / "perf.data")
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-o", data,
                                 "-e", ",".join(EVENTS), *ONE_BYTE], stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        walls: dict[str, list[float]] = defaultdict(list)
        try:
            for _ in range(args.runs):
                for argv in commands:
                    t = time.perf_counter()
                    lamina(*argv)
                    walls[argv[0]].append((time.perf_counter() - t) * 1000)
                    time.sleep(0.05)
        finally:
            perf.send_signal(2)
            perf.wait()
        lamina("rm", "-f", cid)
        text = subprocess.run(["perf", "script", "-i", data, "-F",
                               "comm,pid,tid,time,event,trace"],
                              capture_output=True, text=True).stdout
    finally:
        stop_server(root)
        subprocess.run(["rm", "-rf", str(work)])
    rows = parse(text)
    spares |= {int(r[4].rsplit("child_pid=", 1)[1].split()[0]) for r in rows
               if r[1] == server and r[3] == "sched_process_fork"}
    report(rows, spares, commands, walls)


def report(rows: list[Row], spares: set[int], commands: list[list[str]],
           walls: dict[str, list[float]]) -> None:
    starts = [i for i, r in enumerate(rows)
              if r[3] == "sched_process_exec" and r[4].startswith(f"filename={LAMINA}")]
    marks: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(rows)
        for name, ms in _one(rows[i:end], spares).items():
            marks[commands[n % len(commands)][0]][name].append(ms)
    load = os.getloadavg()[0]
    for work, names in marks.items():
        print(f"\n{work}: {len(walls[work])} runs, wall median "
              f"{statistics.median(walls[work]):.1f} ms (under perf), load {load:.1f}")
        table(names, digits=2)


if __name__ == "__main__":
    main()
