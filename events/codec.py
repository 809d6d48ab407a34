"""The log's codec: how an event's data and meta become the text a store keeps, and back.

Every event store (SQLite today, PostgreSQL next) encodes and decodes through this module,
so that a log reads the same whichever store wrote it and the hash chain
(events/hashchain.py) covers the same text:

    encode(value) -> str        the text to store for an event's data or meta (or a doc)
    decode(text) -> value       one text back (the standard library's parser: no import)
    bulk_decoder() -> decode    a faster decoder for reading many rows (replay, listings):
                                the same results, for ~10 ms of import paid once
    typed_decoder(cls, slow)    text straight into a dataclass (the read model's rows)
    bulk_ready()                whether the faster decoders cost nothing more to use

The stored form is canonical JSON text: sorted keys, no spaces, UTF-8 left unescaped, as
`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes it.
It stays JSON, written by the standard library, because:
- a row's hash covers its stored text (hashchain.row_hash): a log written by any earlier
  lamina verifies as it did, and a new one with the same rule;
- the stores query into that text (SQLite's json_extract for `events --filter` and name
  lookups), which a binary form would take away;
- an append encodes a few events per command (microseconds); replay decodes every event of
  the log, so speed matters on the decoding side only.
So there is one format, today's, and no log needs upcasting for the codec's sake (event
types still change shape through events/upcasting.py).

The bulk decoder is msgspec's JSON decoder: ~3.5x faster than `json.loads` on the log's
rows, and exact where orjson, as fast, is not (orjson turns an integer beyond 64 bits into
a float; msgspec keeps it an int, as `json.loads` does). What it refuses and the standard
library accepted (NaN, Infinity, a lone surrogate escape: `json.dumps` may have written
them into older logs) goes to `json.loads`, so every text any lamina wrote decodes exactly
as `json.loads` decodes it; tests/unit/test_codec.py holds the two to that.

A store keeps the text exactly as `encode` returns it: a PostgreSQL `text` column, not
`jsonb`, which would reorder and respace it and so break the hash chain.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

Decode = Callable[[str | bytes], Any]
T = TypeVar("T")

encode: Callable[[Any], str] = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
decode: Decode = json.loads

_bulk: Decode | None = None


def bulk_decoder() -> Decode:
    """A decoder giving decode()'s results, faster: for code that decodes many rows."""
    global _bulk
    if _bulk is None:
        _bulk = _make_bulk()
    return _bulk


def bulk_ready() -> bool:
    """Whether msgspec is imported already (a server, a replay): then a bulk decoder is
    worth using for a few rows too."""
    return "msgspec" in sys.modules


def typed_decoder(cls: type[T], slow: Callable[[str | bytes], T]) -> Callable[[str | bytes], T]:
    """A decoder of texts straight into `cls`, a dataclass, by its fields' types (tuples
    where they say tuple, a field's default where the text has none): ~3x faster than
    building it from decode()'s dict. A text it can't read that way (a value of another
    type than the field says, a field the class no longer has) is `slow`'s, which gives
    the same instance where both can read it (tests/unit/test_codec.py)."""
    import msgspec

    fast = msgspec.json.Decoder(cls).decode
    refused = (msgspec.DecodeError, UnicodeEncodeError)  # ValidationError is a DecodeError

    def decode_typed(text: str | bytes) -> T:
        try:
            return fast(text)
        except refused:
            return slow(text)

    return decode_typed


def _make_bulk() -> Decode:
    import msgspec

    fast = msgspec.json.Decoder().decode
    refused = (msgspec.DecodeError, UnicodeEncodeError)  # the latter: a str it can't read
    loads = json.loads

    def decode_fast(text: str | bytes) -> Any:
        try:
            return fast(text)
        except refused:
            return loads(text)  # NaN, Infinity, lone surrogates; or json's own error

    return decode_fast
