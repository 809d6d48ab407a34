"""Storage benchmark: commit, export and save of a big layer, and `create` of a deep image.

    .venv/bin/python bench/storage.py [--files 2000] [--file-kb 100] [--runs 20] [--dir DIR]

Needs root (overlayfs, namespaces). What it measures, on a temporary lamina root:

1. A container writes --files files of --file-kb KiB of random data (200 MB by default) into
   /data; then, by wall time of the `lamina` command:
   - `commit` of that container (its read-write layer becomes a layer: tar + extract);
   - `export` of a fresh container of the committed image (the whole union view as a tar);
   - `save` of the committed image (busybox's layer and the 200 MB layer, rebuilt from their
     tar-splits, plus the config and manifests).
   Each is given as MB/s and relative to `tar -cf - DIR | sha256sum` over the container's
   upper directory (the same 200 MB, page cache warm) timed in the same run: 1.0 means "as
   fast as GNU tar piped into sha256sum".
   If podman is installed, its commit/save/export of the same data are timed the same way.
2. `create` of a container from a 10-layer image: the median wall time of --runs `lamina
   create`, minus the median of --runs `lamina version` (the CLI's own start-up).

Prints a Markdown table; writes nothing else.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LAMINA = str(Path(sys.executable).with_name("lamina"))
# Timed commands must not recompile lamina's modules on every start: let them write .pyc.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def sh(*argv: str, stdin: bytes | None = None) -> str:
    out = subprocess.run(argv, capture_output=True, input=stdin, timeout=1800, env=ENV)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed ({out.returncode}): "
                         f"{out.stderr.decode(errors='replace')[-2000:]}")
    return out.stdout.decode(errors="replace")


def timed(*argv: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = sh(*argv)
    return time.perf_counter() - t0, out


def tree_bytes(path: str) -> int:
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            total += st.st_size
    return total


def baseline(directory: str) -> float:
    """Seconds for `tar -cf - DIR | sha256sum` (best of 3, page cache warm)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(["sh", "-c", f"tar -C '{directory}' -cf - . | sha256sum >/dev/null"],
                       check=True, timeout=1800)
        best = min(best, time.perf_counter() - t0)
    return best


class Bench:
    def __init__(self, root: str) -> None:
        self.root = root
        self.rows: list[tuple[str, str, str, str]] = []

    def lamina(self, *argv: str) -> str:
        return sh(LAMINA, "--root", self.root, *argv)

    def t(self, *argv: str) -> float:
        return timed(LAMINA, "--root", self.root, *argv)[0]


def bench_big_layer(b: Bench, files: int, kb: int, work: str) -> None:
    script = (f"mkdir /data; i=0; while [ $i -lt {files} ]; do "
              f"head -c {kb * 1024} /dev/urandom > /data/f$i; i=$((i+1)); done")
    b.lamina("run", "--network", "none", "--name", "writer", "busybox", "sh", "-c", script)
    import json

    upper = json.loads(b.lamina("inspect", "writer"))[0]["GraphDriver"]["Data"]["UpperDir"]
    size = tree_bytes(upper)
    base = baseline(upper)
    base_mbs = size / base / 1e6
    b.rows.append(("`tar -cf - DIR \\| sha256sum` (baseline)", f"{size / 1e6:.0f} MB",
                   f"{base:.2f} s, {base_mbs:.0f} MB/s", "1.00"))

    def row(what: str, seconds: float, nbytes: int) -> None:
        mbs = nbytes / seconds / 1e6
        b.rows.append((what, f"{nbytes / 1e6:.0f} MB", f"{seconds:.2f} s, {mbs:.0f} MB/s",
                       f"{mbs / base_mbs:.2f}"))

    # best of 3, as the baseline: on a shared machine one run may wait on another's writes
    row("lamina commit (best of 3)",
        min(b.t("commit", "writer", tag) for tag in ("big", "big2", "big3")), size)
    cid = b.lamina("create", "--network", "none", "big", "true").strip()
    out = os.path.join(work, "export.tar")
    seconds = min(b.t("export", "-o", out, cid) for _ in range(3))
    row("lamina export (union view, best of 3)", seconds, os.path.getsize(out))
    os.unlink(out)
    out = os.path.join(work, "save.tar")
    seconds = min(b.t("save", "-o", out, "big") for _ in range(3))
    row("lamina save (2 layers, best of 3)", seconds, os.path.getsize(out))
    os.unlink(out)
    b.lamina("rm", "-f", cid, "writer")
    if shutil.which("podman"):
        bench_podman(b, files, kb, work, base_mbs)
    else:
        b.rows.append(("podman commit/save/export", "-", "podman not installed: skipped",
                       "-"))


