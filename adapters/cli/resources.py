"""docker's cgroup resource flags beyond --memory, --cpus and --pids-limit, for run/create and
update alike: parsed as docker's CLI parses them, given to the engine under core/resources.py's
keys (which judges them, as the Docker API's create and update bodies are judged)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.errors import BadInput


def _size(text: str) -> int:
    from adapters.kernel.units import parse_size

    return -1 if text.strip() == "-1" else parse_size(text)


# flag, short flag, key, parser, help, also on update
FLAGS: tuple[tuple[str, str | None, str, Callable[[str], Any], str, bool], ...] = (
    ("--cpu-shares", "-c", "cpu_shares", int, "CPU shares (relative weight)", True),
    ("--cpu-period", None, "cpu_period", int, "CPU CFS period in µs", True),
    ("--cpu-quota", None, "cpu_quota", int, "CPU CFS quota in µs per period", True),
    ("--cpuset-cpus", None, "cpuset_cpus", str, "CPUs it may run on (0-3, 0,1)", True),
    ("--cpuset-mems", None, "cpuset_mems", str, "memory nodes it may use (0-3, 0,1)", True),
    ("--memory-reservation", None, "memory_reservation", _size,
     "memory soft limit (e.g. 32m)", True),
    ("--memory-swap", None, "memory_swap", _size,
     "memory plus swap limit (e.g. 128m; -1: unlimited swap)", True),
    ("--cpu-rt-period", None, "cpu_rt_period", int,
     "real-time CPU period in µs (cgroup v1)", True),
    ("--cpu-rt-runtime", None, "cpu_rt_runtime", int,
     "real-time CPU runtime in µs per period: what its SCHED_FIFO/RR tasks may use "
     "(cgroup v1)", True),
    ("--memory-swappiness", None, "memory_swappiness", int,
     "how willingly its memory is swapped (0 to 100; -1: the host's)", False),
)


def add_resource_flags(p: argparse.ArgumentParser, update: bool = False) -> None:
    for flag, short, key, _parse, text, on_update in FLAGS:
        if on_update or not update:
            p.add_argument(*([flag, short] if short else [flag]), dest=f"res_{key}",
                           help=text)


def resource_options(args: argparse.Namespace) -> dict[str, Any]:
    """The resource flags given, as the engine's option keys."""
    out: dict[str, Any] = {}
    for flag, _short, key, parse, _text, _update in FLAGS:
        text = getattr(args, f"res_{key}", None)
        if text is None:
            continue
        try:
            out[key] = parse(text)
        except ValueError as err:
            raise BadInput(f"invalid argument {text!r} for {flag} flag: {err}") from None
    return out
