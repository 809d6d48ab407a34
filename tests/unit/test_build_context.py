"""COPY's host side without a kernel: .dockerignore rules, confinement to the context,
resolution inside a root, the copy digest and the copy itself (owners need root)."""

from __future__ import annotations

import os

import pytest

from adapters.storage.context import Copier, DirSource, IgnoreRules, resolve_in_root
from core.errors import BadInput
from tests.conftest import require_root


def test_dockerignore_patterns_exceptions_and_directories() -> None:
    rules = IgnoreRules.parse("# comment\n*.log\n**/tmp\nbuild/\n!build/keep.txt\n/abs\n")
    assert rules.ignored("a.log") and not rules.ignored("sub/a.log")  # * stops at /
    assert rules.ignored("tmp") and rules.ignored("x/y/tmp/file")
    assert rules.ignored("build/out.o") and not rules.ignored("build/keep.txt")
    assert rules.ignored("abs") and not rules.ignored("keep.md")


def test_sources_stay_inside_the_context(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d" / "f.txt").write_text("x")
    os.symlink("/etc", ctx / "out")
    os.symlink("d/f.txt", ctx / "in")
    src = DirSource(str(ctx))
    assert src.resolve("in") == [str(ctx / "d" / "f.txt")]
    assert src.resolve("/d/*.txt") == [str(ctx / "d" / "f.txt")]
    for bad in ("../x", "out", "out/hostname", "d/../../x"):
        with pytest.raises(BadInput, match="forbidden path outside the build context"):
            src.resolve(bad)


def test_paths_resolve_inside_a_root(tmp_path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink("/real", tmp_path / "abs")
    os.symlink("../../../real", tmp_path / "up")
    assert resolve_in_root(str(tmp_path), "abs/x") == str(tmp_path / "real" / "x")
    assert resolve_in_root(str(tmp_path), "up/x") == str(tmp_path / "real" / "x")
    assert resolve_in_root(str(tmp_path), "../../etc") == str(tmp_path / "etc")


def test_the_digest_follows_content_and_mode_not_mtime(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f"
    f.write_text("one")
    src = DirSource(str(tmp_path))
    first = src.digest(["d"], "", "", False)
    assert first.startswith("dir:")
    os.utime(f, (1, 1))
    assert src.digest(["d"], "", "", False) == first
    assert src.digest(["d"], "1:1", "", False) != first
    f.write_text("two")
    assert src.digest(["d"], "", "", False) != first
    assert src.digest(["d/f"], "", "", False).startswith("file:")
    assert src.digest(["d/f", "d"], "", "", False).startswith("multi:")


def test_an_ignored_directory_keeps_its_exceptions(tmp_path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "keep.txt").write_text("k")
    (tmp_path / "build" / "drop.o").write_text("d")
    src = DirSource(str(tmp_path), ignore=IgnoreRules.parse("build\n!build/keep.txt\n"))
    rels = [e.rel for e in src.entries(str(tmp_path))]
    assert "build/keep.txt" in rels and "build/drop.o" not in rels


def test_a_copy_never_leaves_the_root(tmp_path) -> None:
    require_root()  # the CLI runs as root only, and chowns to uid 0
    root, ctx = tmp_path / "root", tmp_path / "ctx"
    root.mkdir()
    ctx.mkdir()
    os.symlink("/", root / "escape")  # in the image: a link to its own root
    (ctx / "f").write_text("data")
    src = DirSource(str(ctx))
    Copier(str(root), owner=(os.getuid(), os.getgid()), chmod=0o600).copy_into(
        src, str(ctx / "f"), "/escape/tmp/copied", keep_owner=False)
    copied = root / "tmp" / "copied"
    assert copied.read_text() == "data"
    assert oct(copied.stat().st_mode & 0o777) == "0o600"
