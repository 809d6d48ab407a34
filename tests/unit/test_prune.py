"""docker's `until` filter of the prunes (core/prune.py), and network prune honouring it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import prune
from core.errors import BadInput
from core.memory import memory_engine


def test_until_takes_docker_forms() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert prune.point("1h30m", now) == now - timedelta(minutes=90)
    assert prune.point("1767225600", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert prune.point("2026-01-01", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert prune.point("2026-01-01T01:00:00+01:00", now) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(BadInput, match="failed to parse value as time or duration"):
        prune.point("soon", now)
    with pytest.raises(BadInput, match="more than one until filter"):
        prune.cutoff({"until": ["1h", "2h"]}, "2026-01-01T00:00:00.000000Z")
    assert prune.created_before("2025-12-31T00:00:00.000000Z", prune.point("2026-01-01", now))


def test_network_prune_until() -> None:
    e = memory_engine(user="t")
    e.network_create("old")
    assert e.network_prune({"until": ["2000-01-01"]}) == []
    assert e.network_prune({"label!": ["x"]}) == ["old"]  # (the memory log has no clock)
    with pytest.raises(BadInput, match="invalid filter 'dangling'"):
        e.network_prune({"dangling": ["true"]})
