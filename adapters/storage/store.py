"""The LayerStore port on disk: read-only layers, read-write layers, the union view.

    <root>/layers/<id>/diff/         a read-only layer's files (overlay's form: whiteouts are
                                     0/0 character devices, opaque dirs carry an xattr)
    <root>/layers/<id>/layer.json    its metadata (the log is the truth; this is for people)
    <root>/layers/<id>/tar-split.gz  how to rebuild the exact layer tar it came from (see
                                     below), so that `save` writes blobs matching the diff_id
    <root>/layers/rw-<cid>/          a container's read-write layer: diff/ (UpperDir), work/,
                                     merged/ (MergedDir, mounted while the container runs),
                                     base-N/ (what diff/ held at its N-th commit by rename:
                                     lowers of its own, under diff/; see commit_rw_layer)
    <root>/layers/l/                 short links for images too deep for one page of options
    <root>/tmp/                      staging: a layer is written here, then renamed in place

A layer directory appears by rename, complete, or not at all.

Tar-split (docker keeps the same thing, as tar-split.json.gz): a layer's diff_id is the sha256
of the tar it was made from, byte for byte, and a tar written by another tool (GNU tar, Go's
archive/tar, podman) cannot be reproduced from the extracted files. So when a layer is
extracted, the bytes of the stream that are not file contents (headers, PAX records, padding,
the end-of-archive blocks and whatever followed them) are kept in `tar-split.gz`, with a
reference to the extracted file for each member's contents. `layer_blob` puts the two back
together and checks the digest as it streams.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO

from adapters.storage import overlay
from adapters.storage.union import (  # noqa: F401 - is_whiteout, is_opaque: named here before
    is_opaque,
    is_whiteout,
    union_stat,
)
from core import ports
from core.errors import BadInput, Conflict
from core.ports import LayerInfo, SaveEntry

if TYPE_CHECKING:
    from adapters.kernel.idmap import IdMap

# Imported when used (create and mount, which every container pays for, need neither):
# adapters.storage.layertar (tars), adapters.storage.archive (tar-splits, image archives).

RW_PREFIX = "rw-"
BASE_PREFIX = "base-"  # in rw-<cid>/: what its upper held at a commit (store.bases)
NEXT_UPPER = "next"  # in rw-<cid>/: a fresh upper on its way to diff/ (store._rebase)
SPLIT_FILE = "tar-split.gz"
_CHUNK = 1 << 20


IDMAP_MARKER = "idmapped"  # in rw-<cid>/ while its view is mounted idmapped: the map


class ViewBusy(Conflict):
    """A container's union view is mounted in the other mode (plain or idmapped)."""



class StagedLayer:
    """A layer extracted and checked under <root>/tmp, not yet in the store."""

    def __init__(self, path: str, diff_id: str, size: int) -> None:
        self.path, self.diff_id, self.size = path, diff_id, size


class LayerBlob:
    """A stored layer as its tar: `size` bytes with sha256 `digest`, written by `write_to`."""

    def __init__(self, digest: str, size: int, write_to: Callable[[BinaryIO], object],
                 cleanup: Callable[[], None] | None = None) -> None:
        self.digest, self.size, self.write_to = digest, size, write_to
        self.cleanup = cleanup or (lambda: None)


