"""`lamina volume create|ls|inspect|rm|prune` on a real root: docker's output and errors, the
layout on disk (docker's local driver's), each change recorded, queries recording nothing,
and reconciliation of volume data the log doesn't own."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina

pytestmark = pytest.mark.kernel


@pytest.fixture
def lam(tmp_path: Path) -> Lamina:
    require_root()
    return Lamina(tmp_path / "root")


def fails(lam: Lamina, *argv: str, input: str | None = None) -> str:
    out = lam(*argv, input=input)
    assert out.returncode == 1, out
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lamina: error: "), out.stderr
    return lines[0].removeprefix("lamina: error: ")


def test_create_inspect_ls_and_the_layout_on_disk(lam: Lamina) -> None:
    assert lam.ok("volume", "create", "data", "--label", "tier=db", "--label", "x") == "data\n"
    assert lam.ok("volume", "create", "--name", "other") == "other\n"
    anon = lam.ok("volume", "create").strip()
    assert len(anon) == 64
    data = lam.root / "volumes" / "data" / "_data"
    modes = [stat.S_IMODE(os.stat(p).st_mode) for p in (data.parent.parent, data.parent, data)]
    assert modes == [0o701, 0o701, 0o755] and os.listdir(data) == []
    (data / "table").write_text("rows\n")
    [doc] = json.loads(lam.ok("volume", "inspect", "data"))
    assert doc == {"CreatedAt": doc["CreatedAt"], "Driver": "local",
                   "Labels": {"tier": "db", "x": ""}, "Mountpoint": str(data),
                   "Name": "data", "Options": {}, "Scope": "local"}
    assert doc["CreatedAt"].endswith("Z") and len(doc["CreatedAt"]) == 20
    [doc] = json.loads(lam.ok("volume", "inspect", anon))
    assert doc["Labels"] == {"com.docker.volume.anonymous": ""}
    table = lam.ok("volume", "ls").splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    every = sorted([anon, "data", "other"])
    assert [line.split() for line in table[1:]] == [["local", name] for name in every]
    assert lam.ok("volume", "ls", "-q", "--filter", "label=tier=db") == "data\n"
    assert lam.ok("volume", "ls", "-q", "-f", "name=^o") == "other\n"
    assert lam.ok("volume", "ls", "-q", "-f", "dangling=true").split() == every
    rows = [json.loads(line) for line in lam.ok("volume", "ls", "--format", "json").splitlines()]
    assert [r["Name"] for r in rows] == every
    # creating it again changes nothing, records nothing
    before = len(lam.events())
    assert lam.ok("volume", "create", "data", "--label", "new=1") == "data\n"
    assert len(lam.events()) == before
    assert (data / "table").read_text() == "rows\n"
    events = [e for e in lam.events() if e["type"] == "VolumeCreated"]
    assert [e["meta"]["command"] for e in events] == ["volume create"] * 3


def test_queries_record_nothing_and_an_empty_root_has_no_volumes(lam: Lamina) -> None:
    assert lam.ok("volume", "ls").splitlines() == ["DRIVER   VOLUME NAME"]
    assert fails(lam, "volume", "inspect", "nosuch") == "get nosuch: no such volume"
    assert fails(lam, "volume", "ls", "--filter", "colour=red") == "invalid filter 'colour'"
    lam.ok("volume", "create", "data")
    n = len(lam.events())
    lam.ok("volume", "ls")
    lam.ok("volume", "inspect", "data")
    assert fails(lam, "volume", "inspect", "nosuch") == "get nosuch: no such volume"
    assert len(lam.events()) == n


def test_refusals_are_one_line_and_recorded(lam: Lamina) -> None:
    assert fails(lam, "volume", "create", "a/b").startswith(
        'create a/b: "a/b" includes invalid characters for a local volume name')
    assert fails(lam, "volume", "create", "--driver", "nfs", "data") == \
        'create data: error looking up volume plugin nfs: plugin "nfs" not found'
    assert fails(lam, "volume", "create", "-o", "type=tmpfs", "data").startswith(
        "volume option 'type' (--opt type=...) is not supported by lamina yet")
    assert fails(lam, "volume", "create", "-o", "colour=blue", "data") == \
        'invalid option: "colour"'
    assert fails(lam, "volume", "create", "--name", "a1", "b1").startswith(
        "conflicting options")
    assert fails(lam, "volume", "rm", "nosuch") == "get nosuch: no such volume"
    reasons = [e["data"]["reason"] for e in lam.events() if e["type"] == "CommandRejected"]
    assert len(reasons) == 5 and reasons[-1] == "get nosuch: no such volume"
    assert not (lam.root / "volumes").exists() or os.listdir(lam.root / "volumes") == []


def test_rm_removes_the_data_after_recording_and_f_ignores_missing(lam: Lamina) -> None:
    lam.ok("volume", "create", "data")
    lam.ok("volume", "create", "keep")
    (lam.root / "volumes" / "data" / "_data" / "f").write_text("x")
    assert lam.ok("volume", "rm", "data") == "data\n"
    assert not (lam.root / "volumes" / "data").exists()
    out = lam("volume", "rm", "data", "keep")
    assert out.returncode == 1 and out.stdout == "keep\n"
    assert out.stderr == "lamina: error: get data: no such volume\n"
    assert lam.ok("volume", "rm", "-f", "data") == "data\n"
    assert [e["type"] for e in lam.events()] == [
        "VolumeCreated", "VolumeCreated", "VolumeRemoved", "CommandRejected", "VolumeRemoved"]
    assert os.listdir(lam.root / "volumes") == [] and os.listdir(lam.root / "tmp") == []


def test_prune_asks_first_and_prints_what_it_reclaimed(lam: Lamina) -> None:
    anon = lam.ok("volume", "create").strip()
    lam.ok("volume", "create", "named", "--label", "keep=no")
    (lam.root / "volumes" / anon / "_data" / "f").write_text("x" * 1500)
    out = lam("volume", "prune", input="n\n")
    assert out.returncode == 1 and "volume prune has been cancelled" in out.stderr
    assert out.stdout.startswith("WARNING! This will remove anonymous local volumes not used "
                                 "by at least one container.")
    assert lam.ok("volume", "ls", "-q").split() == sorted([anon, "named"])
    out = lam.ok("volume", "prune", input="y\n")
    assert out.endswith(f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 1.5kB\n")
    assert lam.ok("volume", "prune", "-f") == "Total reclaimed space: 0B\n"
    assert lam.ok("volume", "prune", "-f", "-a", "--filter", "label=keep=yes") == \
        "Total reclaimed space: 0B\n"
    assert lam.ok("volume", "prune", "-f", "--filter", "all=true",
                  "--filter", "label=keep") == "Deleted Volumes:\nnamed\n\n" \
                                               "Total reclaimed space: 0B\n"
    assert lam.ok("volume", "ls", "-q") == ""
    assert fails(lam, "volume", "prune", "-f", "--filter", "dangling=true") == \
        "invalid filter 'dangling'"


def test_reconcile_removes_volume_data_the_log_does_not_own(lam: Lamina) -> None:
    """A directory made by a maker that is gone and never recorded (a create killed before
    its append) is a leftover; the volumes of the log are left alone."""
    lam.ok("volume", "create", "kept")
    made = subprocess.run(
        [sys.executable, "-c", "import sys; from adapters.storage.volumes import "
         "LinuxVolumeStore as S; S(sys.argv[1]).create('orphan')", str(lam.root)],
        check=True, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert made.returncode == 0 and (lam.root / "volumes" / "orphan" / "_data").is_dir()
    out = lam("system", "check")
    assert out.returncode == 1
    assert "volume directory orphan belongs to no volume in the log" in out.stdout
    lam.ok("system", "reconcile")
    assert sorted(os.listdir(lam.root / "volumes")) == ["kept"]
    assert lam("system", "check").returncode == 0
