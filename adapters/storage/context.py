"""COPY and ADD on the host: a build context (or an image's root) into a union view.

Rules, as docker's classic builder:
- `.dockerignore` patterns (Go filepath.Match with `**`, `!` exceptions, the last match
  wins) hide context files from COPY, ADD and the cache digest;
- a source must stay inside the context: `../x` and a symlink leading out are refused;
  inside an image's root, symlinks resolve within that root;
- a directory source copies its contents; a file goes to `dest` or, when `dest` ends with
  `/` or is a directory, into it; ADD extracts a local tar (plain, gzip, bzip2, xz);
- context files arrive owned by 0:0 (or --chown); files from an image or a tar keep theirs;
- paths in the container resolve within its root (a symlink in the image never leads the
  copy onto the host).

The digest (the cache key of a COPY step) covers each file's path, type, mode, size, content,
link target and the --chown/--chmod asked for; not mtimes, so a `touch` reuses the cache.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from core.errors import BadInput

_MAX_LINKS = 40
_WILDCARD = re.compile(r"[*?\[]")


# --- .dockerignore -----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match plus `**` (any number of directories), anchored at the root."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise BadInput(f".dockerignore: bad pattern {pattern!r}")
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else re.escape(body)
                              .replace("\\-", "-")) + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?$")  # a matched directory hides its contents


@dataclass(frozen=True)
class IgnoreRules:
    rules: tuple[tuple[bool, re.Pattern[str]], ...] = ()

    @classmethod
    def load(cls, context_dir: str) -> IgnoreRules:
        path = os.path.join(context_dir, ".dockerignore")
        if not os.path.isfile(path):
            return cls()
        with open(path, encoding="utf-8", errors="replace") as f:
            return cls.parse(f.read())

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        rules = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line[1:].strip() if negate else line
            cleaned = os.path.normpath(line).lstrip("/")
            if cleaned in (".", ""):
                continue
            rules.append((negate, _pattern_regex(cleaned)))
        return cls(tuple(rules))

    def has_exceptions(self) -> bool:
        return any(negate for negate, _ in self.rules)

    def ignored(self, rel: str) -> bool:
        """Whether a context-relative path is hidden (the last matching rule decides)."""
        hidden = False
        for negate, regex in self.rules:
            if regex.match(rel):
                hidden = not negate
        return hidden


# --- resolving paths ---------------------------------------------------------------------------


def resolve_in_root(root: str, path: str) -> str:
    """`path` inside `root` with every symlink followed as if `root` were `/` (never out)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        if os.path.islink(candidate):
            links += 1
            if links > _MAX_LINKS:
                raise BadInput(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return os.path.join(root, *done)


@dataclass(frozen=True)
class Entry:
    """One file to copy: its host path, its path relative to the copied source, its stat."""

    path: str
    rel: str
    st: os.stat_result


@dataclass
class DirSource:
    """A directory COPY reads from: the context (confined, with .dockerignore) or an image's
    mounted root (symlinks resolved inside it)."""

    root: str
    context: bool = True
    ignore: IgnoreRules = field(default_factory=IgnoreRules)
    keep_owner: bool = False

    def resolve(self, src: str) -> list[str]:
        """Host paths a COPY source names (wildcards expanded), each checked."""
        rel = os.path.normpath(src.lstrip("/")) if src.strip("/") else "."
        if rel == ".." or rel.startswith("../"):
            raise BadInput(f"forbidden path outside the build context: {src}")
        if _WILDCARD.search(rel):
            found = sorted(p for p in glob.glob(os.path.join(self.root, rel))
                           if not self._hidden(p))
            if not found:
                raise BadInput(f"no source files were specified: {src}")
            return [self._check(p, src) for p in found]
        path = self._check(os.path.join(self.root, rel), src)
        if not os.path.lexists(path) or (rel != "." and self._hidden(path)):
            raise BadInput(f"file not found in build context or excluded by .dockerignore: "
                           f"stat {src}: file does not exist")
        return [path]

    def _check(self, path: str, src: str) -> str:
        if not self.context:
            rel = os.path.relpath(path, self.root)
            return resolve_in_root(self.root, rel)
        real, top = os.path.realpath(path), os.path.realpath(self.root)
        if real != top and not real.startswith(top + os.sep):
            raise BadInput(f"forbidden path outside the build context: {src} ({real})")
        return real

    def _hidden(self, path: str) -> bool:
        if not self.context:
            return False
        return self.ignore.ignored(os.path.relpath(path, self.root))

    def entries(self, path: str) -> Iterator[Entry]:
        """The source itself, then (for a directory) everything under it, sorted."""
        yield Entry(path, "", os.lstat(path))
        if not os.path.isdir(path) or os.path.islink(path):
            return
        # A hidden directory that `!` rules bring something back from is copied too (it
        # holds what came back), as docker copies the directories of the files it sends.
        held: dict[str, Entry] = {}
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs + files):
                full = os.path.join(top, name)
                if self._hidden(full):
                    if name in dirs and not self.ignore.has_exceptions():
                        dirs.remove(name)  # with `!` rules, something below may come back
                    elif name in dirs:
                        held[full] = Entry(full, os.path.relpath(full, path), os.lstat(full))
                    continue
                yield from _held_parents(held, full)
                yield Entry(full, os.path.relpath(full, path), os.lstat(full))

    def digest(self, sources: Sequence[str], chown: str, chmod: str, add: bool) -> str:
        h = hashlib.sha256(f"chown={chown}\0chmod={chmod}\0add={add}\0".encode())
        kinds = []
        for src in sources:
            for path in self.resolve(src):
                kinds.append("dir" if os.path.isdir(path) else "file")
                h.update(f"src\0{os.path.basename(path)}\0".encode())
                for e in self.entries(path):
                    _hash_entry(h, e, self.keep_owner)
        kind = kinds[0] if len(kinds) == 1 else "multi"
        return f"{kind}:{h.hexdigest()}"


