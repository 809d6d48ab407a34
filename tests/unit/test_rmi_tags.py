"""rmi and an image's several names, as docker's ImageDelete decides: naming one tag removes
that tag alone, with -f or without; naming the id of an image with several tags needs -f."""

from __future__ import annotations

import pytest

from core.errors import Conflict
from core.memory import memory_engine


@pytest.fixture
def e():
    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "extra:tag")
    e.tag("extra:tag", "extra:two")
    e.tag("extra:tag", "other:1")
    return e


def types_since(e, seq: int) -> list[str]:
    return [r.type for r in e.log.records[seq:]]


@pytest.mark.parametrize("force", [True, False])
def test_removing_one_tag_never_removes_the_others(e, force: bool) -> None:
    image = e.log.image_tagged("extra:tag")
    before = len(e.log.records)
    plan = e.rmi("extra:tag", force=force)
    assert plan.untag == [(image.id, "extra:tag")] and plan.remove == []
    now = e.log.image(image.id)
    assert now is not None and not now.removed
    assert set(now.tags) == {"extra:two", "other:1"}
    assert types_since(e, before) == ["ImageUntagged"]


def test_the_last_tag_takes_the_image_with_it(e) -> None:
    image = e.log.image_tagged("extra:tag")
    for tag in list(image.tags)[:-1]:
        e.rmi(tag, force=True)
    plan = e.rmi(e.log.image(image.id).tags[0], force=True)
    assert plan.remove == [(image.id, False)]
    assert e.log.image(image.id) is None


def test_an_id_with_several_tags_needs_force_then_takes_them_all(e) -> None:
    image = e.log.image_tagged("extra:tag")
    before = len(e.log.records)
    with pytest.raises(Conflict, match=r"unable to delete [0-9a-f]{12} \(must be forced\) - "
                                       "image is referenced in multiple repositories"):
        e.rmi(image.id[:12])
    assert types_since(e, before) == ["CommandRejected"]
    assert e.log.image(image.id).tags == image.tags
    plan = e.rmi(image.id[:12], force=True)
    assert sorted(t for _, t in plan.untag) == sorted(image.tags)
    assert plan.remove == [(image.id, False)] and e.log.image(image.id) is None
