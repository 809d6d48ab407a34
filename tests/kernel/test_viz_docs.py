"""`make docs`' concept pictures: drawn from a real session, valid SVG, nothing left behind."""

from __future__ import annotations

import glob
import os
import tempfile
import xml.etree.ElementTree as ET

from tests.conftest import require_root


def test_concept_pictures_are_drawn_and_the_session_is_cleaned_up(tmp_path) -> None:
    require_root()
    from tools.docs import concept_pictures

    pattern = os.path.join(tempfile.gettempdir(), "lamina-docs-*")
    before = set(glob.glob(pattern))
    written = concept_pictures(str(tmp_path))
    names = sorted(p.rsplit("/", 1)[1] for p in written)
    assert names == ["container.svg", "history.svg", "image-stack.svg",
                     "running-container.svg", "time-travel.svg", "tree.svg"]
    texts = {}
    for path in written:
        root = ET.parse(path).getroot()
        texts[path.rsplit("/", 1)[1]] = " ".join(
            t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "A /happiness.txt" in texts["container.svg"]
    assert "process space" in texts["running-container.svg"]
    assert "frozen" in texts["time-travel.svg"] and "paused" in texts["time-travel.svg"]
    assert "app:1" in texts["tree.svg"] and "busybox:latest" in texts["tree.svg"]
    assert "Stopped" in texts["history.svg"]
    assert set(glob.glob(pattern)) == before  # the temporary root is gone
    with open("/proc/self/mountinfo") as f:
        assert "lamina-docs-" not in f.read()
