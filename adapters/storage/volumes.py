"""The VolumeStore port on disk, laid out as docker's local volume driver lays it out:

    <root>/volumes/                  0701 root's: the volumes, not listable by others
    <root>/volumes/<name>/           0701 root's: one volume (its `owner` stamp beside _data)
    <root>/volumes/<name>/_data/     0755: the volume's files, what a container mounts
    <root>/tmp/                      staging: a volume is made here, then renamed in place

The modes are moby's (daemon/volume/local/local.go): the volumes directory and each volume's
directory 0701, so that a remapped container root can reach `_data` without reading the
rest; `_data` 0755.

A volume appears by one rename of a staged directory, complete, or not at all; it goes by one
rename out of sight into <root>/tmp, then is deleted there: a crash never leaves a half-made
or half-deleted volume in <root>/volumes. Each volume's directory holds the `pid.starttime`
of the process that made it (`owner`): until that process has ended, the volume may be one
its maker is about to record, so `names` (what reconciliation compares with the log) leaves
out the volumes of other live makers. This module also gives docker's JSON of a volume
(`doc`), which `volume inspect` and the Docker API's /volumes share.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from typing import Any

from core.errors import BadInput

VOLUMES = "volumes"
DATA = "_data"
OWNER = "owner"
ROOT_MODE = 0o701  # <root>/volumes and each <root>/volumes/<name> (moby's)
DATA_MODE = 0o755  # <root>/volumes/<name>/_data (moby's)
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # docker's mark of an anonymous volume
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # docker's; no `/`, no leading `.`


def _no_fault(name: str) -> None:
    """No fault point is armed (see adapters/faults.py)."""


class LinuxVolumeStore:
    """The VolumeStore port (core/ports.py) under `<root>/volumes`."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.volumes_dir = os.path.join(root, VOLUMES)
        self.tmp_dir = os.path.join(root, "tmp")
        self.fault: Callable[[str], None] = _no_fault  # adapters/faults.py arms it

    def volume_dir(self, name: str) -> str:
        return os.path.join(self.volumes_dir, _checked(name))

    def path(self, name: str) -> str:
        return os.path.join(self.volume_dir(name), DATA)

    def exists(self, name: str) -> bool:
        return os.path.isdir(self.path(name))

    def create(self, name: str) -> str:
        data = self.path(name)
        if os.path.isdir(data):
            return data
        self._dirs()
        stage = tempfile.mkdtemp(dir=self.tmp_dir, prefix=f"vol-{_owner()}-")
        try:
            os.chmod(stage, ROOT_MODE)
            os.mkdir(os.path.join(stage, DATA))
            os.chmod(os.path.join(stage, DATA), DATA_MODE)  # whatever the umask
            with open(os.path.join(stage, OWNER), "w") as f:
                f.write(_owner())  # a live maker may yet record it
            self.fault("volumes.staged")
            try:
                os.rename(stage, self.volume_dir(name))
            except OSError as err:  # made meanwhile by another process: that one is it
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not os.path.isdir(data):
                    raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return data

    def remove(self, name: str) -> None:
        path = self.volume_dir(name)
        if not os.path.lexists(path):
            return
        os.makedirs(self.tmp_dir, exist_ok=True)
        doomed = tempfile.mkdtemp(dir=self.tmp_dir, prefix=f"rm-{_owner()}-")
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile: that's removed
            os.rename(path, os.path.join(doomed, "x"))
        self.fault("volumes.hidden")
        shutil.rmtree(doomed, ignore_errors=True)

    def size(self, name: str) -> int:
        """Bytes of its files (directories not counted, a hard-linked file once)."""
        total, seen = 0, set()
        for dirpath, dirs, files in os.walk(self.path(name)):
            for entry in (*dirs, *files):
                try:
                    st = os.lstat(os.path.join(dirpath, entry))
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total

    def names(self) -> list[str]:
        """The volumes on disk, but those another process is still making (its stamp names
        a live process): that process may yet record them."""
        try:
            entries = sorted(os.listdir(self.volumes_dir))
        except FileNotFoundError:
            return []
        mine = _owner()
        out = []
        for name in entries:
            if not _NAME.fullmatch(name):
                continue
            try:
                with open(os.path.join(self.volumes_dir, name, OWNER)) as f:
                    owner = f.read().strip()
            except OSError:
                owner = ""
            if owner and owner != mine and _alive(owner):
                continue
            out.append(name)
        return out

    def empty(self, name: str) -> bool:
        try:
            return not os.listdir(self.path(name))
        except FileNotFoundError:
            return True

    def bind_source(self, path: str, *, create: bool) -> None:
        if os.path.exists(path):
            return
        if not create:
            raise BadInput(f'invalid mount config for type "bind": bind source path does not '
                           f"exist: {path}")
        os.makedirs(path, 0o755, exist_ok=True)

    def _dirs(self) -> None:
        os.makedirs(self.tmp_dir, exist_ok=True)
        if not os.path.isdir(self.volumes_dir):
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.volumes_dir, ROOT_MODE)
            os.chmod(self.volumes_dir, ROOT_MODE)


def _checked(name: str) -> str:
    """A volume's name is a path component here: refuse anything else, whoever asks."""
    if not _NAME.fullmatch(name):
        raise BadInput(f"invalid volume name {name!r}")
    return name


def _owner() -> str:
    from adapters.kernel.proc import stamp

    return stamp()


def _alive(owner: str) -> bool:
    from adapters.kernel.proc import stamp_alive

    return stamp_alive(owner)


# --- docker's JSON of a volume -------------------------------------------------------------


def doc(volume: Any, mountpoint: str) -> dict[str, Any]:
    """A volume as docker's `volume inspect` and the API's /volumes show it (its fields in
    docker's order); an anonymous one carries docker's anonymous label."""
    labels = dict(volume.labels)
    if volume.anonymous:
        labels.setdefault(ANONYMOUS_LABEL, "")
    return {"CreatedAt": created_at(volume.created), "Driver": volume.driver,
            "Labels": labels, "Mountpoint": mountpoint, "Name": volume.id,
            "Options": dict(volume.options), "Scope": "local"}


def created_at(at: str) -> str:
    """The log's `at` (UTC, microseconds) as docker's CreatedAt (RFC 3339, seconds)."""
    return at[:19] + "Z" if len(at) >= 19 else at
