"""The model checkers' images in transit: save, load, push and pull on the in-memory ports.

Each is one command (tests/model/harness.py runs and judges it as any other); what this adds
is what must be true after it, beyond the invariants of every state:

- save: the archive loads into an empty engine as the very image (id, config, each layer's
  files), with the tag that was named, if one was;
- load: every image of the archive is in the log with the archive's tags (top-level if it
  has any), and its layers hold the archive's files;
- push: the registry now resolves the reference to the image the tag names here;
- pull: the image the registry resolves is here, top-level, tagged with the reference, its
  layers holding the registry's files; a reference the registry lacks is NotFound.

References name the registry's default host (`base` is docker.io/library/base, pulled back
as base:latest), so a pull brings no tag names of its own into the world.

The exhaustive checker loads only the archives of the two seeded images and pulls only them,
from a registry made once (fixtures()): both are constants, so a state stays what the
abstraction's key says (the seeded images keep their ids in every run). Pushes go to a copy
of the registry, discarded after the step. The hypothesis machines keep what they save and
push, and load and pull it later.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from core import distribution
from core.errors import LaminaError, NotFound
from core.memory import (
    CountingIds,
    MemoryLayerStore,
    MemoryRegistry,
    memory_engine,
)
from core.memory import (
    layer_files as files_of,
)

OPS = ("save", "load", "push", "pull")


@dataclass(frozen=True)
class Fixtures:
    archives: dict[str, bytes]  # label -> the archive of one seeded image, saved by tag
    registry: MemoryRegistry  # holds both seeded images: never changed


@cache
def fixtures() -> Fixtures:
    """Archives of the seeded images and a registry holding them, made once from a seeded
    engine of their own (the seed is deterministic: the ids are every seeded engine's)."""
    from tests.model.harness import seeded_engine

    engine, _ = seeded_engine()
    archives = {}
    for name in ("base", "derived"):
        out = io.BytesIO()
        engine.save([name], out, file=f"{name}.tar")
        archives[f"{name}.tar"] = out.getvalue()
    registry = MemoryRegistry()
    for name in ("base", "derived"):  # docker.io/library/<name>: pulled back as <name>:latest
        distribution.push(engine, registry, name)
    return Fixtures(archives, registry)


def copy_registry(registry: MemoryRegistry) -> MemoryRegistry:
    return MemoryRegistry(dict(registry.blobs), dict(registry.manifests),
                          {repo: dict(tags) for repo, tags in registry.tags.items()})


def perform(engine: Any, op: str, ref: str, archive: bytes | None,
            registry: MemoryRegistry | None) -> Any:
    """Run one transfer command; save returns the archive's bytes."""
    match op:
        case "save":
            out = io.BytesIO()
            engine.save([ref], out, file="model.tar")
            return out.getvalue()
        case "load":
            return engine.load(io.BytesIO(archive or b""), file=ref)
        case "push":
            return distribution.push(engine, _registry(registry), ref)
        case "pull":
            return distribution.pull(engine, _registry(registry), ref)
    raise ValueError(f"unknown op {op!r}")


def _registry(registry: MemoryRegistry | None) -> MemoryRegistry:
    if registry is None:
        raise ValueError("push and pull need a registry")
    return registry


def rejected_leaves(op: str) -> list[str]:
    """What a refused command appends: one CommandRejected, after PullStarted for a pull
    (its audit trail starts before the registry answers)."""
    return ["PullStarted", "CommandRejected"] if op == "pull" else ["CommandRejected"]


def check(engine: Any, op: str, ref: str, image: str | None, archive: bytes | None,
          registry: MemoryRegistry | None, error: LaminaError | None, result: Any) -> str:
    """What is wrong after a transfer command ('' if nothing)."""
    if op == "save":
        return _saved(engine, ref, image, result) if error is None else \
            f"save of an existing image was refused: {error!r}"
    if op == "load":
        return _loaded(engine, archive or b"") if error is None else \
            f"load of a valid archive was refused: {error!r}"
    assert registry is not None
    if op == "push":
        return _pushed(engine, ref, registry, error)
    return _pulled(engine, ref, registry, error)


def layer_files(engine: Any, image_id: str) -> list[dict[str, str]]:
    image = engine.log.image(image_id)
    return [engine.layers.layers[lid] for lid in image.layers]


def _saved(engine: Any, ref: str, image: str | None, data: bytes) -> str:
    here = engine.log.image(image)
    files = tuple(tuple(sorted(f.items())) for f in layer_files(engine, here.id))
    return _saved_as(ref, here.id, data, json.dumps(here.config, sort_keys=True),
                     tuple(here.tags), files)


@cache
def _saved_as(ref: str, image: str, data: bytes, config: str, tags: tuple[str, ...],
              files: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """The check of one archive of `image` (its config as JSON, its tags, its layers' files
    here), memoized: the same image saves as the same bytes from every state it is in."""
    fresh = memory_engine(user="model")
    loaded = fresh.load(io.BytesIO(data), file="saved.tar")
    if [iid for iid, _ in loaded] != [image]:
        return f"save {ref} wrote {[iid[:12] for iid, _ in loaded]}, not {image[:12]}"
    there = fresh.log.image(image)
    there_files = tuple(tuple(sorted(f.items())) for f in layer_files(fresh, image))
    if json.dumps(there.config, sort_keys=True) != config or there_files != files:
        return f"save {ref} loads back as another image (config or files differ)"
    named = sorted(t for t in tags if t.rsplit(":", 1)[0] == ref or t == ref)
    if sorted(there.tags) != named:  # docker's rule: a bare name saves its every tag
        return f"save {ref} loads back tagged {list(there.tags)}, not {named}"
    return ""


def _loaded(engine: Any, data: bytes) -> str:
    for iid, tags, files in _contents(data):
        here = engine.log.image(iid)
        if here is None:
            return f"load left image {iid[:12]} missing"
        if tags and here.removed:  # untagged, a removed image stays one (docker's
            # intermediate image: a load of the same id changes nothing about it)
            return f"load of a tagged image left {iid[:12]} removed"
        if not set(tags) <= set(here.tags):
            return f"load: image {iid[:12]} is tagged {here.tags}, not {tags}"
        if layer_files(engine, iid) != files:
            return f"load: the layers of {iid[:12]} hold other files than the archive's"
    return ""


@cache
def _contents(data: bytes) -> list[tuple[str, list[str], list[dict[str, str]]]]:
    """(image id, tags, each layer's files) of an archive, read once per archive."""
    with MemoryLayerStore(ids=CountingIds()).open_archive(data) as archive:
        return [(img.id, list(img.tags),
                 [archive.stage(img, i).files for i in range(len(img.diff_ids))])
                for img in archive.images()]


def _pushed(engine: Any, ref: str, registry: MemoryRegistry, error: LaminaError | None) -> str:
    local = engine.log.image_tagged(f"{ref}:latest")
    if local is None:
        return "" if isinstance(error, NotFound) else \
            f"push {ref} with no such tag here: expected NotFound, got {error!r}"
    if error is not None:
        return f"push {ref} was refused: {error!r}"
    remote = registry.resolve(registry.parse(ref), None)
    if remote.image.id != local.id:
        return f"push {ref}: the registry has {remote.image.id[:12]}, not {local.id[:12]}"
    return ""


def _pulled(engine: Any, ref: str, registry: MemoryRegistry, error: LaminaError | None) -> str:
    parsed = registry.parse(ref)
    try:
        remote = registry.resolve(parsed, None)
    except NotFound:
        return "" if isinstance(error, NotFound) else \
            f"pull {ref}, which the registry lacks: expected NotFound, got {error!r}"
    if error is not None:
        return f"pull {ref} was refused: {error!r}"
    here = engine.log.image(remote.image.id)
    if here is None or here.removed or parsed.local_tag not in here.tags:
        return f"pull {ref}: image {remote.image.id[:12]} is not here, top-level and tagged"
    files = [_blob_files(registry.blobs[b["digest"]]) for b in remote.blobs]
    if layer_files(engine, here.id) != files:
        return f"pull {ref}: the layers hold other files than the registry's"
    return ""


@cache
def _blob_files(data: bytes) -> dict[str, str]:
    """A layer blob's files (blobs are content-addressed: the same bytes, the same files)."""
    return files_of(data)
