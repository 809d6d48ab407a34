"""Registry benchmark: lamina pull and push beside skopeo and podman, in one run.

    python bench/registry.py [--runs N] [--mb 100] [--layers 5] [--json FILE]

Starts Debian's docker-registry on 127.0.0.1 (tests/registry/registry_env.py), builds a
docker-archive of N MB in 5 layers (incompressible random files, so compression saves
nothing and costs what it costs), then measures wall time, median over runs, of:
- push: `lamina push` of the loaded image; `skopeo copy docker-archive:... docker://...`
  of the same archive (skopeo gzips the layers on the way; lamina sends the layer tars as
  they are, uncompressed, their digest being the diff_id);
- pull, into a fresh root each run: `lamina pull`; `skopeo copy docker://... dir:` (fetch
  and verify only, nothing unpacked) and `skopeo copy docker://... oci:`; `podman pull`
  into a fresh storage root (fetch and unpack into overlay layers, what lamina does). Each
  pulls the lamina-pushed (uncompressed) image and the skopeo-pushed (gzip) image.
A tool that is not installed is reported as such.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
LAMINA = str(Path(sys.executable).with_name("lamina"))

from tests.registry.registry_env import start_registry  # noqa: E402


def sh(*argv: str) -> None:
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}...: {out.stderr.strip()[-500:]}")


def timed(fn: Callable[[Path], object], runs: int, work: Path) -> dict[str, float]:
    """Median and min in ms; each run gets a fresh directory (made before the clock)."""
    samples = []
    for i in range(runs):
        d = work / f"run-{time.monotonic_ns()}-{i}"
        d.mkdir()
        t0 = time.perf_counter()
        fn(d)
        samples.append((time.perf_counter() - t0) * 1000)
        shutil.rmtree(d, ignore_errors=True)
    return {"median": statistics.median(samples), "min": min(samples)}


def build_archive(path: Path, mb: int, layers: int) -> None:
    """A docker-archive: `layers` layers of random files, `mb` MB in all."""
    import hashlib

    per = mb * (1 << 20) // layers
    blobs = []
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for j in range(8):
                data = os.urandom(per // 8)
                info = tarfile.TarInfo(f"layer{i}/file{j}")
                info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
                tf.addfile(info, io.BytesIO(data))
        blobs.append(buf.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"layer {i}"} for i in range(layers)]
                         }).encode()
    cfg = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": cfg, "RepoTags": ["bench:latest"],
                            "Layers": names}]).encode()
    with tarfile.open(path, "w") as tf:
        for name, data in [(cfg, config), *zip(names, blobs, strict=True),
                           ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-registry-"))
    results: dict[str, dict[str, float] | str] = {}
    try:
        with start_registry(work / "registry") as reg:
            results = run(reg.host, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k in results)
    for name, r in results.items():
        if isinstance(r, str):
            print(f"{name:<{width}}  {r}")
        else:
            print(f"{name:<{width}}  median {r['median']:8.0f} ms   min {r['min']:8.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def run(host: str, work: Path, args: argparse.Namespace) -> dict[str, dict[str, float] | str]:
    archive = work / "bench.tar"
    build_archive(archive, args.mb, args.layers)
    results: dict[str, dict[str, float] | str] = {}
    skopeo, podman = shutil.which("skopeo"), shutil.which("podman")
    src_root = work / "src-root"
    sh(LAMINA, "--root", str(src_root), "load", "-i", str(archive))

    def push_runs(push: Callable[[str], None]) -> dict[str, float]:
        """Each run pushes to a registry of its own, started before the clock: no blob is
        there yet and none can be mounted from an earlier run."""
        samples = []
        for i in range(args.runs):
            with start_registry(work / f"push-registry-{i}") as fresh:
                t0 = time.perf_counter()
                push(fresh.host)
                samples.append((time.perf_counter() - t0) * 1000)
        return {"median": statistics.median(samples), "min": min(samples)}

    def lamina_push(to: str) -> None:
        sh(LAMINA, "--root", str(src_root), "tag", "bench", f"{to}/bench/lamina:latest")
        sh(LAMINA, "--root", str(src_root), "push", "-q", f"{to}/bench/lamina:latest")

    def skopeo_push(to: str) -> None:
        assert skopeo
        sh(skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
           f"docker-archive:{archive}", f"docker://{to}/bench/skopeo:latest")

    results["push: lamina push"] = push_runs(lamina_push)
    lamina_push(host)
    if skopeo:
        results["push: skopeo copy docker-archive: docker://"] = push_runs(skopeo_push)
        skopeo_push(host)
    else:
        results["push: skopeo"] = "not installed"
    images = {"uncompressed (pushed by lamina)": f"{host}/bench/lamina:latest"}
    if skopeo:
        images["gzip (pushed by skopeo)"] = f"{host}/bench/skopeo:latest"
    for label, ref in images.items():
        results[f"pull {label}: lamina pull"] = timed(
            lambda d, ref=ref: sh(LAMINA, "--root", str(d / "root"), "pull", "-q", ref),
            args.runs, work)
        if skopeo:
            for dest in ("dir", "oci"):
                results[f"pull {label}: skopeo copy to {dest}:"] = timed(
                    lambda d, ref=ref, dest=dest: sh(
                        skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                        f"docker://{ref}", f"{dest}:{d / 'out'}"), args.runs, work)
        if podman:
            results[f"pull {label}: podman pull"] = timed(
                lambda d, ref=ref: podman_pull(podman, d, ref), args.runs, work)
        else:
            results[f"pull {label}: podman pull"] = "not installed"
    return results


def podman_pull(podman: str, d: Path, ref: str) -> None:
    runroot = tempfile.mkdtemp(dir="/run", prefix="lbr-")  # podman wants it short
    base = [podman, "--root", str(d / "storage"), "--runroot", runroot,
            "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]
    try:
        sh(*base, "pull", "-q", "--tls-verify=false", ref)
    finally:  # podman's overlay storage may keep a mount; its own reset removes it all
        subprocess.run([*base, "system", "reset", "-f"], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)


if __name__ == "__main__":
    main()
