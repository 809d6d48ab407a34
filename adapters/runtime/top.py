"""`top`: the processes of a container's cgroup as the host's `ps` shows them, as docker's
daemon does (moby daemon/top_unix.go): `ps` run with the caller's options (`-ef` by
default) and `-q` with the container's pids, its rows kept when their PID column is one of
the container's (a thread row, PID `-`, goes with the process above it)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from typing import Any

from core.errors import BadInput, LaminaError

_PID_ASSIGN = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")


class TopError(LaminaError):
    exit_code = 1


def check_args(ps_args: str) -> None:
    """docker refuses to rename the PID column (`-o user=PID`): it could not find it."""
    for key, value in _PID_ASSIGN.findall(ps_args):
        if key != "pid":
            raise BadInput(f'specifying "{key}={value}" is not allowed')


def parse(output: str, pids: Sequence[int]) -> tuple[list[str], list[list[str]]]:
    """(titles, processes) of `ps`'s output, the rows of `pids` only; a row has as many
    fields as there are titles, the last one taking the rest of the line (the command)."""
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise TopError("Couldn't find PID field in ps output")
    at = titles.index("PID")
    wanted = set(pids)
    rows: list[list[str]] = []
    inside = False
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) <= at:
            continue
        if fields[at] == "-":
            if inside:
                rows.append(_fit(fields, len(titles)))
            continue
        try:
            pid = int(fields[at])
        except ValueError:
            raise TopError(f"Unexpected pid '{fields[at]}'") from None
        inside = pid in wanted
        if inside:
            rows.append(_fit(fields, len(titles)))
    return titles, rows


def _fit(fields: list[str], n: int) -> list[str]:
    return [*fields[:n - 1], " ".join(fields[n - 1:])]


def top(pids: Sequence[int], ps_args: str = "") -> tuple[list[str], list[list[str]]]:
    """Run the host's `ps` (as docker does) over the container's `pids`."""
    ps_args = ps_args or "-ef"
    check_args(ps_args)
    args = ps_args.split()
    quick = ["-q", ",".join(str(p) for p in pids)] if pids else []
    try:
        out = subprocess.run(["ps", *args, *quick], capture_output=True, text=True,
                             timeout=30)
        if out.returncode != 0 and quick:  # some options (f) don't go with -q
            out = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise TopError(f"Error running ps: {err}") from None
    if out.returncode != 0:
        raise TopError(f"ps: {out.stderr.strip() or out.stdout.strip()}")
    return parse(out.stdout, pids)


def container_pids(c: Any) -> list[int]:
    """The processes of the container's cgroup (none if it has no cgroup any more)."""
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from core import cgroupparent

    try:
        return sorted(Cgroup.open(c.id, parent=cgroupparent.of(c.config)).pids())
    except CgroupError:
        return []


def table(titles: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """As docker's CLI prints it: a tabwriter of min width 20 and padding 3."""
    lines = []
    widths = [max([len(t)] + [len(r[i]) for r in rows if i < len(r)]) + 3
              for i, t in enumerate(titles)]
    for row in [list(titles), *rows]:
        cells = [c.ljust(max(widths[i], 20)) if i < len(row) - 1 else c
                 for i, c in enumerate(row)]
        lines.append("".join(cells))
    return "\n".join(lines) + "\n"
