"""Device nodes and the devices cgroup: the side effects of core/devices.py.

- `nodes_for`/`resolve`/`host_nodes` read the host's nodes (lstat, as docker) in the
  runtime, before anything is forked, so the nodes made and the rules applied agree.
- `make_nodes` mknods them into the container's fresh /dev tmpfs, walking each path with
  directory fds and O_NOFOLLOW so that no symlink can send a node outside it.
- `apply_v1` writes a v1 devices cgroup (deny all, then the allow-list) and reads it back.
- `program_v2`/`attach_v2` hand-assemble and attach the cgroup v2 equivalent, a
  BPF_PROG_TYPE_CGROUP_DEVICE program (cgroup v2 has no devices files), as runc does.
Both are applied to a fresh cgroup, before any process joins it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from adapters.kernel import libc
from adapters.kernel.syscalls import LINUX, Syscalls
from core.devices import (
    Node,
    Policy,
    Rule,
    container_nodes,
    effective,
    inside_parts,
    policy_of_list,
    render,
)
from core.errors import LaminaError
from core.security import Device, Security


class DeviceError(LaminaError):
    """A device can't be added, made or enforced; the message names it."""

    exit_code = 125  # docker run's code when the daemon refuses the container


# --- host nodes ------------------------------------------------------------------------------

# What docker leaves out of a privileged container's /dev (containerd's HostDevices): these
# directories are mounts or runtime state; console is bound from the pty and ptmx is the
# container's own devpts' (runc skips /dev/ptmx).
HOST_SKIP_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
HOST_SKIP_NODES = frozenset({"console"})
HOST_SKIP_TOP = frozenset({"ptmx"})


def _node_at(path: str, inside: str, access: str = "rwm") -> Node | None:
    """The char/block node at path (not following a final symlink), else None."""
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return Node(inside, "c" if stat.S_ISCHR(st.st_mode) else "b",
                    os.major(st.st_rdev), os.minor(st.st_rdev),
                    stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, access)
    return None


def _gather_error(host: str, reason: str) -> DeviceError:
    return DeviceError(f"error gathering device information while adding custom device "
                       f'"{host}": {reason}')


def resolve(device: Device) -> list[Node]:
    """`--device`'s host path as nodes inside: the node itself (a symlink is followed, as
    docker does), or every node below a directory (symlinks inside it are not)."""
    host = os.path.realpath(device.host) if os.path.islink(device.host) else device.host
    try:
        node = _node_at(host, device.inside, device.access)
    except OSError as err:
        raise _gather_error(device.host, os.strerror(err.errno or errno.EIO).lower()) from None
    if node is not None:
        return [node]
    nodes: list[Node] = []
    if os.path.isdir(host):
        for path in _walk(host, skip=frozenset()):
            with contextlib.suppress(FileNotFoundError):
                found = _node_at(path, device.inside + path[len(host):], device.access)
                if found is not None:
                    nodes.append(found)
    if not nodes:
        raise _gather_error(device.host, "not a device node")
    return nodes


