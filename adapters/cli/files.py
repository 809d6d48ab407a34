"""`lamina cp`: docker cp's two forms, and docker's client-side rules for what lands where.

    lamina cp [-a] [-L] CONTAINER:SRC_PATH DEST_PATH|-
    lamina cp [-a] [-L] SRC_PATH|- CONTAINER:DEST_PATH

The engine copies a tar out of or into a container's directory (core/engine/files.py); the
rest is the client's, as in docker's CLI (cli/command/container/cp.go) and its archive
package (CopyInfo, PrepareArchiveCopy, RebaseArchiveEntries), re-derived here:

- `NAME:PATH` names a container path, unless the argument is absolute or starts with `.`
  (a local `./file:name.txt`); container paths are relative to its `/`.
- A trailing `/` says "a directory" (it must be one, or an error), `/.` says "the contents
  of this directory".
- Copying a file: onto an existing file it overwrites it, into an existing directory it
  lands under its own name, to a new name it takes that name (but not to a new `name/`:
  "no such directory"). Copying a directory: into an existing directory it lands under its
  own name (its contents, with `/.`), to a new name it becomes that directory, onto a file
  it is refused ("cannot copy directory").
- What the rules decide, the tar says by its entry names: the first element is rewritten
  (RebaseArchiveEntries) when the copy takes a new name.
- A stat of the container's destination comes first (the API's HEAD, a query); a symlink
  there is followed once, to where it points inside the container.
- `-L` follows a final symlink of the source (on the container's side the engine does it,
  inside the container); `-a` gives files copied in the container's USER (docker's
  copyUIDGID) and, a lamina extension that is what docker's manual says `-a` means, keeps
  the owners of files copied out (without it they are root's, this command's).
- `-` reads a tar (plain or compressed) from stdin into a directory, or writes the tar to
  stdout.

A copy the rules refuse before the engine sees it is recorded as a refused `cp` all the same
(Engine.refuse): every cp, done or not, is in the log. Errors are one line, in docker's
words, and exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import posixpath
import sys
from collections.abc import Callable

from core.errors import BadInput, LaminaError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

COMMANDS = ("cp",)

# Go's os.FileMode bits in a path stat (adapters/storage/copyio.py has them too)
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_IRREGULAR = 1 << 19
CHUNK = 1 << 20


# --- docker's path rules (pure, but for the local file system's answers) -----------------


def split_cp_arg(arg: str) -> tuple[str, str]:
    """(container, path); container "" for a local path. A `:` in a local path needs an
    explicit `/...` or `./...` to be one."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def _clean(path: str) -> str:
    """Go's filepath.Clean."""
    return posixpath.normpath(path) if path else "."


def go_base(path: str) -> str:
    if not path:
        return "."
    stripped = path.rstrip("/")
    return posixpath.basename(stripped) if stripped else "/"


def has_trailing_separator(path: str) -> bool:
    return path.endswith("/")


def specifies_current_dir(path: str) -> bool:
    return go_base(path) == "."


def asserts_directory(path: str) -> bool:
    return has_trailing_separator(path) or specifies_current_dir(path)


def preserve_trailing_dot_or_separator(cleaned: str, original: str) -> str:
    """A cleaned path given back the `/.` or `/` its original ended with."""
    if not specifies_current_dir(cleaned) and specifies_current_dir(original):
        if not has_trailing_separator(cleaned):
            cleaned += "/"
        cleaned += "."
    if not has_trailing_separator(cleaned) and has_trailing_separator(original):
        cleaned += "/"
    return cleaned


def split_path_dir_entry(path: str) -> tuple[str, str]:
    """(directory, base) of a cleaned path, a trailing `.` kept as the base."""
    cleaned = _clean(path)
    if specifies_current_dir(path):
        cleaned += "/."
    return posixpath.dirname(cleaned) or ".", go_base(cleaned)


def resolve_local_path(path: str) -> str:
    """An absolute local path, its trailing `/` or `/.` kept."""
    return preserve_trailing_dot_or_separator(os.path.abspath(path), path)


