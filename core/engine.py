"""The service layer: one method per command, the same for the CLI and the HTTP service.

Each command: resolve its target from the read model, ask the lifecycle machine whether the
move is legal, call the ports, then append its events (all in one atomic append, with the
version it read as the expected version). A refused command appends one CommandRejected and
raises. Order of writes: files are made before the log says they exist, and deleted only
after the log says they are gone, so a crash leaves at worst an orphan for reconciliation.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from core import compat, lifecycle, rootconfig, security
from core.errors import (
    BadInput,
    ConcurrencyError,
    Conflict,
    IllegalMove,
    LaminaError,
    NotFound,
    StoreError,
)
from core.images import RmiPlan, chain_id, image_config, image_id, orphaned_by_container, plan_rmi
from core.model import Container, Image, ProjectionError
from core.naming import name_for
from core.ports import EventLog, Ids, LayerStore, Runtime
from core.process import command_line, extra_host
from core.references import (
    check_name,
    is_id_prefix,
    normalize_tag,
    pick_unique,
    short,
    strip_digest_prefix,
)
from core.signals import parse_signal
from events import types as ev

# What the CLI says when the machine refuses a move, keyed by (trigger, state).
_REFUSALS = {
    ("start", "running"): "container {id} is already running",
    ("start", "paused"): "container {id} is paused, unpause it instead",
    ("stop", "stopped"): "container {id} is not running",
    ("kill", "stopped"): "container {id} is not running",
    ("signal", "stopped"): "container {id} is not running",
    ("pause", "stopped"): "container {id} is not running",
    ("pause", "paused"): "container {id} is already paused",
    ("unpause", "running"): "container {id} is not paused",
    ("unpause", "stopped"): "container {id} is not paused",
    ("exec", "stopped"): "container {id} is not running",
    ("exec", "paused"): "container {id} is paused, unpause the container before exec",
    ("restart", "paused"): "cannot restart container {id}: container is paused",
    ("rm", "running"): "cannot remove container {id}: container is running: stop the "
                       "container before removing or force remove",
    ("rm", "paused"): "cannot remove container {id}: container is paused: unpause and stop "
                      "the container before removing or force remove",
}


@dataclass
class _Command:
    name: str
    target: str
    meta: dict[str, Any]


@dataclass
class Engine:
    """Commands over ports. Holds no state of its own: the log is the state."""

    log: EventLog
    layers: LayerStore
    runtime: Runtime
    ids: Ids
    clock: Callable[[], str]
    meta: Callable[[], dict[str, Any]] = field(default=dict)

    # --- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _command(self, name: str, target: str) -> Iterator[_Command]:
        """Run one command; a LaminaError becomes a CommandRejected event, then re-raised."""
        cmd = _Command(name, target, {**self.meta(), "command": name,
                                      "command_id": self.ids.new_id()})
        try:
            yield cmd
        except LaminaError as err:
            if not isinstance(err, StoreError):
                self._reject(cmd, str(err))
            raise

    def refuse(self, command: str, target: str, reason: str) -> None:
        """A request an adapter can't honour, judged where only the adapter can see (the
        client's terminal, say): recorded as refused like any other, then raised."""
        with self._command(command, target):
            raise BadInput(reason)

    def _reject(self, cmd: _Command, reason: str) -> None:
        event = ev.CommandRejected(id=cmd.meta["command_id"], command=cmd.name,
                                   target=cmd.target, reason=reason)
        self.log.append([event], expected={}, meta=cmd.meta)

    def _append(self, cmd: _Command, events: Sequence[ev.Event],
                expected: Mapping[str, int]) -> None:
        self.log.append(events, expected=expected, meta=cmd.meta)

    def _retrying(self, fn: Callable[[], Any]) -> Any:
        """Optimistic concurrency: on a conflict, reload and judge again, once."""
        try:
            return fn()
        except ConcurrencyError:
            return fn()

    def _append_locked(self, cmd: _Command, c: Container, event: ev.Event) -> None:
        """Append a container's event while holding its lock (Runtime.ending). Only the
        commands that take no lock (exec, and the records of export and commit) can move
        the stream's version meanwhile, and they never change its state: on a conflict,
        take the new version and append once more."""
        try:
            self._append(cmd, [event], {f"container:{c.id}": c.version})
        except ConcurrencyError:
            now = self.log.container(c.id)
            if now is None or now.state != c.state:
                raise
            self._append(cmd, [event], {f"container:{c.id}": now.version})

    def _judge(self, c: Container, trigger: str) -> None:
        if not lifecycle.judge(c.state, trigger):
            template = _REFUSALS.get((trigger, c.state),
                                     "cannot {trigger} container {id} in state {state}")
            raise IllegalMove(template.format(id=short(c.id), trigger=trigger, state=c.state))

    # --- resolution ---------------------------------------------------------------------

    def container(self, ref: str) -> Container:
        """A container by full id, name or unique id prefix (docker's order)."""
        log = self.log
        found = log.container(ref) if len(ref) == 64 else None
        found = found or log.container_named(ref.lstrip("/"))
        if found is None and is_id_prefix(ref):
            cid = pick_unique(ref, log.container_ids(ref), "container")
            found = log.container(cid) if cid else None
        if found is None:
            raise NotFound(f"no such container: {ref}")
        return found

    def image(self, ref: str) -> Image:
        """An image by id (with or without sha256:), tag, or unique id prefix."""
        log = self.log
        bare = strip_digest_prefix(ref)
        found = log.image(bare) if len(bare) == 64 else None
        if found is None and not ref.startswith("sha256:"):
            try:
                found = log.image_tagged(normalize_tag(ref))
            except BadInput:
                found = None
        if found is None and is_id_prefix(bare):
            iid = pick_unique(ref, log.image_ids(bare), "image")
            found = log.image(iid) if iid else None
        if found is None:
            raise NotFound(f"no such image: {ref}")
        return found

    # --- images -------------------------------------------------------------------------

    def import_image(self, source: Any, tag: str | None = None, *, created_by: str = "",
                     comment: str = "", config: dict[str, Any] | None = None,
                     changes: Sequence[str] = ()) -> str:
        """A rootfs archive becomes a one-layer image (seed: the bottom of a stack);
        `changes` are docker's --change instructions for its config."""
        with self._command("import", str(tag or source)) as cmd:
            tag = normalize_tag(tag) if tag else None
            config = _changed(config or {}, changes, None)
            info = self.layers.import_layer(source, None)
            now = self.clock()
            cfg = image_config(base=None, diff_ids=[info.diff_id], created=now,
                               created_by=created_by or f"lamina import {source}",
                               comment=comment, config=config)
            events: list[ev.Event] = [ev.LayerRegistered(
                id=info.id, parent=None, diff_id=info.diff_id,
                chain_id=chain_id(None, info.diff_id), size=info.size,
                created_by=cfg["history"][-1]["created_by"], comment=comment)]
            iid = image_id(cfg)
            events.append(ev.ImageCreated(id=iid, parent=None, layers=[info.id], config=cfg,
                                          created_by=cfg["history"][-1]["created_by"],
                                          comment=comment, source="import"))
            expected = {f"layer:{info.id}": 0,
                        f"image:{iid}": self._stream_version(f"image:{iid}")}
            events += self._tag_events(iid, tag, expected)
            try:
                self._append(cmd, events, expected)
            except BaseException:
                self.layers.remove_layer(info.id)  # the log never said it existed
                raise
            return iid

    def _tag_events(self, iid: str, tag: str | None,
                    expected: dict[str, int]) -> list[ev.Event]:
        """ImageTagged, plus ImageUntagged on the image that held the tag before."""
        if not tag:
            return []
        events: list[ev.Event] = []
        holder = self.log.image_tagged(tag)
        if holder is not None and holder.id == iid:
            return []
        if holder is not None:
            events.append(ev.ImageUntagged(id=holder.id, tag=tag))
            expected[f"image:{holder.id}"] = holder.version
        events.append(ev.ImageTagged(id=iid, tag=tag))
        return events

    def tag(self, ref: str, tag: str) -> None:
        with self._command("tag", ref) as cmd:
            image = self.image(ref)
            expected = {f"image:{image.id}": image.version}
            events = self._tag_events(image.id, normalize_tag(tag), expected)
            if events:
                self._append(cmd, events, expected)

    def rmi(self, ref: str, force: bool = False) -> RmiPlan:
        """Remove a top-level image (intermediate ones and ones in use only with -f)."""
        with self._command("rmi", ref) as cmd:
            return self._retrying(lambda: self._rmi(cmd, ref, force))

    def _rmi(self, cmd: _Command, ref: str, force: bool) -> RmiPlan:
        target = self.image(ref)
        tag = _as_tag(ref)
        if tag not in target.tags:
            tag = ref  # named by id or id prefix
        images = {i.id: i for i in self.log.images()}
        layers = {la.id: la for la in self.log.layers()}
        plan = plan_rmi(target, tag, force, images, self.log.containers(), layers)
        self._apply_plan(cmd, plan, images, force, extra=[], expected={})
        return plan

    def _apply_plan(self, cmd: _Command, plan: RmiPlan, images: dict[str, Image],
                    force: bool, extra: list[ev.Event], expected: dict[str, int]) -> None:
        events = list(extra)
        for iid, tag in plan.untag:
            events.append(ev.ImageUntagged(id=iid, tag=tag))
        for iid, kept in plan.remove:
            events.append(ev.ImageRemoved(id=iid, force=force, kept=kept))
        for iid in {iid for iid, _ in plan.untag} | {iid for iid, _ in plan.remove}:
            expected[f"image:{iid}"] = images[iid].version
        for lid in plan.delete_layers:
            events.append(ev.LayerRemoved(id=lid))
            layer = self.log.layer(lid)
            expected[f"layer:{lid}"] = layer.version if layer else 0
        if events:
            self._append(cmd, events, expected)
        for lid in plan.delete_layers:  # after the log says they're gone
            self.layers.remove_layer(lid)

    # --- containers ---------------------------------------------------------------------

    def create(self, image_ref: str, cmd_args: Sequence[str] = (), name: str | None = None,
               config: dict[str, Any] | None = None) -> str:
        """Put a read-write layer on top of an image; run nothing (seed: `docker create`)."""
        with self._command("create", image_ref) as cmd:
            config = security.normalized(compat.checked(config or {}))
            root, root_version = rootconfig.read(self.log)
            rootconfig.check_container(config, root)
            image = self.image(image_ref)
            image_cfg = image.config.get("config") or {}
            command_line(image_cfg, cmd_args, config.get("entrypoint"))
            for entry in config.get("extra_hosts") or ():
                extra_host(entry)
            if image_cfg.get("Labels"):  # docker's: the image's labels, then the request's
                config["labels"] = {**image_cfg["Labels"], **(config.get("labels") or {})}
            if name is not None:
                name = check_name(name)
                holder = self.log.container_named(name)
                if holder is not None:
                    raise Conflict(f'the container name "/{name}" is already in use by '
                                   f"container {holder.id}")
            if not lifecycle.judge("image", "create"):
                raise IllegalMove("create is not a legal move")
            cid = self.ids.new_id()
            if name is None:
                name = name_for(cid, lambda n: self.log.container_named(n) is not None)
            rw = self.layers.create_rw_layer(cid, image.layers)
            event = ev.ContainerCreated(id=cid, name=name, image=image.id, cmd=list(cmd_args),
                                        rw_layer=rw, config=config)
            # the root's setting as judged: a configure appended meanwhile fails this append
            expected = {f"container:{cid}": 0, rootconfig.ROOT_STREAM: root_version}
            try:
                self._append(cmd, [event], expected)
            except BaseException:
                self.layers.remove_rw_layer(rw)  # the log never said it existed
                raise
            return cid

    def start(self, ref: str) -> Container:
        with self._command("start", ref) as cmd:
            return self._retrying(lambda: self._start(cmd, ref))

    def _start(self, cmd: _Command, ref: str) -> Container:
        with self._ending(ref, "start") as c:  # no reconcile takes the half-made start
            self._launch(cmd, c, self._image_of(c), ev.ContainerStarted)
        self.runtime.confirm_start(c)
        return self.log.container(c.id) or c

    def _launch(self, cmd: _Command, c: Container, image: Image,
                event: type[ev.ContainerStarted] | type[ev.ContainerRestarted]) -> None:
        """Start the process, then record it; if the record fails, undo the start. The
        root's setting is judged again: a create that raced a `system configure` must not
        start with options the new setting refuses."""
        rootconfig.check_container(c.config, rootconfig.current(self.log))
        started = self.runtime.start(c, image)
        try:
            self._append(cmd, [event(id=c.id, pid=started.pid, cgroup=started.cgroup,
                                     start_time=started.start_time)],
                         {f"container:{c.id}": c.version})
        except BaseException:
            self.runtime.abort_start(c)
            raise

    def _image_of(self, c: Container) -> Image:
        image = self.log.image(c.image)
        if image is None:
            raise NotFound(f"image {short(c.image)} of container {short(c.id)} is gone")
        return image

    @contextmanager
    def _ending(self, ref: str, trigger: str) -> Iterator[Container]:
        """Judge a move that ends the process while holding the right to record the end.

        The container is read again under the guard: the monitor may have recorded an exit
        between the first read and the guard.
        """
        c = self.container(ref)
        with self.runtime.ending(c):
            now = self.log.container(c.id)
            if now is None:  # removed meanwhile: nothing left to move (or to mount)
                raise NotFound(f"no such container: {ref}")
            self._judge(now, trigger)
            yield now

    def stop(self, ref: str, timeout: float = 10) -> Container:
        """SIGTERM, then SIGKILL after `timeout` seconds (seed: `docker stop`)."""
        with self._command("stop", ref) as cmd:
            with self._ending(ref, "stop") as c:
                ended = self.runtime.stop(c, timeout)
                self._append_locked(cmd, c, ev.ContainerStopped(
                    id=c.id, signal=ended.signal, exit_code=ended.exit_code))
                self.runtime.release(c)  # under the lock: an export must not lose its view
            return self.log.container(c.id) or c

    def kill(self, ref: str, sig: int | str = _signal.SIGKILL) -> Container:
        """Send a signal (SIGKILL by default; a name or number, docker's forms); the
        container stops if its process ends. A bad signal is refused and recorded."""
        with self._command("kill", ref) as cmd:
            sig = parse_signal(sig)
            with self._ending(ref, "signal") as c:
                ended = self.runtime.signal(c, int(sig))
                if ended is None:
                    event: ev.Event = ev.ContainerSignalled(id=c.id, signal=int(sig))
                else:
                    self._judge(c, "kill")
                    event = ev.ContainerKilled(id=c.id, signal=int(sig),
                                               exit_code=ended.exit_code)
                self._append_locked(cmd, c, event)
                if ended is not None:
                    self.runtime.release(c)
            return self.log.container(c.id) or c

    def pause(self, ref: str) -> Container:
        """Freeze every process of the container through the cgroup freezer; no signals."""
        with self._command("pause", ref) as cmd:
            with self._ending(ref, "pause") as c:
                self.runtime.freeze(c)
                self._append(cmd, [ev.ContainerPaused(id=c.id)],
                             {f"container:{c.id}": c.version})
            return self.log.container(c.id) or c

    def unpause(self, ref: str) -> Container:
        with self._command("unpause", ref) as cmd:
            with self._ending(ref, "unpause") as c:
                self.runtime.thaw(c)
                self._append(cmd, [ev.ContainerUnpaused(id=c.id)],
                             {f"container:{c.id}": c.version})
            return self.log.container(c.id) or c

    def exited(self, ref: str, exit_code: int, oom: bool = False, reason: str = "",
               pid: int | None = None) -> Container | None:
        """Record that the container's process ended by itself (the monitor's report).

        With `pid`, only that process's end is recorded: if the container was stopped or
        restarted meanwhile, there is nothing to record and None is returned.
        """
        with self._command("exit", ref) as cmd:
            if pid is not None and self.log.container(ref) is None:
                return None  # removed meanwhile (rm -f): nothing to record, nothing refused
            c = self.container(ref)
            with self.runtime.ending(c):
                now = self.log.container(c.id)
                if pid is not None and (now is None or now.pid != pid
                                        or now.state not in ("running", "paused")):
                    return None
                c = now or c
                self._judge(c, "exit")
                if self.runtime.alive(c):
                    raise Conflict(f"container {short(c.id)}'s process is still running")
                self._append_locked(cmd, c, ev.ContainerExited(
                    id=c.id, exit_code=exit_code, oom=oom, reason=reason))
                self.runtime.release(c)
            return self.log.container(c.id) or c

    def restart(self, ref: str, timeout: float = 10) -> Container:
        with self._command("restart", ref) as cmd:
            with self._ending(ref, "restart") as c:
                image = self._image_of(c)
                if c.state == "running":
                    self.runtime.stop(c, timeout)
                    self.runtime.release(c)
                self._launch(cmd, c, image, ev.ContainerRestarted)
            self.runtime.confirm_start(c)
            return self.log.container(c.id) or c

    def rm(self, ref: str, force: bool = False) -> None:
        """Delete the read-write layer and its files; -f kills a live container first."""
        with self._command("rm", ref) as cmd:
            with self._ending(ref, "rm_force" if force else "rm") as c:
                if c.state in ("running", "paused"):
                    self.runtime.signal(c, _signal.SIGKILL)
                images = {i.id: i for i in self.log.images()}
                plan = orphaned_by_container(c, images, self.log.containers(),
                                             {la.id: la for la in self.log.layers()})
                removed = ev.ContainerRemoved(id=c.id, force=force)
                self._apply_plan(cmd, plan, images, force=force, extra=[removed],
                                 expected={f"container:{c.id}": c.version})
                self.runtime.release(c)
            self.layers.remove_rw_layer(c.rw_layer)
            self.runtime.remove(c)

    def commit(self, ref: str, tag: str | None = None, *, comment: str = "",
               author: str = "", config: dict[str, Any] | None = None,
               changes: Sequence[str] = ()) -> str:
        """Burn the read-write layer into a new read-only layer and image (the container is
        paused meanwhile when it runs, as docker does). `config` overrides fields of the
        image's config (the Docker API's body), then `changes` (docker's --change:
        Dockerfile instructions) apply, both judged before anything is written."""
        with self._command("commit", ref) as cmd:
            tag = normalize_tag(tag) if tag else None
            with self._ending(ref, "commit") as c:  # a freeze no reconcile mistakes for stray
                image = self._image_of(c)
                new = _changed({**(image.config.get("config") or {}), **(config or {})},
                               changes, image)
                info = self._commit_layer(c, image)
                return self._record_commit(cmd, c, image, info, tag, comment, author, new)

    def _commit_layer(self, c: Container, image: Image) -> Any:
        parent_layer = image.layers[-1] if image.layers else None
        freeze = c.state == "running"
        if freeze:
            self.runtime.freeze(c)
        try:
            return self.layers.commit_rw_layer(c.rw_layer, parent_layer)
        finally:
            if freeze:
                self.runtime.thaw(c)

    def _record_commit(self, cmd: _Command, c: Container, image: Image, info: Any,
                       tag: str | None, comment: str, author: str,
                       changes: dict[str, Any] | None) -> str:
        parent_layer = image.layers[-1] if image.layers else None
        parent_chain = self.log.layer(parent_layer).chain_id if parent_layer else None
        diff_ids = list(image.config.get("rootfs", {}).get("diff_ids", [])) + [info.diff_id]
        created_by = " ".join(c.cmd) if c.cmd else ""
        cfg = image_config(base=image.config, diff_ids=diff_ids, created=self.clock(),
                           created_by=created_by, comment=comment, author=author,
                           config=changes)
        iid = image_id(cfg)
        expected = {f"container:{c.id}": c.version, f"layer:{info.id}": 0}
        events: list[ev.Event] = [
            ev.LayerRegistered(id=info.id, parent=parent_layer, diff_id=info.diff_id,
                               chain_id=chain_id(parent_chain, info.diff_id), size=info.size,
                               created_by=created_by, comment=comment)]
        if self.log.image(iid) is None:
            events.append(ev.ImageCreated(id=iid, parent=image.id,
                                          layers=[*image.layers, info.id], config=cfg,
                                          created_by=created_by, comment=comment,
                                          source="commit"))
            expected[f"image:{iid}"] = self._stream_version(f"image:{iid}")
        events += self._tag_events(iid, tag, expected)
        events.append(ev.ContainerCommitted(id=c.id, image=iid))
        try:
            self._append(cmd, events, expected)
        except BaseException:
            self.layers.remove_layer(info.id)
            raise
        return iid

    def exec(self, ref: str, argv: Sequence[str], user: str = "",
             options: Mapping[str, Any] | None = None) -> int:
        """Run a new process in a running container's namespaces and cgroup."""
        if not argv:
            raise BadInput("exec needs a command")
        with self._command("exec", ref) as cmd:
            c = self.container(ref)
            self._judge(c, "exec")
            exec_id = self.ids.new_id()
            self._append(cmd, [ev.ExecStarted(id=c.id, exec_id=exec_id, argv=list(argv),
                                              user=user)],
                         {f"container:{c.id}": c.version})
            code = self.runtime.exec(c, argv, user, dict(options or {}))
            # rm -f while exec ran closes the container's stream: the exec ended with it
            with suppress(ProjectionError):
                self._append(cmd, [ev.ExecExited(id=c.id, exec_id=exec_id, exit_code=code)],
                             {})
            return code

    # --- the root ------------------------------------------------------------------------

    def configure_root(self, userns_remap: str,
                       resolve: Callable[[str], rootconfig.RootConfig]) -> rootconfig.RootConfig:
        """Choose the root's --userns-remap; `resolve` turns the setting into maps (the
        adapters' work: users, /etc/subuid, what the kernel supports). Only while the root
        has no container, since its containers' processes and files were made under the old
        setting; the same setting again records nothing. Returns the setting in force."""
        with self._command("system configure", "root") as cmd:
            wanted = rootconfig.setting(userns_remap)
            now, version = rootconfig.read(self.log)
            if now.userns_remap == wanted:
                return now
            count = len(self.log.containers())
            if count:
                raise Conflict(f"this root has {count} container{'s' if count > 1 else ''}: "
                               "remove them before changing --userns-remap")
            config = resolve(wanted)
            self._append(cmd, [ev.RootConfigured(id="root", **config.data())],
                         {rootconfig.ROOT_STREAM: version})
            return config

    # --- archives: save, load, export ---------------------------------------------------
    # These need a layer store that can write and read archives (adapters/storage/store.py:
    # save_images, open_archive, install_layer, export); the formats live there, not here.

    def save(self, refs: Sequence[str], output: Any, file: str = "-") -> list[str]:
        """Images into one archive (docker-archive and OCI layout at once). `output` is a path
        or a binary stream; `file` is what the audit records. Returns the ids saved."""
        with self._command("save", " ".join(refs)) as cmd:
            if not refs:
                raise BadInput("save needs at least one image")
            chosen: dict[str, tuple[Image, list[str]]] = {}
            for ref in refs:
                for image, tag in self._save_targets(ref):
                    _, tags = chosen.setdefault(image.id, (image, []))
                    if tag and tag not in tags:
                        tags.append(tag)
            entries = []
            for image, tags in chosen.values():
                layers = [self.log.layer(lid) for lid in image.layers]
                if any(layer is None for layer in layers):
                    raise NotFound(f"a layer of image {short(image.id)} is gone")
                entries.append({"id": image.id, "config": self._config_bytes(image),
                                "tags": tags, "layers": list(image.layers),
                                "diff_ids": [layer.diff_id for layer in layers if layer],
                                "parent": image.parent if image.parent in chosen else None})
            store: Any = self.layers
            digest, size = store.save_images(entries, output)

            def record() -> None:
                events: list[ev.Event] = []
                expected: dict[str, int] = {}
                for iid, (_, tags) in chosen.items():
                    current = self.log.image(iid)
                    if current is None:
                        raise NotFound(f"image {short(iid)} was removed while it was saved")
                    expected[f"image:{iid}"] = current.version
                    events.append(ev.ImageSaved(id=iid, file=file, tags=list(tags),
                                                digest=digest, size=size))
                self._append(cmd, events, expected)

            self._retrying(record)
            return list(chosen)

    def _save_targets(self, ref: str) -> list[tuple[Image, str | None]]:
        """docker's rules: REPO:TAG saves that tag, a bare REPO every tag of that repository,
        an id the image without tags."""
        if not ref.startswith("sha256:"):
            try:
                tag = normalize_tag(ref)
            except BadInput:
                tag = None
            last = ref.rsplit("/", 1)[-1]
            if tag is not None and ":" in last:
                holder = self.log.image_tagged(tag)
                if holder is not None:
                    return [(holder, tag)]
            elif tag is not None:
                found = [(i, t) for i in self.log.images() for t in i.tags
                         if t.rsplit(":", 1)[0] == ref]
                if found:
                    return sorted(found, key=lambda it: it[1])
        return [(self.image(ref), None)]

    def _config_bytes(self, image: Image) -> bytes:
        """The bytes the image id is the sha256 of: as loaded, or lamina's canonical JSON."""
        import base64
        import hashlib

        from core.images import canonical_json

        for rec in self.log.read(stream=f"image:{image.id}"):
            if rec.type == "ImageLoaded":
                data = base64.b64decode((rec.data.get("config") or {}).get("data") or "")
                if hashlib.sha256(data).hexdigest() == image.id:
                    return data
        data = canonical_json(image.config).encode()
        if hashlib.sha256(data).hexdigest() != image.id:
            raise Conflict(f"image {short(image.id)}: its config no longer hashes to its id")
        return data

    def export(self, ref: str, output: Any, file: str = "-") -> str:
        """A container's filesystem (its union view) as one flat tar; the state stays."""
        with self._command("export", ref) as cmd:
            c = self.container(ref)
            image = self._image_of(c)
            store: Any = self.layers
            with self.runtime.ending(c):  # a stopped container's view is mounted meanwhile:
                # no start, rm or reconcile may unmount it or build on it under the export
                now = self.log.container(c.id)
                if now is None:
                    raise NotFound(f"no such container: {ref}")
                c = now
                digest, size = store.export(c.rw_layer, image.layers, output)

            def record() -> None:
                current = self.log.container(c.id)
                if current is None:
                    raise NotFound(f"container {short(c.id)} was removed while it was exported")
                self._append(cmd, [ev.ContainerExported(id=c.id, file=file, digest=digest,
                                                        size=size)],
                             {f"container:{c.id}": current.version})

            self._retrying(record)
            return c.id

    def load(self, source: Any, file: str = "-") -> list[tuple[str, list[str]]]:
        """Images from a docker or OCI archive: layers not already here (by chain id) are
        staged and checked first, installed only once all are, and the log then says so.
        Returns (image id, tags) per image."""
        with self._command("load", file) as cmd:
            store: Any = self.layers
            with store.open_archive(source) as archive:
                return self._load(cmd, store, archive, file)

    def _load(self, cmd: _Command, store: Any, archive: Any,
              file: str) -> list[tuple[str, list[str]]]:
        images = {img.id: img for img in archive.images()}  # the same image twice: once
        ordered = sorted(images.values(), key=lambda img: len(img.diff_ids))  # parents first
        known = {la.chain_id: la.id for la in self.log.layers()}
        todo: dict[str, tuple[Any, str | None, Any, int]] = {}
        chains: dict[str, list[str]] = {}
        for img in ordered:
            chain: str | None = None
            chains[img.id] = []
            for i, diff_id in enumerate(img.diff_ids):
                parent_chain, chain = chain, chain_id(chain, diff_id)
                chains[img.id].append(chain)
                if chain not in known and chain not in todo:
                    todo[chain] = (archive.stage(img, i), parent_chain, img, i)
        installed: list[str] = []
        try:
            events: list[ev.Event] = []
            expected: dict[str, int] = {}
            for chain, (staged, parent_chain, img, i) in todo.items():
                parent = known[parent_chain] if parent_chain else None
                info = store.install_layer(staged, parent)
                installed.append(info.id)
                known[chain] = info.id
                hist = _layer_history(img.config, i)
                events.append(ev.LayerRegistered(
                    id=info.id, parent=parent, diff_id=info.diff_id, chain_id=chain,
                    size=info.size, created_by=str(hist.get("created_by") or ""),
                    comment=str(hist.get("comment") or "")))
                expected[f"layer:{info.id}"] = 0
            for img in ordered:
                existing = self.log.image(img.id)
                if existing is not None:
                    expected[f"image:{img.id}"] = existing.version
                    continue
                last = (img.config.get("history") or [{}])[-1]
                events.append(ev.ImageCreated(
                    id=img.id, parent=self._loaded_parent(img, images),
                    layers=[known[c] for c in chains[img.id]], config=img.config,
                    created_by=str(last.get("created_by") or ""),
                    comment=str(last.get("comment") or ""), source="load"))
                expected[f"image:{img.id}"] = self._stream_version(f"image:{img.id}")
            final = {tag: img.id for img in ordered for tag in img.tags}  # the last one wins
            for tag, iid in final.items():
                events += self._tag_events(iid, tag, expected)
            out = []
            for img in ordered:
                tags = [t for t, iid in final.items() if iid == img.id]
                events.append(ev.ImageLoaded(id=img.id, file=file, tags=tags,
                                             config=img.descriptor()))
                out.append((img.id, tags))
            self._append(cmd, events, expected)
        except BaseException:
            for lid in installed:  # the log never said they existed
                store.remove_layer(lid)
            raise
        return out

    def _loaded_parent(self, img: Any, loading: Mapping[str, Any]) -> str | None:
        """The Parent a docker archive names, kept only if that image is (being) loaded and
        really is the parent: its layers and history one step short of the child's."""
        pid = img.parent
        if not pid or pid == img.id:
            return None
        parent = loading.get(pid)
        config = parent.config if parent is not None else None
        if config is None:
            existing = self.log.image(pid)
            config = existing.config if existing is not None else None
        if config is None:
            return None
        p_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        p_hist = list(config.get("history") or [])
        c_hist = list(img.config.get("history") or [])
        if img.diff_ids[:len(p_ids)] != p_ids or len(img.diff_ids) - len(p_ids) not in (0, 1):
            return None
        if len(c_hist) - len(p_hist) != 1 or c_hist[:len(p_hist)] != p_hist:
            return None
        return pid

    def reconcile(self, repair: bool) -> list[str]:
        """Compare the log with the host: containers recorded live whose process is gone (or
        is another process by now), and what the host holds that the log doesn't account
        for (runtime.orphans: cgroups, mounts, freezer states, layer directories, staging).
        With `repair`, record the lost processes' ends (with the reason) and clean the
        leftovers. Audited either way (`system check` / `system reconcile`)."""
        name = "system reconcile" if repair else "system check"
        with self._command(name, "host") as cmd:
            findings = []
            for c in self._lost(settle=2.0):
                findings.append(f"container {short(c.id)} ({c.name}) is {c.state} in the "
                                "log but its process is gone")
                if repair:
                    self._retrying(lambda c=c: _reconcile_container(self, cmd, c))
            known = {c.id: c for c in self.log.containers()}
            findings += self.runtime.orphans(known)
            if repair:
                self.runtime.clean_orphans(known)
            self._append(cmd, [ev.HostChecked(id="host", findings=findings, repaired=repair)],
                         {})
            return findings

    def recover(self) -> list[str]:
        """The cheap check every state-changing process runs first: a running or paused
        container whose process is gone (pid and start time) and whose monitor is gone too
        gets its end recorded. Nothing else is looked at (a few /proc reads, well under a
        millisecond); appends only when it finds something (HostChecked, repaired)."""
        lost = self._lost()
        if not lost:
            return []
        with self._command("system recover", "host") as cmd:
            findings = []
            for c in lost:
                try:  # an exec or export may record on the stream meanwhile: judge again
                    done = self._retrying(lambda c=c: _reconcile_container(self, cmd, c))
                except LaminaError:  # still changing (a ConcurrencyError again), or the
                    continue         # log is busy: the next command's check looks again
                if done:
                    findings.append(f"container {short(c.id)} ({c.name}) was {c.state} in "
                                    "the log but its process was gone")
            if findings:
                self._append(cmd, [ev.HostChecked(id="host", findings=findings,
                                                  repaired=True)], {})
            return findings

    def _lost(self, settle: float = 0) -> list[Container]:
        """Live containers whose process is gone and whose monitor won't record it.

        `settle`: a monitor whose process is gone is about to record the exit, or to give up
        (its client died before recording the start): wait that long for it to finish."""
        lost = []
        for c in self.log.containers(("running", "paused")):
            if self.runtime.alive(c) or self.runtime.watched(c, settle):
                continue
            now = self.log.container(c.id) if settle else c  # the monitor may have recorded
            if now is not None and now.state in ("running", "paused") and now.pid == c.pid:
                lost.append(now)
        return lost

    def _stream_version(self, stream: str) -> int:
        """The version a stream is at, also after its aggregate was removed (0 if new)."""
        return max((rec.version for rec in self.log.read(stream=stream)), default=0)


