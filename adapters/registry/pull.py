"""Pull: resolve a reference to one image, then fetch its missing layers in parallel.

Resolution: the manifest is asked for with every media type lamina reads (OCI and docker v2
schema 2 manifests, OCI indexes and docker manifest lists); an index is narrowed to the host's
platform (or --platform) and its manifest fetched by digest. The config blob is checked
against its digest, and its sha256 is the image id, as `load` does it (the very function).

Fetching: each missing layer's blob is streamed from the socket in 1 MiB reads, hashed on
the way, into the layer store's own extractor (stage_layer: gzip inflated by zlib, safe
extraction of hostile input, whiteouts, the tar-split written as the tar goes by, the
diff_id check), so download and extraction overlap and every byte is read once. The staged
layer is handed on only after the blob's size and digest checked out; a wrong blob's
staging is removed. Nothing is in the store until the engine installs the staged layers by
rename and the log says so; a failure or an interrupt leaves only <root>/tmp entries,
removed on the way out (or by the next reconcile after a kill).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from adapters.registry.client import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    RegistryError,
)
from adapters.registry.progress import Progress
from adapters.registry.reference import Reference
from core.distribution import choose_platform
from core.errors import BadInput, NotFound

# docker's max-concurrent-downloads is 3. Receiving, hashing, inflating and writing release
# the interpreter lock, but on 2 cores both are busy with 2 layers (the registry serving takes
# the rest): measured, 3 threads or a read-ahead thread per layer gained nothing there.
WORKERS = min(3, max(2, os.cpu_count() or 2))
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def host_platform() -> str:
    """This machine's platform in an index's words: `linux/amd64`, `linux/arm64`."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "i686": "386"}
    return f"linux/{arch.get(machine, machine)}"


@dataclass
class RemoteImage:
    """One image of a registry, resolved and checked: what core/distribution.py records."""

    reference: Reference
    manifest_digest: str
    media_type: str
    image: Any  # adapters.storage.archive.LoadImage: id, config bytes, diff_ids, tags
    blobs: list[dict[str, Any]] = field(default_factory=list)  # layer descriptors

    @property
    def source(self) -> str:
        return f"{self.reference.name}@{self.manifest_digest}"


def resolve(client: Client, ref: Reference, platform: str | None) -> RemoteImage:
    what = str(ref)
    body, media, digest = client.get_manifest(ref.manifest_ref, what)
    doc = _json(body, f"manifest of {ref}")
    media = doc.get("mediaType") or media
    if media in (OCI_INDEX, DOCKER_LIST) or ("manifests" in doc and "layers" not in doc):
        wanted = platform or host_platform()
        chosen = choose_platform(doc.get("manifests") or [], wanted)
        if chosen is None:
            raise NotFound(f"{ref}: no matching manifest for {wanted} in the manifest list "
                           "entries")
        body, media, digest = client.get_manifest(chosen["digest"], what)
        doc = _json(body, f"manifest {chosen['digest']}")
        media = doc.get("mediaType") or media
    if doc.get("schemaVersion") == 1:
        raise BadInput(f"{ref}: docker image manifest schema 1 is not supported")
    if media not in (OCI_MANIFEST, DOCKER_MANIFEST) and "layers" not in doc:
        raise BadInput(f"{ref}: unsupported manifest type {media!r}")
    return _remote(client, ref, doc, media, digest)


def _remote(client: Client, ref: Reference, doc: dict[str, Any], media: str,
            digest: str) -> RemoteImage:
    from adapters.storage.archive import OCI_CONFIG, LoadLayer
    from adapters.storage.archive import _image as parse_config

    config, layers = doc.get("config"), doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list) or \
            not all(isinstance(d, dict) and _is_digest(d.get("digest")) and
                    isinstance(d.get("size"), int) for d in layers) or \
            not _is_digest(config.get("digest")):
        raise BadInput(f"{ref}: the manifest has no valid config or layers")
    data = client.blob_bytes(config["digest"])
    image = parse_config(data, f"config {config['digest']}")
    image.media_type = str(config.get("mediaType") or OCI_CONFIG)
    if len(layers) != len(image.diff_ids):
        raise BadInput(f"{ref}: the manifest has {len(layers)} layers, its config "
                       f"{len(image.diff_ids)} diff_ids")
    image.layers = [LoadLayer(d["digest"], d["digest"]) for d in layers]
    image.tags = [ref.local_tag] if ref.local_tag else []
    return RemoteImage(ref, digest, media, image, list(layers))


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{what} is not a JSON object")
    return doc


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("sha256:") and len(value) == 71 and \
        all(c in "0123456789abcdef" for c in value[7:])


