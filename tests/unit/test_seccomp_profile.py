"""core.seccomp: docker's default profile as lamina ships it, and how a docker-format profile
resolves for a container's capabilities, the host's arch and its kernel version."""

from __future__ import annotations

import json

import pytest

from core import seccomp
from core.errors import BadInput
from core.security import ALL_CAPS, DEFAULT_CAPS, default_profile_text

KERNEL = (6, 18)
EPERM, EACCES, ENOSYS = 1, 13, 38
ALLOW = seccomp.Action("SCMP_ACT_ALLOW")
NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

# What docker's default profile refuses a container with docker's default capabilities.
DENIED = ("keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd", "bpf",
          "quotactl", "quotactl_fd", "open_by_handle_at", "mount", "umount2", "swapon",
          "swapoff", "reboot", "init_module", "finit_module", "delete_module", "kexec_load",
          "kexec_file_load", "pivot_root", "setns", "unshare", "fsopen", "fsmount", "move_mount",
          "open_tree", "syslog", "acct", "settimeofday", "clock_settime", "iopl", "ioperm",
          "kcmp", "pidfd_getfd", "process_madvise", "vhangup", "mbind", "set_mempolicy",
          "lookup_dcookie", "sethostname", "setdomainname", "fanotify_init", "nfsservctl",
          "uselib", "ustat", "sysfs", "_sysctl", "get_kernel_syms", "query_module", "vm86",
          "vm86old", "create_module")
ALLOWED = ("read", "write", "openat", "close", "execve", "execveat", "fork", "vfork", "wait4",
           "mmap", "mprotect", "brk", "futex", "rt_sigaction", "exit_group", "chown", "setuid",
           "setgroups", "capset", "prctl", "seccomp", "name_to_handle_at", "mkdir", "statx",
           "io_setup", "landlock_create_ruleset", "ioctl",
           "chroot", "memfd_create", "pidfd_open", "sendmsg", "accept4")


def default(caps: frozenset[str] = DEFAULT_CAPS, machine: str = "x86_64",
            kernel: seccomp.Kernel = KERNEL) -> seccomp.Filter:
    return seccomp.filter_for(default_profile_text(), caps, machine, kernel)


def unconditional(f: seccomp.Filter, name: str) -> seccomp.Action | None:
    """The action a rule without conditions gives `name`, None when it has none."""
    actions = [r.action for r in f.rules_for(name) if not r.conditions]
    return actions[0] if actions else None


def conditions(f: seccomp.Filter, name: str) -> list[tuple[seccomp.Condition, ...]]:
    return [r.conditions for r in f.rules_for(name)]


def one_line_refusal(text: str) -> str:
    with pytest.raises(BadInput) as info:
        seccomp.filter_for(text, DEFAULT_CAPS, "x86_64", KERNEL)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# --- the default profile ----------------------------------------------------------------


def test_the_default_denies_with_eperm_and_covers_x86_64s_sub_architectures() -> None:
    f = default()
    assert f.default == seccomp.Action("SCMP_ACT_ERRNO", EPERM)
    assert f.arches == ("SCMP_ARCH_X86", "SCMP_ARCH_X32")


@pytest.mark.parametrize("name", DENIED)
def test_the_default_denies_what_docker_denies(name: str) -> None:
    assert default().rules_for(name) == ()


@pytest.mark.parametrize("name", ALLOWED)
def test_the_default_allows_what_programs_need(name: str) -> None:
    assert unconditional(default(), name) == ALLOW


def test_the_allow_list_is_dockers_size() -> None:
    doc = json.loads(default_profile_text())
    assert len(doc["syscalls"][0]["names"]) == 361
    assert len(set(doc["syscalls"][0]["names"])) == 361


def test_personality_only_for_the_harmless_personas() -> None:
    f = default()
    values = sorted(c[0].value for c in conditions(f, "personality"))
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(c[0].op == "SCMP_CMP_EQ" and c[0].index == 0
               for c in conditions(f, "personality"))
    assert 0x0400000 not in values  # READ_IMPLIES_EXEC


