"""The Archive contract (core/ports.py), run against the in-memory and the overlayfs store.

What every implementation must do, whatever its format: what save_images writes (its digest
and size are those of the bytes written), open_archive reads back, in another store, as the
same images (ids, configs, tags, parents, diff_ids) whose staged layers install as the same
files; a layer whose bytes no longer match its diff_id is not saved; what is not an archive
is refused and leaves nothing; nothing staged outlives the block; export is the union of the
image's layers with the read-write layer on top, and leaves nothing mounted.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadInput
from tests.contracts.stores import LinuxStoreHooks, MemoryStoreHooks, image_config

BASE = {"etc/os-release": "lamina 1\n", "bin/sh": "#!ash\n"}
CHANGE = {"etc/os-release": "lamina 2\n", "srv/data": "1\n"}
CID = "c" * 64


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ArchiveContract:
    """Subclasses mix in the store's hooks (tests/contracts/stores.py)."""

    make_store: Any
    source: Any
    files: Any
    write: Any
    damage: Any
    names: Any
    leftovers: Any
    exported: Any

    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        return self.make_store(tmp_path / "root")

    @pytest.fixture
    def chain(self, store) -> dict[str, Any]:
        """Two images: `base` (one layer) and `child` (base's layer and a committed one)."""
        base = store.import_layer(self.source(BASE), None)
        rw = store.create_rw_layer(CID, [base.id])
        self.write(store, rw, CHANGE)
        top = store.commit_rw_layer(rw, base.id)
        store.remove_rw_layer(rw)
        base_cfg = image_config([base.diff_id])
        child_cfg = image_config([base.diff_id, top.diff_id])
        base_id, child_id = (hashlib.sha256(c).hexdigest() for c in (base_cfg, child_cfg))
        entries = [
            {"id": base_id, "config": base_cfg, "tags": ["base:latest"], "layers": [base.id],
             "diff_ids": [base.diff_id], "parent": None},
            {"id": child_id, "config": child_cfg, "tags": ["child:1", "child:latest"],
             "layers": [base.id, top.id], "diff_ids": [base.diff_id, top.diff_id],
             "parent": base_id}]
        return {"entries": entries, "files": [BASE, CHANGE], "layers": [base.id, top.id]}

    def test_what_save_writes_loads_back_elsewhere_as_the_same_images(
            self, store, chain, tmp_path: Path) -> None:
        out = io.BytesIO()
        digest, size = store.save_images(chain["entries"], out)
        data = out.getvalue()
        assert (digest, size) == (sha256(data), len(data))
        elsewhere = self.make_store(tmp_path / "elsewhere")
        with elsewhere.open_archive(io.BytesIO(data)) as source:
            images = {img.id: img for img in source.images()}
            assert sorted(images) == sorted(e["id"] for e in chain["entries"])
            installed: dict[str, str] = {}
            for entry in chain["entries"]:
                img = images[entry["id"]]
                assert sorted(img.tags) == entry["tags"]
                assert img.diff_ids == entry["diff_ids"]
                assert img.config == json.loads(entry["config"])
                assert img.parent == entry["parent"]
                described = img.descriptor()
                assert described["digest"] == f"sha256:{entry['id']}"
                assert base64.b64decode(described["data"]) == entry["config"]
                parent = None
                for i, diff_id in enumerate(img.diff_ids):
                    if diff_id not in installed:
                        staged = source.stage(img, i)
                        assert staged.diff_id == diff_id
                        info = elsewhere.install_layer(staged, parent)
                        assert info.diff_id == diff_id
                        installed[diff_id] = info.id
                    parent = installed[diff_id]
        assert [self.files(elsewhere, installed[d]) for d in chain["entries"][1]["diff_ids"]] \
            == chain["files"]
        assert self.leftovers(elsewhere) == []

    def test_the_same_images_save_as_the_same_bytes(self, store, chain) -> None:
        one, two = io.BytesIO(), io.BytesIO()
        assert store.save_images(chain["entries"], one) == \
            store.save_images(chain["entries"], two)
        assert one.getvalue() == two.getvalue()

    def test_a_layer_that_no_longer_matches_its_diff_id_is_not_saved(self, store,
                                                                     chain) -> None:
        self.damage(store, chain["layers"][1])
        with pytest.raises(BadInput):
            store.save_images(chain["entries"], io.BytesIO())

    def test_what_is_not_an_archive_is_refused_and_leaves_nothing(self, store, chain) -> None:
        before = self.names(store)
        with pytest.raises(BadInput), store.open_archive(io.BytesIO(b"no archive" * 100)) as s:
            s.images()
        assert self.names(store) == before
        assert self.leftovers(store) == []

    def test_what_is_staged_and_not_installed_is_gone_after_the_block(
            self, store, chain, tmp_path: Path) -> None:
        out = io.BytesIO()
        store.save_images(chain["entries"], out)
        elsewhere = self.make_store(tmp_path / "elsewhere")
        with elsewhere.open_archive(io.BytesIO(out.getvalue())) as source:
            img = next(i for i in source.images() if len(i.diff_ids) == 2)
            source.stage(img, 0)
            source.stage(img, 1)
        assert self.names(elsewhere) == set()
        assert self.leftovers(elsewhere) == []

    def test_export_is_the_union_with_the_read_write_layer_on_top(self, store, chain) -> None:
        rw = store.create_rw_layer(CID, chain["layers"])
        self.write(store, rw, {"bin/sh": "#!dash\n", "home/me": "hi\n"})
        out = io.BytesIO()
        digest, size = store.export(rw, chain["layers"], out)
        assert (digest, size) == (sha256(out.getvalue()), len(out.getvalue()))
        want = {**BASE, **CHANGE, "bin/sh": "#!dash\n", "home/me": "hi\n"}
        got = self.exported(out.getvalue())
        assert {k: got.get(k) for k in want} == want
        assert set(got) - set(want) <= {"etc/hostname", "etc/hosts", "etc/resolv.conf",
                                         "dev/console"}  # docker's init layer: empty files
        assert self.leftovers(store) == []


class TestMemoryArchive(MemoryStoreHooks, ArchiveContract):
    pass


class TestLinuxArchive(LinuxStoreHooks, ArchiveContract):
    pass
