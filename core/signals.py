"""Signals as people name them: docker's forms, judged in the core so that a bad one is a
recorded refusal whichever client sent it."""

from __future__ import annotations

import signal

from core.errors import BadInput

SIGRTMAX = 64  # Linux: the highest signal number a process can be sent


def parse_signal(value: str | int) -> int:
    """`KILL`, `SIGKILL`, `kill`, `9` or 9 -> 9; anything else is an invalid signal."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        number = int(value)
        if 1 <= number <= SIGRTMAX:
            return number
        raise BadInput(f"invalid signal: {value}")
    name = str(value).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise BadInput(f"invalid signal: {value}") from None
