"""docker's cgroup resource options beyond --memory, --cpus and --pids-limit: CPU shares, the
CFS period and quota, the cpuset, the memory reservation, swap limit and swappiness, the
real-time period and runtime (core/rtbudget.py).

Judged at create and at update in docker's words (moby's daemon_unix.go,
verifyPlatformContainerResources), recorded as the API's values under the keys below, and
written into the container's cgroup by the kernel adapter (adapters/kernel/cgroups.py), which
refuses by name what the host's kernel lacks. Pure: no I/O (whether a CPU exists is the
kernel's to say, at start).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core import rtbudget
from core.errors import BadInput

# recorded key -> the API's HostConfig field
KEYS: dict[str, str] = {
    "cpu_shares": "CpuShares", "cpu_period": "CpuPeriod", "cpu_quota": "CpuQuota",
    "cpuset_cpus": "CpusetCpus", "cpuset_mems": "CpusetMems",
    "memory_reservation": "MemoryReservation", "memory_swap": "MemorySwap",
    "memory_swappiness": "MemorySwappiness",
    "cpu_rt_period": "CpuRealtimePeriod", "cpu_rt_runtime": "CpuRealtimeRuntime",
}
MIN_MEMORY = 6 * 1024 * 1024  # docker's linuxMinMemory
MIN_SHARES, MAX_SHARES = 2, 262144  # the kernel's (and docker's clamp)
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def cpuset(text: str, what: str) -> str:
    """A cpuset list ("0-2,4") as docker's parser takes it; `what`: cpus or mems."""
    value = str(text).strip()
    if not _CPUSET.match(value) or any(
            int(a) > int(b) for a, _, b in (r.partition("-") for r in value.split(","))
            if b):
        raise BadInput(f"Invalid value {text} for cpuset {what}")
    return value


def _int(options: Mapping[str, Any], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadInput(f"invalid {KEYS[key]}: {value!r}") from None


def judged(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with these keys checked against each other and put in their recorded
    shapes (a no-request value dropped); `memory` and `cpus` are read for the conflicts
    docker checks."""
    out = dict(options)
    for key in KEYS:
        if key not in ("cpuset_cpus", "cpuset_mems") and out.get(key) is not None:
            out[key] = _int(out, key)
    if out.get("memory_swappiness") == -1:  # docker's "unset"
        del out["memory_swappiness"]
    if out.get("memory_swap") == 0:
        del out["memory_swap"]
    _memory(out)
    _cpu(out)
    _realtime(out)
    for key, what in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if out.get(key):
            out[key] = cpuset(out[key], what)
        else:
            out.pop(key, None)
    return {k: v for k, v in out.items() if not (k in KEYS and v is None)}


def _memory(out: dict[str, Any]) -> None:
    memory = out.get("memory") or 0
    swap, reservation = out.get("memory_swap"), out.get("memory_reservation")
    swappiness = out.get("memory_swappiness")
    if swap is not None and swap > 0:
        if not memory:
            raise BadInput("You should always set the Memory limit when using Memoryswap "
                           "limit, see usage")
        if swap < memory:
            raise BadInput("Minimum memoryswap limit should be larger than memory limit, "
                           "see usage")
    elif swap is not None and swap != -1:
        raise BadInput(f"invalid MemorySwap: {swap}")
    if swappiness is not None and not 0 <= swappiness <= 100:
        raise BadInput(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if reservation:
        if reservation < MIN_MEMORY:
            raise BadInput("Minimum memory reservation allowed is 6MB")
        if memory and memory < reservation:
            raise BadInput("Minimum memory limit can not be less than memory reservation "
                           "limit, see usage")


def _realtime(out: dict[str, Any]) -> None:
    """core/rtbudget.py's checks; 0 asks nothing (docker's zero value)."""
    for key in ("cpu_rt_period", "cpu_rt_runtime"):
        if out.get(key) == 0:
            out[key] = None
    rtbudget.judged(out.get("cpu_rt_period"), out.get("cpu_rt_runtime"))


def _cpu(out: dict[str, Any]) -> None:
    shares, period, quota = (out.get(k) for k in ("cpu_shares", "cpu_period", "cpu_quota"))
    if shares is not None:
        if shares < 0:
            raise BadInput(f"invalid CpuShares: {shares}")
        out["cpu_shares"] = min(max(shares, MIN_SHARES), MAX_SHARES) if shares else None
    if out.get("cpus"):
        if period:
            raise BadInput("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if quota:
            raise BadInput("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if period is not None and period != 0 and not 1000 <= period <= 1000000:
        raise BadInput("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than "
                       "1s (i.e. 1000000)")
    if quota is not None and 0 < quota < 1000:
        raise BadInput("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if period == 0:
        out["cpu_period"] = None
    if quota is not None and quota <= 0:  # 0 and -1: no quota
        out["cpu_quota"] = None
