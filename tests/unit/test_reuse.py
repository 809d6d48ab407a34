"""adapters/fastpath/reuse.py on a real process's state: a child that ran a command may
serve another only if nothing a command could leave behind is left (descriptors, threads,
children, signal handling, limits), and what each command sets for itself is put back.

Each test runs in a forked child, single-threaded and the leader of a session of its own, as
a fork server's child is once it ran a command (the test runner's own process may have
threads of its own)."""

from __future__ import annotations

import fcntl
import functools
import os
import resource
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.fastpath import reuse
from adapters.kernel import proc


def in_child(test: Callable[..., None]) -> Callable[..., None]:
    """Run `test` in a forked child; its failure (a traceback) fails the test here."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            try:
                os.setsid()
                test(*args, **kwargs)
            except BaseException:  # noqa: BLE001 - every failure goes to the parent
                os.write(w, traceback.format_exc().encode())
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            said = f.read().decode()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            pytest.fail(said or f"the child ended with status {status}")

    return run


@in_child
def test_nothing_changed_is_fit() -> None:
    assert reuse.changed(reuse.baseline(-1), 1) is None


@in_child
def test_a_command_count_is_bounded() -> None:
    assert reuse.changed(reuse.baseline(-1), reuse.MAX_COMMANDS) == \
        f"served {reuse.MAX_COMMANDS} commands"


@in_child
def test_a_descriptor_left_open_is_seen() -> None:
    base = reuse.baseline(-1)
    r, w = os.pipe()
    assert reuse.changed(base, 1) == "its descriptors changed"
    os.close(r)
    os.close(w)
    assert reuse.changed(base, 1) is None


@in_child
def test_the_same_file_on_another_number_is_the_same(tmp_path: Path) -> None:
    """The root's log is prepared again after each command; its descriptors may come back
    on other numbers."""
    path = tmp_path / "log"
    path.write_text("x")
    first = os.open(path, os.O_RDONLY)
    base = reuse.baseline(-1)
    os.close(first)
    opened = os.open(path, os.O_RDONLY)
    again = fcntl.fcntl(opened, fcntl.F_DUPFD, 200)  # not the number it had
    os.close(opened)
    assert again != first and reuse.changed(base, 1) is None


@in_child
def test_the_listener_is_left_out() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    base = reuse.baseline(fd)
    os.close(fd)
    assert reuse.changed(base, 1) is None


@in_child
def test_a_thread_left_running_is_seen() -> None:
    base = reuse.baseline(-1)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    assert reuse.changed(base, 1) == "it has a thread"
    stop.set()
    thread.join()


@in_child
def test_a_child_process_running_or_unreaped_is_seen() -> None:
    base = reuse.baseline(-1)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert reuse.changed(base, 1) == "it has a child process"  # running or a zombie
    os.waitpid(pid, 0)
    assert reuse.changed(base, 1) is None


@in_child
def test_a_handler_or_mask_a_command_set_is_seen() -> None:
    base = reuse.baseline(-1)
    old = signal.signal(signal.SIGWINCH, lambda *_: None)
    assert reuse.changed(base, 1) == "its signal handling changed"
    signal.signal(signal.SIGWINCH, old)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    assert reuse.changed(base, 1) == "its signal handling changed"
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
    assert reuse.changed(base, 1) is None


@in_child
def test_an_alarm_left_set_is_seen() -> None:
    base = reuse.baseline(-1)
    signal.setitimer(signal.ITIMER_REAL, 60)
    assert reuse.changed(base, 1) == "its signal handling changed"
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert reuse.changed(base, 1) is None


@in_child
def test_a_nice_value_a_command_set_is_seen() -> None:
    base = reuse.baseline(-1)
    os.nice(1)  # raising it needs no privilege
    assert reuse.changed(base, 1) == "its scheduling or name changed"


@in_child
def test_a_name_a_command_gave_its_process_is_seen() -> None:
    base = reuse.baseline(-1)
    with open("/proc/self/comm", "w") as f:
        f.write("renamed")
    assert reuse.changed(base, 1) == "its scheduling or name changed"


@in_child
def test_a_process_group_of_its_own_is_kept() -> None:
    base = reuse.baseline(-1)
    pid = os.fork()
    if pid == 0:  # a child that is no session leader (as a spare before its first command)
        os._exit(0 if reuse.changed(base, 1) == "its session or process group changed" else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@in_child
def test_a_limit_taken_from_a_client_is_seen() -> None:
    base = reuse.baseline(-1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))  # lowering needs no privilege
    assert reuse.changed(base, 1) == "its resource limits changed"


@in_child
def test_restore_puts_back_environment_directory_umask_and_the_commands_handlers(
        tmp_path: Path) -> None:
    os.chdir(tmp_path)
    base = reuse.baseline(-1)
    os.environ["REUSE_TEST"] = "a client's"
    os.chdir("/")
    os.umask(0o077)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert reuse.changed(base, 1) == "its signal handling changed"
    reuse.restore(base)
    assert "REUSE_TEST" not in os.environ and os.getcwd() == str(tmp_path)
    assert os.umask(0o022) == base.umask
    assert reuse.changed(base, 1) is None


@in_child
def test_take_environment_leaves_exactly_the_given_one_for_children_too() -> None:
    os.environ.update({"KEEP": "same", "CHANGE": "old", "DROP": "gone"})
    wanted = {**{k: v for k, v in os.environ.items() if k != "DROP"},
              "CHANGE": "new", "ADD": "added"}
    proc.take_environment(wanted)
    assert dict(os.environ) == wanted
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # what an exec'd child inherits is the C environment, not os.environ
        os.dup2(w, 1)
        os.execv("/usr/bin/env", ["env", "-0"])
    os.close(w)
    with os.fdopen(r, "rb") as f:
        inherited = dict(item.decode().partition("=")[::2]
                         for item in f.read().split(b"\0") if item)
    os.waitpid(pid, 0)
    # (only os.environ's keys are ours to set: a library of the test runner's, readline,
    # puts LINES and COLUMNS in the C environment behind its back)
    assert {key: inherited.get(key) for key in wanted} == wanted
    assert "DROP" not in inherited
