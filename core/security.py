"""What a container's processes may do: capabilities, seccomp, devices, shared namespaces.

Pure: `check` judges the run options before ContainerCreated is appended (a refusal is a
CommandRejected naming the option), and `security_of` turns the recorded options into the
`Security` the kernel adapters apply (adapters/kernel/security.py, seccomp.py, devices.py,
rootfs.py). Both read the same keys, so what was accepted is exactly what is applied.

The recorded keys (ContainerCreated.config), all optional, none present meaning the
defaults: cap_add, cap_drop (lists of names, "ALL" allowed), privileged, read_only,
no_new_privs (no key means True, lamina's default: clarifications.md), seccomp
("unconfined" or a docker JSON profile's text), systempaths ("unconfined"), devices
(docker's HOST[:INSIDE][:rwm] strings), group_add, pid ("host"), ipc, uts ("host").
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import BadInput

_DEVICE_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")  # docker's

# Linux capability numbers, from include/uapi/linux/capability.h.
CAPABILITIES: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
    "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
    "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
    "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
    "SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28,
    "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32,
    "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
    "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# Docker's default set (moby oci/caps/defaults.go): enough for typical images that
# chown files, bind low ports or switch users, and nothing that reaches the host.
DEFAULT_CAPS: frozenset[str] = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})
ALL_CAPS: frozenset[str] = frozenset(CAPABILITIES)

SECCOMP_DEFAULT = "default"
SECCOMP_UNCONFINED = "unconfined"
DEFAULT_PROFILE_FILE = os.path.join(os.path.dirname(__file__), "seccomp_default.json")

# Namespace modes lamina can honour; "container:NAME" (joining another container's) is not
# built yet and is refused by name.
NAMESPACE_MODES: dict[str, tuple[str, ...]] = {
    "pid": ("", "host"),
    "ipc": ("", "private", "shareable", "none", "host"),
    "uts": ("", "host"),
}


@dataclass(frozen=True)
class Device:
    """`--device HOST[:INSIDE][:PERMS]`: a host device node made inside, with cgroup access
    `access` (a subset of "rwm": read, write, mknod)."""

    host: str
    inside: str
    access: str = "rwm"

    def __str__(self) -> str:
        return f"{self.host}:{self.inside}:{self.access}"


@dataclass(frozen=True)
class Security:
    """Everything that bounds a container's processes, decided before anything is forked."""

    caps: frozenset[str] = DEFAULT_CAPS
    privileged: bool = False
    read_only: bool = False
    no_new_privs: bool = True
    seccomp: str = SECCOMP_DEFAULT  # or SECCOMP_UNCONFINED, or a docker profile's JSON text
    masked_paths: bool = True  # docker's masked and read-only /proc and /sys paths
    devices: tuple[Device, ...] = ()
    group_add: tuple[str, ...] = ()
    pid: str = ""
    ipc: str = ""
    uts: str = ""
    device_rules: tuple[str, ...] = ()  # --device-cgroup-rule: `c 42:* rwm`, as given


@functools.cache
def default_profile_text() -> str:
    """lamina's default seccomp profile (docker's, re-derived: core/seccomp_default.json),
    shipped beside this module. Here rather than in core.seccomp, which judges profiles:
    a container's start only needs the text, to find its compiled program in the cache."""
    with open(DEFAULT_PROFILE_FILE, encoding="utf-8") as f:
        return f.read()


# --- capabilities ------------------------------------------------------------------------


def cap_name(name: str) -> str:
    """`cap_chown`, `CHOWN` and `CAP_CHOWN` all name CHOWN; ALL stays ALL; typos refused."""
    key = name.strip().upper().removeprefix("CAP_")
    if key != "ALL" and key not in CAPABILITIES:
        raise BadInput(f"unknown capability: {name!r}")
    return key


def capabilities(add: Iterable[str] = (), drop: Iterable[str] = (),
                 privileged: bool = False) -> frozenset[str]:
    """Docker's rule (moby oci/caps TweakCapabilities): privileged gets every capability;
    adding ALL gets every one but the dropped; dropping ALL keeps only the added; otherwise
    the defaults minus the dropped plus the added."""
    if privileged:
        return ALL_CAPS
    adds = {cap_name(c) for c in add}
    drops = {cap_name(c) for c in drop}
    if "ALL" in adds:
        return ALL_CAPS - drops
    if "ALL" in drops:
        return frozenset(adds)
    return frozenset((DEFAULT_CAPS - drops) | adds)


# --- --security-opt -------------------------------------------------------------------------


