"""USER inside the container: names looked up in the container's own /etc/passwd and
/etc/group, read as text (NSS modules of the host must not be loaded into the container)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _entries(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip()
                    and not line.startswith("#")]
    except FileNotFoundError:
        return []


def resolve(user: str, etc: str = "/etc", group_add: Sequence[str] = ()) -> Identity:
    """`name`, `uid`, `name:group` or `uid:gid`, as docker accepts for --user; `group_add`
    (--group-add: names or gids) joins the supplementary groups."""
    name, _, group = (user or "0").partition(":")
    passwd = _entries(f"{etc}/passwd")
    entry = next((e for e in passwd if len(e) >= 6 and (e[0] == name or e[2] == name)), None)
    if entry is not None:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
    elif name.isdigit():
        uid, gid, home = int(name), int(name) if not group else 0, "/"
        gid = 0 if name == "0" else gid
    else:
        raise LookupError(f"unable to find user {name}: no matching entries in passwd file")
    groups_file = _entries(f"{etc}/group")
    if group:
        g = next((e for e in groups_file if len(e) >= 3 and (e[0] == group or e[2] == group)),
                 None)
        if g is None and not group.isdigit():
            raise LookupError(f"unable to find group {group}: no matching entries in group file")
        gid = int(g[2]) if g is not None else int(group)
    login = entry[0] if entry is not None else None
    extra = [int(e[2]) for e in groups_file
             if len(e) >= 4 and login and login in e[3].split(",")]
    extra += [_gid(g, groups_file) for g in group_add]
    ident = Identity(uid, gid, tuple(dict.fromkeys([gid, *extra])), home)
    require_mapped(ident)
    return ident


def _mapped(path: str) -> list[tuple[int, int]]:
    """The container ids a /proc/self/uid_map or gid_map maps, as [first, end) spans."""
    try:
        with open(path) as f:
            rows = [line.split() for line in f if line.strip()]
    except FileNotFoundError:  # no /proc: nothing to say
        return [(0, 1 << 32)]
    return [(int(inside), int(inside) + int(count)) for inside, _, count in rows]


def require_mapped(ident: Identity) -> None:
    """In a remapped container (a user namespace mapping 0-65535) an id outside the map
    can't be taken: one line naming it, instead of setuid's bare EINVAL. (A plain
    container's map is the host's, 0 to 2^32-2: everything passes.)"""
    for kind, ids in (("user", (ident.uid,)), ("group", ident.groups or (ident.gid,))):
        spans = _mapped(f"/proc/self/{'uid' if kind == 'user' else 'gid'}_map")
        for ident_id in ids:
            if not any(a <= ident_id < b for a, b in spans):
                shown = ", ".join(f"{a}-{b - 1}" for a, b in spans)
                raise LookupError(f"{kind} {ident_id} is outside the container's id map "
                                  f"({shown})")


def _gid(group: str, groups_file: list[list[str]]) -> int:
    entry = next((e for e in groups_file if len(e) >= 3 and e[0] == group), None)
    if entry is not None:
        return int(entry[2])
    if group.isdigit():
        return int(group)
    raise LookupError(f"unable to find group {group}: no matching entries in group file")
