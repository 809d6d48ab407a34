"""core/resources.py: docker's resource options judged in docker's words, in their recorded
shapes (the kernel tests and tests/service/test_docker_py_tally.py check they reach the
cgroup)."""

from __future__ import annotations

import pytest

from core.errors import BadInput
from core.resources import judged


def test_recorded_shapes() -> None:
    assert judged({"cpu_shares": "1", "memory_swappiness": -1, "memory_swap": 0,
                   "cpuset_cpus": " 0-1,3 ", "cpu_quota": -1}) == {
        "cpu_shares": 2, "cpuset_cpus": "0-1,3"}  # shares clamped as docker's daemon does
    assert judged({"memory": 64 << 20, "memory_swap": -1, "cpu_shares": 300000}) == {
        "memory": 64 << 20, "memory_swap": -1, "cpu_shares": 262144}
    assert judged({"cpus": 0.5}) == {"cpus": 0.5}


@pytest.mark.parametrize(("options", "words"), [
    ({"memory": 64 << 20, "memory_swap": 32 << 20},
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"memory_swap": 64 << 20}, "You should always set the Memory limit when using "
                                "Memoryswap limit, see usage"),
    ({"memory_swappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
    ({"memory_reservation": 1 << 20}, "Minimum memory reservation allowed is 6MB"),
    ({"memory": 16 << 20, "memory_reservation": 32 << 20},
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({"cpus": 1.0, "cpu_period": 50000},
     "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    ({"cpus": 1.0, "cpu_quota": 50000},
     "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    ({"cpu_period": 2000000}, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)"),
    ({"cpu_quota": 999}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({"cpuset_cpus": "1-0"}, "Invalid value 1-0 for cpuset cpus"),
    ({"cpuset_mems": "a"}, "Invalid value a for cpuset mems"),
    ({"cpu_shares": "many"}, "invalid CpuShares: 'many'"),
])
def test_refusals_in_dockers_words(options: dict, words: str) -> None:
    with pytest.raises(BadInput) as err:
        judged(options)
    assert str(err.value) == words