def _reconcile_container(engine: Engine, cmd: _Command, c: Container) -> bool:
    """Record that a live container's process is gone, unless someone did meanwhile.
    True if this recorded it."""
    with engine.runtime.ending(c):
        now = engine.log.container(c.id)
        if now is None or now.state not in ("running", "paused") or now.pid != c.pid \
                or engine.runtime.alive(now) or engine.runtime.watched(now):
            return False
        code = engine.runtime.last_exit(now)
        reason = ("the process ended while no monitor watched (exit status unknown)"
                  if code is None else "the monitor saw the process end but did not record it")
        engine._append_locked(cmd, now, ev.ContainerExited(
            id=c.id, exit_code=255 if code is None else code, reason=reason))
        engine.runtime.release(c)
    return True


def _as_tag(ref: str) -> str:
    """The tag a reference names, normalized (`cafe` -> `cafe:latest`), or ref itself."""
    try:
        return normalize_tag(ref)
    except BadInput:
        return ref


def _layer_history(config: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The history entry of the `index`-th layer (entries with empty_layer skipped)."""
    entries = [h for h in config.get("history") or []
               if isinstance(h, dict) and not h.get("empty_layer")]
    return entries[index] if index < len(entries) else {}


def _changed(config: dict[str, Any], changes: Sequence[str], image: Image | None
             ) -> dict[str, Any]:
    """A config with docker's --change instructions applied, as a build applies them."""
    if not changes:
        return config
    from core.build import apply_changes  # the build's parser: imported when asked for

    return apply_changes(image, config, changes)
