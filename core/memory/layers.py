"""The LayerStore and Archive ports in memory: a layer is a dict of files.

A layer's bytes (what its diff_id is the sha256 of, what push sends, its "tar") are the dict
as canonical JSON; an archive is a JSON document of images (config bytes, tags, parent) and
their layers by diff_id, which open_archive reads back and checks as the Linux store checks
a tar: the config must hash to the image id, each layer to its diff_id."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from core.errors import BadInput, NotFound
from core.ports import (
    ArchiveImage,
    ArchiveTarget,
    Ids,
    LayerBlob,
    LayerInfo,
    LayerSource,
    SaveEntry,
    StagedLayer,
)
from core.references import normalize_tag

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ARCHIVE_FORMAT = "lamina-memory-archive/1"


def layer_bytes(files: Mapping[str, str]) -> bytes:
    """A memory layer's bytes (its "tar"): the files as canonical JSON."""
    return json.dumps(dict(files), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _digest(files: Mapping[str, str]) -> str:
    """A memory layer's diff_id: the sha256 of its bytes, as a real layer's is of its tar."""
    return sha256_of(layer_bytes(files))


def layer_files(data: bytes, what: str = "layer") -> dict[str, str]:
    """The files of a memory layer's bytes; BadInput if they are not a layer's."""
    try:
        files = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"not a valid {what}: not a memory layer") from None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in files.items()):
        raise BadInput(f"not a valid {what}: its files must map paths to contents")
    return files


def _read_all(source: Any, what: str) -> bytes:
    """The bytes of a stream (or bytes); the in-memory ports have no files to open."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if hasattr(source, "read"):
        return bytes(source.read())
    raise BadInput(f"not a {what}: {source!r} (the in-memory store reads streams, not paths)")


def _write_all(output: ArchiveTarget, data: bytes) -> tuple[str, int]:
    if isinstance(output, str):
        raise BadInput(f"cannot write {output}: the in-memory store writes to streams only")
    output.write(data)
    return sha256_of(data), len(data)


@dataclass
class MemoryStaged:
    """A layer read from an archive or a registry and checked against its diff_id."""

    files: dict[str, str]
    diff_id: str
    size: int


@dataclass
class MemoryBlob:
    """A stored layer's bytes (LayerBlob)."""

    digest: str
    size: int
    data: bytes

    def write_to(self, out: BinaryIO) -> None:
        out.write(self.data)

    def cleanup(self) -> None:
        """Nothing was spooled."""


def staged_layer(data: bytes, diff_id: str, what: str) -> MemoryStaged:
    """Layer bytes checked against the diff_id they must have, as the Linux store extracts
    a layer tar and checks its digest."""
    files = layer_files(data, what)
    got = _digest(files)
    if got != diff_id:
        raise BadInput(f"layer content does not match its diff_id: expected {diff_id}, "
                       f"got {got}")
    return MemoryStaged(files, diff_id, len(files))


