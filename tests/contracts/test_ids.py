"""The Ids contract (core/ports.py): every id is 64 lowercase hex characters, and no two are
the same. Run against the in-memory counter and the random ids of the composition root."""

from __future__ import annotations

import re
from typing import Any

from adapters.bootstrap import RandomIds
from core.memory import CountingIds


class IdsContract:
    def make_ids(self) -> Any:
        raise NotImplementedError

    def test_ids_are_64_hex_characters_and_never_repeat(self) -> None:
        ids = self.make_ids()
        seen = [ids.new_id() for _ in range(1000)]
        assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in seen)
        assert len(set(seen)) == len(seen)


class TestCountingIds(IdsContract):
    def make_ids(self) -> Any:
        return CountingIds()


class TestRandomIds(IdsContract):
    def make_ids(self) -> Any:
        return RandomIds()
