"""Seccomp filters: compile a resolved profile with libseccomp once, cache it, install it.

Why a cache: compiling docker's profile means importing pyseccomp (its find_library runs
ldconfig, ~30 ms) and ~380 libseccomp rule insertions, on every `run` and `exec`. The
program only depends on the profile's text, the capabilities, the host's arch and kernel
version and libseccomp's version, so the bytes are kept under a key hashing all of them and a
hit costs one small file read. Each cache file carries a digest of its key and program; an
entry that doesn't verify (torn, corrupted, from another key, writable by others) is never
installed: it is recompiled and replaced, which is always safe because compiling is a pure
function of trusted inputs.

Why install() takes raw bytes and talks to libc only: it runs in the container's init child
right before exec, where nothing should be loaded or allocated that the filter might then
refuse, and where pyseccomp's import cost would be paid on every start.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
from typing import TYPE_CHECKING, Any

from adapters.kernel import libc
from core.errors import BadInput, LaminaError
from core.security import SECCOMP_DEFAULT, SECCOMP_UNCONFINED, default_profile_text

if TYPE_CHECKING:
    from core import seccomp as profiles

FORMAT = "lamina-seccomp-1"  # bump when the cache layout or the way rules are compiled changes
LIBSECCOMP = "libseccomp.so.2"
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
BPF_MAXINSNS = 4096
INSN_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
DIGEST_SIZE = 32
NR_SCMP_ERROR = -1  # libseccomp's answer for a syscall name it doesn't know

_OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
              "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


class SeccompError(LaminaError):
    """libseccomp is missing or the kernel refused the filter."""


# --- the program ------------------------------------------------------------------------


def program(seccomp: str, caps: frozenset[str], cache_dir: str) -> bytes | None:
    """The classic-BPF program (sock_filter array) for a container, None when unconfined.

    `seccomp` is "default", "unconfined" or a docker JSON profile's text; `caps` the
    container's final capability set. Compiled on a cache miss only (see the module doc)."""
    if seccomp == SECCOMP_UNCONFINED:
        return None
    text = default_profile_text() if seccomp == SECCOMP_DEFAULT else seccomp
    uname = os.uname()
    key = cache_key(text, caps, uname.machine, uname.release, libseccomp_version())
    path = os.path.join(cache_dir, f"{key}.bpf")
    prog = _cached(path, key)
    if prog is None:
        from core import seccomp as profiles  # ~15 ms of imports: on a miss only

        kernel = profiles.kernel_version(uname.release)
        prog = compile_filter(profiles.filter_for(text, caps, uname.machine, kernel))
        _store(cache_dir, path, key, prog)
    return prog


def cache_key(text: str, caps: frozenset[str], machine: str, release: str,
              version: str) -> str:
    """sha256 of everything the compiled program depends on (the whole kernel release, of
    which minKernel rules read major.minor)."""
    parts = (FORMAT, text, ",".join(sorted(caps)), machine, release, version)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_version: str | None = None


def libseccomp_version() -> str:
    """The loaded libseccomp's version, from the library itself (dlopen by soname: no
    ldconfig, well under a millisecond), so an upgrade invalidates the cache."""
    global _version
    if _version is None:
        try:
            lib = ctypes.CDLL(LIBSECCOMP)
        except OSError as err:
            raise SeccompError(f"seccomp: cannot load {LIBSECCOMP}: {err}") from None
        lib.seccomp_version.restype = ctypes.POINTER(_Version)
        v = lib.seccomp_version().contents
        _version = f"{v.major}.{v.minor}.{v.micro}"
    return _version


def instructions(prog: bytes) -> int:
    """How many BPF instructions a program has."""
    return len(prog) // INSN_SIZE


# --- the cache ----------------------------------------------------------------------------


def _digest(key: str, prog: bytes) -> bytes:
    return hashlib.sha256(key.encode() + b"\0" + prog).digest()


