"""Which device nodes a container gets, and which devices its cgroup lets it use. Pure.

Why an allow-list: a process that can open or mknod a host block device, /dev/kmsg or
/dev/mem reaches the host whatever its capabilities, so the devices cgroup (v1's devices
controller, or a BPF_PROG_TYPE_CGROUP_DEVICE program on cgroup v2) denies every device but
docker's harmless defaults and what `--device` asked for. Lamina is stricter than docker on
mknod: docker also allows `c *:* m` and `b *:* m`, lamina only the allow-listed devices.

`effective` folds a rule list the way the v1 kernel code does (a deny-all start, then each
write in order), so the v1 writes, the v1 `devices.list` read back and the v2 program
(adapters/kernel/devices.py) are all judged against one model.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from core.errors import BadInput
from core.security import Security

ACCESS_ORDER = "rwm"
MAX_MAJOR = (1 << 12) - 1  # the kernel's dev_t: 12 bits of major, 20 of minor
MAX_MINOR = (1 << 20) - 1
DEV = "/dev"
# Names under /dev that lamina's own /dev setup owns (mounts and symlinks,
# adapters/kernel/rootfs.py): a device node there would clash with, or hide under, them.
RESERVED = frozenset({"pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "ptmx",
                      "core", "console"})


def canonical_access(access: str) -> str:
    """A subset of "rwm" in the kernel's order; anything else is refused."""
    if not access or not set(access) <= set(ACCESS_ORDER):
        raise BadInput(f"invalid device access {access!r} (use r, w and m)")
    return "".join(c for c in ACCESS_ORDER if c in access)


def _check_number(name: str, value: int | None, limit: int) -> None:
    if value is not None and not 0 <= value <= limit:
        raise BadInput(f"device {name} number {value} out of range 0..{limit}")


@dataclass(frozen=True)
class Rule:
    """One devices-cgroup rule: type "a" (all), "c" or "b"; None major/minor is `*`."""

    type: str
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"
    allow: bool = True

    def __post_init__(self) -> None:
        if self.type not in ("a", "c", "b"):
            raise BadInput(f"invalid device type {self.type!r} (use a, c or b)")
        if self.type == "a" and (self.major, self.minor, self.access) != (None, None, "rwm"):
            raise BadInput("an 'a' device rule covers every device: it takes no numbers")
        _check_number("major", self.major, MAX_MAJOR)
        _check_number("minor", self.minor, MAX_MINOR)
        object.__setattr__(self, "access", canonical_access(self.access))

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        return (self.type, self.major, self.minor)


def render(rule: Rule) -> str:
    """The rule in the v1 `devices.allow`/`devices.deny` syntax, as `devices.list` shows it:
    `c 1:3 rwm`, `c 136:* rwm`, `a *:* rwm`."""
    def num(n: int | None) -> str:
        return "*" if n is None else str(n)

    return f"{rule.type} {num(rule.major)}:{num(rule.minor)} {rule.access}"


def parse_rule(text: str, allow: bool = True) -> Rule:
    """The inverse of `render` (one `devices.list` line)."""
    try:
        kind, numbers, access = text.split()
        major, minor = numbers.split(":")
        return Rule(kind, None if major == "*" else int(major),
                    None if minor == "*" else int(minor), access, allow)
    except ValueError:
        raise BadInput(f"invalid device rule {text!r}") from None


@dataclass(frozen=True)
class Node:
    """A device node made inside the container: `path` is absolute inside it, `mode` its
    permission bits; `access` is what `--device` asked the cgroup to allow for it."""

    path: str
    type: str
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0
    access: str = "rwm"

    def __post_init__(self) -> None:
        if self.type not in ("c", "b"):
            raise BadInput(f"device node {self.path!r} must be a char or block device")
        _check_number("major", self.major, MAX_MAJOR)
        _check_number("minor", self.minor, MAX_MINOR)
        if not 0 <= self.mode <= 0o7777:
            raise BadInput(f"invalid mode {self.mode:o} for device node {self.path!r}")
        object.__setattr__(self, "access", canonical_access(self.access))


DEFAULT_NODES: tuple[Node, ...] = tuple(
    Node(f"/dev/{name}", "c", major, minor, 0o666)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                               ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)))

