"""Seccomp profiles in docker's JSON format, resolved for one container.

Why this is pure: which system calls a container may make depends only on the profile's text,
the container's capabilities, the host's architecture and its kernel version (docker's
`includes`/`excludes` conditions). Resolving those here, as plain data, lets unit tests check
every condition without a kernel, and leaves adapters/kernel/seccomp.py one job: hand the flat
list of rules to libseccomp and cache the compiled program.

Docker's semantics kept (moby profiles/seccomp, runc libcontainer/seccomp):
- `archMap` entry of the native arch -> it and its sub-arches (x86_64 adds x86 and x32);
  `architectures` is the older flat form; a profile may use one or the other.
- `includes`: every listed cap held, the native arch listed, kernel >= minKernel;
  `excludes`: any listed cap held, the native arch listed, or kernel >= minKernel.
- SCMP_ACT_ERRNO and SCMP_ACT_TRACE without an errno return EPERM; a rule whose action is the
  default action is dropped (libseccomp refuses it, and it changes nothing).
- conditions on distinct arguments are ANDed in one rule; when two share an argument index,
  each becomes a rule of its own (ORed), as runc does.
Stricter than docker, so that a typo can't silently weaken a filter: unknown keys, actions,
operators, arches and capabilities are refused, as are a missing defaultAction (docker would
run unconfined), SCMP_ACT_NOTIFY (no listener) and flags the loader can't pass to the kernel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import BadInput
from core.security import CAPABILITIES

EPERM = 1
MAX_ERRNO = 4095  # the kernel clamps SECCOMP_RET_ERRNO data to this
MAX_ARGS = 6

ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
})
ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})
ARCHES = frozenset({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
})
# uname -m -> (libseccomp's arch, the name docker's includes/excludes "arches" use for it)
MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "i686": ("SCMP_ARCH_X86", "x86"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
    "loongarch64": ("SCMP_ARCH_LOONGARCH64", "loong64"),
}
ARCH_NAMES = frozenset({
    "x86", "amd64", "x32", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64n32",
    "mipsel64", "mipsel64n32", "mips3l64n32", "ppc", "ppc64", "ppc64le", "riscv64", "s390",
    "s390x",
})
# TSYNC only matters for multi-threaded callers; the container's init is single-threaded.
IGNORED_FLAGS = frozenset({"SECCOMP_FILTER_FLAG_TSYNC"})

_PROFILE_KEYS = frozenset({"defaultAction", "defaultErrnoRet", "architectures", "archMap",
                           "syscalls", "flags", "listenerPath", "listenerMetadata"})
_SYSCALL_KEYS = frozenset({"names", "name", "action", "errnoRet", "args", "comment",
                           "includes", "excludes"})
_ARG_KEYS = frozenset({"index", "value", "valueTwo", "op"})
_WHEN_KEYS = frozenset({"caps", "arches", "minKernel"})
_ARCHMAP_KEYS = frozenset({"architecture", "subArchitectures"})

Kernel = tuple[int, int]


@dataclass(frozen=True)
class Action:
    """What the filter does with a call; `errno` only for SCMP_ACT_ERRNO/TRACE."""

    kind: str
    errno: int | None = None


@dataclass(frozen=True)
class Condition:
    """One argument test. For SCMP_CMP_MASKED_EQ `value` is the mask and `value_two` the
    value the masked argument must equal (docker's and libseccomp's order)."""

    index: int
    op: str
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    """One libseccomp rule: `name` gets `action` when every condition holds."""

    name: str
    action: Action
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Filter:
    """A profile resolved for one container: what the adapter compiles, in profile order.

    `arches` are the extra architectures besides the native one (libseccomp always has it)."""

    default: Action
    arches: tuple[str, ...]
    rules: tuple[Rule, ...]

    def rules_for(self, name: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.name == name)


@dataclass(frozen=True)
class When:
    """docker's `includes` / `excludes` condition of a syscalls entry."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: Kernel | None = None


@dataclass(frozen=True)
class Entry:
    """One validated `syscalls` entry of a profile."""

    names: tuple[str, ...]
    action: Action
    conditions: tuple[Condition, ...]
    includes: When
    excludes: When


@dataclass(frozen=True)
class Profile:
    """A validated docker-format profile, not yet tied to a container."""

    default: Action
    architectures: tuple[str, ...]
    arch_map: tuple[tuple[str, tuple[str, ...]], ...]
    entries: tuple[Entry, ...]


# --- resolution -------------------------------------------------------------------------


