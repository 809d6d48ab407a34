"""The Runtime port in memory: a process is a record with `alive` and `frozen` flags.

Enough to check that paused means frozen and stopped means no process. A fake process
survives the signals a process with default handlers survives (SURVIVABLE) and ends on any
other, with 128 + the signal as its exit code; one whose command is `echo WORDS` writes
WORDS to its log when it starts, then runs on (so the logs have something to show).
`ending` is a real lock per container: a second holder waits, as on the Linux flock.
A container's files (cp, the archive endpoints) are its read-write layer's in the memory
layer store given as `layers` (memory_engine's), else a dict of its own: real tars of
regular files, enough for the engine's part of cp."""

from __future__ import annotations

import io
import posixpath
import signal as _signal
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from core.errors import BadInput, NotFound
from core.model import Container, Image
from core.ports import Ended, LogEntry, Started
from core.process import command_line


@dataclass
class FakeProcess:
    pid: int
    alive: bool = True
    frozen: bool = False
    pending: list[int] = field(default_factory=list)
    exit_code: int | None = None
    limits: dict[str, Any] = field(default_factory=dict)  # what `update` wrote (limit)


@dataclass
class MemoryAttachment:
    """A started container's stdio as handed to whoever attaches (Attachment)."""

    container_id: str
    closed: bool = False

    def close(self) -> None:
        self.closed = True


# Signals a fake process survives (everything else ends it, as with a default handler).
SURVIVABLE = {_signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH,
              _signal.SIGCHLD, _signal.SIGCONT}


# Who holds MemoryRuntime.ending: (id of the runtime, container id) -> thread; one condition
# for all runtimes (a holder can't be collected, so an id is not reused while it holds).
_GUARD = threading.Condition()
_HELD: dict[tuple[int, str], int] = {}


