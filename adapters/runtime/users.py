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
    return Identity(uid, gid, tuple(dict.fromkeys([gid, *extra])), home)


def _gid(group: str, groups_file: list[list[str]]) -> int:
    entry = next((e for e in groups_file if len(e) >= 3 and e[0] == group), None)
    if entry is not None:
        return int(entry[2])
    if group.isdigit():
        return int(group)
    raise LookupError(f"unable to find group {group}: no matching entries in group file")
