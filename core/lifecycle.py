"""The container lifecycle: one `transitions` Machine, the only judge of legal moves.

A container is in one of the seed's four states. `image` is the state of a container that does
not exist (yet, or any more): only the image's read-only layers are there. Every command that
moves a container asks `judge()` here; nothing else in lamina repeats these rules.

Design notes (pitfalls of `transitions` we design around):
- `auto_transitions=False`: the default adds `to_<state>()` moves that bypass every rule.
- No callbacks: an exception raised in `on_enter` keeps the state change, so events are never
  appended from inside the machine. The machine only answers questions.
- One shared Machine for all containers (a Machine per container is slow and heavy): the answer
  for (state, trigger) is asked of the machine once and remembered.
"""

from __future__ import annotations

from functools import cache
from typing import Any

STATES: tuple[str, ...] = ("image", "stopped", "running", "paused")

_LIVE = ["running", "paused"]

# dest None: an internal move (the state stays, no exit/enter); "=": a reflexive move.
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "create", "source": "image", "dest": "stopped"},
    {"trigger": "start", "source": "stopped", "dest": "running"},
    {"trigger": "pause", "source": "running", "dest": "paused"},
    {"trigger": "unpause", "source": "paused", "dest": "running"},
    {"trigger": "stop", "source": _LIVE, "dest": "stopped"},
    {"trigger": "kill", "source": _LIVE, "dest": "stopped"},
    {"trigger": "signal", "source": _LIVE, "dest": None},
    # exit: the process ended by itself. From paused too: a reboot or a killed monitor can
    # take a frozen container's processes away, and reconciliation records that.
    {"trigger": "exit", "source": _LIVE, "dest": "stopped"},
    {"trigger": "restart", "source": ["stopped", "running"], "dest": "running"},
    {"trigger": "rm", "source": "stopped", "dest": "image"},
    {"trigger": "rm_force", "source": "*", "dest": "image"},
    {"trigger": "commit", "source": ["stopped", "running", "paused"], "dest": "="},
    {"trigger": "exec", "source": "running", "dest": None},
    # network connect/disconnect: membership changes, the state stays
    {"trigger": "connect", "source": ["stopped", "running"], "dest": None},
    {"trigger": "disconnect", "source": ["stopped", "running"], "dest": None},
]

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(t["trigger"] for t in TRANSITIONS))


class _Judge:
    """The model object the shared machine decides for; it holds no container of its own."""

    state: str


@cache
def machine(graph: bool = False) -> Any:
    """Build the one Machine (imported lazily: `transitions` costs ~30 ms to import).

    With graph=True, a GraphMachine of the same definition, for `make docs`.
    """
    options: dict[str, Any] = {
        "model": _Judge(),
        "states": list(STATES),
        "transitions": TRANSITIONS,
        "initial": "image",
        "auto_transitions": False,
    }
    if graph:
        from transitions.extensions import GraphMachine

        return GraphMachine(title="lamina container lifecycle", show_conditions=False, **options)
    from transitions import Machine

    return Machine(**options)


@cache
def destination(state: str, trigger: str) -> str | None:
    """Where `trigger` takes a container in `state`, or None when the move is illegal.

    The machine answers; the result is remembered because the answer can't change.
    """
    if state not in STATES:
        raise ValueError(f"unknown lifecycle state {state!r}")
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown lifecycle trigger {trigger!r}")
    m = machine()
    judged = m.models[0]
    m.set_state(state, model=judged)
    if not getattr(judged, f"may_{trigger}")():
        return None
    dest = m.get_transitions(trigger, source=state)[0].dest
    return state if dest is None else dest


def judge(state: str, trigger: str) -> bool:
    """True when `trigger` is a legal move from `state`."""
    return destination(state, trigger) is not None


def legal_triggers(state: str) -> list[str]:
    """Every trigger legal from `state`, in the order TRANSITIONS declares them."""
    return [t for t in TRIGGERS if judge(state, t)]
