"""The hash chain: each row's hash covers the previous row's hash and the row itself.

hash = sha256(prev_hash + canonical JSON of the row's other columns), canonical meaning sorted
keys and no spaces. Changing, removing or reordering any row breaks every hash after it, which
is what `lamina audit verify` looks for.
"""

from __future__ import annotations

import hashlib

from events.codec import encode as canonical

GENESIS = "0" * 64


def row_hash(prev_hash: str, seq: int, stream: str, version: int, type_: str, schema: int,
             data: str, meta: str, at: str) -> str:
    """The hash of one row; `data` and `meta` are the JSON texts exactly as stored."""
    body = canonical({"seq": seq, "stream": stream, "version": version, "type": type_,
                      "schema": schema, "data": data, "meta": meta, "at": at})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()
