"""The isolation probe suite's harness: build the probe (probe.c), an image holding busybox
and the probe, the host fixtures the probes look for, run the probe in a container and parse
its lines.

The host fixtures are what a hostile container would go after: a loop device holding a
marker (the block-device probes must not read it), a "user" key holding the same marker in
host root's user keyring (the keyring probes must not find or read it) and another running
container (whose freezer.state no container may open). Everything is removed afterwards.

Used by tests/kernel/test_probes.py, which compares each line with expected.py, and by
tests/probes/table.py, which prints docs/security.md's table.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.kernel.runtime_env import LAMINA, Lamina

PROBE_SOURCE = Path(__file__).with_name("probe.c")
# The Makefile's flags (make probes), with warnings fatal: the probe must build clean.
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Werror")
IMAGE = "lamina-probes"
PROBE_PATH = "/probe"  # where the probe sits in the image
DEVICE_INSIDE = "/dev/probe-disk"  # where the --device run puts the loop device
# Limits every run is given, so that the probes see the container's own numbers.
LIMITS = ("--pids-limit", "64", "--memory", "64m")
PIDS_LIMIT, MEMORY_LIMIT = 64, 64 << 20
MODES: dict[str, tuple[str, ...]] = {
    "default": (),
    "host": ("--network", "host"),
    "privileged": ("--privileged",),
}
USERS: dict[str, tuple[str, ...]] = {"root": (), "65534": ("-u", "65534")}
OUTCOMES = ("blocked", "allowed", "info", "skipped", "error")
DEVICE_PROBES = ("device_read", "device_write")  # the probes of the --device run


class ProbeError(Exception):
    """The suite could not run: the probe did not build, lamina refused, bad output."""


@dataclass(frozen=True)
class Line:
    """One probe's line: `name<TAB>outcome<TAB>detail`."""

    name: str
    outcome: str
    detail: str

    def __str__(self) -> str:
        return f"{self.outcome} {self.detail}".strip()


def parse(text: str) -> dict[str, Line]:
    """The probe's output by probe name; anything malformed or repeated is an error (the
    format is the suite's contract with the test and the table)."""
    lines: dict[str, Line] = {}
    for raw in text.splitlines():
        fields = raw.split("\t")
        if len(fields) != 3 or fields[1] not in OUTCOMES:
            raise ProbeError(f"malformed probe line: {raw!r}")
        if fields[0] in lines:
            raise ProbeError(f"probe {fields[0]} reported twice")
        lines[fields[0]] = Line(*fields)
    return lines


def compile_probe(dest: Path) -> Path:
    """Build the static probe binary at `dest` (cc, as `make probes`, warnings fatal)."""
    cc = shutil.which("cc")
    if cc is None:
        raise ProbeError("no C compiler (cc): apt-get install gcc libc6-dev")
    out = subprocess.run([cc, *CFLAGS, "-o", str(dest), str(PROBE_SOURCE)],
                         capture_output=True, text=True)
    if out.returncode != 0 or out.stderr.strip():
        raise ProbeError(f"probe.c does not build clean: {out.stderr.strip()}")
    return dest


def image_tar(directory: Path, probe: Path) -> Path:
    """A layer tar holding busybox and the probe at /probe."""
    from adapters.storage.busybox import build_busybox_rootfs
    from adapters.storage.layertar import write_layer_tar

    rootfs = build_busybox_rootfs(str(directory / "rootfs"))
    shutil.copyfile(probe, rootfs + PROBE_PATH)
    os.chmod(rootfs + PROBE_PATH, 0o755)
    path = directory / "probes.tar"
    with open(path, "wb") as f:
        write_layer_tar(rootfs, f)
    shutil.rmtree(rootfs)
    return path


# --- host fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopDevice:
    path: str  # /dev/loopN
    major: int
    minor: int
    backing: Path


@contextlib.contextmanager
def loop_device(directory: Path, marker: str) -> Iterator[LoopDevice]:
    """A loop device over a temp file that starts with `marker`; detached afterwards."""
    backing = directory / "probe-disk.img"
    backing.write_bytes(marker.encode().ljust(64 << 10, b"\0"))
    path = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        rdev = os.stat(path).st_rdev
        yield LoopDevice(path, os.major(rdev), os.minor(rdev), backing)
    finally:
        subprocess.run(["losetup", "--detach", path], check=True)
        backing.unlink()


def loop_attached(backing: Path) -> bool:
    out = subprocess.run(["losetup", "--associated", str(backing)], capture_output=True,
                         text=True)
    return bool(out.stdout.strip())


@dataclass(frozen=True)
class HostKey:
    description: str
    serial: int


def _keyctl(*argv: str) -> str:
    keyctl = shutil.which("keyctl")
    if keyctl is None:
        raise ProbeError("no keyctl: apt-get install keyutils (make deb installs it)")
    return subprocess.run([keyctl, *argv], check=True, capture_output=True,
                          text=True).stdout.strip()


