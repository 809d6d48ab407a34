"""Push: each layer (HEAD first; a cross-repository mount if a repository of the same
registry had it; else an upload, monolithic or chunked), then the config, then the manifest.

Layers go as the exact tars their diff_ids name, streamed from the layer store's tar-split
(uncompressed: the blob digest is the diff_id, and nothing is spooled to disk). Layers are
sent WORKERS at a time; the manifest is PUT only once every blob is there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from adapters.registry.client import OCI_MANIFEST, Client
from adapters.registry.reference import Reference
from core.distribution import PushOutcome

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
WORKERS = 3  # docker's max-concurrent-uploads is 5; 3 suits two cores


def manifest(config: bytes, config_digest: str, layers: Sequence[Any]) -> bytes:
    """The OCI image manifest of an image, compact JSON as Go writes it."""
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
           "layers": [{"mediaType": OCI_LAYER, "digest": b.digest, "size": b.size}
                      for b in layers]}
    return json.dumps(doc, separators=(",", ":")).encode()


def push_image(client: Client, ref: Reference, config: bytes, layers: Sequence[Any],
               mount_from: str | None, progress: Any, chunk: int = 0) -> PushOutcome:
    import hashlib

    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    progress.begin(f"The push refers to repository [{ref.name}]",
                   [(b.digest, b.size, "Preparing") for b in layers])
    client.ping()  # authenticate once, before threads race for a token
    statuses: dict[str, str] = {}

    def one(blob: Any) -> None:
        try:
            statuses[blob.digest] = _push_blob(client, blob, mount_from, progress, chunk)
        finally:
            client.close()

    unique = list({b.digest: b for b in layers}.values())
    with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(unique)))) as pool:
        for fut in [pool.submit(one, b) for b in unique]:
            fut.result()
    if not client.blob_exists(config_digest):
        location = client.start_upload(config_digest, None)
        if location is not None:
            client.upload_monolithic(location, config_digest, len(config),
                                     lambda out: out.write(config), lambda n: None)
    body = manifest(config, config_digest, layers)
    digest = client.put_manifest(ref.tag or "latest", body, OCI_MANIFEST)
    progress.end()
    return PushOutcome(digest, len(body), [{"digest": b.digest, "size": b.size,
                                            "status": statuses[b.digest]} for b in layers])


def _push_blob(client: Client, blob: Any, mount_from: str | None, progress: Any,
               chunk: int) -> str:
    if client.blob_exists(blob.digest):
        progress.update(blob.digest, "Layer already exists", blob.size, blob.size)
        return "exists"
    location = client.start_upload(blob.digest, mount_from)
    if location is None:
        progress.update(blob.digest, f"Mounted from {mount_from}", blob.size, blob.size)
        return "mounted"

    def tick(n: int) -> None:
        progress.update(blob.digest, "Pushing", n, blob.size)

    if chunk and blob.size > chunk:
        client.upload_chunked(location, blob.digest, blob.size, blob.write_to, chunk, tick)
    else:
        client.upload_monolithic(location, blob.digest, blob.size, blob.write_to, tick)
    progress.update(blob.digest, "Pushed", blob.size, blob.size)
    return "uploaded"
