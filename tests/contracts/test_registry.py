"""The Registry contract (core/ports.py), run against the in-memory registry and the registry
adapter talking to a real one (Debian's docker-registry on 127.0.0.1, tests/registry/).

What every registry must do for pull and push (core/distribution.py): parse references as
docker does; push a layer as the very bytes its diff_id names (uncompressed), and a second
push finds it there; resolve what was pushed to the same image (its id is the sha256 of the
pushed config) and the pushed manifest; fetch and stage the layers asked for, which the
store installs as the same files, and no others; a reference it lacks is NotFound.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadInput, NotFound
from core.memory import MemoryRegistry
from tests.conftest import require_root
from tests.contracts.stores import LinuxStoreHooks, MemoryStoreHooks, image_config

FILES = {"etc/os-release": "lamina 1\n", "bin/sh": "#!ash\n"}
MORE = {"srv/data": "1\n"}


class RegistryContract:
    """Subclasses mix in a store's hooks and provide `registry(store)` and `host`."""

    make_store: Any
    source: Any
    files: Any
    leftovers: Any
    host: str

    def make_registry(self, store: Any, tmp_path: Path) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def pair(self, tmp_path: Path) -> tuple[Any, Any]:
        store = self.make_store(tmp_path / "root")
        return self.make_registry(store, tmp_path / "root"), store

    def pushed(self, registry: Any, store: Any, name: str) -> dict[str, Any]:
        """Two layers and a config pushed as `<host>/<name>:v1`."""
        layers = [store.import_layer(self.source(FILES), None),
                  store.import_layer(self.source(MORE), None)]
        config = image_config([la.diff_id for la in layers])
        blobs = [store.layer_blob(la.id) for la in layers]
        ref = registry.parse(f"{self.host}/{name}:v1")
        try:
            outcome = registry.push(ref, config, blobs, None)
        finally:
            for blob in blobs:
                blob.cleanup()
        return {"ref": ref, "config": config, "layers": layers, "outcome": outcome,
                "id": hashlib.sha256(config).hexdigest()}

    def test_references_parse_as_docker_names_them(self, pair) -> None:
        registry, _ = pair
        hub = registry.parse("busybox")
        assert (hub.registry, hub.repository, hub.tag, hub.local_tag) == \
            ("docker.io", "library/busybox", "latest", "busybox:latest")
        mine = registry.parse(f"{self.host}/team/app:v2")
        assert (mine.registry, mine.repository, mine.tag, mine.digest, mine.local_tag) == \
            (self.host, "team/app", "v2", None, f"{self.host}/team/app:v2")
        pinned = registry.parse(f"{self.host}/app@sha256:{'a' * 64}")
        assert (pinned.digest, pinned.local_tag) == (f"sha256:{'a' * 64}", None)
        with pytest.raises(BadInput):
            registry.parse("Not A Name")

    def test_push_sends_each_layer_as_its_diff_id_once(self, pair) -> None:
        registry, store = pair
        sent = self.pushed(registry, store, "contract/push")
        outcome = sent["outcome"]
        assert outcome.manifest_digest.startswith("sha256:") and outcome.size > 0
        assert [la["digest"] for la in outcome.layers] == [la.diff_id for la in sent["layers"]]
        assert [la["status"] for la in outcome.layers] == ["uploaded", "uploaded"]
        blobs = [store.layer_blob(la.id) for la in sent["layers"]]
        again = registry.push(registry.parse(f"{self.host}/contract/push:v2"), sent["config"],
                              blobs, None)
        assert [la["status"] for la in again.layers] == ["exists", "exists"]
        assert again.manifest_digest == outcome.manifest_digest

    def test_resolve_names_the_pushed_image(self, pair) -> None:
        registry, store = pair
        sent = self.pushed(registry, store, "contract/resolve")
        remote = registry.resolve(sent["ref"], None)
        assert remote.image.id == sent["id"]
        assert remote.image.diff_ids == [la.diff_id for la in sent["layers"]]
        assert [b["digest"] for b in remote.blobs] == remote.image.diff_ids  # uncompressed
        assert remote.manifest_digest == sent["outcome"].manifest_digest
        assert remote.image.tags == [sent["ref"].local_tag]
        assert remote.source.endswith(f"@{remote.manifest_digest}")

    def test_fetch_stages_what_is_needed_as_the_same_files(self, pair,
                                                          tmp_path: Path) -> None:
        registry, store = pair
        sent = self.pushed(registry, store, "contract/fetch")
        remote = registry.resolve(sent["ref"], None)
        with registry.fetch(remote, [1]) as fetched:
            assert [img.id for img in fetched.images()] == [sent["id"]]
            staged = fetched.stage(remote.image, 1)
            assert staged.diff_id == remote.image.diff_ids[1]
            info = store.install_layer(staged, None)
            with pytest.raises(BadInput):
                fetched.stage(remote.image, 0)  # not asked for
        assert info.diff_id == sent["layers"][1].diff_id
        assert self.files(store, info.id) == MORE
        with registry.fetch(remote, [0]) as fetched:
            fetched.stage(remote.image, 0)  # staged, never installed: gone after the block
        assert self.leftovers(store) == []

    def test_what_the_registry_lacks_is_not_found(self, pair) -> None:
        registry, store = pair
        self.pushed(registry, store, "contract/present")
        for text in (f"{self.host}/contract/absent:v1", f"{self.host}/contract/present:v9"):
            with pytest.raises(NotFound):
                registry.resolve(registry.parse(text), None)


class TestMemoryRegistry(MemoryStoreHooks, RegistryContract):
    host = "registry.test:5000"

    def make_registry(self, store: Any, tmp_path: Path) -> Any:
        return MemoryRegistry()


class TestLinuxRegistry(LinuxStoreHooks, RegistryContract):
    """The registry adapter (adapters/registry/adapter.py) against a real registry."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def running(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        require_root()
        from tests.kernel.test_storage_support import require_tool
        from tests.registry.registry_env import start_registry

        require_tool("docker-registry")
        with start_registry(tmp_path_factory.mktemp("registry")) as reg:
            cls.host = reg.host
            yield reg

    def make_registry(self, store: Any, tmp_path: Path) -> Any:
        from adapters.registry.adapter import Registry

        return Registry(str(tmp_path), store)
