"""Restart policies model-checked: a container's end and the restart its policy wants are one
append, so there is no window between them.

Why a machine of its own: tests/model/harness.py judges every move by the lifecycle machine
alone, where a stop of a stopped container is always refused; with a restart policy, a stop
of a stopped container whose restart is pending (its back-off) succeeds as docker's does
(ContainerRestartCancelled by the user). Here hypothesis drives containers with each policy
(and a host port two of them want, so that a restart can fail) through start, their own
ends, stop, kill, the end of a back-off, the host's shutdown mark, `system shutdown`, the
host's start and rm -f, and checks after every step that each container is running or
paused, stopped with a ContainerRestartScheduled pending, or stopped for good, as the log
alone says:
- an end of its own is recorded with what its policy makes of it in one append (one
  command): the restart scheduled, or while the host shuts down cancelled for it, or
  nothing, by docker's rules (written out again here, independently of core/restart.py);
- a stop or kill of a stopped container is the stop of a restarting one (cancelled by the
  user) exactly when a restart is pending; else refused "not running", one CommandRejected
  and nothing changed (after a cancellation for the shutdown, after a failed restart);
- the monitor's look after the end (Engine.schedule_restart) appends nothing, and a back-off
  that ends after something happened to the container restarts nothing;
- and harness.check_world's invariants (replay equals the live world, the processes, the
  leases) hold in every state.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from core.errors import Conflict, IllegalMove, LaminaError
from core.model import Container
from tests.model.harness import check_world, replay, seeded_engine

SLOTS = ("r0", "r1", "r2")
POLICIES = ("no", "always", "unless-stopped", "on-failure", "on-failure:1")
PORT = "8080:80"  # wanted by more than one container: a restart can find it taken
LIVE = ("running", "paused")
REFUSED = "is not running"

slots = st.sampled_from(SLOTS)


def seen(what: str) -> None:
    """What a run went through (`--hypothesis-show-statistics`); nothing out of one."""
    if currently_in_test_context():
        event(what)


def wants_restart(policy: str, exit_code: int, count: int) -> bool:
    """docker's rule for an end of the container's own (restartmanager), written out."""
    name, _, maximum = policy.partition(":")
    if name in ("always", "unless-stopped"):
        return True
    return name == "on-failure" and exit_code != 0 and (not maximum or count < int(maximum))


class RestartMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.e, _ = seeded_engine()
        self.down = False
        self.e.shutting_down = lambda: self.down
        self.policy: dict[str, str] = {}
        self.pending: dict[str, int] = {}  # slot -> the version its monitor waits on
        self.replayed = replay(self.e.log.read())

    # --- helpers ---------------------------------------------------------------------

    def get(self, slot: str) -> Container | None:
        return self.e.log.container_named(slot)

    def records(self) -> list[Any]:
        return list(self.e.log.records)

    def appended(self, n: int) -> list[Any]:
        return self.records()[n:]

    # --- rules -----------------------------------------------------------------------

    @initialize(policies=st.tuples(*[st.sampled_from(POLICIES)] * len(SLOTS)),
                ports=st.tuples(*[st.sampled_from([True, True, False])] * len(SLOTS)))
    def running(self, policies: tuple[str, ...], ports: tuple[bool, ...]) -> None:
        """Every slot's container created and started (the port's second taker refused)."""
        for slot, policy, port in zip(SLOTS, policies, ports, strict=True):
            self.create(slot, policy, port)
            self.start(slot)

    @rule(slot=slots, policy=st.sampled_from(POLICIES), port=st.booleans())
    def create(self, slot: str, policy: str, port: bool) -> None:
        if self.get(slot) is not None:
            return
        config: dict[str, Any] = {"restart": policy}
        if port:
            config["port_bindings"] = [PORT]
        self.e.create("base", ["sh"], slot, config=config)
        self.policy[slot] = policy

    @rule(slot=slots)
    def start(self, slot: str) -> None:
        c = self.get(slot)
        if c is None:
            return
        with suppress(LaminaError):  # running already, its port taken: judged elsewhere
            self.e.start(slot)

    @rule(slot=slots, code=st.sampled_from([0, 1]))
    def end(self, slot: str, code: int) -> None:
        """The process ends by itself; whoever records it (the monitor, an attached client)
        records the end with its restart; then the monitor looks for the restart."""
        c = self.get(slot)
        if c is None or c.state not in LIVE:
            return
        self.e.runtime.finish(c.id, code)
        n = len(self.records())
        ended = self.e.exited(c.id, code, pid=c.pid)
        new = self.appended(n)
        wants = wants_restart(self.policy[slot], code, c.restart_count)
        expected = ["ContainerExited"]
        if wants:
            expected.append("ContainerRestartCancelled" if self.down
                            else "ContainerRestartScheduled")
        assert [r.type for r in new] == expected, (self.policy[slot], code, new)
        seen(f"end: {expected}")
        assert len({r.meta["command_id"] for r in new}) == 1  # one command, one append
        if wants and self.down:
            assert new[1].data == {"id": c.id, "reason": "the host is shutting down",
                                   "by_user": False}
        assert ended is not None and ended.state == "stopped"
        assert ended.restarting == (wants and not self.down)
        assert not ended.manually_stopped
        n = len(self.records())
        pending = self.e.schedule_restart(c.id, c.pid)  # the monitor's look after the end
        assert self.appended(n) == []
        assert (pending is not None) == ended.restarting
        if pending is not None:
            self.pending[slot] = pending.version

    def _stopping(self, slot: str, move: str) -> None:
        c = self.get(slot)
        if c is None:
            return
        n = len(self.records())
        try:
            after = getattr(self.e, move)(slot)
            error = None
        except LaminaError as err:
            error, after = err, None
        new = self.appended(n)
        seen(f"{move} of a {'restarting' if c.restarting else c.state} container")
        if c.state in LIVE:
            assert error is None, error
            return
        if c.restarting:  # docker's stop of a restarting container: for good, the user's
            assert error is None, error
            done = "stopped" if move == "stop" else "killed"
            assert [(r.type, r.data) for r in new] == [("ContainerRestartCancelled", {
                "id": c.id, "reason": f"{done} by the user", "by_user": True})]
            assert after is not None and not after.restarting and after.manually_stopped
            return
        # stopped with nothing pending: stopped for good, whatever the policy says
        last = next((r for r in reversed(self.records()[:n]) if r.stream.endswith(c.id)
                     and r.type == "ContainerRestartCancelled"), None)
        if last is not None and not last.data["by_user"]:
            seen(f"{move} refused after a restart cancelled: {last.data['reason'][:14]}")
        assert isinstance(error, IllegalMove) and REFUSED in str(error), error
        assert [r.type for r in new] == ["CommandRejected"]
        assert self.get(slot) == c

    @rule(slot=slots)
    def stop(self, slot: str) -> None:
        self._stopping(slot, "stop")

    @rule(slot=slots)
    def kill(self, slot: str) -> None:
        self._stopping(slot, "kill")

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def backoff_ends(self, data: st.DataObject) -> None:
        """The monitor's wait is over: restart if nothing happened since it looked."""
        self.backoff_ends_of(data.draw(st.sampled_from(sorted(self.pending))))()

    def backoff_ends_of(self, slot: str) -> Any:
        return lambda: self._backoff_ends(slot)

    def _backoff_ends(self, slot: str) -> None:
        version = self.pending.pop(slot)
        c = self.get(slot)
        n = len(self.records())
        try:
            after = self.e.restart_scheduled(slot, version)
            error = None
        except LaminaError as err:
            error, after = err, None
        new = [r.type for r in self.appended(n)]
        seen(f"back-off ends: {new}")
        if c is None or c.version != version or not c.restarting:
            assert (error, after, new) == (None, None, []), (error, after, new)
            return
        if self.down:
            assert (error, after, new) == (None, None, ["ContainerRestartCancelled"])
        elif error is not None:  # its port taken in its back-off: the restart failed
            assert isinstance(error, Conflict), error
            assert new == ["ContainerRestartCancelled", "CommandRejected"]
            assert self.records()[n].data["reason"].startswith("restart failed: ")
        else:
            assert new == ["ContainerRestarted"] and after is not None
            assert after.state == "running" and after.restart_count == c.restart_count + 1
        if after is None:
            now = self.get(slot)
            assert now is not None and not now.restarting and not now.manually_stopped

    @rule(down=st.booleans())
    def mark(self, down: bool) -> None:
        """`system shutdown` marks the root first; the next boot's mark is stale."""
        self.down = down

    @precondition(lambda self: self.down)
    @rule()
    def shutdown(self) -> None:
        self.e.shutdown()
        for c in self.e.log.containers():
            assert c.state == "stopped" and not c.restarting, c

    @precondition(lambda self: not self.down)
    @rule()
    def host_start(self) -> None:
        self.e.bring_back("host start")

    @rule(slot=slots)
    def rm(self, slot: str) -> None:
        if self.get(slot) is not None:
            self.e.rm(slot, force=True)
            self.policy.pop(slot, None)

    # --- invariants ------------------------------------------------------------------

    @invariant()
    def the_world(self) -> None:
        new = self.e.log.read(after=self.replayed.seq)
        self.replayed = replay(new, self.replayed)
        check_world(self.e, self.replayed)

    @invariant()
    def no_window(self) -> None:
        """Every scheduled restart was appended with the end it follows (the record just
        before it, of the same command); every restarting container ended by itself."""
        records = self.records()
        for i, r in enumerate(records):
            if r.type == "ContainerRestartScheduled":
                end = records[i - 1]
                assert (end.type, end.stream) == ("ContainerExited", r.stream), (end, r)
                assert end.meta["command_id"] == r.meta["command_id"]
        for c in self.e.log.containers(("stopped",)):
            if c.restarting:
                assert not c.manually_stopped and not c.shutdown_stopped, c


RestartMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestRestartMachine = RestartMachine.TestCase


def _checked(m: RestartMachine) -> None:
    m.the_world()
    m.no_window()


def test_the_windows_edges_step_by_step() -> None:
    """The machine's rules and checks through the cases the window got wrong, in order:
    a stop right after an end with a policy cancels the restart (the user's); a stop after
    the restart was cancelled for the host's shutdown, or after it failed, is refused "not
    running"."""
    m = RestartMachine()
    m.running(("always", "unless-stopped", "no"), (True, False, True))
    for step in (lambda: m.end("r0", 1), lambda: m.stop("r0"),  # cancelled by the user
                 lambda: m.mark(True), lambda: m.end("r1", 0),  # cancelled for the host
                 lambda: m.stop("r1"), lambda: m.kill("r1"),  # refused: not running
                 lambda: m.mark(False), m.host_start,  # r0 (always) and r1 come back
                 lambda: m.end("r0", 1), lambda: m.start("r2"),  # r2 takes r0's port
                 m.backoff_ends_of("r0"),  # the restart fails
                 lambda: m.stop("r0"), lambda: m.kill("r0")):  # refused: not running
        step()
        _checked(m)
    kinds = [(r.type, r.data.get("reason", "")[:14], r.data.get("by_user"))
             for r in m.records() if r.type == "ContainerRestartCancelled"]
    assert kinds == [("ContainerRestartCancelled", "stopped by the", True),
                     ("ContainerRestartCancelled", "the host is sh", False),
                     ("ContainerRestartCancelled", "restart failed", False)]
    assert sum(r.type == "CommandRejected" and r.data["command"] in ("stop", "kill")
               for r in m.records()) == 4
