"""Seccomp filters on the real kernel: docker's default profile denies what docker denies,
with EPERM, for root and for a user after setuid; ordinary work still runs; custom profiles
behave as written; compiled programs are cached and a bad cache entry is never installed.

A filter can't be removed once loaded, so every filter goes on a forked child, never on the
pytest process. Each denial is checked twice: in an unfiltered child the same call (with
arguments chosen to be harmless: absent paths, bad magic numbers, invalid flags, NULL
buffers) fails some other way or succeeds, so the EPERM under the filter is the filter's.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.kernel import libc, seccomp
from core.security import ALL_CAPS, DEFAULT_CAPS
from tests.conftest import require_root

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
ABSENT = b"/nonexistent-lamina-seccomp-probe"
NOBODY = 65534
READ_IMPLIES_EXEC = 0x0400000
CLONE_FS, CLONE_NEWUSER, SIGCHLD = 0x200, 0x10000000, 17
CLONE_NEWNS = 0x20000
AF_ALG, AF_VSOCK = 38, 40

# x86_64 syscall numbers
SYS = {"read": 0, "write": 1, "clone": 56, "mkdir": 83, "personality": 135, "pivot_root": 155,
       "mount": 165, "umount2": 166, "swapon": 167, "reboot": 169, "init_module": 175,
       "quotactl": 179, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
       "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303,
       "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310, "bpf": 321,
       "userfaultfd": 323, "clone3": 435, "socket": 41}

# Calls docker's default profile denies a container with the default capabilities, each with
# arguments that do nothing harmful when no filter stops them. Order matters: the unshare
# probes go last, since without a filter they change the probing child's namespaces.
DENIED: dict[str, tuple[Any, ...]] = {
    "keyctl": ("keyctl", 9999, 0, 0),
    "add_key": ("add_key", b"lamina_no_such_type", b"x", None, 0, -2),
    "request_key": ("request_key", b"lamina_no_such_type", b"x", None, 0),
    "perf_event_open": ("perf_event_open", None, 0, -1, -1, 0),
    "userfaultfd": ("userfaultfd", 0xFFFF),
    "bpf": ("bpf", 9999, None, 0),
    "personality(READ_IMPLIES_EXEC)": ("personality", READ_IMPLIES_EXEC),
    "quotactl": ("quotactl", 0, ABSENT, 0, None),
    "open_by_handle_at": ("open_by_handle_at", -1, None, 0),
    "mount": ("mount", None, ABSENT, None, 0, None),
    "umount2": ("umount2", ABSENT, 0xFFFF),
    "swapon": ("swapon", ABSENT, 0),
    "reboot": ("reboot", 0, 0, 0, None),  # bad magic: EINVAL when not filtered
    "init_module": ("init_module", None, 0, b""),
    "kexec_load": ("kexec_load", 0, 0, None, 0xFFFFFFFF),
    "pivot_root": ("pivot_root", ABSENT, ABSENT),
    "setns": ("setns", -1, 0),
    "clone(CLONE_NEWUSER)": ("clone", CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0),
    "unshare(CLONE_NEWNS)": ("unshare", CLONE_NEWNS),
    "unshare(CLONE_NEWUSER)": ("unshare", CLONE_NEWUSER),
}
CLONE3 = ("clone3", None, 0)  # docker answers ENOSYS, so libcs fall back to clone


def call(name: str, *args: Any) -> int:
    """errno of a raw syscall, 0 when it succeeded."""
    raw = [ctypes.c_char_p(a) if isinstance(a, bytes) else a for a in args]
    ctypes.set_errno(0)
    ret = libc.syscall(SYS[name], *raw)
    if name == "clone" and ret == 0:
        os._exit(0)  # a clone that got through: the copy leaves at once
    if name == "clone" and ret > 0:
        os.waitpid(ret, 0)
    return 0 if ret >= 0 else ctypes.get_errno()


def probe(calls: dict[str, tuple[Any, ...]]) -> dict[str, int]:
    return {label: call(*spec) for label, spec in calls.items()}


def in_child(fn: Callable[[], Any]) -> Any:
    """fn's JSON-able result from a forked child (which never returns into pytest)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        out: dict[str, Any] = {"error": "child died before reporting"}
        try:
            os.close(read_end)
            out = {"result": fn()}
        except BaseException as err:  # noqa: BLE001 - everything must reach the parent
            out = {"error": f"{type(err).__name__}: {err}"}
        finally:
            os.write(write_end, json.dumps(out).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = json.loads(f.read() or b'{"error": "no report"}')
    os.waitpid(pid, 0)
    assert "error" not in data, data["error"]
    return data["result"]


def status() -> dict[str, str]:
    text = Path("/proc/self/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def confine(prog: bytes | None) -> None:
    """What the container's init does last: no_new_privs, then the filter."""
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    if prog is not None:
        seccomp.install(prog)


def become_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "seccomp")


@pytest.fixture
def default_prog(cache: str) -> bytes:
    require_root()
    assert not os.path.exists(ABSENT)
    prog = seccomp.program("default", DEFAULT_CAPS, cache)
    assert prog is not None
    return prog


# --- docker's denials -----------------------------------------------------------------------


def test_the_default_filter_denies_dockers_denials_with_eperm(default_prog: bytes) -> None:
    def run(prog: bytes | None) -> dict[str, Any]:
        confine(prog)
        return {"status": status()["Seccomp"], "calls": probe({"clone3": CLONE3, **DENIED}),
                "alg": socket_errno(AF_ALG) if prog else None,
                "vsock": socket_errno(AF_VSOCK) if prog else None}

    free, confined = in_child(lambda: run(None)), in_child(lambda: run(default_prog))
    assert (free["status"], confined["status"]) == ("0", "2")
    assert confined["calls"].pop("clone3") == errno.ENOSYS
    assert free["calls"].pop("clone3") == errno.EINVAL
    assert confined["calls"] == dict.fromkeys(DENIED, errno.EPERM)
    assert [c for c, e in free["calls"].items() if e == errno.EPERM] == []
    assert (confined["alg"], confined["vsock"]) == (errno.EPERM, errno.EPERM)


def socket_errno(family: int) -> int:
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
    except OSError as err:
        return err.errno or -1
    return 0


def test_ordinary_work_still_runs_under_the_filter(default_prog: bytes, tmp_path: Path) -> None:
    def run() -> dict[str, Any]:
        confine(default_prog)
        return ordinary_work(tmp_path)

    assert in_child(run) == EXPECTED_WORK


EXPECTED_WORK = {"subprocess /bin/true": 0, "fork+exec /bin/true": 0, "personality query": 0,
                 "personality(0)": 0, "socket(AF_INET)": 0, "socket(AF_UNIX)": 0,
                 "pipe": "hello", "mkdir": True, "name_to_handle_at": errno.EFAULT,
                 "process_vm_readv": 5}


def ordinary_work(tmp: Path) -> dict[str, Any]:
    """What any program does, with results comparable across runs."""
    out: dict[str, Any] = {
        "subprocess /bin/true": subprocess.run(["/bin/true"], check=False).returncode}
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["/bin/true"])
        finally:
            os._exit(127)
    out["fork+exec /bin/true"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out["personality query"] = call("personality", 0xFFFFFFFF)
    out["personality(0)"] = call("personality", 0)
    out["socket(AF_INET)"] = socket_errno(socket.AF_INET)
    out["socket(AF_UNIX)"] = socket_errno(socket.AF_UNIX)
    r, w = os.pipe()
    os.write(w, b"hello")
    out["pipe"] = os.read(r, 5).decode()
    target = tmp / f"made-by-{os.getpid()}"
    os.mkdir(target)
    out["mkdir"] = target.is_dir()
    # docker allows both: name_to_handle_at always, process_vm_readv on kernels >= 4.8
    out["name_to_handle_at"] = call("name_to_handle_at", -100, b"/", None, None, 0)
    out["process_vm_readv"] = read_own_memory(b"hello")
    return out


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def read_own_memory(data: bytes) -> int:
    src, dst = ctypes.create_string_buffer(data), ctypes.create_string_buffer(len(data))
    local, remote = _Iovec(ctypes.addressof(dst), len(data)), _Iovec(ctypes.addressof(src),
                                                                     len(data))
    got = libc.syscall(SYS["process_vm_readv"], os.getpid(), ctypes.addressof(local), 1,
                       ctypes.addressof(remote), 1, 0)
    assert dst.raw == data
    return got


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody can write to (pytest's tmp_path sits below a root-only one)."""
    path = Path(tempfile.mkdtemp(prefix="lamina-seccomp-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def test_the_filter_binds_a_user_after_setuid(default_prog: bytes, shared_dir: Path) -> None:
    def run(prog: bytes | None) -> dict[str, Any]:
        become_nobody()
        confine(prog)
        st = status()
        return {"status": st["Seccomp"], "uid": st["Uid"].split()[0],
                "calls": probe({"clone3": CLONE3, **DENIED}),
                "work": ordinary_work(shared_dir) if prog else None}

    free, confined = in_child(lambda: run(None)), in_child(lambda: run(default_prog))
    assert (confined["status"], confined["uid"]) == ("2", str(NOBODY))
    assert confined["calls"].pop("clone3") == errno.ENOSYS
    assert confined["calls"] == dict.fromkeys(DENIED, errno.EPERM)
    # unprivileged, most calls fail anyway; these prove the filter's EPERM is the filter's
    passed_free = {c for c, e in free["calls"].items() if e != errno.EPERM}
    assert {"keyctl", "add_key", "request_key", "personality(READ_IMPLIES_EXEC)",
            "perf_event_open"} <= passed_free
    assert confined["work"] == EXPECTED_WORK


def test_without_no_new_privs_only_cap_sys_admin_may_install(default_prog: bytes) -> None:
    """Why the init installs the filter before dropping capabilities when no_new_privs is off:
    the kernel refuses it otherwise, and install() raises rather than run unfiltered."""
    def as_root() -> list[str]:
        seccomp.install(default_prog)
        return [status()["Seccomp"], status()["NoNewPrivs"]]

    def as_nobody() -> list[Any]:
        become_nobody()
        try:
            seccomp.install(default_prog)
        except OSError as err:
            return [err.errno, status()["Seccomp"]]
        return ["installed"]

    assert in_child(as_root) == ["2", "0"]
    assert in_child(as_nobody) == [errno.EACCES, "0"]


def test_capabilities_open_their_calls(cache: str) -> None:
    require_root()
    prog = seccomp.program("default", ALL_CAPS, cache)
    assert prog is not None

    def run() -> dict[str, int]:
        confine(prog)
        out = {"unshare(CLONE_NEWNS)": call("unshare", CLONE_NEWNS)}
        libc.make_mounts_private()  # mount(2) itself is allowed with CAP_SYS_ADMIN
        out |= {"setns": call("setns", -1, 0), "clone3": call(*CLONE3),
                "keyctl": call("keyctl", 9999, 0, 0)}
        return out

    assert in_child(run) == {"unshare(CLONE_NEWNS)": 0, "setns": errno.EBADF,
                             "clone3": errno.EINVAL, "keyctl": errno.EPERM}


def test_a_custom_docker_profile_behaves_as_written(cache: str, tmp_path: Path) -> None:
    require_root()
    text = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EAFNOSUPPORT,
         "args": [{"index": 0, "value": socket.AF_INET6, "op": "SCMP_CMP_EQ"}]}]})
    prog = seccomp.program(text, DEFAULT_CAPS, cache)
    assert prog is not None

    def run(prog: bytes | None) -> dict[str, Any]:
        confine(prog)
        try:
            os.mkdir(tmp_path / f"d{os.getpid()}")
            made: Any = "made"
        except OSError as err:
            made = err.errno
        return {"mkdir": made, "inet6": socket_errno(socket.AF_INET6),
                "inet": socket_errno(socket.AF_INET), "keyctl": call("keyctl", 9999, 0, 0),
                "status": status()["Seccomp"]}

    assert in_child(lambda: run(None))["mkdir"] == "made"
    assert in_child(lambda: run(prog)) == {
        "mkdir": errno.EACCES, "inet6": errno.EAFNOSUPPORT, "inet": 0,
        "keyctl": errno.EOPNOTSUPP, "status": "2"}


