"""Restart policies: docker's rules (core/restart.py) and the engine applying them on the
in-memory ports (core/engine/restarts.py); the real monitor's are tests/kernel/test_restart.py."""

from __future__ import annotations

import pytest

from core import restart
from core.compat import checked
from core.errors import BadInput, Conflict, IllegalMove
from core.memory import memory_engine
from core.restart import Policy, backoff, decide


def test_the_flag_is_read_as_dockers_cli_reads_it() -> None:
    assert restart.parse_flag("always") == {"Name": "always", "MaximumRetryCount": 0}
    assert restart.parse_flag("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    with pytest.raises(BadInput, match="maximum retry count must be an integer"):
        restart.parse_flag("on-failure:x")
    with pytest.raises(BadInput, match="no policy provided before colon"):
        restart.parse_flag(":3")


def test_policies_are_judged_as_dockers_daemon_judges_them() -> None:
    assert restart.policy({"Name": "unless-stopped"}) == Policy("unless-stopped")
    assert restart.policy("on-failure:2") == Policy("on-failure", 2)
    assert restart.policy({"Name": "", "MaximumRetryCount": 0}) == Policy("no")
    with pytest.raises(BadInput, match="unknown policy 'sometimes'"):
        restart.policy({"Name": "sometimes"})
    with pytest.raises(BadInput, match="can only be used with 'on-failure'"):
        restart.policy("always:3")
    with pytest.raises(BadInput, match="cannot be negative"):
        restart.policy({"Name": "on-failure", "MaximumRetryCount": -1})


def test_create_records_the_apis_shape_and_refuses_rm_with_a_policy() -> None:
    assert checked({"restart": "on-failure:2"}) == {
        "restart": {"Name": "on-failure", "MaximumRetryCount": 2}}
    assert checked({"restart": {"Name": "always"}}) == {
        "restart": {"Name": "always", "MaximumRetryCount": 0}}
    with pytest.raises(BadInput, match="can't create 'AutoRemove' container with restart"):
        checked({"restart": "always", "auto_remove": True})
    assert checked({"restart": "no", "auto_remove": True})["auto_remove"] is True


def test_the_backoff_is_morbys_table() -> None:
    assert restart.delays(12) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2,
                                  60.0, 60.0]
    assert backoff(25.6, ran_for=9.9) == 51.2
    assert backoff(25.6, ran_for=10) == 0.1  # a run of 10 s starts it over


@pytest.mark.parametrize(("policy", "code", "manual", "count", "restarts"), [
    ("no", 1, False, 0, False),
    ("always", 0, False, 5, True),
    ("always", 137, True, 0, False),  # the user's stop or kill
    ("unless-stopped", 0, False, 0, True),
    ("unless-stopped", 143, True, 0, False),
    ("on-failure", 0, False, 0, False),
    ("on-failure", 1, False, 99, True),  # no maximum
    ("on-failure:2", 1, False, 1, True),
    ("on-failure:2", 1, False, 2, False),  # two restarts made
    ("on-failure:2", 1, True, 0, False),
])
def test_who_is_restarted(policy: str, code: int, manual: bool, count: int,
                          restarts: bool) -> None:
    due = decide(restart.policy(policy), code, manual, count, 0, 1)
    assert (due is not None) == restarts
    if due is not None:
        assert due.count == count + 1 and due.delay == 0.1 and str(code) in due.reason


def test_at_host_start_always_comes_back_even_after_a_stop_and_unless_stopped_not() -> None:
    at = restart.at_host_start
    assert at(Policy("always"), 137, True, 0, False)  # docker: "until the daemon restarts"
    assert not at(Policy("unless-stopped"), 143, True, 0, False)
    assert at(Policy("unless-stopped"), 0, False, 0, False)
    assert at(Policy("on-failure", 2), 1, False, 1, False)
    assert not at(Policy("on-failure", 2), 1, False, 2, False)
    assert not at(Policy("on-failure"), 0, False, 0, False)
    assert not at(Policy("no"), 1, False, 0, False)


@pytest.fixture
def e():
    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "busybox")
    return e


def _exit(e, name: str, code: int):
    c = e.container(name)
    e.runtime.finish(c.id, code)
    e.exited(c.id, code, pid=c.pid)
    return c.pid


