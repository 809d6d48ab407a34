"""The union view: a container's rootfs as a real overlayfs mount of its image's layers.

Layout this module assumes (the same shape as docker's overlay2 driver):

    <layers_root>/<layer-id>/   a layer's diff directory (what `lowers` name)
    <layers_root>/l/<SHORT>     a symlink -> ../<layer-id>, SHORT being 26 characters

Why short links: mount(2) copies its option string from one page (4096 bytes). With layer
directories named by a 64-hex digest under /var/lib/..., every lowerdir costs ~100 bytes and the
page is full after ~40 layers. A short link costs 27 bytes (`NAME:`), so ~140 layers fit.

How the short names are used (the choice, and why): when the option string with absolute paths
fits the page we mount with absolute paths, because /proc/self/mountinfo then stays readable.
Only when it does not fit do we switch to `lowerdir=NAME:NAME:...`, relative to `<root>/l`, and
make the kernel resolve them by `chdir`-ing into `<root>/l` for the duration of the mount(2)
call (docker does this in a re-exec'd child). The working directory is per process, so the
switch is serialised by a lock and always undone (via fchdir to the saved directory) in a
`finally`. The alternative, `/proc/self/fd/N/NAME`, avoids touching the cwd but costs 16 more
bytes per layer, which would bring the limit back down to ~90 layers. Lamina uses absolute
paths everywhere else, so the short window in which the cwd differs harms no other thread.

Short names are derived, not random: SHORT = base32(sha256(layer-id))[:26] (130 bits). That
makes `link_name_for` idempotent and race-free without storing the name anywhere (docker keeps
it in a `link` file next to `diff/`; here the layer directory *is* the diff, so there is no room
for one), and two processes asking for the same layer agree on the name.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from adapters.kernel import libc

if TYPE_CHECKING:
    from adapters.kernel.idmap import IdMap

LINKS_DIR = "l"
SHORT_NAME_LEN = 26

# Overlay features that must be off for lamina's layers (see _feature_options()).
_OFF_FEATURES = ("index", "redirect_dir", "metacopy")
_MODULE_PARAMS = "/sys/module/overlay/parameters"
_OPTION_SPECIAL = re.compile(r"[,:\\]")
_CWD_LOCK = threading.Lock()


class OverlayError(OSError):
    """An overlay mount could not even be attempted (bad layout, options too long)."""


def link_name_for(layer_dir: str, layers_root: str | None = None) -> str:
    """Create (once) and return the short link name for a layer directory.

    The link is `<layers_root>/l/<SHORT>` -> relative path to `layer_dir`, so the whole store
    can be moved. Idempotent: calling it again returns the same name and leaves the link alone;
    a stale or wrong link of that name is atomically replaced.
    """
    links, name, want = _link_of(layer_dir, layers_root)
    os.makedirs(links, exist_ok=True)
    path = os.path.join(links, name)
    try:
        if os.readlink(path) == want:
            return name
    except FileNotFoundError:
        pass
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    os.symlink(want, tmp)
    os.replace(tmp, path)
    return name


def remove_link_for(layer_dir: str, layers_root: str | None = None) -> None:
    """Drop a layer's short link (when the layer itself is removed). Missing is fine."""
    links, name, _ = _link_of(layer_dir, layers_root)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(links, name))


def mount_overlay(lowers: list[str], upper: str, work: str, target: str,
                  layers_root: str | None = None) -> None:
    """Mount `lowers` (top-most first) under a writable `upper` at `target`.

    `work` must be an empty directory on the same filesystem as `upper`. With more layers
    than fit one page of options, all lowers must live below one `layers_root` (by default
    their common parent directory) so that their short links in `<layers_root>/l` can be used;
    an E2BIG OverlayError says when even those do not fit (~140 layers). The kernel itself caps
    the stack at 500 lowers.
    """
    if not lowers:
        raise OverlayError(errno.EINVAL, "an overlay needs at least one lower layer")
    lowers = [os.path.abspath(p) for p in lowers]
    upper, work = os.path.abspath(upper), os.path.abspath(work)
    for path in (upper, work):
        if _OPTION_SPECIAL.search(path):
            raise OverlayError(errno.EINVAL, f"overlay path has ',', ':' or '\\': {path}")
    features = _feature_options()
    absolute = _options(lowers, upper, work, features)
    if _fits_page(absolute) and not any(_OPTION_SPECIAL.search(p) for p in lowers):
        libc.mount("overlay", target, "overlay", 0, absolute)
        return
    links_dir, names = _short_links(lowers, layers_root)
    short = _options(names, _shorter(upper, links_dir), _shorter(work, links_dir), features)
    if not _fits_page(short):
        raise OverlayError(errno.E2BIG, f"{len(lowers)} layers do not fit one page of mount "
                                        f"options even with short links ({len(short)} bytes)")
    _mount_in(links_dir, target, short)