# --- the cache ------------------------------------------------------------------------------


def test_unconfined_has_no_program(cache: str) -> None:
    assert seccomp.program("unconfined", DEFAULT_CAPS, cache) is None
    assert not os.path.exists(cache)


def entries(cache: str) -> list[Path]:
    return sorted(Path(cache).iterdir())


HIT_PROBE = """
import sys
from adapters.kernel import seccomp
from core.security import DEFAULT_CAPS
prog = seccomp.program("default", DEFAULT_CAPS, sys.argv[1])
print(prog.hex(), "pyseccomp" in sys.modules)
"""


def test_the_second_call_is_a_cache_hit(default_prog: bytes, cache: str) -> None:
    [entry] = entries(cache)
    before = entry.stat()
    assert seccomp.program("default", DEFAULT_CAPS, cache) == default_prog
    after = entry.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    out = subprocess.run([sys.executable, "-c", HIT_PROBE, cache], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [default_prog.hex(), "False"]  # no compiling, not even pyseccomp's import
    assert os.stat(cache).st_mode & 0o777 == 0o700
    assert entry.stat().st_mode & 0o777 == 0o600


def test_the_key_covers_capabilities_and_profile(default_prog: bytes, cache: str) -> None:
    admin = seccomp.program("default", DEFAULT_CAPS | {"SYS_ADMIN"}, cache)
    custom = seccomp.program('{"defaultAction": "SCMP_ACT_ALLOW"}', DEFAULT_CAPS, cache)
    assert admin is not None and custom is not None
    assert len({default_prog, admin, custom}) == 3 and len(entries(cache)) == 3
    assert seccomp.instructions(admin) > seccomp.instructions(default_prog)


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[16] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    flip_a_bit,
    lambda p: p.write_bytes(p.read_bytes()[:-9]),
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(b"\x06\x00\x00\x00\x00\x00\xff\x7f" + p.read_bytes()[-32:]),
    lambda p: p.chmod(0o666),
], ids=["flipped bit", "truncated", "empty", "allow-all with the old digest", "writable"])
def test_a_bad_cache_entry_is_recompiled_never_installed(
        default_prog: bytes, cache: str, damage: Callable[[Path], None]) -> None:
    """Recompiling is always safe (a pure function of trusted inputs); refusing would make a
    damaged cache stop every container. The bad bytes are replaced, not returned."""
    [entry] = entries(cache)
    good = entry.read_bytes()
    damage(entry)
    assert seccomp.program("default", DEFAULT_CAPS, cache) == default_prog
    assert entry.read_bytes() == good and entry.stat().st_mode & 0o777 == 0o600


def test_an_existing_cache_dir_is_made_private(tmp_path: Path) -> None:
    require_root()
    cache = tmp_path / "seccomp"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)
    seccomp.program("default", DEFAULT_CAPS, str(cache))
    assert cache.stat().st_mode & 0o777 == 0o700


def test_install_refuses_what_is_not_a_program() -> None:
    with pytest.raises(seccomp.SeccompError, match="not a BPF program"):
        seccomp.install(b"\x00" * 7)
    with pytest.raises(seccomp.SeccompError, match="not a BPF program"):
        seccomp.install(b"")
