"""The lifecycle machine: exactly the seed's four states and the issue's moves."""

from __future__ import annotations

import pytest

from core import lifecycle

EXPECTED = {
    ("image", "create"): "stopped",
    ("stopped", "start"): "running",
    ("running", "pause"): "paused",
    ("paused", "unpause"): "running",
    ("running", "stop"): "stopped",
    ("paused", "stop"): "stopped",
    ("running", "kill"): "stopped",
    ("paused", "kill"): "stopped",
    ("running", "exit"): "stopped",
    ("paused", "exit"): "stopped",
    ("stopped", "restart"): "running",
    ("running", "restart"): "running",
    ("stopped", "rm"): "image",
    ("image", "rm_force"): "image",
    ("stopped", "rm_force"): "image",
    ("running", "rm_force"): "image",
    ("paused", "rm_force"): "image",
    ("stopped", "commit"): "stopped",
    ("running", "commit"): "running",
    ("paused", "commit"): "paused",
    ("running", "signal"): "running",
    ("paused", "signal"): "paused",
    ("running", "exec"): "running",
    ("stopped", "connect"): "stopped",
    ("running", "connect"): "running",
    ("stopped", "disconnect"): "stopped",
    ("running", "disconnect"): "running",
}


def test_states_are_the_seeds_four() -> None:
    assert lifecycle.STATES == ("image", "stopped", "running", "paused")


@pytest.mark.parametrize("state", lifecycle.STATES)
@pytest.mark.parametrize("trigger", lifecycle.TRIGGERS)
def test_every_move_is_exactly_as_specified(state: str, trigger: str) -> None:
    assert lifecycle.destination(state, trigger) == EXPECTED.get((state, trigger))


def test_no_auto_transitions_bypass_the_rules() -> None:
    m = lifecycle.machine()
    judged = m.models[0]
    assert not any(hasattr(judged, f"to_{s}") for s in lifecycle.STATES)


def test_unknown_names_are_errors_not_silent_refusals() -> None:
    with pytest.raises(ValueError):
        lifecycle.judge("exploded", "start")
    with pytest.raises(ValueError):
        lifecycle.judge("stopped", "teleport")


def test_graph_machine_has_the_same_definition() -> None:
    """make docs draws this one (graphviz is installed by make test with the docs extra)."""
    g = lifecycle.machine(graph=True)
    assert set(g.states) == set(lifecycle.STATES)
    assert set(g.events) == set(lifecycle.TRIGGERS)