@contextlib.contextmanager
def host_key(marker: str) -> Iterator[HostKey]:
    """A "user" key holding `marker` in host root's user keyring (@u); unlinked after."""
    description = f"{marker}-key"
    serial = int(_keyctl("add", "user", description, marker, "@u"))
    try:
        yield HostKey(description, serial)
    finally:
        _keyctl("unlink", str(serial), "@u")


def key_in_user_keyring(description: str) -> bool:
    with contextlib.suppress(subprocess.CalledProcessError):
        _keyctl("search", "@u", "user", description)
        return True
    return False


def session_keyring() -> int:
    """This process's session keyring's serial (what a container started from here would
    inherit, were it not given its own)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    sys_keyctl, get_keyring_id, session = 250, 0, -3  # x86_64; linux/keyctl.h
    serial = libc.syscall(sys_keyctl, get_keyring_id, session, 0)
    if serial < 0:
        raise ProbeError(f"keyctl(GET_KEYRING_ID, @s): {os.strerror(ctypes.get_errno())}")
    return serial


# --- the suite -------------------------------------------------------------------------------


@dataclass
class Suite:
    """A lamina root holding the probe image, plus the host fixtures; `run` runs the probe
    in one container."""

    lamina: Lamina
    workdir: Path
    marker: str
    loop: LoopDevice
    key: HostKey
    other: str  # the id of another running container

    def probe_args(self, caller_stdout: os.stat_result) -> list[str]:
        return ["--marker", self.marker, "--block", f"{self.loop.major}:{self.loop.minor}",
                "--key", self.key.description, "--key-id", str(self.key.serial),
                "--host-session", str(session_keyring()),
                "--other-cgroup", f"lamina/{self.other}",
                "--caller-stdout", f"{caller_stdout.st_dev}:{caller_stdout.st_ino}"]

    def run(self, mode: str, user: str, flags: Sequence[str] = (),
            names: Sequence[str] = (), probe_args: Sequence[str] = ()) -> dict[str, Line]:
        """Run the probe (all of it, or `names`) with `lamina run --rm` in `mode` as `user`.

        Its stdout is a file of ours and one more descriptor of ours is open: the probe
        must see neither (stdio_reopen, fds_inherited)."""
        argv = [LAMINA, "--root", str(self.lamina.root), "run", "--rm", *LIMITS,
                *MODES[mode], *USERS[user], *flags, IMAGE, PROBE_PATH]
        with tempfile.TemporaryFile(dir=self.workdir) as out, \
                open(self.workdir / "extra-fd", "w") as extra:
            args = self.probe_args(os.fstat(out.fileno())) + list(probe_args) + list(names)
            done = subprocess.run(argv + args, stdout=out, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, pass_fds=(extra.fileno(),),
                                  timeout=120, text=True)
            out.seek(0)
            text = out.read().decode(errors="replace")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ProbeError(f"lamina run ({mode}, {user}) exited {done.returncode}: {last}")
        return parse(text)

    def run_device(self) -> dict[str, Line]:
        """The --device run (default mode, root): the loop device given read-only."""
        return self.run("default", "root", ["--device", f"{self.loop.path}:{DEVICE_INSIDE}:r"],
                        DEVICE_PROBES, ["--device", DEVICE_INSIDE])

    def container_ids(self) -> list[str]:
        """Every container this root ever created (the --rm ones included)."""
        return [e["stream"].removeprefix("container:")
                for e in self.lamina.events("type=ContainerCreated")]


def _start_other(lamina: Lamina) -> str:
    """Another container, running: the one whose freezer.state the probes go after."""
    import json

    lamina.ok("run", "-d", "--name", "probe-other", IMAGE, "sleep", "600")
    for line in lamina.ok("ps", "--format", "json").splitlines():
        doc = json.loads(line)
        if doc["name"] == "probe-other":
            return str(doc["id"])
    raise ProbeError("the other container is not running")


@contextlib.contextmanager
def suite(workdir: Path, root: Path | None = None) -> Iterator[Suite]:
    """Build everything in `workdir` (the lamina root too, at `root` or workdir/root), yield
    the Suite, then remove the containers, the key and the loop device. The caller checks
    for leftovers."""
    probe = compile_probe(workdir / "probe")
    lamina = Lamina(root or workdir / "root")
    lamina.ok("import", str(image_tar(workdir, probe)), IMAGE)
    marker = f"lamina-probe-{secrets.token_hex(8)}"
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(loop_device(workdir, marker))
        key = stack.enter_context(host_key(marker))
        stack.callback(_remove_containers, lamina)
        other = _start_other(lamina)
        yield Suite(lamina, workdir, marker, loop, key, other)


def _remove_containers(lamina: Lamina) -> None:
    for cid in lamina.container_ids():
        lamina("rm", "-f", cid)
