"""The two layer stores the LayerStore, Archive and Registry contracts run against, each with
the few ways to look at it that the port does not offer (a layer's files, writing into a
read-write layer, what is left behind).

Files are {relative path: text}; a layer here holds only regular files (and the directories
above them).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.memory import CountingIds, MemoryLayerStore, layer_bytes, layer_files
from tests.conftest import require_root

Files = dict[str, str]


class MemoryStoreHooks:
    """core.memory.MemoryLayerStore: layers are dicts of files."""

    def make_store(self, path: Path) -> MemoryLayerStore:
        return MemoryLayerStore(ids=CountingIds(n=10**6))

    def source(self, files: Files) -> Any:
        return dict(files)

    def not_a_layer(self) -> Any:
        return io.BytesIO(b"\x00 this is no layer")

    def files(self, store: MemoryLayerStore, layer_id: str) -> Files:
        return dict(store.layers[layer_id])

    def write(self, store: MemoryLayerStore, rw_layer: str, files: Files) -> None:
        store.rw[rw_layer].update(files)

    def damage(self, store: MemoryLayerStore, layer_id: str) -> None:
        name = next(iter(store.layers[layer_id]))
        store.layers[layer_id][name] += "!"

    def names(self, store: MemoryLayerStore) -> set[str]:
        """Every layer, read-only or read-write, the store holds."""
        return set(store.layers) | set(store.rw)

    def leftovers(self, store: MemoryLayerStore) -> list[str]:
        """What the store keeps beside its layers (staging, mounts): nothing, here."""
        return []

    def exported(self, data: bytes) -> Files:
        return layer_files(data)

    def blob_files(self, data: bytes) -> Files:
        return layer_files(data)

    def as_blob(self, files: Files) -> bytes:
        return layer_bytes(files)


class LinuxStoreHooks:
    """adapters.storage.store.LinuxLayerStore under a temporary root (kernel: root, overlayfs);
    afterwards nothing may be mounted under it."""

    pytestmark = pytest.mark.kernel

    @pytest.fixture(autouse=True)
    def _host_left_clean(self, tmp_path: Path) -> Iterator[None]:
        require_root()
        yield
        from adapters.storage.overlay import mounts_under, unmount

        left = mounts_under(str(tmp_path))
        for target in reversed(left):
            unmount(target)
        assert left == [], "the store left mounts behind"

    def make_store(self, path: Path) -> Any:
        from adapters.storage.store import LinuxLayerStore

        return LinuxLayerStore(str(path))

    def source(self, files: Files) -> Any:
        return io.BytesIO(layer_tar(files))

    def not_a_layer(self) -> Any:
        return io.BytesIO(b"\x00 this is no layer" * 64)

    def files(self, store: Any, layer_id: str) -> Files:
        return tree_files(store.diff_dir(layer_id))

    def write(self, store: Any, rw_layer: str, files: Files) -> None:
        """As a process in the container writes: a directory the layers below have is
        copied up with their metadata first (what overlayfs does), then the files."""
        from adapters.storage.union import union_stat

        with open(os.path.join(store.layer_dir(rw_layer), "lower")) as f:
            below = [store.diff_dir(lid) for lid in reversed(f.read().split())]
        lowers = [store.init_dir(rw_layer), *below]
        upper = store.diff_dir(rw_layer)
        for rel in files:
            parts = rel.split("/")[:-1]
            for n in range(1, len(parts) + 1):
                d = "/".join(parts[:n])
                path = os.path.join(upper, d)
                if os.path.isdir(path):
                    continue
                os.mkdir(path)
                st = union_stat(lowers, d)
                if st is not None:
                    os.chown(path, st.st_uid, st.st_gid)
                    os.chmod(path, st.st_mode & 0o7777)
                    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        write_tree(upper, files)

    def damage(self, store: Any, layer_id: str) -> None:
        diff = store.diff_dir(layer_id)
        rel = sorted(tree_files(diff))[0]
        with open(os.path.join(diff, rel), "r+") as f:  # the same size, other bytes
            text = f.read()
            f.seek(0)
            f.write(text[:-1] + ("?" if text[-1:] != "?" else "!"))

    def names(self, store: Any) -> set[str]:
        try:
            return set(os.listdir(store.layers_dir)) - {"l", "empty"}
        except FileNotFoundError:
            return set()

    def leftovers(self, store: Any) -> list[str]:
        from adapters.storage.overlay import mounts_under

        try:
            staged = sorted(os.listdir(store.tmp_dir))
        except FileNotFoundError:
            staged = []
        return staged + mounts_under(store.layers_dir)

    def exported(self, data: bytes) -> Files:
        return tar_files(data)

    def blob_files(self, data: bytes) -> Files:
        return tar_files(data)

    def as_blob(self, files: Files) -> bytes:
        return layer_tar(files)


# --- tars and trees ----------------------------------------------------------------------------


def layer_tar(files: Files) -> bytes:
    """A layer tar of these regular files (0644, root's) and their directories (0755)."""
    out = io.BytesIO()
    dirs = sorted({os.path.dirname(rel) for rel in files} - {""})
    dirs = sorted({"/".join(d.split("/")[:n]) for d in dirs for n in range(1, d.count("/") + 2)})
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def tar_files(data: bytes) -> Files:
    """The regular files of a tar."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[member.name.removeprefix("./")] = f.read().decode()
    return out


def tree_files(top: str) -> Files:
    out = {}
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path) as f:
                    out[os.path.relpath(path, top)] = f.read()
    return out


def write_tree(top: str, files: Files) -> None:
    for rel, text in files.items():
        path = os.path.join(top, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def image_config(diff_ids: list[str], created_by: str = "contract") -> bytes:
    """An image config naming these layers, as the exact bytes an image id is the sha256 of."""
    doc = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created_by": f"{created_by} {n}"} for n in range(len(diff_ids))]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
