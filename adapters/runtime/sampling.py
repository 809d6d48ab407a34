"""A running container's resource usage, sampled from its cgroup and its network namespace:
what `lamina stats` prints and the API's GET /containers/{id}/stats answers (docker's
StatsJSON: cpu_stats, precpu_stats, memory_stats, pids_stats, blkio_stats, networks).

A query: records nothing. A container with no cgroup (stopped, or gone meanwhile) samples
as zeros, as docker shows a stopped container's stats.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    at: float = 0.0  # time.time()
    system_ns: int = 0  # the host's CPU time (/proc/stat), docker's system_cpu_usage
    cpu_ns: int = 0
    memory: int = 0
    limit: int = 0  # 0: no limit
    memory_stat: dict[str, int] = field(default_factory=dict)
    pids: int = 0
    io_read: int = 0
    io_write: int = 0
    networks: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def cache(self) -> int:
        """What docker's CLI takes off the usage: the inactive page cache (v1's
        total_inactive_file, v2's inactive_file)."""
        stat = self.memory_stat
        return stat.get("total_inactive_file", stat.get("inactive_file", 0))


def sample(c: Any) -> Sample:
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from core import cgroupparent

    now, system = time.time(), system_ns()
    try:
        cgroup = Cgroup.open(c.id, parent=cgroupparent.of(c.config))
        s = cgroup.stats()
        stat = cgroup.memory_stat()
        read, write = cgroup.io_bytes()
    except (CgroupError, OSError):
        return Sample(at=now, system_ns=system)
    return Sample(at=now, system_ns=system, cpu_ns=s.cpu_ns, memory=s.memory_bytes,
                  limit=s.memory_limit or 0, memory_stat=stat, pids=s.pids, io_read=read,
                  io_write=write, networks=net_dev(c.pid) if c.pid else {})


def system_ns() -> int:
    """Host CPU time in ns (/proc/stat's first line), the denominator of docker's CPU %."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 10**9 // os.sysconf("SC_CLK_TCK")


def net_dev(pid: int) -> dict[str, dict[str, int]]:
    """The counters of the interfaces in `pid`'s network namespace, loopback aside (docker's
    `networks`, by interface)."""
    out: dict[str, dict[str, int]] = {}
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
        for line in lines:
            name, _, rest = line.partition(":")
            name = name.strip()
            v = [int(x) for x in rest.split()]
            if name == "lo" or len(v) < 16:
                continue
            out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2],
                         "rx_dropped": v[3], "tx_bytes": v[8], "tx_packets": v[9],
                         "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def cpu_percent(now: Sample, before: Sample, ncpu: int) -> float:
    """docker's calculateCPUPercentUnix: the container's share of the host's CPU time
    between two samples, times the CPUs."""
    cpu = now.cpu_ns - before.cpu_ns
    system = now.system_ns - before.system_ns
    if cpu <= 0 or system <= 0:
        return 0.0
    return cpu / system * ncpu * 100.0


def memory_used(s: Sample) -> int:
    return max(s.memory - s.cache, 0)


# --- docker's JSON (the API) ---------------------------------------------------------------


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def docker_doc(c: Any, now: Sample, before: Sample, ncpu: int, mem_total: int
               ) -> dict[str, Any]:
    """docker's StatsJSON for two samples (precpu_stats: the earlier one)."""

    def cpu(s: Sample) -> dict[str, Any]:
        return {"cpu_usage": {"total_usage": s.cpu_ns, "usage_in_kernelmode": 0,
                              "usage_in_usermode": 0},
                "system_cpu_usage": s.system_ns, "online_cpus": ncpu,
                "throttling_data": {"periods": 0, "throttled_periods": 0,
                                    "throttled_time": 0}}

    blkio = [{"major": 0, "minor": 0, "op": op, "value": value}
             for op, value in (("read", now.io_read), ("write", now.io_write))]
    doc: dict[str, Any] = {
        "read": stamp(now.at), "preread": stamp(before.at), "id": c.id, "name": f"/{c.name}",
        "num_procs": 0, "pids_stats": {"current": now.pids},
        "cpu_stats": cpu(now), "precpu_stats": cpu(before),
        "memory_stats": {"usage": now.memory, "limit": now.limit or mem_total,
                         "stats": dict(now.memory_stat)},
        "blkio_stats": {"io_service_bytes_recursive": blkio if now.at else None,
                        "io_serviced_recursive": None, "io_queue_recursive": None,
                        "io_service_time_recursive": None, "io_wait_time_recursive": None,
                        "io_merged_recursive": None, "io_time_recursive": None,
                        "sectors_recursive": None},
        "storage_stats": {}, "networks": dict(now.networks),
    }
    if c.config.get("pids"):
        doc["pids_stats"]["limit"] = c.config["pids"]
    return doc