# Docker's allow-list (moby oci/defaults.go plus runc's AllowedDevices, less runc's
# `c *:* m`, `b *:* m` and /dev/net/tun): the default nodes, the console (a pty slave bound
# over /dev/console), /dev/ptmx and the ptys of the container's own devpts.
DEFAULT_RULES: tuple[Rule, ...] = (
    *(Rule("c", n.major, n.minor, "rwm") for n in DEFAULT_NODES),
    Rule("c", 5, 1, "rwm"),     # console
    Rule("c", 5, 2, "rwm"),     # ptmx
    Rule("c", 136, None, "rwm"),  # pts/*
)
ALLOW_ALL = Rule("a")


def rules_for(security: Security, nodes: Iterable[Node] = ()) -> list[Rule]:
    """The container's rules (applied on top of a deny-all start): everything when
    privileged, else the defaults plus one allow rule per node.

    A node's rule is its requested access plus "m": lamina's init makes the node with
    mknod after it has joined the cgroup (runc makes nodes before the rules apply), and
    docker allows mknod of every device anyway, so this is still narrower than docker."""
    if security.privileged:
        return [ALLOW_ALL]
    rules = list(DEFAULT_RULES)
    for node in nodes:
        rule = Rule(node.type, node.major, node.minor, node.access + "m")
        if rule not in rules:
            rules.append(rule)
    for text in security.device_rules:  # --device-cgroup-rule: allowed as asked
        rule = parse_rule(text)
        if rule not in rules:
            rules.append(rule)
    return rules


# --- the v1 model --------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What a devices cgroup enforces: a default, and exceptions to it (v1's model)."""

    default_allow: bool = False
    exceptions: tuple[Rule, ...] = field(default_factory=tuple)

    def permits(self, kind: str, major: int, minor: int, access: str) -> bool:
        """The kernel's v1 check: deny-by-default needs one exception holding every
        requested access; allow-by-default refuses on any overlapping exception."""
        want = set(canonical_access(access))
        for ex in self.exceptions:
            if ex.type != kind or ex.major not in (None, major) or ex.minor not in (None, minor):
                continue
            if not self.default_allow and want <= set(ex.access):
                return True
            if self.default_allow and want & set(ex.access):
                return False
        return self.default_allow


def effective(rules: Iterable[Rule]) -> Policy:
    """Fold rules as the v1 kernel does after `a` went to devices.deny: an `a` rule resets
    the default and drops every exception; a rule against the default adds (or widens) the
    exception with the same type:major:minor; a rule with the default narrows it."""
    default_allow = False
    table: dict[tuple[str, int | None, int | None], str] = {}
    for rule in rules:
        if rule.type == "a":
            default_allow, table = rule.allow, {}
        elif rule.allow != default_allow:
            table[rule.key] = canonical_access(table.get(rule.key, "") + rule.access)
        elif rule.key in table:
            left = "".join(c for c in table[rule.key] if c not in rule.access)
            if left:
                table[rule.key] = left
            else:
                del table[rule.key]
    exceptions = tuple(Rule(k, ma, mi, acc, not default_allow)
                       for (k, ma, mi), acc in table.items())
    return Policy(default_allow, exceptions)


def policy_of_list(text: str) -> Policy:
    """A v1 `devices.list`: `a *:* rwm` alone means allow-all (the kernel then shows no
    exceptions), otherwise each line is an allowed exception to deny-all."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines == [render(ALLOW_ALL)]:
        return Policy(True)
    return Policy(False, tuple(parse_rule(line) for line in lines))


# --- nodes inside the container --------------------------------------------------------------


def inside_parts(path: str) -> list[str]:
    """The components of a node's path below /dev; refused when it would land outside the
    container's /dev tmpfs or on a name lamina's /dev setup owns."""
    clean = posixpath.normpath(path)
    if not path.startswith(DEV + "/") or clean != path.rstrip("/") or ".." in path.split("/"):
        raise BadInput(f"device path {path!r} must be a clean path under {DEV}/")
    parts = clean.split("/")[2:]
    if not parts or parts[0] in RESERVED:
        raise BadInput(f"device path {path!r} is reserved by the container's {DEV}")
    return parts


def container_nodes(extra: Sequence[Node]) -> list[Node]:
    """DEFAULT_NODES then `extra`; a later node at a path replaces an earlier one (as in
    runc, where a requested device overrides the default at the same path)."""
    by_path: dict[str, Node] = {}
    for node in (*DEFAULT_NODES, *extra):
        inside_parts(node.path)
        by_path.pop(node.path, None)
        by_path[node.path] = node
    return list(by_path.values())
