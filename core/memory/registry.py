"""The Registry port in memory: repositories of manifests, configs and layer blobs."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadInput, NotFound
from core.memory.layers import MemoryImage, MemoryStaged, sha256_of, staged_layer
from core.ports import (
    ArchiveImage,
    LayerBlob,
    PushOutcome,
    StagedLayer,
)
from core.references import normalize_tag


@dataclass(frozen=True)
class MemoryReference:
    """A reference as the real one parses it (registry, repository, a tag or a digest)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        if self.registry == "docker.io":
            return self.repository.removeprefix("library/")
        return self.name

    @property
    def local_tag(self) -> str | None:
        return f"{self.familiar_name}:{self.tag}" if self.tag else None

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"


@dataclass
class MemoryRemote:
    """A resolved image (RemoteImage)."""

    reference: MemoryReference
    manifest_digest: str
    image: MemoryImage
    blobs: list[dict[str, Any]]

    @property
    def source(self) -> str:
        return f"{self.reference.name}@{self.manifest_digest}"


@dataclass
class MemoryFetched:
    """The layers a pull fetched, staged (ImageSource)."""

    remote: MemoryRemote
    staged: dict[int, MemoryStaged]

    def images(self) -> list[ArchiveImage]:
        return [self.remote.image]

    def stage(self, image: ArchiveImage, index: int) -> StagedLayer:
        try:
            return self.staged[index]
        except KeyError:
            raise BadInput(f"layer {index} of {self.remote.reference} was not fetched") \
                from None


@dataclass
class MemoryRegistry:
    """Registries as dicts (Registry): `blobs` by digest (layers and configs), `manifests`
    by digest, `tags` by repository name (`host/path`) then tag. Blobs are uncompressed, so
    a layer's blob digest is its diff_id, as lamina pushes them."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def parse(self, text: str) -> MemoryReference:
        name, at, digest = text.partition("@")
        if at and not (digest.startswith("sha256:") and len(digest) == 71):
            raise BadInput(f"invalid reference format: {text!r} (only sha256 digests)")
        tagged = normalize_tag(name)
        base, _, tag = tagged.rpartition(":")
        first, sep, rest = base.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = "docker.io", base if "/" in base else f"library/{base}"
        if at:
            return MemoryReference(registry, repository,
                                   tag if ":" in name.rsplit("/", 1)[-1] else None, digest)
        return MemoryReference(registry, repository, tag)

    def resolve(self, ref: MemoryReference, platform: str | None) -> MemoryRemote:
        digest = ref.digest or self.tags.get(ref.name, {}).get(ref.tag or "latest")
        body = self.manifests.get(digest or "")
        if digest is None or body is None:
            raise NotFound(f"{ref}: manifest unknown")
        doc = json.loads(body)
        config = self.blobs.get(doc["config"]["digest"])
        if config is None:
            raise NotFound(f"{ref}: blob unknown {doc['config']['digest']}")
        image = MemoryImage.parse(config, [ref.local_tag] if ref.local_tag else [],
                                  what=f"config of {ref}")
        if len(doc["layers"]) != len(image.diff_ids):
            raise BadInput(f"{ref}: the manifest has {len(doc['layers'])} layers, its config "
                           f"{len(image.diff_ids)} diff_ids")
        return MemoryRemote(ref, digest, image, [dict(d) for d in doc["layers"]])

    @contextmanager
    def fetch(self, remote: MemoryRemote, need: Sequence[int]) -> Iterator[MemoryFetched]:
        staged = {}
        for i in need:
            digest = remote.blobs[i]["digest"]
            data = self.blobs.get(digest)
            if data is None:
                raise NotFound(f"{remote.reference}: blob unknown {digest}")
            if sha256_of(data) != digest:
                raise BadInput(f"blob {digest} does not match its digest")
            staged[i] = staged_layer(data, remote.image.diff_ids[i], f"layer {digest}")
        yield MemoryFetched(remote, staged)

    def push(self, ref: MemoryReference, config: bytes, layers: Sequence[LayerBlob],
             mount_from: str | None) -> PushOutcome:
        statuses = {}
        for blob in layers:
            if blob.digest in self.blobs:
                statuses[blob.digest] = "exists"
                continue
            out = io.BytesIO()
            blob.write_to(out)
            data = out.getvalue()
            if sha256_of(data) != blob.digest or len(data) != blob.size:
                raise BadInput(f"blob {blob.digest}: its bytes do not match its digest")
            self.blobs[blob.digest] = data
            statuses[blob.digest] = "uploaded"
        self.blobs[sha256_of(config)] = config
        body = json.dumps({"schemaVersion": 2, "config": {"digest": sha256_of(config),
                                                          "size": len(config)},
                           "layers": [{"digest": b.digest, "size": b.size} for b in layers]},
                          separators=(",", ":")).encode()
        digest = sha256_of(body)
        self.manifests[digest] = body
        self.tags.setdefault(ref.name, {})[ref.tag or "latest"] = digest
        return PushOutcome(digest, len(body), [{"digest": b.digest, "size": b.size,
                                                "status": statuses[b.digest]} for b in layers])
