"""Build benchmark: a 10-step Dockerfile, fresh and fully cached, lamina beside buildah.

    .venv/bin/python bench/build.py [--runs 7] [--dir DIR] [--no-buildah]

Needs root. On a temporary lamina root with the busybox image (built from Debian's
busybox-static), the same Dockerfile and context are built by:

- `lamina build --no-cache` (fresh: every RUN and COPY runs and commits) and `lamina build`
  after a first build (every step CACHED), by wall time of the whole command;
- `buildah bud --layers` (Debian's buildah) on its own temporary --root/--runroot with the
  overlay driver, `--isolation chroot` and `--network host`, the same busybox image pulled
  from a `lamina save` archive: `--no-cache` for fresh, then with its layer cache.

The Dockerfile (10 steps: FROM, ENV, RUN, COPY, RUN, WORKDIR, COPY of a directory, RUN,
LABEL, CMD) is printed with the results. Prints a Markdown table; leaves nothing behind.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LAMINA = str(Path(sys.executable).with_name("lamina"))
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

DOCKERFILE = """\
FROM busybox
ENV APP=/app GREETING=hello
RUN echo "$GREETING" > /greeting
COPY one.txt /app/
RUN cat /app/one.txt /greeting > /app/both
WORKDIR /app
COPY data/ /app/data/
RUN ls -R /app > /app/listing
LABEL org.example.bench=build
CMD ["cat", "/app/listing"]
"""


def sh(*argv: str) -> str:
    out = subprocess.run(argv, capture_output=True, timeout=900, env=ENV)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:8])} failed ({out.returncode}): "
                         f"{out.stderr.decode(errors='replace')[-2000:]}")
    return out.stdout.decode(errors="replace")


def timed(runs: int, *argv: str, check=None) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = sh(*argv)
        times.append(time.perf_counter() - t0)
        if check is not None:
            check(out)
    return times


def context(base: Path) -> Path:
    ctx = base / "ctx"
    (ctx / "data" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "one.txt").write_text("one\n")
    for i in range(20):
        (ctx / "data" / f"f{i}.txt").write_text(f"file {i}\n" * 50)
        (ctx / "data" / "sub" / f"g{i}.bin").write_bytes(os.urandom(4096))
    return ctx


def row(tool: str, what: str, times: list[float], note: str = "") -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"| {tool} | {what} | {len(times)} | {statistics.median(times):.3f} s | "
            f"{ordered[0]:.3f} s | {p95:.3f} s | {note} |")


def all_cached(out: str) -> None:
    marks = [line for line in out.splitlines() if line.startswith(" ---> ")][1:]
    if len(marks) != 9 or not all("CACHED" in m for m in marks):
        raise SystemExit(f"expected 9 cached steps, got:\n{out}")


def bench_lamina(base: Path, ctx: Path, runs: int) -> list[str]:
    from adapters.storage.busybox import write_busybox_rootfs_tar

    root = base / "lamina"
    tar = base / "busybox.tar"
    with open(tar, "wb") as f:
        write_busybox_rootfs_tar(f)
    lam = [LAMINA, "--root", str(root)]
    sh(*lam, "import", str(tar), "busybox")
    startup = timed(runs, *lam, "version")
    fresh = timed(runs, *lam, "build", "--no-cache", "-t", "bench", str(ctx))
    sh(*lam, "build", "-t", "bench", str(ctx))
    cached = timed(runs * 2, *lam, "build", "-t", "bench", str(ctx), check=all_cached)
    sh(*lam, "save", "busybox", "-o", str(base / "busybox-save.tar"))
    return [row("lamina", "fresh 10-step build (`--no-cache`)", fresh),
            row("lamina", "10-step rebuild, every step CACHED", cached,
                "target <= 0.5 s"),
            row("lamina", "`lamina version` (CLI start-up, for scale)", startup)]


def bench_buildah(base: Path, ctx: Path, runs: int) -> list[str]:
    broot = base / "buildah"
    bah = ["buildah", "--root", str(broot / "root"), "--runroot", str(broot / "run"),
           "--storage-driver", "overlay"]
    bud = [*bah, "bud", "--layers", "--isolation", "chroot", "--network", "host", "-q",
           "-t", "bench"]
    try:
        sh(*bah, "pull", "-q", f"docker-archive:{base / 'busybox-save.tar'}")
        fresh = timed(runs, *bud, "--no-cache", str(ctx))
        sh(*bud, str(ctx))
        cached = timed(runs * 2, *bud, str(ctx))
    finally:
        subprocess.run([*bah, "rmi", "-a", "-f"], capture_output=True)
        _unmount_under(broot)
    version = sh("buildah", "--version").split()[2]
    return [row(f"buildah {version}", "fresh 10-step build (`bud --layers --no-cache`)",
                fresh, "overlay, --isolation chroot"),
            row(f"buildah {version}", "10-step rebuild with its layer cache", cached,
                "overlay, --isolation chroot")]


def _unmount_under(path: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(str(path))]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dir", help="where the temporary roots go (default: /tmp)")
    parser.add_argument("--no-buildah", action="store_true")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/build.py needs root (overlayfs, namespaces, cgroups)")
    base = Path(tempfile.mkdtemp(prefix="lamina-bench-build-", dir=opts.dir))
    load_before = os.getloadavg()
    try:
        ctx = context(base)
        rows = bench_lamina(base, ctx, opts.runs)
        if not opts.no_buildah and shutil.which("buildah"):
            rows += bench_buildah(base, ctx, opts.runs)
    finally:
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
    load_after = os.getloadavg()
    print("| tool | build | n | median | min | p95 | notes |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print("\nThe Dockerfile:\n\n```dockerfile\n" + DOCKERFILE + "```")


if __name__ == "__main__":
    main()
