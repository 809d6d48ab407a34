"""The VolumeStore contract (core/ports.py), run against the in-memory and the on-disk store.

What every store must do: `create` makes an empty volume and returns its host path, and
making it again changes nothing (its files stay); `path` is that path, made or not; `size`
counts its files' bytes (0 when it is not there); `remove` deletes exactly the volume named,
and a volume that is not there is no error; `names` lists what is there, sorted; `empty`
says whether it holds a file; `bind_source` finds a bind mount's host source or makes it
when asked, and refuses a missing one in docker's words otherwise.

The Linux store needs no root: its modes are the ones moby's local driver gives (0701 over
each volume, 0755 on `_data`), a volume appears and disappears by one rename (a crash inside
either leaves nothing that looks like a volume), and a volume another live process is still
making is not offered to reconciliation.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadInput
from core.memory import MemoryVolumeStore


class VolumeStoreContract:
    def make_store(self, root: Path) -> Any:
        raise NotImplementedError

    def write(self, store: Any, name: str, files: dict[str, str]) -> None:
        """Files written into the volume, as a container writes them."""
        raise NotImplementedError

    def files(self, store: Any, name: str) -> dict[str, str]:
        raise NotImplementedError

    def host_path(self, store: Any, tmp_path: Path, name: str) -> str:
        """A host path for bind_source: `name` under a host directory (made by the hook
        when the store has no disk)."""
        raise NotImplementedError

    def existing(self, store: Any, path: str) -> bool:
        raise NotImplementedError

    def leftovers(self, store: Any) -> list[str]:
        """What the store keeps beside its volumes (staging): nothing, once it is idle."""
        return []

    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        return self.make_store(tmp_path / "root")

    def test_a_new_volume_is_empty_and_its_path_is_where_it_lives(self, store) -> None:
        assert not store.exists("data") and store.empty("data")
        path = store.create("data")
        assert path == store.path("data") and path.endswith("/data/_data")
        assert store.exists("data") and store.empty("data")
        assert store.size("data") == 0 and self.files(store, "data") == {}
        assert store.names() == ["data"]
        assert self.leftovers(store) == []

    def test_creating_it_again_keeps_its_files(self, store) -> None:
        store.create("data")
        self.write(store, "data", {"db/table": "rows\n"})
        assert store.create("data") == store.path("data")
        assert self.files(store, "data") == {"db/table": "rows\n"}
        assert not store.empty("data")

    def test_size_counts_the_bytes_of_its_files(self, store) -> None:
        store.create("data")
        self.write(store, "data", {"a": "x" * 1000, "sub/b": "yz"})
        assert store.size("data") == 1002
        assert store.size("nosuch") == 0

    def test_remove_deletes_exactly_that_volume_and_a_missing_one_is_fine(self, store) -> None:
        for name in ("b-vol", "a.vol", "c_vol"):
            store.create(name)
        self.write(store, "b-vol", {"f": "data"})
        store.remove("b-vol")
        assert not store.exists("b-vol") and store.size("b-vol") == 0
        assert store.names() == ["a.vol", "c_vol"]
        store.remove("b-vol")
        store.remove("never-was")
        assert self.leftovers(store) == []
        assert store.create("b-vol") == store.path("b-vol")  # the name can come back, empty
        assert self.files(store, "b-vol") == {}

    def test_a_path_is_given_for_a_volume_not_made(self, store) -> None:
        assert store.path("later").endswith("/later/_data")
        assert not store.exists("later") and store.names() == []

    def test_a_bind_source_is_found_made_or_refused(self, store, tmp_path: Path) -> None:
        there = self.host_path(store, tmp_path, "there")
        store.bind_source(there, create=False)
        missing = self.host_path(store, tmp_path, "missing") + "/deeper"
        with pytest.raises(BadInput, match="bind source path does not exist: " + missing):
            store.bind_source(missing, create=False)
        assert not self.existing(store, missing)
        store.bind_source(missing, create=True)
        assert self.existing(store, missing)
        store.bind_source(missing, create=False)


class TestMemoryVolumeStore(VolumeStoreContract):
    def make_store(self, root: Path) -> MemoryVolumeStore:
        return MemoryVolumeStore()

    def write(self, store: MemoryVolumeStore, name: str, files: dict[str, str]) -> None:
        store.write(name, files)

    def files(self, store: MemoryVolumeStore, name: str) -> dict[str, str]:
        return store.files(name)

    def host_path(self, store: MemoryVolumeStore, tmp_path: Path, name: str) -> str:
        path = str(tmp_path / name)
        if name == "there":
            store.host.add(path)
        return path

    def existing(self, store: MemoryVolumeStore, path: str) -> bool:
        return path in store.host


class TestLinuxVolumeStore(VolumeStoreContract):
    """adapters.storage.volumes.LinuxVolumeStore under a temporary root (no root needed)."""

    def make_store(self, root: Path) -> Any:
        from adapters.storage.volumes import LinuxVolumeStore

        return LinuxVolumeStore(str(root))

    def write(self, store: Any, name: str, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = os.path.join(store.path(name), rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    def files(self, store: Any, name: str) -> dict[str, str]:
        from tests.contracts.stores import tree_files

        return tree_files(store.path(name))

    def host_path(self, store: Any, tmp_path: Path, name: str) -> str:
        path = tmp_path / "host" / name
        if name == "there":
            path.mkdir(parents=True)
        return str(path)

    def existing(self, store: Any, path: str) -> bool:
        return os.path.isdir(path)

    def leftovers(self, store: Any) -> list[str]:
        try:
            return sorted(os.listdir(store.tmp_dir))
        except FileNotFoundError:
            return []

    # --- beyond the port: the layout on disk ---------------------------------------------

    def test_modes_are_those_of_dockers_local_driver(self, store) -> None:
        path = store.create("data")
        assert path == os.path.join(store.root, "volumes", "data", "_data")
        modes = {p: stat.S_IMODE(os.stat(p).st_mode)
                 for p in (store.volumes_dir, os.path.dirname(path), path)}
        assert list(modes.values()) == [0o701, 0o701, 0o755]

    def test_a_name_that_is_no_path_component_is_refused(self, store) -> None:
        for bad in ("../etc", "a/b", ".hidden", "x", ""):
            with pytest.raises(BadInput):
                store.create(bad)
            with pytest.raises(BadInput):
                store.remove(bad)
        assert not os.path.exists(store.volumes_dir) or os.listdir(store.volumes_dir) == []

    def test_a_crash_while_making_leaves_no_volume(self, store) -> None:
        """Killed before the rename (volumes.staged): nothing in volumes/, only a staging
        directory stamped with its dead maker, which reconciliation removes."""
        def crash(point: str) -> None:
            if point == "volumes.staged":
                raise KeyboardInterrupt(point)

        store.fault = crash
        with pytest.raises(KeyboardInterrupt):
            store.create("data")
        assert not store.exists("data") and store.names() == []

    def test_a_crash_while_removing_leaves_no_half_volume(self, store) -> None:
        """Killed after the rename out of sight (volumes.hidden): the volume is gone whole."""
        store.create("data")
        self.write(store, "data", {"f": "x"})

        def crash(point: str) -> None:
            if point == "volumes.hidden":
                raise KeyboardInterrupt(point)

        store.fault = crash
        with pytest.raises(KeyboardInterrupt):
            store.remove("data")
        assert not store.exists("data") and store.names() == []
        assert [n.startswith("rm-") for n in self.leftovers(store)] == [True]

    def test_a_volume_another_live_process_is_making_is_not_offered(self, store) -> None:
        """Its maker may be about to record it: reconciliation must not take it for an
        orphan until that process has ended."""
        store.create("mine")
        r, w = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:  # the other maker
            try:
                os.close(r)
                os.close(w2)
                store.create("theirs")
                os.write(w, b"made")
                os.read(r2, 1)  # until the parent has looked
            finally:
                os._exit(0)
        os.close(w)
        os.close(r2)
        assert os.read(r, 4) == b"made"
        try:
            assert store.exists("theirs") and store.names() == ["mine"]
        finally:
            os.close(w2)
            os.waitpid(pid, 0)
            os.close(r)
        assert store.names() == ["mine", "theirs"]
