"""Upcasters: older versions of an event's data turned into the current shape on read.

The log is immutable, so a change to an event type never rewrites rows: instead the type's
SCHEMA goes up and a function here maps version N's data to N+1. Reads chain them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events.types import CURRENT_SCHEMA

Data = dict[str, Any]
UPCASTERS: dict[tuple[str, int], Callable[[Data], Data]] = {}


def upcaster(type_name: str, from_schema: int) -> Callable[[Callable[[Data], Data]], Callable]:
    """Register fn as the step from `from_schema` to `from_schema + 1` of `type_name`."""

    def register(fn: Callable[[Data], Data]) -> Callable[[Data], Data]:
        UPCASTERS[(type_name, from_schema)] = fn
        return fn

    return register


class UnknownSchema(ValueError):
    """An event written by a newer lamina, or one with no path to the current schema."""


def upcast(type_name: str, schema: int, data: Data) -> Data:
    """Bring `data` of `type_name` at `schema` up to the current schema."""
    current = CURRENT_SCHEMA.get(type_name)
    if current is None:
        raise UnknownSchema(f"unknown event type {type_name!r}")
    if schema > current:
        raise UnknownSchema(
            f"{type_name} schema {schema} is newer than this lamina reads ({current})")
    while schema < current:
        step = UPCASTERS.get((type_name, schema))
        if step is None:
            raise UnknownSchema(f"no upcaster for {type_name} from schema {schema}")
        data = step(data)
        schema += 1
    return data


@upcaster("ContainerCreated", 1)
def _container_created_v1(data: Data) -> Data:
    """Schema 1 kept the command as one shell string in `command`; 2 keeps an argv `cmd`."""
    new = {k: v for k, v in data.items() if k != "command"}
    command = data.get("command") or ""
    if isinstance(command, str):
        import shlex

        new["cmd"] = shlex.split(command)
    else:
        new["cmd"] = list(command)
    new.setdefault("rw_layer", "")
    new.setdefault("config", {})
    return new
