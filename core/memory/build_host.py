"""The BuildHost port in memory: a context is a dict of files, an image's root the union of its
memory layers, COPY writes into the container's read-write layer (a dict), RUN plays a script.

Enough for core.build.build() to run end to end on an in-memory engine, and held to the same
contract as the Linux host (tests/contracts/test_build_host.py): the Dockerfile is read from
the context (default `Dockerfile`) or by an absolute path, and a missing one is one line of
BadInput; a COPY source is a file or a directory (the files under it) of the context, with
`*?[` wildcards, and one outside the context is refused; the digest covers the names, bytes
and modes of the copied files and the flags; COPY puts a file at dest (under it when dest ends
in '/' or is a directory), its mode --chmod's, its owner --chown's (numbers, or names from the
image's etc/passwd and etc/group); RUN starts the container through the Engine, streams what
its script prints and records its exit as the Linux monitor does.

What it leaves out: .dockerignore, symlinks, ADD's extraction of archives (ADD copies as COPY
does) and directories of their own (a memory layer holds only files). A memory layer's files
are text, so bytes are decoded as UTF-8 (undecodable bytes replaced). The modes and owners a
memory layer can't hold are kept in `copied`, per container: what the tests read; an image's
root gives every file mode 0644, owner 0:0.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from core.errors import BadInput, NotFound
from core.memory.layers import MemoryLayerStore
from core.memory.runtime import MemoryRuntime
from core.ports import CopySource
from core.process import command_line

if TYPE_CHECKING:
    from core.engine import Engine

_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class MemoryFile:
    """A regular file of a context, an image root, or what COPY put into a container."""

    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


# What a context's dict may hold per path: the bytes (or text), or (bytes or text, mode).
ContextFile = bytes | str | tuple[bytes | str, int] | MemoryFile


def memory_file(value: ContextFile) -> MemoryFile:
    if isinstance(value, MemoryFile):
        return value
    if isinstance(value, tuple):
        data, mode = value
        return MemoryFile(data.encode() if isinstance(data, str) else bytes(data), mode)
    return MemoryFile(value.encode() if isinstance(value, str) else bytes(value))


def _rel(path: str) -> str:
    """A path as a source's or a layer's key: relative, normalized ("" for the root)."""
    rel = posixpath.normpath(path.lstrip("/")) if path.strip("/") else "."
    return "" if rel == "." else rel


@dataclass(frozen=True)
class Scripted:
    """What a RUN command does here: what it prints, the files it writes into its read-write
    layer (container path -> text), how it exits."""

    exit_code: int = 0
    output: str = ""
    writes: Mapping[str, str] = field(default_factory=dict)


def interpret(text: str) -> Scripted:
    """A command no script names, as a tiny shell: `;`-separated `echo WORDS` (printed),
    `true`, `false` and `exit N`; anything else succeeds and prints nothing. No expansion."""
    output, status = [], 0
    for statement in text.split(";"):
        try:
            words = shlex.split(statement)
        except ValueError:
            words = statement.split()
        if not words:
            continue
        if words[0] == "echo":
            output.append(" ".join(words[1:]) + "\n")
            status = 0
        elif words[0] == "exit":
            code = int(words[1]) if len(words) > 1 and words[1].isdigit() else status
            return Scripted(code, "".join(output))
        else:
            status = 1 if words[0] == "false" else 0
    return Scripted(status, "".join(output))


@dataclass
class MemorySource:
    """A CopySource: files by relative path (the context's dict itself, so a change to the
    context shows, as a directory's would); `keep_owner` for an image's root."""

    files: dict[str, MemoryFile]
    context: bool = True
    keep_owner: bool = False

    def _dirs(self) -> set[str]:
        return {"/".join(parts[:n]) for rel in self.files
                for parts in [rel.split("/")] for n in range(1, len(parts))}

    def is_dir(self, rel: str) -> bool:
        return rel == "" or any(p.startswith(rel + "/") for p in self.files)

    def resolve(self, src: str) -> list[str]:
        """The relative paths a COPY source names (wildcards expanded): files or directories
        ("" for the whole context)."""
        rel = _rel(src)
        if rel == ".." or rel.startswith("../"):
            raise BadInput(f"forbidden path outside the build context: {src}")
        if _WILDCARD.search(rel):
            found = sorted(p for p in set(self.files) | self._dirs() if _glob(rel, p))
            if not found:
                raise BadInput(f"no source files were specified: {src}")
            return found
        if rel not in self.files and not self.is_dir(rel):
            raise BadInput(f"file not found in build context or excluded by .dockerignore: "
                           f"stat {src}: file does not exist")
        return [rel]

    def entries(self, rel: str) -> list[tuple[str, MemoryFile]]:
        """A file itself (as ""), or the files under a directory by their path below it."""
        if rel in self.files:
            return [("", self.files[rel])]
        prefix = rel + "/" if rel else ""
        return [(p[len(prefix):], f) for p, f in sorted(self.files.items())
                if p.startswith(prefix)]

    def digest(self, sources: Sequence[str], chown: str, chmod: str, add: bool) -> str:
        h = hashlib.sha256(f"chown={chown}\0chmod={chmod}\0add={add}\0".encode())
        kinds = []
        for src in sources:
            for path in self.resolve(src):
                kinds.append("file" if path in self.files else "dir")
                h.update(f"src\0{posixpath.basename(path)}\0".encode())
                for rel, f in self.entries(path):
                    owner = f"{f.uid}:{f.gid}" if self.keep_owner else ""
                    h.update(f"{rel}\0{f.mode:o}\0{owner}\0{len(f.data)}\0".encode())
                    h.update(hashlib.sha256(f.data).digest())
        kind = kinds[0] if len(kinds) == 1 else "multi"
        return f"{kind}:{h.hexdigest()}"


def _glob(pattern: str, path: str) -> bool:
    """glob's match: each `/`-separated part on its own, a leading dot matched only by one."""
    want, got = pattern.split("/"), path.split("/")
    return len(want) == len(got) and all(
        fnmatchcase(g, w) and (not g.startswith(".") or w.startswith("."))
        for w, g in zip(want, got, strict=True))


@dataclass
class MemoryBuildHost:
    """BuildHost on an in-memory engine (core.memory.memory_engine()).

    `contexts`: context directory -> {relative path: file} (add_files fills it); `scripts`:
    what a RUN command does, by its text (the last word of `sh -c TEXT`, else the argv
    joined by spaces), else `interpret`; `ran`: the argv of every container run; `copied`:
    container id -> {container path: the file COPY put there, with its mode and owner}."""

    engine: Engine
    contexts: dict[str, dict[str, MemoryFile]] = field(default_factory=dict)
    scripts: dict[str, Scripted] = field(default_factory=dict)
    ran: list[tuple[str, ...]] = field(default_factory=list)
    copied: dict[str, dict[str, MemoryFile]] = field(default_factory=dict)

    def add_files(self, context_dir: str, files: Mapping[str, ContextFile]) -> str:
        """Put files into a context (made if new); its directory."""
        context = self.contexts.setdefault(posixpath.normpath(context_dir), {})
        for path, value in files.items():
            context[_rel(path)] = memory_file(value)
        return context_dir

    # --- the port ------------------------------------------------------------------------

    def read_dockerfile(self, context_dir: str, dockerfile: str | None) -> tuple[str, str]:
        files = self.contexts.get(posixpath.normpath(context_dir))
        if files is None:
            raise BadInput(f"unable to prepare context: path {context_dir!r} not found")
        name = dockerfile or "Dockerfile"
        if posixpath.isabs(name):
            path, found = name, self._absolute(name)
        else:
            rel = posixpath.normpath(name)
            if rel == ".." or rel.startswith("../"):
                raise BadInput(f"the Dockerfile ({name}) must be within the build context")
            path, found = posixpath.join(context_dir, name), files.get(rel)
        if found is None:
            raise BadInput(f"cannot find the Dockerfile: {path}")
        try:
            return name, found.data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadInput(f"cannot read the Dockerfile {path}: {err}") from None

    def _absolute(self, path: str) -> MemoryFile | None:
        """A file of any context by its absolute path (what an absolute -f names)."""
        path = posixpath.normpath(path)
        for top, files in self.contexts.items():
            if path.startswith(top.rstrip("/") + "/"):
                found = files.get(path[len(top.rstrip("/")) + 1:])
                if found is not None:
                    return found
        return None

    @contextmanager
    def context(self, context_dir: str) -> Iterator[MemorySource]:
        files = self.contexts.get(posixpath.normpath(context_dir))
        if files is None:
            raise BadInput(f"unable to prepare context: path {context_dir!r} not found")
        yield MemorySource(files)

    @contextmanager
    def image_root(self, image: str) -> Iterator[MemorySource]:
        found = self.engine.log.image(image)
        if found is None:
            raise NotFound(f"no such image: {image}")
        files = {rel: MemoryFile(text.encode()) for rel, text in self._union(found.layers)}
        yield MemorySource(files, context=False, keep_owner=True)

    def copy(self, source: CopySource, container: str, sources: Sequence[str], dest: str,
             chown: str, chmod: str, add: bool) -> None:
        if not isinstance(source, MemorySource):  # the port's sources are opaque: only ours
            raise TypeError(f"not a source this build host gave: {source!r}")
        e, store = self.engine, self._store()
        c = e.container(container)
        image = e.log.image(c.image)
        layers = image.layers if image is not None else []
        below = dict(self._union(layers))
        rw = store.rw[c.rw_layer]
        view = {**below, **{_rel(k): v for k, v in rw.items()}}
        owner = _owner(view, chown) if chown else None
        mode = _chmod(chmod)
        copied = self.copied.setdefault(c.id, {})
        for src in sources:
            for path in source.resolve(src):
                if path in source.files:
                    cdest = dest
                    if dest.endswith("/") or _is_dir(view, _rel(dest)):
                        cdest = dest.rstrip("/") + "/" + posixpath.basename(path)
                    targets = [(cdest, source.files[path])]
                else:
                    targets = [(dest.rstrip("/") + "/" + rel, f)
                               for rel, f in source.entries(path)]
                for cpath, f in targets:
                    rel = _rel(cpath)
                    for parent in _parents(rel):
                        if parent in view:
                            raise BadInput(f"cannot copy to /{parent}: it exists and is not "
                                           "a directory")
                    uid, gid = owner or ((f.uid, f.gid) if source.keep_owner else (0, 0))
                    text = f.data.decode("utf-8", errors="replace")
                    rw[self._key(rw, layers, rel)] = text
                    view[rel] = text
                    copied["/" + rel] = MemoryFile(f.data, f.mode if mode is None else mode,
                                                   uid, gid)

    def run(self, container: str, out: Callable[[str], None]) -> int:
        """Start the container, play its script (its output line by line, its writes into
        the read-write layer), record its exit; its exit code."""
        e, store, runtime = self.engine, self._store(), self._runtime()
        c = e.start(container)
        stream = runtime.attach(c.id)  # as the Linux host attaches
        image = e.log.image(c.image)
        argv = command_line((image.config if image else {}).get("config") or {}, c.cmd,
                            c.config.get("entrypoint"))
        self.ran.append(argv)
        text = argv[-1] if len(argv) >= 3 and argv[-2] == "-c" else " ".join(argv)
        scripted = self.scripts.get(text) or interpret(text)
        try:
            for line in scripted.output.splitlines(keepends=True):
                out(line)
            rw = store.rw[c.rw_layer]
            layers = image.layers if image is not None else []
            for path, content in scripted.writes.items():
                rw[self._key(rw, layers, _rel(path))] = content
        finally:
            if stream is not None:
                stream.close()
            runtime.finish(c.id, scripted.exit_code)
            e.exited(c.id, scripted.exit_code)
        done = e.log.container(c.id)
        return done.exit_code if done is not None and done.exit_code is not None \
            else scripted.exit_code

    # --- helpers -------------------------------------------------------------------------

    def _store(self) -> MemoryLayerStore:
        store = self.engine.layers
        if not isinstance(store, MemoryLayerStore):
            raise TypeError("MemoryBuildHost needs an engine on the in-memory layer store")
        return store

    def _runtime(self) -> MemoryRuntime:
        runtime = self.engine.runtime
        if not isinstance(runtime, MemoryRuntime):
            raise TypeError("MemoryBuildHost needs an engine on the in-memory runtime")
        return runtime

    def _key(self, rw: Mapping[str, str], layers: Sequence[str], rel: str) -> str:
        """How a layer names the file at `rel`: as the read-write layer already does, else
        with a leading '/' if the image's layers name their files so (a memory layer may)."""
        if rel in rw or "/" + rel in rw:
            return rel if rel in rw else "/" + rel
        store = self._store()
        slashed = any(k.startswith("/") for lid in layers for k in store.layers[lid])
        return "/" + rel if slashed else rel

    def _union(self, layers: Sequence[str]) -> list[tuple[str, str]]:
        """The files of these layers, bottom first (an upper layer's file wins)."""
        files: dict[str, str] = {}
        store = self._store()
        for lid in layers:
            files.update({_rel(k): v for k, v in store.layers[lid].items()})
        return sorted(files.items())


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _is_dir(view: Mapping[str, str], rel: str) -> bool:
    return rel == "" or any(p.startswith(rel + "/") for p in view)


def _chmod(text: str) -> int | None:
    if not text:
        return None
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise BadInput(f"invalid --chmod={text}: use octal digits such as 755")
    return int(text, 8)


def _owner(view: Mapping[str, str], chown: str) -> tuple[int, int]:
    """--chown=USER[:GROUP]: numbers, or names from the image's etc/passwd and etc/group; a
    user alone gives the same number as group (docker's rule)."""
    user, _, group = chown.partition(":")
    uid = _lookup(view, "etc/passwd", user)
    return uid, _lookup(view, "etc/group", group) if group else uid


def _lookup(view: Mapping[str, str], table: str, name: str) -> int:
    if name.isdigit():
        return int(name)
    for line in view.get(table, "").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    what = "user" if "passwd" in table else "group"
    raise BadInput(f"unable to convert {what} {name!r} to a number: no such {what} in "
                   f"/{table} of the image")
