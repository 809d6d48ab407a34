"""Lifecycle benchmark: lamina beside runc, crun, podman and docker, in one run.

    python bench/lifecycle.py [--runs N] [--json FILE] [--interleave GAP]

Measures, as whole processes (what a user waits for), median and p95 over N runs:
- `run --rm busybox true` end to end;
- create + start + wait + rm;
- a pause + unpause pair through the CLI;
- `exec true` in a running container;
- the monitor's resident memory per running container (lamina only; from /proc).
- the first command of a root, which starts its fork server (lamina only).
lamina runs three ways: as a user has it (the native client `make` builds, every command
through the root's fork server, which the first command after the import started: nothing
started by hand); without a server (LAMINA_NO_SERVER=1); and through the Python client
(bin/lamina under `python -S`, what pip installs). `--only lamina,runc` picks engines.
Peers run the way ../shared/peers.md describes for this kind of host; a peer that is not
installed (or can't run here) is reported as such, not guessed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
LAMINA = str(Path(sys.executable).with_name("lamina"))  # the native client, as make builds it
PYTHON_CLIENT = [sys.executable, "-S", str(HERE / "bin" / "lamina")]  # as pip installs it


def timed(fn: Callable[[], object], runs: int, warmup: int = 2,
          before: Callable[[], object] | None = None) -> dict[str, float]:
    """`fn`'s wall times: median and p95 of `runs`; `before` runs ahead of each, untimed.
    Also the machine's CPU time a run (`cpu`: every process's, the kernel's included, from
    /proc/stat over the runs and 0.3 s after them, for the work each run leaves behind):
    back to back on 2 CPUs, a command that takes more CPU than its wall time on one CPU
    slows the next."""
    for _ in range(warmup):
        fn()
    samples = []
    time.sleep(0.3)
    busy = machine_cpu_ms()
    for _ in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.3)
    cpu = (machine_cpu_ms() - busy) / runs
    samples.sort()
    return {"median": statistics.median(samples),
            "p95": samples[min(len(samples) - 1, int(len(samples) * 0.95))], "cpu": cpu}


def machine_cpu_ms() -> float:
    """CPU time the machine has spent busy since boot (user, nice, system, irq, softirq:
    not idle, I/O wait or steal), in ms."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) * 1000 / os.sysconf("SC_CLK_TCK")


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


# --- lamina -----------------------------------------------------------------------------------


class Lamina:
    """lamina as a user has it: the first command after the import starts the root's fork
    server (in the warm-up runs: `first command` measures that start on its own), and every
    command goes through it. `--network none`, as docker and podman run here and as runc's
    bundle has it: no bridge, no veth."""

    name = "lamina"
    client = [LAMINA]
    env: dict[str, str] = {k: v for k, v in os.environ.items() if k != "LAMINA_NO_SERVER"}

    def __init__(self, work: Path, tar: Path, label: str = "root") -> None:
        self.root = str(work / f"lamina-{label}")
        self.l(["import", str(tar), "busybox"])

    def l(self, argv: list[str]) -> str:  # noqa: E743
        return sh(*self.client, "--root", self.root, *argv, env=self.env).stdout

    def run_rm(self) -> None:
        self.l(["run", "--rm", "--network", "none", "busybox", "true"])

    def lifecycle(self) -> None:
        cid = self.l(["create", "--network", "none", "busybox", "true"]).strip()
        self.l(["start", cid])
        self.l(["wait", cid])
        self.l(["rm", cid])

    def start_long(self) -> str:
        return self.l(["run", "-d", "--network", "none", "busybox", "sleep", "600"]).strip()

    def pause_pair(self, cid: str) -> None:
        self.l(["pause", cid])
        self.l(["unpause", cid])

    def exec_true(self, cid: str) -> None:
        self.l(["exec", cid, "true"])

    def remove(self, cid: str) -> None:
        self.l(["rm", "-f", cid])

    def no_server(self) -> None:
        """The root's server stopped and gone (untimed, before each `first_command`)."""
        from adapters.fastpath.forkserver import stop_server

        stop_server(self.root, gone=True)
        time.sleep(0.2)

    def first_command(self) -> None:
        """`ps` with no server up: the command that starts it."""
        self.l(["ps"])

    def monitor_rss_kb(self, cid: str) -> int:
        doc = json.loads(self.l(["ps", "--format", "json"]).splitlines()[0])
        ppid = _status(doc["pid"])["PPid"]
        return int(_status(int(ppid))["VmRSS"].split()[0])

    def close(self) -> None:
        from adapters.fastpath.forkserver import stop_server

        stop_server(self.root)


