"""viz on a real session: the rw layer's real changes, a running container's real pids and
freezer state, pictures as valid SVG and PNG files, the past drawn with --at."""

from __future__ import annotations

import json
import struct
import time
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_tar, leftovers


@pytest.fixture(scope="module")
def lamina(tmp_path_factory) -> Lamina:
    require_root()
    base = tmp_path_factory.mktemp("viz")
    lam = Lamina(base / "root")
    lam.ok("import", str(busybox_tar(base)), "busybox")
    lam.ok("run", "--name", "happy", "busybox", "touch", "happiness.txt")
    lam.ok("run", "-d", "--name", "sleeper", "busybox", "sleep", "300")
    lam.running_seq = lam.events()[-1]["seq"]
    lam.ok("pause", "sleeper")
    yield lam
    ids = lam.container_ids()
    for cid in ids:
        lam("rm", "-f", cid)
    deadline = time.monotonic() + 5  # a monitor may still be recording an exit
    while leftovers(lam.root, ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(lam.root, ids) == []


def viz_json(lamina: Lamina, *argv: str) -> dict:
    return json.loads(lamina.ok("viz", "--format", "json", *argv))


def test_a_stopped_container_shows_what_its_rw_layer_changed(lamina: Lamina) -> None:
    doc = viz_json(lamina, "happy")
    assert doc["state"] == "stopped" and doc["process"] is None
    assert ["A", "/happiness.txt"] in doc["changes"]
    assert "/happiness.txt" in doc["union"] and "/bin/" in doc["union"]
    image = json.loads(lamina.ok("inspect", "busybox"))[0]
    assert [la["id"] for la in doc["layers"]] == image["Lamina"]["Layers"]


def test_a_paused_container_shows_its_frozen_process_space(lamina: Lamina) -> None:
    doc = viz_json(lamina, "sleeper")
    pid = json.loads(lamina.ok("inspect", "sleeper"))[0]["State"]["Pid"]
    assert doc["state"] == "paused"
    assert doc["process"]["frozen"] is True and doc["process"]["live"] is True
    assert pid in doc["process"]["pids"]
    assert any("sleep 300" in c for c in doc["process"]["commands"])


def test_pictures_are_valid_files_naming_the_right_layers(lamina: Lamina, tmp_path) -> None:
    layer = viz_json(lamina, "busybox")["layers"][0]["id"]
    svg = tmp_path / "sleeper.svg"
    assert lamina.ok("viz", "sleeper", "-o", str(svg)).strip() == str(svg)
    root = ET.parse(svg).getroot()
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert layer[:12] in text and "process space" in text and "frozen" in text
    assert "sleep 300" in text
    png = tmp_path / "tree.png"
    lamina.ok("viz", "--tree", "-o", str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 200


def test_at_draws_the_container_as_it_was(lamina: Lamina) -> None:
    doc = viz_json(lamina, "sleeper", "--at", str(lamina.running_seq))
    assert doc["state"] == "running" and doc["live"] is False
    assert doc["process"]["frozen"] is False and doc["changes"] is None
    out = lamina("viz", "sleeper", "--at", "1")
    assert out.returncode != 0 and "no such container or image at seq 1" in out.stderr


def test_tree_and_history_in_the_terminal(lamina: Lamina) -> None:
    tree = lamina.ok("viz", "--tree")
    assert "busybox:latest" in tree and "happy" in tree and "sleeper" in tree
    hist = lamina.ok("viz", "--history", "sleeper")
    for word in ("Created", "Started", "Paused", "running → paused"):
        assert word in hist
    doc = viz_json(lamina, "--history", "happy")
    assert [s["after"] for s in doc["steps"]] == ["stopped", "running", "stopped"]