class CopyInfo:
    """What a side of a copy is: its path, whether it exists and is a directory, and the
    name its archive's first element must take (a followed link keeps the link's name).
    (A plain class: this module is imported by every command, dataclasses is not.)"""

    def __init__(self, path: str, exists: bool = False, is_dir: bool = False,
                 rebase_name: str = "") -> None:
        self.path, self.exists, self.is_dir, self.rebase_name = path, exists, is_dir, \
            rebase_name

    def __repr__(self) -> str:
        return (f"CopyInfo({self.path!r}, exists={self.exists}, is_dir={self.is_dir}, "
                f"rebase_name={self.rebase_name!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CopyInfo) and repr(self) == repr(other)

    __hash__ = None  # type: ignore[assignment]


def _os_error(what: str, path: str, err: OSError) -> BadInput:
    """An OSError as Go prints it: `lstat /x: no such file or directory`."""
    reason = (err.strerror or str(err)).lower() if err.errno else str(err)
    return BadInput(f"{what} {path}: {reason}")


def _eval_symlinks(path: str) -> str:
    """Go's filepath.EvalSymlinks: every link resolved; an error if a part is missing."""
    try:
        return os.path.realpath(path, strict=True)
    except OSError as err:
        raise _os_error("lstat", path.rstrip("/") or "/", err) from None


def rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """docker's GetRebaseName: the resolved path given the original's trailing forms, and
    the original's base if resolving changed it."""
    if specifies_current_dir(path) and not specifies_current_dir(resolved):
        resolved += "/."
    if has_trailing_separator(path) and not has_trailing_separator(resolved):
        resolved += "/"
    return resolved, go_base(path) if go_base(path) != go_base(resolved) else ""


def resolve_host_source_path(path: str, follow_link: bool) -> tuple[str, str]:
    """(resolved path, rebase name) of a local source: its parents' symlinks resolved, the
    last element too only with follow_link (then the copy keeps the link's name)."""
    if follow_link:
        return rebase_name(path, _eval_symlinks(path))
    head, base = path.rsplit("/", 1) if "/" in path else ("", path)
    resolved_dir = _eval_symlinks(head + "/" if head else ".")
    resolved = resolved_dir.rstrip("/") + "/" + base
    name = ""
    if has_trailing_separator(path) and go_base(path) != go_base(resolved):
        name = go_base(path)
    return resolved, name


def copy_info_source_path(path: str, follow_link: bool) -> CopyInfo:
    """The local source: it must exist."""
    resolved, name = resolve_host_source_path(path, follow_link)
    try:
        st = os.lstat(resolved)
    except OSError as err:
        raise _os_error("lstat", resolved, err) from None
    import stat

    return CopyInfo(resolved, True, stat.S_ISDIR(st.st_mode), name)


def copy_info_destination_path(path: str) -> CopyInfo:
    """The local destination: followed through its symlinks (at most 10); it need not
    exist, but its parent must be a directory."""
    import stat

    original = path
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise _os_error("lstat", path, err) from None
    n = 0
    while st is not None and stat.S_ISLNK(st.st_mode):
        n += 1
        if n > 11:
            raise BadInput(f"too many symlinks in {original}")
        target = os.readlink(path)
        if not target.startswith("/"):
            target = posixpath.join(split_path_dir_entry(path)[0], target)
        path = _clean(target)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as err:
            raise _os_error("lstat", path, err) from None
    if st is not None:
        return CopyInfo(path, True, stat.S_ISDIR(st.st_mode))
    parent = split_path_dir_entry(path)[0]
    try:
        if not stat.S_ISDIR(os.stat(parent).st_mode):
            raise BadInput("not a directory")
    except OSError as err:
        raise _os_error("stat", parent, err) from None
    return CopyInfo(path)


def prepare_archive_copy(src: CopyInfo, dst: CopyInfo) -> tuple[str, tuple[str, str] | None]:
    """docker's PrepareArchiveCopy: the directory to extract into, and the (old, new) first
    name element of the archive's entries when the copy takes a new name (None: as is)."""
    dst_dir, dst_base = split_path_dir_entry(dst.path)
    _, src_base = split_path_dir_entry(src.path)
    src_base = src.rebase_name or src_base
    if dst.exists and dst.is_dir:
        return dst.path, None
    if dst.exists and src.is_dir:
        raise BadInput("cannot copy directory")
    if dst.exists or src.is_dir:
        return dst_dir, (src_base, dst_base)
    if asserts_directory(dst.path):
        raise BadInput("no such directory")
    return dst_dir, (src_base, dst_base)


def validate_output_path(path: str) -> None:
    """docker's ValidateOutputPath: the destination's directory exists, and the
    destination, if there, is a directory or a regular file."""
    import stat

    parent = posixpath.dirname(_clean(path))
    if parent not in ("", ".") and not os.path.exists(parent):
        raise BadInput(f'invalid output path: directory "{parent}" does not exist')
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise _os_error("stat", path, err) from None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return
    kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "an irregular file"
    raise BadInput(f'invalid output path: "{path}" must be a directory or a regular file: '
                   f"got {kind}")


# --- the command ---------------------------------------------------------------------------


def cmd_cp(args: argparse.Namespace) -> int:
    if not args.source:
        raise BadInput("source can not be empty")
    if not args.destination:
        raise BadInput("destination can not be empty")
    src_ctr, src_path = split_cp_arg(args.source)
    dst_ctr, dst_path = split_cp_arg(args.destination)
    if src_ctr and dst_ctr:
        raise BadInput("copying between containers is not supported")
    if not src_ctr and not dst_ctr:
        raise BadInput("must specify at least one container source")
    from adapters.cli.common import engine

    e = engine(args)
    quiet = args.quiet or not sys.stdout.isatty()
    if src_ctr:
        return _copy_from(e, src_ctr, src_path, dst_path, args, quiet)
    return _copy_to(e, dst_ctr, src_path, dst_path, args, quiet)


def _refused(e: Any, container: str, check: Callable[[], Any]) -> Any:
    """Run a client-side check; its refusal is recorded as the cp's (then raised)."""
    try:
        return check()
    except LaminaError as err:
        e.refuse("cp", container, str(err))
        raise  # not reached: refuse raises


def _copy_from(e: Any, container: str, src_path: str, dst_path: str,
               args: argparse.Namespace, quiet: bool) -> int:
    if dst_path != "-":
        dst_path = resolve_local_path(dst_path)
        _refused(e, container, lambda: validate_output_path(dst_path))
        sink: Any = LocalSink(dst_path, src_path, args.archive)
        out = sink
    else:
        sink, out = None, sys.stdout.buffer
    try:
        stat = _no_such_path(container, src_path, lambda: e.copy_from(
            container, src_path, out, follow_link=args.follow_link,
            on_stat=sink.plan if sink is not None else None))
    finally:
        if sink is not None:
            sink.close()
    if sink is not None:
        sink.finish()
    if not quiet and dst_path != "-":
        from core.sizes import human_size

        size = stat["size"] if not stat["mode"] & MODE_DIR else sink.size
        print(f"Successfully copied {human_size(size)} to {dst_path}", file=sys.stderr)
    else:
        sys.stdout.flush()
    return 0


def _no_such_path(container: str, path: str, call: Callable[[], Any]) -> Any:
    """The engine's missing path in the words of docker's CLI."""
    from core.engine.files import PathNotFound

    try:
        return call()
    except PathNotFound:
        raise NotFound(f"No such container:path: {container}:{path}") from None


def _stat(e: Any, container: str, path: str) -> dict[str, Any] | None:
    try:
        stat: dict[str, Any] = e.path_stat(container, path)
        return stat
    except LaminaError:
        return None  # as docker: the copy itself will say what is wrong


def _copy_to(e: Any, container: str, src_path: str, dst_path: str,
             args: argparse.Namespace, quiet: bool) -> int:
    if src_path != "-":
        src_path = resolve_local_path(src_path)
    dst = CopyInfo(dst_path)
    stat = _stat(e, container, dst_path)
    if stat is not None:
        if stat["mode"] & MODE_SYMLINK:  # evaluated once, to where it points inside
            link = stat["linkTarget"]
            if not link.startswith("/"):
                link = posixpath.join(split_path_dir_entry(dst_path)[0], link)
            dst.path = link
            stat = _stat(e, container, link)
        if stat is not None:
            if stat["mode"] & (MODE_DEVICE | MODE_IRREGULAR):
                kind = "a device" if stat["mode"] & MODE_DEVICE else "an irregular file"
                _refused(e, container, _raiser(f'destination "{container}:{dst_path}" must '
                                               f"be a directory or a regular file: got {kind}"))
            dst.exists, dst.is_dir = True, bool(stat["mode"] & MODE_DIR)
    if src_path == "-":
        if not dst.is_dir:
            _refused(e, container, _raiser(f'destination "{container}:{dst_path}" must be '
                                           "a directory"))
        _no_such_path(container, dst.path, lambda: e.copy_to(
            container, dst.path, sys.stdin.buffer, no_overwrite_dir_non_dir=True,
            copy_uid_gid=args.archive))
        return 0
    src = _refused(e, container, lambda: copy_info_source_path(src_path, args.follow_link))
    dst_dir, rename = _refused(e, container, lambda: prepare_archive_copy(src, dst))
    producer = LocalArchive(src.path)
    try:
        tar: Any = producer
        first = split_path_dir_entry(src.path)[1]  # the first element the archive has
        new = rename[1] if rename is not None else (src.rebase_name or first)
        if new != first:
            from adapters.runtime.files import ChunkReader, rebased

            tar = ChunkReader(rebased(producer, first, new))
        _no_such_path(container, dst_dir, lambda: e.copy_to(
            container, dst_dir, tar, no_overwrite_dir_non_dir=True,
            copy_uid_gid=args.archive))
    finally:
        producer.close()
    if not quiet:
        from core.sizes import human_size

        print(f"Successfully copied {human_size(producer.content_size())} to "
              f"{container}:{dst.path}", file=sys.stderr)
    return 0


def _raiser(message: str) -> Callable[[], None]:
    def fail() -> None:
        raise BadInput(message)

    return fail


class LocalArchive:
    """The local source as docker's tar, made by a child process (so that it streams into
    the engine's copy while it is read, with no thread in a process that forks): the
    archive's first element is the source's base (`.` for `dir/.`). A failure in the child
    is raised, in its words, by the read that meets the end of its output."""

    def __init__(self, path: str) -> None:
        self.path = path
        r, w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(r)
            os.close(err_r)
            _produce(path, w, err_w, parent)
        os.close(w)
        os.close(err_w)
        self.source = open(r, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self.err = err_r
        self.status: int | None = None

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n) if n is None or n < 0 else self.source.read(n)
        if not data:
            self._check()
        return data or b""

    def _check(self) -> None:
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
            message = os.read(self.err, 4096).decode(errors="replace").strip()
            if self.status:
                raise BadInput(message or "archiving the local files failed")

    def content_size(self) -> int:
        """Bytes of regular files in the source (docker's summary line)."""
        import stat

        path = split_path_dir_entry(self.path)
        top = os.path.join(path[0], path[1])
        st = os.lstat(top)
        if not stat.S_ISDIR(st.st_mode):
            return st.st_size if stat.S_ISREG(st.st_mode) else 0
        return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(top)
                   for f in files if os.path.isfile(os.path.join(d, f))
                   and not os.path.islink(os.path.join(d, f)))

    def close(self) -> None:
        self.source.close()
        if self.status is None:
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # our own child, by its pid
            os.waitpid(self.pid, 0)
            self.status = -1
        os.close(self.err)