@dataclass
class MemoryImage:
    """One image of an archive or a registry (ArchiveImage), checked: its config's bytes
    hash to its id and name its diff_ids."""

    id: str
    config_bytes: bytes
    config: dict[str, Any]
    diff_ids: list[str]
    tags: list[str] = field(default_factory=list)
    parent: str | None = None

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": OCI_CONFIG, "digest": f"sha256:{self.id}",
                "size": len(self.config_bytes),
                "data": base64.b64encode(self.config_bytes).decode()}

    @classmethod
    def parse(cls, config_bytes: bytes, tags: Sequence[str] = (), parent: str | None = None,
              what: str = "image") -> MemoryImage:
        try:
            config = json.loads(config_bytes.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BadInput(f"{what}: its config is not JSON") from None
        diff_ids = ((config.get("rootfs") if isinstance(config, dict) else None) or {}) \
            .get("diff_ids")
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise BadInput(f"{what}: its config has no rootfs.diff_ids")
        return cls(hashlib.sha256(config_bytes).hexdigest(), config_bytes, config,
                   list(diff_ids), [normalize_tag(t) for t in tags], parent)


@dataclass
class MemoryArchive:
    """An archive opened for load (ImageSource): its images, and layers by diff_id."""

    found: list[MemoryImage]
    layers: dict[str, Any]

    def images(self) -> list[ArchiveImage]:
        return list(self.found)

    def stage(self, image: ArchiveImage, index: int) -> StagedLayer:
        diff_id = image.diff_ids[index]
        files = self.layers.get(diff_id)
        if not isinstance(files, dict):
            raise BadInput(f"not a valid image archive: layer {diff_id} is missing")
        return staged_layer(layer_bytes(files), diff_id, "image archive")


def _archive(data: bytes) -> MemoryArchive:
    """Read (and check) what MemoryLayerStore.save_images wrote."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadInput("not a valid image archive: not a memory archive") from None
    if not isinstance(doc, dict) or doc.get("format") != ARCHIVE_FORMAT \
            or not isinstance(doc.get("images"), list) or not isinstance(doc.get("layers"), dict):
        raise BadInput("not a valid image archive: not a memory archive")
    found = []
    for n, item in enumerate(doc["images"]):
        what = f"not a valid image archive: image {n}"
        try:
            config = base64.b64decode(item["config"], validate=True)
            image = MemoryImage.parse(config, item.get("tags") or [], item.get("parent"),
                                      what)
            declared = str(item["id"])
        except (TypeError, KeyError, ValueError, AttributeError):
            raise BadInput(f"{what} is malformed") from None
        if image.id != declared:
            raise BadInput(f"{what}: its config does not hash to its id {declared[:12]}")
        found.append(image)
    return MemoryArchive(found, doc["layers"])


def _abs(rel: str) -> str:
    return "/" + rel.strip("/")


def _parents(path: str) -> list[str]:
    """/a/b/c -> [/a, /a/b]."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)]


@dataclass
class MemoryLayerStore:
    """Layers as dicts of files (LayerStore and Archive); `source` for import is such a dict,
    or a memory layer's bytes."""

    ids: Ids
    layers: dict[str, dict[str, str]] = field(default_factory=dict)
    rw: dict[str, dict[str, str]] = field(default_factory=dict)
    copied: dict[str, dict[str, str]] = field(default_factory=dict)  # copy_out's, by dest

    def _new(self, files: Mapping[str, str], diff_id: str | None = None) -> LayerInfo:
        lid = self.ids.new_id()
        self.layers[lid] = dict(files)
        return LayerInfo(id=lid, diff_id=diff_id or _digest(files), size=len(files))

    def import_layer(self, source: LayerSource, parent: str | None) -> LayerInfo:
        if isinstance(source, Mapping):
            return self._new(source)
        if isinstance(source, str):
            raise BadInput(f"not a rootfs: {source!r}")
        return self._new(layer_files(_read_all(source, "rootfs")))

    def install_layer(self, staged: StagedLayer, parent: str | None) -> LayerInfo:
        if not isinstance(staged, MemoryStaged):
            raise BadInput(f"not a layer staged by the in-memory store: {staged!r}")
        return self._new(staged.files, staged.diff_id)

    def create_rw_layer(self, container_id: str, layers: Sequence[str]) -> str:
        rw = f"rw-{container_id}"
        self.rw[rw] = {}
        return rw

    def commit_rw_layer(self, rw_layer: str, parent: str | None) -> LayerInfo:
        return self._new(self.rw[rw_layer])

    def squash_layers(self, layers: Sequence[str], below: Sequence[str],
                      parent: str | None) -> LayerInfo:
        """A memory layer has only files (no deletions): the upper one's win."""
        merged: dict[str, str] = {}
        for lid in layers:
            merged.update(self.layers[lid])
        return self._new(merged)

    def remove_rw_layer(self, rw_layer: str) -> None:
        self.rw.pop(rw_layer, None)

    def rw_size(self, rw_layer: str) -> int:
        return sum(len(text) for text in self.rw.get(rw_layer, {}).values())

    def remove_layer(self, layer_id: str) -> None:
        self.layers.pop(layer_id, None)

    def layer_blob(self, layer_id: str) -> LayerBlob:
        files = self.layers.get(layer_id)
        if files is None:
            raise NotFound(f"layer {layer_id[:12]} is not in the store")
        data = layer_bytes(files)
        return MemoryBlob(sha256_of(data), len(data), data)

    def changes(self, rw_layer: str, layers: Sequence[str]) -> list[tuple[str, str]]:
        """docker diff as overlay's upper layer would show it: a memory layer has only files,
        its directories being the files' parents (one the layers below lack is added)."""
        below = {_abs(rel) for lid in layers for rel in self.layers[lid]}
        below_dirs = {d for path in below for d in _parents(path)}
        out: dict[str, str] = {}
        for rel in self.rw[rw_layer]:
            path = _abs(rel)
            for d in _parents(path):
                if d not in below_dirs:
                    out.setdefault(d, "A")
            out[path] = "C" if path in below else "A"
        for path, kind in list(out.items()):  # a directory that gained an entry changed
            parent = path.rsplit("/", 1)[0]
            if kind == "A" and parent:
                out.setdefault(parent, "C")
        return sorted(((kind, path) for path, kind in out.items()), key=lambda kp: kp[1])

    def copy_out(self, rw_layer: str, layers: Sequence[str], path: str, dest: str) -> None:
        """The view's files below `path` (upper layers win), kept by `dest`."""
        prefix = path.strip("/") + "/"
        view: dict[str, str] = {}
        for files in [*(self.layers[lid] for lid in layers), self.rw.get(rw_layer, {})]:
            view.update({rel.strip("/")[len(prefix):]: data for rel, data in files.items()
                         if rel.strip("/").startswith(prefix)})
        if view:
            self.copied.setdefault(dest, {}).update(view)

    # --- Archive ---------------------------------------------------------------------------

    def save_images(self, images: Sequence[SaveEntry], output: ArchiveTarget) -> tuple[str, int]:
        entries, layers = [], {}
        for img in images:
            for lid, diff_id in zip(img["layers"], img["diff_ids"], strict=True):
                blob = self.layer_blob(lid)
                if blob.digest != diff_id:
                    raise BadInput(f"layer {lid[:12]} is {blob.digest}, but its image says "
                                   f"{diff_id}")
                layers[diff_id] = self.layers[lid]
            entries.append({"id": img["id"], "tags": list(img["tags"]),
                            "parent": img.get("parent"),
                            "config": base64.b64encode(img["config"]).decode()})
        doc = {"format": ARCHIVE_FORMAT, "images": entries, "layers": layers}
        return _write_all(output, json.dumps(doc, sort_keys=True).encode())

    @contextmanager
    def open_archive(self, source: ArchiveTarget) -> Iterator[MemoryArchive]:
        yield _archive(_read_all(source, "image archive"))

    def export(self, rw_layer: str, layers: Sequence[str],
               output: ArchiveTarget) -> tuple[str, int]:
        if rw_layer not in self.rw or any(lid not in self.layers for lid in layers):
            raise NotFound(f"the layers of {rw_layer[:15]} are not all in the store")
        files: dict[str, str] = {}
        for lid in layers:  # bottom first: an upper layer's file wins
            files.update(self.layers[lid])
        files.update(self.rw[rw_layer])
        return _write_all(output, layer_bytes(files))
