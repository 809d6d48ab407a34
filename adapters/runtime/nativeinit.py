"""A container's init as the native program's other role (adapters/runtime/init.c): the
plan the monitor hands it, its start, and the answer to its one question.

Why: init was a fork of the monitor's Python process that ran its setup in Python and then
tore that image down with its exec, about a third of a `run --rm true`; the program does
init.py's steps in their order, with their messages, started with posix_spawn. Every
decision stays here: the root's plan names each mount, node, file and mask with
rootfs.py's own lists and values, and once the root is built the monitor resolves the user
in the container's own files (through /proc/PID/root, as exec's command does) and answers
with the process's plan (nativejoin.plan), which the end shared with exec's joiner runs.

Without the program (LAMINA_JOINER=python, or no `make`) every container's init runs
init.py.
"""

from __future__ import annotations

import fcntl
import os
import socket

from adapters.kernel import libc, namespaces, rootfs
from adapters.runtime import nativejoin
from adapters.runtime.init import InitPlan, process_env
from core.devices import inside_parts
from core.mounts import root_propagation

VERSION = "lamina-init 2"
# where the program finds what it is given (see init.c): stdio 0-2, then these
ASK, ERR, GO, NETNS, CGROUPS = 3, 4, 5, 7, 8
_SNDBUF_FORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


class _Trees:
    """The detached trees init attaches (a remapped root's files and nodes, a volume's
    subpath, a shared bind), numbered in the order the plan names them: after the
    cgroup.procs files."""

    def __init__(self, first: int) -> None:
        self.first, self.fds = first, list[int]()

    def number(self, source: str | int) -> int:
        if not isinstance(source, int):
            return -1
        self.fds.append(source)
        return self.first + len(self.fds) - 1


def plan(init: InitPlan) -> tuple[bytes, list[int]]:
    """The root's plan (NUL-terminated fields in init.c's read_root order) and the trees
    it names, to be given at their numbers."""
    spec, sec, remapped = init.spec, init.spec.security, init.idmap is not None
    trees = _Trees(CGROUPS + len(init.cgroup_dirs))
    masked = sec.masked_paths
    fields: list[object] = [
        VERSION, len(init.cgroup_dirs), int(init.go_fd >= 0), int(init.netns_fd >= 0),
        namespaces.container_flags(spec.network, sec), int(sec.uts != "host"), spec.hostname,
        int(spec.network == "none"), "." if remapped else init.rootfs, int(remapped),
        int(sec.privileged), sec.ipc, rootfs.shm_options(spec.shm_size),
        len(init.devices)]
    for node in init.devices:
        inside_parts(node.path)  # a clean path below /dev: init.c counts on it
        fields += [node.path, node.type, node.major, node.minor, node.mode, node.uid, node.gid,
                   trees.number(init.dev_sources[node.path]) if remapped else -1]
    fields += [len(rootfs.DEV_LINKS), *(x for link in rootfs.DEV_LINKS for x in link),
               len(init.files)]
    for inside, host in init.files.items():
        fields += [inside, host if isinstance(host, str) else "", trees.number(host)]
    fields += [len(init.cgroup_mounts),
               *(x for cg in init.cgroup_mounts for x in (cg.name, cg.fstype, cg.data)),
               len(rootfs.MASKED_PATHS) if masked else 0,
               *(rootfs.MASKED_PATHS if masked else ()),
               len(rootfs.READONLY_PATHS) if masked else 0,
               *(rootfs.READONLY_PATHS if masked else ()), int(sec.read_only),
               len(init.mounts)]
    for m, source in rootfs.in_mount_order(init.mounts):
        propagation, remount = rootfs.flags_after(m, source)
        if m.type == "tmpfs":
            kind, flags, data = "tmpfs", *rootfs.tmpfs_options(m)
        else:
            kind, flags, data = "bind", libc.MS_BIND | libc.MS_REC, None
        tree = trees.number(source)
        if tree >= 0:
            kind = "tree"
        is_dir = m.type != "bind" or isinstance(source, int) or os.path.isdir(source)
        fields += [m.target, kind, source if isinstance(source, str) else "", tree,
                   int(is_dir), flags, data or "", propagation, remount]
    root = root_propagation([m for m, _ in init.mounts])
    fields.append(rootfs.PROPAGATION_FLAGS[root] if root else 0)
    encoded = [os.fsencode(str(f)) for f in fields]
    if any(b"\0" in f for f in encoded):
        raise ValueError("embedded null byte")
    return b"".join(f + b"\0" for f in encoded), trees.fds


