"""`build -q` on a terminal draws a bar of its steps from the build's own output."""

from __future__ import annotations

import os
import threading

from adapters.cli.build import StepBar

STEPS = ["Step 1/3 : FROM busybox\n", " ---> 1a2b3c4d5e6f 0.00s\n",
         "Step 2/3 : RUN echo hi\n", " ---> 2b3c4d5e6f70 0.41s\n",
         "Step 3/3 : CMD [\"sh\"]\n", " ---> 3c4d5e6f7081 0.01s\n"]


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def test_a_bar_of_the_steps_on_a_terminal() -> None:
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")
    try:
        bar = StepBar(quiet=False, delay=0, stream=stream)
        for text in STEPS[:4]:
            bar.update(text)
        drawn = _drain(master).decode(errors="replace")
        for text in STEPS[4:]:
            bar.update(text)
        bar.close()
    finally:
        stream.close()
        os.close(master)
    assert "building" in drawn and "2/3" in drawn and "RUN echo hi" in drawn
    assert threading.active_count() == 1  # no refresh thread: build forks


def test_no_bar_when_quiet_or_not_a_terminal(tmp_path) -> None:
    with open(tmp_path / "out", "w") as stream:
        bar = StepBar(quiet=False, delay=0, stream=stream)
        for text in STEPS:
            bar.update(text)
        bar.close()
    assert (tmp_path / "out").read_text() == ""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")
    try:
        bar = StepBar(quiet=True, delay=0, stream=stream)
        for text in STEPS:
            bar.update(text)
        bar.close()
        assert _drain(master) == b""
    finally:
        stream.close()
        os.close(master)
