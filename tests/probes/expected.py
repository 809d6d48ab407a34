"""What every probe of probe.c must report in lamina, per mode and user, and what docker's
defaults give where that differs, each difference with its reason.

Modes are lamina's `run` defaults, `--network host` and `--privileged`; users are root and
`-u 65534`. The --device run (default mode, root, the loop device given read-only) has a
column of its own that only the device probes fill.

Docker's outcomes are derived, not measured (there is no docker daemon here): from moby's
defaults (daemon/pkg/oci/defaults.go: capabilities, masked and read-only paths, mounts),
runc's device rules (libcontainer/specconv: AllowedDevices), the default seccomp profile
(moby/profiles seccomp/default.json) and the daemon's cgroup-namespace default, on a host
like this one (a cgroup v1 hybrid, where docker's default is `--cgroupns host`). docs/
security.md shows how to measure them against a daemon.

Where the host's kernel decides rather than the container's confinement (a sysctl such as
kernel.dmesg_restrict, a call or file the kernel was built without), the expectation is read
from the host (`HOST`), so that it holds on any kernel and still says exactly what to see.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.probes import MEMORY_LIMIT, PIDS_LIMIT, Line

MODES = ("default", "host", "privileged")
USERS = ("root", "65534")
DEVICE_RUN = ("device", "root")
Cell = tuple[str, str]  # (mode, user)


@dataclass(frozen=True)
class Outcome:
    """An expected line: its outcome, and a regular expression its detail must match whole
    ("" for any detail)."""

    outcome: str
    detail: str = ""

    def matches(self, line: Line) -> bool:
        return line.outcome == self.outcome and (
            not self.detail or re.fullmatch(self.detail, line.detail) is not None)

    def __str__(self) -> str:
        return f"{self.outcome} {readable(self.detail)}".strip()


def readable(regex: str) -> str:
    """A detail regex as a reader would write it: `EROFS|EACCES` stays, the rest reads."""
    for pattern, text in (("\\d+", "N"), ("[0-9a-f]{64}", "<id>"), (".+", "…"), ("\\", "")):
        regex = regex.replace(pattern, text)
    return regex


def blocked(detail: str = "") -> Outcome:
    return Outcome("blocked", detail)


def allowed(detail: str = "") -> Outcome:
    return Outcome("allowed", detail)


def info(detail: str) -> Outcome:
    return Outcome("info", detail)


SKIPPED = Outcome("skipped", "no --device PATH")
EPERM = blocked("EPERM")


# --- the host's kernel -------------------------------------------------------------------


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _sysctl(name: str, default: int = 0) -> int:
    value = _read(f"/proc/sys/{name.replace('.', '/')}")
    return int(value) if value.lstrip("-").isdigit() else default


def _own_bounding_set() -> str:
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("CapBnd:"):
            return line.split()[1]
    raise RuntimeError("no CapBnd in /proc/self/status")


@dataclass(frozen=True)
class Host:
    """What the host's kernel decides for an unconfined caller."""

    caps: str  # our bounding set: --privileged can't give more (this host lacks SYS_RESOURCE)
    dmesg_restrict: int
    perf_event_paranoid: int
    unprivileged_userfaultfd: int
    unprivileged_bpf_disabled: int
    io_uring_disabled: int


HOST = Host(caps=_own_bounding_set(), dmesg_restrict=_sysctl("kernel.dmesg_restrict"),
            perf_event_paranoid=_sysctl("kernel.perf_event_paranoid", 2),
            unprivileged_userfaultfd=_sysctl("vm.unprivileged_userfaultfd"),
            unprivileged_bpf_disabled=_sysctl("kernel.unprivileged_bpf_disabled", 1),
            io_uring_disabled=_sysctl("kernel.io_uring_disabled"))


def _unless(restricted: bool, ok: Outcome, denied: Outcome) -> Outcome:
    return denied if restricted else ok


