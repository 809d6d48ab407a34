from __future__ import annotations

import pytest

from core.errors import Ambiguous, BadInput
from core.naming import name_for
from core.references import normalize_tag, pick_unique, short


def test_default_tag_is_latest() -> None:
    assert normalize_tag("busybox") == "busybox:latest"
    assert normalize_tag("busybox:1.36") == "busybox:1.36"
    assert normalize_tag("localhost:5000/x") == "localhost:5000/x:latest"
    assert normalize_tag("localhost:5000/x:v2") == "localhost:5000/x:v2"


@pytest.mark.parametrize("bad", ["", "UPPER", "a::b", "-x", "x:", "a b"])
def test_bad_references_are_refused(bad: str) -> None:
    with pytest.raises(BadInput, match="invalid reference format"):
        normalize_tag(bad)


def test_prefix_rules() -> None:
    assert pick_unique("ab", [], "container") is None
    assert pick_unique("ab", ["abc"], "container") == "abc"
    with pytest.raises(Ambiguous, match="multiple containers found with provided prefix: ab"):
        pick_unique("ab", ["abc", "abd"], "container")
    assert short("sha256:" + "f" * 64) == "f" * 12


def test_generated_names_are_stable_and_avoid_collisions() -> None:
    cid = "0123456789abcdef" * 4
    first = name_for(cid)
    assert first == name_for(cid)
    assert name_for(cid, {first}) == first + "2"
