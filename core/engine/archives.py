"""save and export: images and a container's filesystem copied out into archives, and the
record of who took what (ImageSaved, ContainerExported: an audit must show it).

These need a layer store that writes archives (adapters/storage/store.py: save_images,
export); the formats live there, not here. The archive is written first, then recorded."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

from core.engine.base import EngineBase
from core.engine.containers import image_of
from core.errors import BadInput, Conflict, NotFound
from core.images import canonical_json
from core.model import Image
from core.ports import EventLog
from core.references import normalize_tag, short
from events import types as ev


def save(e: EngineBase, refs: Sequence[str], output: Any, file: str = "-") -> list[str]:
    """Images into one archive (docker-archive and OCI layout at once). `output` is a path
    or a binary stream; `file` is what the audit records. Returns the ids saved."""
    with e.command("save", " ".join(refs)) as cmd:
        if not refs:
            raise BadInput("save needs at least one image")
        chosen: dict[str, tuple[Image, list[str]]] = {}
        for ref in refs:
            for image, tag in _save_targets(e, ref):
                _, tags = chosen.setdefault(image.id, (image, []))
                if tag and tag not in tags:
                    tags.append(tag)
        entries = []
        for image, tags in chosen.values():
            layers = [e.log.layer(lid) for lid in image.layers]
            if any(layer is None for layer in layers):
                raise NotFound(f"a layer of image {short(image.id)} is gone")
            entries.append({"id": image.id, "config": config_bytes(e.log, image),
                            "tags": tags, "layers": list(image.layers),
                            "diff_ids": [layer.diff_id for layer in layers if layer],
                            "parent": image.parent if image.parent in chosen else None})
        store: Any = e.layers
        digest, size = store.save_images(entries, output)

        def record() -> None:
            events: list[ev.Event] = []
            expected: dict[str, int] = {}
            for iid, (_, tags) in chosen.items():
                current = e.log.image(iid)
                if current is None:
                    raise NotFound(f"image {short(iid)} was removed while it was saved")
                expected[f"image:{iid}"] = current.version
                events.append(ev.ImageSaved(id=iid, file=file, tags=list(tags),
                                            digest=digest, size=size))
            cmd.append(events, expected)

        cmd.retrying(record)
        return list(chosen)


def _save_targets(e: EngineBase, ref: str) -> list[tuple[Image, str | None]]:
    """docker's rules: REPO:TAG saves that tag, a bare REPO every tag of that repository,
    an id the image without tags."""
    if not ref.startswith("sha256:"):
        try:
            tag = normalize_tag(ref)
        except BadInput:
            tag = None
        last = ref.rsplit("/", 1)[-1]
        if tag is not None and ":" in last:
            holder = e.log.image_tagged(tag)
            if holder is not None:
                return [(holder, tag)]
        elif tag is not None:
            found = [(i, t) for i in e.log.images() for t in i.tags
                     if t.rsplit(":", 1)[0] == ref]
            if found:
                return sorted(found, key=lambda it: it[1] or "")
    return [(e.image(ref), None)]


def config_bytes(log: EventLog, image: Image) -> bytes:
    """The bytes the image id is the sha256 of: as loaded (or pulled), else lamina's
    canonical JSON. What save writes and push sends, so the id survives the trip."""
    for rec in log.read(stream=f"image:{image.id}"):
        if rec.type == "ImageLoaded":
            data = base64.b64decode((rec.data.get("config") or {}).get("data") or "")
            if hashlib.sha256(data).hexdigest() == image.id:
                return data
    data = canonical_json(image.config).encode()
    if hashlib.sha256(data).hexdigest() != image.id:
        raise Conflict(f"image {short(image.id)}: its config no longer hashes to its id")
    return data


def export(e: EngineBase, ref: str, output: Any, file: str = "-") -> str:
    """A container's filesystem (its union view) as one flat tar; the state stays."""
    with e.command("export", ref) as cmd:
        c = e.container(ref)
        image = image_of(e, c)
        store: Any = e.layers
        with e.runtime.ending(c):  # a stopped container's view is mounted meanwhile:
            # no start, rm or reconcile may unmount it or build on it under the export
            now = e.log.container(c.id)
            if now is None:
                raise NotFound(f"no such container: {ref}")
            c = now
            digest, size = store.export(c.rw_layer, image.layers, output)

        def record() -> None:
            current = e.log.container(c.id)
            if current is None:
                raise NotFound(f"container {short(c.id)} was removed while it was exported")
            cmd.append([ev.ContainerExported(id=c.id, file=file, digest=digest, size=size)],
                       {f"container:{c.id}": current.version})

        cmd.retrying(record)
        return c.id
