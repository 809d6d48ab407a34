"""The BuildHost port (core/ports.py) on this machine: files from the context directory,
containers run through the Engine and attached the way a foreground `run` is.

The entry point for callers (the CLI's `build`, the Docker API's `POST /build`):

    from adapters.build_host import build
    image_id = build(engine, context_dir, dockerfile, tags, build_args, no_cache, target, out)
"""

from __future__ import annotations

import codecs
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from adapters.storage.context import (
    Copier,
    DirSource,
    IgnoreRules,
    extract_archive,
    is_archive,
    lookup_owner,
    parse_chmod,
)
from core.errors import BadInput, LaminaError
from core.ports import CopySource

# docker's classic builder sends what a RUN writes to stderr in red (streamformatter's
# stderr writer): each write between these two
STDERR_START, STDERR_END = "\x1b[91m", "\x1b[0m"


def build(engine: Any, context_dir: str, dockerfile: str | None = None,
          tags: Sequence[str] = (), build_args: Mapping[str, str] | None = None,
          no_cache: bool = False, target: str | None = None,
          out: Callable[[str], None] = lambda _text: None, extras: Any = None) -> str:
    """Build an image from a Dockerfile in `context_dir`; returns its id (see core/build.py:
    `out` gets docker's classic progress text, `Successfully built <id>` at the end;
    `extras`, a core.build.Extras, what the Docker API's request adds)."""
    from core.build import build as core_build

    return core_build(engine, LinuxBuildHost(engine), context_dir, dockerfile, tags,
                      build_args, no_cache, target, out, extras)


class LinuxBuildHost:
    """BuildHost: a context directory (with its .dockerignore) and image roots mounted as
    union views are DirSources; COPY writes through the container's mounted union view."""

    def __init__(self, engine: Any, poll: float = 0.005) -> None:
        self.engine = engine
        self.poll = poll

    def read_dockerfile(self, context_dir: str, dockerfile: str | None) -> tuple[str, str]:
        """The Dockerfile: an absolute path, or a path within the context (default
        `Dockerfile`), as the Docker API's `dockerfile` parameter is."""
        if not os.path.isdir(context_dir):
            raise BadInput(f"unable to prepare context: path {context_dir!r} not found")
        name = dockerfile or "Dockerfile"
        path = os.path.join(context_dir, name)  # relative: within the context (docker's API)
        if not os.path.isabs(name):
            top = os.path.realpath(context_dir)
            if not os.path.realpath(path).startswith(top + os.sep):
                raise BadInput(f"the Dockerfile ({name}) must be within the build context")
        try:
            with open(path, encoding="utf-8") as f:
                return name, f.read()
        except FileNotFoundError:
            raise BadInput(f"cannot find the Dockerfile: {path}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise BadInput(f"cannot read the Dockerfile {path}: {err}") from None

    @contextmanager
    def context(self, context_dir: str) -> Iterator[DirSource]:
        root = os.path.realpath(context_dir)
        yield DirSource(root, context=True, ignore=IgnoreRules.load(root))

    @contextmanager
    def image_root(self, image: str) -> Iterator[DirSource]:
        """An image's files, through a container that never runs (its union view mounted
        for the length of the block, then removed)."""
        e = self.engine
        cid = e.create(image, ["#(nop) COPY --from source"])
        try:
            c = e.container(cid)
            with e.layers.union_view(c.rw_layer, e.log.image(c.image).layers) as merged:
                yield DirSource(merged, context=False, keep_owner=True)
        finally:
            e.rm(cid, force=True)

    def copy(self, source: CopySource, container: str, sources: Sequence[str], dest: str,
             chown: str, chmod: str, add: bool) -> None:
        if not isinstance(source, DirSource):  # the port's sources are opaque: only ours
            raise TypeError(f"not a source this build host gave: {source!r}")
        e = self.engine
        c = e.container(container)
        layers = e.log.image(c.image).layers
        mode = parse_chmod(chmod)
        with e.layers.union_view(c.rw_layer, layers) as merged:
            copier = Copier(merged, lookup_owner(merged, chown), mode)
            for src in sources:
                for path in source.resolve(src):
                    if add and is_archive(path):
                        self._extract(copier, path, dest)
                    else:
                        copier.copy_into(source, path, dest, keep_owner=source.keep_owner)

    def _extract(self, copier: Copier, path: str, dest: str) -> None:
        with self.engine.layers.staging() as stage:
            extract_archive(path, stage)
            staged = DirSource(stage, context=False)
            copier.copy_into(staged, stage, dest if dest.endswith("/") else dest + "/",
                             keep_owner=True)

    def run(self, container: str, out: Callable[[str], None]) -> int:
        """Start the container and stream its output; the exit code once it is recorded."""
        from adapters.runtime import frames

        e = self.engine
        e.start(container)
        sock = e.runtime.attach(container)
        code: int | None = None
        if sock is not None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                while True:
                    frame = frames.recv(sock)
                    if frame is None:
                        break
                    stream, payload = frame
                    if stream == frames.EXIT:
                        code = int(payload)
                        break
                    if stream in (frames.STDOUT, frames.STDERR):
                        text = decoder.decode(payload)
                        if text and stream == frames.STDERR:  # docker's classic builder's
                            text = f"{STDERR_START}{text}{STDERR_END}"  # red, per write
                        if text:
                            out(text)
            finally:
                sock.close()
        return self._stopped(container, code)

    def _stopped(self, container: str, code: int | None, timeout: float = 60) -> int:
        """Wait until the log says the container stopped (the monitor records it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.engine.log.container(container)
            if c is None:
                raise LaminaError(f"build container {container[:12]} vanished")
            if c.state == "stopped":
                return c.exit_code if c.exit_code is not None else (code or 0)
            time.sleep(self.poll)
        raise LaminaError(f"build container {container[:12]} did not stop in {timeout:.0f}s")
