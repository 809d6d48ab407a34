"""Shared pieces of the storage tests (no tests here): a lamina root per test that is cleaned
up and checked for leftover mounts, tar and archive builders, tree snapshots, require_tool."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_tar, leftovers


def require_tool(name: str, package: str | None = None) -> str:
    """The path of a host tool; skip without it, but fail under CI (where it must be
    installed: `apt-get install -y <package>`, the tool's name unless said)."""
    path = shutil.which(name)
    if path:
        return path
    package = package or name
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed, and CI must run this test "
                    f"(apt-get install -y {package})")
    pytest.skip(f"needs {name} (apt-get install -y {package})")


@pytest.fixture(scope="session")
def bb_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_tar(tmp_path_factory.mktemp("busybox"))


class Root(Lamina):
    """A lamina root for one test, with a busybox image and handy readers."""

    def event_types(self) -> list[str]:
        db = self.root / "events.db"
        if not db.exists():
            return []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return [r[0] for r in con.execute("SELECT type FROM events ORDER BY seq")]
        finally:
            con.close()

    def events_of(self, type_: str) -> list[dict[str, Any]]:
        con = sqlite3.connect(f"file:{self.root / 'events.db'}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT data, meta FROM events WHERE type = ? ORDER BY seq",
                               (type_,))
            return [{**json.loads(d), "meta": json.loads(m)} for d, m in rows]
        finally:
            con.close()

    def store_state(self) -> dict[str, Any]:
        """What a refused command must leave exactly as it was: the store's directories and
        the read model (images, layers, containers)."""
        layers = self.root / "layers"
        tmp = self.root / "tmp"
        state: dict[str, Any] = {
            "layers": sorted(os.listdir(layers)) if layers.exists() else [],
            "tmp": sorted(os.listdir(tmp)) if tmp.exists() else []}
        con = sqlite3.connect(f"file:{self.root / 'events.db'}?mode=ro", uri=True)
        try:
            for table in ("images", "layers", "containers"):
                state[table] = con.execute(f"SELECT id, doc FROM {table} ORDER BY id").fetchall()
        finally:
            con.close()
        return state

    def inspect(self, *refs: str) -> list[dict[str, Any]]:
        return json.loads(self.ok("inspect", *refs))


@contextmanager
def lamina_root(path: Path, bb_tar: Path) -> Iterator[Root]:
    """A fresh root holding busybox:latest; afterwards every container is removed and nothing
    may stay mounted, in a cgroup or running."""
    require_root()
    root = Root(path)
    root.ok("import", str(bb_tar), "busybox")
    try:
        yield root
    finally:
        ids = root.container_ids() if (root.root / "events.db").exists() else []
        for cid in ids:
            root("rm", "-f", cid)
        left = leftovers(root.root, ids)
        assert not left, f"left behind: {left}"


@pytest.fixture
def lam(tmp_path: Path, bb_tar: Path) -> Iterator[Root]:
    with lamina_root(tmp_path / "root", bb_tar) as root:
        yield root


# --- building tars and archives -------------------------------------------------------------


def member(name: str, data: bytes = b"", **attrs: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = attrs.pop("mode", 0o644)
    info.mtime = attrs.pop("mtime", 1_700_000_000)
    for key, value in attrs.items():
        setattr(info, key, value)
    if info.type != tarfile.REGTYPE:
        info.size = 0
    return info, data


def directory(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, type=tarfile.DIRTYPE, mode=0o755)


def tar_bytes(members: Sequence[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT
              ) -> bytes:
    """A tar of exactly these members, in this order (duplicates and all)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(diff_ids: Sequence[str], **extra: Any) -> bytes:
    """A docker-ish config: not lamina's canonical JSON (keys unsorted, spaces), so that
    loading it must keep its bytes to keep its id."""
    cfg = {"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
           "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
           "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
           "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"step {i}"}
                       for i in range(len(diff_ids))]}
    cfg.update(extra)
    return json.dumps(cfg, indent=1).encode()


def docker_archive(layers: Sequence[bytes], tags: Sequence[str] = ("hostile:latest",),
                   config: bytes | None = None, layer_names: Sequence[str] | None = None,
                   extra: Sequence[tuple[tarfile.TarInfo, bytes]] = ()) -> bytes:
    """A docker-archive (docker < 25 naming) with these layer tars."""
    diff_ids = [sha256(b) for b in layers]
    config = config if config is not None else image_config(diff_ids)
    names = list(layer_names or [f"{d[7:]}/layer.tar" for d in diff_ids])
    cfg_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = [{"Config": cfg_name, "RepoTags": list(tags), "Layers": names}]
    members = [member(cfg_name, config)]
    for name, data in zip(names, layers, strict=False):
        members.append(member(name, data))
    members.append(member("manifest.json", json.dumps(manifest).encode()))
    members += list(extra)
    return tar_bytes(members)


def small_layer(name: str = "hello", data: bytes = b"hi\n") -> bytes:
    return tar_bytes([directory("etc"), member(f"etc/{name}", data)])


def cut(data: bytes, n: int) -> bytes:
    """A tar without its end-of-archive blocks and padding, and then n bytes shorter."""
    body = data.rstrip(b"\0")
    body += bytes(-len(body) % 512)
    return body[:len(body) - n]


# --- comparing trees ------------------------------------------------------------------------


def snapshot(root: str, skip: Sequence[str] = ()) -> dict[str, tuple[Any, ...]]:
    """Type, mode, owner, mtime, content hash or link target of every path below root."""
    view: dict[str, tuple[Any, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                content: Any = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            # directories' mtimes change as they are filled, and Python's tarfile does not
            # set a symlink's
            plain = not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode))
            mtime = int(st.st_mtime) if plain else None
            view[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                         st.st_gid, mtime, content)
    return view


def untar(data_or_path: bytes | Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    data = data_or_path if isinstance(data_or_path, bytes) else data_or_path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(dest, filter="fully_trusted")
    return dest
