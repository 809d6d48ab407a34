"""`lamina audit verify`: recompute the whole hash chain and name the first broken row."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from events.hashchain import GENESIS, row_hash


@dataclass
class Verdict:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str = ""


def verify(con: sqlite3.Connection) -> Verdict:
    """Walk the log in seq order; stop at the first row whose link or hash is wrong."""
    return check_chain(con.execute("SELECT seq, stream, version, type, schema, data, meta, "
                                   "at, prev_hash, hash FROM events ORDER BY seq"))


def check_chain(rows: Iterable[Sequence[Any]]) -> Verdict:
    """The chain of these rows (seq order, from seq 1), whichever store they come from."""
    prev, expected_seq, n = GENESIS, 1, 0
    for seq, stream, version, type_, schema, data, meta, at, prev_hash, h in rows:
        if seq != expected_seq:
            return Verdict(False, n, expected_seq, f"seq {expected_seq} is missing "
                                                   f"(next row is {seq})")
        if prev_hash != prev:
            return Verdict(False, n, seq, "prev_hash does not match the previous row's hash")
        if row_hash(prev, seq, stream, version, type_, schema, data, meta, at) != h:
            return Verdict(False, n, seq, "hash does not match the row's contents")
        prev, expected_seq, n = h, seq + 1, n + 1
    return Verdict(True, n)