def security_opts(opts: Sequence[str]) -> dict[str, Any]:
    """docker's --security-opt strings (and HostConfig.SecurityOpt) -> recorded options.

    The seccomp value is "unconfined", "builtin" (the default) or the profile's JSON text:
    docker's CLI, and lamina's, read a profile FILE and send its text. Anything lamina can't
    honour (AppArmor, SELinux labels, ...) is refused by name."""
    out: dict[str, Any] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # docker's deprecated KEY:VALUE form
        key = key.strip()
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise BadInput(f"invalid --security-opt {opt!r}: no-new-privileges takes "
                               "true or false")
            out["no_new_privs"] = value != "false"
        elif key == "seccomp" and value:
            if value != "builtin":
                out["seccomp"] = value
        elif key == "systempaths" and value == "unconfined":
            out["systempaths"] = "unconfined"
        else:
            raise BadInput(f"--security-opt {opt!r} is not supported by lamina yet")
    return out


# --- devices -----------------------------------------------------------------------------


def _is_access(text: str) -> bool:
    return bool(text) and set(text) <= set("rwm") and len(set(text)) == len(text)


def parse_device(text: str) -> Device:
    """docker's `--device` syntax: HOST, HOST:INSIDE, HOST:PERMS or HOST:INSIDE:PERMS."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise BadInput(f"invalid device specification: {text!r}")
    host, inside, access = parts[0], "", "rwm"
    if len(parts) == 3:
        inside, access = parts[1], parts[2]
    elif len(parts) == 2:
        if _is_access(parts[1]):
            access = parts[1]
        else:
            inside = parts[1]
    inside = inside or host
    if not _is_access(access):
        raise BadInput(f"invalid device mode {access!r} in {text!r} (use r, w and m)")
    for path in (host, inside):
        if not path.startswith("/"):
            raise BadInput(f"invalid device path {path!r}: it must be absolute")
    return Device(host=host, inside=inside, access=access)


# --- the whole check ---------------------------------------------------------------------


def normalized(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as ContainerCreated records them: `security_opt` (docker's strings, as
    the CLI and the API receive them) becomes its keys; then everything is checked, so a
    refusal happens before anything is appended (and is itself recorded)."""
    out = {k: v for k, v in options.items() if k != "security_opt"}
    out.update(security_opts(options.get("security_opt") or ()))
    check(out)
    return out


def check(options: Mapping[str, Any]) -> None:
    """Refuse, one line naming the option, what can't be applied as recorded."""
    security_of(options)
    seccomp = options.get("seccomp")
    if seccomp is not None and seccomp != SECCOMP_UNCONFINED:
        check_profile_text(seccomp)
    if options.get("uts") == "host" and options.get("hostname"):
        raise BadInput("conflicting options: --hostname and --uts host")


def check_profile_text(text: str) -> None:
    """A seccomp profile must be a JSON object in docker's format; its rules are judged by
    core.seccomp when it is compiled."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise BadInput(f"seccomp profile is not valid JSON: {err}") from None
    if not isinstance(doc, dict) or "defaultAction" not in doc:
        raise BadInput("seccomp profile must be a JSON object with a defaultAction")


def _mode(options: Mapping[str, Any], name: str) -> str:
    value = options.get(name) or ""
    if value not in NAMESPACE_MODES[name]:
        raise BadInput(f"--{name} {value!r} is not supported by lamina yet "
                       f"(use {' or '.join(m for m in NAMESPACE_MODES[name] if m)})")
    return value


def security_of(options: Mapping[str, Any]) -> Security:
    """The Security of recorded run options (BadInput for an option that can't be)."""
    privileged = bool(options.get("privileged"))
    seccomp = options.get("seccomp") or SECCOMP_DEFAULT
    return Security(
        caps=capabilities(options.get("cap_add") or (), options.get("cap_drop") or (),
                          privileged),
        privileged=privileged,
        read_only=bool(options.get("read_only")),
        no_new_privs=bool(options.get("no_new_privs", True)),
        seccomp=SECCOMP_UNCONFINED if privileged and "seccomp" not in options else seccomp,
        masked_paths=not privileged and options.get("systempaths") != "unconfined",
        devices=tuple(parse_device(d) for d in options.get("devices") or ()),
        group_add=tuple(str(g) for g in options.get("group_add") or ()),
        pid=_mode(options, "pid"), ipc=_mode(options, "ipc"), uts=_mode(options, "uts"),
        device_rules=device_rules(options.get("device_cgroup_rules") or ()),
    )


def device_rules(values: Iterable[Any]) -> tuple[str, ...]:
    """--device-cgroup-rule's rules, in docker's format (`TYPE MAJOR:MINOR ACCESS`, `*` for
    any number) and docker's words when one isn't; kept as given (inspect shows them so)."""
    out = []
    for value in values:
        match = _DEVICE_RULE.match(value) if isinstance(value, str) else None
        if match is None:
            raise BadInput(f"invalid device cgroup format '{value}'")
        if match[1] == "a" and value != "a *:* rwm":  # the kernel's: `a` is every device
            raise BadInput(f"an 'a' device rule covers every device: {value!r} must be "
                           "'a *:* rwm'")
        out.append(value)
    return tuple(out)