def spawn(init: InitPlan, err_w: int) -> tuple[int, socket.socket]:
    """Start the program as PID 1 of the namespace the monitor made (no session of its
    own yet: E's steps make one, as init.py's do), given the root's plan; its pid and our
    end of the socket it asks on. A remapped root's is cloned into its user namespace and
    a PID namespace that namespace owns, in the view's directory (`_remapped`)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cgroups: list[int] = []
    try:
        cgroups = nativejoin.open_cgroups(init.cgroup_dirs)
        plan_bytes, trees = plan(init)
        given = {0: init.stdin, 1: init.stdout, 2: init.stderr, ASK: theirs.fileno(),
                 ERR: err_w, **{CGROUPS + i: fd for i, fd in enumerate(cgroups)},
                 **{CGROUPS + len(cgroups) + i: fd for i, fd in enumerate(trees)}}
        if init.go_fd >= 0:
            given[GO] = init.go_fd
        if init.netns_fd >= 0:
            given[NETNS] = init.netns_fd
        if init.idmap is None:
            pid = nativejoin.start(nativejoin.sealed(), "lamina-init", given, plan_bytes,
                                   setsid=False)
        else:
            pid = _remapped(init, given, plan_bytes, err_w)
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
        for fd in cgroups:
            os.close(fd)
    return pid, mine


def _remapped(init: InitPlan, given: dict[int, int], plan_bytes: bytes, err_w: int) -> int:
    """A remapped root's init: cloned into a new user namespace (its maps written before it
    runs a line: userns.spawn) and a PID namespace it owns, in the view's directory, where
    the clone puts each fd at its number and execs the program."""
    from adapters.kernel import userns

    assert init.idmap is not None
    given = {**given, nativejoin.PLAN: nativejoin.plan_file("lamina-init", plan_bytes)}
    exe = nativejoin.sealed()

    def child() -> int:
        try:
            high = {t: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for t, fd in given.items()}
            program = fcntl.fcntl(exe, fcntl.F_DUPFD_CLOEXEC, 64)
            for target, fd in high.items():
                os.dup2(fd, target)  # inheritable there
            os.execve(f"/proc/self/fd/{program}", ["lamina-init"], {})
        except OSError as err:
            os.write(err_w, f"127 init: {err}".encode())
        return 127

    os.chdir(init.rootfs)  # init.c's build works from here
    try:
        return userns.spawn(init.idmap, child, flags=libc.CLONE_NEWUSER | libc.CLONE_NEWPID)
    finally:
        os.chdir("/")
        os.close(given[nativejoin.PLAN])


def answer(ask: socket.socket, pid: int, init: InitPlan) -> None:
    """Wait for init's question (its root is built) and answer it: the process's plan, or
    the failure it is to report. Init gone before it asked: its error pipe says why."""
    with ask:
        try:
            if ask.recv(1) != b"?":
                return
            reply = _reply(pid, init)
            if len(reply) > 1 << 16:  # one message: room for an argv and env of any size
                ask.setsockopt(socket.SOL_SOCKET, _SNDBUF_FORCE, 2 * len(reply))
            ask.send(reply)
        except OSError:
            return  # init ended meanwhile: its report is the monitor's


def _reply(pid: int, init: InitPlan) -> bytes:
    """"P" and the process's plan, or "F" and "CODE step: message" as init.py would have
    failed (any error resolving the user is its step's, exit 127)."""
    spec = init.spec
    try:
        pidfd = os.pidfd_open(pid)
        try:
            ident = nativejoin.identity(pid, pidfd, spec)
        finally:
            os.close(pidfd)
    except Exception as err:  # noqa: BLE001 - init.py's step catches everything too
        return f"F127 user: {err}".encode()
    try:
        return b"P" + nativejoin.plan(spec, ident, process_env(spec, ident), flags=0,
                                      remapped=False, cgroups=0, done=False,
                                      seccomp=init.seccomp, terminal=nativejoin.TTY_BOUND)
    except nativejoin.Unstartable as err:
        return f"F127 exec: {err}".encode()
