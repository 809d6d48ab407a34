"""Progress bars for long commands (save, load, export, import, commit), without touching them.

A bar is drawn only when it helps: stderr is a terminal, `--quiet` was not given, and the
work has already taken over a second. Otherwise this is a no-op that imports nothing (rich
costs ~40 ms to import; a quick command never pays it).

Why not hooks inside the storage code: the amount of work done is what the process has read
or written, and the kernel already counts that (/proc/self/io: rchar, wchar). A watcher
thread reads the counter, so save/load/export/import need no callback plumbing, and the
bar measures exactly the bytes moved. Work done by a child process (commit's `cp -a`) isn't
in those counters: it gets a spinner with the elapsed time.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

DELAY = 1.0  # seconds of work before a bar appears ($LAMINA_PROGRESS_DELAY: for tests)


def io_counter(name: str) -> int:
    """rchar or wchar of this process: bytes read or written through syscalls so far."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == name:
                    return int(value)
    except OSError:
        pass
    return 0


def wanted(quiet: bool, stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stderr
    return not quiet and not os.environ.get("LAMINA_QUIET") and stream.isatty()


@contextmanager
def progress(description: str, *, counter: str | None = None, total: int | None = None,
             quiet: bool = False, stream: IO[str] | None = None,
             delay: float | None = None) -> Iterator[None]:
    """Show a bar for the work inside the block if it takes over `delay` seconds.

    counter: "rchar" (reading: load, import) or "wchar" (writing: save, export); None for a
    spinner. total: the bytes expected (a file's size), when known.
    """
    if not wanted(quiet, stream):
        yield
        return
    if delay is None:
        delay = float(os.environ.get("LAMINA_PROGRESS_DELAY") or DELAY)
    done = threading.Event()
    start = io_counter(counter) if counter else 0
    watcher = threading.Thread(target=_watch, daemon=True,
                               args=(done, description, counter, start, total,
                                     stream or sys.stderr, delay))
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _width(stream: IO[str]) -> int | None:
    """The terminal's width from the stream itself (rich asks stdin/stdout/stderr first)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (OSError, ValueError, AttributeError):
        return None


def _watch(done: threading.Event, description: str, counter: str | None, start: int,
           total: int | None, stream: IO[str], delay: float) -> None:
    if done.wait(delay):
        return  # quick work: nothing drawn, rich never imported
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if counter:
        columns += [BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    columns.append(TimeElapsedColumn())
    bar = Progress(*columns, console=Console(file=stream, width=_width(stream)), transient=True)
    with bar:
        task = bar.add_task(description, total=total)
        while not done.wait(0.1):
            if counter:
                moved = io_counter(counter) - start
                bar.update(task, completed=min(moved, total) if total else moved)
        if total:
            bar.update(task, completed=total)
