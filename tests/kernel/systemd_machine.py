"""Debian's systemd booted as PID 1 of a container, for tests of lamina's systemd units.

Why a container: the machines this project is built on run no systemd as PID 1 (a
firecracker VM), so `systemctl start lamina`, `Restart=` and the start at boot can only run
under a systemd of the test's own. systemd-nspawn boots /lib/systemd/systemd in its own PID,
mount, UTS, IPC, network (loopback only) and cgroup namespaces, on a tree the test makes: the
host's /usr read-only (systemd, Python, busybox) and an /etc of its own, in which only what
the test installs is enabled, never the host's services.

The machine's cgroups sit in one cgroup per hierarchy of the host, made before it boots
(`lamina-machine-<id>`, at each hierarchy's root, outside lamina's own `lamina/`): its
systemd's slices and the cgroups lamina makes inside it land there, and `stop()` removes
the lot. Two of nspawn's guards for containers that are not meant to run containers are
lifted, since lamina's services must, as on a real host: the v1 controllers, which nspawn
mounts read-only, are remounted read-write early in the boot (cgroups-writable.service in
the tree's /etc), and the keyring system calls (a container's start joins a new session
keyring) are let through its seccomp filter. Its other guards stay: nspawn's capability
set (no CAP_SYS_MODULE, CAP_SYS_TIME...), /proc/sys and /sys read-only.

The machine boots in ~1 s and reboots in ~3 s here. Its console (systemd's boot and
shutdown messages) is kept beside the tree, in `<name>.console`, for a failing test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from adapters.kernel.cgroups import Cgroup

NSPAWN = "systemd-nspawn"
MERGED = ("bin", "lib", "lib64", "sbin")  # links into /usr on a merged-/usr Debian
# The remount a real host doesn't need: there the hierarchies are the host's own, writable.
WRITABLE_UNIT = """[Unit]
Description=cgroup v1 hierarchies writable (systemd-nspawn mounts them read-only)
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; done'
"""


class Machine:
    """A systemd container on `tree`; `boot()`, `sh()`, `reboot()`, `stop()`."""

    def __init__(self, tree: Path, binds: list[str], ro_binds: list[str],
                 unified: bool = False) -> None:
        """`unified`: the machine sees cgroup v2 alone at /sys/fs/cgroup, as a host booted
        with systemd.unified_cgroup_hierarchy=1 does (nspawn's
        SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: its own cgroup2 subtree, writable); bpf(2) is
        then let through its seccomp filter too, for lamina's v2 device programs. On this
        hybrid host the v2 tree has no controllers: the v1 ones hold them all."""
        self.tree = tree
        self.unified = unified
        self.name = f"lamina-machine-{uuid.uuid4().hex[:8]}"
        self.binds, self.ro_binds = binds, ro_binds
        self.cgroup: Cgroup | None = None
        self.nspawn: subprocess.Popen | None = None
        self.console = tree.parent / f"{self.name}.console"

    @staticmethod
    def make_tree(tree: Path, unified: bool = False) -> None:
        """An OS tree: /usr is the host's (bound at boot), the rest the test's own."""
        for d in ("usr", "etc/systemd/system/sysinit.target.wants", "var", "tmp", "run",
                  "root", "proc", "sys", "dev", "opt"):
            (tree / d).mkdir(parents=True, exist_ok=True)
        for link in MERGED:
            if os.path.islink(f"/{link}"):
                (tree / link).symlink_to(os.readlink(f"/{link}"))
        etc = tree / "etc"
        shutil.copy("/usr/lib/os-release", etc / "os-release")
        for name in ("ld.so.cache", "ld.so.conf"):  # ctypes finds libseccomp by ldconfig's
            with contextlib.suppress(FileNotFoundError):
                shutil.copy(f"/etc/{name}", etc / name)
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (etc / "group").write_text("root:x:0:\n")  # `make install` adds lamina
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")  # not a first boot
        (etc / "hostname").write_text("lamina-machine\n")
        if unified:  # no v1 hierarchy to make writable
            return
        units = etc / "systemd/system"
        (units / "cgroups-writable.service").write_text(WRITABLE_UNIT)
        (units / "sysinit.target.wants/cgroups-writable.service").symlink_to(
            "../cgroups-writable.service")

    def boot(self, timeout: float = 60) -> None:
        """Start the container and wait until its systemd has finished booting."""
        if self.cgroup is None:
            self.cgroup = Cgroup.create(self.name, parent="")
        cgroup = self.cgroup
        argv = [NSPAWN, "--quiet", "--register=no", "--keep-unit", "--private-network",
                "--console=passive", "--system-call-filter=@keyring" + " bpf" * self.unified,
                f"--machine={self.name}",
                f"--directory={self.tree}", "--bind-ro=/usr",
                *(f"--bind-ro=/{d}" for d in MERGED if not os.path.islink(f"/{d}")
                  and os.path.isdir(f"/{d}")),  # a host whose /usr is not merged
                *(f"--bind={b}" for b in self.binds),
                *(f"--bind-ro={b}" for b in self.ro_binds),
                "--boot", "--", "--unit=multi-user.target"]
        with open(self.console, "ab") as console:
            env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"} if self.unified \
                else None
            self.nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                           stderr=subprocess.STDOUT, env=env,
                                           preexec_fn=lambda: cgroup.add(os.getpid()))
        self.wait_running(timeout)

    def leader(self) -> int:
        """The container's PID 1, as the host numbers it (nspawn's one child)."""
        assert self.nspawn is not None
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        with contextlib.suppress(FileNotFoundError):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
        raise LookupError("the machine has no PID 1")

    def wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.nspawn is not None
            if self.nspawn.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.nspawn.returncode}: "
                                     f"{self.console.read_text()[-2000:]}")
            with contextlib.suppress(LookupError):
                state = self.sh("systemctl", "is-system-running", "--wait", timeout=timeout)
                if state.stdout.strip() in ("running", "degraded"):
                    return
            if time.monotonic() > deadline:
                raise AssertionError("the machine did not boot: "
                                     f"{self.console.read_text()[-2000:]}")
            time.sleep(0.1)

    def sh(self, *argv: str, timeout: float = 60,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the machine (all its namespaces, its root): as a process of the
        machine would, though not one of its services."""
        base = {"PATH": "/opt/lamina/bin:/usr/bin:/usr/sbin:/bin:/sbin"}
        return subprocess.run(["nsenter", f"--target={self.leader()}", "--all", *argv],
                              capture_output=True, text=True, timeout=timeout,
                              env={**base, **(env or {})}, stdin=subprocess.DEVNULL)

    def ok(self, *argv: str, timeout: float = 60) -> str:
        out = self.sh(*argv, timeout=timeout)
        assert out.returncode == 0, f"{' '.join(argv)} exited {out.returncode}: {out.stderr}"
        return out.stdout

    def journal(self, unit: str) -> str:
        with contextlib.suppress(Exception):
            return self.sh("journalctl", "--no-pager", "-n", "60", "-u", unit).stdout
        return "(no journal)"

    def reboot(self, timeout: float = 90) -> None:
        """`systemctl reboot` inside: the machine's systemd shuts everything down, nspawn
        exits 133 (what systemd-nspawn@.service restarts it on), and the tree boots again."""
        assert self.nspawn is not None
        self.sh("systemctl", "reboot")
        code = self.nspawn.wait(timeout)
        assert code == 133, f"systemd-nspawn exited {code}, not 133 (a reboot)"
        self.boot(timeout)

    def stop(self, timeout: float = 60) -> None:
        """Power off (SIGTERM to nspawn: the machine's systemd shuts down), else kill its
        PID 1 (the kernel then kills its every process); then remove its cgroups and the
        directory nspawn keeps for it in /run."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.terminate()
            try:
                self.nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(LookupError, ProcessLookupError):
                    os.kill(self.leader(), signal.SIGKILL)
                self.nspawn.kill()
                self.nspawn.wait(30)
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.remove(timeout=10)
            self.cgroup = None
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)
        for made in ("propagate", "locks", ""):  # nspawn's own, once nobody else's
            with contextlib.suppress(OSError):
                os.rmdir(f"/run/systemd/nspawn/{made}")


def python_binds() -> list[str]:
    """The directories the venv's Python lives in, when outside the host's /usr."""
    base = os.path.realpath(sys.base_prefix)
    return [] if base == "/usr" or base.startswith("/usr/") else [base]
