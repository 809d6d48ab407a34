"""adapters/cli/served.py's Watch: what makes a fork server leave (its code changed on
disk), on real files; the leaving itself is tests/kernel/test_autostart.py's."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.cli import served
from adapters.runtime import nativejoin


def test_a_rebuilt_native_program_is_a_change_of_code(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The server starts every init and exec from its one sealed copy of lamina-join:
    `make joiner` after it started must make it leave, as a changed module does."""
    program = tmp_path / "lamina-join"
    program.write_bytes(b"\x7fELF one build")
    monkeypatch.setattr(nativejoin, "PROGRAM", str(program))
    before = served.Watch._code()
    assert str(program) in before
    st = program.stat()
    os.utime(program, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after = served.Watch._code()
    assert after != before
    assert {p for p in after if after[p] != before.get(p)} == {str(program)}
    program.unlink()  # not built: stamped as missing, still a change
    assert served.Watch._code()[str(program)] == (0, 0, 0)


def test_a_module_written_during_the_warm_up_is_a_change_of_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first command runs in its client while the server it started warms up, and
    returns before the server's first look: a module the warm-up imported and an upgrade
    rewrote meanwhile must make it leave, though no earlier look stamped it."""
    monkeypatch.setattr(served, "SOURCES", (*served.SOURCES, str(tmp_path)))
    sock = tmp_path / "cli.sock"
    sock.write_bytes(b"")
    watch = served.Watch(SimpleNamespace(path=str(sock), bound=served.file_id(str(sock))))
    assert watch() is None
    old, new = tmp_path / "old.py", tmp_path / "new.py"
    for module, mtime in ((old, watch.since - 1_000_000_000), (new, watch.since + 1000)):
        module.write_text("")
        os.utime(module, ns=(mtime, mtime))
        monkeypatch.setitem(sys.modules, f"lamina_watch_{module.stem}",
                            SimpleNamespace(__file__=str(module)))
    assert watch() == f"lamina's code changed on disk ({new})"
    del sys.modules["lamina_watch_new"]
    assert watch() is None  # one written before the warm-up: stamped now, unchanged
    os.utime(old, ns=(watch.since, watch.since))
    assert watch() == f"lamina's code changed on disk ({old})"
