"""The Runtime contract (core/ports.py), run against the in-memory and the Linux runtime.

The runtime is called as the engine calls it: a container made by Engine.create (its
read-write layer in the store, its record in the log), started through the port, and known
as running with the pid and start time the start gave (what ContainerStarted records). What
every runtime must do: start gives a live process, attach hands its stream over once, its
output is in its logs; a frozen process holds a survivable signal and SIGKILL still ends it;
stop and SIGKILL give how it ended, and last_exit agrees; ending() is exclusive per
container; exec gives the exit code; abort_start undoes a start; a process the log doesn't
know is an orphan that clean_orphans ends; release and remove leave nothing of it.

The Linux subclass runs busybox in a temporary root and checks afterwards that no mount,
cgroup or process of it is left; a container's init is PID 1 of its namespace and so
ignores signals it has no handler for (SIGHUP, SIGTERM), as the in-memory process survives
SIGHUP: the contract signals with SIGHUP and SIGKILL only.
"""

from __future__ import annotations

import glob
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from core.memory import memory_engine
from core.model import Container
from core.ports import Ended
from tests.conftest import require_root

SLEEP = ["sleep", "60"]


def until(check: Callable[[], Any], timeout: float = 5) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


class RuntimeContract:
    """Subclasses provide `world` (an engine with an image to run, as a class fixture) and
    the hooks below."""

    def printing(self, text: str) -> list[str]:
        """A command that writes `text` and a newline to stdout, then keeps running."""
        raise NotImplementedError

    def frozen(self, runtime: Any, c: Container) -> bool:
        raise NotImplementedError

    def held(self, runtime: Any, c: Container) -> bool:
        """Whether the runtime still holds anything for the container's process (a process
        record; on Linux its cgroup or its mounted view)."""
        raise NotImplementedError

    @pytest.fixture
    def make(self, world: tuple[Any, str]) -> Iterator[Callable[..., Container]]:
        """Create containers (Engine.create); afterwards each is ended and removed."""
        engine, image = world
        made: list[Container] = []
        self.started: list[Container] = []

        def make(cmd: list[str] = SLEEP) -> Container:
            c = engine.log.container(engine.create(image, cmd, config={"network": "none"}))
            made.append(c)
            return c

        yield make
        for running in self.started:
            self.kill(engine.runtime, running)
        for c in made:
            engine.runtime.detach(c.id)
            engine.rm(c.id, force=True)

    def runtime(self, world: tuple[Any, str]) -> Any:
        return world[0].runtime

    def start(self, world: tuple[Any, str], c: Container, confirm: bool = True,
              keep: bool = False) -> Container:
        """Start through the port, confirm (the start is recorded) and let go of its stream
        as `lamina start` does (`keep`: hold it for attach); the container as
        ContainerStarted would record it."""
        engine, _ = world
        runtime = engine.runtime
        started = runtime.start(c, engine.log.image(c.image))
        if confirm:
            runtime.confirm_start(c)
            if not keep:
                runtime.detach(c.id)
        running = replace(c, state="running", pid=started.pid, cgroup=started.cgroup,
                          start_time=started.start_time)
        self.started.append(running)
        return running

    # --- start, attach, logs ------------------------------------------------------------

    def test_start_gives_a_live_process_that_only_its_own_record_names(self, world, make):
        runtime = self.runtime(world)
        c = make()
        running = self.start(world, c)
        try:
            assert running.pid > 0 and running.cgroup == f"lamina/{c.id}"
            assert runtime.alive(running)
            assert not runtime.alive(replace(running, pid=os.getpid()))
            assert not runtime.alive(c)  # as recorded before the start: no pid
        finally:
            self.kill(runtime, running)

    def test_attach_hands_the_stream_over_once(self, world, make):
        runtime = self.runtime(world)
        c, other = make(), make()
        assert runtime.attach(c.id) is None  # not started here
        running = self.start(world, c, keep=True)
        other_running = self.start(world, other, keep=True)
        try:
            stream = runtime.attach(c.id)
            assert stream is not None
            assert runtime.attach(c.id) is None
            stream.close()
            runtime.detach(other.id)  # let go without attaching
            assert runtime.attach(other.id) is None
            assert runtime.alive(running) and runtime.alive(other_running)
        finally:
            self.kill(runtime, running)
            self.kill(runtime, other_running)

    def test_output_is_in_the_logs_from_any_offset(self, world, make):
        runtime = self.runtime(world)
        c, quiet = make(self.printing("hello")), make()
        running = self.start(world, c)
        try:
            assert list(runtime.logs(quiet.id)) == [] and runtime.log_end(quiet.id) == 0
            entries = until(lambda: list(runtime.logs(c.id)))
            assert [(e["stream"], e["log"]) for _, e in entries] == [("stdout", "hello\n")]
            end = entries[-1][0]
            assert end > 0 and runtime.log_end(c.id) == end
            assert list(runtime.logs(c.id, end)) == []
        finally:
            self.kill(runtime, running)
        runtime.release(running)
        runtime.remove(running)
        assert list(runtime.logs(c.id)) == [] and runtime.log_end(c.id) == 0

    # --- signals, freezer, stop ---------------------------------------------------------

    def test_a_frozen_process_holds_signals_and_sigkill_still_ends_it(self, world, make):
        runtime = self.runtime(world)
        running = self.start(world, make())
        runtime.freeze(running)
        assert self.frozen(runtime, running)
        assert runtime.signal(running, signal.SIGHUP) is None
        runtime.thaw(running)
        assert not self.frozen(runtime, running)
        assert runtime.signal(running, signal.SIGHUP) is None  # survived
        assert runtime.alive(running)
        runtime.freeze(running)
        ended = runtime.signal(running, signal.SIGKILL)
        assert ended == Ended(signal=signal.SIGKILL, exit_code=137)
        assert not runtime.alive(running)
        assert runtime.last_exit(running) == 137
        assert not runtime.oom_killed(running)

    def test_stop_ends_the_process_and_says_how(self, world, make):
        runtime = self.runtime(world)
        running = self.start(world, make())
        ended = runtime.stop(running, 0.2)
        assert isinstance(ended, Ended) and ended.exit_code == 128 + ended.signal
        assert ended.signal in (signal.SIGTERM, signal.SIGKILL)
        assert not runtime.alive(running)
        assert runtime.last_exit(running) == ended.exit_code
        assert until(lambda: not runtime.watched(running, settle=0.5))  # its monitor is done

    def test_release_and_remove_leave_nothing_of_an_ended_process(self, world, make):
        runtime = self.runtime(world)
        running = self.start(world, make())
        assert self.held(runtime, running)
        self.kill(runtime, running)
        runtime.release(running)
        assert not self.held(runtime, running)
        runtime.remove(running)
        assert runtime.last_exit(running) is None
        assert not runtime.watched(running, settle=2)

    def test_abort_start_undoes_the_start(self, world, make):
        runtime = self.runtime(world)
        c = make()
        running = self.start(world, c, confirm=False)
        runtime.abort_start(running)
        assert until(lambda: not runtime.alive(running))
        assert not self.held(runtime, running)
        assert runtime.attach(c.id) is None

    # --- ending, exec, orphans ----------------------------------------------------------

    def test_ending_is_exclusive_per_container(self, world, make):
        runtime = self.runtime(world)
        c, other = make(), make()
        got, other_got = threading.Event(), threading.Event()

        def second(target: Container, flag: threading.Event) -> None:
            with runtime.ending(target):
                flag.set()

        with runtime.ending(c):
            waiting = threading.Thread(target=second, args=(c, got))
            free = threading.Thread(target=second, args=(other, other_got))
            waiting.start()
            free.start()
            assert other_got.wait(5), "another container's guard had to wait"
            assert not got.wait(0.3), "two held the same container's guard at once"
        assert got.wait(5), "the guard was not handed on once let go"
        waiting.join(5)
        free.join(5)

    def test_exec_gives_the_exit_code(self, world, make):
        runtime = self.runtime(world)
        running = self.start(world, make())
        try:
            assert runtime.exec(running, ["true"], "", {}) == 0
            assert runtime.exec(running, ["false"], "", {}) == 1
            assert runtime.alive(running)
        finally:
            self.kill(runtime, running)

    def test_a_process_the_log_does_not_know_is_an_orphan_until_cleaned(self, world, make):
        runtime = self.runtime(world)
        running = self.start(world, make())
        short = running.id[:12]
        try:
            assert not [line for line in runtime.orphans({running.id: running})
                        if short in line]
            assert [line for line in runtime.orphans({}) if short in line]
            runtime.clean_orphans({})
            assert until(lambda: not runtime.alive(running))

            def cleaned() -> bool:
                # a repair is skipped while someone holds the container's lock (its monitor,
                # handling the end): cleaning again converges, as reconcile's next pass does
                runtime.clean_orphans({})
                return not [line for line in runtime.orphans({}) if short in line]

            assert until(cleaned)
        finally:
            self.kill(runtime, running)

    # --- helpers ------------------------------------------------------------------------

    def kill(self, runtime: Any, running: Container) -> None:
        if runtime.alive(running):
            runtime.signal(running, signal.SIGKILL)
        runtime.release(running)


