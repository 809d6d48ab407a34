"""docker's log window: the times `logs --since/--until` take, `--tail`, and how a line is
printed with `-t` and `--details`; and docker's detach keys (`--detach-keys ctrl-p,ctrl-q`).
Pure: the CLI and the API both apply it to the entries the json-file reader yields.

Times are read as docker's client reads them (moby's api/types/time.GetTimestamp): a Go
duration (`10m`, `1h30m`, `1.5s`) is that long before now; an RFC 3339 time (`2024-05-01`,
`2024-05-01T10:00`, `...:05.5Z`, `+02:00`), local when it names no zone; else unix seconds
with an optional fraction (`1714557600.5`), which is also what the API gets.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from core.errors import BadInput

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
             "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
_UNIX = re.compile(r"^(\d+)(?:\.(\d{1,9}))?$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?$", re.IGNORECASE)


def go_duration(text: str) -> float | None:
    """Seconds of a Go duration (time.ParseDuration), or None if `text` is not one."""
    sign, body = 1.0, text
    if body[:1] in "+-" and body:
        sign, body = (-1.0 if body[0] == "-" else 1.0), body[1:]
    if not body:
        return None
    total, pos = 0.0, 0
    while pos < len(body):
        m = _GO_PART.match(body, pos)
        if m is None or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_time(value: str, now: float | None = None) -> float:
    """A point in time as docker takes it (module doc), as unix seconds."""
    value = value.strip()
    now = time.time() if now is None else now
    duration = go_duration(value) if value != "0" else None
    if duration is not None:
        return float(int(now - duration))  # docker keeps whole seconds: Unix()
    m = _DATE.match(value)
    if m:
        year, month, day, hour, minute, sec, frac, zone = m.groups()
        fields = (int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                  int(sec or 0))
        try:
            stamp = time.struct_time((*fields, 0, 0, -1))
            if zone is None:  # local time, as docker's ParseInLocation
                seconds = time.mktime(stamp)
            else:
                seconds = calendar.timegm(stamp)
                if zone.upper() != "Z":
                    offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
                    seconds -= offset if zone[0] == "+" else -offset
            if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24
                    and fields[4] < 60 and fields[5] < 61):
                raise ValueError(value)
        except (ValueError, OverflowError):
            raise BadInput(f'parsing time "{value}": out of range') from None
        return seconds + (float(frac) if frac else 0.0)
    if "-" not in value and _UNIX.match(value):
        return float(value)
    raise BadInput(f'failed to parse value as time or duration: "{value}"')


def entry_time(entry: dict[str, Any]) -> float:
    """An entry's `time` (`2024-05-01T10:00:00.123456Z`, up to nanoseconds) in unix seconds."""
    text = str(entry.get("time") or "")
    head, _, frac = text.rstrip("Zz").partition(".")
    try:
        seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    return seconds + (float("0." + frac) if frac.isdigit() else 0.0)


def stamp(entry: dict[str, Any]) -> str:
    """docker's `-t` prefix: RFC 3339 with nanoseconds, nine digits always."""
    text = str(entry.get("time") or "")
    head, _, frac = text.rstrip("Zz").partition(".")
    return f"{head}.{(frac + '000000000')[:9]}Z"


def parse_tail(value: str | int | None) -> int | None:
    """`--tail N|all`: the last N entries, or None for all (docker: a negative N is all)."""
    if value is None or value == "" or str(value).lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise BadInput(f'invalid value for "tail": strconv.Atoi: parsing "{value}": '
                       "invalid syntax") from None
    return None if n < 0 else n


@dataclass(frozen=True)
class Window:
    """Which entries a `logs` shows: the last `tail` ones, from the first at or after
    `since` on, up to (not past) `until`. Times in unix seconds, None for unbounded."""

    since: float | None = None
    until: float | None = None
    tail: int | None = None

    @classmethod
    def of(cls, since: str | None = None, until: str | None = None,
           tail: str | int | None = None, now: float | None = None) -> Window:
        return cls(parse_time(since, now) if since not in (None, "", "0") else None,
                   parse_time(until, now) if until not in (None, "", "0") else None,
                   parse_tail(tail))

    def ended(self, now: float | None = None) -> bool:
        """A `--follow` has nothing more to wait for once `until` is past."""
        return self.until is not None and (time.time() if now is None else now) > self.until


class Selection:
    """The window applied to a stream of (offset, entry) as docker's forwarder does: tail
    first (over what is there now), then `since` until its first match (later entries pass
    even if their clocks went back), and `until` stops everything at the first entry
    past it. Call `pick` again on later entries (`--follow`): tail applies to the first
    call only."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.since = window.since
        self.first = True
        self.done = False  # an entry past `until` was seen

    def pick(self, entries: Iterable[tuple[int, dict[str, Any]]]
             ) -> tuple[int | None, list[dict[str, Any]]]:
        """(the offset after the last entry read, None if none; the entries shown): every
        entry is read, shown or not, so a follow goes on after them."""
        listed = list(entries)
        last = listed[-1][0] if listed else None
        source: Iterable[tuple[int, dict[str, Any]]] = listed
        if self.first and self.window.tail is not None:
            source = listed[len(listed) - self.window.tail:] if self.window.tail else ()
        self.first = False
        shown = []
        for _, entry in source:
            if self.done:
                break
            if self.since is not None:
                if entry_time(entry) < self.since:
                    continue
                self.since = None
            if self.window.until is not None and entry_time(entry) > self.window.until:
                self.done = True
                break
            shown.append(entry)
        return last, shown


def details(entry: dict[str, Any]) -> str:
    """`--details`: the entry's attributes (docker's --log-opt labels/env), `k=v,k2=v2`,
    sorted and query-escaped, as docker prints them before the line."""
    attrs = entry.get("attrs") or {}
    return ",".join(f"{quote_plus(str(k))}={quote_plus(str(v))}"
                    for k, v in sorted(attrs.items()))


def line(entry: dict[str, Any], timestamps: bool = False, with_details: bool = False) -> str:
    """An entry as `docker logs` prints it."""
    text = str(entry.get("log", ""))
    if with_details:
        text = details(entry) + " " + text
    if timestamps:
        text = stamp(entry) + " " + text
    return text


# --- detach keys ----------------------------------------------------------------------------

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL = ["ctrl-@", *(f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"), "ctrl-[", "ctrl-\\",
         "ctrl-]", "ctrl-^", "ctrl-_"]


def detach_keys(spec: str | None) -> bytes:
    """docker's key spec (`ctrl-p,ctrl-q`, `ctrl-a,b`: single characters or ctrl-@..ctrl-_)
    as the bytes a terminal sends; an empty spec is docker's default."""
    spec = spec or DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            out += key.encode()
            continue
        for code, name in enumerate(_CTRL):
            if key.lower() == name:
                out.append(code)
                break
        else:
            raise BadInput(f"Invalid detach keys ({spec}) provided: Unknown character: "
                           f"'{key}'")
    return bytes(out)


class EscapeProxy:
    """Finds the detach keys in a client's input, as docker's escape proxy does: bytes that
    begin the sequence are held back until it is complete (detach: `feed` returns None) or
    broken (they go on with the rest)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> bytes | None:
        out = bytearray()
        for byte in data:
            if byte == self.keys[len(self.held)]:
                self.held += bytes([byte])
                if len(self.held) == len(self.keys):
                    return None
                continue
            if self.held:
                out += self.held
                self.held = b""
                if byte == self.keys[0]:
                    self.held = bytes([byte])
                    if len(self.keys) == 1:
                        return None
                    continue
            out.append(byte)
        return bytes(out)
