"""A container's stats as docker computes and shapes them (adapters/runtime/sampling.py)."""

from __future__ import annotations

from types import SimpleNamespace

from adapters.runtime import sampling
from adapters.runtime.sampling import Sample


def test_cpu_percent_is_dockers_share_of_the_host() -> None:
    before = Sample(at=1.0, system_ns=1_000_000_000, cpu_ns=0)
    now = Sample(at=2.0, system_ns=3_000_000_000, cpu_ns=500_000_000)
    assert sampling.cpu_percent(now, before, 4) == 100.0  # a quarter of 4 CPUs' time
    assert sampling.cpu_percent(before, before, 4) == 0.0


def test_memory_used_leaves_out_the_inactive_cache() -> None:
    assert sampling.memory_used(Sample(memory=10_000,
                                       memory_stat={"total_inactive_file": 4_000})) == 6_000
    assert sampling.memory_used(Sample(memory=10_000, memory_stat={"inactive_file": 1})) \
        == 9_999


def test_docker_doc_has_the_keys_docker_py_reads() -> None:
    c = SimpleNamespace(id="c" * 64, name="web", config={"pids": 20})
    now = Sample(at=2.5, system_ns=9, cpu_ns=7, memory=100, limit=0, pids=3, io_read=5,
                 io_write=6, networks={"eth0": {"rx_bytes": 1, "tx_bytes": 2}})
    doc = sampling.docker_doc(c, now, Sample(at=1.5), ncpu=2, mem_total=1000)
    for key in ("read", "preread", "networks", "precpu_stats", "cpu_stats", "memory_stats",
                "blkio_stats", "pids_stats"):
        assert key in doc
    assert doc["name"] == "/web" and doc["memory_stats"]["limit"] == 1000
    assert doc["pids_stats"] == {"current": 3, "limit": 20}
    assert doc["cpu_stats"]["online_cpus"] == 2
    assert doc["blkio_stats"]["io_service_bytes_recursive"][0]["value"] == 5
    assert doc["read"].startswith("1970-01-01T00:00:02.5")


def test_net_dev_of_a_process(tmp_path) -> None:
    import os

    counters = sampling.net_dev(os.getpid())  # this process's namespace: lo left out
    assert "lo" not in counters