def _walk(top: str, skip: frozenset[str]) -> Iterator[str]:
    """Every non-directory path below top, sorted, not entering symlinked or skipped dirs."""
    for entry in sorted(os.scandir(top), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in skip:
                yield from _walk(entry.path, skip)
        else:
            yield entry.path


def host_nodes(dev: str = "/dev") -> list[Node]:
    """`--privileged`'s nodes: every char/block node under the host's /dev, as docker."""
    nodes = []
    for path in _walk(dev, HOST_SKIP_DIRS):
        name = os.path.basename(path)
        if name in HOST_SKIP_NODES or (name in HOST_SKIP_TOP and os.path.dirname(path) == dev):
            continue
        with contextlib.suppress(FileNotFoundError):  # a node may vanish as we walk
            node = _node_at(path, "/dev" + path[len(dev):])
            if node is not None:
                nodes.append(node)
    return nodes


def nodes_for(security: Security) -> list[Node]:
    """Every node the container's /dev gets: the defaults, the host's when privileged
    (docker then ignores --device's access: rwm), then each --device."""
    extra: list[Node] = list(host_nodes()) if security.privileged else []
    for device in security.devices:
        if security.privileged:
            device = Device(device.host, device.inside, "rwm")
        extra.extend(resolve(device))
    try:
        return container_nodes(extra)
    except LaminaError as err:
        raise DeviceError(str(err)) from None


# --- making nodes ----------------------------------------------------------------------------


@contextlib.contextmanager
def _umask(syscall: Syscalls, mask: int) -> Iterator[None]:
    old = syscall.umask(mask)
    try:
        yield
    finally:
        syscall.umask(old)


def _open_dir(syscall: Syscalls, name: str, dir_fd: int, create: bool) -> int:
    """Open (making it first if asked) the directory `name` in dir_fd, never via a symlink."""
    if create:
        with contextlib.suppress(FileExistsError):
            syscall.mkdir(name, 0o755, dir_fd=dir_fd)
    return syscall.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=dir_fd)


def _make_one(syscall: Syscalls, dev_fd: int, node: Node) -> None:
    parts = inside_parts(node.path)
    fd = syscall.dup(dev_fd)
    try:
        for part in parts[:-1]:
            parent, fd = fd, _open_dir(syscall, part, fd, create=True)
            syscall.close(parent)
        kind = stat.S_IFCHR if node.type == "c" else stat.S_IFBLK
        syscall.mknod(parts[-1], kind | node.mode, os.makedev(node.major, node.minor),
                      dir_fd=fd)
        syscall.chown(parts[-1], node.uid, node.gid, dir_fd=fd, follow_symlinks=False)
        st = syscall.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if stat.S_IMODE(st.st_mode) != node.mode:  # chown may drop set-id bits
            syscall.chmod(parts[-1], node.mode, dir_fd=fd)
    finally:
        syscall.close(fd)


def make_nodes(dev_dir: str, nodes: Sequence[Node], *, syscall: Syscalls = LINUX) -> None:
    """mknod each node (its path is inside the container, under /dev) below dev_dir, the
    container's fresh /dev, with its mode, uid and gid; parent directories are made 0755.

    Every component is opened relative to its parent's fd with O_NOFOLLOW, so a symlink
    (which only a bug could have put there) fails the call instead of being followed."""
    try:
        dev_fd = syscall.open(dev_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                              | os.O_CLOEXEC)
    except OSError as err:
        raise DeviceError(f"cannot open {dev_dir} to make device nodes: {err.strerror}") from None
    try:
        with _umask(syscall, 0):
            for node in nodes:
                try:
                    _make_one(syscall, dev_fd, node)
                except (OSError, LaminaError) as err:
                    reason = err.strerror if isinstance(err, OSError) else str(err)
                    raise DeviceError(f"cannot make device node {node.path}: {reason}") from None
    finally:
        syscall.close(dev_fd)


# --- cgroup v1 -------------------------------------------------------------------------------


@contextlib.contextmanager
def _knobs(d: Path) -> Iterator[Callable[[bool, str], None]]:
    """A writer of rules to `d`'s devices.allow (True) or devices.deny (False), each file
    opened once: the kernel takes one rule per write(), and a start writes ~15 of them
    (an open and a close each were half their cost)."""
    fds: dict[bool, int] = {}

    def write(allow: bool, rule: str) -> None:
        path = d / ("devices.allow" if allow else "devices.deny")
        try:
            if allow not in fds:
                fds[allow] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fds[allow], rule.encode())
        except OSError as e:
            raise DeviceError(f"write {rule!r} to {path}: {e.strerror}") from None

    try:
        yield write
    finally:
        for fd in fds.values():
            os.close(fd)


def _same(want: Policy, got: Policy) -> bool:
    """A v1 list can only show an allow-all cgroup's mode, so that is all compared there."""
    if want.default_allow or got.default_allow:
        return want.default_allow == got.default_allow
    return set(want.exceptions) == set(got.exceptions)