class LinuxLayerStore:
    """The LayerStore and Archive ports (core/ports.py: ImageStore) on disk. Beyond them,
    adapters of this host use its paths (layer_dir, diff_dir, merged_dir, init_dir),
    staging/stage_layer (a pull's fetch), mount/unmount/union_view (the runtime, build)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.layers_dir = os.path.join(root, "layers")
        self.tmp_dir = os.path.join(root, "tmp")
        self.fault: Callable[[str], None] = _no_fault  # adapters/faults.py arms it

    # --- paths ---------------------------------------------------------------------------

    def layer_dir(self, layer_id: str) -> str:
        return os.path.join(self.layers_dir, layer_id)

    def diff_dir(self, layer_id: str) -> str:
        return os.path.join(self.layers_dir, layer_id, "diff")

    def merged_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layers_dir, rw_layer, "merged")

    def work_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layers_dir, rw_layer, "work")

    @contextmanager
    def staging(self) -> Iterator[str]:
        """A fresh directory under <root>/tmp, removed unless renamed away."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        os.makedirs(self.layers_dir, exist_ok=True)
        path = tempfile.mkdtemp(dir=self.tmp_dir, prefix=_owner() + "-")  # whose, for reconcile
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # --- read-only layers --------------------------------------------------------------------

    def import_layer(self, source: Any, parent: str | None) -> LayerInfo:
        """Extract a layer tar (a path or a binary file object) into a new layer."""
        if isinstance(source, str | os.PathLike):
            try:
                with open(source, "rb") as f:
                    return self._import(f, parent)
            except FileNotFoundError:
                raise BadInput(f"no such file: {source}") from None
            except IsADirectoryError:
                raise BadInput(f"not a tar file: {source} is a directory") from None
        return self._import(source, parent)

    def _import(self, f: BinaryIO, parent: str | None) -> LayerInfo:
        with self.staging() as stage:
            staged = self.stage_layer(f, stage)
            return self._install(stage, staged.diff_id, parent)

    def stage_layer(self, source: BinaryIO, stage: str,
                    expect: str | None = None) -> StagedLayer:
        """Extract a layer tar (maybe gzip, bzip2 or xz compressed) into `stage`/diff, with
        its tar-split; with `expect`, its diff_id (of the uncompressed tar) must be that.

        One pass over the stream, whatever it is (a socket, a pipe, a file): the tar-split
        is written as the tar goes by, the diff_id hashed on the way. (It used to copy a
        stream it could not seek into a spool file and read that again for the tar-split:
        ~15% of a pull's time per layer.)"""
        from adapters.storage import layertar
        from adapters.storage.archive import (
            ZSTD,
            SplitWriter,
            decompress_errors,
            decompressor,
            peek,
        )

        try:
            head, source = peek(source, 6)
            if head.startswith(ZSTD):
                raise BadInput("zstd-compressed layers are not supported")
            opener = decompressor(head)
            plain = opener(source) if opener is not None else source
            split = SplitWriter(os.path.join(stage, SPLIT_FILE))
            try:
                diff_id, size = layertar.extract_layer_tar(plain, os.path.join(stage, "diff"),
                                                           split)
                split.finish(diff_id, size)
            finally:
                split.close()
        except layertar.LayerError as err:
            raise BadInput(str(err)) from None
        except BadInput:
            raise
        except OSError as err:
            if err.errno:
                raise  # the host's trouble (no space, I/O error), not the input's
            raise BadInput(f"corrupt compressed layer: {err}") from None
        except decompress_errors() as err:
            raise BadInput(f"corrupt compressed layer: {err}") from None
        if expect is not None and diff_id != expect:
            raise BadInput(f"layer content does not match its diff_id: expected {expect}, "
                           f"got {diff_id}")
        return StagedLayer(stage, diff_id, size)

    def install_layer(self, staged: ports.StagedLayer, parent: str | None) -> LayerInfo:
        """Move a staged layer into the store (one rename). Only this store's own staged
        layers can be installed: anything else is a programming error."""
        if not isinstance(staged, StagedLayer):
            raise TypeError(f"not a layer staged by this store: {staged!r}")
        return self._install(staged.path, staged.diff_id, parent)

    def _install(self, stage: str, diff_id: str, parent: str | None) -> LayerInfo:
        layer_id = os.urandom(32).hex()
        size = _tree_size(os.path.join(stage, "diff"))
        with open(os.path.join(stage, "layer.json"), "w") as f:
            json.dump({"id": layer_id, "parent": parent, "diff_id": diff_id, "size": size,
                       "owner": _owner()}, f)  # a live owner may yet register it
        self.fault("store.staged")
        os.rename(stage, self.layer_dir(layer_id))
        return LayerInfo(id=layer_id, diff_id=diff_id, size=size)

    def commit_rw_layer(self, rw_layer: str, parent: str | None) -> LayerInfo:
        """The read-write layer's changes made a new read-only layer.

        A container whose union view is not mounted (stopped: the engine holds its lock,
        so nothing mounts it meanwhile) is committed by rename, with one pass over its
        files (`_commit_by_rename`); a running or paused one, frozen by the engine, is
        copied (`_commit_by_copy`)."""
        self.settle(rw_layer)
        if overlay.is_mounted(self.merged_dir(rw_layer)):
            return self._commit_by_copy(rw_layer, parent)
        return self._commit_by_rename(rw_layer, parent)

    def _commit_by_rename(self, rw_layer: str, parent: str | None) -> LayerInfo:
        """Nothing of the files' contents is copied, and they are read once, to hash them:

        1. the new layer is a tree of hard links to the container's files, built under
           <root>/tmp (from the read-write layer and what earlier commits made of it, as
           overlay stacks them: see `bases`);
        2. the container is rebased (`_rebase`): its upper becomes a lower of its own,
           `base-N` in its read-write layer, read-only as the layer is, and a fresh empty
           upper takes its place. The two never write the inodes they share: a write
           through the union view copies the file up first, as for any image file. The
           container sees the same files;
        3. the layer is archived only to be hashed (its diff_id) and to keep its
           tar-split, then renamed into the store (store.staged before it).
        A crash before 2 leaves the container as it was, with a staged layer reconcile
        removes; between 2's renames, a container with no upper and the fresh one beside
        it (`settle` puts it in place, at the next use or reconcile); after 2, a layer the
        log never knew (reconcile removes it) on a container that sees what it saw."""
        with self.staging() as stage:
            _link_tree([self.diff_dir(rw_layer), *self.bases(rw_layer)],
                       os.path.join(stage, "diff"))
            self._rebase(rw_layer)  # the links are made: the upper may move
            return self._hash_and_install(stage, parent)

    def _commit_by_copy(self, rw_layer: str, parent: str | None) -> LayerInfo:
        """Two things at once, one on each core: `cp -a` copies the read-write layer in the
        kernel (copy_file_range) with modes, owners, times, hardlinks, xattrs and whiteout
        devices (overlayfs' private xattrs other than `opaque` are dropped after), while
        this process archives the same files as the layer tar, only to hash it (its
        diff_id) and to keep its tar-split, so that `save` streams the layer from its
        files rather than archiving it again. The container is frozen, so both read the
        same files; the tar leaves out what the copy drops (overlayfs' xattrs), and the
        copy keeps everything the tar records, so the copy's tar is the one hashed:
        tests/kernel/test_commit_layer.py checks both ways. (A running container's upper
        is in use by its mount: it can't be renamed away.)
        """
        import subprocess

        from adapters.storage import layertar
        from adapters.storage.archive import SplitWriter

        if self.bases(rw_layer):  # what earlier commits made of its upper is below it
            return self._commit_stacked_copy(rw_layer, parent)
        source = self.diff_dir(rw_layer)
        with self.staging() as stage:
            dest = os.path.join(stage, "diff")
            copy = subprocess.Popen(["cp", "-a", "--", source, dest], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            split = SplitWriter(os.path.join(stage, SPLIT_FILE))
            try:
                diff_id, size = layertar.write_layer_tar(source, _NullSink(), split)
                split.finish(diff_id, size)
            except BaseException:
                copy.kill()
                raise
            finally:
                split.close()
                _, err = copy.communicate()
            if copy.returncode != 0:
                raise OSError("copying the read-write layer failed: "
                              f"{err.decode(errors='replace').strip()}")
            _drop_private_xattrs(dest)
            return self._install(stage, diff_id, parent)

    def _commit_stacked_copy(self, rw_layer: str, parent: str | None) -> LayerInfo:
        """A running container committed by rename before: its changes are its upper and
        its bases stacked. The bases are linked (they are read-only), the upper copied."""
        with self.staging() as stage:
            _link_tree([self.diff_dir(rw_layer), *self.bases(rw_layer)],
                       os.path.join(stage, "diff"), copy_from=self.diff_dir(rw_layer))
            return self._hash_and_install(stage, parent)

    def squash_layers(self, layers: Sequence[str], below: Sequence[str],
                      parent: str | None) -> LayerInfo:
        """One new layer that amounts to `layers` (bottom first) over the layers `below`:
        them stacked as a stacked commit's are (linked: they are read-only), less each
        whiteout that hides nothing of `below` (adapters/storage/squash.py)."""
        from adapters.storage.squash import drop_idle_whiteouts

        with self.staging() as stage:
            dest = os.path.join(stage, "diff")
            _link_tree([self.diff_dir(lid) for lid in reversed(layers)], dest)
            drop_idle_whiteouts(dest, [self.diff_dir(lid) for lid in below])
            return self._hash_and_install(stage, parent)

    def _hash_and_install(self, stage: str, parent: str | None) -> LayerInfo:
        """A layer made in `stage`/diff: its tar hashed (its diff_id) and its tar-split
        kept, then installed."""
        from adapters.storage import layertar
        from adapters.storage.archive import SplitWriter

        split = SplitWriter(os.path.join(stage, SPLIT_FILE))
        try:
            diff_id, size = layertar.write_layer_tar(os.path.join(stage, "diff"),
                                                     _NullSink(), split)
            split.finish(diff_id, size)
        finally:
            split.close()
        return self._install(stage, diff_id, parent)

    def bases(self, rw_layer: str) -> list[str]:
        """The container's own lower dirs, top-most first: what its upper held at each
        commit by rename (`base-1` the first). They sit between its upper and its init
        layer, so that its union view is what it was before each commit."""
        path = self.layer_dir(rw_layer)
        try:
            names = [n for n in os.listdir(path) if n.startswith(BASE_PREFIX)]
        except FileNotFoundError:
            return []
        names.sort(key=lambda n: int(n[len(BASE_PREFIX):]), reverse=True)
        return [os.path.join(path, n) for n in names]

    def _rebase(self, rw_layer: str) -> None:
        """The upper becomes base-N and a fresh empty upper takes its place (made first,
        as `next`, then renamed in: `settle` finishes what a crash leaves)."""
        path = self.layer_dir(rw_layer)
        fresh = os.path.join(path, NEXT_UPPER)
        with suppress(FileNotFoundError):
            shutil.rmtree(fresh)
        upper = self.diff_dir(rw_layer)
        st = os.lstat(upper)
        os.mkdir(fresh)
        os.chown(fresh, st.st_uid, st.st_gid)
        os.chmod(fresh, stat.S_IMODE(st.st_mode))
        bases = self.bases(rw_layer)
        n = int(os.path.basename(bases[0])[len(BASE_PREFIX):]) + 1 if bases else 1
        os.rename(upper, os.path.join(path, f"{BASE_PREFIX}{n}"))
        self.fault("store.rebased")
        self.settle(rw_layer)

    def settle(self, rw_layer: str) -> None:
        """Finish or undo a rebase a crash interrupted: a fresh upper (`next`) with no
        upper beside it takes the upper's place; beside one, it is removed (the rebase
        never began)."""
        fresh = os.path.join(self.layer_dir(rw_layer), NEXT_UPPER)
        if not os.path.isdir(fresh):
            return
        if os.path.lexists(self.diff_dir(rw_layer)):
            shutil.rmtree(fresh, ignore_errors=True)
        else:
            with suppress(FileNotFoundError):  # settled meanwhile by another command
                os.rename(fresh, self.diff_dir(rw_layer))

    def unsettled(self, rw_layer: str) -> bool:
        """Whether a crash left a rebase half done (see `settle`)."""
        return os.path.isdir(os.path.join(self.layer_dir(rw_layer), NEXT_UPPER))

    def layer_tar(self, layer_id: str, out: BinaryIO) -> tuple[str, int]:
        """Write a stored layer as its OCI layer tar: the very bytes its diff_id names."""
        blob = self.layer_blob(layer_id)
        try:
            blob.write_to(out)
        finally:
            blob.cleanup()
        return blob.digest, blob.size

    def layer_blob(self, layer_id: str) -> LayerBlob:
        """A stored layer as its tar, size and digest known before a byte is written.

        From the tar-split when there is one; a layer stored before tar-splits existed is
        archived again (deterministically) into a temp file first."""
        from adapters.storage import layertar
        from adapters.storage.archive import read_split_header, rebuild_from_split

        split = os.path.join(self.layer_dir(layer_id), SPLIT_FILE)
        if os.path.exists(split):
            digest, size = read_split_header(split)
            diff = self.diff_dir(layer_id)
            return LayerBlob(digest, size, lambda out: rebuild_from_split(split, diff, out))
        os.makedirs(self.tmp_dir, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(dir=self.tmp_dir, prefix="blob-")  # noqa: SIM115
        try:
            digest, size = layertar.write_layer_tar(self.diff_dir(layer_id), tmp)
            tmp.flush()
        except BaseException:
            tmp.close()
            raise

        def write_to(out: BinaryIO) -> None:
            tmp.seek(0)
            shutil.copyfileobj(tmp, out, _CHUNK)

        return LayerBlob(digest, size, write_to, tmp.close)

    def remove_layer(self, layer_id: str) -> None:
        path = self.layer_dir(layer_id)
        overlay.remove_link_for(os.path.join(path, "diff"), self.layers_dir)
        _remove_tree(path, self.tmp_dir)

    # --- read-write layers and the union view ---------------------------------------------

    def create_rw_layer(self, container_id: str, layers: Sequence[str]) -> str:
        rw = RW_PREFIX + container_id
        shared = self._shared_init(layers)
        with self.staging() as stage:
            for sub in ("diff", "work", "merged"):
                os.mkdir(os.path.join(stage, sub))
            if shared is None:
                _init_layer(os.path.join(stage, "init"), self.lowers(layers))
            else:
                os.symlink(shared, os.path.join(stage, "init"))
            with open(os.path.join(stage, "lower"), "w") as f:
                f.write("\n".join(layers))
            with open(os.path.join(stage, "owner"), "w") as f:
                f.write(_owner())  # a live owner may yet record the container
            self.fault("store.staged")
            os.rename(stage, self.layer_dir(rw))
        return rw

    def _shared_init(self, layers: Sequence[str]) -> str | None:
        """The init layer of every container of this stack of layers, made by the first
        (its contents depend on the image's layers alone, which never change), as a path
        relative to a read-write layer's directory; None for an image without layers.

        Why: each container made its own (six directories, four files and the image's
        owners and modes on them: ~1.5 ms of every create, on the command's clock, and as
        many entries to delete at its removal). It lives in the top layer's directory,
        named by the whole stack, and goes with that layer: no container of the stack can
        outlive it. Two creates making it at once: one rename wins, the other's copy goes."""
        if not layers:
            return None
        import hashlib

        key = hashlib.sha256("\n".join(layers).encode()).hexdigest()[:16]
        name = f"{INIT_PREFIX}{key}"
        path = os.path.join(self.layer_dir(layers[-1]), name)
        if not os.path.isdir(path):
            with self.staging() as stage:
                _init_layer(os.path.join(stage, name), self.lowers(layers))
                try:
                    os.rename(os.path.join(stage, name), path)
                except OSError:
                    if not os.path.isdir(path):
                        raise  # not made meanwhile by another create: a real failure
        return os.path.join("..", layers[-1], name)

    def lowers(self, layers: Sequence[str]) -> list[str]:
        """Lower directories for overlayfs, top-most first; an empty image gets an empty dir."""
        if not layers:
            empty = os.path.join(self.layers_dir, "empty")
            os.makedirs(empty, exist_ok=True)
            return [empty]
        return [self.diff_dir(lid) for lid in reversed(layers)]

    def mount(self, rw_layer: str, layers: Sequence[str], idmap: IdMap | None = None) -> str:
        """Mount the union view at MergedDir (idempotent) and return its path.

        With `idmap` (a container of a --userns-remap root) every layer is an idmapped
        mount (overlay.mount_idmapped): the container's root sees the image as root's and
        writes container ids to the disk. A view already mounted the other way is refused,
        not reused: a remapped container on a plain view would see its files as nobody's,
        a plain one on an idmapped view would write shifted ids into its layer."""
        merged = self.merged_dir(rw_layer)
        if overlay.is_mounted(merged):
            if self.mounted_idmap(rw_layer) != idmap:
                raise ViewBusy(f"the union view of {rw_layer[:15]} is mounted "
                               f"{'plain' if idmap else 'idmapped'} by another user of it "
                               "(an export or a build): try again")
            return merged
        self.settle(rw_layer)
        init = os.path.join(self.layer_dir(rw_layer), "init")
        lowers = [*self.bases(rw_layer), init, *self.lowers(layers)]
        marker = self._idmap_marker(rw_layer)
        if idmap is None:
            with suppress(FileNotFoundError):
                os.unlink(marker)
            overlay.mount_overlay(lowers, self.diff_dir(rw_layer), self.work_dir(rw_layer),
                                  merged, self.layers_dir)
            return merged
        with open(marker, "w") as f:  # written first: a mount is never there without it
            f.write(idmap.uid_map() + "/\n" + idmap.gid_map())
        try:
            overlay.mount_idmapped(lowers, self.layer_dir(rw_layer), merged, idmap)
        except BaseException:
            os.unlink(marker)
            raise
        return merged

    def _idmap_marker(self, rw_layer: str) -> str:
        return os.path.join(self.layer_dir(rw_layer), IDMAP_MARKER)

    def mounted_idmap(self, rw_layer: str) -> IdMap | None:
        """The id map the union view is mounted with (None: plain or not mounted)."""
        from adapters.kernel.idmap import IdMap, parse_map

        if not overlay.is_mounted(self.merged_dir(rw_layer)):
            return None
        try:
            with open(self._idmap_marker(rw_layer)) as f:
                uids, _, gids = f.read().partition("/\n")
        except FileNotFoundError:
            return None
        return IdMap(parse_map(uids), parse_map(gids))

    def unmount(self, rw_layer: str) -> None:
        overlay.unmount(self.merged_dir(rw_layer))
        with suppress(FileNotFoundError):
            os.unlink(self._idmap_marker(rw_layer))

    @contextmanager
    def union_view(self, rw_layer: str, layers: Sequence[str]) -> Iterator[str]:
        """The union view for the length of a block; left mounted (as it was, idmapped or
        not: see `mounted_idmap`) if it already was, else a plain view."""
        merged = self.merged_dir(rw_layer)
        was = overlay.is_mounted(merged)
        if not was:
            self.mount(rw_layer, layers)
        try:
            yield merged
        finally:
            if not was:
                self.unmount(rw_layer)

    def copy_out(self, rw_layer: str, layers: Sequence[str], path: str, dest: str) -> None:
        """A new volume's first contents: the directory `path` of the union view, found with
        openat2(RESOLVE_IN_ROOT) (an image's symlink at the mount point can't lead to a host
        directory) and copied by `cp -a` through this process's fd of it."""
        import subprocess

        from adapters.kernel import inroot

        first = next((part for part in path.split("/") if part), "")
        self.settle(rw_layer)
        dirs = [self.diff_dir(rw_layer), *self.bases(rw_layer), self.init_dir(rw_layer),
                *self.lowers(layers)]
        if first and not any(os.path.lexists(os.path.join(d, first)) for d in dirs):
            return  # no layer has anything there: nothing to copy, no view to mount
        with self.union_view(rw_layer, layers) as merged:
            root = inroot.open_root(merged)
            try:
                try:
                    fd = inroot.open_in_root(root, path, os.O_PATH | os.O_DIRECTORY)
                except (FileNotFoundError, NotADirectoryError):
                    return  # the image has nothing there: the volume starts empty
                try:
                    done = subprocess.run(["cp", "-a", "--", f"/proc/self/fd/{fd}/.",
                                           dest], capture_output=True, text=True,
                                          pass_fds=(fd,))
                finally:
                    os.close(fd)
            finally:
                os.close(root)
        if done.returncode != 0:
            raise OSError(f"filling the volume from the image's {path} failed: "
                          f"{done.stderr.strip()}")

    def export(self, rw_layer: str, layers: Sequence[str],
               output: str | BinaryIO) -> tuple[str, int]:
        """The union view as one flat tar (whiteouts applied, nothing of the layers' own
        metadata), mounted for the length of the export if it was not already. `output` is a
        path (written to a temp file, then renamed) or a binary stream."""
        from adapters.storage import layertar
        from adapters.storage.archive import output_file

        with self.union_view(rw_layer, layers) as merged:
            idmap = self.mounted_idmap(rw_layer)
            write = layertar.write_flat_tar if idmap is None else \
                (lambda root, out: _flat_tar_unmapped(root, out, idmap))
            try:
                if isinstance(output, str):
                    with output_file(output) as f:
                        return write(merged, f)
                return write(merged, output)
            except layertar.LayerError as err:
                raise BadInput(str(err)) from None

    # --- image archives (save and load) -----------------------------------------------------

    def save_images(self, images: Sequence[SaveEntry],
                    output: str | BinaryIO) -> tuple[str, int]:
        """Write images as one docker-archive + OCI-layout tar (adapters/storage/archive.py).

        Each image: id, config (the bytes), tags, layers (ids, bottom first), diff_ids and
        parent (an image also saved, or None). Returns the archive's (digest, size)."""
        from adapters.storage import archive

        blobs: dict[str, LayerBlob] = {}
        try:
            todo = []
            for img in images:
                layers = []
                for lid, diff_id in zip(img["layers"], img["diff_ids"], strict=True):
                    if lid not in blobs:
                        blobs[lid] = self.layer_blob(lid)
                    if blobs[lid].digest != diff_id:
                        raise archive.LayerDamaged(f"layer {lid[:12]} is {blobs[lid].digest}, "
                                                   f"but its image says {diff_id}")
                    layers.append(blobs[lid])
                cfg = json.loads(img["config"])
                platform = {"architecture": cfg.get("architecture", "amd64"),
                            "os": cfg.get("os", "linux")}
                todo.append(archive.SaveImage(img["id"], img["config"], list(img["tags"]),
                                              layers, img.get("parent"), platform))
            if isinstance(output, str):
                with archive.output_file(output) as f:
                    return archive.write_archive(todo, f)
            return archive.write_archive(todo, output)
        finally:
            for blob in blobs.values():
                blob.cleanup()

    @contextmanager
    def open_archive(self, source: Any) -> Iterator[ArchiveSession]:
        """A docker or OCI archive (a path or a stream) opened for `load`; whatever is staged
        from it and not installed by the end of the block is removed."""
        from adapters.storage import archive

        with self.staging() as work, archive.opened(source, work) as reader:
            yield ArchiveSession(self, reader, work)

    def init_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layer_dir(rw_layer), "init")

    def rw_size(self, rw_layer: str) -> int:
        return sum(_tree_size(d) for d in (self.diff_dir(rw_layer), *self.bases(rw_layer)))

    def changes(self, rw_layer: str, layers: Sequence[str]) -> list[tuple[str, str]]:
        """`docker diff`: the read-write layer against the image's layers (the init layer's
        mount points and bound files not counted), from the directories, mounted or not."""
        from adapters.storage.union import changes

        self.settle(rw_layer)
        lowers = [self.init_dir(rw_layer), *(self.diff_dir(lid) for lid in reversed(layers))]
        bases = self.bases(rw_layer)
        upper = self.diff_dir(rw_layer)
        return changes([upper, *bases] if bases else upper, lowers)

    def remove_rw_layer(self, rw_layer: str) -> None:
        path = self.layer_dir(rw_layer)
        if not os.path.exists(path):
            return
        self.unmount(rw_layer)
        _remove_tree(path, self.tmp_dir)


# What docker's `-init` layer holds: the mount points and files the runtime binds over, so
# that they never show up in the container's own read-write layer (diff, commit). As docker,
# only what the image lacks is made: a directory the image has keeps its own mode, owner and
# mtime in the union (the init layer is the top-most lower, so its copy would win).
INIT_DIRS = ("dev", "proc", "sys", "etc", "dev/pts", "dev/shm")
INIT_PREFIX = "init-"  # a stack's shared init layer, in its top layer's directory
INIT_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "dev/console")


