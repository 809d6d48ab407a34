""".dockerignore with `!` exceptions under an ignored directory (docker-py's own case): the
file that comes back is copied with the directories that hold it, as docker copies them."""

from __future__ import annotations

import os
from pathlib import Path

from adapters.storage.context import Copier, DirSource, IgnoreRules
from tests.conftest import require_root

IGNORE = """ignored
Dockerfile
.dockerignore
 ignored-with-spaces
!ignored/subdir/excepted-file
! ignored/subdir/excepted-with-spaces
#*
"""


def test_a_file_brought_back_from_an_ignored_directory_is_copied_with_its_directories(
        tmp_path: Path) -> None:
    require_root()  # the CLI runs as root only, and chowns to uid 0
    ctx, dest = tmp_path / "ctx", tmp_path / "dest"
    (ctx / "ignored" / "subdir").mkdir(parents=True)
    dest.mkdir()
    files = {"Dockerfile": "FROM busybox\n", ".dockerignore": IGNORE, "not-ignored": "a",
             "#file.txt": "b", "ignored-with-spaces": "c", "ignored/subdir/file": "d",
             "ignored/subdir/excepted-file": "e", "ignored/subdir/excepted-with-spaces": "f"}
    for name, text in files.items():
        (ctx / name).write_text(text)
    source = DirSource(str(ctx), ignore=IgnoreRules.load(str(ctx)))
    Copier(str(dest), None, None).copy_into(source, str(ctx), "/test", keep_owner=False)
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["test/#file.txt", "test/ignored/subdir/excepted-file",
                      "test/ignored/subdir/excepted-with-spaces", "test/not-ignored"]
    assert (dest / "test/ignored/subdir/excepted-file").read_text() == "e"
    assert os.stat(dest / "test/ignored").st_mode & 0o777 == \
        os.stat(ctx / "ignored").st_mode & 0o777
