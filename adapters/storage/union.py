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


def changes(upper: str, lowers: Sequence[str]) -> list[tuple[str, str]]:
    """docker diff of an overlay upper dir: (kind, /path) with kind A, C or D, sorted by path.

    A whiteout (0/0 character device) is D. An opaque directory is C if it existed below
    (A if not): its old contents are gone, and what it holds now is listed. Any other entry
    is C if the lower layers have that path, A if not; a directory that only carries
    unchanged metadata is left out, unless something below it was added or deleted (docker
    then lists it as C).
    """
    out: dict[str, str] = {}
    for rel, st in _walk(upper):
        path = "/" + rel
        if is_whiteout(st):
            kind = "D"
        else:
            below = union_stat(lowers, rel)
            if below is None:
                kind = "A"
            elif stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(below.st_mode) and \
                    not is_opaque(os.path.join(upper, rel)) and _same_dir(st, below):
                continue
            else:
                kind = "C"
        out[path] = kind
        parent = os.path.dirname(path)
        if kind in "AD" and parent != "/" and parent not in out:
            out[parent] = "C"
    return sorted(((k, p) for p, k in out.items()), key=lambda kp: kp[1])


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