def _init_layer(path: str, lowers: Sequence[str]) -> None:
    os.makedirs(path, mode=0o755)
    below: dict[str, os.stat_result | None] = {}

    def seen(rel: str) -> os.stat_result | None:
        if rel not in below:
            below[rel] = union_stat(lowers, rel)
        return below[rel]

    def parents(rel: str) -> None:
        head = os.path.dirname(rel)
        if head and not os.path.isdir(os.path.join(path, head)):
            parents(head)
            os.mkdir(os.path.join(path, head), 0o755)

    for d in INIT_DIRS:
        if seen(d) is None:
            parents(d)
            os.makedirs(os.path.join(path, d), mode=0o755, exist_ok=True)
    for name in INIT_FILES:
        if seen(name) is None and not os.path.lexists(os.path.join(path, name)):
            parents(name)
            with open(os.path.join(path, name), "w"):
                pass
    # a directory made only to hold a mount point looks like the image's own
    for top, dirs, _ in os.walk(path, topdown=False):
        for name in dirs:
            full = os.path.join(top, name)
            st = seen(os.path.relpath(full, path))
            if st is not None and stat.S_ISDIR(st.st_mode):
                os.chown(full, st.st_uid, st.st_gid)
                os.chmod(full, stat.S_IMODE(st.st_mode))
                os.utime(full, ns=(st.st_atime_ns, st.st_mtime_ns))


