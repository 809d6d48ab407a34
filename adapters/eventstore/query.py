"""The audit trail's query: `lamina events` filters turned into one SQL statement."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.eventstore.sqlite_log import EVENT_COLUMNS, recorded
from core.errors import BadInput
from events.envelope import Recorded

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
KINDS = ("container", "image", "layer", "volume", "network", "command", "build", "pull",
         "registry", "system", "root")


def parse_time(text: str, now: datetime | None = None) -> str:
    """A point in time as the log's `at` text: ISO 8601, a unix timestamp, or `10m` ago."""
    now = now or datetime.now(UTC)
    m = _DURATION.match(text)
    if m:
        when = now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    elif re.match(r"^\d+(\.\d+)?$", text):
        when = datetime.fromtimestamp(float(text), UTC)
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"invalid time {text!r}: use ISO 8601, a unix timestamp or a "
                           "duration like 10m") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _names_to_ids(con: sqlite3.Connection, kind: str, ref: str) -> list[str]:
    """Ids a name (container: created or renamed so) or tag (image) ever pointed at, from
    the log itself."""
    if kind == "container":
        sql = ("SELECT DISTINCT substr(stream, 11) FROM events WHERE type IN "
               "('ContainerCreated', 'ContainerRenamed') AND json_extract(data, '$.name') = ?")
    else:
        sql = ("SELECT DISTINCT substr(stream, 7) FROM events WHERE type = 'ImageTagged' "
               "AND json_extract(data, '$.tag') IN (?, ? || ':latest')")
        return [r[0] for r in con.execute(sql, (ref, ref))]
    return [r[0] for r in con.execute(sql, (ref,))]


# An image's own stream, and the stream of its pulls and pushes (registry:<image id>).
_STREAMS_OF = {"container": ("container",), "image": ("image", "registry")}


def _object_clause(con: sqlite3.Connection, kind: str, ref: str) -> tuple[str, list[str]]:
    ids = _names_to_ids(con, kind, ref)
    kinds = _STREAMS_OF[kind]
    parts, args = [], []
    for ident in ids:
        parts.append("stream IN (" + ", ".join("?" * len(kinds)) + ") OR "
                     "json_extract(data, '$.target') IN (?, ?)")
        args += [*(f"{k}:{ident}" for k in kinds), ident, ref]
    bare = ref[7:] if ref.startswith("sha256:") else ref
    if re.match(r"^[0-9a-f]{1,64}$", bare):
        for k in kinds:
            parts.append("stream >= ? AND stream < ?")
            args += [f"{k}:{bare}", f"{k}:{bare}\U0010ffff"]
        parts.append("(type = 'CommandRejected' AND json_extract(data, '$.target') LIKE ?)")
        args.append(bare + "%")
    parts.append("(type = 'CommandRejected' AND json_extract(data, '$.target') = ?)")
    args.append(ref)
    return "(" + " OR ".join(f"({p})" for p in parts) + ")", args


# --- the container events that concern a network ----------------------------------------------

_MEMBERSHIP = ("ContainerCreated", "ContainerStarted", "ContainerRestarted",
               "ContainerConnected", "ContainerDisconnected")
_RUN_ENDS = ("ContainerStopped", "ContainerKilled", "ContainerExited", "ContainerRemoved")


def _networks_named(con: sqlite3.Connection, ref: str) -> dict[str, str]:
    """id -> name of every network the log ever had with this name or id (prefix), the
    predefined ones (not events: constants) included."""
    from core.engine.networks import PREDEFINED

    rows = con.execute(
        "SELECT substr(stream, 9), json_extract(data, '$.name') FROM events "
        "WHERE type = 'NetworkCreated' AND (json_extract(data, '$.name') = ? OR "
        "stream >= ? AND stream < ?)", (ref, f"network:{ref}", f"network:{ref}\U0010ffff"))
    found = dict(rows.fetchall())
    bare = ref[7:] if ref.startswith("sha256:") else ref
    for name, n in PREDEFINED.items():
        if ref == name or (bare and n.id.startswith(bare)):
            found[n.id] = name
    return found


