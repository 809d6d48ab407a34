"""USER inside the container: names looked up in the container's own /etc/passwd and
/etc/group, read as text (NSS modules of the host must not be loaded into the container)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from adapters.kernel import inroot

# A file's text by its path as the container names it, or None if it has none there.
Reader = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def read_here(path: str) -> str | None:
    """The file at `path` in this process's own view (a container's init, after its
    pivot_root)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_in_root(root: int, path: str) -> str | None:
    """A small text file of a container (its /etc/passwd) found inside `root` (an fd of its
    root: symlinks never lead out), opened only once fstat says it is a regular file (a
    FIFO there never blocks us); None if it has none."""
    try:
        fd = inroot.open_in_root(root, path, os.O_PATH)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = inroot.reopen(fd, os.O_RDONLY)
        try:
            return os.read(data, 1 << 20).decode(errors="replace")
        finally:
            os.close(data)
    finally:
        os.close(fd)


def entries(text: str | None) -> list[list[str]]:
    return [line.split(":") for line in (text or "").splitlines() if line.strip()
            and not line.startswith("#")]


def resolve(user: str, etc: str = "/etc", group_add: Sequence[str] = (),
            read: Reader = read_here) -> Identity:
    """`name`, `uid`, `name:group` or `uid:gid`, as docker accepts for --user; `group_add`
    (--group-add: names or gids) joins the supplementary groups. `read` gives the
    container's files (its /etc's and /proc/self/uid_map, gid_map) as the container sees
    them: this process's own by default."""
    name, _, group = (user or "0").partition(":")
    passwd = entries(read(f"{etc}/passwd"))
    entry = next((e for e in passwd if len(e) >= 6 and (e[0] == name or e[2] == name)), None)
    if entry is not None:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
    elif name.isdigit():
        uid, gid, home = int(name), int(name) if not group else 0, "/"
        gid = 0 if name == "0" else gid
    else:
        raise LookupError(f"unable to find user {name}: no matching entries in passwd file")
    groups_file = entries(read(f"{etc}/group"))
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
    require_mapped(ident, read)
    return ident


def _mapped(text: str | None) -> list[tuple[int, int]]:
    """The container ids a /proc/self/uid_map or gid_map maps, as [first, end) spans."""
    if text is None:  # no /proc: nothing to say
        return [(0, 1 << 32)]
    rows = [line.split() for line in text.splitlines() if line.strip()]
    return [(int(inside), int(inside) + int(count)) for inside, _, count in rows]


def require_mapped(ident: Identity, read: Reader = read_here) -> None:
    """In a remapped container (a user namespace mapping 0-65535) an id outside the map
    can't be taken: one line naming it, instead of setuid's bare EINVAL. (A plain
    container's map is the host's, 0 to 2^32-2: everything passes.)"""
    for kind, ids in (("user", (ident.uid,)), ("group", ident.groups or (ident.gid,))):
        spans = _mapped(read(f"/proc/self/{'uid' if kind == 'user' else 'gid'}_map"))
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
