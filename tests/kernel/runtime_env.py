"""A temporary lamina root with a busybox image, for real-kernel runtime tests.

Teardown removes every container (rm -f) and then checks the host is clean: no mount under
the root, no lamina cgroup of ours, no process of ours.
"""

from __future__ import annotations

import functools
import glob
import io
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LAMINA = str(Path(sys.executable).with_name("lamina"))


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has ended: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def parent_of(pid: int) -> int:
    """Process `pid`'s parent (OSError once it is gone)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def wait_for(what: Callable[[], Any], timeout: float = 10, step: float = 0.02) -> Any:
    """`what()`'s first true value within `timeout`, else its last (false) one: for what a
    process does on its own time (a spare getting ready, a probe, a server's socket)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


class Lamina:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *argv: str, check: bool = False, timeout: float = 60,
                 input: str | None = None) -> subprocess.CompletedProcess:
        out = subprocess.run([LAMINA, "--root", str(self.root), *argv], capture_output=True,
                             text=True, timeout=timeout, input=input,
                             stdin=None if input is not None else subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise AssertionError(f"lamina {' '.join(argv)} exited {out.returncode}: "
                                 f"{out.stderr}")
        return out

    def ok(self, *argv: str, **kw) -> str:
        return self(*argv, check=True, **kw).stdout

    def container_ids(self) -> list[str]:
        import json

        out = self.ok("ps", "-a", "--format", "json")
        return [json.loads(line)["id"] for line in out.splitlines()]

    def remove_all(self) -> list[str]:
        """rm -f of every container, in one command (a command's start is ~0.1 s); the ids
        it removed, for leftovers()."""
        ids = self.container_ids()
        if ids:
            self("rm", "-f", *ids)
        return ids

    def events(self, *filters: str) -> list[dict]:
        import json

        argv = ["events", "--format", "json"]
        for f in filters:
            argv += ["--filter", f]
        return [json.loads(line) for line in self.ok(*argv).splitlines()]


def busybox_tar(directory: Path) -> Path:
    path = directory / "busybox.tar"
    if not path.exists():
        path.write_bytes(_busybox_tar_bytes())
    return path


@functools.cache
def _busybox_tar_bytes() -> bytes:
    """The busybox image's tar, made once a process: making it costs ~0.3 s of CPU (a
    rootfs of 268 symlinks written and read back) and a run makes a root with busybox for
    most of its tests, each tar the same byte for byte (tests/kernel/test_storage_busybox.py
    checks that of write_busybox_rootfs_tar itself)."""
    from adapters.storage.busybox import write_busybox_rootfs_tar

    tar = io.BytesIO()
    write_busybox_rootfs_tar(tar)
    return tar.getvalue()


def busybox_lamina(base: Path) -> Iterator[Lamina]:
    """A root under `base` holding the busybox image; afterwards every container is
    removed and the host checked clean (for a module's `lamina` fixture)."""
    lam = Lamina(base / "root")
    lam.ok("import", str(busybox_tar(base)), "busybox")
    yield lam
    assert leftovers(lam.root, lam.remove_all()) == []


class Served:
    """A root under `base` with the busybox image and a real fork server of its own
    (`python -m adapters.cli.served`, in the foreground): `run` is a command through it
    (its stdout; it must succeed), with the client's umask and extra environment."""

    def __init__(self, base: Path) -> None:
        self.lamina = Lamina(base / "root")
        self.lamina.ok("import", str(busybox_tar(base)), "busybox")
        self.server = subprocess.Popen([sys.executable, "-m", "adapters.cli.served",
                                        "--root", str(self.lamina.root)],
                                       stderr=subprocess.PIPE)

    def run(self, *argv: str, umask: int = -1, **extra: str) -> str:
        import os

        env = {k: v for k, v in os.environ.items() if k != "LAMINA_NO_SERVER"}
        out = subprocess.run([LAMINA, "--root", str(self.lamina.root), *argv],
                             env={**env, **extra}, capture_output=True, text=True,
                             timeout=30, umask=umask)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def stop(self) -> None:
        """SIGTERM; it must end at once and cleanly, leaving nothing of the root's."""
        import signal

        self.server.send_signal(signal.SIGTERM)
        assert self.server.wait(10) == 0
        assert leftovers(self.lamina.root, []) == []


def leftovers(root: Path, ids: list[str]) -> list[str]:
    """Mounts under root, cgroups and monitor processes of these containers still around.
    The root's fork server (a served pass's) is stopped first: it outlives
    commands by design, not the test."""
    from tests.servers import stop_servers_of

    stop_servers_of(str(root))
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if str(root) in line.split()[4]]
    for cid in ids:
        found += glob.glob(f"/sys/fs/cgroup/*/lamina/{cid}")
        found += glob.glob(f"/sys/fs/cgroup/unified/lamina/{cid}")
    return found + _processes_of(root)


def _processes_of(root: Path, grace: float = 5) -> list[str]:
    """Processes naming root on their command line. A container's monitor finishes just
    after its container is removed (it checks the log, then exits): give it `grace` s."""
    import time

    from tests.servers import command_lines

    deadline = time.monotonic() + grace
    while True:
        found = []
        for pid, argv in command_lines():
            cmd = b"\0".join(argv)
            if str(root).encode() in cmd:
                found.append(f"process {pid}: {cmd[:80]!r}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
