"""Deterministic ids and a ticking clock, so that runs and tests repeat exactly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass
class CountingIds:
    """Deterministic ids: sha256 of a counter, so runs and tests repeat exactly."""

    n: int = 0

    def new_id(self) -> str:
        self.n += 1
        return hashlib.sha256(str(self.n).encode()).hexdigest()


@dataclass
class TickingClock:
    """A clock that advances one microsecond per reading, in the log's `at` format."""

    t: int = 0

    def __call__(self) -> str:
        self.t += 1
        return f"2026-01-01T00:00:00.{self.t:06d}Z"