def test_an_exit_schedules_a_restart_that_counts(e) -> None:
    cid = e.create("busybox", ["sh"], name="c", config={"restart": "always"})
    e.start("c")
    pid = _exit(e, "c", 3)
    scheduled = e.schedule_restart("c", pid)
    assert scheduled.restarting and scheduled.state == "stopped"
    assert scheduled.restart_delay == 0.1
    n = len(e.log.records)
    assert e.schedule_restart("c", pid) == scheduled  # the pending one, nothing appended
    assert len(e.log.records) == n
    c = e.restart_scheduled("c", scheduled.version)
    assert c.state == "running" and c.restart_count == 1 and not c.restarting
    last = e.log.records[-1]
    assert last.type == "ContainerRestarted" and last.data["automatic"] is True
    assert last.data["count"] == 1 and last.data["reason"] == "always: exited with code 3"
    pid = _exit(e, "c", 3)
    scheduled = e.schedule_restart(cid, pid)
    assert scheduled.restart_delay == pytest.approx(0.2, abs=0.11)  # doubled, unless slow
    assert e.restart_scheduled(cid, scheduled.version).restart_count == 2
    assert e.restart("c").restart_count == 0  # the user's restart starts it over


def test_on_failure_stops_after_its_maximum_and_not_for_zero(e) -> None:
    e.create("busybox", ["sh"], name="c", config={"restart": "on-failure:1"})
    e.start("c")
    scheduled = e.schedule_restart("c", _exit(e, "c", 1))
    e.restart_scheduled("c", scheduled.version)
    assert e.schedule_restart("c", _exit(e, "c", 1)) is None
    e.start("c")  # the user's start: the count starts over
    assert e.schedule_restart("c", _exit(e, "c", 0)) is None


def test_a_user_stop_in_the_back_off_cancels_and_counts_as_stopped(e) -> None:
    e.create("busybox", ["sh"], name="c", config={"restart": "unless-stopped"})
    e.start("c")
    scheduled = e.schedule_restart("c", _exit(e, "c", 1))
    c = e.stop("c")
    assert not c.restarting and c.manually_stopped
    assert e.log.records[-1].type == "ContainerRestartCancelled"
    assert e.restart_scheduled("c", scheduled.version) is None
    with pytest.raises(IllegalMove, match="is not running"):
        e.stop("c")  # no longer restarting: docker's refusal as before
    assert e.bring_back("host start") == []  # unless-stopped: not after a user's stop


def test_a_user_stop_never_schedules_and_the_host_start_brings_always_back(e) -> None:
    e.create("busybox", ["sh"], name="a", config={"restart": "always"})
    e.create("busybox", ["sh"], name="n")
    e.start("a")
    e.start("n")
    pid = e.container("a").pid
    e.stop("a")
    e.stop("n")
    assert e.schedule_restart("a", pid) is None
    back = e.bring_back("lamina serve started")
    assert back == [e.container("a").id]
    c = e.container("a")
    assert c.state == "running" and c.restart_count == 0
    assert e.log.records[-1].data["reason"] == "always: lamina serve started"


def test_a_start_or_rm_in_the_back_off_wins(e) -> None:
    e.create("busybox", ["sh"], name="c", config={"restart": "always"})
    e.start("c")
    scheduled = e.schedule_restart("c", _exit(e, "c", 0))
    e.start("c")
    assert e.restart_scheduled("c", scheduled.version) is None
    assert e.container("c").restart_count == 0
    scheduled = e.schedule_restart("c", _exit(e, "c", 0))
    with pytest.raises(IllegalMove, match="container is restarting: stop the container "
                                          "before removing or force remove"):
        e.rm("c")  # docker's: only -f removes a container whose restart is due
    e.rm("c", force=True)
    assert e.restart_scheduled("c", scheduled.version) is None


