"""The container aggregate: create, rm, exec, and the guards every move on a container takes
(judge the move with the lifecycle machine; hold the right to record the process's end)."""

from __future__ import annotations

import signal as _signal
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any

from core import cgroupparent, compat, lifecycle, resources, rootconfig, runopts, security
from core.engine import attaching, mounting
from core.engine.base import EngineBase
from core.errors import BadInput, ConcurrencyError, Conflict, IllegalMove, NotFound
from core.model import Container, Image, ProjectionError
from core.naming import name_for
from core.ports import ExecDetached
from core.process import command_line, extra_host
from core.references import check_name, short
from events import types as ev

if TYPE_CHECKING:
    from core.images import RmiPlan

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


def judge(c: Container, trigger: str) -> None:
    """Refuse (IllegalMove, in the CLI's words) a move the lifecycle machine doesn't allow."""
    if not lifecycle.judge(c.state, trigger):
        template = _REFUSALS.get((trigger, c.state),
                                 "cannot {trigger} container {id} in state {state}")
        raise IllegalMove(template.format(id=short(c.id), trigger=trigger, state=c.state))


@contextmanager
def ending(e: EngineBase, ref: str, trigger: str, backoff: bool = False
           ) -> Iterator[Container]:
    """Judge a move that ends the process while holding the right to record the end.

    The container is read again under the guard: the monitor may have recorded an exit
    between the first read and the guard. With `backoff`, a container in its restart
    back-off (stopped, a restart pending: in_backoff) is yielded unjudged: a stop or kill
    of it cancels that restart (processes.cancel_restart), decided on this read, so a run
    that ends with its restart scheduled just before the guard is not "not running".
    """
    c = e.container(ref)
    with e.runtime.ending(c):
        now = e.log.container(c.id)
        if now is None:  # removed meanwhile: nothing left to move (or to mount)
            raise NotFound(f"no such container: {ref}")
        if not (backoff and in_backoff(now)):
            judge(now, trigger)
        yield now


def in_backoff(c: Container) -> bool:
    """Stopped with a restart its policy scheduled still pending: docker's "restarting"."""
    return c.state == "stopped" and c.restarting


def image_of(e: EngineBase, c: Container) -> Image:
    """The image a container was created from (NotFound if the log lost it)."""
    image = e.log.image(c.image)
    if image is None:
        raise NotFound(f"image {short(c.image)} of container {short(c.id)} is gone")
    return image


def create(e: EngineBase, image_ref: str, cmd_args: Sequence[str] = (),
           name: str | None = None, config: dict[str, Any] | None = None) -> str:
    """Put a read-write layer on top of an image; run nothing (seed: `docker create`)."""
    with e.command("create", image_ref) as cmd:
        config = cgroupparent.judged(resources.judged(runopts.normalized(security.normalized(
            compat.checked(config or {})))))
        for recorded in ("mount_points", "image_ref"):  # what create records: never asked
            if recorded in config:
                raise BadInput(f"{recorded} is recorded by lamina, not a create option")
        root, root_version = rootconfig.read(e.log)
        rootconfig.check_container(config, root)
        attaching.judge(e, config, remapped=root.remapped)
        image = e.image(image_ref)
        image_cfg = image.config.get("config") or {}
        command_line(image_cfg, cmd_args, config.get("entrypoint"))
        for entry in config.get("extra_hosts") or ():
            extra_host(entry)
        if image_cfg.get("Labels"):  # docker's: the image's labels, then the request's
            config["labels"] = {**image_cfg["Labels"], **(config.get("labels") or {})}
        if name is not None:
            name = check_name(name)
            holder = e.log.container_named(name)
            if holder is not None:
                raise Conflict(f'the container name "/{name}" is already in use by '
                               f"container {holder.id}")
        if not lifecycle.judge("image", "create"):
            raise IllegalMove("create is not a legal move")
        points = mounting.plan(e, config, image) if _asks_mounts(config, image_cfg) else []
        cid = e.ids.new_id()
        if points:
            config["mount_points"] = [m.to_json() for m in points]
        config["image_ref"] = image_ref  # docker's Config.Image: the image as the client named it
        rw = e.layers.create_rw_layer(cid, image.layers)
        try:
            prepared = mounting.prepare(e, cid, rw, points, image)
        except BaseException:
            e.layers.remove_rw_layer(rw)
            raise
        # the root's setting as judged: a configure appended meanwhile fails this append
        expected = {f"container:{cid}": 0, rootconfig.ROOT_STREAM: root_version,
                    **prepared.expected}
        while True:
            chosen = name_for(cid, lambda n: e.log.container_named(n) is not None) \
                if name is None else name
            event = ev.ContainerCreated(id=cid, name=chosen, image=image.id,
                                        cmd=list(cmd_args), rw_layer=rw, config=config)
            try:
                cmd.append([event, *prepared.events], expected)
                return cid
            except BaseException as err:
                if name is None and isinstance(err, ConcurrencyError) \
                        and e.log.container_named(chosen) is not None:
                    continue  # a create beside ours took the free name we drew: draw again
                mounting.undo(e, prepared)  # the log never said they existed
                e.layers.remove_rw_layer(rw)
                raise


_MOUNT_OPTIONS = ("binds", "mounts", "tmpfs", "volumes", "volumes_from")