# --- probes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One probe: lamina's expected outcome in every cell, docker's where it differs.

    `absent` is the errno a probe reports when this kernel has no such call or file
    (ENOSYS, ENOENT): a `blocked <absent>` line is then accepted in any cell, since nothing
    can be reached that does not exist."""

    name: str
    layer: str
    what: str
    lamina: Mapping[Cell, Outcome]
    docker: Mapping[Cell, tuple[Outcome, str]] = field(default_factory=dict)
    absent: str = ""

    def expected(self, cell: Cell) -> Outcome:
        return self.lamina.get(cell, SKIPPED)

    def accepts(self, cell: Cell, line: Line) -> bool:
        if self.absent and line.outcome == "blocked" and line.detail == self.absent:
            return True
        return self.expected(cell).matches(line)

    def docker_expected(self, cell: Cell) -> Outcome:
        return self.docker[cell][0] if cell in self.docker else self.expected(cell)


def cells(default: Outcome, user: Outcome | None = None, *, privileged: Outcome | None = None,
          privileged_user: Outcome | None = None, host: Outcome | None = None,
          host_user: Outcome | None = None, device: Outcome = SKIPPED) -> dict[Cell, Outcome]:
    """Every cell from a few: `user` (65534) defaults to root's and host to default; when
    `privileged` is not given the privileged cells are the default ones, else 65534's
    privileged cell defaults to root's."""
    user = user or default
    if privileged is None:
        privileged, privileged_user = default, privileged_user or user
    return {("default", "root"): default, ("default", "65534"): user,
            ("host", "root"): host or default, ("host", "65534"): host_user or host or user,
            ("privileged", "root"): privileged,
            ("privileged", "65534"): privileged_user or privileged,
            DEVICE_RUN: device}


def seccomp_only(privileged: Outcome, privileged_user: Outcome | None = None
                 ) -> dict[Cell, Outcome]:
    """A call docker's profile denies without a capability lamina's default set lacks:
    EPERM from the filter until --privileged drops the filter; then the kernel decides."""
    return cells(EPERM, privileged=privileged, privileged_user=privileged_user)


def needs_admin(privileged: Outcome) -> dict[Cell, Outcome]:
    """Denied by the filter, and by the kernel to anyone without the capability: with
    --privileged root gets through, 65534 (no effective capabilities) still does not."""
    return seccomp_only(privileged, EPERM)


def everywhere(outcome: Outcome) -> dict[Cell, Outcome]:
    return cells(outcome)


DEFAULT_ROOT: tuple[Cell, ...] = (("default", "root"), ("host", "root"))
ALL_CELLS: tuple[Cell, ...] = tuple((m, u) for m in MODES for u in USERS)


def differs(outcome: Outcome, reason: str, where: tuple[Cell, ...] = DEFAULT_ROOT
            ) -> dict[Cell, tuple[Outcome, str]]:
    return {cell: (outcome, reason) for cell in where}


ALL_CAPS_INFO = info(HOST.caps)
DOCKER_DEVICES = ("runc allows every container mknod of any device (rules c *:* m and "
                  "b *:* m) and refuses only its use; lamina allows mknod of the allowed "
                  "devices only, so the node cannot even be made")
DOCKER_CGROUPNS = ("on a cgroup v1 host docker shares the host's cgroup namespace "
                   "(--cgroupns host is its v1 default), so a privileged container that "
                   "mounts a hierarchy sees its root; lamina always unshares a cgroup "
                   "namespace rooted at the container's own cgroup")

