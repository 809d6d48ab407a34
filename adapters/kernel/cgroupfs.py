"""cgroupfs's knobs: one-line text files read and written, with errors that name the file.

Shared by the cgroup adapter (adapters/kernel/cgroups.py) and the real-time budget one
(adapters/kernel/rtbudget.py), which the cgroup adapter calls: here, so neither imports
the other back.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import LaminaError


class CgroupError(LaminaError):
    """A cgroup operation failed, or the host lacks a hierarchy lamina needs; the message
    names the file, directory or hierarchy involved (one line, as every LaminaError)."""

    exit_code = 125


def read(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def read_int(path: Path | None, default: int = 0) -> int:
    """Missing files (or None) read as `default`: a controller may be absent on this host."""
    try:
        return int(read(path)) if path is not None else default
    except FileNotFoundError:
        return default


def write(path: Path, value: str) -> None:
    """Write a knob, turning the kernel's bare errno into a message that names the file."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise CgroupError(f"write {value!r} to {path}: {e.strerror}") from e
