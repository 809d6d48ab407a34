"""What mounts cost a container's start: 3 bind mounts and 1 named volume, A/B.

    python bench/mounts.py [--runs N] [--json FILE]

`lamina run --rm busybox true` with and without `-v DIR1:/a -v DIR2:/b -v DIR3:/c -v
vol:/v`, alternating, through `lamina serve`'s fork server (the installed `lamina`, the
native client after `make client`), on one root; the named volume exists before the first
run, as a real workload's does. The difference of the medians is the cost of judging and
recording the mounts (create's VolumeMounted, rm's VolumeUnmounted) and making them in the
container's namespace; the issue's target is <= 3 ms. Also the same A/B without a server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
LAMINA = str(Path(sys.executable).with_name("lamina"))
# containers stay off the default bridge: a bench must not make one in the host's namespace
NO_NET = ["--network", "none"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def ab(base: list[str], mounts: list[str], runs: int, env: dict[str, str]) -> dict[str, float]:
    plain, mounted = [], []
    for i in range(runs + 3):
        p = timed([*base, "run", "--rm", *NO_NET, "busybox", "true"], env)
        m = timed([*base, "run", "--rm", *NO_NET, *mounts, "busybox", "true"], env)
        if i >= 3:  # warm-up rounds
            plain.append(p)
            mounted.append(m)
    a, b = statistics.median(plain), statistics.median(mounted)
    return {"without mounts (median ms)": round(a, 1), "with 3 binds + 1 volume (median ms)":
            round(b, 1), "difference (ms)": round(b - a, 1),
            "min without / with": [round(min(plain), 1), round(min(mounted), 1)],
            "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json")
    opts = parser.parse_args()
    from adapters.storage.busybox import write_busybox_rootfs_tar

    work = Path(tempfile.mkdtemp(prefix="lamina-bench-mounts-"))
    root, sock = work / "root", str(work / "lamina.sock")
    env = dict(os.environ)
    base = [LAMINA, "--root", str(root)]
    with open(work / "busybox.tar", "wb") as f:
        write_busybox_rootfs_tar(f)
    subprocess.run([*base, "import", str(work / "busybox.tar"), "busybox"], check=True,
                   capture_output=True)
    mounts = []
    for name in ("a", "b", "c"):
        (work / name).mkdir()
        mounts += ["-v", f"{work / name}:/{name}"]
    mounts += ["-v", "bench-vol:/v"]
    subprocess.run([*base, "volume", "create", "bench-vol"], check=True, capture_output=True)
    results = {"no server": ab(base, mounts, opts.runs // 2, env)}
    serve = subprocess.Popen([*base, "serve", "--socket", sock], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(sock):
            time.sleep(0.05)
        results["fork server"] = ab(base, mounts, opts.runs, env)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    results["load"] = list(os.getloadavg())
    print(json.dumps(results, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
