"""adapters/cli/served.py's Watch: what makes a fork server leave (its code changed on
disk), on real files; the leaving itself is tests/kernel/test_autostart.py's."""

from __future__ import annotations

import os
from pathlib import Path

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