def _container_seqs(con: sqlite3.Connection, ref: str) -> list[int]:
    """The seqs of the container events that concern the network(s) `ref` names, as docker's
    network filter shows containers joining and leaving: the create that made a container a
    member (its --network), every start or restart that leased an address there,
    `network connect` and `disconnect`, and the end of a run that held a lease there (the
    stop, kill, exit or forced rm that released it)."""
    nets = _networks_named(con, ref)
    if not nets:
        return []
    ids, names = json.dumps(sorted(nets)), json.dumps(sorted({*nets.values()}))
    in_ids = "IN (SELECT value FROM json_each(:ids))"
    streams = [r[0] for r in con.execute(
        "SELECT DISTINCT stream FROM events WHERE stream >= 'container:' AND "
        "stream < 'container;' AND ("
        "(type IN ('ContainerConnected', 'ContainerDisconnected') AND "
        f"json_extract(data, '$.network_id') {in_ids}) OR "
        "(type IN ('ContainerStarted', 'ContainerRestarted') AND EXISTS (SELECT 1 FROM "
        f"json_each(events.data, '$.networks') AS n WHERE json_extract(n.value, '$.id') {in_ids}))"
        " OR (type = 'ContainerCreated' AND json_extract(data, '$.config.network') IN "
        "(SELECT value FROM json_each(:names))))", {"ids": ids, "names": names})]
    if not streams:
        return []
    types = _MEMBERSHIP + _RUN_ENDS
    rows = con.execute(
        "SELECT seq, stream, type, data FROM events WHERE stream IN (SELECT value FROM "
        f"json_each(?)) AND type IN ({', '.join('?' * len(types))}) ORDER BY seq",
        (json.dumps(streams), *types))
    seqs: list[int] = []
    leased: dict[str, bool] = {}  # stream -> its run holds a lease on the network
    for seq, stream, type_, text in rows:
        data = json.loads(text)
        held = leased.get(stream, False)
        if type_ == "ContainerCreated":
            hit = (data.get("config") or {}).get("network") in nets.values()
        elif type_ in ("ContainerStarted", "ContainerRestarted"):
            now = any(isinstance(ep, dict) and ep.get("id") in nets
                      for ep in (data.get("networks") or {}).values())
            hit, leased[stream] = now or held, now
        elif type_ in ("ContainerConnected", "ContainerDisconnected"):
            hit = data.get("network_id") in nets
            if hit:
                leased[stream] = type_ == "ContainerConnected" and bool(data.get("endpoint"))
        else:  # the run's end releases its leases
            hit, leased[stream] = held, False
        if hit:
            seqs.append(seq)
    return seqs


# docker's event names (its `event=` filter, the API's Action) and the lamina events that
# are them; a lamina type name or kind is taken too
DOCKER_ACTIONS: dict[str, tuple[str, ...]] = {
    "create": ("ContainerCreated", "ImageCreated", "VolumeCreated", "NetworkCreated",
               "LayerRegistered"),
    "start": ("ContainerStarted", "ContainerRestarted"), "restart": ("ContainerRestarted",),
    "pause": ("ContainerPaused",), "unpause": ("ContainerUnpaused",),
    "die": ("ContainerStopped", "ContainerKilled", "ContainerExited"),
    "stop": ("ContainerStopped",), "kill": ("ContainerKilled", "ContainerSignalled"),
    "destroy": ("ContainerRemoved", "VolumeRemoved", "NetworkRemoved"),
    "commit": ("ContainerCommitted",), "export": ("ContainerExported",),
    "rename": ("ContainerRenamed",), "update": ("ContainerUpdated",),
    "exec_start": ("ExecStarted",), "exec_die": ("ExecExited",),
    "exec_detach": ("ExecDetached",),
    "attach": ("ContainerAttached",), "detach": ("ContainerDetached",),
    "archive-path": ("ContainerCopiedFrom",), "extract-to-dir": ("ContainerCopiedTo",),
    "connect": ("ContainerConnected",), "disconnect": ("ContainerDisconnected",),
    "mount": ("VolumeMounted",), "unmount": ("VolumeUnmounted",),
    "tag": ("ImageTagged",), "untag": ("ImageUntagged",),
    "delete": ("ImageRemoved", "LayerRemoved"), "save": ("ImageSaved",),
    "load": ("ImageLoaded",), "pull": ("ImagePulled",), "push": ("Pushed",),
    "health_status": ("ContainerHealthChanged",),
}
KEYS = ("container", "image", "volume", "network", "type", "event", "label", "user")

# the events that made an object with labels, and where they keep them
_LABELLED = {"ContainerCreated": "$.config.labels", "ImageCreated": "$.config.config.Labels",
             "VolumeCreated": "$.labels", "NetworkCreated": "$.labels"}


def labelled_streams(con: sqlite3.Connection, values: list[str]) -> list[str]:
    """The streams of the objects (containers, images, volumes, networks) whose labels hold
    every `label=` value (docker's MatchKVList: `K` a label, `K=V` a label with that value)."""
    from core.filters import labels_match

    types = list(_LABELLED)
    rows = con.execute(
        "SELECT stream, type, data FROM events WHERE type IN "
        f"({', '.join('?' * len(types))})", types)
    out = []
    for stream, type_, text in rows:
        labels: Any = json.loads(text)
        for part in _LABELLED[type_].split(".")[1:]:
            labels = labels.get(part) if isinstance(labels, dict) else None
        if isinstance(labels, dict) and labels_match(labels, values):
            out.append(stream)
    return out


