"""Container output in docker's json-file format: one JSON object per line,
{"log": "...\\n", "stream": "stdout", "time": "...Z"}; a partial line waits for its end."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lean monitor imports this module
    from collections.abc import Iterator


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonLog:
    """Appends lines to `<container dir>/<id>-json.log`."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
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
        if out:
            os.write(self.fd, b"".join(out))

    def _line(self, stream: str, data: bytes) -> bytes:
        text = data.decode("utf-8", "replace")
        return (json.dumps({"log": text, "stream": stream, "time": _now()},
                           separators=(",", ":")) + "\n").encode()

    def close(self) -> None:
        for stream, tail in list(self.partial.items()):
            os.write(self.fd, self._line(stream, tail))
        self.partial.clear()
        os.close(self.fd)


def read(path: str, offset: int = 0) -> Iterator[tuple[int, dict]]:
    """(offset after the line, entry) for each complete line from `offset` on."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        f.seek(offset)
        for line in f:
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            yield offset, json.loads(line)
