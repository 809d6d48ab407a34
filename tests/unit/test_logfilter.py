"""core/logfilter.py: docker's times, the log window (tail, since, until), -t/--details, and
detach keys with docker's escape proxy."""

from __future__ import annotations

import calendar
import os
import time

import pytest

from core import logfilter as lf
from core.errors import BadInput

NOW = 1_700_000_000.25


def at(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def test_durations_are_before_now_in_whole_seconds() -> None:
    assert lf.go_duration("10m") == 600
    assert lf.go_duration("1h30m") == 5400
    assert lf.go_duration("1.5s") == 1.5
    assert lf.go_duration("300ms") == 0.3
    assert lf.go_duration("10") is None and lf.go_duration("m") is None
    assert lf.parse_time("10m", NOW) == int(NOW) - 600
    assert lf.parse_time("1h", NOW) == int(NOW) - 3600


def test_unix_seconds_and_rfc3339() -> None:
    assert lf.parse_time("1", NOW) == 1.0
    assert lf.parse_time("0", NOW) == 0.0
    assert lf.parse_time("1714557600.5", NOW) == 1714557600.5
    assert lf.parse_time("2024-05-01T10:00:00Z", NOW) == at("2024-05-01T10:00:00")
    assert lf.parse_time("2024-05-01T10:00:00.25Z", NOW) == at("2024-05-01T10:00:00") + .25
    assert lf.parse_time("2024-05-01T12:00:00+02:00", NOW) == at("2024-05-01T10:00:00")
    assert lf.parse_time("2024-05-01T10:00", NOW) == at("2024-05-01T10:00:00")  # local
    assert lf.parse_time("2024-05-01", NOW) == at("2024-05-01T00:00:00")
    for bad in ("yesterday", "2024-13-01", "1.2.3", "-5"):
        with pytest.raises(BadInput):
            lf.parse_time(bad, NOW)


def test_local_time_when_no_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Etc/GMT-2")  # two hours east of UTC
    time.tzset()
    try:
        assert lf.parse_time("2024-05-01T12:00:00", NOW) == at("2024-05-01T10:00:00")
    finally:
        os.environ["TZ"] = "UTC"
        time.tzset()


def _entries(*spec: tuple[str, str]) -> list[tuple[int, dict]]:
    return [(i + 1, {"log": text, "stream": "stdout", "time": when})
            for i, (text, when) in enumerate(spec)]


LOG = _entries(("a\n", "2024-05-01T10:00:00.000001Z"), ("b\n", "2024-05-01T10:00:01.5Z"),
               ("c\n", "2024-05-01T10:00:02.000000Z"), ("d\n", "2024-05-01T10:00:03.9Z"))


def _texts(window: lf.Window, entries: list = LOG) -> list[str]:
    return [e["log"] for e in lf.Selection(window).pick(entries)[1]]


def test_window() -> None:
    assert _texts(lf.Window.of()) == ["a\n", "b\n", "c\n", "d\n"]
    assert _texts(lf.Window.of(tail="2")) == ["c\n", "d\n"]
    assert _texts(lf.Window.of(tail="0")) == []
    assert _texts(lf.Window.of(tail="all")) == _texts(lf.Window.of(tail="-1")) == \
        ["a\n", "b\n", "c\n", "d\n"]
    t = at("2024-05-01T10:00:00")
    assert _texts(lf.Window.of(since=str(t + 1.5))) == ["b\n", "c\n", "d\n"]
    assert _texts(lf.Window.of(until=str(t + 2))) == ["a\n", "b\n", "c\n"]
    assert _texts(lf.Window.of(until="1")) == []
    assert _texts(lf.Window.of(since=str(t + 1), until=str(t + 3), tail="3")) == ["b\n", "c\n"]
    with pytest.raises(BadInput):
        lf.Window.of(tail="x")


def test_since_lets_later_entries_pass_once_matched() -> None:
    skewed = _entries(("a\n", "2024-05-01T10:00:00Z"), ("b\n", "2024-05-01T10:00:05Z"),
                      ("c\n", "2024-05-01T10:00:01Z"))
    window = lf.Window.of(since=str(at("2024-05-01T10:00:04")))
    assert _texts(window, skewed) == ["b\n", "c\n"]


def test_follow_reads_on_after_the_tail() -> None:
    sel = lf.Selection(lf.Window.of(tail="1", until=str(at("2024-05-01T10:00:05"))))
    assert sel.pick(LOG[:2]) == (2, [LOG[1][1]])
    assert sel.pick(LOG[2:]) == (4, [LOG[2][1], LOG[3][1]])
    late = _entries(("e\n", "2024-05-01T10:00:06Z"))
    assert sel.pick(late)[1] == [] and sel.done


def test_lines_with_timestamps_and_details() -> None:
    entry = {"log": "hi\n", "stream": "stdout", "time": "2024-05-01T10:00:00.123456Z",
             "attrs": {"b": "x y", "a": "1"}}
    assert lf.line(entry) == "hi\n"
    assert lf.line(entry, timestamps=True) == "2024-05-01T10:00:00.123456000Z hi\n"
    assert lf.line(entry, with_details=True) == "a=1,b=x+y hi\n"
    assert lf.line({"log": "x\n"}, with_details=True) == " x\n"


def test_detach_keys() -> None:
    assert lf.detach_keys(None) == b"\x10\x11"
    assert lf.detach_keys("ctrl-a,b") == b"\x01b"
    assert lf.detach_keys("ctrl-@,ctrl-_,ctrl-\\") == b"\x00\x1f\x1c"
    assert lf.detach_keys("CTRL-X") == b"\x18"
    with pytest.raises(BadInput, match="Invalid detach keys"):
        lf.detach_keys("ctrl-1")


def test_escape_proxy() -> None:
    proxy = lf.EscapeProxy(b"\x10\x11")
    assert proxy.feed(b"abc") == b"abc"
    assert proxy.feed(b"\x10") == b""  # held
    assert proxy.feed(b"x") == b"\x10x"  # released with what broke it
    assert proxy.feed(b"\x10\x10") == b"\x10"
    assert proxy.feed(b"\x11") is None
    one = lf.EscapeProxy(b"\x10")
    assert one.feed(b"ab\x10cd") is None
