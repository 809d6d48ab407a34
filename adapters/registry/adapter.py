"""The registry adapter core/distribution.py drives (its RegistryPort): one object per
command, holding the layer store, the credentials file, the insecure registries and the
progress display."""

from __future__ import annotations

import http.client
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from adapters.registry import auth
from adapters.registry.client import Client, RegistryError
from adapters.registry.progress import Progress
from adapters.registry.pull import FetchedSession, RemoteImage, fetch, resolve
from adapters.registry.push import push_image
from adapters.registry.reference import Reference, parse
from core.distribution import PushOutcome


@contextmanager
def network_errors(host: str) -> Iterator[None]:
    """A connection that breaks or a server that answers garbage is a one-line error."""
    try:
        yield
    except http.client.HTTPException as err:
        raise RegistryError(f"{host}: the registry's answer broke off or was not HTTP: "
                            f"{type(err).__name__} {err}".rstrip()) from None
    except (ConnectionError, TimeoutError) as err:
        raise RegistryError(f"{host}: {err.strerror or err}") from None


class Registry:
    def __init__(self, root: str, store: Any, *, insecure: Iterable[str] = (),
                 progress: Progress | None = None, chunk: int = 0) -> None:
        self.root, self.store = root, store
        self.insecure = set(insecure)
        self.progress = progress or Progress()
        self.chunk = chunk

    def client(self, ref: Reference, actions: Sequence[str] = ("pull",),
               extra_scopes: Sequence[str] = ()) -> Client:
        creds = auth.load(auth.config_path(self.root), ref.registry)
        return Client(ref.api_host, ref.repository, creds,
                      insecure=ref.registry in self.insecure, actions=actions,
                      extra_scopes=extra_scopes)

    def parse(self, text: str) -> Reference:
        return parse(text)

    def resolve(self, ref: Reference, platform: str | None) -> RemoteImage:
        client = self.client(ref)
        try:
            with network_errors(ref.registry):
                return resolve(client, ref, platform)
        finally:
            client.close()

    @contextmanager
    def fetch(self, remote: RemoteImage, need: Sequence[int]) -> Iterator[FetchedSession]:
        ref = remote.reference
        title = f"{ref.tag or ref.digest}: Pulling from {ref.repository}"
        self.progress.begin(title, [(d["digest"], d["size"],
                                     "Pulling fs layer" if i in need else "Already exists")
                                    for i, d in enumerate(remote.blobs)])
        client = self.client(ref)
        try:
            with network_errors(ref.registry), \
                    fetch(client, self.store, remote, need, self.progress) as session:
                yield session
        finally:
            self.progress.end()
            client.close()

    def push(self, ref: Reference, config: bytes, layers: Sequence[Any],
             mount_from: str | None) -> PushOutcome:
        scopes = [f"repository:{mount_from}:pull"] if mount_from else []
        client = self.client(ref, ("pull", "push"), scopes)
        try:
            with network_errors(ref.registry):
                return push_image(client, ref, config, layers, mount_from, self.progress,
                                  self.chunk)
        finally:
            client.close()