class LaminaInProcess(Lamina):
    """Without a server (LAMINA_NO_SERVER=1): each command in a fresh interpreter."""

    name = "lamina (no server)"
    env = {**Lamina.env, "LAMINA_NO_SERVER": "1"}


class LaminaPython(Lamina):
    """The Python client pip installs (bin/lamina under `python -S`), through the server."""

    name = "lamina (Python client)"
    client = PYTHON_CLIENT


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


# --- runc / crun ------------------------------------------------------------------------------


class Oci:
    """A bare OCI runtime with a busybox bundle (no image store, no log: the floor)."""

    def __init__(self, name: str, work: Path, rootfs: Path) -> None:
        self.name = name
        self.bundle = work / f"{name}-bundle"
        self.bundle.mkdir()
        shutil.copytree(rootfs, self.bundle / "rootfs", symlinks=True)
        sh(name, "spec", cwd=self.bundle)
        spec = json.loads((self.bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["true"]
        (self.bundle / "config.json").write_text(json.dumps(spec))
        self.prefix: list[str] = []
        self.ns_file = None
        if name == "crun":
            self.ns_file = f"/run/lamina-bench-{os.getpid()}.mnt"
            Path(self.ns_file).touch()
            sh("unshare", f"--mount={self.ns_file}", "--propagation", "private",
               "umount", "/sys/fs/cgroup/unified", check=False)
            self.prefix = ["nsenter", f"--mount={self.ns_file}"]
        self.n = 0

    def run_rm(self) -> None:
        self.n += 1
        name = f"lb{os.getpid()}-{self.n}"
        sh(*self.prefix, self.name, "run", "--bundle", str(self.bundle), name)

    def start_long(self) -> str:
        """A detached `sleep 600` (its own bundle: the config's args), for pause and exec."""
        long = self.bundle.with_name(f"{self.name}-long")
        if not long.exists():
            long.mkdir()
            spec = json.loads((self.bundle / "config.json").read_text())
            spec["root"]["path"] = str(self.bundle / "rootfs")
            spec["process"]["args"] = ["sleep", "600"]
            (long / "config.json").write_text(json.dumps(spec))
        self.n += 1
        name = f"lb{os.getpid()}-long-{self.n}"
        subprocess.run([*self.prefix, self.name, "run", "-d", "--bundle", str(long), name],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return name

    def pause_pair(self, cid: str) -> None:
        sh(*self.prefix, self.name, "pause", cid)
        sh(*self.prefix, self.name, "resume", cid)

    def exec_true(self, cid: str) -> None:
        subprocess.run([*self.prefix, self.name, "exec", cid, "true"], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)

    def remove(self, cid: str) -> None:
        sh(*self.prefix, self.name, "delete", "-f", cid, check=False)

    def close(self) -> None:
        if self.ns_file:
            sh("umount", self.ns_file, check=False)
            os.unlink(self.ns_file)


# --- podman -----------------------------------------------------------------------------------


class Podman:
    name = "podman"
    FLAGS = ["--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    RUN = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=20000:20000",
           "--ulimit", "nproc=32768:32768"]

    def __init__(self, work: Path, tar: Path) -> None:
        self.root = work / "podman"
        self.base = ["podman", "--root", str(self.root / "root"), "--runroot",
                     str(self.root / "run"), *self.FLAGS]
        sh(*self.base, "import", str(tar), "localhost/busybox:latest")

    def p(self, *argv: str) -> str:
        return sh(*self.base, *argv).stdout

    def run_rm(self) -> None:
        self.p("run", "--rm", *self.RUN, "localhost/busybox", "true")

    def lifecycle(self) -> None:
        cid = self.p("create", *self.RUN, "localhost/busybox", "true").strip()
        self.p("start", cid)
        self.p("wait", cid)
        self.p("rm", cid)

    def start_long(self) -> str:
        return self.p("run", "-d", *self.RUN, "localhost/busybox", "sleep", "600").strip()

    def pause_pair(self, cid: str) -> None:
        self.p("pause", cid)
        self.p("unpause", cid)

    def exec_true(self, cid: str) -> None:
        self.p("exec", cid, "true")

    def remove(self, cid: str) -> None:
        self.p("rm", "-f", "-t", "0", cid)

    def close(self) -> None:
        sh(*self.base, "system", "reset", "-f", check=False)


class Docker:
    """Debian's dockerd 20.10 in the background on its own socket and data root."""

    name = "docker"

    def __init__(self, work: Path, tar: Path) -> None:
        self.sock = f"/run/lamina-bench-docker-{os.getpid()}.sock"
        self.pidfile = str(work / "dockerd.pid")
        self.log = open(work / "dockerd.log", "w")  # noqa: SIM115 - lives as long as dockerd
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--bridge=none", "--data-root",
             str(work / "docker"), "--exec-root", str(work / "docker-exec"), "--pidfile",
             self.pidfile, "-H", f"unix://{self.sock}"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while sh("/usr/bin/docker", "-H", f"unix://{self.sock}", "version",
                 check=False).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("dockerd did not start")
            time.sleep(0.5)
        sh(*self.base(), "import", str(tar), "busybox:latest")

    def base(self) -> list[str]:
        return ["/usr/bin/docker", "-H", f"unix://{self.sock}"]

    def d(self, *argv: str) -> str:
        return sh(*self.base(), *argv).stdout

    def run_rm(self) -> None:
        self.d("run", "--rm", "--network", "none", "busybox", "true")

    def lifecycle(self) -> None:
        cid = self.d("create", "--network", "none", "busybox", "true").strip()
        self.d("start", cid)
        self.d("wait", cid)
        self.d("rm", cid)

    def start_long(self) -> str:
        return self.d("run", "-d", "--network", "none", "busybox", "sleep", "600").strip()

    def pause_pair(self, cid: str) -> None:
        self.d("pause", cid)
        self.d("unpause", cid)

    def exec_true(self, cid: str) -> None:
        self.d("exec", cid, "true")

    def remove(self, cid: str) -> None:
        self.d("rm", "-f", cid)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def measure(engine, runs: int) -> dict[str, object]:
    out: dict[str, object] = {"run --rm true": timed(engine.run_rm, runs)}
    if hasattr(engine, "lifecycle"):
        out["create+start+wait+rm"] = timed(engine.lifecycle, runs)
    if hasattr(engine, "start_long"):
        cid = engine.start_long()
        try:
            out["pause+unpause"] = timed(lambda: engine.pause_pair(cid), runs)
            out["exec true"] = timed(lambda: engine.exec_true(cid), runs)
            if hasattr(engine, "monitor_rss_kb"):
                out["monitor RSS (KiB)"] = engine.monitor_rss_kb(cid)
        finally:
            engine.remove(cid)
    if hasattr(engine, "first_command") and engine.env.get("LAMINA_NO_SERVER") != "1":
        out["first command (starts the server)"] = timed(
            engine.first_command, max(3, runs // 4), warmup=0, before=engine.no_server)
    return out


def timed_together(fns: dict[str, Callable[[], object]], runs: int, gap: float,
                   warmup: int = 2) -> dict[str, dict[str, float]]:
    """As `timed`, for several engines at once: each round runs every engine's work once,
    in turn (the order alternating), so a machine whose speed drifts during the run
    (another tenant, a frequency change) moves every engine's samples alike. `gap`
    seconds apart: as a user who runs one command now and then (CPUs idle in between, the
    caches cold, what lamina does after its answer done). Neither way is neutral, which is
    why the sequential table stays the verdict: back to back (gap 0), lamina's release
    after its answer overlaps the next engine's command; 0.1 s apart, runc's and crun's
    short commands pay the idle CPUs' wake-up more, in proportion, than lamina's."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in (names if i % 2 == 0 else reversed(names)):
            time.sleep(gap)
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append((time.perf_counter() - t0) * 1000)
    out = {}
    for name, got in samples.items():
        got.sort()
        out[name] = {"median": statistics.median(got),
                     "p95": got[min(len(got) - 1, int(len(got) * 0.95))]}
    return out


def measure_interleaved(engines: dict[str, Any], runs: int, gap: float) -> dict[str, dict]:
    """The three rows issue 20's targets compare (run --rm, the pause pair, exec), each
    timed round by round across the engines (timed_together)."""
    results: dict[str, dict] = {name: {} for name in engines}
    for name, row in timed_together({n: e.run_rm for n, e in engines.items()}, runs,
                                    gap).items():
        results[name]["run --rm true"] = row
    cids = {name: e.start_long() for name, e in engines.items()}
    try:
        for label, work in (("pause+unpause", "pause_pair"), ("exec true", "exec_true")):
            fns = {n: functools.partial(getattr(e, work), cids[n]) for n, e in engines.items()}
            for name, row in timed_together(fns, runs, gap).items():
                results[name][label] = row
    finally:
        for name, e in engines.items():
            e.remove(cids[name])
    return results


ENGINES = ("lamina", "lamina-no-server", "lamina-python", "runc", "crun", "podman", "docker")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json")
    parser.add_argument("--only", help=f"comma-separated, of {','.join(ENGINES)}")
    parser.add_argument("--interleave", type=float, metavar="GAP",
                        help="lamina (served), runc and crun only: the three target rows "
                             "timed round by round across the engines, GAP seconds apart "
                             "(see timed_together: not the verdict)")
    args = parser.parse_args()
    if args.interleave is not None:
        interleaved(args)
        return
    only = set(args.only.split(",")) if args.only else set(ENGINES)
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    results: dict[str, dict] = {}
    loads = [os.getloadavg()[0]]
    try:
        tar, rootfs = _inputs(work)
        for key, kind in (("lamina", Lamina), ("lamina-no-server", LaminaInProcess),
                          ("lamina-python", LaminaPython)):
            if key in only:
                engine = kind(work, tar, key)
                try:
                    results[engine.name] = measure(engine, args.runs)
                finally:
                    engine.close()
        for name in ("runc", "crun"):
            if name not in only:
                continue
            if shutil.which(name):
                oci = Oci(name, work, rootfs)
                try:
                    results[name] = measure(oci, args.runs)
                except subprocess.CalledProcessError as err:
                    results[name] = {"error": (err.stderr or "").strip()[:200]}
                finally:
                    oci.close()
            else:
                results[name] = {"error": "not installed"}
        if "podman" in only and shutil.which("podman"):
            podman = Podman(work, tar)
            try:
                results["podman"] = measure(podman, max(5, args.runs // 2))
            except subprocess.CalledProcessError as err:
                results["podman"] = {"error": (err.stderr or "").strip()[:200]}
            finally:
                podman.close()
        elif "podman" in only:
            results["podman"] = {"error": "not installed"}
        if "docker" in only:
            results["docker"] = _docker(work, tar, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    print_table(results)
    print_targets(results)
    print(f"\nload average (1 min) {loads[0]:.1f} at the start, {loads[1]:.1f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _inputs(work: Path) -> tuple[Path, Path]:
    """The busybox every engine runs: a tar (lamina, podman, docker import it) and a root
    filesystem (runc's and crun's bundles)."""
    from adapters.storage.busybox import build_busybox_rootfs, write_busybox_rootfs_tar

    tar = work / "busybox.tar"
    with open(tar, "wb") as f:
        write_busybox_rootfs_tar(f)
    rootfs = work / "rootfs"
    build_busybox_rootfs(str(rootfs))
    return tar, rootfs


def interleaved(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    loads = [os.getloadavg()[0]]
    engines: dict[str, Any] = {}
    try:
        tar, rootfs = _inputs(work)
        engines["lamina"] = Lamina(work, tar, "lamina")
        for name in ("runc", "crun"):
            if shutil.which(name):
                engines[name] = Oci(name, work, rootfs)
        results = measure_interleaved(engines, args.runs, args.interleave)
    finally:
        for engine in engines.values():
            engine.close()
        shutil.rmtree(work, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    print_table(results)
    print_targets(results)
    print(f"\nload average (1 min) {loads[0]:.1f} at the start, {loads[1]:.1f} at the end "
          f"(interleaved, {args.interleave} s apart: not the verdict, see timed_together)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _docker(work: Path, tar: Path, runs: int) -> dict[str, object]:
    if not shutil.which("dockerd"):
        return {"error": "not installed"}
    try:
        docker = Docker(work, tar)
    except (RuntimeError, subprocess.CalledProcessError) as err:
        return {"error": str(err)[:200]}
    try:
        return measure(docker, max(5, runs // 2))
    except subprocess.CalledProcessError as err:
        return {"error": (err.stderr or "").strip()[:200]}
    finally:
        docker.close()


CPU_ROW = "run --rm true: machine CPU a run"


def print_table(results: dict[str, dict]) -> None:
    rows = ["run --rm true", CPU_ROW, "create+start+wait+rm", "pause+unpause", "exec true",
            "monitor RSS (KiB)", "first command (starts the server)"]
    engines = list(results)
    print("| work | " + " | ".join(engines) + " |")
    print("|---|" + "---:|" * len(engines))
    for row in rows:
        cells = []
        for e in engines:
            v = results[e].get(row)
            if isinstance(v, dict):
                cells.append(f"{v['median']:.0f} ms (p95 {v['p95']:.0f})")
            elif row == CPU_ROW and isinstance(results[e].get(rows[0]), dict):
                cells.append(f"{results[e][rows[0]]['cpu']:.0f} ms")
            elif v is not None:
                cells.append(str(v))
            else:
                cells.append(results[e].get("error", "—") if row == rows[0] else "—")
        print(f"| {row} | " + " | ".join(cells) + " |")


def print_targets(results: dict[str, dict]) -> None:
    """Issue 20's lifecycle targets, as ratios within this run: run --rm <= 1.5x runc and
    <= 60 ms, a pause pair <= 2x crun's, exec <= 1.5x runc's."""
    def median(engine: str, row: str) -> float | None:
        v = results.get(engine, {}).get(row)
        return v["median"] if isinstance(v, dict) else None

    print()
    for row, peer, bound in (("run --rm true", "runc", 1.5), ("pause+unpause", "crun", 2.0),
                             ("exec true", "runc", 1.5)):
        ours, theirs = median("lamina", row), median(peer, row)
        if ours is None or theirs is None:
            continue
        ratio = ours / theirs
        extra = f", <= 60 ms: {'yes' if ours <= 60 else 'no'}" if row == "run --rm true" else ""
        print(f"{row}: lamina {ours:.0f} ms = {ratio:.2f}x {peer} ({theirs:.0f} ms), "
              f"target <= {bound}x: {'met' if ratio <= bound else 'not met'}{extra}")


if __name__ == "__main__":
    main()