def filter_for(text: str, caps: frozenset[str], machine: str, kernel: Kernel) -> Filter:
    """The rules `text` gives a container holding `caps` on a `machine` host (uname -m)
    running `kernel` (major, minor). BadInput, one line, for a profile that can't be."""
    return resolve(parse(text), caps, machine, kernel)


def resolve(profile: Profile, caps: frozenset[str], machine: str, kernel: Kernel) -> Filter:
    """Apply docker's includes/excludes for this container and host, flatten to rules."""
    if machine not in MACHINES:
        raise BadInput(f"seccomp: unsupported architecture {machine!r}")
    native, arch_name = MACHINES[machine]
    held = frozenset(f"CAP_{c}" for c in caps)
    rules: list[Rule] = []
    for entry in profile.entries:
        if _excluded(entry.excludes, held, arch_name, kernel):
            continue
        if not _included(entry.includes, held, arch_name, kernel):
            continue
        if entry.action == profile.default:
            continue
        rules.extend(_rules(entry))
    return Filter(default=profile.default, arches=_arches(profile, native), rules=tuple(rules))


def _excluded(when: When, held: frozenset[str], arch: str, kernel: Kernel) -> bool:
    """docker: any one of the listed conditions met excludes the entry."""
    return (arch in when.arches or any(c in held for c in when.caps)
            or (when.min_kernel is not None and kernel >= when.min_kernel))


def _included(when: When, held: frozenset[str], arch: str, kernel: Kernel) -> bool:
    """docker: every listed condition must be met."""
    return ((not when.arches or arch in when.arches) and all(c in held for c in when.caps)
            and (when.min_kernel is None or kernel >= when.min_kernel))


def _rules(entry: Entry) -> Iterator[Rule]:
    indexes = [c.index for c in entry.conditions]
    shared = len(set(indexes)) != len(indexes)
    groups = [(c,) for c in entry.conditions] if shared else [entry.conditions]
    for name in entry.names:
        for group in groups:
            yield Rule(name=name, action=entry.action, conditions=group)


def _arches(profile: Profile, native: str) -> tuple[str, ...]:
    arches = list(profile.architectures)
    for arch, subs in profile.arch_map:
        if arch == native:
            arches += [arch, *subs]
            break
    return tuple(dict.fromkeys(a for a in arches if a != native))


def kernel_version(release: str) -> Kernel:
    """(major, minor) of a uname release such as "6.18.44-fc": all docker compares."""
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None:
        raise BadInput(f"seccomp: can't read the kernel version from {release!r}")
    return int(match[1]), int(match[2])


# --- validation -------------------------------------------------------------------------