class _NullSink:
    """A file that keeps nothing: the layer tar is written only to be digested."""

    def write(self, data: bytes | memoryview, /) -> int:
        return len(data)


def _drop_private_xattrs(root: str) -> None:
    """Remove overlayfs' bookkeeping xattrs (origin, impure, ...) but keep `opaque`."""
    from adapters.storage.layertar import OVERLAY_OPAQUE, PRIVATE_XATTRS

    for dirpath, dirs, files in os.walk(root):
        for name in [None, *dirs, *files]:
            path = dirpath if name is None else os.path.join(dirpath, name)
            try:
                names = os.listxattr(path, follow_symlinks=False)
            except OSError:
                continue
            for attr in names:
                if attr.startswith(PRIVATE_XATTRS) and attr != OVERLAY_OPAQUE:
                    os.removexattr(path, attr, follow_symlinks=False)


def _link_tree(uppers: Sequence[str], dest: str, copy_from: str | None = None) -> None:
    """`dest` made a layer of the overlay upper dirs `uppers` stacked (top-most first; see
    union.stacked_entries): directories made anew with their metadata (opaque where the
    stack hides the layers below), everything else a hard link to its top-most copy, or a
    copy (`cp -a`'s way: contents, mode, owner, times, xattrs) of what is in `copy_from`
    (an upper still in use). overlayfs' private xattrs, other than opaque, are dropped."""
    from adapters.storage.layertar import OVERLAY_OPAQUE, PRIVATE_XATTRS
    from adapters.storage.union import stacked_entries

    os.mkdir(dest)
    top = uppers[0]
    dirs: list[tuple[str, str, os.stat_result]] = [(dest, top, os.lstat(top))]
    links: dict[tuple[int, int], str] = {}  # a copied file's other names stay hard links
    for rel, src_top, st, opaque in stacked_entries(uppers):
        src, path = os.path.join(src_top, rel), os.path.join(dest, rel)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(path)
            if opaque:
                os.setxattr(path, OVERLAY_OPAQUE, b"y", follow_symlinks=False)
            dirs.append((path, src, st))
        elif src_top == copy_from:
            first = links.get((st.st_dev, st.st_ino))
            if first is not None:
                os.link(first, path)
                continue
            _copy_entry(src, path)
            links[(st.st_dev, st.st_ino)] = path
        else:
            os.link(src, path, follow_symlinks=False)
    for path, src, st in reversed(dirs):  # children first: their times stay as set
        for name in os.listxattr(src, follow_symlinks=False):
            if not name.startswith(PRIVATE_XATTRS):
                os.setxattr(path, name, os.getxattr(src, name, follow_symlinks=False),
                            follow_symlinks=False)
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    _drop_private_xattrs(dest)


