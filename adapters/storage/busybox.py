"""A busybox root filesystem, built on the spot from Debian's `busybox-static`.

Why built and not committed: the repository holds no binaries, and the host's package is
kept patched by apt. Why static: the rootfs holds no libc, so a dynamically linked busybox
(Debian's plain `busybox` package) could not even start in it.

The tree is deterministic for a given busybox binary: every mtime is the binary's own (whole
seconds), modes are explicit (not left to the umask), so its tar and diff_id are stable and
tests and the demo can rely on one image id per host package version.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from typing import BinaryIO

from adapters.storage.layertar import write_layer_tar

DEFAULT_BUSYBOX = "/bin/busybox"
INSTALL_HINT = "apt-get install -y busybox-static"
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\nnogroup:x:65534:\n"
# directory -> mode; tmp is world-writable and sticky, root's home is private
DIRS = {"bin": 0o755, "etc": 0o755, "tmp": 0o1777, "proc": 0o555, "sys": 0o555,
        "dev": 0o755, "root": 0o700, "home": 0o755}
_PT_INTERP = 3


def find_busybox(path: str | None = None) -> str:
    """The static busybox to use: `path`, else /bin/busybox, else `busybox` on PATH."""
    candidate = path or (DEFAULT_BUSYBOX if os.path.exists(DEFAULT_BUSYBOX)
                         else shutil.which("busybox"))
    if not candidate or not os.path.isfile(candidate):
        raise FileNotFoundError(f"no busybox binary found; {INSTALL_HINT}")
    if not _is_static(candidate):
        raise RuntimeError(f"{candidate} is dynamically linked and cannot run in a bare "
                           f"rootfs; {INSTALL_HINT}")
    return candidate


def applets(busybox: str) -> list[str]:
    """The applet names this busybox was built with (`busybox --list`), sorted."""
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True)
    return sorted({a for a in out.stdout.split() if a and "/" not in a and a != "busybox"})


def build_busybox_rootfs(dest: str, busybox: str | None = None) -> str:
    """Build the rootfs in `dest` (created; must not exist or be empty); return `dest`.

    bin/busybox plus a relative symlink bin/<applet> -> busybox for every applet, etc/passwd
    (root, nobody), etc/group, and empty tmp (1777), proc, sys, dev, root, home.
    """
    binary = find_busybox(busybox)
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise FileExistsError(f"busybox rootfs target is not empty: {dest}")
    for name, mode in DIRS.items():
        os.mkdir(os.path.join(dest, name))
        os.chmod(os.path.join(dest, name), mode)
    shutil.copyfile(binary, os.path.join(dest, "bin", "busybox"))
    os.chmod(os.path.join(dest, "bin", "busybox"), 0o755)
    for applet in applets(binary):
        os.symlink("busybox", os.path.join(dest, "bin", applet))
    _write(os.path.join(dest, "etc", "passwd"), PASSWD)
    _write(os.path.join(dest, "etc", "group"), GROUP)
    _set_mtimes(dest, int(os.stat(binary).st_mtime))
    return dest


def write_busybox_rootfs_tar(out: BinaryIO, busybox: str | None = None) -> tuple[str, int]:
    """Write the busybox rootfs as a layer tar to `out`; return (diff_id, size)."""
    with tempfile.TemporaryDirectory(prefix="lamina-busybox-") as tmp:
        root = build_busybox_rootfs(os.path.join(tmp, "rootfs"), busybox)
        return write_layer_tar(root, out)


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o644)


def _set_mtimes(root: str, mtime: int) -> None:
    """One mtime for everything, children before parents (creating children bumps them)."""
    for top, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(top, name), (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))


def _is_static(path: str) -> bool:
    """An ELF file without a PT_INTERP program header needs no dynamic loader."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF":
            return False
        is64, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
        layout = "32xQ14xHH" if is64 else "28xI10xHH"  # e_phoff, e_phentsize, e_phnum
        phoff, phentsize, phnum = struct.unpack_from(order + layout, ident)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    types = (struct.unpack_from(order + "I", table, i * phentsize)[0] for i in range(phnum))
    return _PT_INTERP not in types