class TestMemoryRuntime(RuntimeContract):
    @pytest.fixture(scope="class")
    @classmethod
    def world(cls) -> tuple[Any, str]:
        engine = memory_engine(user="contract")
        engine.import_image({"bin/sh": "ash"}, "busybox")
        return engine, "busybox"

    def printing(self, text: str) -> list[str]:
        return ["echo", text]  # the memory runtime's echo: prints, then runs on

    def frozen(self, runtime: Any, c: Container) -> bool:
        return runtime.procs[c.id].frozen

    def held(self, runtime: Any, c: Container) -> bool:
        return c.id in runtime.procs


@pytest.mark.kernel
class TestLinuxRuntime(RuntimeContract):
    @pytest.fixture(scope="class")
    @classmethod
    def world(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
        require_root()
        from adapters.bootstrap import build_engine
        from tests.kernel.runtime_env import busybox_tar, leftovers

        base = tmp_path_factory.mktemp("runtime-contract")
        engine = build_engine(str(base / "root"))
        engine.import_image(str(busybox_tar(base)), "busybox")
        yield engine, "busybox"
        left = [c.id for c in engine.log.containers()]
        made = [r.data["id"] for r in engine.log.read() if r.type == "ContainerCreated"]
        engine.log.close()
        assert left == [], "a test left a container in the log"
        assert leftovers(base / "root", made) == []

    def printing(self, text: str) -> list[str]:
        return ["sh", "-c", f"echo {text}; exec sleep 60"]

    def frozen(self, runtime: Any, c: Container) -> bool:
        from adapters.kernel.cgroups import Cgroup

        return Cgroup.open(c.id).is_frozen()

    def held(self, runtime: Any, c: Container) -> bool:
        from adapters.storage.overlay import is_mounted

        cgroups = glob.glob(f"/sys/fs/cgroup/*/lamina/{c.id}") + \
            glob.glob(f"/sys/fs/cgroup/unified/lamina/{c.id}")
        return bool(cgroups) or is_mounted(runtime.layers.merged_dir(c.rw_layer))

