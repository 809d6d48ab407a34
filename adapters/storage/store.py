"""The LayerStore port on disk: read-only layers, read-write layers, the union view.

    <root>/layers/<id>/diff/         a read-only layer's files (overlay's form: whiteouts are
                                     0/0 character devices, opaque dirs carry an xattr)
    <root>/layers/<id>/layer.json    its metadata (the log is the truth; this is for people)
    <root>/layers/rw-<cid>/          a container's read-write layer: diff/ (UpperDir), work/,
                                     merged/ (MergedDir, mounted while the container runs)
    <root>/layers/l/                 short links for images too deep for one page of options
    <root>/tmp/                      staging: a layer is written here, then renamed in place

A layer directory appears by rename, complete, or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO

from adapters.storage import layertar, overlay
from core.errors import BadInput
from core.ports import LayerInfo

RW_PREFIX = "rw-"


class LinuxLayerStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.layers_dir = os.path.join(root, "layers")
        self.tmp_dir = os.path.join(root, "tmp")

    # --- paths ---------------------------------------------------------------------------

    def layer_dir(self, layer_id: str) -> str:
        return os.path.join(self.layers_dir, layer_id)

    def diff_dir(self, layer_id: str) -> str:
        return os.path.join(self.layers_dir, layer_id, "diff")

    def merged_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layers_dir, rw_layer, "merged")

    def work_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layers_dir, rw_layer, "work")

    @contextmanager
    def staging(self) -> Iterator[str]:
        """A fresh directory under <root>/tmp, removed unless renamed away."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        os.makedirs(self.layers_dir, exist_ok=True)
        path = tempfile.mkdtemp(dir=self.tmp_dir)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # --- read-only layers --------------------------------------------------------------------

    def import_layer(self, source: Any, parent: str | None) -> LayerInfo:
        """Extract a layer tar (a path or a binary file object) into a new layer."""
        if isinstance(source, str | os.PathLike):
            try:
                with open(source, "rb") as f:
                    return self._import(f, parent)
            except FileNotFoundError:
                raise BadInput(f"no such file: {source}") from None
            except IsADirectoryError:
                raise BadInput(f"not a tar file: {source} is a directory") from None
        return self._import(source, parent)

    def _import(self, f: BinaryIO, parent: str | None) -> LayerInfo:
        with self.staging() as stage:
            try:
                diff_id, _ = layertar.extract_layer_tar(f, os.path.join(stage, "diff"))
            except layertar.LayerError as err:
                raise BadInput(str(err)) from None
            return self._install(stage, diff_id, parent)

    def _install(self, stage: str, diff_id: str, parent: str | None) -> LayerInfo:
        layer_id = os.urandom(32).hex()
        size = _tree_size(os.path.join(stage, "diff"))
        with open(os.path.join(stage, "layer.json"), "w") as f:
            json.dump({"id": layer_id, "parent": parent, "diff_id": diff_id, "size": size}, f)
        os.rename(stage, self.layer_dir(layer_id))
        return LayerInfo(id=layer_id, diff_id=diff_id, size=size)

    def commit_rw_layer(self, rw_layer: str, parent: str | None) -> LayerInfo:
        """The read-write layer's changes, through a layer tar, into a new read-only layer.

        Going through the tar makes the stored layer exactly what its diff_id describes.
        """
        with self.staging() as stage:
            tar_path = os.path.join(stage, "layer.tar")
            with open(tar_path, "wb") as out:
                diff_id, _ = layertar.write_layer_tar(self.diff_dir(rw_layer), out)
            with open(tar_path, "rb") as f:
                layertar.extract_layer_tar(f, os.path.join(stage, "diff"))
            os.unlink(tar_path)
            return self._install(stage, diff_id, parent)

    def layer_tar(self, layer_id: str, out: BinaryIO) -> tuple[str, int]:
        """Write a stored layer as its OCI layer tar (same bytes as when it was committed)."""
        return layertar.write_layer_tar(self.diff_dir(layer_id), out)

    def remove_layer(self, layer_id: str) -> None:
        path = self.layer_dir(layer_id)
        overlay.remove_link_for(os.path.join(path, "diff"), self.layers_dir)
        _remove_tree(path, self.tmp_dir)

    # --- read-write layers and the union view ---------------------------------------------

    def create_rw_layer(self, container_id: str, layers: Sequence[str]) -> str:
        rw = RW_PREFIX + container_id
        with self.staging() as stage:
            for sub in ("diff", "work", "merged"):
                os.mkdir(os.path.join(stage, sub))
            _init_layer(os.path.join(stage, "init"))
            with open(os.path.join(stage, "lower"), "w") as f:
                f.write("\n".join(layers))
            os.rename(stage, self.layer_dir(rw))
        return rw

    def lowers(self, layers: Sequence[str]) -> list[str]:
        """Lower directories for overlayfs, top-most first; an empty image gets an empty dir."""
        if not layers:
            empty = os.path.join(self.layers_dir, "empty")
            os.makedirs(empty, exist_ok=True)
            return [empty]
        return [self.diff_dir(lid) for lid in reversed(layers)]

    def mount(self, rw_layer: str, layers: Sequence[str]) -> str:
        """Mount the union view at MergedDir (idempotent) and return its path."""
        merged = self.merged_dir(rw_layer)
        if not overlay.is_mounted(merged):
            init = os.path.join(self.layer_dir(rw_layer), "init")
            overlay.mount_overlay([init, *self.lowers(layers)], self.diff_dir(rw_layer),
                                  self.work_dir(rw_layer), merged, self.layers_dir)
        return merged

    def unmount(self, rw_layer: str) -> None:
        overlay.unmount(self.merged_dir(rw_layer))

    @contextmanager
    def union_view(self, rw_layer: str, layers: Sequence[str]) -> Iterator[str]:
        """The union view for the length of a block; left mounted if it already was."""
        merged = self.merged_dir(rw_layer)
        was = overlay.is_mounted(merged)
        self.mount(rw_layer, layers)
        try:
            yield merged
        finally:
            if not was:
                self.unmount(rw_layer)

    def remove_rw_layer(self, rw_layer: str) -> None:
        path = self.layer_dir(rw_layer)
        if not os.path.exists(path):
            return
        self.unmount(rw_layer)
        _remove_tree(path, self.tmp_dir)


# What docker's `-init` layer holds: the mount points and files the runtime binds over, so
# that they never show up in the container's own read-write layer (diff, commit).
INIT_DIRS = ("dev", "proc", "sys", "etc", "dev/pts", "dev/shm")
INIT_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "dev/console")


def _init_layer(path: str) -> None:
    for d in INIT_DIRS:
        os.makedirs(os.path.join(path, d), mode=0o755, exist_ok=True)
    for name in INIT_FILES:
        with open(os.path.join(path, name), "w"):
            pass


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove_tree(path: str, tmp_dir: str) -> None:
    """Rename out of sight first, then delete: a half-deleted layer is never visible."""
    if not os.path.exists(path):
        return
    os.makedirs(tmp_dir, exist_ok=True)
    doomed = tempfile.mkdtemp(dir=tmp_dir, prefix="rm-")
    os.rename(path, os.path.join(doomed, "x"))
    shutil.rmtree(doomed, ignore_errors=True)
