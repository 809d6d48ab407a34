"""The Docker API service's benchmark: the real docker CLI through `lamina serve`.

    python bench/service.py [--runs N] [--containers N] [--json FILE]

Measures, median and p95 over N runs:
- `docker ps -a` with 100 containers (60 never started, 40 exited): the whole command as a
  user waits for it, and the service's own time for GET /containers/json (from its access
  log, the time between reading the request and writing the last byte of the answer);
- `docker run --rm busybox true` through the service, beside `lamina run --rm busybox true`
  (the same root, the same machine, alternating).
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
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


def stats(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"median": round(statistics.median(samples), 1),
            "p95": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 1),
            "runs": len(samples)}


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return (time.perf_counter() - t0) * 1000


def access_ms(log: Path, path: str) -> list[float]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "request" and entry.get("path") == path:
                out.append(float(entry["ms"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--json")
    opts = parser.parse_args()
    from adapters.storage.busybox import write_busybox_rootfs_tar

    work = Path(tempfile.mkdtemp(prefix="lamina-bench-service-"))
    root, sock, log = work / "root", str(work / "lamina.sock"), work / "serve.log"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}",
           "DOCKER_CONFIG": str(work / "docker-config")}
    with open(work / "busybox.tar", "wb") as f:
        write_busybox_rootfs_tar(f)
    with open(log, "wb") as out:
        serve = subprocess.Popen([LAMINA, "--root", str(root), "--log-format", "json",
                                  "serve", "--socket", sock], stdout=out, stderr=out)
    try:
        while not os.path.exists(sock):
            time.sleep(0.05)
        subprocess.run([DOCKER, "import", str(work / "busybox.tar"), "busybox"], check=True,
                       capture_output=True, env=env)
        results = {"ps": bench_ps(opts, env, log), "run": bench_run(opts, env, root)}
    finally:
        ids = subprocess.run([DOCKER, "ps", "-aq"], capture_output=True, text=True,
                             env=env).stdout.split()
        if ids:
            subprocess.run([DOCKER, "rm", "-f", *ids], capture_output=True, env=env)
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    results["load"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))
    return 0


def bench_ps(opts: argparse.Namespace, env: dict[str, str], log: Path) -> dict[str, object]:
    import docker

    client = docker.DockerClient(base_url=env["DOCKER_HOST"])
    for i in range(opts.containers):
        c = client.containers.create("busybox", ["true"], name=f"c{i}", network_mode="none")
        if i % 5 < 2:  # 40 of 100 ran and exited
            c.start()
            c.wait()
    client.close()
    base = len(access_ms(log, "/containers/json"))
    wall = [timed([DOCKER, "ps", "-a"], env) for _ in range(opts.runs)]
    service = access_ms(log, "/containers/json")[base:]
    return {"containers": opts.containers, "docker ps -a (whole command)": stats(wall),
            "service time GET /containers/json": stats(service)}


def bench_run(opts: argparse.Namespace, env: dict[str, str], root: Path) -> dict[str, object]:
    via_docker, via_lamina = [], []
    for i in range(opts.runs + 2):
        d = timed([DOCKER, "run", "--rm", "--network", "none", "busybox", "true"], env)
        la = timed([LAMINA, "--root", str(root), "run", "--rm", "--network", "none", "busybox",
                    "true"], env)
        if i >= 2:  # two warm-up rounds
            via_docker.append(d)
            via_lamina.append(la)
    d, la = stats(via_docker), stats(via_lamina)
    return {"docker run --rm busybox true (service)": d,
            "lamina run --rm busybox true": la,
            "ratio (median)": round(d["median"] / la["median"], 2)}


if __name__ == "__main__":
    sys.exit(main())