def bench_podman(b: Bench, files: int, kb: int, work: str, base_mbs: float) -> None:
    """podman's commit, export and save of the same amount of data. The files are written
    into the container's mounted rootfs from the host (`podman mount`): that lands in its
    upper directory just as the container's own writes would, and needs no OCI runtime (crun
    cannot run containers on every host)."""
    proot = os.path.join(work, "podman")
    pod = ["podman", "--root", os.path.join(proot, "root"), "--runroot",
           os.path.join(proot, "run"), "--storage-driver", "overlay"]
    try:
        sh(*pod, "load", "-i", os.path.join(work, "bb-save.tar"))
        sh(*pod, "create", "--name", "writer", "busybox", "true")
        merged = sh(*pod, "mount", "writer").strip()
        os.mkdir(os.path.join(merged, "data"))
        for i in range(files):
            with open(os.path.join(merged, "data", f"f{i}"), "wb") as f:
                f.write(os.urandom(kb * 1024))
        sh(*pod, "unmount", "writer")
        size = files * kb * 1024
        for what, argv, out in (
                ("podman commit", [*pod, "commit", "writer", "big"], None),
                ("podman export", [*pod, "export", "-o", os.path.join(work, "p-export.tar"),
                                   "writer"], "p-export.tar"),
                ("podman save", [*pod, "save", "-o", os.path.join(work, "p-save.tar"), "big"],
                 "p-save.tar")):
            seconds, _ = timed(*argv)
            nbytes = os.path.getsize(os.path.join(work, out)) if out else size
            mbs = nbytes / seconds / 1e6
            b.rows.append((what, f"{nbytes / 1e6:.0f} MB", f"{seconds:.2f} s, {mbs:.0f} MB/s",
                           f"{mbs / base_mbs:.2f}"))
    except SystemExit as err:
        b.rows.append(("podman commit/save/export", "-", f"failed: {str(err)[:120]}", "-"))
    finally:
        subprocess.run([*pod, "rm", "-f", "-a"], capture_output=True, timeout=120)
        subprocess.run([*pod, "system", "reset", "-f"], capture_output=True, timeout=120)


def bench_create(b: Bench, runs: int, work: str) -> None:
    """`create` from a 10-layer image, beyond the CLI's start-up."""
    for i in range(9):
        name = "deep0" if i == 0 else f"deep{i}"
        base = "busybox" if i == 0 else f"deep{i - 1}"
        b.lamina("run", "--network", "none", "--name", f"layer{i}", base, "sh", "-c",
                 f"echo {i} > /layer{i}")
        b.lamina("commit", f"layer{i}", name)
        b.lamina("rm", f"layer{i}")
    import json

    layers = json.loads(b.lamina("inspect", "deep8"))[0]["RootFS"]["Layers"]
    assert len(layers) == 10, layers
    version, create, made = [], [], []
    # warm up: .pyc files written
    made.append(b.lamina("create", "--network", "none", "deep8", "true").strip())
    for _ in range(runs):
        version.append(b.t("version"))
        t0 = time.perf_counter()
        made.append(b.lamina("create", "--network", "none", "deep8", "true").strip())
        create.append(time.perf_counter() - t0)
    b.lamina("rm", *made)
    mv, mc = statistics.median(version), statistics.median(create)
    b.rows.append((f"`lamina version` (median of {runs})", "-", f"{mv * 1000:.1f} ms", "-"))
    b.rows.append((f"`lamina create` of a 10-layer image (median of {runs})", "-",
                   f"{mc * 1000:.1f} ms", "-"))
    b.rows.append(("create beyond CLI start-up", "-", f"{(mc - mv) * 1000:.1f} ms", "-"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--file-kb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dir", default=None, help="where to make the temporary root")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench/storage.py needs root (overlayfs, namespaces)")
    from adapters.storage.busybox import write_busybox_rootfs_tar

    work = tempfile.mkdtemp(prefix="lamina-bench-storage-", dir=args.dir)
    b = Bench(os.path.join(work, "root"))
    try:
        with open(os.path.join(work, "busybox.tar"), "wb") as f:
            write_busybox_rootfs_tar(f)
        b.lamina("import", os.path.join(work, "busybox.tar"), "busybox")
        if shutil.which("podman"):
            b.lamina("save", "-o", os.path.join(work, "bb-save.tar"), "busybox")
        t0 = time.perf_counter()
        bench_big_layer(b, args.files, args.file_kb, work)
        bench_create(b, args.runs, work)
        total = time.perf_counter() - t0
    finally:
        _cleanup(b)
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"\n## Storage benchmark\n\n{args.files} files x {args.file_kb} KiB; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} at the end; {total:.0f} s in all\n")
    print("| what | data | time, throughput | relative to tar\\|sha256sum |")
    print("|---|---|---|---|")
    for row in b.rows:
        print("| " + " | ".join(row) + " |")
    return 0


def _cleanup(b: Bench) -> None:
    """Remove every container left (a failed run), so that no mount or cgroup stays."""
    import json

    if not os.path.exists(os.path.join(b.root, "events.db")):
        return
    out = subprocess.run([LAMINA, "--root", b.root, "ps", "-a", "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    for line in out.stdout.splitlines():
        subprocess.run([LAMINA, "--root", b.root, "rm", "-f", json.loads(line)["id"]],
                       capture_output=True, timeout=120)


if __name__ == "__main__":
    sys.exit(main())
