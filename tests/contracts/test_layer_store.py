"""The LayerStore contract (core/ports.py), run against the in-memory and the overlayfs store.

What every store must do: a layer it imports or commits holds exactly the files it was given,
under a fresh id, with a diff_id that is the sha256 of the layer's bytes (layer_blob) and so
the same for the same content, wherever it is stored; what is not a layer is refused and
leaves nothing; a commit copies the read-write layer and leaves it as it was; removal is of
exactly what is named, and of something gone already is no error; `changes` is docker diff.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadInput
from tests.contracts.stores import LinuxStoreHooks, MemoryStoreHooks

BASE = {"etc/os-release": "lamina 1\n", "bin/sh": "#!ash\n"}
CID = "c" * 64


class LayerStoreContract:
    """Subclasses mix in the store's hooks (tests/contracts/stores.py)."""

    make_store: Any
    source: Any
    not_a_layer: Any
    files: Any
    write: Any
    names: Any
    leftovers: Any

    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        return self.make_store(tmp_path / "root")

    def blob_bytes(self, store: Any, layer_id: str) -> tuple[bytes, Any]:
        blob = store.layer_blob(layer_id)
        out = io.BytesIO()
        try:
            blob.write_to(out)
        finally:
            blob.cleanup()
        return out.getvalue(), blob

    def test_an_imported_layer_holds_its_files_under_a_digest_of_its_bytes(self, store) -> None:
        info = store.import_layer(self.source(BASE), None)
        assert re.fullmatch(r"[0-9a-f]{64}", info.id)
        assert self.files(store, info.id) == BASE
        data, blob = self.blob_bytes(store, info.id)
        assert blob.digest == info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
        assert blob.size == len(data)
        assert self.leftovers(store) == []

    def test_the_same_content_twice_is_two_layers_with_one_diff_id(self, store) -> None:
        one = store.import_layer(self.source(BASE), None)
        two = store.import_layer(self.source(BASE), one.id)
        other = store.import_layer(self.source({**BASE, "bin/sh": "#!bash\n"}), None)
        assert one.id != two.id
        assert one.diff_id == two.diff_id != other.diff_id

    def test_a_layers_bytes_stored_elsewhere_are_the_same_layer(self, store,
                                                              tmp_path: Path) -> None:
        info = store.import_layer(self.source(BASE), None)
        data, _ = self.blob_bytes(store, info.id)
        elsewhere = self.make_store(tmp_path / "elsewhere")
        again = elsewhere.import_layer(io.BytesIO(data), None)
        assert again.diff_id == info.diff_id
        assert self.files(elsewhere, again.id) == BASE

    def test_what_is_not_a_layer_is_refused_and_leaves_nothing(self, store) -> None:
        kept = store.import_layer(self.source(BASE), None)
        with pytest.raises(BadInput):
            store.import_layer(self.not_a_layer(), None)
        assert self.names(store) == {kept.id}
        assert self.leftovers(store) == []

    def test_a_commit_copies_the_read_write_layer_with_a_stable_diff_id(self, store) -> None:
        base = store.import_layer(self.source(BASE), None)
        rw = store.create_rw_layer(CID, [base.id])
        assert rw == f"rw-{CID}" and rw in self.names(store)
        self.write(store, rw, {"etc/new": "new\n", "etc/os-release": "lamina 2\n"})
        one = store.commit_rw_layer(rw, base.id)
        two = store.commit_rw_layer(rw, base.id)  # the read-write layer is unchanged by one
        assert self.files(store, one.id) == {"etc/new": "new\n", "etc/os-release": "lamina 2\n"}
        assert one.id != two.id and one.diff_id == two.diff_id
        assert self.blob_bytes(store, one.id)[1].digest == one.diff_id
        assert self.files(store, base.id) == BASE
        assert self.leftovers(store) == []

    def test_an_empty_read_write_layer_commits_to_an_empty_layer(self, store) -> None:
        base = store.import_layer(self.source(BASE), None)
        rw = store.create_rw_layer(CID, [base.id])
        assert self.files(store, store.commit_rw_layer(rw, base.id).id) == {}

    def test_removal_removes_what_is_named_and_gone_already_is_fine(self, store) -> None:
        a = store.import_layer(self.source(BASE), None)
        b = store.import_layer(self.source({"x": "y"}), None)
        rw = store.create_rw_layer(CID, [a.id])
        store.remove_layer(a.id)
        assert self.names(store) == {b.id, rw}
        store.remove_layer(a.id)
        store.remove_rw_layer(rw)
        store.remove_rw_layer(rw)
        assert self.names(store) == {b.id}
        assert self.files(store, b.id) == {"x": "y"}
        assert self.leftovers(store) == []

    def test_changes_are_docker_diff_of_the_read_write_layer(self, store) -> None:
        base = store.import_layer(self.source(BASE), None)
        rw = store.create_rw_layer(CID, [base.id])
        assert store.changes(rw, [base.id]) == []
        self.write(store, rw, {"etc/os-release": "lamina 2\n", "etc/new": "new\n",
                               "srv/data": "1\n"})
        assert store.changes(rw, [base.id]) == [
            ("C", "/etc"), ("A", "/etc/new"), ("C", "/etc/os-release"), ("A", "/srv"),
            ("A", "/srv/data")]

    def test_squashed_layers_hold_what_they_amount_to_over_the_base(self, store) -> None:
        base = store.import_layer(self.source(BASE), None)
        one = store.import_layer(self.source({"etc/a": "1\n", "etc/b": "1\n"}), base.id)
        two = store.import_layer(self.source({"etc/b": "2\n", "srv/c": "3\n"}), one.id)
        info = store.squash_layers([one.id, two.id], [base.id], base.id)
        assert self.files(store, info.id) == {"etc/a": "1\n", "etc/b": "2\n", "srv/c": "3\n"}
        assert self.blob_bytes(store, info.id)[1].digest == info.diff_id
        assert self.files(store, two.id) == {"etc/b": "2\n", "srv/c": "3\n"}
        assert self.leftovers(store) == []


class TestMemoryLayerStore(MemoryStoreHooks, LayerStoreContract):
    pass


class TestLinuxLayerStore(LinuxStoreHooks, LayerStoreContract):
    pass