def test_socket_for_every_family_but_af_alg_and_af_vsock() -> None:
    f = default()
    tests = {(c[0].op, c[0].value) for c in conditions(f, "socket")}
    assert tests == {("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)}


def test_without_sys_admin_clone_may_not_make_namespaces_and_clone3_is_enosys() -> None:
    f = default()
    assert conditions(f, "clone") == [(seccomp.Condition(0, "SCMP_CMP_MASKED_EQ", NS_FLAGS),)]
    assert unconditional(f, "clone3") == seccomp.Action("SCMP_ACT_ERRNO", ENOSYS)
    for name in ("mount", "umount2", "unshare", "setns", "sethostname", "bpf"):
        assert f.rules_for(name) == ()


def test_with_sys_admin_namespaces_and_mounts_are_allowed() -> None:
    f = default(DEFAULT_CAPS | {"SYS_ADMIN"})
    for name in ("mount", "umount2", "unshare", "setns", "clone", "clone3", "bpf",
                 "perf_event_open", "quotactl", "sethostname", "syslog", "fsopen"):
        assert unconditional(f, name) == ALLOW, name
    assert conditions(f, "clone") == [()]  # the masked rule is excluded
    assert all(r.action == ALLOW for r in f.rules_for("clone3"))
    assert f.rules_for("keyctl") == f.rules_for("add_key") == ()  # no capability opens these


@pytest.mark.parametrize(("cap", "names"), [
    ("SYS_PTRACE", ("ptrace", "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv")),
    ("SYS_MODULE", ("init_module", "finit_module", "delete_module")),
    ("SYS_BOOT", ("reboot",)),
    ("SYS_PACCT", ("acct",)),
    ("SYS_RAWIO", ("iopl", "ioperm")),
    ("SYS_TIME", ("settimeofday", "clock_settime")),
    ("SYS_TTY_CONFIG", ("vhangup",)),
    ("SYS_NICE", ("mbind", "set_mempolicy", "get_mempolicy")),
    ("SYSLOG", ("syslog",)),
    ("BPF", ("bpf",)),
    ("PERFMON", ("perf_event_open",)),
    ("DAC_READ_SEARCH", ("open_by_handle_at",)),
])
def test_a_capability_opens_its_calls(cap: str, names: tuple[str, ...]) -> None:
    without, with_cap = default(DEFAULT_CAPS - {cap}), default(DEFAULT_CAPS | {cap})
    for name in names:
        assert unconditional(with_cap, name) == ALLOW, name
        if name not in ("process_vm_readv", "ptrace"):  # those also come with kernel >= 4.8
            assert without.rules_for(name) == (), name


def test_dropping_sys_chroot_takes_chroot_away() -> None:
    assert unconditional(default(), "chroot") == ALLOW  # SYS_CHROOT is a default capability
    assert default(DEFAULT_CAPS - {"SYS_CHROOT"}).rules_for("chroot") == ()


def test_ptrace_and_process_vm_calls_follow_the_kernel_version() -> None:
    """docker allows them from 4.8, where ptrace can no longer step around seccomp."""
    for name in ("ptrace", "process_vm_readv", "process_vm_writev"):
        assert unconditional(default(kernel=(6, 18)), name) == ALLOW
        assert unconditional(default(kernel=(4, 8)), name) == ALLOW
        assert default(kernel=(4, 7)).rules_for(name) == ()
        assert unconditional(default(DEFAULT_CAPS | {"SYS_PTRACE"}, kernel=(3, 10)),
                             name) == ALLOW


def test_arch_conditions_follow_the_host() -> None:
    x86 = default(machine="x86_64")
    arm = default(machine="aarch64")
    s390 = default(machine="s390x")
    assert unconditional(x86, "arch_prctl") == ALLOW and unconditional(x86, "modify_ldt")
    assert arm.rules_for("arch_prctl") == () and arm.rules_for("modify_ldt") == ()
    assert unconditional(arm, "set_tls") == ALLOW and x86.rules_for("set_tls") == ()
    assert arm.arches == ("SCMP_ARCH_ARM",)
    assert conditions(s390, "clone") == [(seccomp.Condition(1, "SCMP_CMP_MASKED_EQ",
                                                            NS_FLAGS),)]
    assert default(machine="riscv64").arches == ()


def test_an_unknown_host_arch_is_refused() -> None:
    with pytest.raises(BadInput, match="unsupported architecture 'sparc64'"):
        default(machine="sparc64")


def test_full_capabilities_still_deny_the_uncapped_calls() -> None:
    f = default(ALL_CAPS)
    for name in ("keyctl", "add_key", "request_key", "userfaultfd", "kexec_load", "swapon",
                 "pivot_root"):
        assert f.rules_for(name) == (), name


def test_kernel_version_reads_major_and_minor() -> None:
    assert seccomp.kernel_version("6.18.44-fc-v1272") == (6, 18)
    assert seccomp.kernel_version("3.12-1-amd64") == (3, 12)
    with pytest.raises(BadInput):
        seccomp.kernel_version("unknown")


# --- custom profiles ----------------------------------------------------------------------


def profile(**fields: object) -> str:
    return json.dumps({"defaultAction": "SCMP_ACT_ALLOW", **fields})


def test_a_custom_profile_resolves_as_written() -> None:
    text = profile(syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": EACCES}])
    f = seccomp.filter_for(text, DEFAULT_CAPS, "x86_64", KERNEL)
    assert f.default == ALLOW and f.arches == ()
    assert [(r.name, r.action) for r in f.rules] == [
        ("mkdir", seccomp.Action("SCMP_ACT_ERRNO", EACCES)),
        ("mkdirat", seccomp.Action("SCMP_ACT_ERRNO", EACCES))]


def test_errno_defaults_to_eperm_and_rules_like_the_default_are_dropped() -> None:
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"name": "read", "action": "SCMP_ACT_ALLOW"},
        {"names": ["write"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["open"], "action": "SCMP_ACT_TRACE"},
        {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"}]})
    f = seccomp.filter_for(text, DEFAULT_CAPS, "x86_64", KERNEL)
    assert f.default == seccomp.Action("SCMP_ACT_ERRNO", EPERM)
    assert [r.name for r in f.rules] == ["read", "open", "kill"]
    assert f.rules_for("open")[0].action == seccomp.Action("SCMP_ACT_TRACE", EPERM)


def test_conditions_on_one_argument_become_separate_rules() -> None:
    """libseccomp ANDs a rule's conditions; two tests of one argument are ORed, as runc."""
    same = [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]
    apart = [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
             {"index": 2, "value": 7, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]
    text = profile(defaultAction="SCMP_ACT_ERRNO", syscalls=[
        {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": same},
        {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW", "args": apart}])
    f = seccomp.filter_for(text, DEFAULT_CAPS, "x86_64", KERNEL)
    assert [len(c) for c in conditions(f, "ioctl")] == [1, 1]
    assert conditions(f, "fcntl") == [(seccomp.Condition(0, "SCMP_CMP_EQ", 1),
                                       seccomp.Condition(2, "SCMP_CMP_MASKED_EQ", 7, 3))]


def test_the_flat_architectures_form_is_read() -> None:
    text = profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    assert seccomp.filter_for(text, DEFAULT_CAPS, "x86_64", KERNEL).arches == ("SCMP_ARCH_X86",)


def test_includes_need_every_cap_and_excludes_any() -> None:
    text = profile(defaultAction="SCMP_ACT_ERRNO", syscalls=[
        {"names": ["a"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}},
        {"names": ["b"], "action": "SCMP_ACT_ALLOW",
         "excludes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}}])
    for caps, names in (({"SYS_ADMIN"}, []), ({"SYS_ADMIN", "NET_ADMIN"}, ["a"]),
                        (set(), ["b"])):
        f = seccomp.filter_for(text, frozenset(caps), "x86_64", KERNEL)
        assert [r.name for r in f.rules] == names


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"syscalls": []}', "no defaultAction"),
    (profile(defaultAction="SCMP_ACT_EXPLODE"), "not a known action"),
    (profile(defaultAction="SCMP_ACT_NOTIFY"), "SCMP_ACT_NOTIFY"),
    (profile(syscall=[]), "unknown key 'syscall'"),
    (profile(syscalls={}), "syscalls must be a list"),
    (profile(syscalls=[{"names": ["read"]}]), "syscalls[0].action"),
    (profile(syscalls=[{"name": "a", "names": ["b"], "action": "SCMP_ACT_LOG"}]),
     "both 'name' and 'names'"),
    (profile(syscalls=[{"names": [""], "action": "SCMP_ACT_LOG"}]), "empty syscall name"),
    (profile(syscalls=[{"names": [1], "action": "SCMP_ACT_LOG"}]), "must be a string"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}]),
     "errno must be an integer"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]),
     "errno must be an integer from 0 to 4095"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
     "args[0].index must be an integer from 0 to 5"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]),
     "not a known operator"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "args": [{"index": 0, "value": 2**64, "op": "SCMP_CMP_EQ"}]}]),
     "args[0].value"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "includes": {"caps": ["CAP_SYS_GOD"]}}]), "unknown capability"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "excludes": {"caps": ["SYS_ADMIN"]}}]), "unknown capability"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "includes": {"arches": ["vax"]}}]), "unknown arch 'vax'"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "includes": {"minKernel": "4"}}]), "minKernel '4'"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_LOG",
                        "includes": {"minKernel": "0.0"}}]), "minKernel"),
    (profile(architectures=["SCMP_ARCH_X86"],
             archMap=[{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}]),
     "either 'architectures' or 'archMap'"),
    (profile(architectures=["SCMP_ARCH_Z80"]), "unknown architecture"),
    (profile(flags=["SECCOMP_FILTER_FLAG_LOG"]), "SECCOMP_FILTER_FLAG_LOG"),
    (profile(listenerPath="/run/agent.sock"), "listenerPath"),
])
def test_a_bad_profile_is_refused_in_one_line_naming_the_problem(text: str,
                                                                  problem: str) -> None:
    assert problem in one_line_refusal(text)


def test_nulls_read_as_empty_as_dockers_decoder() -> None:
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "archMap": None, "flags": None,
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                     "args": None, "includes": None, "comment": None}]})
    f = seccomp.filter_for(text, DEFAULT_CAPS, "x86_64", KERNEL)
    assert f.rules == (seccomp.Rule("read", ALLOW),)
