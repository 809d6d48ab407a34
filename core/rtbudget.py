"""Real-time CPU budgets (`--cpu-rt-period`, `--cpu-rt-runtime`): the kernel's arithmetic and
lamina's plan for the cgroups between a hierarchy's root and a container.

Why a plan at all: with RT group scheduling (cgroup v1's cpu.rt_runtime_us) a cgroup's
budget must fit in its parent's: the kernel refuses a write that makes the children of any
group add up to more than it has (tg_rt_schedulable, kernel/sched/rt.c), and a new cgroup
starts with none. docker asks the admin for a standing reservation (dockerd's daemon-wide
--cpu-rt-runtime, written into every ancestor of the container's cgroup and never given
back). lamina has no daemon to configure, so it lends instead: before a container gets a
budget, each ancestor below the host's root is raised just enough for it, out of what the
root has free; when the container's cgroup goes (or its budget shrinks), each ancestor is
lowered back to what its remaining children hold. Nothing is reserved while no RT
container runs, and a request that can't fit fails closed with the numbers.

The kernel compares ratios, not microseconds: to_ratio(period, runtime) = runtime << 20 /
period, so a 50 ms budget per 100 ms needs half of the parent's period. Pure: no I/O
(adapters/kernel/rtbudget.py reads and writes the cgroups).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import BadInput

BW_SHIFT = 20  # the kernel's fixed-point shift for bandwidth ratios
BW_UNIT = 1 << BW_SHIFT
DEFAULT_PERIOD = 1_000_000  # µs: a new cgroup's cpu.rt_period_us


class BudgetError(BadInput):
    """A budget lamina can't give (one line naming the numbers)."""


def ratio(period_us: int, runtime_us: int) -> int:
    """The kernel's to_ratio: the share of a CPU, in 1/2^20 (runtime -1: unlimited)."""
    if runtime_us < 0:
        return BW_UNIT
    if period_us <= 0:
        return 0
    return (runtime_us << BW_SHIFT) // period_us


def runtime_for(share: int, period_us: int) -> int:
    """The smallest runtime (µs) per period whose ratio is at least share."""
    runtime = us(share, period_us)
    while ratio(period_us, runtime) < share:
        runtime += 1
    return runtime


def us(share: int, period_us: int) -> int:
    """A share as µs of period, for messages: rounded up, since each ratio the kernel
    keeps is rounded down from the µs it was written as."""
    return -(-share * period_us >> BW_SHIFT)


@dataclass(frozen=True)
class Group:
    """One cgroup on the way from the hierarchy's root to a container: its name (for
    messages), its period and runtime (µs, runtime -1 unlimited), and the sum of the ratios
    of its children other than the one on the way down."""

    name: str
    period: int
    runtime: int
    others: int = 0

    @property
    def share(self) -> int:
        return ratio(self.period, self.runtime)


def raised(chain: Sequence[Group], child_share: int, asked: str) -> list[int | None]:
    """New runtimes for chain[1:] (chain[0] is the host's root, which lamina never
    writes) so that a child of chain[-1] can hold child_share: None where a group
    already has enough. Raises BudgetError, naming `asked` (e.g. "cpu-rt-runtime 500000")
    and the numbers, when the root hasn't that much free."""
    root = chain[0]
    need = child_share
    out: list[int | None] = []
    for group in reversed(chain[1:]):
        total = group.others + need
        if total > min(root.share, BW_UNIT):
            raise BudgetError(f"{asked} exceeds what lamina's cgroup can get ({group.name} "
                              f"would need {us(total, root.period)} of every {root.period} "
                              f"µs for real-time tasks; the host allows "
                              f"{_allowed(root)})")
        if group.share >= total:
            out.append(None)
            need = group.share
        else:
            runtime = runtime_for(total, group.period)
            out.append(runtime)
            need = ratio(group.period, runtime)
    if root.others + need > root.share:
        taken = us(root.others, root.period)
        raise BudgetError(f"{asked} exceeds what lamina's cgroup can get (the host's "
                          f"{root.name} has {_allowed(root)} of every "
                          f"{root.period} µs for real-time tasks, "
                          f"{taken} of it given to other cgroups: "
                          f"{max(root.runtime - taken, 0)} free)")
    return list(reversed(out))


def _allowed(root: Group) -> str:
    return "all" if root.runtime < 0 else str(root.runtime)


def fitted(group: Group, children_share: int) -> int | None:
    """The runtime a lamina-raised group is lowered to once its children hold
    children_share in all (None: it holds no more than that already)."""
    runtime = runtime_for(children_share, group.period)
    return runtime if group.runtime < 0 or runtime < group.runtime else None


def judged(period: int | None, runtime: int | None) -> None:
    """docker's checks of CpuRealtimePeriod/CpuRealtimeRuntime at create and update (moby's
    verifyPlatformContainerResources), in its words; 0 is no request."""
    for name, value in (("CpuRealtimePeriod", period), ("CpuRealtimeRuntime", runtime)):
        if value is not None and value < 0:
            raise BadInput(f"invalid {name}: {value}")
    if period and period > DEFAULT_PERIOD * 1000:
        raise BadInput(f"invalid CpuRealtimePeriod: {period} (at most 1000 s)")
    if runtime and runtime > (period or DEFAULT_PERIOD):
        raise BadInput("cpu real-time runtime cannot be higher than cpu real-time period")