@dataclass
class MemoryRuntime:
    """Processes as records: enough to check that paused means frozen and stopped means none.

    `clients`: the stdio of containers started here and not yet attached or let go;
    `output`: each container's log lines. `ending` is a lock per container, as the Linux
    runtime's flock is: a second holder waits (one thread holding it twice is refused, since
    it would wait forever). Who holds what is kept outside the runtime (_HELD), so that
    copies, which the model checker makes by the thousand, share no lock and pay for none."""

    procs: dict[str, FakeProcess] = field(default_factory=dict)
    next_pid: int = 100
    clients: dict[str, MemoryAttachment] = field(default_factory=dict)
    output: dict[str, list[LogEntry]] = field(default_factory=dict)
    layers: Any = None  # a MemoryLayerStore: a container's files are its rw layer's there
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # else here, by rw layer
    # (container, network) joined: each endpoint of a run, made at its start or connect,
    # gone at its end (release) as the Linux runtime's veths are
    links: set[tuple[str, str]] = field(default_factory=set)

    def start(self, container: Container, image: Image) -> Started:
        argv = command_line(image.config.get("config") or {}, container.cmd,
                            container.config.get("entrypoint"))
        self.next_pid += 1
        self.procs[container.id] = FakeProcess(pid=self.next_pid)
        self.clients[container.id] = MemoryAttachment(container.id)
        self.links |= {(container.id, ep["id"]) for ep in container.endpoints.values()}
        if argv[0] == "echo":
            self._write(container.id, "stdout", " ".join(argv[1:]) + "\n")
        from core import cgroupparent

        where = f"{cgroupparent.of(container.config)}/{container.id}".lstrip("/")
        return Started(pid=self.next_pid, cgroup=where)

    def _write(self, container_id: str, stream: str, text: str) -> None:
        lines = self.output.setdefault(container_id, [])
        lines.append(LogEntry(log=text, stream=stream, time=f"t{len(lines) + 1}"))

    def _end(self, proc: FakeProcess, sig: int) -> Ended:
        proc.alive, proc.frozen, proc.exit_code = False, False, 128 + sig
        return Ended(signal=sig, exit_code=128 + sig)

    def signal(self, container: Container, sig: int) -> Ended | None:
        proc = self.procs[container.id]
        if not proc.alive:
            return Ended(signal=0, exit_code=proc.exit_code or 0)
        if sig in SURVIVABLE:
            if proc.frozen:
                proc.pending.append(sig)
            return None
        return self._end(proc, sig)  # SIGKILL reaches even a frozen process, as docker does

    def stop(self, container: Container, timeout: float | None,
             sig: int = _signal.SIGTERM) -> Ended:
        proc = self.procs.get(container.id)
        if proc is None or not proc.alive:
            return Ended(signal=0, exit_code=proc.exit_code or 0 if proc else 0)
        return self._end(proc, sig)

    def freeze(self, container: Container) -> None:
        self.procs[container.id].frozen = True

    def thaw(self, container: Container) -> None:
        proc = self.procs[container.id]
        proc.frozen = False
        proc.pending.clear()  # pending survivable signals are delivered, and survived

    def limit(self, container: Container, limits: Mapping[str, Any]) -> None:
        proc = self.procs[container.id]
        proc.limits = {**proc.limits, **limits}

    def confirm_start(self, container: Container) -> None:
        pass

    def abort_start(self, container: Container) -> None:
        self.procs.pop(container.id, None)
        self.clients.pop(container.id, None)
        self._unlink(container.id)

    def _unlink(self, container_id: str) -> None:
        """A run's end unwires it (the Linux runtime's release): its links go."""
        self.links = {link for link in self.links if link[0] != container_id}

    def attach(self, container_id: str) -> MemoryAttachment | None:
        return self.clients.pop(container_id, None)

    def detach(self, container_id: str) -> None:
        self.clients.pop(container_id, None)

    @contextmanager
    def ending(self, container: Container) -> Iterator[None]:
        key, me = (id(self), container.id), threading.get_ident()
        with _GUARD:
            if _HELD.get(key) == me:
                raise RuntimeError(f"ending({container.id[:12]}) taken twice by one thread: "
                                   "it would wait for itself forever")
            while key in _HELD:
                _GUARD.wait()
            _HELD[key] = me
        try:
            yield
        finally:
            with _GUARD:
                del _HELD[key]
                _GUARD.notify_all()

    def exec(self, container: Container, argv: Sequence[str], user: str,
             options: Mapping[str, Any] | None = None) -> int:
        if argv[0] == "false":
            return 1
        return 0

    def ahead_of_exec(self) -> AbstractContextManager[None]:
        return nullcontext()

    def release(self, container: Container) -> None:
        proc = self.procs.get(container.id)
        if proc is not None and not proc.alive:
            del self.procs[container.id]
            self._unlink(container.id)

    def connect(self, container: Container, endpoint: Mapping[str, Any]) -> None:
        if container.id not in self.procs or not self.procs[container.id].alive:
            raise BadInput(f"container {container.id[:12]} has no process to connect")
        self.links.add((container.id, endpoint["id"]))

    def disconnect(self, container: Container, endpoint: Mapping[str, Any]) -> None:
        self.links.discard((container.id, endpoint["id"]))

    def remove(self, container: Container) -> None:
        self._unlink(container.id)
        self.procs.pop(container.id, None)
        self.clients.pop(container.id, None)
        self.output.pop(container.id, None)

    def alive(self, container: Container) -> bool:
        proc = self.procs.get(container.id)
        return proc is not None and proc.alive and proc.pid == container.pid

    def last_exit(self, container: Container) -> int | None:
        proc = self.procs.get(container.id)
        return proc.exit_code if proc is not None else None

    def oom_killed(self, container: Container) -> bool:
        return False  # no memory limits here

    def watched(self, container: Container, settle: float = 0) -> bool:
        return False  # no monitors here: an ended process is recorded by whoever ends it

    def logs(self, container_id: str, offset: int = 0) -> Iterator[tuple[int, LogEntry]]:
        lines = self.output.get(container_id, [])
        for n in range(offset, len(lines)):
            yield n + 1, lines[n]

    def log_end(self, container_id: str) -> int:
        return len(self.output.get(container_id, []))

    def orphans(self, known: Mapping[str, Container]) -> list[str]:
        return [f"process of unknown container {cid[:12]}" for cid in self.procs
                if cid not in known]

    def clean_orphans(self, known: Mapping[str, Container]) -> None:
        for cid in [cid for cid in self.procs if cid not in known]:
            del self.procs[cid]

    def finish(self, container_id: str, exit_code: int) -> None:
        """The process ends by itself (what the model checker's `exit` step does)."""
        proc = self.procs[container_id]
        proc.alive, proc.exit_code = False, exit_code

    # --- files: cp ------------------------------------------------------------------------

    def _tree(self, container: Container) -> dict[str, str]:
        """The container's files: relative path -> content (directories are implied)."""
        rw = self.layers.rw if self.layers is not None else self.files
        files: dict[str, str] = rw.setdefault(container.rw_layer, {})
        return files

    def _kind(self, tree: Mapping[str, str], rel: str) -> str | None:
        if not rel:
            return "dir"
        if rel in tree:
            return "file"
        prefix = rel + "/"
        return "dir" if any(k.startswith(prefix) for k in tree) else None

    def _lookup(self, tree: Mapping[str, str], path: str) -> tuple[str, str, str]:
        """(clean absolute path, relative path, kind) of an existing path; docker's
        trailing `/` or `/.` asks for a directory."""
        clean = posixpath.normpath("/" + path.lstrip("/"))
        rel = clean.strip("/")
        kind = self._kind(tree, rel)
        if kind is None:
            raise NotFound(f"Could not find the file {clean} in the container")
        if kind == "file" and (path.endswith("/") or path.endswith("/.")):
            raise BadInput(f"{clean}: Not a directory")
        return clean, rel, kind

    def path_stat(self, container: Container, path: str) -> dict[str, Any]:
        tree = self._tree(container)
        clean, rel, kind = self._lookup(tree, path)
        dot = path.endswith("/.") or path == "."
        name = "." if dot else (posixpath.basename(clean) or "/")
        size = len(tree[rel].encode(errors="surrogateescape")) if kind == "file" else 0
        mode = (1 << 31 | 0o755) if kind == "dir" else 0o644
        return {"name": name, "size": size, "mode": mode, "mtime": "1970-01-01T00:00:00Z",
                "linkTarget": ""}

    def archive_out(self, container: Container, path: str, out: BinaryIO,
                    follow_link: bool = False,
                    on_stat: Callable[[dict[str, Any]], None] | None = None
                    ) -> dict[str, Any]:
        tree = self._tree(container)
        stat = self.path_stat(container, path)
        _, rel, kind = self._lookup(tree, path)
        top = "" if stat["name"] == "/" else stat["name"]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            if kind == "file":
                _add_file(tar, top, tree[rel])
            else:
                prefix = rel + "/" if rel else ""
                below = sorted(k[len(prefix):] for k in tree if k.startswith(prefix))
                dirs = sorted({"/".join(k.split("/")[:n]) for k in below
                               for n in range(1, k.count("/") + 1)})
                if top:
                    _add_dir(tar, top)
                for d in dirs:
                    _add_dir(tar, posixpath.join(top, d) if top else d)
                for k in below:
                    _add_file(tar, posixpath.join(top, k) if top else k, tree[prefix + k])
        if on_stat is not None:
            on_stat(stat)
        out.write(buf.getvalue())
        return stat

    def archive_in(self, container: Container, path: str, tar: BinaryIO,
                   no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        tree = self._tree(container)
        clean, rel, kind = self._lookup(tree, path)
        if kind != "dir":
            raise BadInput(f"{clean}: extraction point is not a directory")
        try:
            with tarfile.open(fileobj=tar, mode="r|*") as archive:
                for m in archive:
                    name = posixpath.normpath(posixpath.join(rel, m.name.lstrip("/")))
                    if name == ".." or name.startswith("../"):
                        raise BadInput(f"member {m.name!r} is outside of the destination")
                    name = "" if name == "." else name
                    there = self._kind(tree, name)
                    if m.isdir():
                        if there == "file" and no_overwrite_dir_non_dir:
                            raise BadInput(f"cannot overwrite non-directory {name!r} with "
                                           f"directory {m.name!r}")
                        tree.pop(name, None)
                        continue
                    if not m.isreg():
                        raise BadInput(f"{m.name!r}: the in-memory runtime keeps regular "
                                       "files only")
                    if there == "dir":
                        if no_overwrite_dir_non_dir:
                            raise BadInput(f"cannot overwrite directory {name!r} with "
                                           f"non-directory {m.name!r}")
                        for k in [k for k in tree if k.startswith(name + "/")]:
                            del tree[k]
                    data = archive.extractfile(m)
                    raw = data.read() if data is not None else b""
                    tree[name] = raw.decode(errors="surrogateescape")
        except tarfile.TarError as err:
            raise BadInput(f"truncated or corrupt tar: {err}") from None


def _add_file(tar: tarfile.TarFile, name: str, content: str) -> None:
    data = content.encode(errors="surrogateescape")
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)
