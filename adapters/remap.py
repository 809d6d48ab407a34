"""`--userns-remap`'s setting resolved on this host: the user, its subordinate ids, the maps.

As docker's: `default` is a system user of lamina's own, `laminaremap` (docker's is
`dockremap`), made with useradd when missing, which also gives it a 65536-id range in
/etc/subuid and /etc/subgid (`--add-subids-for-system`); `USER[:GROUP]` uses the ranges the
administrator gave USER (and GROUP), which lamina never edits. Each user's ranges are laid
end to end from container id 0 (adapters/kernel/idmap.py, `idmap_for`).

Refused, in one line each: fewer than 65536 ids (container ids 0-65535 must all map: nobody
is 65534), a range holding host id 0 (container root would be host root), a range another
line of the file also hands out (two tenants sharing host ids would see each other's files
as their own), and a root whose filesystem or kernel can't give a container idmapped layers
(tried for real, once, on a tiny overlay under the root).

Tests never touch the host's users: $LAMINA_SUBID_PREFIX names a directory holding
etc/passwd, group, shadow, gshadow, login.defs, subuid and subgid, which useradd and usermod
edit instead (their --prefix) and whose subuid/subgid are read; it is recorded as `source`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from adapters.kernel import idmap as idmaps
from adapters.kernel.idmap import IdMap, IdRange, SubordinateRange
from core.errors import LaminaError
from core.rootconfig import DEFAULT_USER, RootConfig

PREFIX_ENV = "LAMINA_SUBID_PREFIX"
NEEDED = 65536  # container ids 0..65535
FIRST_FREE = 100000  # where shadow starts handing out subordinate ids (SUB_UID_MIN)
STORAGE = "idmapped"


class RemapError(LaminaError):
    """The setting can't be used on this host; the message says why."""


def source() -> str:
    """The directory holding etc/subuid etc.: "/" for the host, or the test prefix."""
    return os.path.abspath(os.environ.get(PREFIX_ENV) or "/")


def _etc(prefix: str, name: str) -> str:
    return os.path.join(prefix, "etc", name)


def resolve(setting: str, root: str) -> RootConfig:
    """The RootConfig of a setting ("" off, "default", USER[:GROUP]) for the root `root`."""
    if not setting:
        return RootConfig()
    prefix = source()
    if setting == "default":
        user = group = ensure_default(prefix)
    else:
        user, _, group = setting.partition(":")
        group = group or user
        if passwd_uid(prefix, user) is None:
            raise RemapError(f"--userns-remap {setting}: no user {user} in "
                             f"{_etc(prefix, 'passwd')}")
    idmap = IdMap(laid_out(prefix, "subuid", user), laid_out(prefix, "subgid", group))
    probe(root, idmap)
    return RootConfig(userns_remap=setting, user=user,
                      uid_map=tuple((r.inside, r.outside, r.count) for r in idmap.uids),
                      gid_map=tuple((r.inside, r.outside, r.count) for r in idmap.gids),
                      storage=STORAGE, source=prefix)


def idmap_of(config: RootConfig) -> IdMap | None:
    """The maps a root's containers run under; None when the root is not remapped."""
    if not config.remapped:
        return None
    return IdMap.from_rows(config.uid_map, config.gid_map)


# --- users ------------------------------------------------------------------------------------