def _asks_mounts(config: Mapping[str, Any], image_cfg: Mapping[str, Any]) -> bool:
    """Whether a create has mounts to judge (most don't: the mount rules stay unloaded)."""
    return bool(image_cfg.get("Volumes")) or any(config.get(k) for k in _MOUNT_OPTIONS)


def rm(e: EngineBase, ref: str, force: bool = False, volumes: bool = False) -> None:
    """Delete the read-write layer and its files; -f kills a live container first; -v
    (`volumes`) removes its anonymous volumes too, unless another container uses them."""
    from core.engine.images import apply_plan  # the image rules: not on pause's path

    with e.command("rm", ref) as cmd, ExitStack() as lock:
        c = lock.enter_context(ending(e, ref, "rm_force" if force else "rm"))
        if c.restarting and not force:  # docker's: a restart is due, only -f ends it
            raise IllegalMove(f"cannot remove container {short(c.id)}: container is "
                              "restarting: stop the container before removing or force "
                              "remove")
        if c.state in ("running", "paused"):
            e.runtime.signal(c, _signal.SIGKILL)
        images, plan = _orphaned(e, c)
        removed = ev.ContainerRemoved(id=c.id, force=force)
        released, versions, gone = mounting.released(e, c, volumes) \
            if c.config.get("mount_points") else ([], {}, [])

        def record(version: int) -> None:
            apply_plan(e, cmd, plan, images, force=force, extra=[removed, *released],
                       expected={f"container:{c.id}": version, **versions})

        try:
            record(c.version)
        except ConcurrencyError:  # as Command.append_locked: under the lock only an exec's
            now = e.log.container(c.id)  # records move the stream (-f's kill ends a
            if now is None or now.state != c.state:  # detached one, whose watcher
                raise  # records its end), and they change no state
            record(now.version)
        e.later(partial(_cleared, e, c, gone, lock.pop_all()))


def _orphaned(e: EngineBase, c: Container) -> tuple[dict[str, Image], RmiPlan]:
    """The images (and their layers) a removal takes along: only an image `rmi -f` marked
    removed and kept for its containers can go, so every image, container and layer is read
    only when the container's image is such a one (an rm used to read them all, every time:
    a cost that grew with the root, at a thousand containers)."""
    from core.images import RmiPlan, orphaned_by_container

    image = e.log.image(c.image)
    if image is None or not image.removed:
        return {}, RmiPlan()
    images = {i.id: i for i in e.log.images()}
    return images, orphaned_by_container(c, images, e.log.containers(),
                                         {la.id: la for la in e.log.layers()})


def _cleared(e: EngineBase, c: Container, gone: Sequence[str], lock: ExitStack) -> None:
    """What a removal leaves on the host once its record is in: the run's cgroup and view
    (runtime.release), the read-write layer, the runtime files, the data of the volumes it
    removed. After the answer where the caller defers (EngineBase.later: a served `run
    --rm` answers before these ~15 ms), still holding the container's lock (`lock`,
    released once they are gone), so that `system check` takes them for work in flight and
    reconcile leaves them to this; a crash before or in between leaves what reconcile
    clears for a removed container (adapters/runtime/hostcheck.py)."""
    with lock:
        e.runtime.release(c)
        e.layers.remove_rw_layer(c.rw_layer)
        e.runtime.remove(c)
    for name in gone:
        e.volumes.remove(name)


def exec_process(e: EngineBase, ref: str, argv: Sequence[str], user: str = "",
                 options: Mapping[str, Any] | None = None) -> int:
    """Run a new process in a running container's namespaces and cgroup."""
    if not argv:
        raise BadInput("exec needs a command")
    with e.command("exec", ref) as cmd, e.runtime.ahead_of_exec():
        c = e.container(ref)
        judge(c, "exec")
        exec_id = e.ids.new_id()
        # a version moved meanwhile by a record that changes no state (a health change,
        # another exec) is taken: Command.append_locked's rule
        cmd.append_locked(c, ev.ExecStarted(id=c.id, exec_id=exec_id, argv=list(argv),
                                            user=user))
        def exited(code: int) -> None:
            # rm -f while exec ran closes the container's stream: the exec ended with it
            with suppress(ProjectionError):
                cmd.append([ev.ExecExited(id=c.id, exec_id=exec_id, exit_code=code)], {})

        try:
            code = e.runtime.exec(c, argv, user, dict(options or {}))
        except ExecDetached as detached:  # docker's exec_detach; its end comes later
            with suppress(ProjectionError):
                cmd.append([ev.ExecDetached(id=c.id, exec_id=exec_id)], {})
            waited = detached.watch(exited)
            if waited is None:
                raise
            return waited
        exited(code)
        return code


def attached(e: EngineBase, ref: str, stdin: bool, stdout: bool, stderr: bool) -> None:
    """Record that a client attached to the running container (who: the command's meta)."""
    _audit(e, "attach", ref, lambda c: ev.ContainerAttached(
        id=c.id, stdin=stdin, stdout=stdout, stderr=stderr))


def detached(e: EngineBase, ref: str) -> None:
    """Record that an attached client let go with the detach keys."""
    _audit(e, "detach", ref, lambda c: ev.ContainerDetached(id=c.id))


def _audit(e: EngineBase, name: str, ref: str, event: Any) -> None:
    with e.command(name, ref) as cmd:
        c = e.container(ref)
        with suppress(ProjectionError):  # removed meanwhile
            cmd.append_locked(c, event(c))