def _copy_entry(src: str, dest: str) -> None:
    """One entry (not a directory) copied as `cp -a` copies it."""
    import subprocess

    st = os.lstat(src)
    if stat.S_ISREG(st.st_mode):  # the common case, without a process each
        shutil.copy2(src, dest)  # contents, times, xattrs
        os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    done = subprocess.run(["cp", "-a", "--no-dereference", "--", src, dest],
                          stdin=subprocess.DEVNULL, capture_output=True)
    if done.returncode != 0:
        raise OSError(f"copying {src} failed: {done.stderr.decode(errors='replace').strip()}")


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove_tree(path: str, tmp_dir: str) -> None:
    """Rename out of sight first, then delete: a half-deleted layer is never visible."""
    if not os.path.exists(path):
        return
    os.makedirs(tmp_dir, exist_ok=True)
    doomed = tempfile.mkdtemp(dir=tmp_dir, prefix=f"rm-{_owner()}-")
    with suppress(FileNotFoundError):  # removed meanwhile (by a reconcile): that's removed
        os.rename(path, os.path.join(doomed, "x"))
    from adapters.deferred import later

    later(partial(shutil.rmtree, doomed, ignore_errors=True))  # a served one: after the answer


def _no_fault(name: str) -> None:
    """No fault point is armed (see adapters/faults.py)."""


