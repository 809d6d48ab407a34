"""Reading subordinate ids for --userns-remap (adapters/remap.py) from a prefix's files:
what a root may be given, and what it is refused, in one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import remap
from adapters.kernel.idmap import IdMap, IdRange
from core.rootconfig import RootConfig


def prefix_with(tmp_path: Path, subuid: str, subgid: str | None = None,
                passwd: str = "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/:/bin/sh\n"
                ) -> str:
    etc = tmp_path / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "subuid").write_text(subuid)
    (etc / "subgid").write_text(subuid if subgid is None else subgid)
    (etc / "passwd").write_text(passwd)
    return str(tmp_path)


def test_ranges_laid_end_to_end_by_name_or_uid(tmp_path: Path) -> None:
    prefix = prefix_with(tmp_path, "alice:300000:65536\n# a comment\n\n1001:500000:1000\n"
                                   "bob:400000:65536\n")
    assert remap.passwd_uid(prefix, "alice") == 1001
    assert remap.laid_out(prefix, "subuid", "alice") == (IdRange(0, 300000, 65536),
                                                         IdRange(65536, 500000, 1000))


@pytest.mark.parametrize(("subuid", "message"), [
    ("alice:300000:1000\n", r"alice has 1000 subordinate ids in .*/etc/subuid: a remapped "
                            r"root needs 65536 \(container ids 0-65535\)$"),
    ("", r"alice has 0 subordinate ids in .*/etc/subuid"),
    ("alice:0:65536\n", r"alice's range 0:65536 holds host id 0: container root would be "
                        r"host root$"),
    ("alice:300000:65536\nbob:360000:65536\n",
     r"alice's range 300000:65536 is also given to bob$"),
    ("alice:300000\n", r"subuid:1: not name:start:count: 'alice:300000'$"),
])
def test_what_a_root_is_refused(tmp_path: Path, subuid: str, message: str) -> None:
    prefix = prefix_with(tmp_path, subuid)
    with pytest.raises(remap.RemapError, match=message):
        remap.laid_out(prefix, "subuid", "alice")


def test_a_free_block_avoids_every_line_of_both_files(tmp_path: Path) -> None:
    prefix = prefix_with(tmp_path, "a:100000:65536\nb:231072:10\n", "c:165536:100\n")
    assert remap.free_block(prefix) == 296608  # 100000, 165536 and 231072 are taken
    assert remap.free_block(prefix_with(tmp_path / "empty", "")) == 100000


def test_check_reports_a_range_that_moved_or_is_shared(tmp_path: Path) -> None:
    prefix = prefix_with(tmp_path, "alice:300000:65536\n")
    config = RootConfig(userns_remap="alice", user="alice", uid_map=((0, 300000, 65536),),
                        gid_map=((0, 300000, 65536),), storage="idmapped", source=prefix)
    assert remap.idmap_of(config) == IdMap.shifted(300000, 65536)
    assert remap.idmap_of(RootConfig()) is None
    assert remap.check(config) == []
    (tmp_path / "etc/subuid").write_text("alice:400000:65536\n")
    assert remap.check(config) == [
        f"the root's --userns-remap (alice) maps container root to host 300000:300000, but "
        f"{prefix} now gives alice 400000:300000"]
    (tmp_path / "etc/subuid").write_text("alice:300000:65536\nmallory:300000:1\n")
    assert remap.check(config) == [
        f"the root's --userns-remap (alice) no longer holds: {prefix}/etc/subuid: alice's "
        "range 300000:65536 is also given to mallory"]


def test_a_user_that_does_not_exist_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(remap.PREFIX_ENV, prefix_with(tmp_path, "ghost:300000:65536\n"))
    with pytest.raises(remap.RemapError, match=r"^--userns-remap ghost: no user ghost in "):
        remap.resolve("ghost", str(tmp_path / "root"))
