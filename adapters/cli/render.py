"""Tables and lines for people, JSON for programs: how the CLI prints what it reads."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from core.references import short


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO = sys.stdout
          ) -> None:
    """docker's layout: columns padded to their widest cell, three spaces apart."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
    line = "   ".join(f"{{:<{w}}}" for w in widths)  # one format a row: ps of 1,000 rows
    out.write("".join(line.format(*r).rstrip() + "\n" for r in [headers, *rows]))


def json_line(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value, sort_keys=True, separators=(",", ":")) + "\n")


def ago(at: str, now: datetime | None = None) -> str:
    """`5 minutes ago`, as docker prints creation times."""
    if not at:
        return ""
    try:
        then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return at
    secs = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = secs // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago" if secs < 1 else f"{secs} seconds ago"


def status(c: Any) -> str:
    """lamina's four states, with the exit code of a container that ran."""
    if c.state == "stopped" and c.ran:
        if getattr(c, "restarting", False):  # its restart policy's back-off
            return f"stopped ({c.exit_code}), restarting"
        return f"stopped ({c.exit_code})"
    return c.state


def _brief(value: Any) -> str | None:
    """A field as the one-line view shows it: ids short, lists joined, configs left out."""
    if isinstance(value, dict):
        return None
    if isinstance(value, list):
        return " ".join(_brief(v) or "" for v in value)
    text = str(value)
    if len(text) == 64 and all(ch in "0123456789abcdef" for ch in text):
        return short(text)
    if text.startswith("sha256:") and len(text) == 71:
        return "sha256:" + text[7:19]
    return text


def event_line(rec: Any) -> str:
    """One audit line: time, seq, type, object, then the event's own fields."""
    fields = ((k, _brief(v)) for k, v in sorted(rec.data.items()) if k != "id")
    attrs = ", ".join(f"{k}={v}" for k, v in fields if v not in (None, ""))
    who = rec.meta.get("user", rec.meta.get("uid", ""))
    return (f"{rec.at} #{rec.seq} {rec.type} {rec.kind} {short(rec.target)}"
            f"{f' ({attrs})' if attrs else ''} by {who}")


def event_json(rec: Any) -> dict[str, Any]:
    return {"seq": rec.seq, "stream": rec.stream, "version": rec.version, "type": rec.type,
            "schema": rec.schema, "data": rec.data, "meta": rec.meta, "at": rec.at,
            "prev_hash": rec.prev_hash, "hash": rec.hash}