def _owner() -> str:
    """This process as `pid.starttime` (adapters/kernel/proc.py), stamped on what it writes
    so that reconciliation can tell a half-written leftover from work in progress."""
    from adapters.kernel.proc import stamp

    return stamp()


def _flat_tar_unmapped(root: str, out: BinaryIO, idmap: IdMap) -> tuple[str, int]:
    """`write_flat_tar` of an idmapped view (a running remapped container's) with the
    container's ids, not the host's: the host sees its files shifted (0 as 200000), a
    process in a user namespace holding the same map sees them as the container does. So
    a forked child joins such a namespace (a fresh one: the container need not live) and
    writes the tar into a pipe; this process copies it to `out`, hashing what it copies.
    An id outside the map shows as the overflow id (65534) there, as it does inside."""
    import hashlib

    from adapters.kernel import idmap as idmaps
    from adapters.kernel import libc
    from adapters.storage import layertar

    data_r, data_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    with idmaps.userns_holding(idmap) as ns:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a child: reports through err_w
            code = 0
            try:
                os.close(data_r)
                os.close(err_r)
                libc.setns(ns, libc.CLONE_NEWUSER)
                with os.fdopen(data_w, "wb") as f:
                    layertar.write_flat_tar(root, f)
            except BaseException as err:  # noqa: BLE001 - everything must reach the pipe
                os.write(err_w, str(err).encode() or b"failed")
                code = 1
            os._exit(code)
    os.close(data_w)
    os.close(err_w)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(data_r, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    finally:
        status = os.waitpid(pid, 0)[1]
        with os.fdopen(err_r, "rb") as f:
            failed = f.read().decode(errors="replace")
    if failed or os.waitstatus_to_exitcode(status) != 0:
        raise layertar.LayerError(f"exporting the remapped view failed: {failed or status}")
    return f"sha256:{digest.hexdigest()}", size


class ArchiveSession:
    """`load`'s view of an archive: its images, and each layer staged (extracted, checked)."""

    def __init__(self, store: LinuxLayerStore, reader: Any, work: str) -> None:
        self.store, self.reader, self.work = store, reader, work
        self._images: list[Any] | None = None

    def images(self) -> list[Any]:
        """LoadImage objects (adapters/storage/archive.py): id, config, diff_ids, tags..."""
        if self._images is None:
            self._images = self.reader.images()
        return self._images

    def stage(self, image: Any, index: int) -> StagedLayer:
        """Extract layer `index` of `image` under <root>/tmp; its blob must match its
        descriptor's digest and its tar the config's diff_id."""
        layer, diff_id = image.layers[index], image.diff_ids[index]
        if layer.digest and layer.digest != diff_id and \
                self.reader.blob_digest(layer) != layer.digest:
            raise BadInput(f"layer blob {layer.member!r} does not match its digest "
                           f"{layer.digest}")
        stage = tempfile.mkdtemp(dir=self.work, prefix="layer-")
        with self.reader.open_layer(layer) as f:
            return self.store.stage_layer(f, stage, expect=diff_id)
