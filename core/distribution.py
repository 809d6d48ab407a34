"""pull and push as engine commands, and the pure decisions around them.

A pull is `load` with a registry in place of an archive: the registry adapter resolves the
reference to one image (manifest, platform, config checked against its digest), this module
decides which layers are missing (by chain id, as `load` does: a layer already here is not
fetched again), the adapter fetches and stages only those, and the engine's own
`load_archive` (core/engine/loading.py) installs them and records the same events a load
does (LayerRegistered, ImageCreated, ImageTagged, ImageLoaded with the registry source as
its `file` and the config's exact bytes), so replay and the read model need nothing new.
Around it, audit-only events: PullStarted and LayerFetched (one per layer, fetched or found
here) in the command's own `pull:<command id>` stream, and ImagePulled / Pushed in the
image's `registry:<image id>` stream, which answers "where did this image come from, and
where did it go".

A push sends an image's layers as the exact tars their diff_ids name (uncompressed, so the
blob digest is the diff_id), its config as the bytes its id is the digest of, and an OCI
manifest; pulled back into any root, it has the same image id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.engine.archives import config_bytes
from core.engine.loading import load_archive
from core.errors import BadInput, NotFound
from core.images import chain_id
from core.ports import PushOutcome, Registry
from core.references import short
from events import types as ev

if TYPE_CHECKING:
    from core.engine import Engine

# The port moved to core/ports.py with the others; the old names stay for the adapters.
RegistryPort = Registry
__all__ = ["PullResult", "PushOutcome", "Registry", "RegistryPort", "missing_layers",
           "parse_platform", "choose_platform", "mount_source", "pull", "push"]


@dataclass(frozen=True)
class PullResult:
    image_id: str
    reference: str
    manifest_digest: str
    fetched: int
    cached: int
    up_to_date: bool


# --- pure decisions ------------------------------------------------------------------------


def missing_layers(diff_ids: Sequence[str], known_chains: Iterable[str]) -> list[int]:
    """The indexes of the layers whose chain (the layer with everything below it) is not in
    the store yet: only those are fetched."""
    known = set(known_chains)
    need, chain = [], None
    for i, diff_id in enumerate(diff_ids):
        chain = chain_id(chain, diff_id)
        if chain not in known:
            need.append(i)
    return need


def parse_platform(text: str) -> tuple[str, str, str]:
    """`linux/amd64`, `linux/arm64/v8`, `amd64` -> (os, architecture, variant)."""
    parts = [p for p in text.strip().lower().split("/") if p]
    if len(parts) == 1:
        parts = ["linux", *parts]
    if not 2 <= len(parts) <= 3:
        raise BadInput(f"invalid platform {text!r}: use os/arch[/variant]")
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(parts[1], parts[1])
    return parts[0], arch, parts[2] if len(parts) == 3 else ""


def choose_platform(manifests: Sequence[Any], wanted: str) -> dict[str, Any] | None:
    """The descriptor of an index's entry for a platform (docker's matcher, simplified: os
    and architecture must match; the wanted variant if one is given and present, else the
    first entry for that os/arch; arm64 means variant v8 when none is given)."""
    os_, arch, variant = parse_platform(wanted)
    fits = []
    for d in manifests:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            continue
        p = d.get("platform") or {}
        if not isinstance(p, dict):
            continue
        if p.get("os", "linux") == os_ and p.get("architecture") == arch:
            fits.append(d)
    if not fits:
        return None
    if variant:
        exact = [d for d in fits if (d.get("platform") or {}).get("variant") == variant]
        return exact[0] if exact else None
    plain = [d for d in fits if (d.get("platform") or {}).get("variant") in (None, "", "v8")]
    return (plain or fits)[0]


def mount_source(history: Iterable[Mapping[str, Any]], registry: str,
                 repository: str) -> str | None:
    """A repository of the same registry this image was pushed to or pulled from before:
    the registry can then mount its blobs instead of receiving them again."""
    found = None
    for rec in history:
        if rec.get("registry") == registry and rec.get("repository") not in (None, repository) \
                and rec.get("uncompressed", True):
            found = rec["repository"]
    return found


# --- commands --------------------------------------------------------------------------------


def pull(engine: Engine, registry: Registry, text: str,
         platform: str | None = None) -> PullResult:
    with engine.command("pull", text) as cmd:
        ref = registry.parse(text)
        if platform:
            parse_platform(platform)
        pull_id = cmd.meta["command_id"]
        cmd.append([ev.PullStarted(id=pull_id, reference=str(ref),
                                   platform=platform or "")], {})
        remote = registry.resolve(ref, platform)
        img = remote.image
        before = engine.log.image(img.id)
        need = missing_layers(img.diff_ids, (la.chain_id for la in engine.log.layers()))
        with registry.fetch(remote, need) as session:
            load_archive(engine, cmd, session, remote.source)
        events: list[ev.Event] = [
            ev.LayerFetched(id=pull_id, digest=d["digest"], size=int(d["size"]),
                            diff_id=img.diff_ids[i], cached=i not in need)
            for i, d in enumerate(remote.blobs)]
        events.append(ev.ImagePulled(
            id=img.id, reference=str(ref), registry=ref.registry, repository=ref.repository,
            tag=ref.local_tag or "", manifest_digest=remote.manifest_digest,
            uncompressed=all(d["digest"] == i for d, i in zip(remote.blobs, img.diff_ids,
                                                              strict=True))))
        cmd.append(events, {})
        up_to_date = before is not None and not need and \
            (ref.local_tag is None or ref.local_tag in before.tags)
        return PullResult(img.id, str(ref), remote.manifest_digest, len(need),
                          len(img.diff_ids) - len(need), up_to_date)


def push(engine: Engine, registry: Registry, text: str) -> PushOutcome:
    with engine.command("push", text) as cmd:
        ref = registry.parse(text)
        if ref.digest or not ref.local_tag:
            raise BadInput(f"push needs NAME[:TAG], not a digest: {text}")
        image = engine.log.image_tagged(ref.local_tag)
        if image is None:
            raise NotFound(f"an image does not exist locally with the tag: {ref.familiar_name}")
        layers = [engine.log.layer(lid) for lid in image.layers]
        if any(layer is None for layer in layers):
            raise NotFound(f"a layer of image {short(image.id)} is gone")
        config = config_bytes(engine.log, image)
        history = [rec.data for rec in engine.log.read(stream=f"registry:{image.id}")]
        blobs = [engine.layers.layer_blob(lid) for lid in image.layers]
        try:
            for blob, layer in zip(blobs, layers, strict=True):
                if layer is not None and blob.digest != layer.diff_id:
                    raise BadInput(f"layer {short(layer.id)} is {blob.digest}, but the log "
                                   f"says {layer.diff_id}")
            outcome = registry.push(ref, config, blobs,
                                    mount_source(history, ref.registry, ref.repository))
        finally:
            for blob in blobs:
                blob.cleanup()
        cmd.append([ev.Pushed(
            id=image.id, reference=str(ref), registry=ref.registry, repository=ref.repository,
            tag=ref.local_tag, manifest_digest=outcome.manifest_digest, size=outcome.size,
            layers=list(outcome.layers))], {})
        return outcome
