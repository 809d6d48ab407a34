"""core/cgroupparent.py: where --cgroup-parent puts a container's cgroups, and what it
refuses (the kernel test tests/kernel/test_cgroup_parent.py checks the cgroups themselves)."""

from __future__ import annotations

import pytest

from core.cgroupparent import DEFAULT, judged, of, relative
from core.errors import BadInput


@pytest.mark.parametrize(("given", "where"), [
    (None, DEFAULT), ("", DEFAULT), ("/", ""), ("foo", "foo"), ("/foo", "foo"),
    ("/a//b/./c/", "a/b/c"), ("lamina", "lamina"), ("system.slice", "system.slice"),
])
def test_relative_to_each_hierarchys_root(given: str | None, where: str) -> None:
    assert relative(given) == where


@pytest.mark.parametrize(("given", "words"), [
    ("..", "'..' would leave the cgroup hierarchy"),
    ("a/../../etc", "'..' would leave the cgroup hierarchy"),
    ("/lamina/abc", "lamina/ holds lamina's own containers' cgroups"),
    ("a\nb", "not a path"), ("a\0b", "not a path"),
    ("x" * 256, "a name longer than 255 bytes"),
])
def test_refused_in_one_line(given: str, words: str) -> None:
    with pytest.raises(BadInput) as err:
        relative(given)
    assert str(err.value).endswith(words) and "\n" not in str(err.value).replace(given, "")


def test_recorded_as_given_and_read_back() -> None:
    assert judged({"cgroup_parent": "/rt/", "memory": 1}) == {"cgroup_parent": "/rt/",
                                                              "memory": 1}
    assert judged({"cgroup_parent": ""}) == {}
    assert of({"cgroup_parent": "/rt/"}) == "rt" and of({}) == DEFAULT
    with pytest.raises(BadInput):
        judged({"cgroup_parent": "../up"})
