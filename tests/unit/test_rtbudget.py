"""core/rtbudget.py: the kernel's RT bandwidth arithmetic and lamina's lending plan (the
kernel test tests/kernel/test_cpu_rt.py checks the cgroups and SCHED_FIFO themselves)."""

from __future__ import annotations

import pytest

from core.errors import BadInput
from core.resources import judged as resources_judged
from core.rtbudget import (
    BW_UNIT,
    BudgetError,
    Group,
    fitted,
    judged,
    raised,
    ratio,
    runtime_for,
)

ROOT = Group("cpu cgroup", 1_000_000, 950_000)


def test_ratios_are_the_kernels() -> None:
    assert ratio(1_000_000, 500_000) == BW_UNIT // 2 == ratio(1000, 500)
    assert ratio(1_000_000, -1) == BW_UNIT and ratio(0, 5) == 0
    for period, runtime in ((1_000_000, 960_000), (100_000, 33_333), (1000, 1)):
        share = ratio(period, runtime)
        assert runtime_for(share, period) == runtime  # the smallest runtime with that share
        assert ratio(period, runtime_for(share, 1_000_000 - 7)) >= 0


def test_an_ancestor_is_raised_just_enough_from_the_top() -> None:
    lamina = Group("cgroup lamina", 1_000_000, 0)
    assert raised([ROOT, lamina], ratio(1000, 500), "x") == [500_000]
    # another container already holds 200 ms: lamina's goes to what both need
    busy = Group("cgroup lamina", 1_000_000, 200_000, others=ratio(1_000_000, 200_000))
    assert raised([ROOT, busy], ratio(1_000_000, 300_000), "x") == [500_000]
    # a nested --cgroup-parent: each level below the root, a level with enough untouched
    a, b = Group("cgroup a", 1_000_000, 700_000), Group("cgroup a/b", 1_000_000, 0)
    assert raised([ROOT, a, b], ratio(100_000, 50_000), "x") == [None, 500_000]
    assert raised([ROOT, Group("a", 1_000_000, 0), b], ratio(1_000_000, 1), "x") == [1, 1]


def test_what_the_root_has_not_free_fails_closed_with_the_numbers() -> None:
    root = Group("cpu cgroup", 1_000_000, 950_000, others=ratio(1_000_000, 900_000))
    with pytest.raises(BudgetError) as err:
        raised([root, Group("cgroup lamina", 1_000_000, 0)], ratio(1_000_000, 100_000),
               "cpu-rt-runtime 100000")
    assert str(err.value) == (
        "cpu-rt-runtime 100000 exceeds what lamina's cgroup can get (the host's cpu cgroup "
        "has 950000 of every 1000000 µs for real-time tasks, 900000 of it given to other "
        "cgroups: 50000 free)")
    with pytest.raises(BudgetError, match=r"^cpu-rt-runtime 960000 exceeds what lamina's "
                       r"cgroup can get \(cgroup lamina would need 960000 of every 1000000 "
                       r"µs for real-time tasks; the host allows 950000\)$"):
        raised([ROOT, Group("cgroup lamina", 1_000_000, 0)], ratio(1_000_000, 960_000),
               "cpu-rt-runtime 960000")


def test_given_back_down_to_what_the_children_hold() -> None:
    assert fitted(Group("lamina", 1_000_000, 500_000), 0) == 0
    assert fitted(Group("lamina", 1_000_000, 500_000), ratio(100_000, 20_000)) == 200_000
    assert fitted(Group("lamina", 1_000_000, 200_000), ratio(1_000_000, 200_000)) is None


@pytest.mark.parametrize(("period", "runtime", "words"), [
    (1000, 1001, "cpu real-time runtime cannot be higher than cpu real-time period"),
    (None, 1_000_001, "cpu real-time runtime cannot be higher than cpu real-time period"),
    (None, -1, "invalid CpuRealtimeRuntime: -1"),
    (-5, None, "invalid CpuRealtimePeriod: -5"),
])
def test_dockers_checks_in_its_words(period: int | None, runtime: int | None,
                                     words: str) -> None:
    with pytest.raises(BadInput, match=f"^{words}$"):
        judged(period, runtime)


def test_recorded_by_resources_zero_asking_nothing() -> None:
    assert resources_judged({"cpu_rt_period": "1000", "cpu_rt_runtime": 500}) == {
        "cpu_rt_period": 1000, "cpu_rt_runtime": 500}
    assert resources_judged({"cpu_rt_period": 0, "cpu_rt_runtime": 0}) == {}