def test_update_records_the_policy_in_the_apis_shape() -> None:
    assert restart.for_update("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert restart.for_update({"Name": "no"}) == {"Name": "no", "MaximumRetryCount": 0}
    with pytest.raises(BadInput, match="unknown policy"):
        restart.for_update({"Name": "never"})


def test_the_hosts_shutdown_stops_every_container_and_no_policy_fires(e) -> None:
    """`system shutdown`: running and paused containers stopped (recorded with `shutdown`,
    not as the user's stop), a restart due cancelled not by the user; no policy restarts
    them meanwhile, and the host's next start brings back always and unless-stopped ones
    but not one its user stopped before (docker's daemon shutdown)."""
    for name, policy in (("a", "always"), ("u", "unless-stopped"), ("s", "unless-stopped"),
                         ("n", "no"), ("p", "always"), ("r", "always")):
        e.create("busybox", ["sh"], name=name, config={"restart": policy})
        e.start(name)
    e.stop("s")  # its user's stop
    e.pause("p")
    pids = {n: e.container(n).pid for n in "aunp"}
    e.schedule_restart("r", _exit(e, "r", 1))  # in its back-off
    done = e.shutdown()
    assert {e.container(cid).name: o.split(" (")[0] for cid, o in done.items()} == {
        "a": "stopped", "u": "stopped", "n": "stopped", "p": "stopped",
        "r": "restart cancelled"}
    stops = [r for r in e.log.records if r.type == "ContainerStopped"]
    assert [r.data["shutdown"] for r in stops] == [False, True, True, True, True]
    assert all(r.meta["command"] == "system shutdown" for r in stops[1:])
    cancel = e.log.records[[r.type for r in e.log.records].index("ContainerRestartCancelled")]
    assert not cancel.data["by_user"] and cancel.meta["command"] == "system shutdown"
    for n in "aunpr":
        c = e.container(n)
        assert (c.state, c.restarting, c.manually_stopped) == ("stopped", False, False), c
    assert all(e.schedule_restart(n, pid) is None for n, pid in pids.items())
    assert e.shutdown() == {}  # nothing left to stop
    back = {e.container(cid).name for cid in e.bring_back("host start")}
    assert back == {"a", "u", "p", "r"}
    assert e.container("s").state == "stopped" and e.container("n").state == "stopped"


def test_a_shutdown_stop_is_not_a_users_and_a_start_clears_it() -> None:
    assert decide(Policy("always"), 143, False, 0, 0, 1, shutdown=True) is None
    assert decide(Policy("always"), 143, False, 0, 0, 1) is not None
    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "busybox")
    e.create("busybox", ["sh"], name="c", config={"restart": "always"})
    e.start("c")
    e.shutdown()
    assert e.container("c").shutdown_stopped
    e.start("c")
    c = e.container("c")
    assert not c.shutdown_stopped and not c.manually_stopped
    pid = _exit(e, "c", 1)
    assert e.schedule_restart("c", pid) is not None  # an exit of its own: the policy's


def test_a_container_the_shutdown_cant_stop_is_refused_and_the_others_stop(
        e, monkeypatch) -> None:
    """The host failing one stop (here its runtime raising, as a vanished cgroup would):
    that container's stop is recorded as refused, every other one is stopped all the same."""
    for name in ("a", "b"):
        e.create("busybox", ["sh"], name=name)
        e.start(name)
    bad = e.container("a").id
    stop = e.runtime.stop

    def failing(c, timeout, sig=15):
        if c.id == bad:
            raise OSError("no such file or directory")
        return stop(c, timeout, sig)

    monkeypatch.setattr(e.runtime, "stop", failing)
    done = e.shutdown()
    assert done[bad].startswith("refused: could not stop container")
    assert e.container("b").state == "stopped"
    rejected = [r for r in e.log.records if r.type == "CommandRejected"]
    assert [(r.data["command"], r.data["target"]) for r in rejected] == [
        ("system shutdown", bad)]


def test_no_policy_fires_while_the_host_is_shutting_down(e) -> None:
    """The root marked as shutting down (`system shutdown`, this boot): an end the policy
    would restart is recorded as a restart cancelled for the host, never scheduled; a
    back-off that ends meanwhile is cancelled too; once unmarked (the next boot), it is."""
    down = [False]
    e.shutting_down = lambda: down[0]
    for name in ("a", "b"):
        e.create("busybox", ["sh"], name=name, config={"restart": "always"})
        e.start(name)
    scheduled = e.schedule_restart("b", _exit(e, "b", 1))  # in its back-off
    down[0] = True
    assert e.schedule_restart("a", _exit(e, "a", 0)) is None
    assert e.restart_scheduled("b", scheduled.version) is None
    cancels = [r for r in e.log.records if r.type == "ContainerRestartCancelled"]
    assert [(r.data["reason"], r.data["by_user"]) for r in cancels] == [
        ("the host is shutting down", False)] * 2
    assert not any(r.type == "ContainerRestartScheduled" and r.stream.endswith(e.container("a").id)
                   for r in e.log.records)
    for n in "ab":
        c = e.container(n)
        assert (c.state, c.restarting, c.manually_stopped) == ("stopped", False, False)
    assert e.bring_back("host start") == []
    down[0] = False
    assert len(e.bring_back("host start")) == 2


