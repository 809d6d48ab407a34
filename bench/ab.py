"""Interleaved A/B of served lamina commands between builds (two or more checkouts side by
side), for cuts smaller than bench/lifecycle.py can tell apart from one run to the next.

    python bench/ab.py --work run|exec|pause [--rounds N] NAME=CHECKOUT NAME=CHECKOUT ...

Each CHECKOUT is a worktree with its own venv and native client (`make pyc client`). Each
build gets its own root (/tmp/ab-NAME, busybox imported once, kept between invocations so
its fork server stays warm) and its own auto-started server. Each round runs the work once
with each build, the order alternating, 0.1 s apart: `run --rm --network none busybox
true`, an `exec true` into a detached sleep, or a pause+unpause pair of one. Prints the
median, the 10%-trimmed mean and the quartiles per build. Compare builds within one run:
on a shared machine the load moves every figure, but alike for all builds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--work", choices=("run", "exec", "pause"), default="run")
    parser.add_argument("builds", nargs="+", help="NAME=CHECKOUT")
    args = parser.parse_args()
    builds = dict(b.split("=", 1) for b in args.builds)

    def lamina(name: str, *argv: str) -> str:
        return subprocess.run([f"{builds[name]}/.venv/bin/lamina", "--root", f"/tmp/ab-{name}",
                               *argv], check=True, capture_output=True, text=True).stdout

    for name, checkout in builds.items():
        if not os.path.exists(f"/tmp/ab-{name}/events.db"):
            tar = f"/tmp/ab-{name}.tar"
            subprocess.run([f"{checkout}/.venv/bin/python", "-c", "import sys; from adapters."
                            "storage.busybox import write_busybox_rootfs_tar as w; "
                            "w(open(sys.argv[1], 'wb'))", tar], cwd=checkout, check=True)
            lamina(name, "import", tar, "busybox")
            os.unlink(tar)
    cids = {}
    if args.work != "run":
        cids = {n: lamina(n, "run", "-d", "--network", "none", "busybox", "sleep", "3600")
                .strip() for n in builds}

    def one(name: str) -> float:
        t = time.perf_counter()
        if args.work == "run":
            lamina(name, "run", "--rm", "--network", "none", "busybox", "true")
        elif args.work == "exec":
            lamina(name, "exec", cids[name], "true")
        else:
            lamina(name, "pause", cids[name])
            lamina(name, "unpause", cids[name])
        return (time.perf_counter() - t) * 1000

    times: dict[str, list[float]] = {n: [] for n in builds}
    try:
        for name in builds:
            for _ in range(3):
                one(name)
        load = os.getloadavg()[0]
        for i in range(args.rounds):
            for name in (list(builds) if i % 2 == 0 else list(builds)[::-1]):
                times[name].append(one(name))
                time.sleep(0.1)
    finally:
        for name, cid in cids.items():
            lamina(name, "rm", "-f", cid)
    for name, v in times.items():
        v.sort()
        cut = len(v) // 10
        trimmed = statistics.mean(v[cut:len(v) - cut])
        print(f"{args.work} {name}: median {statistics.median(v):.1f} ms, trimmed mean "
              f"{trimmed:.1f}, p25 {v[len(v) // 4]:.1f}, p75 {v[3 * len(v) // 4]:.1f}")
    print(f"{args.rounds} rounds, load {load:.1f} -> {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
