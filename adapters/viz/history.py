"""A container's path through the lifecycle's states, from its events.

The container's stream (`container:<id>`) is folded through core.lifecycle's destination():
the same judge that allowed each move tells where it led. Refused commands aimed at the
container are shown too (they move nothing), so the picture is the audit's, not only the
state's.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from core import lifecycle
from core.errors import Ambiguous, NotFound
from core.model import TRIGGER_OF


@dataclass(frozen=True)
class Step:
    """One event on the container's timeline: the move it made (or, refused, didn't)."""

    seq: int
    at: str
    type: str
    trigger: str  # the lifecycle trigger; "" for a refused command
    before: str
    after: str
    detail: str = ""

    @property
    def refused(self) -> bool:
        return self.type == "CommandRejected"


@dataclass(frozen=True)
class History:
    id: str
    name: str
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "steps": [asdict(s) for s in self.steps]}


def _logged_ids(con: Any, ref: str) -> tuple[list[str], list[str]]:
    """(ids the log ever created under this name, newest first; ids with this prefix):
    a removed container still has a history."""
    bare = ref.lstrip("/")
    rows = con.execute(
        "SELECT substr(stream, 11), json_extract(data, '$.name') FROM events "
        "WHERE type = 'ContainerCreated' AND (json_extract(data, '$.name') = ? OR "
        "substr(stream, 11, ?) = ?) ORDER BY seq DESC", (bare, len(bare), bare)).fetchall()
    return [i for i, n in rows if n == bare], [i for i, _ in rows if i.startswith(bare)]


def resolve(source: Any, ref: str) -> str:
    """The container's id: a live one first (docker's order), else the newest one the log
    ever had with that name, else a unique id prefix among all it ever had."""
    try:
        return source.container(ref).id
    except NotFound:
        if source.con is None:
            raise
    named, prefixed = _logged_ids(source.con, ref)
    if named:
        return named[0]
    if len(set(prefixed)) > 1:
        raise Ambiguous(f"multiple containers found with provided prefix: {ref}")
    if prefixed:
        return prefixed[0]
    raise NotFound(f"no such container: {ref}")


_FULL_ID = re.compile(r"([0-9a-f]{12})[0-9a-f]{52}")


def _detail(rec: Any) -> str:
    d = rec.data
    if rec.type == "CommandRejected":  # full ids in reasons shortened, as docker prints them
        return _FULL_ID.sub(r"\1", f"{d.get('command')} refused: {d.get('reason')}")
    parts = []
    for key in ("pid", "exit_code", "signal", "reason", "command"):
        if d.get(key) not in (None, "", 0) or (key == "exit_code" and key in d):
            parts.append(f"{key}={d[key]}")
    return " ".join(parts)


def history(source: Any, ref: str, until: int | None = None) -> History:
    """The timeline of the container's events up to `until` (the whole log if None)."""
    from adapters.eventstore.query import select

    cid = resolve(source, ref)
    state, name, steps = "image", "", []
    for rec in select(source.con, filters=[f"container={cid}"]):
        if until is not None and rec.seq > until:
            break
        if rec.type == "ContainerCreated":
            name = rec.data.get("name", "")
        trigger = TRIGGER_OF.get(rec.type, "")
        if rec.type == "ContainerRemoved":
            trigger = "rm_force" if rec.data.get("force") else "rm"
        after = state
        if trigger and rec.type != "CommandRejected":
            after = lifecycle.destination(state, trigger) or state
        steps.append(Step(rec.seq, rec.at, rec.type, trigger, state, after, _detail(rec)))
        state = after
    if not steps:
        raise NotFound(f"no such container{'' if until is None else f' at seq {until}'}: {ref}")
    return History(cid, name, tuple(steps))
