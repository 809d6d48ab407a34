"""Docker's human-friendly units for `--memory` and `--cpus`.

Why a parser of our own: users type the same strings they type for docker (`64m`, `1g`,
`0.5`), and they must mean the same thing here. Docker's go-units `RAMInBytes` treats every
suffix as binary (k = 1024), accepts an optional `i`/`b` after it (`64mb`, `64MiB`) and a
fraction (`1.5g`), and truncates to whole bytes; this module does the same, but with exact
decimal arithmetic so `1.1g` never depends on float rounding.
"""

from __future__ import annotations

import math
import os
import re
from decimal import Decimal

_MULTIPLIERS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp]?)(?:i?b)?$", re.IGNORECASE)

MIN_CPUS = 0.01  # docker's floor: cpu.max needs a quota of at least 1 ms per 100 ms period


def parse_size(text: str) -> int:
    """`64m` -> 67108864. Raises a one-line ValueError that quotes the bad input."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r}: expected a number with an optional unit "
                         "b, k, m, g, t or p (e.g. 64m, 1.5g)")
    number, unit = match.groups()
    return int(Decimal(number) * _MULTIPLIERS[unit.lower()])


def parse_cpus(text: str, max_cpus: int | None = None) -> float:
    """`0.5` -> 0.5 CPUs. Bounded like docker: at least 0.01, at most the host's CPU count.

    max_cpus defaults to os.cpu_count() so an impossible quota fails at parse time rather
    than silently meaning "unlimited" once the kernel clamps it.
    """
    try:
        cpus = float(text)
    except ValueError:
        raise ValueError(f"invalid cpus {text!r}: expected a number such as 0.5 or 2") from None
    limit = max_cpus if max_cpus is not None else (os.cpu_count() or 1)
    if not math.isfinite(cpus) or not MIN_CPUS <= cpus <= limit:
        raise ValueError(f"invalid cpus {text!r}: range is {MIN_CPUS} to {limit:.2f}, "
                         f"as there are {limit} CPUs available")
    return cpus