def passwd_uid(prefix: str, name: str) -> int | None:
    """`name`'s uid in the prefix's passwd file, read as text (a prefix's users are not in
    this host's NSS; on the host the file is what useradd wrote)."""
    try:
        with open(_etc(prefix, "passwd")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                    return int(fields[2])
    except FileNotFoundError:
        pass
    return None


def _prefixed(prefix: str) -> list[str]:
    return [] if prefix == "/" else ["--prefix", prefix]


def _run(argv: list[str]) -> None:
    tool = shutil.which(argv[0])
    if tool is None:
        raise RemapError(f"--userns-remap default needs {argv[0]} (Debian: passwd)")
    done = subprocess.run([tool, *argv[1:]], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise RemapError(f"{argv[0]} failed: {reason}")


def ensure_default(prefix: str) -> str:
    """laminaremap, made if missing (a system user, no home, no shell, with subordinate
    ids), and given a free 65536-id block if it has none (an older user, or ids removed)."""
    if passwd_uid(prefix, DEFAULT_USER) is None:
        _run(["useradd", *_prefixed(prefix), "--system", "--add-subids-for-system",
              "--no-create-home", "--shell", "/usr/sbin/nologin", DEFAULT_USER])
    missing = [kind for kind in ("subuid", "subgid")
               if not _ranges(prefix, kind, DEFAULT_USER)]
    if missing:
        start = free_block(prefix)
        span = f"{start}-{start + NEEDED - 1}"
        _run(["usermod", *_prefixed(prefix),
              *(arg for kind in missing for arg in (f"--add-{kind}s", span)), DEFAULT_USER])
    return DEFAULT_USER


def free_block(prefix: str) -> int:
    """The lowest 65536-aligned block at or above 100000 that no line of subuid or subgid
    hands out (to anyone)."""
    taken = [(r.start, r.start + r.count) for kind in ("subuid", "subgid")
             for _, r in all_ranges(_etc(prefix, kind))]
    start = FIRST_FREE
    while any(a < start + NEEDED and start < b for a, b in taken):
        start += NEEDED
    return start


# --- subordinate ids --------------------------------------------------------------------------


def all_ranges(path: str) -> list[tuple[str, SubordinateRange]]:
    """Every `name:start:count` line of a subuid/subgid file (a missing file has none)."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise RemapError(f"{path}:{number}: not name:start:count: {text!r}")
        out.append((parts[0], SubordinateRange(int(parts[1]), int(parts[2]))))
    return out


def _ranges(prefix: str, kind: str, name: str) -> list[SubordinateRange]:
    path = _etc(prefix, kind)
    if not os.path.exists(path):
        return []
    try:
        return idmaps.subordinate_ranges(path, name, passwd_uid(prefix, name))
    except OSError as err:
        raise RemapError(err.strerror or str(err)) from None


def laid_out(prefix: str, kind: str, name: str) -> tuple[IdRange, ...]:
    """`name`'s ranges in etc/`kind`, laid end to end from container id 0, checked."""
    path = _etc(prefix, kind)
    ranges = _ranges(prefix, kind, name)
    total = sum(r.count for r in ranges)
    if total < NEEDED:
        raise RemapError(f"{name} has {total} subordinate ids in {path}: a remapped root "
                         f"needs {NEEDED} (container ids 0-{NEEDED - 1})")
    owners = {name, str(passwd_uid(prefix, name))}
    for r in ranges:
        if r.start == 0:
            raise RemapError(f"{path}: {name}'s range {r.start}:{r.count} holds host id 0: "
                             "container root would be host root")
        shared = sorted({other for other, o in all_ranges(path) if other not in owners
                         and o.start < r.start + r.count and r.start < o.start + o.count})
        if shared:
            raise RemapError(f"{path}: {name}'s range {r.start}:{r.count} is also given to "
                             f"{', '.join(shared)}")
    return idmaps.laid_out(ranges)


# --- what the kernel and the root's filesystem support ------------------------------------------


def probe(root: str, idmap: IdMap) -> None:
    """Mount an idmapped overlay under the root, write through it as container root, unmount:
    what every remapped container's start does (idmapped layers on the root's filesystem,
    overlay from fds, a writable upper). Refused here rather than at the first start."""
    from adapters.storage import overlay

    work = os.path.join(root, "tmp")
    os.makedirs(work, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="userns-probe-") as tmp:
        for sub in ("lower", "rw/diff", "rw/work", "merged"):
            os.makedirs(os.path.join(tmp, sub))
        merged = os.path.join(tmp, "merged")
        try:
            overlay.mount_idmapped([os.path.join(tmp, "lower")], os.path.join(tmp, "rw"),
                                   merged, idmap)
            try:
                with idmaps.mapped_creator(idmap), \
                        open(os.path.join(merged, "probe"), "w") as f:
                    f.write("x")  # as the container's root writes
                written = os.stat(os.path.join(tmp, "rw/diff/probe")).st_uid
            finally:
                overlay.unmount(merged)
        except OSError as err:
            raise RemapError(f"this host can't give a remapped container its layers under "
                             f"{root}: {err.strerror or err}") from None
        if written != 0:
            raise RemapError("idmapped layers wrote shifted ids: not usable")


def check(config: RootConfig) -> list[str]:
    """What `system check` says about a remapped root's ranges today (none when they are
    still the user's, and only the user's): a range moved, shrunk or handed to another user
    means containers of this root could share host ids with someone else's."""
    if not config.remapped:
        return []
    want = idmap_of(config)
    assert want is not None
    group = config.userns_remap.partition(":")[2] or config.user
    try:
        now = IdMap(laid_out(config.source, "subuid", config.user),
                    laid_out(config.source, "subgid", group))
    except (LaminaError, OSError) as err:
        return [f"the root's --userns-remap ({config.userns_remap}) no longer holds: {err}"]
    if now != want:
        return [f"the root's --userns-remap ({config.userns_remap}) maps container root to "
                f"host {want.host_uid(0)}:{want.host_gid(0)}, but {config.source} now gives "
                f"{config.user} {now.host_uid(0)}:{now.host_gid(0)}"]
    return []