def _held_parents(held: dict[str, Entry], full: str) -> Iterator[Entry]:
    """The held (hidden) directories above `full`, outermost first, each given once."""
    for parent in sorted(p for p in held if full.startswith(p + os.sep)):
        yield held.pop(parent)


def _hash_entry(h: hashlib._Hash, e: Entry, keep_owner: bool) -> None:
    st = e.st
    owner = f"{st.st_uid}:{st.st_gid}" if keep_owner else ""
    h.update(f"{e.rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0{owner}\0"
             .encode())
    if stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(e.path).encode() + b"\0")
    elif stat.S_ISREG(st.st_mode):
        h.update(f"{st.st_size}\0".encode())
        with open(e.path, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())


# --- writing into the container's root ---------------------------------------------------------


def lookup_owner(root: str, chown: str) -> tuple[int, int] | None:
    """--chown=USER[:GROUP] with names from the container's /etc/passwd and /etc/group;
    a user alone gives the same number as group (docker's rule)."""
    if not chown:
        return None
    user, _, group = chown.partition(":")
    uid = _lookup(root, "etc/passwd", user, 2)
    gid = _lookup(root, "etc/group", group, 2) if group else uid
    return uid, gid


def _lookup(root: str, table: str, name: str, column: int) -> int:
    if name.isdigit():
        return int(name)
    path = resolve_in_root(root, table)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) > column and fields[0] == name and fields[column].isdigit():
                    return int(fields[column])
    except OSError:
        pass
    what = "user" if "passwd" in table else "group"
    raise BadInput(f"unable to convert {what} {name!r} to a number: no such {what} in "
                   f"/{table} of the image")


def is_archive(path: str) -> bool:
    """A local file that ADD extracts: a tar, maybe gzip, bzip2 or xz compressed."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return False
    try:
        with tarfile.open(path) as tar:  # a compressed file that holds no tar is copied
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def extract_archive(path: str, dest: str) -> None:
    """Extract into a staging directory with tarfile's `tar` filter (no absolute names, no
    way out of dest, no setuid bits), owners kept by number."""
    try:
        with tarfile.open(path) as tar:
            tar.extractall(dest, filter="tar", numeric_owner=True)
    except (tarfile.TarError, OSError) as err:
        raise BadInput(f"ADD: cannot extract {os.path.basename(path)}: {err}") from None


@dataclass
class Copier:
    """Writes entries under `root` (a mounted union view) at container paths."""

    root: str
    owner: tuple[int, int] | None
    chmod: int | None

    def mkdirs(self, cpath: str) -> str:
        """The directory at container path `cpath`, made (0755, root) where missing."""
        host = resolve_in_root(self.root, cpath)
        if not os.path.isdir(host):
            parent = os.path.dirname(cpath.rstrip("/")) or "/"
            if parent != cpath:
                self.mkdirs(parent)
            host = resolve_in_root(self.root, cpath)
            if os.path.lexists(host) and not os.path.isdir(host):
                raise BadInput(f"cannot copy to {cpath}: it exists and is not a directory")
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
        return host

    def copy_into(self, source: DirSource, path: str, cdest: str, keep_owner: bool) -> None:
        """A source's contents (a directory) or itself (a file) at container path cdest."""
        entries = source.entries(path)
        top = next(entries)
        if stat.S_ISDIR(top.st.st_mode):
            self.mkdirs(cdest)
            for e in entries:
                self.put(e, cdest.rstrip("/") + "/" + e.rel, keep_owner)
            return
        if cdest.endswith("/") or os.path.isdir(resolve_in_root(self.root, cdest)):
            cdest = cdest.rstrip("/") + "/" + os.path.basename(path)
        self.mkdirs(os.path.dirname(cdest) or "/")
        self.put(top, cdest, keep_owner)

    def put(self, e: Entry, cpath: str, keep_owner: bool) -> None:
        parent = resolve_in_root(self.root, os.path.dirname(cpath) or "/")
        host = os.path.join(parent, os.path.basename(cpath))
        mode = e.st.st_mode
        if stat.S_ISDIR(mode):
            if not os.path.isdir(host):
                if os.path.lexists(host):
                    os.unlink(host)
                os.mkdir(host)
        else:
            if os.path.isdir(host) and not os.path.islink(host):
                shutil.rmtree(host)
            elif os.path.lexists(host):
                os.unlink(host)
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(e.path), host)
            elif stat.S_ISREG(mode):
                shutil.copyfile(e.path, host, follow_symlinks=False)
            else:
                return  # devices, fifos and sockets are not copied
        uid, gid = self.owner or ((e.st.st_uid, e.st.st_gid) if keep_owner else (0, 0))
        os.lchown(host, uid, gid)
        if not stat.S_ISLNK(mode):
            perm = self.chmod if self.chmod is not None else stat.S_IMODE(mode)
            os.chmod(host, perm)
        os.utime(host, ns=(e.st.st_atime_ns, e.st.st_mtime_ns), follow_symlinks=False)


def parse_chmod(text: str) -> int | None:
    if not text:
        return None
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise BadInput(f"invalid --chmod={text}: use octal digits such as 755")
    return int(text, 8)
