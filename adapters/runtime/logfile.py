"""Container output in docker's json-file format: one JSON object per line,
{"log": "...\\n", "stream": "stdout", "time": "...Z"}; a partial line waits for its end.

With `--log-opt max-size` the log rotates as docker's json-file driver rotates it: before a
line is written to a file that has reached max-size, `<id>-json.log.N-1` is dropped, each
`.i` becomes `.i+1`, the file becomes `.1` (with max-file 1 it is dropped) and a new one is
begun. Readers see one stream across the files, oldest first: a position in it is the bytes
written before it, rotated files included, so a follower's position survives a rotation.
`log.rotated` beside the log holds the bytes rotated out of `<id>-json.log` so far; the
writer rotates, and readers open the files, under a flock on it, so they never see a
rotation half done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # the lean monitor imports this module
    from collections.abc import Iterator


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rotated_path(path: str) -> str:
    """The count of bytes rotated out of the log at `path`."""
    return os.path.join(os.path.dirname(path), "log.rotated")


class JsonLog:
    """Appends lines to `<container dir>/<id>-json.log`, rotated at `max_size` bytes
    (-1: never) into `max_file - 1` older files."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1) -> None:
        self.path, self.max_size, self.max_file = path, max_size, max(1, max_file)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.meta = -1
        if max_size > 0:
            self.meta = os.open(rotated_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        data = self.partial.pop(stream, b"") + data
        lines = data.split(b"\n")
        tail = lines.pop()
        out = [self._line(stream, line + b"\n") for line in lines]
        if len(tail) >= 16384:
            out.append(self._line(stream, tail))
        elif tail:
            self.partial[stream] = tail
        self._put(out)

    def _put(self, entries: list[bytes]) -> None:
        if not entries:
            return
        if self.max_size <= 0:
            self.size += os.write(self.fd, b"".join(entries))
            return
        for entry in entries:  # docker's order: rotate first if the file is full
            if self.size >= self.max_size:
                self._rotate()
            self.size += os.write(self.fd, entry)

    def _rotate(self) -> None:
        fcntl.flock(self.meta, fcntl.LOCK_EX)
        try:
            total = _read_count(self.meta) + self.size
            if self.max_file >= 2:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}.{self.max_file - 1}")
                for i in range(self.max_file - 1, 1, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                os.rename(self.path, f"{self.path}.1")
            else:
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                              | os.O_CLOEXEC, 0o640)
            self.size = 0
            text = str(total).encode()
            os.pwrite(self.meta, text, 0)
            os.ftruncate(self.meta, len(text))
        finally:
            fcntl.flock(self.meta, fcntl.LOCK_UN)

    def _line(self, stream: str, data: bytes) -> bytes:
        text = data.decode("utf-8", "replace")
        return (json.dumps({"log": text, "stream": stream, "time": _now()},
                           separators=(",", ":")) + "\n").encode()

    def close(self) -> None:
        self._put([self._line(stream, tail) for stream, tail in self.partial.items()])
        self.partial.clear()
        os.close(self.fd)
        if self.meta >= 0:
            os.close(self.meta)


class NoLog:
    """--log-driver none: the output goes to an attached client only, as docker's."""

    def write(self, stream: str, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _read_count(fd: int) -> int:
    text = os.pread(fd, 32, 0).strip()
    return int(text) if text.isdigit() else 0


def _open_files(path: str) -> list[tuple[int, IO[bytes]]]:
    """Each file of the log, oldest first, opened, with the position its first byte has in
    the whole stream; opened under the rotation lock, so no rotation falls in between."""
    try:
        meta = os.open(rotated_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        meta = -1
    current: IO[bytes] | None = None
    rotated: list[IO[bytes]] = []
    try:
        if meta >= 0:
            fcntl.flock(meta, fcntl.LOCK_SH)
        start = _read_count(meta) if meta >= 0 else 0
        with contextlib.suppress(FileNotFoundError):
            current = open(path, "rb")  # noqa: SIM115 - closed by the caller
        while True:
            try:
                rotated.append(open(f"{path}.{len(rotated) + 1}", "rb"))  # noqa: SIM115
            except FileNotFoundError:
                break
    except BaseException:
        for f in [*rotated, *([current] if current else [])]:
            f.close()
        raise
    finally:
        if meta >= 0:
            os.close(meta)
    out = [(start, current)] if current is not None else []
    for f in rotated:  # each ends where the newer one starts
        start -= os.fstat(f.fileno()).st_size
        out.append((start, f))
    out.reverse()
    return out


def read(path: str, offset: int = 0) -> Iterator[tuple[int, dict]]:
    """(position after the line, entry) for each complete line from position `offset` on,
    across the rotated files, oldest first (from the oldest kept if `offset` was rotated
    away)."""
    files = _open_files(path)
    try:
        for start, f in files:
            skip = max(0, offset - start)
            if skip and skip >= os.fstat(f.fileno()).st_size:
                continue
            f.seek(skip)
            position = start + skip
            for line in f:
                if not line.endswith(b"\n"):
                    break
                position += len(line)
                yield position, json.loads(line)
    finally:
        for _, f in files:
            f.close()


def end(path: str) -> int:
    """The position the next line will start at."""
    files = _open_files(path)
    try:
        if not files:
            return 0
        start, f = files[-1]
        return start + os.fstat(f.fileno()).st_size
    finally:
        for _, f in files:
            f.close()