def test_an_end_and_the_restart_it_wants_are_one_append(e) -> None:
    """No moment when the container is stopped with its restart not yet recorded: the
    exit's record schedules it (one append, one command), and the monitor's ask after it
    finds it pending and appends nothing."""
    e.create("busybox", ["sh"], name="c", config={"restart": "on-failure"})
    e.start("c")
    c = e.container("c")
    e.runtime.finish(c.id, 3)
    n = len(e.log.records)
    ended = e.exited(c.id, 3, pid=c.pid)
    assert (ended.state, ended.restarting, ended.restart_delay) == ("stopped", True, 0.1)
    new = e.log.records[n:]
    assert [r.type for r in new] == ["ContainerExited", "ContainerRestartScheduled"]
    assert new[0].meta == new[1].meta and new[0].meta["command"] == "exit"
    assert new[1].data == {"id": c.id, "delay": 0.1, "count": 1,
                           "reason": "on-failure: exited with code 3"}
    assert e.schedule_restart("c", c.pid) == ended and len(e.log.records) == n + 2
    e.start("c")  # a clean end: on-failure wants nothing, nothing but the end recorded
    n = len(e.log.records)
    _exit(e, "c", 0)
    assert not e.container("c").restarting
    assert [r.type for r in e.log.records[n:]] == ["ContainerExited"]


def test_the_one_append_on_sqlites_log(tmp_path) -> None:
    """The same on the real log: both rows in one transaction (consecutive seqs, one
    command), the read model's row restarting, and a rebuild of it agrees."""
    from adapters.eventstore import replay
    from tests.sessions import engine as session_engine

    e = session_engine(str(tmp_path))
    e.import_image({"bin/sh": "x"}, "busybox")
    e.create("busybox", ["sh"], name="c", config={"restart": "always"})
    e.start("c")
    seq = e.log.last_seq()
    _exit(e, "c", 3)
    rows = list(e.log.read(after=seq))
    assert [(r.seq - seq, r.type) for r in rows] == [
        (1, "ContainerExited"), (2, "ContainerRestartScheduled")]
    assert rows[0].meta["command_id"] == rows[1].meta["command_id"]
    assert e.log.container(e.container("c").id).restarting
    before = replay.read_model_rows(e.log.con)
    replay.rebuild(e.log.con)
    assert replay.read_model_rows(e.log.con) == before


def test_a_stop_between_the_end_and_its_restart_keeps_it_stopped(e) -> None:
    """The monitor records a container's end with the restart its policy wants, then
    waits the back-off: a user's stop then is the stop of a restarting container
    (docker's), not "not running", and nothing is restarted after it."""
    e.create("busybox", ["sh"], name="c", config={"restart": "always"})
    e.start("c")
    pid = _exit(e, "c", 3)
    pending = e.container("c")
    e.stop("c")
    assert e.restart_scheduled("c", pending.version) is None
    assert e.schedule_restart("c", pid) is None
    c = e.container("c")
    assert (c.state, c.restarting, c.manually_stopped) == ("stopped", False, True)
    cancel = [r.data for r in e.log.records if r.type == "ContainerRestartCancelled"]
    assert cancel == [{"id": c.id, "reason": "stopped by the user", "by_user": True}]
    with pytest.raises(IllegalMove):  # stopped by its user now: as any stopped container
        e.stop("c")
    e.create("busybox", ["sh"], name="n")  # no policy: a stop after its end is refused
    e.start("n")
    _exit(e, "n", 3)
    with pytest.raises(IllegalMove):
        e.stop("n")


