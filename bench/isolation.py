"""What isolation costs a container's start: seccomp, the device allow-list, the keyring,
and a --userns-remap root.

    python bench/isolation.py [--runs N] [--json FILE] [--only pieces|end-to-end|remap]

Two views, both on this machine in one run:
- the pieces, timed alone (median of N): compiling the seccomp profile (a cache miss), the
  cached program's load (a hit, in a fresh process as a command has it), installing the
  filter, joining a new session keyring, resolving and making /dev's nodes, and creating a
  cgroup with and without the device rules;
- `run --rm busybox true` end to end, A/B: the same command in the same interpreter set-up,
  once as shipped and once with those three steps switched off by patching the functions
  in the benchmark's own process (nothing in lamina can switch them off). The difference
  of the medians is the cost; with ~100 ms runs and a few ms of noise, trust it only over
  many runs, and the pieces' sum more;
- `run --rm busybox true` with the installed `lamina` command, A/B: a plain root against a
  --userns-remap default root (its user and ids made in a prefix under the temp dir, never
  the host's), alternating: the cost of the user namespace, the idmapped layers and the
  binds that replace mknod.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

OFF = """
import adapters.kernel.devices as d, adapters.kernel.keyring as k, adapters.kernel.seccomp as s
import adapters.kernel.cgroups as c
from core.devices import DEFAULT_NODES
s.program = lambda *a, **kw: None
k.join_new_session = lambda *a, **kw: 0
d.nodes_for = lambda security: list(DEFAULT_NODES)
_create = c.Cgroup.create
c.Cgroup.create = staticmethod(lambda id, limits=None, mode=None, root=c.CGROUP_ROOT,
                               devices=None, **kw: _create(id, limits, mode, root, **kw))
"""
ON = "pass"


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def in_child(fn: Callable[[], float]) -> float:
    """fn's figure, measured in a forked child (filters and keyrings are for good)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, repr(fn()).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        value = float(f.read())
    os.waitpid(pid, 0)
    return value