def mount_idmapped(lowers: list[str], rw_dir: str, target: str, idmap: IdMap) -> None:
    """Mount `lowers` (top-most first) under `rw_dir`/diff (work dir `rw_dir`/work) at
    `target`, every layer seen through `idmap`: a container of a --userns-remap root sees
    the image's files with their own owners (root's as its root's), and what it writes
    reaches the disk with container ids, so its layer commits and exports as any other.

    Each layer is a detached idmapped clone (open_tree + mount_setattr) handed to overlay
    as an fd (fsconfig "lowerdir+": kernel 6.13+), created as the container's root would
    (adapters/kernel/idmap.py, mount_overlay): nothing but the overlay itself is ever
    attached, so there is nothing else to unmount, and no page of options to fill."""
    from adapters.kernel import idmap as idmaps

    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fds: list[int] = []
    try:
        with idmaps.userns_holding(idmap) as ns:
            fds += [idmaps.idmapped_tree(os.path.abspath(p), ns) for p in lowers]
            top = idmaps.idmapped_tree(os.path.abspath(rw_dir), ns)
            fds.append(top)
        upper = os.open("diff", flags, dir_fd=top)
        fds.append(upper)
        work = os.open("work", flags, dir_fd=top)
        fds.append(work)
        idmaps.mount_overlay(fds[:len(lowers)], upper, work, target, idmap,
                             _feature_options())
    finally:
        for fd in fds:
            os.close(fd)


@contextlib.contextmanager
def overlay_view(lowers: list[str], upper: str, work: str, target: str,
                 layers_root: str | None = None) -> Iterator[str]:
    """`mount_overlay` for the length of a `with` block; always unmounted afterwards."""
    mount_overlay(lowers, upper, work, target, layers_root)
    try:
        yield target
    finally:
        unmount(target)


def unmount(target: str) -> None:
    """Unmount `target`; fall back to a lazy (MNT_DETACH) unmount only if it is busy.

    Not mounted is not an error: teardown after a crash must be able to run twice.
    """
    try:
        libc.umount(target)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            libc.umount(target, libc.MNT_DETACH)
        elif exc.errno in (errno.EINVAL, errno.ENOENT) and not is_mounted(target):
            return
        else:
            raise


def is_mounted(target: str) -> bool:
    """Whether `target` is a mount point of this mount namespace, by /proc/self/mountinfo.

    Why not compare st_dev with the parent's: a bind mount of the same filesystem has the same
    st_dev, and an overlay reports the st_dev of its layers for non-directories.
    """
    return os.path.realpath(target) in mount_points()


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, in /proc/self/mountinfo order."""
    with open("/proc/self/mountinfo", "rb") as f:
        return [_unescape(line.split(b" ")[4]) for line in f if line.strip()]


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path`, in mount order: a teardown unmounts them reversed."""
    root = os.path.realpath(path)
    return [m for m in mount_points() if m == root or m.startswith(root.rstrip("/") + "/")]


def _unescape(field: bytes) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    if b"\\" not in field:  # nearly every mount point: no regular expression to run
        return os.fsdecode(field)
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def _feature_options() -> list[str]:
    """`X=off` for each overlay feature that this host turns on by default.

    Why each must be off, and why only when needed (every option costs bytes of the page):
    - index: ties an upper dir to the exact lower inodes it was first mounted over; a layer
      re-extracted or moved would then fail to mount with ESTALE.
    - redirect_dir: a renamed lower directory would be recorded as a trusted.overlay.redirect
      xattr, which a layer tar cannot carry; off, rename(2) gives EXDEV and tools copy instead,
      so the upper dir holds a plain copy plus a whiteout.
    - metacopy: a chmod would copy up only metadata, leaving an empty data-less file in the
      upper dir that a layer tar would record as empty.
    A host whose module default is unknown gets the option anyway: all kernels lamina supports
    accept it.
    """
    opts = []
    for feature in _OFF_FEATURES:
        try:
            with open(os.path.join(_MODULE_PARAMS, feature)) as f:
                on = f.read().strip() not in ("N", "0", "off")
        except OSError:
            on = True
        if on:
            opts.append(f"{feature}=off")
    return opts


def _fits_page(options: str) -> bool:
    return len(os.fsencode(options)) + 1 <= os.sysconf("SC_PAGE_SIZE")


def _link_of(layer_dir: str, layers_root: str | None) -> tuple[str, str, str]:
    """(links dir, short name, link target relative to the links dir) for a layer."""
    layer_dir = os.path.abspath(layer_dir)
    root = os.path.abspath(layers_root) if layers_root else os.path.dirname(layer_dir)
    links = os.path.join(root, LINKS_DIR)
    digest = hashlib.sha256(os.fsencode(os.path.relpath(layer_dir, root))).digest()
    name = base64.b32encode(digest).decode("ascii")[:SHORT_NAME_LEN]
    return links, name, os.path.relpath(layer_dir, links)


def _options(lowers: list[str], upper: str, work: str, features: list[str]) -> str:
    return ",".join([f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}",
                     *features])


def _short_links(lowers: list[str], layers_root: str | None) -> tuple[str, list[str]]:
    given = {os.path.abspath(layers_root)} if layers_root else None
    roots = given or {os.path.dirname(p) for p in lowers}
    if len(roots) != 1:
        raise OverlayError(errno.EINVAL, "too many layers for absolute paths, and they do not "
                                         "share one layers root for short links")
    root = roots.pop()
    return os.path.join(root, LINKS_DIR), [link_name_for(p, root) for p in lowers]


def _shorter(path: str, base: str) -> str:
    """`path` relative to `base` when that is shorter (the mount then runs in `base`)."""
    rel = os.path.relpath(path, base)
    return rel if len(rel) < len(path) else path


def _mount_in(cwd: str, target: str, options: str) -> None:
    """mount(2) with relative option paths resolved in `cwd`; the process cwd is restored."""
    target = os.path.abspath(target)
    with _CWD_LOCK:
        saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(cwd)
            libc.mount("overlay", target, "overlay", 0, options)
        finally:
            os.fchdir(saved)
            os.close(saved)
