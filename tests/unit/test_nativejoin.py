"""adapters/runtime/nativejoin.py: the joiner's sealed copy and its plan, on real files."""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path

import pytest

from adapters.runtime import nativejoin, users
from core.process import ProcessSpec


@pytest.fixture
def program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    body = b"\x7fELF a stand-in for lamina-join" * 100
    (tmp_path / "lamina-join").write_bytes(body)
    (tmp_path / "lamina-join").chmod(0o755)
    monkeypatch.setattr(nativejoin, "PROGRAM", str(tmp_path / "lamina-join"))
    monkeypatch.setattr(nativejoin, "_sealed", None)
    monkeypatch.delenv("LAMINA_JOINER", raising=False)
    return body


def _contents(fd: int) -> bytes:
    return os.pread(fd, 1 << 20, 0)


def test_the_copy_is_sealed_made_once_and_closed_on_exec(program: bytes) -> None:
    fd = nativejoin.program()
    assert fd is not None and _contents(fd) == program
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
    with pytest.raises(PermissionError):
        os.pwrite(fd, b"x", 0)
    assert not os.get_inheritable(fd)
    assert nativejoin.program() == fd  # once per process
    os.close(fd)


def test_a_copy_whose_number_was_closed_and_reused_is_made_again(program: bytes) -> None:
    """exec -d's child closes every descriptor but its pipe: the number it had may then
    be another file's, which must never be started as the joiner."""
    fd = nativejoin.sealed()
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, fd)  # the copy's number, now another file's
    again = nativejoin.sealed()
    assert _contents(again) == program
    assert os.fstat(again).st_ino != os.fstat(null).st_ino
    for n in {null, fd, again}:
        os.close(n)


def test_turned_off_or_not_built_there_is_none(program: bytes,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMINA_JOINER", "python")
    assert nativejoin.program() is None
    monkeypatch.delenv("LAMINA_JOINER")
    monkeypatch.setattr(nativejoin, "PROGRAM", "/nonexistent/lamina-join")
    assert nativejoin.program() is None


def test_the_plan_is_joiners_fields_in_order() -> None:
    proc = ProcessSpec(argv=("sh", "-c", "echo hi"), env=(), cwd="/w", user="",
                       tty=True, rlimits=((7, 100, -1),), console_size=(33, 99))
    ident = users.Identity(uid=5, gid=6, groups=(6, 9), home="/h")
    plan = nativejoin.plan(proc, ident, {"HOME": "/h", "PATH": "/a:/b"}, flags=0x20000,
                           remapped=True, cgroups=3, done=False, seccomp=b"12345678")
    fields = plan[:-8].split(b"\0")
    assert plan.endswith(b"\0" + b"12345678")
    # an exec's terminal (2: made by E, at 33x99); a container's init's is made and bound
    # on /dev/console (3); none without a tty
    init_plan = nativejoin.plan(proc, ident, {}, flags=0, remapped=False, cgroups=0,
                                done=False, seccomp=None, terminal=nativejoin.TTY_BOUND)
    assert init_plan.split(b"\0")[5:8] == [b"3", b"33", b"99"]
    plain = dataclasses.replace(proc, tty=False)
    no_tty = nativejoin.plan(plain, ident, {}, flags=0, remapped=False, cgroups=0, done=False,
                             seccomp=None, terminal=nativejoin.TTY_BOUND)
    assert no_tty.split(b"\0")[5:8] == [b"0", b"0", b"0"]
    assert fields[:-1] == [
        b"lamina-join 2", b"131072", b"1", b"3", b"0", b"2", b"33", b"99", b"5", b"6", b"2",
        b"6", b"9",
        str(nativejoin.security.caps_mask(proc.security.caps)).encode(),
        str(int(proc.security.no_new_privs)).encode(), b"1", b"7",
        b"100", b"-1", b"/w", b"3", b"sh", b"-c", b"echo hi", b"2", b"HOME=/h",
        b"PATH=/a:/b", b"/a:/b", b"8"]
    with pytest.raises(nativejoin.Unstartable, match="null byte"):  # exec's 127, as E's
        nativejoin.plan(ProcessSpec(argv=("a\0b",), env=()), ident, {}, flags=0, remapped=False,
                        cgroups=0, done=False, seccomp=None)