def _cached(path: str, key: str) -> bytes | None:
    """The cached program if the entry verifies, else None (absent or not to be trusted)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        data = os.read(fd, BPF_MAXINSNS * INSN_SIZE + DIGEST_SIZE + 1)
    finally:
        os.close(fd)
    prog, digest = data[:-DIGEST_SIZE], data[-DIGEST_SIZE:]
    if not _valid_length(len(prog)) or digest != _digest(key, prog):
        return None
    return prog


def _store(cache_dir: str, path: str, key: str, prog: bytes) -> None:
    """Write atomically: a reader sees the old entry, no entry, or the whole new one."""
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    os.chmod(cache_dir, 0o700)
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "wb") as f:
            f.write(prog + _digest(key, prog))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- compiling (cache misses only) -----------------------------------------------------------


def compile_filter(plan: profiles.Filter) -> bytes:
    """libseccomp's program for a resolved profile, as runc builds it: the default action,
    the extra arches, binary-tree dispatch for long rule lists, one rule per Rule; names
    libseccomp doesn't know are skipped, as docker does."""
    import pyseccomp as sc  # ~30 ms (ldconfig): paid on a cache miss only

    filt = sc.SyscallFilter(_action(sc, plan.default))
    for arch in plan.arches:
        _add_arch(sc, filt, arch)
    if len(plan.rules) > 32:
        filt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    for rule in plan.rules:
        _add_rule(sc, filt, rule)
    return _export(filt)


def _action(sc: Any, action: profiles.Action) -> int:
    kind = action.kind
    if kind == "SCMP_ACT_ERRNO":
        return int(sc.ERRNO(action.errno))
    if kind == "SCMP_ACT_TRACE":
        return int(sc.TRACE(action.errno))
    return {"SCMP_ACT_KILL": sc.KILL_THREAD, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP,
            "SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_LOG": sc.LOG}[kind]


def _add_arch(sc: Any, filt: Any, arch: str) -> None:
    token = getattr(sc.Arch, arch.removeprefix("SCMP_ARCH_"), None)
    try:
        if token is None:
            raise OSError(22, "unknown to pyseccomp")
        filt.add_arch(token)
    except OSError as err:
        if err.errno != 17:  # EEXIST: the native arch, always present
            raise BadInput(f"seccomp: libseccomp can't add architecture {arch}: "
                           f"{err.strerror}") from None


def _add_rule(sc: Any, filt: Any, rule: profiles.Rule) -> None:
    number = sc.resolve_syscall(sc.Arch.NATIVE, rule.name)
    if number == NR_SCMP_ERROR:
        return
    args = [sc.Arg(c.index, _OPERATORS[c.op], c.value, c.value_two) for c in rule.conditions]
    try:
        filt.add_rule(_action(sc, rule.action), number, *args)
    except OSError as err:
        raise BadInput(f"seccomp profile: libseccomp refused the rule for {rule.name}: "
                       f"{err.strerror}") from None


def _export(filt: Any) -> bytes:
    fd = os.memfd_create("lamina-seccomp", os.MFD_CLOEXEC)
    with open(fd, "rb") as f:
        filt.export_bpf(f)
        f.seek(0)
        prog = f.read()
    if not _valid_length(len(prog)):
        raise SeccompError(f"seccomp: libseccomp produced a {len(prog)}-byte program")
    return prog


def _valid_length(size: int) -> bool:
    return size % INSN_SIZE == 0 and 0 < size // INSN_SIZE <= BPF_MAXINSNS


# --- installing -----------------------------------------------------------------------------


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(prog: bytes) -> None:
    """Load a compiled filter on the calling thread, irreversibly, for it and what it execs.

    The kernel takes it from a thread with no_new_privs set or holding CAP_SYS_ADMIN; else
    EACCES, raised, never ignored. Single-threaded callers only (no TSYNC): the container's
    init and exec children are fresh forks."""
    if not _valid_length(len(prog)):
        raise SeccompError(f"seccomp: not a BPF program ({len(prog)} bytes)")
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // INSN_SIZE, ctypes.addressof(buf))
    try:
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    except OSError as err:
        raise OSError(err.errno, f"installing the seccomp filter: {err.strerror}") from None
