"""cp: files copied into and out of a container, and the path stat docker's client asks first.

docker cp works on a container in any state but removed (running, paused, stopped), and so
does this. The files are the container's as it sees them: its union view with its volumes,
binds and tmpfs on top. Where and how they are reached is the runtime's (the Runtime port's
path_stat, archive_out and archive_in; on Linux adapters/runtime/files.py); what is decided
here is docker's part: which container, what is recorded, and the errors in docker's words.

What is recorded, and why: a copy in changes a container's files behind its process's back
(ContainerCopiedTo: path, size and sha256 of the tar as received); a copy out takes data out
of the engine, which an audit must show as it shows export (ContainerCopiedFrom). Both are
audit records in the container's stream: its state does not move. A refused copy is one
CommandRejected, as every refused command is. A stat is a query: it records nothing.

Order: the container's lock (Runtime.ending) is held from the first look at its files to
the record of the copy, as docker holds its container lock: no start, stop, rm or
reconcile mounts, unmounts or removes what is being copied meanwhile, and none of them
reads a version the record then moves (Command.append_locked takes one an exec moved).
The record follows the copy (files first, then the log), so a crash between them leaves a
copy the log doesn't show, never a record of one that didn't happen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from core.engine.base import EngineBase
from core.errors import BadInput, NotFound
from core.model import Container
from events import types as ev


class PathNotFound(NotFound):
    """The container has no file at the path asked for (docker answers 404)."""

    def __init__(self, ref: str, path: str) -> None:
        super().__init__(f"Could not find the file {path} in container {ref}")
        self.ref, self.path = ref, path


class _Counted:
    """A stream's bytes counted and hashed as they pass: what the record says was copied."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.size = 0
        self.sha = hashlib.sha256()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()

    def _seen(self, data: Any) -> None:
        self.size += len(data)
        self.sha.update(data)

    # as a source (copy_to): read

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self._seen(data)
        return bytes(data)

    def readable(self) -> bool:
        return True

    # as a sink (copy_from): write

    def write(self, data: Any) -> int:
        view, done = memoryview(data), 0
        while done < len(view):  # a raw file or pipe may take less than it is given
            n = self.stream.write(view[done:])
            done = len(view) if n is None else done + int(n)
        self._seen(view)
        return len(view)

    def flush(self) -> None:
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()


def _checked_path(path: str) -> str:
    if not path:
        raise BadInput("bad parameter: path cannot be empty")
    if "\x00" in path:
        raise BadInput("bad parameter: path has a NUL byte")
    return path


def path_stat(e: EngineBase, ref: str, path: str) -> dict[str, Any]:
    """docker's ContainerPathStat (HEAD /containers/{id}/archive): a query, nothing recorded.
    NotFound for the container or the path (PathNotFound), BadInput for a path that can't be
    resolved."""
    c = e.container(ref)
    _checked_path(path)
    try:
        return e.runtime.path_stat(c, path)
    except PathNotFound:
        raise
    except NotFound:
        raise PathNotFound(ref, path) from None


def copy_from(e: EngineBase, ref: str, path: str, out: BinaryIO, follow_link: bool = False,
              on_stat: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The container's `path` as a tar onto `out` (`follow_link`: a final symlink's target,
    under the link's name: cp -L). `on_stat` gets the path stat before the first byte (an
    HTTP answer puts it in its head; the CLI decides where the files land). Returns the
    stat."""
    with e.command("cp", ref) as cmd:
        c = e.container(ref)
        _checked_path(path)
        sink = _Counted(out)
        with e.runtime.ending(c):
            c = _again(e, c, ref)
            try:
                stat = e.runtime.archive_out(c, path, cast(BinaryIO, sink), follow_link,
                                              on_stat)
            except PathNotFound:
                raise
            except NotFound:
                raise PathNotFound(ref, path) from None
            cmd.append_locked(c, ev.ContainerCopiedFrom(id=c.id, path=path, size=sink.size,
                                                        digest=sink.digest))
        return stat


def copy_to(e: EngineBase, ref: str, path: str, tar: BinaryIO,
            no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
    """Extract `tar` (plain or compressed, as docker accepts) into the container's directory
    `path`. The whole tar is read (and hashed for the record) even when the extraction
    ended before its last byte."""
    with e.command("cp", ref) as cmd:
        c = e.container(ref)
        _checked_path(path)
        source = _Counted(tar)
        with e.runtime.ending(c):
            c = _again(e, c, ref)
            try:
                e.runtime.archive_in(c, path, cast(BinaryIO, source),
                                     no_overwrite_dir_non_dir, copy_uid_gid)
            except PathNotFound:
                raise
            except NotFound:
                raise PathNotFound(ref, path) from None
            cmd.append_locked(c, ev.ContainerCopiedTo(id=c.id, path=path, size=source.size,
                                                      digest=source.digest,
                                                      copy_uid_gid=copy_uid_gid))


def _again(e: EngineBase, c: Container, ref: str) -> Container:
    """The container as the log has it now that its lock is held (its state may have moved
    while we waited: a stop, a start)."""
    now = e.log.container(c.id)
    if now is None:
        raise NotFound(f"no such container: {ref}")
    return now