def apply_v1(cgroup_dir: str | Path, rules: Sequence[Rule]) -> None:
    """Deny everything, then write each rule (allow or deny) in order, then check that the
    kernel's devices.list is exactly what the rules mean. The cgroup must be empty."""
    d = Path(cgroup_dir)
    if (d / "cgroup.procs").read_text().strip():
        raise DeviceError(f"devices cgroup {d} already has processes")
    with _knobs(d) as write:
        write(False, "a")
        for rule in rules:
            write(rule.allow, render(rule))
    got = policy_of_list((d / "devices.list").read_text())
    if not _same(effective(rules), got):
        raise DeviceError(f"{d}/devices.list does not match the rules written: "
                          f"{', '.join(map(render, got.exceptions)) or 'nothing allowed'}")


# --- cgroup v2: the BPF program --------------------------------------------------------------

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_QUERY = 5, 8, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI = 2
BPF_DEVCG_DEV = {"b": 1, "c": 2}  # include/uapi/linux/bpf.h
BPF_DEVCG_ACC = {"m": 1, "r": 2, "w": 4}
LICENSE = b"GPL"
PROG_NAME = b"lamina_devices"

# Opcodes (class | op | source) of the few instructions the program uses.
LDX_W = 0x61     # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
AND32_K = 0x54   # BPF_ALU | BPF_AND | BPF_K
RSH32_K = 0x74   # BPF_ALU | BPF_RSH | BPF_K
MOV32_K = 0xB4   # BPF_ALU | BPF_MOV | BPF_K
MOV32_X = 0xBC   # BPF_ALU | BPF_MOV | BPF_X
JEQ_K = 0x15     # BPF_JMP | BPF_JEQ | BPF_K
JNE_K = 0x55     # BPF_JMP | BPF_JNE | BPF_K
JNE_X = 0x5D     # BPF_JMP | BPF_JNE | BPF_X
EXIT = 0x95      # BPF_JMP | BPF_EXIT
NEXT = None  # a jump to the next rule's block, resolved when the block is complete

Insn = tuple[int, int, int, int | None, int]  # code, dst, src, off (or NEXT), imm


def _encode(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    """struct bpf_insn: u8 code, u8 dst:4 src:4 (dst in the low nibble), s16 off, s32 imm."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _mask(access: str) -> int:
    return sum(BPF_DEVCG_ACC[c] for c in access)


def _prologue() -> list[Insn]:
    """r1 is struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor}, with
    access_type = access << 16 | type: r2 = type, r3 = access, r4 = major, r5 = minor."""
    return [(LDX_W, 2, 1, 0, 0), (AND32_K, 2, 0, 0, 0xFFFF),
            (LDX_W, 3, 1, 0, 0), (RSH32_K, 3, 0, 0, 16),
            (LDX_W, 4, 1, 4, 0), (LDX_W, 5, 1, 8, 0)]


def _block(ex: Rule, verdict: int) -> list[Insn]:
    """Return `verdict` when the request matches the exception, else fall to the next block.
    An allow exception must hold every requested access (r3 & mask == r3); a deny exception
    matches any overlap (r3 & mask != 0), as v1's match_exception(_partial)."""
    out: list[Insn] = [(JNE_K, 2, 0, NEXT, BPF_DEVCG_DEV[ex.type])]
    mask = _mask(ex.access)
    if mask != _mask("rwm"):
        test = (JNE_X, 1, 3, NEXT, 0) if verdict else (JEQ_K, 1, 0, NEXT, 0)
        out += [(MOV32_X, 1, 3, 0, 0), (AND32_K, 1, 0, 0, mask), test]
    if ex.major is not None:
        out.append((JNE_K, 4, 0, NEXT, ex.major))
    if ex.minor is not None:
        out.append((JNE_K, 5, 0, NEXT, ex.minor))
    return out + [(MOV32_K, 0, 0, 0, verdict), (EXIT, 0, 0, 0, 0)]