def _produce(path: str, w: int, err_w: int, parent: int) -> None:
    """The producer child: the tar onto `w`, an error (one line) onto `err_w`."""
    import signal

    from adapters.kernel import inroot, libc
    from adapters.storage import copyio

    code = 0
    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        directory, base = split_path_dir_entry(path)
        root = inroot.open_root(directory)
        with open(w, "wb", buffering=0) as out:
            copyio.archive_from_root(root, "/" + base.lstrip("/"), out)
    except BaseException as err:  # noqa: BLE001 - one line to the parent, whatever it is
        code = 1
        text = str(err) if isinstance(err, LaminaError) else \
            f"{err.strerror}: {err.filename}" if isinstance(err, OSError) else repr(err)
        with contextlib.suppress(OSError):
            os.write(err_w, " ".join(text.split()).encode())
    os._exit(code)


class LocalSink:
    """Where a copy out lands: given the path stat (`plan`, before the first byte) it
    decides, by docker's rules, the directory to extract into and the name to take, and
    extracts the tar as it comes (a thread reading a pipe: started after the engine's
    child was forked) below that directory, never out of it (copyio.extract_into_root)."""

    def __init__(self, dst_path: str, src_path: str, keep_owners: bool) -> None:
        self.dst_path = dst_path
        self.src_path = src_path
        self.keep_owners = keep_owners
        self.pipe: BinaryIO | None = None
        self.thread: Any = None
        self.error: BaseException | None = None
        self.size = 0

    def plan(self, stat: dict[str, Any]) -> None:
        import threading

        src = CopyInfo(self.src_path, True, bool(stat["mode"] & MODE_DIR))
        # the engine archived the path under its own base (a followed link too)
        dst = copy_info_destination_path(self.dst_path)
        dst_dir, rename = prepare_archive_copy(src, dst)
        r, w = os.pipe2(os.O_CLOEXEC)
        self.pipe = open(w, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        self.thread = threading.Thread(target=self._extract, args=(r, dst_dir, rename),
                                       daemon=True)
        self.thread.start()

    def _extract(self, r: int, dst_dir: str, rename: tuple[str, str] | None) -> None:
        from adapters.kernel import inroot
        from adapters.storage import copyio

        try:
            with open(r, "rb", buffering=0) as source:
                try:
                    stream: Any = source
                    if rename is not None and rename[0] != rename[1]:
                        from adapters.runtime.files import ChunkReader, rebased

                        stream = ChunkReader(rebased(source, *rename))
                    root = inroot.open_root(dst_dir)
                    try:
                        copyio.extract_into_root(root, "/", stream,
                                                 no_overwrite_dir_non_dir=True,
                                                 chown=self.keep_owners)
                    finally:
                        os.close(root)
                finally:
                    while source.read(CHUNK):  # let the writer finish
                        pass
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self.error = err

    def write(self, data: Any) -> int:
        if self.pipe is None:
            raise BadInput("cp: the copy sent data before saying what it is")
        try:
            view, done = memoryview(data), 0
            while done < len(view):
                done += self.pipe.write(view[done:]) or 0
        except BrokenPipeError:
            self.close()
            self.finish()
            raise BadInput("cp: the local extraction stopped early") from None
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        if self.pipe is not None and not self.pipe.closed:
            self.pipe.close()
        if self.thread is not None:
            self.thread.join()

    def finish(self) -> None:
        err = self.error
        if err is None:
            return
        if isinstance(err, LaminaError):
            raise err
        if isinstance(err, OSError):
            raise _os_error("extract", err.filename or self.dst_path, err)
        raise BadInput(f"extracting into {self.dst_path}: {err}")


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "cp", help="copy files/folders between a container and the local filesystem",
        description="Copy files/folders between a container and the local filesystem. "
                    "CONTAINER:SRC_PATH DEST_PATH|- or SRC_PATH|- CONTAINER:DEST_PATH; '-' "
                    "reads a tar archive from stdin into a container directory, or writes "
                    "one to stdout. Works on running, paused and stopped containers.")
    p.add_argument("-a", "--archive", action="store_true",
                   help="archive mode: files copied in get the container's USER (docker's "
                        "copyUIDGID); files copied out keep their owners")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="always follow symbolic links in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no summary line (none is printed unless stdout is a terminal)")
    p.add_argument("source", metavar="SRC", help="CONTAINER:SRC_PATH, SRC_PATH or -")
    p.add_argument("destination", metavar="DEST", help="DEST_PATH, - or CONTAINER:DEST_PATH")
    p.set_defaults(func=cmd_cp)
