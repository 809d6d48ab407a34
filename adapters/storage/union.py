"""The union of overlay layers as docker sees it: how a path looks through the lower layers,
overlay's whiteouts and opaque directories, and `docker diff` of an upper (read-write) layer.

Apart from the store (adapters/storage/store.py), which builds on it, so that the store's
`changes` (the LayerStore port's diff) and the queries of adapters/storage/inspect.py share
it without importing each other.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence

OVERLAY_OPAQUE = "trusted.overlay.opaque"


def union_stat(lowers: Sequence[str], rel: str) -> os.stat_result | None:
    """How the path looks in the union of the lower layers (top first); None if absent."""
    parts = rel.split("/")
    for lower in lowers:
        try:
            st = os.lstat(os.path.join(lower, rel))
        except (FileNotFoundError, NotADirectoryError):
            if _hides_below(lower, parts):
                return None
            continue
        return None if is_whiteout(st) else st
    return None


def _hides_below(lower: str, parts: list[str]) -> bool:
    """Whether this layer hides the path in the layers under it: a parent deleted, replaced
    by a non-directory, or made opaque."""
    for i in range(1, len(parts)):
        path = os.path.join(lower, *parts[:i])
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISDIR(st.st_mode) or is_opaque(path):
            return True
    return False


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    """An overlay directory that hides everything below it (trusted.overlay.opaque=y)."""
    try:
        return os.getxattr(path, OVERLAY_OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def changes(upper: str | Sequence[str], lowers: Sequence[str]) -> list[tuple[str, str]]:
    """docker diff of an overlay upper dir: (kind, /path) with kind A, C or D, sorted by path.

    A whiteout (0/0 character device) is D. An opaque directory is C if it existed below
    (A if not): its old contents are gone, and what it holds now is listed. Any other entry
    is C if the lower layers have that path, A if not; a directory that only carries
    unchanged metadata is left out, unless something below it was added or deleted (docker
    then lists it as C).

    `upper` may be several dirs stacked, top-most first (a container committed by rename
    keeps what its upper held as lowers of its own: store.py): they count as one upper, and
    a whiteout there of what the lower layers never had but a dir under it in the stack
    did (added, committed, then deleted) is no change.
    """
    stacked = not isinstance(upper, str)
    entries = (stacked_entries(upper) if not isinstance(upper, str) else
               ((rel, upper, st, False) for rel, st in _walk(upper)))
    out: dict[str, str] = {}
    for rel, top, st, opaque in entries:
        path = "/" + rel
        below = union_stat(lowers, rel) if stacked or not is_whiteout(st) else None
        if is_whiteout(st):
            if below is None and stacked and _added_below(upper, top, rel):
                continue
            kind = "D"
        elif below is None:
            kind = "A"
        elif stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(below.st_mode) and \
                not (opaque or is_opaque(os.path.join(top, rel))) and _same_dir(st, below):
            continue
        else:
            kind = "C"
        out[path] = kind
        parent = os.path.dirname(path)
        if kind in "AD" and parent != "/" and parent not in out:
            out[parent] = "C"
    return sorted(((k, p) for p, k in out.items()), key=lambda kp: kp[1])


def _added_below(uppers: Sequence[str], top: str, rel: str) -> bool:
    """Whether a dir of the stack under `top` has the path `rel`."""
    below = list(uppers)[list(uppers).index(top) + 1:]
    return any(os.path.lexists(os.path.join(u, rel)) for u in below)


def stacked_entries(uppers: Sequence[str], rel: str = ""
                    ) -> Iterator[tuple[str, str, os.stat_result, bool]]:
    """The entries of overlay upper dirs stacked top-most first, as overlay would merge
    them: (relative path, the dir its top-most copy is in, its lstat, opaque), parents
    before children. What a whiteout, a non-directory or an opaque directory hides in the
    dirs under it is left out; a directory is opaque (it hides the lower layers' one) if
    a copy of it that takes part in the merge is, or if one sits on a non-directory."""
    names: dict[str, int] = {}
    for i, top in enumerate(uppers):
        try:
            with os.scandir(os.path.join(top, rel)) as found:
                for entry in found:
                    names.setdefault(entry.name, i)
        except (FileNotFoundError, NotADirectoryError):
            continue
    for name in sorted(names):
        i, child = names[name], os.path.join(rel, name)
        st = os.lstat(os.path.join(uppers[i], child))
        if not stat.S_ISDIR(st.st_mode):
            yield child, uppers[i], st, False
            continue
        merged, opaque = [uppers[i]], is_opaque(os.path.join(uppers[i], child))
        for below in uppers[i + 1:]:
            if opaque:
                break
            try:
                under = os.lstat(os.path.join(below, child))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(under.st_mode):
                opaque = True
                break
            merged.append(below)
            opaque = is_opaque(os.path.join(below, child))
        yield child, uppers[i], st, opaque
        yield from stacked_entries(merged, child)


def _walk(top: str) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything below top, parents before children."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(top, rel)), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in reversed(entries):
            child = os.path.join(rel, entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)
            yield child, st


def _same_dir(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_mode == b.st_mode and int(a.st_mtime) == int(b.st_mtime) and \
        a.st_uid == b.st_uid and a.st_gid == b.st_gid