class FetchedSession:
    """`load`'s view of a pulled image (core.engine.loading.load_archive asks it for images
    and staged layers)."""

    def __init__(self, remote: RemoteImage, staged: dict[int, Any]) -> None:
        self.remote, self.staged = remote, staged

    def images(self) -> list[Any]:
        return [self.remote.image]

    def stage(self, image: Any, index: int) -> Any:
        try:
            return self.staged[index]
        except KeyError:
            raise BadInput(f"layer {index} of {self.remote.reference} was not fetched "
                           "(it was removed while the pull ran): pull again") from None


@contextmanager
def fetch(client: Client, store: Any, remote: RemoteImage, need: Sequence[int],
          progress: Progress) -> Iterator[FetchedSession]:
    """Download and stage layers `need` (indexes into the manifest), WORKERS at a time.
    Everything staged and not installed by the end of the block is removed."""
    with store.staging() as work:
        stop = threading.Event()

        def one(i: int) -> Any:
            return _fetch_one(client, store, remote, i, work, progress, stop)

        staged: dict[int, Any] = {}
        if need:
            with ThreadPoolExecutor(max_workers=min(WORKERS, len(need))) as pool:
                futures = {pool.submit(one, i): i for i in need}
                try:  # in short waits: a signal may land on a worker thread, and the
                    # main thread only runs Python's handler when it wakes up
                    while wait(futures, 0.1, return_when=FIRST_EXCEPTION).not_done and \
                            not any(f.done() and f.exception() for f in futures):
                        pass
                except BaseException:  # an interrupt: the other threads stop too, now
                    stop.set()
                    client.abort()
                    raise
                if any(f.done() and f.exception() for f in futures):
                    stop.set()
                wait(futures)
            errors = [e for e in (f.exception() for f in futures) if e is not None]
            if errors:
                raise _first_cause(errors)
            staged = {i: f.result() for f, i in futures.items()}
        yield FetchedSession(remote, staged)


def _first_cause(errors: list[BaseException]) -> BaseException:
    """The error that stopped the pull, not the `_Cancelled` of the others."""
    real = [e for e in errors if not isinstance(e, _Cancelled)]
    return (real or errors)[0]


class _Cancelled(RegistryError):
    """Another layer failed: this one stopped."""


def _fetch_one(client: Client, store: Any, remote: RemoteImage, i: int, work: str,
               progress: Progress, stop: threading.Event) -> Any:
    """Stream one layer blob into the store's extractor while hashing it; the staged layer
    is handed on only once the blob's size and digest checked out."""
    desc, diff_id = remote.blobs[i], remote.image.diff_ids[i]
    digest, size = desc["digest"], desc["size"]

    def tick(done: int) -> None:
        if stop.is_set():
            raise _Cancelled("cancelled")
        progress.update(digest, "Downloading", done, size)

    stage = tempfile.mkdtemp(dir=work, prefix="layer-")
    try:
        # an uncompressed blob's digest is its diff_id, which stage_layer checks over every
        # byte (it reads to the end): hashing it here too would be the same work twice
        blob = client.open_blob(digest, size, tick, hashed=digest != diff_id)
        try:
            staged = _stage(store, blob, stage, diff_id)
        except BadInput:
            blob.verify()  # a broken or wrong download is the error to report
            raise
        blob.verify()
    finally:
        client.close()  # a thread's connection is not kept past its layer
    progress.update(digest, "Pull complete", size, size)
    return staged


def _stage(store: Any, blob: Any, stage: str, diff_id: str) -> Any:
    """Extract a blob stream: gzip and plain by the store's extractor, zstd through a
    decompressing reader in front of it."""
    from adapters.storage.archive import peek

    head, stream = peek(blob, 4)
    if head != ZSTD_MAGIC:
        return store.stage_layer(stream, stage, expect=diff_id)
    import zstandard

    try:
        plain = zstandard.ZstdDecompressor().stream_reader(stream, read_size=1 << 20,
                                                          read_across_frames=True)
        return store.stage_layer(plain, stage, expect=diff_id)
    except zstandard.ZstdError as err:
        raise BadInput(f"corrupt zstd layer: {err}") from None
