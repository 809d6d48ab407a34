"""A container's init as the native program (adapters/runtime/init.c) and as init.py: the
same container each way, and the same codes and words for each way it can fail to start.
Real containers, through the lamina CLI (busybox, --network none)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.remap_env import configure, host_state, subid_prefix
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers

# through fork servers, the users' default path (spare monitors included): each start
# then costs tens of ms instead of an interpreter's start-up
pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("served_environment")]

# What a container is, as its own process sees it: user, directory, environment, stdio,
# capabilities, seccomp, signals, limits, names, every mount with its flags, /dev's nodes,
# the bound files, its processes.
PROBE = ("id; pwd; echo $HOME; env | sort; ls -l /proc/self/fd; "
         "grep -E '^(Cap|NoNewPrivs|Seccomp|SigIgn|SigBlk)' /proc/self/status; ulimit -a; "
         "hostname; cut -d' ' -f4- /proc/self/mountinfo; "
         "find /dev | sort | xargs stat -c '%n %a %u %g %F %t:%T %N'; "
         "cat /etc/hosts /etc/hostname; ps -o pid,comm; touch /probe && echo written")

# (run's options, the command); the exit code of each, native and Python alike (1: the
# probe's last write refused, on a read-only root or to nobody)
_CASES = [
    ((), ("sh", "-c", PROBE)),
    (("--read-only", "--ipc", "host"), ("sh", "-c", PROBE)),
    (("--privileged", "--uts", "host", "--ipc", "none"), ("sh", "-c", PROBE)),
    (("-t", "--device", "/dev/null:/dev/extra/null:r", "--shm-size", "1m"),
     ("sh", "-c", PROBE)),
    (("-u", "nobody", "-w", "/made/for/it", "--cap-drop", "ALL", "--security-opt",
      "no-new-privileges", "--ulimit", "nofile=100:200", "--hostname", "named"),
     ("sh", "-c", PROBE)),
    (("-u", "1234:5678", "--group-add", "4321", "-e", "A=b c", "--pid", "host"),
     ("sh", "-c", 'id; echo "$A"; ulimit -n')),
    (("-u", "nosuchuser"), ("true",)),
    (("-u", "0:nosuchgroup"), ("true",)),
    (("-w", "/etc/passwd"), ("true",)),
    ((), ("nosuch",)),
    (("-e", "PATH=/nowhere:/etc"), ("passwd",)),
    (("--pid", "host"), ("sh", "-c", "kill -TERM $$")),  # not PID 1, which ignores it
]
_CODES = [0, 1, 0, 0, 1, 0, 127, 127, 127, 127, 126, 143]

# -v/--mount/--tmpfs: binds of a directory and of a file, read-only, a tmpfs with options,
# a volume, a volume's subpath (a detached tree), a target below a file (refused)
MOUNTS = ("cut -d' ' -f4- /proc/self/mountinfo; ls -la /data /mnt/f /t /ro /vol /sub; "
          "cat /mnt/f; touch /ro/x || echo refused")
_MOUNT_CASES = [
    (("-v", "{src}:/data", "-v", "{src}/f:/mnt/f", "--tmpfs", "/t:size=1m,mode=700", "-v",
      "{src}:/ro:ro", "-v", "vol1:/vol", "--mount",
      "type=volume,source=vol2,target=/sub,volume-subpath=inner"), ("sh", "-c", MOUNTS)),
    (("-v", "{src}/f:/etc/passwd/below"), ("true",)),
]

_IDS = re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b")
_PIPES = re.compile(r"pipe:\[\d+\]")
_TIMES = re.compile(r"\w{3} +\d+ \d\d:\d\d")
_PIDS = re.compile(r"^ +\d+ ", re.M)
_PTYS = re.compile(r"/dev/pts/\d+|\b88:[0-9a-f]+\b")  # the host's pty (major 136) of -t


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    base = tmp_path_factory.mktemp("nativeinit")
    lam = Lamina(base / "root")
    lam.ok("import", str(busybox_tar(base)), "busybox")
    (base / "src").mkdir()
    (base / "src" / "f").write_text("a bound file\n")
    lam.ok("volume", "create", "vol2")
    lam.ok("run", "--rm", "--network", "none", "-v", "vol2:/v", "busybox", "mkdir", "/v/inner")
    yield lam
    ids = lam.remove_all()
    assert leftovers(lam.root, ids) == []


def _started(lamina: Lamina, options: tuple[str, ...], argv: tuple[str, ...]
             ) -> tuple[int, str, str]:
    """One container's whole run, its ids, pipe numbers, times, the host's pids (with
    --pid host) and pty written out of what it said."""
    out = lamina("run", "--rm", "--network", "none", *options, "busybox", *argv)
    return (out.returncode, *(_PTYS.sub("PTY", _PIDS.sub(" PID ", _TIMES.sub("TIME", _PIPES.sub(
        "pipe", _IDS.sub("ID", text))))) for text in (out.stdout, out.stderr)))


def test_the_native_init_and_pythons_agree(lamina: Lamina,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same container (its process, its mounts and their flags, its /dev, its files)
    and the same codes and words for every failure, with lamina-join as init or with
    init.py (LAMINA_JOINER=python)."""
    native = [_started(lamina, *case) for case in _CASES]
    monkeypatch.setenv("LAMINA_JOINER", "python")
    python = [_started(lamina, *case) for case in _CASES]
    for case, a, b in zip(_CASES, native, python, strict=True):
        assert a == b, case
    assert [code for code, _, _ in native] == _CODES, native
    default, readonly = native[0][1], native[1][1]
    assert "written" in default and "written" not in readonly
    assert "\n/dev/extra/null 666 0 0 character special file 1:3 " in native[3][1]
    assert "unable to find user nosuchuser" in native[6][2]


