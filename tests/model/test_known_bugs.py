"""Core bugs the model checkers found, as minimal sequences.

Each is a strict xfail: when the core is fixed the test XPASSes, which fails the run, so the
marker (and the workaround in test_stateful.py's `tag` rule) gets removed.
"""

from __future__ import annotations

import pytest

from core.memory import memory_engine
from tests.model.harness import Step, check_world, replay, run_step

TAG_OF_REMOVED = ("core.model._image_tagged keeps `removed=True` when a removed image is "
                  "tagged, and core.images.orphaned_by_container then deletes the tagged image")


@pytest.mark.xfail(strict=True, reason=TAG_OF_REMOVED)
def test_tagging_a_removed_image_keeps_it_removed() -> None:
    engine = memory_engine()
    base = engine.import_image({"bin/sh": "ash"}, "base")
    engine.create("base", ["sh"], "c0")
    engine.rmi("base", force=True)  # c0 uses it: kept, untagged, removed=True
    engine.tag(base, "snap")  # accepted: the removed image now has a tag
    image = engine.log.image(base)
    assert not (image.removed and image.tags), image  # "removed" means untagged
    run_step(engine, Step("rm", "c0"))
    assert engine.log.image_tagged("snap:latest") is not None, \
        "rm c0 deleted the image tagged snap"
    check_world(engine, replay(engine.log.records))