@pytest.mark.parametrize("move", ["stop", "kill"])
def test_a_run_that_ends_as_its_stop_waits_for_the_guard_is_a_restarting_ones(
        e, monkeypatch, move: str) -> None:
    """The user's stop reads the container running; its run ends, recorded with the
    restart it wants, before the stop holds the container's guard. The stop is then the
    stop of a restarting container, judged on what it reads under the guard: the restart
    cancelled by the user, not "not running" (CI's served pass saw that refusal after a
    restart of an `exit 3` container)."""
    e.create("busybox", ["sh"], name="c", config={"restart": "always"})
    e.start("c")
    guard = e.runtime.ending
    ended = []

    def ends_first(c):
        if not ended:  # once: the exit's own record takes the guard too
            ended.append(e.container("c").pid)
            _exit(e, "c", 3)
            assert e.container("c").restarting
        return guard(c)

    monkeypatch.setattr(e.runtime, "ending", ends_first)
    getattr(e, move)("c")
    c = e.container("c")
    assert (c.state, c.restarting, c.manually_stopped) == ("stopped", False, True)
    verb = {"stop": "stopped", "kill": "killed"}[move]
    assert [(r.type, r.data.get("reason")) for r in e.log.records[-3:]] == [
        ("ContainerExited", ""), ("ContainerRestartScheduled", "always: exited with code 3"),
        ("ContainerRestartCancelled", f"{verb} by the user")]
    assert e.schedule_restart("c", ended[0]) is None


def _refused_not_running(e, name: str) -> None:
    """A stop and a kill of a stopped container with no restart pending: refused by the
    state machine, each recorded as one CommandRejected, the container as it was."""
    before = e.container(name)
    for move in (e.stop, e.kill):
        n = len(e.log.records)
        with pytest.raises(IllegalMove, match="is not running"):
            move(name)
        assert [r.type for r in e.log.records[n:]] == ["CommandRejected"]
    assert e.container(name) == before


def test_a_stop_after_a_restart_cancelled_for_the_shutdown_is_refused(e) -> None:
    """An end while the host shuts down: its restart is cancelled for the host in the
    end's own append. A user's stop after it is no stop of a restarting container: refused
    "not running" (it was recorded "stopped by the user", which would keep an
    unless-stopped container down at the next host start)."""
    down = [False]
    e.shutting_down = lambda: down[0]
    e.create("busybox", ["sh"], name="c", config={"restart": "unless-stopped"})
    e.start("c")
    down[0] = True
    n = len(e.log.records)
    pid = _exit(e, "c", 1)
    assert e.schedule_restart("c", pid) is None  # the monitor's ask: nothing to wait for
    _refused_not_running(e, "c")
    c = e.container("c")
    assert [(r.type, r.data.get("reason"), r.meta["command"]) for r in e.log.records[n:]] \
        == [("ContainerExited", "", "exit"),
            ("ContainerRestartCancelled", "the host is shutting down", "exit"),
            *[("CommandRejected", f"container {c.id[:12]} is not running", name)
              for name in ("stop", "kill")]]
    assert (c.state, c.restarting, c.manually_stopped) == ("stopped", False, False)
    down[0] = False
    assert e.bring_back("host start") == [c.id]  # not the user's stop: it comes back


def test_a_stop_after_a_failed_restart_is_refused(e) -> None:
    """A restart that failed (here its host port taken meanwhile) leaves the container
    stopped for good: a user's stop after it is refused "not running", as for any stopped
    container, not recorded as the stop of a restarting one."""
    e.create("busybox", ["sh"], name="a", config={"restart": "always",
                                                   "port_bindings": ["8080:80"]})
    e.create("busybox", ["sh"], name="b", config={"port_bindings": ["8080:80"]})
    e.start("a")
    pending = e.schedule_restart("a", _exit(e, "a", 1))
    e.start("b")  # takes the port in a's back-off
    with pytest.raises(Conflict, match="port is already allocated"):
        e.restart_scheduled("a", pending.version)
    cancel = [r.data for r in e.log.records if r.type == "ContainerRestartCancelled"]
    assert [(d["reason"].split(":")[0], d["by_user"]) for d in cancel] == [
        ("restart failed", False)]
    _refused_not_running(e, "a")
    assert not e.container("a").manually_stopped