def parse(text: str) -> Profile:
    """A docker-format profile, validated; BadInput naming the first problem."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise BadInput(f"seccomp profile is not valid JSON: {err}") from None
    doc = _object(doc, "the profile")
    _keys(doc, _PROFILE_KEYS, "the profile")
    _refuse_unloadable(doc)
    if doc.get("architectures") and doc.get("archMap"):
        raise BadInput("seccomp profile: use either 'architectures' or 'archMap', not both")
    kind = _string(doc.get("defaultAction"), "defaultAction")
    if not kind:
        raise BadInput("seccomp profile has no defaultAction")
    return Profile(
        default=_action(kind, doc.get("defaultErrnoRet"), "defaultAction"),
        architectures=tuple(_arch(a, "architectures")
                            for a in _list(doc.get("architectures"), "architectures")),
        arch_map=tuple(_arch_map_item(m, f"archMap[{i}]")
                       for i, m in enumerate(_list(doc.get("archMap"), "archMap"))),
        entries=tuple(_entry(s, f"syscalls[{i}]")
                      for i, s in enumerate(_list(doc.get("syscalls"), "syscalls"))),
    )


def _refuse_unloadable(doc: Mapping[str, Any]) -> None:
    """What the kernel would need beyond the program itself: refused rather than dropped."""
    for flag in _list(doc.get("flags"), "flags"):
        if _string(flag, "flags") not in IGNORED_FLAGS:
            raise BadInput(f"seccomp profile: flag {flag!r} is not supported by lamina yet")
    for key in ("listenerPath", "listenerMetadata"):
        if doc.get(key):
            raise BadInput(f"seccomp profile: {key} is not supported by lamina yet")


def _entry(raw: Any, where: str) -> Entry:
    item = _object(raw, where)
    _keys(item, _SYSCALL_KEYS, where)
    names = [_string(n, f"{where}.names") for n in _list(item.get("names"), f"{where}.names")]
    if item.get("name"):
        if names:
            raise BadInput(f"seccomp profile: {where} has both 'name' and 'names'")
        names = [_string(item["name"], f"{where}.name")]
    if any(not n for n in names):
        raise BadInput(f"seccomp profile: {where} has an empty syscall name")
    _string(item.get("comment"), f"{where}.comment")
    args = _list(item.get("args"), f"{where}.args")
    if len(args) > MAX_ARGS:
        raise BadInput(f"seccomp profile: {where} has more than {MAX_ARGS} args")
    return Entry(
        names=tuple(names),
        action=_action(_string(item.get("action"), f"{where}.action"), item.get("errnoRet"),
                       f"{where}.action"),
        conditions=tuple(_condition(a, f"{where}.args[{i}]") for i, a in enumerate(args)),
        includes=_when(item.get("includes"), f"{where}.includes"),
        excludes=_when(item.get("excludes"), f"{where}.excludes"),
    )


def _action(kind: str, errno: Any, where: str) -> Action:
    if kind == "SCMP_ACT_NOTIFY":
        raise BadInput(f"seccomp profile: {where} SCMP_ACT_NOTIFY is not supported by lamina")
    if kind not in ACTIONS:
        raise BadInput(f"seccomp profile: {where} is not a known action: {kind!r}")
    if kind not in ERRNO_ACTIONS:
        return Action(kind)  # runc ignores an errno on other actions, and so does lamina
    if errno is None:
        return Action(kind, EPERM)
    return Action(kind, _uint(errno, f"{where} errno", MAX_ERRNO))


def _condition(raw: Any, where: str) -> Condition:
    arg = _object(raw, where)
    _keys(arg, _ARG_KEYS, where)
    op = _string(arg.get("op"), f"{where}.op")
    if op not in OPERATORS:
        raise BadInput(f"seccomp profile: {where}.op is not a known operator: {op!r}")
    return Condition(index=_uint(arg.get("index", 0), f"{where}.index", MAX_ARGS - 1), op=op,
                     value=_uint(arg.get("value", 0), f"{where}.value", 2**64 - 1),
                     value_two=_uint(arg.get("valueTwo", 0), f"{where}.valueTwo", 2**64 - 1))


def _when(raw: Any, where: str) -> When:
    if raw is None:
        return When()
    when = _object(raw, where)
    _keys(when, _WHEN_KEYS, where)
    caps = tuple(_string(c, f"{where}.caps") for c in _list(when.get("caps"), f"{where}.caps"))
    for cap in caps:
        if not cap.startswith("CAP_") or cap[4:] not in CAPABILITIES:
            raise BadInput(f"seccomp profile: {where}.caps has an unknown capability {cap!r}")
    arches = tuple(_string(a, f"{where}.arches")
                   for a in _list(when.get("arches"), f"{where}.arches"))
    for arch in arches:
        if arch not in ARCH_NAMES:
            raise BadInput(f"seccomp profile: {where}.arches has an unknown arch {arch!r}")
    version = _string(when.get("minKernel"), f"{where}.minKernel")
    return When(caps=caps, arches=arches,
                min_kernel=_min_kernel(version, where) if version else None)


def _min_kernel(text: str, where: str) -> Kernel:
    """docker's "<kernel>.<major>" form, each part at most 255, not 0.0."""
    match = re.fullmatch(r"(\d+)\.(\d+)", text)
    version = (int(match[1]), int(match[2])) if match else None
    if version is None or max(version) > 255 or version == (0, 0):
        raise BadInput(f"seccomp profile: {where}.minKernel {text!r} is not "
                       "\"<kernel>.<major>\"")
    return version


def _arch_map_item(raw: Any, where: str) -> tuple[str, tuple[str, ...]]:
    item = _object(raw, where)
    _keys(item, _ARCHMAP_KEYS, where)
    subs = _list(item.get("subArchitectures"), f"{where}.subArchitectures")
    return (_arch(item.get("architecture"), f"{where}.architecture"),
            tuple(_arch(s, f"{where}.subArchitectures") for s in subs))


def _arch(raw: Any, where: str) -> str:
    arch = _string(raw, where)
    if arch not in ARCHES:
        raise BadInput(f"seccomp profile: {where} has an unknown architecture {arch!r}")
    return arch


# --- JSON shapes (null reads as empty, as Go's decoder does) ------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput(f"seccomp profile: {where} must be a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"seccomp profile: {where} must be a list")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInput(f"seccomp profile: {where} must be a string")
    return value


def _uint(value: Any, where: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise BadInput(f"seccomp profile: {where} must be an integer from 0 to {limit}")
    return value


def _keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise BadInput(f"seccomp profile: {where} has an unknown key {unknown[0]!r}")