def program_v2(rules: Sequence[Rule]) -> bytes:
    """The eBPF instructions enforcing `effective(rules)`: deny-all unless the rules say
    otherwise; one block per exception; the default verdict last. 1 allows, 0 denies."""
    policy = effective(rules)
    default = int(policy.default_allow)
    code = b""
    for block in (_prologue(), *(_block(ex, 1 - default) for ex in policy.exceptions)):
        for i, (op, dst, src, off, imm) in enumerate(block):
            code += _encode(op, dst, src, len(block) - i - 1 if off is NEXT else off, imm)
    return code + _encode(MOV32_K, 0, 0, 0, default) + _encode(EXIT, 0, 0, 0, 0)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    return libc.check(libc.syscall(SYS_BPF, cmd, ctypes.addressof(attr), ctypes.sizeof(attr)),
                      what)


def _load_attr(insns: ctypes.Array[ctypes.c_char], count: int,
               license: ctypes.Array[ctypes.c_char],
               log: ctypes.Array[ctypes.c_char] | None) -> ctypes.Array[ctypes.c_char]:
    """union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type (72 bytes)."""
    return ctypes.create_string_buffer(struct.pack(
        "<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, count, ctypes.addressof(insns),
        ctypes.addressof(license), 1 if log else 0, len(log) if log else 0,
        ctypes.addressof(log) if log else 0, 0, 0, PROG_NAME, 0, 0), 72)


def load_v2(program: bytes) -> int:
    """BPF_PROG_LOAD; a refusal is retried with the verifier's log to say why."""
    insns = ctypes.create_string_buffer(program, len(program))
    license = ctypes.create_string_buffer(LICENSE)
    try:
        return _bpf(BPF_PROG_LOAD, _load_attr(insns, len(program) // 8, license, None),
                    "bpf(BPF_PROG_LOAD)")
    except OSError as err:
        log = ctypes.create_string_buffer(1 << 16)
        with contextlib.suppress(OSError):
            os.close(_bpf(BPF_PROG_LOAD, _load_attr(insns, len(program) // 8, license, log),
                          "bpf(BPF_PROG_LOAD)"))
        lines = log.value.decode(errors="replace").strip().splitlines()
        raise DeviceError(f"cannot load the cgroup device program: {err.strerror}"
                          + (f" (verifier: {lines[-1]})" if lines else "")) from None


def attached_v2(cgroup_fd: int) -> int:
    """How many device programs are attached to the cgroup itself (BPF_PROG_QUERY)."""
    attr = ctypes.create_string_buffer(struct.pack("<IIIIQI4x", cgroup_fd, BPF_CGROUP_DEVICE,
                                                   0, 0, 0, 0), 32)
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    return int(struct.unpack_from("<I", attr.raw, 24)[0])


def attach_v2(cgroup_dir: str | Path, rules: Sequence[Rule]) -> None:
    """Load `program_v2(rules)` and attach it to the (empty) cgroup2 directory, with
    BPF_F_ALLOW_MULTI as runc so that a sub-cgroup's program can only narrow it. The
    attachment holds the program: both fds are closed, and rmdir of the cgroup frees it."""
    d = Path(cgroup_dir)
    if (d / "cgroup.procs").read_text().strip():
        raise DeviceError(f"cgroup {d} already has processes")
    prog_fd = load_v2(program_v2(rules))
    try:
        cg_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            before = attached_v2(cg_fd)
            attr = ctypes.create_string_buffer(struct.pack(
                "<IIIII", cg_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0), 20)
            _bpf(BPF_PROG_ATTACH, attr, f"bpf(BPF_PROG_ATTACH) to {d}")
            if attached_v2(cg_fd) != before + 1:
                raise DeviceError(f"the device program did not attach to {d}")
        finally:
            os.close(cg_fd)
    except OSError as err:
        raise DeviceError(f"cannot attach the device program to {d}: {err.strerror}") from None
    finally:
        os.close(prog_fd)