PROBES: tuple[Probe, ...] = (
    # --- capabilities, no_new_privs, seccomp mode ---
    Probe("status_seccomp", "seccomp", "Seccomp: in /proc/self/status (2 = filter)",
          cells(info("2"), privileged=info("0"))),
    Probe("status_nonewprivs", "no_new_privs", "NoNewPrivs: in /proc/self/status",
          everywhere(info("1")),
          differs(info("0"), "lamina sets no_new_privs unless --security-opt "
                  "no-new-privileges=false; docker sets it only when asked", ALL_CELLS)),
    Probe("status_capeff", "capabilities", "CapEff: the effective capabilities",
          cells(info("00000000a80425fb"), info("0000000000000000"),
                privileged=ALL_CAPS_INFO, privileged_user=info("0000000000000000"))),
    Probe("status_capbnd", "capabilities", "CapBnd: what exec can ever give back",
          cells(info("00000000a80425fb"), privileged=ALL_CAPS_INFO)),
    Probe("status_capinh", "capabilities", "CapInh: inheritable capabilities",
          everywhere(info("0000000000000000"))),
    # --- devices ---
    Probe("dev_nodes", "devices", "the device nodes in /dev",
          cells(info("full,null,random,tty,urandom,zero"), privileged=info(r"\d+ nodes"))),
    Probe("dev_allowlist", "devices", "open null, zero, full, random, urandom, ptmx read-write",
          everywhere(allowed("ok"))),
    Probe("mknod_null", "devices", "mknod c 1:3 (an allowed device) in /tmp, open it",
          cells(allowed("opened"), blocked("mknod:EPERM"))),
    Probe("mknod_tun", "devices", "mknod c 10:200 (/dev/net/tun) in /tmp, open it",
          cells(blocked("mknod:EPERM"), privileged=allowed("opened"),
                privileged_user=blocked("mknod:EPERM")),
          differs(allowed("opened"), "runc adds /dev/net/tun (c 10:200 rwm) to every "
                  "container's rules, for compatibility; lamina's allow-list is docker's "
                  "documented default devices only")),
    Probe("mknod_kmsg", "devices", "mknod c 1:11 (/dev/kmsg) in /tmp, open it read-only",
          cells(blocked("mknod:EPERM"), privileged=allowed("opened"),
                privileged_user=blocked("mknod:EPERM")),
          differs(blocked("open:EPERM"), DOCKER_DEVICES)),
    Probe("mknod_block", "devices",
          "mknod the host's loop device (b MAJ:MIN) in /tmp, open it, read the marker",
          cells(blocked("mknod:EPERM"), privileged=allowed("marker"),
                privileged_user=blocked("mknod:EPERM")),
          differs(blocked("open:EPERM"), DOCKER_DEVICES)),
    Probe("dev_kmsg", "devices", "open /dev/kmsg (there with --privileged: the host's /dev)",
          cells(blocked("ENOENT"), privileged=allowed("opened"),
                privileged_user=_unless(HOST.dmesg_restrict == 1, allowed("opened"), EPERM))),
    Probe("device_read", "devices", "--device LOOP:/dev/probe-disk:r: read the marker",
          cells(SKIPPED, device=allowed("marker"))),
    Probe("device_write", "devices", "--device LOOP:/dev/probe-disk:r: open it for writing",
          cells(SKIPPED, device=EPERM)),
    # --- seccomp: namespaces and mounts ---
    Probe("unshare_user", "seccomp", "unshare(CLONE_NEWUSER)",
          seccomp_only(allowed("ok"))),
    Probe("clone_newuser", "seccomp", "clone(CLONE_NEWUSER)", seccomp_only(allowed("ok"))),
    Probe("clone3_newuser", "seccomp", "clone3(CLONE_NEWUSER): ENOSYS, so libc falls back",
          cells(blocked("ENOSYS"), privileged=allowed("ok"))),
    Probe("unshare_mnt", "seccomp", "unshare(CLONE_NEWNS)", needs_admin(allowed("ok"))),
    Probe("setns", "seccomp", "setns into its own UTS namespace", needs_admin(allowed("ok"))),
    Probe("mount", "seccomp", "mount a tmpfs on a /tmp directory", needs_admin(allowed("ok"))),
    Probe("umount", "seccomp", "umount2 a directory that is not a mount point",
          needs_admin(allowed("EINVAL"))),
    Probe("pivot_root", "seccomp", "pivot_root to a missing path",
          needs_admin(allowed("ENOENT"))),
    Probe("open_tree", "seccomp", "open_tree(OPEN_TREE_CLONE) of /tmp",
          needs_admin(allowed("ok"))),
    Probe("fsopen", "seccomp", "fsopen(\"tmpfs\")", needs_admin(allowed("ok"))),
    # --- seccomp: the kernel, the clock, the hardware ---
    Probe("swapon", "seccomp", "swapon of a missing file", needs_admin(allowed("ENOENT"))),
    Probe("reboot", "seccomp", "reboot with an invalid magic", needs_admin(allowed("EINVAL"))),
    Probe("init_module", "seccomp", "init_module of nothing", needs_admin(allowed()),
          absent="ENOSYS"),
    Probe("finit_module", "seccomp", "finit_module of fd -1", needs_admin(allowed("EBADF")),
          absent="ENOSYS"),
    Probe("delete_module", "seccomp", "delete_module of a module that is not loaded",
          needs_admin(allowed("ENOENT")), absent="ENOSYS"),
    Probe("kexec_load", "seccomp", "kexec_load with invalid flags",
          needs_admin(allowed("EINVAL")), absent="ENOSYS"),
    Probe("kexec_file_load", "seccomp", "kexec_file_load with invalid flags",
          needs_admin(allowed("EINVAL")), absent="ENOSYS"),
    Probe("syslog", "seccomp", "syslog(SIZE_BUFFER): a query of the kernel log",
          seccomp_only(allowed("ok"),
                       _unless(HOST.dmesg_restrict == 1, allowed("ok"), EPERM))),
    Probe("acct", "seccomp", "acct of a missing file", needs_admin(allowed("ENOENT"))),
    Probe("settimeofday", "seccomp", "settimeofday(NULL, NULL)", needs_admin(allowed("ok"))),
    Probe("iopl", "seccomp", "iopl(3)", needs_admin(allowed("ok")), absent="ENOSYS"),
    Probe("ioperm", "seccomp", "ioperm(0x80)", needs_admin(allowed("ok")), absent="ENOSYS"),
    Probe("quotactl", "seccomp", "quotactl(Q_GETFMT) of a missing path",
          seccomp_only(allowed("ENOENT"))),
    # --- seccomp: introspection and memory ---
    Probe("perf_event_open", "seccomp", "perf_event_open of a kernel+user software counter",
          seccomp_only(allowed("ok"), _unless(HOST.perf_event_paranoid >= 2, allowed("ok"),
                                              blocked("EACCES")))),
    Probe("userfaultfd", "seccomp", "userfaultfd()",
          seccomp_only(allowed("ok"),
                       _unless(HOST.unprivileged_userfaultfd == 0, allowed("ok"), EPERM))),
    Probe("bpf", "seccomp", "bpf(BPF_MAP_CREATE) of a one-entry array",
          seccomp_only(allowed("ok"),
                       _unless(HOST.unprivileged_bpf_disabled != 0, allowed("ok"), EPERM))),
    Probe("personality", "seccomp", "personality(READ_IMPLIES_EXEC)",
          seccomp_only(allowed("ok"))),
    Probe("io_uring_setup", "seccomp", "io_uring_setup",
          seccomp_only(_unless(HOST.io_uring_disabled == 2, allowed("ok"), EPERM),
                       _unless(HOST.io_uring_disabled != 0, allowed("ok"), EPERM))),
    Probe("fanotify_init", "seccomp", "fanotify_init", needs_admin(allowed("ok"))),
    Probe("name_to_handle_at", "seccomp", "name_to_handle_at of /dev (docker allows it)",
          everywhere(allowed("ok"))),
    Probe("open_by_handle_at", "seccomp", "open_by_handle_at (the \"shocker\" escape)",
          needs_admin(allowed("ok"))),
    Probe("process_vm_readv", "seccomp",
          "process_vm_readv of itself (docker allows it on kernels >= 4.8)",
          everywhere(allowed("ok"))),
    Probe("ptrace", "seccomp", "PTRACE_SEIZE of its own child (docker allows it, >= 4.8)",
          everywhere(allowed("ok"))),
    # --- keyrings ---
    Probe("keyctl", "keyrings", "keyctl(GET_KEYRING_ID, @s)", seccomp_only(allowed("ok"))),
    Probe("add_key", "keyrings", "add_key to its thread keyring", seccomp_only(allowed("ok"))),
    Probe("key_session", "keyrings", "its session keyring is not its caller's",
          seccomp_only(blocked("own session"))),
    Probe("key_search", "keyrings", "find the host key in @u by description and read it",
          seccomp_only(allowed("marker"), blocked("ENOKEY"))),
    Probe("key_request", "keyrings", "request_key the host key (searches @t, @p, @s)",
          seccomp_only(blocked("ENOKEY"))),
    Probe("key_read_id", "keyrings", "KEYCTL_READ the host key by its serial",
          seccomp_only(blocked("EACCES"))),
    Probe("proc_keys", "masked paths", "find the host key's description in /proc/keys",
          cells(blocked("masked"), privileged=allowed("visible"),
                privileged_user=blocked("absent"))),
    # --- stdio ---
    Probe("stdio_tiocsti", "stdio", "TIOCSTI on fds 0, 1, 2 (NULL character: never typed)",
          everywhere(blocked("ENOTTY,ENOTTY,ENOTTY"))),
    Probe("stdio_reopen", "stdio", "reopen /proc/self/fd/1 and 2 for writing: what is it?",
          everywhere(blocked("fifo,fifo"))),
    Probe("fds_inherited", "stdio", "descriptors above 2 open at start",
          everywhere(blocked("none"))),
    # --- cgroups ---
    Probe("cgroup_host_path", "cgroup namespace", "a host cgroup path in /proc/self/cgroup",
          everywhere(blocked("/")),
          differs(allowed("/docker/[0-9a-f]{64}"), "on a cgroup v1 host docker shares the "
                  "host's cgroup namespace (--cgroupns host is its v1 default): "
                  "/proc/self/cgroup shows the host's path (cgroupfs driver); lamina always "
                  "unshares a cgroup namespace", ALL_CELLS)),
    Probe("cgroup_limits", "cgroup namespace", "its pids.max and memory limit, as it sees them",
          everywhere(info(f"pids={PIDS_LIMIT} memory={MEMORY_LIMIT}"))),
    Probe("cgroup_ro", "cgroup namespace", "the mount holding its cgroup files",
          cells(blocked("ro"), privileged=allowed("rw"))),
    Probe("cgroup_pids_write", "cgroup namespace", "open its own pids.max for writing",
          cells(blocked("EROFS"), blocked("EROFS|EACCES"), privileged=allowed("opened"),
                privileged_user=blocked("EACCES"))),
    Probe("cgroup_memory_write", "cgroup namespace",
          "open its own memory.limit_in_bytes for writing",
          cells(blocked("EROFS"), blocked("EROFS|EACCES"), privileged=allowed("opened"),
                privileged_user=blocked("EACCES"))),
    Probe("cgroup_release_agent", "cgroup namespace",
          "open a release_agent under /sys/fs/cgroup for writing", everywhere(blocked("ENOENT"))),
    Probe("cgroup_mount_release_agent", "cgroup namespace",
          "mount each v1 hierarchy it is in, open its release_agent for writing",
          cells(blocked("mount:EPERM"), privileged=blocked("ENOENT"),
                privileged_user=blocked("mount:EPERM")),
          differs(allowed("opened in .+"), DOCKER_CGROUPNS, (("privileged", "root"),))),
    Probe("cgroup_other_freezer", "cgroup namespace",
          "open another container's freezer.state for writing (directly, then via a mount)",
          cells(blocked("ENOENT,mount:EPERM"), privileged=blocked("ENOENT,ENOENT"),
                privileged_user=blocked("ENOENT,mount:EPERM")),
          differs(allowed("through a mount"), DOCKER_CGROUPNS, (("privileged", "root"),))),
    # --- /proc and /sys ---
    Probe("proc_sys_write", "masked paths", "open /proc/sys/kernel/core_pattern for writing",
          cells(blocked("EROFS"), blocked("EROFS|EACCES"), privileged=allowed("opened"),
                privileged_user=blocked("EACCES"))),
    Probe("proc_sysrq_write", "masked paths", "open /proc/sysrq-trigger for writing",
          cells(blocked("EROFS"), blocked("EROFS|EACCES"), privileged=allowed("opened"),
                privileged_user=blocked("EACCES")), absent="ENOENT"),
    Probe("proc_kcore", "masked paths", "open /proc/kcore (the host's memory)",
          cells(blocked("masked"), privileged=allowed("opened"),
                privileged_user=blocked("EACCES")), absent="ENOENT"),
    Probe("proc_interrupts", "masked paths", "read /proc/interrupts (a side channel)",
          cells(blocked("masked"), privileged=allowed("readable"))),
    Probe("sys_firmware", "masked paths", "/sys/firmware: masked by an empty tmpfs?",
          cells(blocked("masked"), privileged=allowed("readable"))),
    Probe("sys_ro", "masked paths", "/sys mounted read-only",
          cells(blocked("ro"), privileged=allowed("rw"))),
    Probe("sys_net_write", "masked paths", "open /sys/class/net/lo/mtu for writing",
          cells(blocked("EROFS"), blocked("EROFS|EACCES"), privileged=allowed("opened"),
                privileged_user=blocked("EACCES"))),
)

BY_NAME: dict[str, Probe] = {p.name: p for p in PROBES}


def mismatches(cell: Cell, lines: Mapping[str, Line]) -> list[tuple[str, str, str]]:
    """(probe, expected, measured) for every probe of this cell whose line is not what
    lamina must report, a missing or unknown line included."""
    wanted = [p for p in PROBES if cell != DEVICE_RUN or p.expected(cell) != SKIPPED]
    out = [(p.name, str(p.expected(cell)), str(lines[p.name]) if p.name in lines else "missing")
           for p in wanted if p.name not in lines or not p.accepts(cell, lines[p.name])]
    out += [(name, "no such probe", str(line)) for name, line in lines.items()
            if name not in BY_NAME]
    return out


def all_cells() -> list[Cell]:
    return [*ALL_CELLS, DEVICE_RUN]

