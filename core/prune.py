"""What the prune commands share, as plain functions: docker's `until` filter (a point in
time, or a Go duration before now) and the created times it is compared with.

docker's prune filters (moby api/types/filters, daemon/prune.go): `until=` takes a unix
timestamp (fractions allowed), an RFC 3339 date or time (a date alone, or without a zone,
is UTC), or a Go duration such as `24h` or `1h30m`, counted back from now; what was created
before it is pruned. One `until` only. No I/O: the caller hands in now (Engine.clock's text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from core.errors import BadInput

_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def at(text: str) -> datetime:
    """The log's `at` text (UTC, ISO 8601 with a Z) as an aware datetime."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cutoff(filters: Mapping[str, Sequence[str]], now: str) -> datetime | None:
    """The `until` filter's point in time (None when not asked); docker's refusals."""
    values = list(filters.get("until") or ())
    if not values:
        return None
    if len(values) > 1:
        raise BadInput("more than one until filter specified")
    return point(values[0], at(now))


def point(value: str, now: datetime) -> datetime:
    """One `until` value: a Go duration before `now`, a unix timestamp, an RFC 3339 time."""
    text = value.strip()
    if _GO_DURATION.match(text):
        seconds = sum(float(n) * _SECONDS[unit] for n, unit in _PART.findall(text))
        return now - timedelta(seconds=seconds)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f'failed to parse value as time or duration: "{value}"') from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def created_before(created: str, until: datetime | None) -> bool:
    """Whether something created at `created` (the log's text) is old enough to prune."""
    if until is None:
        return True
    try:
        return at(created) < until
    except ValueError:
        return False


def check_keys(filters: Mapping[str, Sequence[str]], accepted: frozenset[str]) -> None:
    """docker's `invalid filter 'key'` for a key the prune doesn't take."""
    for key in filters:
        if key not in accepted:
            raise BadInput(f"invalid filter '{key}'")