def _clause(con: sqlite3.Connection, key: str, value: str) -> tuple[str, list[Any]]:
    """One `key=value` as SQL over the events table."""
    if key in ("container", "image"):
        return _object_clause(con, key, value)
    if key in ("type", "event"):
        if value in KINDS:
            return "stream >= ? AND stream < ?", [f"{value}:", f"{value};"]
        if key == "event" and value in DOCKER_ACTIONS:
            types = DOCKER_ACTIONS[value]
            return f"type IN ({', '.join('?' * len(types))})", list(types)
        return "type = ?", [value]
    if key == "volume":  # its own stream, and the commands refused on it
        return ("(stream = ? OR (type = 'CommandRejected' AND "
                "json_extract(data, '$.target') = ?))", [f"volume:{value}", value])
    if key == "network":  # by name (every network that had it) or id (or its prefix)
        return ("(stream IN (SELECT stream FROM events WHERE type = 'NetworkCreated' "
                "AND (json_extract(data, '$.name') = ? OR stream >= ? AND stream < ?))"
                " OR (type = 'CommandRejected' AND json_extract(data, '$.target') = ?)"
                " OR seq IN (SELECT value FROM json_each(?)))",
                [value, f"network:{value}", f"network:{value}\U0010ffff", value,
                 json.dumps(_container_seqs(con, value))])
    if key == "user":
        return ("(json_extract(meta, '$.user') = ? OR "
                "CAST(json_extract(meta, '$.uid') AS TEXT) = ?)", [value, value])
    raise BadInput(f"invalid filter key {key!r}: use container, image, volume, network, "
                   "type, event, label or user")


def time_bounds(since: str | None, until: str | None) -> tuple[list[str], list[str]]:
    """SQL conditions (and their arguments) for events at or after `since` and at or
    before `until` (the log's `at` texts).

    Each time bound is also a bound on seq, found in the index by time: SQLite would rather
    walk the whole log in seq order (the order asked) testing every row's time, which made
    `events --since 1m` on a long log as slow as listing all of it. The first seq at or
    after `since` bounds every row at or after it whatever the clock did; the last seq at
    or before `until` likewise."""
    where, args = [], []
    if since:
        where.append("seq >= (SELECT min(seq) FROM events INDEXED BY events_at "
                     "WHERE at >= ?) AND at >= ?")
        args += [since, since]
    if until:
        where.append("seq <= (SELECT max(seq) FROM events INDEXED BY events_at "
                     "WHERE at <= ?) AND at <= ?")
        args += [until, until]
    return where, args


class ContainerNames(Mapping[str, str]):
    """Containers' names by id, removed ones too (the last each had), looked up in the
    log when asked: a listing names the few containers it shows, where reading every
    create and rename first cost as much as the log is long."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.known: dict[str, str | None] = {}

    def __getitem__(self, cid: str) -> str:
        if cid not in self.known:
            row = self.con.execute(
                "SELECT json_extract(data, '$.name') FROM events WHERE stream = ? AND type "
                "IN ('ContainerCreated', 'ContainerRenamed') ORDER BY version DESC LIMIT 1",
                (f"container:{cid}",)).fetchone()
            self.known[cid] = row[0] if row else None
        name = self.known[cid]
        if name is None:
            raise KeyError(cid)
        return name

    def _all(self) -> dict[str, str]:
        return dict(self.con.execute(
            "SELECT substr(stream, 11), json_extract(data, '$.name') FROM events "
            "WHERE type IN ('ContainerCreated', 'ContainerRenamed') ORDER BY seq"))

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def by_key(filters: Sequence[str]) -> dict[str, list[str]]:
    """KEY=VALUE filters grouped by key (both stores apply docker's rule on them: one
    key's values are alternatives, different keys must all hold)."""
    found: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or not value:
            raise BadInput(f"invalid filter {f!r}: use key=value")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def build_query(con: sqlite3.Connection, since: str | None, until: str | None,
                filters: Sequence[str]) -> tuple[str, list]:
    """docker's rule: the values of one key are alternatives (any may hold), different keys
    must all hold."""
    where, args = ["1"], []
    bounds, more = time_bounds(parse_time(since) if since else None,
                               parse_time(until) if until else None)
    where += bounds
    args += more
    for key, values in by_key(filters).items():
        if key == "label":  # every label value must hold (docker's), on the object's stream
            where.append("stream IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(labelled_streams(con, values)))
            continue
        parts = [_clause(con, key, value) for value in values]
        where.append("(" + " OR ".join(f"({sql})" for sql, _ in parts) + ")")
        for _, more in parts:
            args += more
    return f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq", args


def select(con: sqlite3.Connection, since: str | None = None, until: str | None = None,
           filters: Sequence[str] = ()) -> Iterator[Recorded]:
    from events.codec import bulk_decoder

    sql, args = build_query(con, since, until, filters)
    rows = con.execute(sql, args)
    first = rows.fetchone()
    if first is None:
        return  # nothing to decode: msgspec's import (~10 ms) is not paid
    loads = bulk_decoder()
    yield recorded(first, loads)
    for row in rows:
        yield recorded(row, loads)
