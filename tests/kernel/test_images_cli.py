"""The pure queries on images and containers: history, inspect, diff (they append nothing)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.kernel import test_storage_support as support
from tests.kernel.test_storage_support import Root

pytestmark = pytest.mark.kernel
bb_tar, lam = support.bb_tar, support.lam  # fixtures


def test_history_walks_the_parent_chain(lam: Root) -> None:
    lam.ok("run", "--name", "one", "busybox", "sh", "-c", "echo 1 > /one")
    lam.ok("commit", "-m", "first commit", "-a", "ann", "one", "img:1")
    lam.ok("run", "--name", "two", "img:1", "sh", "-c",
           "echo 2 > /two; echo a long command line that docker would cut short")
    lam.ok("commit", "two", "img:2")
    ids = {ref: lam.inspect(ref)[0]["Id"] for ref in ("busybox", "img:1", "img:2")}
    table = lam.ok("history", "img:2").splitlines()
    assert table[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert [line.split()[0] for line in table[1:]] == \
        [ids[r][7:19] for r in ("img:2", "img:1", "busybox")]
    assert "…" in table[1] and "first commit" in table[2]
    rows = [json.loads(line) for line in lam.ok("history", "--format", "json",
                                                "img:2").splitlines()]
    assert [r["Id"] for r in rows] == [ids["img:2"], ids["img:1"], ids["busybox"]]
    assert rows[0]["CreatedBy"].endswith("docker would cut short")
    assert rows[1]["Comment"] == "first commit" and rows[1]["Tags"] == ["img:1"]
    assert rows[0]["Size"] > 0 and rows[2]["Size"] > 1_000_000
    assert lam.ok("history", "-q", "--no-trunc", "img:2").split() == \
        [ids[r] for r in ("img:2", "img:1", "busybox")]
    # once the middle image is gone (untagged, still needed), its row keeps its id
    lam.ok("rmi", "-f", "img:1")
    assert lam.ok("history", "-q", "img:2").split()[1] == ids["img:1"][7:19]


def test_inspect_image_fields(lam: Root) -> None:
    lam.ok("run", "--name", "c", "busybox", "sh", "-c", "echo x > /x")
    lam.ok("commit", "-m", "why", "-a", "me <me@example.com>", "c", "child")
    child, base = lam.inspect("child", "busybox")
    assert child["Id"].startswith("sha256:") and len(child["Id"]) == 71
    assert child["RepoTags"] == ["child:latest"] and child["Parent"] == base["Id"]
    assert (child["Comment"], child["Author"]) == ("why", "me <me@example.com>")
    assert (child["Architecture"], child["Os"]) == ("amd64", "linux")
    assert child["RootFS"]["Type"] == "layers" and len(child["RootFS"]["Layers"]) == 2
    assert child["RootFS"]["Layers"][0] == base["RootFS"]["Layers"][0]
    assert child["Size"] > base["Size"] > 1_000_000
    graph = child["GraphDriver"]
    assert graph["Name"] == "overlay2"
    assert Path(graph["Data"]["UpperDir"], "x").read_text() == "x\n"
    assert graph["Data"]["LowerDir"] == base["GraphDriver"]["Data"]["UpperDir"]
    assert "LowerDir" not in base["GraphDriver"]["Data"]
    assert child["Created"] > base["Created"]


def test_inspect_container_fields(lam: Root) -> None:
    cid = lam.ok("create", "--name", "web", "-e", "A=1", "-w", "/tmp", "-u", "nobody",
                 "--hostname", "h1", "busybox", "sh", "-c", "exit 3").strip()
    (doc,) = lam.inspect("web")
    assert doc["Id"] == cid and doc["Name"] == "/web"
    assert (doc["Path"], doc["Args"]) == ("sh", ["-c", "exit 3"])
    state = doc["State"]
    assert state["Status"] == "stopped" and state["Running"] is False
    assert state["StartedAt"] == "0001-01-01T00:00:00Z" and state["Pid"] == 0
    config = doc["Config"]
    assert config["Cmd"] == ["sh", "-c", "exit 3"] and config["Image"] == "busybox"  # as named
    assert "A=1" in config["Env"] and any(e.startswith("PATH=") for e in config["Env"])
    assert (config["WorkingDir"], config["User"], config["Hostname"]) == ("/tmp", "nobody",
                                                                          "h1")
    data = doc["GraphDriver"]["Data"]
    assert os.path.isdir(data["UpperDir"]) and os.path.isdir(data["WorkDir"])
    assert data["MergedDir"].endswith("/merged") and len(data["LowerDir"].split(":")) == 2
    assert doc["Image"] == lam.inspect("busybox")[0]["Id"]
    lam("start", "-a", "web")
    lam.ok("wait", "web")
    state = lam.inspect(cid[:12])[0]["State"]
    assert state["ExitCode"] == 3 and state["StartedAt"] <= state["FinishedAt"]
    assert doc["LogPath"].endswith(f"{cid}-json.log")


def test_inspect_resolves_containers_first_then_images(lam: Root) -> None:
    lam.ok("create", "--name", "busybox", "busybox", "true")
    container, = lam.inspect("busybox")
    assert "State" in container
    image, = json.loads(lam.ok("inspect", "--type", "image", "busybox"))
    assert image["RepoTags"] == ["busybox:latest"]


def test_unknown_objects_are_one_line_errors(lam: Root) -> None:
    out = lam("inspect", "busybox", "nope")
    assert out.returncode == 1 and out.stderr == "lamina: error: no such object: nope\n"
    assert [d["RepoTags"] for d in json.loads(out.stdout)] == [["busybox:latest"]]
    for argv in (["history", "nope"], ["diff", "nope"], ["inspect", "--type", "container",
                                                         "busybox"]):
        out = lam(*argv)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, argv
        assert out.stderr.startswith("lamina: error: no such"), out.stderr


def test_diff_lists_adds_changes_and_deletes(lam: Root) -> None:
    lam.ok("run", "--name", "d", "busybox", "sh", "-c",
           "echo new > /tmp/new; echo more >> /etc/passwd; rm /etc/group; rm -rf /home; "
           "mkdir -p /a/b; echo z > /a/b/z; rm -rf /root; mkdir /root; touch /root/x")
    lines = lam.ok("diff", "d").splitlines()
    assert lines == ["A /a", "A /a/b", "A /a/b/z", "C /etc", "D /etc/group", "C /etc/passwd",
                     "D /home", "C /root", "A /root/x", "C /tmp", "A /tmp/new"]
    kinds = [json.loads(line) for line in lam.ok("diff", "--format", "json", "d").splitlines()]
    assert {"Kind": 2, "Path": "/home"} in kinds and {"Kind": 1, "Path": "/a"} in kinds
    cid = lam.ok("create", "busybox", "true").strip()
    assert lam.ok("diff", cid) == ""  # the init layer's mount points are not changes


def test_queries_append_nothing(lam: Root) -> None:
    lam.ok("create", "--name", "q", "busybox", "true")
    before = lam.event_types()
    for argv in (["inspect", "q", "busybox"], ["history", "busybox"], ["diff", "q"],
                 ["images", "-a"], ["ps", "-a"]):
        lam.ok(*argv)
    lam("inspect", "nothing")
    assert lam.event_types() == before