def pieces(runs: int, work: Path) -> dict[str, float]:
    from adapters.kernel import devices, keyring, libc, seccomp
    from adapters.kernel.cgroups import Cgroup
    from core.devices import rules_for
    from core.security import DEFAULT_CAPS, SECCOMP_DEFAULT, Security

    cache = str(work / "seccomp")
    out: dict[str, float] = {}
    miss = work / "miss"

    def compile_miss() -> None:
        seccomp.program(SECCOMP_DEFAULT, DEFAULT_CAPS, str(miss / os.urandom(4).hex()))

    out["seccomp compile (cache miss)"] = median_ms(compile_miss, max(3, runs // 5))
    seccomp.program(SECCOMP_DEFAULT, DEFAULT_CAPS, cache)
    hit = [sys.executable, "-c", "import time;"
           "from adapters.kernel import seccomp; from core.security import *;"
           "t=time.perf_counter();"
           f"seccomp.program(SECCOMP_DEFAULT, DEFAULT_CAPS, {cache!r});"
           "print((time.perf_counter()-t)*1000)"]
    out["seccomp program, cache hit, fresh process"] = statistics.median(
        float(subprocess.run(hit, capture_output=True, text=True, cwd=HERE,
                             check=True).stdout) for _ in range(runs))
    prog = seccomp.program(SECCOMP_DEFAULT, DEFAULT_CAPS, cache)
    assert prog is not None

    def install() -> float:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        t0 = time.perf_counter()
        seccomp.install(prog)
        return (time.perf_counter() - t0) * 1000

    out["seccomp install"] = statistics.median(in_child(install) for _ in range(runs))

    def join() -> float:
        t0 = time.perf_counter()
        keyring.join_new_session()
        return (time.perf_counter() - t0) * 1000

    out["keyring join"] = statistics.median(in_child(join) for _ in range(runs))
    security = Security()
    out["device nodes resolved"] = median_ms(lambda: devices.nodes_for(security), runs)
    nodes = devices.nodes_for(security)
    dev = work / "dev"

    def make() -> None:
        dev.mkdir()
        devices.make_nodes(str(dev), nodes)
        for p in sorted(dev.rglob("*"), reverse=True):
            p.unlink()
        dev.rmdir()

    out["device nodes made"] = median_ms(make, runs)
    rules = rules_for(security, nodes)
    for label, devs in (("cgroup create + remove, no device rules", None),
                        ("cgroup create + remove, device rules", rules)):
        out[label] = median_ms(lambda devs=devs: Cgroup.create(
            f"bench-{os.getpid()}", None, devices=devs).remove(), runs)
    return out


def end_to_end(runs: int, work: Path) -> dict[str, float]:
    from adapters.storage.busybox import write_busybox_rootfs_tar

    root = work / "root"
    tar = work / "busybox.tar"
    with open(tar, "wb") as f:
        write_busybox_rootfs_tar(f)

    def cli(setup: str, *argv: str) -> None:
        code = f"{setup}\nfrom adapters.cli import main\nmain({list(argv)!r})"
        subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE,
                       stdout=subprocess.DEVNULL)

    cli(ON, "--root", str(root), "import", str(tar), "busybox")
    out = {}
    samples: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(runs + 2):  # alternate, so drift hits both alike; 2 warm-ups
        for label, setup in (("on", ON), ("off", OFF)):
            t0 = time.perf_counter()
            cli(setup, "--root", str(root), "run", "--rm", "--network", "none", "busybox", "true")
            if i >= 2:
                samples[label].append((time.perf_counter() - t0) * 1000)
    for label in samples:
        out[f"run --rm true, isolation {label}"] = statistics.median(samples[label])
    out["difference (on - off)"] = out["run --rm true, isolation on"] - \
        out["run --rm true, isolation off"]
    return out


def remap_ab(runs: int, work: Path) -> dict[str, float]:
    """`lamina run --rm busybox true` on a plain root and on a --userns-remap root (users
    and ids in a prefix under `work`, never the host's), alternating, 2 warm-ups each."""
    from adapters.storage.busybox import write_busybox_rootfs_tar

    lamina = str(Path(sys.executable).with_name("lamina"))
    tar = work / "busybox-remap.tar"
    with open(tar, "wb") as f:
        write_busybox_rootfs_tar(f)
    roots = {"plain": work / "root-plain", "remapped": work / "root-remapped"}
    prefix = work / "prefix"
    (prefix / "etc").mkdir(parents=True)
    for name, text in (("passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("group", "root:x:0:\n"),
                       ("shadow", "root:*:19000:0:99999:7:::\n"), ("gshadow", "root:*::\n"),
                       ("subuid", ""), ("subgid", "")):
        (prefix / "etc" / name).write_text(text)
    (prefix / "etc/login.defs").write_bytes(Path("/etc/login.defs").read_bytes())
    env = {**os.environ, "LAMINA_SUBID_PREFIX": str(prefix)}
    subprocess.run([lamina, "--root", str(roots["remapped"]), "system", "configure",
                    "--userns-remap", "default"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    for root in roots.values():
        subprocess.run([lamina, "--root", str(root), "import", str(tar), "busybox"],
                       check=True, stdout=subprocess.DEVNULL)
    samples: dict[str, list[float]] = {label: [] for label in roots}
    for i in range(runs + 2):
        for label, root in roots.items():
            t0 = time.perf_counter()
            subprocess.run([lamina, "--root", str(root), "run", "--rm", "--network", "none",
                            "busybox", "true"], check=True, stdin=subprocess.DEVNULL)
            if i >= 2:
                samples[label].append((time.perf_counter() - t0) * 1000)
    out = {f"run --rm true, {label} root": statistics.median(v) for label, v in samples.items()}
    out.update({f"run --rm true, {label} root, min": min(v) for label, v in samples.items()})
    out["difference (remapped - plain)"] = out["run --rm true, remapped root"] - \
        out["run --rm true, plain root"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    ap.add_argument("--only", choices=["pieces", "end-to-end", "remap"],
                    help="one part (default: all three)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/isolation.py needs root")
    parts = {"pieces": pieces, "end-to-end": end_to_end, "remap": remap_ab}
    with tempfile.TemporaryDirectory(prefix="lamina-bench-iso-") as tmp:
        work = Path(tmp)
        results = {}
        for name, part in parts.items():
            if args.only in (None, name):
                results.update(part(args.runs, work))
    width = max(map(len, results))
    print(f"isolation costs, medians of {args.runs} runs (ms)")
    for name, value in results.items():
        print(f"  {name:<{width}}  {value:8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