@pytest.mark.parametrize("init", ["native", "python"])
def test_a_start_runs_the_init_it_is_given(lamina: Lamina, init: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Built by `make`, the monitor starts lamina-join as init (posix_spawn of its sealed
    copy, as /proc/self/fd/N, named lamina-init), which execs the container's command;
    LAMINA_JOINER=python forks init.py instead. Seen in the execs of a start without a
    server, traced."""
    strace = shutil.which("strace")
    assert strace, "strace is needed (make deb installs it)"
    if init == "python":
        monkeypatch.setenv("LAMINA_JOINER", "python")
    monkeypatch.setenv("LAMINA_NO_SERVER", "1")
    trace = tmp_path / "trace"
    subprocess.run([strace, "-f", "-qq", "-e", "trace=execve", "-o", str(trace), LAMINA,
                    "--root", str(lamina.root), "run", "--rm", "--network", "none", "busybox",
                    "true"], check=True, capture_output=True, timeout=60)
    execs = trace.read_text()
    native = re.search(r'execve\("/proc/self/fd/\d+", \["lamina-init"\]', execs)
    assert bool(native) == (init == "native"), execs
    assert re.search(r'execve\("/bin/true", \["true"\]', execs), execs


def test_both_inits_mount_the_same(lamina: Lamina, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's -v/--mount/--tmpfs, each kind of source, mounted alike by both inits
    (every mount with its flags), and a target neither may make refused alike."""
    src = str(lamina.root.parent / "src")
    cases = [(tuple(o.format(src=src) for o in opts), argv) for opts, argv in _MOUNT_CASES]
    native = [_started(lamina, *case) for case in cases]
    monkeypatch.setenv("LAMINA_JOINER", "python")
    python = [_started(lamina, *case) for case in cases]
    assert native == python
    (code, out, _), (refused, _, err) = native
    assert code == 0 and refused == 127, native
    assert " /ro ro," in out and "refused" in out and "a bound file" in out
    assert " /t rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=1024k,mode=700" in out
    assert "vol2/_data/inner /sub rw," in out
    assert "Not a directory" in err


@pytest.fixture(scope="module")
def remapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    """A --userns-remap root (remap_env: its ids in a prefix of the test's own)."""
    require_root()
    accounts = host_state()
    base = tmp_path_factory.mktemp("nativeremap")
    lam = Lamina(base / "root")
    configure(lam, subid_prefix(base / "prefix"))
    lam.ok("import", str(busybox_tar(base)), "busybox")
    (base / "src").mkdir()
    yield lam
    ids = lam.remove_all()
    assert leftovers(lam.root, ids) == []
    assert host_state() == accounts


def test_both_inits_agree_on_a_remapped_root(remapped: Lamina,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A remapped root's init is cloned into its user namespace and works from the view:
    the same container each way (the nodes bound from the host's, the files and mounts
    attached from detached trees) and the same failures."""
    src = str(remapped.root.parent / "src")
    cases = [((), ("sh", "-c", PROBE)),
             (("-v", f"{src}:/data", "--tmpfs", "/t", "-u", "nobody", "--ipc", "host"),
              ("sh", "-c", "id; cut -d' ' -f4- /proc/self/mountinfo; ls -la /data /t")),
             (("-u", "nosuchuser"), ("true",)), (("-u", "70000"), ("true",))]
    native = [_started(remapped, *case) for case in cases]
    monkeypatch.setenv("LAMINA_JOINER", "python")
    python = [_started(remapped, *case) for case in cases]
    assert native == python
    assert [code for code, _, _ in native] == [0, 0, 127, 127], native
    assert "/null /dev/null rw,relatime - devtmpfs" in native[0][1]  # the host's node, bound
    assert "outside the container's id map" in native[3][2]
