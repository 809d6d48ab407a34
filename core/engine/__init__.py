"""The service layer: one method per command, the same for the CLI and the HTTP service.

Each command: resolve its target from the read model, ask the lifecycle machine whether the
move is legal, call the ports, then append its events (all in one atomic append, with the
version it read as the expected version). A refused command appends one CommandRejected and
raises. Order of writes: files are made before the log says they exist, and deleted only
after the log says they are gone, so a crash leaves at worst an orphan for reconciliation.

`Engine` is the facade every adapter calls. The work is done by one module per aggregate,
functions over the engine's ports (base.EngineBase), each command in its own unit of work
(core/command.py):

- containers: create, rm, exec, and the guards of every container move (judge, ending)
- processes: start, restart, stop, kill, pause, unpause, exited
- host: system configure, recover (which every state-changing command runs first), system
  check and reconcile
- images: import, tag, rmi (and the tag and rmi-plan events rm, commit, load and build
  record too); commit; archives (save, export); loading (load, and pull's install)
- volumes: volume create, rm and prune, and a volume or the list of them (queries)
- networks: network create, rm and prune, and a network or the list of them (queries)

Every command process pays for what `import core.engine` loads, so it loads the container
and host parts only; the image rules (core/images.py) and the image and archive parts are
imported by the commands that use them (rm among them, for the layers it may free). A fork
server should preload them by name (adapters/cli/app.py's WARM_MODULES, the Docker API's
PRELOAD), so that a served command imports nothing.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from core import rootconfig
from core.engine import containers, host, processes
from core.engine.base import EngineBase
from core.errors import BadInput, LaminaError
from core.model import Container

if TYPE_CHECKING:
    from core.engine.admin import PrunedContainers, PrunedImages, PrunedSystem
    from core.engine.usage import DiskUsage
    from core.engine.volumes import Pruned
    from core.images import RmiPlan
    from core.model import Network, Volume

__all__ = ["Engine", "EngineBase"]


class Engine(EngineBase):
    """Commands over ports. Holds no state of its own: the log is the state. Its fields
    (log, layers, runtime, ids, clock, meta) and `command`, `container` and `image` are
    EngineBase's; each method below is one command."""

    def refuse(self, command: str, target: str, reason: str) -> None:
        """A request an adapter can't honour, judged where only the adapter can see (the
        client's terminal, say): recorded as refused like any other, then raised."""
        with self.command(command, target):
            raise BadInput(reason)

    # --- images -------------------------------------------------------------------------

    def import_image(self, source: Any, tag: str | None = None, *, created_by: str = "",
                     comment: str = "", config: dict[str, Any] | None = None,
                     changes: Sequence[str] = ()) -> str:
        """A rootfs archive as a one-layer image; `changes` are docker's --change."""
        from core.engine import images

        return images.import_image(self, source, tag, created_by=created_by,
                                   comment=comment, config=config, changes=changes)

    def tag(self, ref: str, tag: str) -> None:
        from core.engine import images

        images.tag(self, ref, tag)

    def rmi(self, ref: str, force: bool = False) -> RmiPlan:
        """Remove a top-level image (intermediate ones and ones in use only with -f)."""
        from core.engine import images

        return images.rmi(self, ref, force)

    # --- containers ---------------------------------------------------------------------

    def create(self, image_ref: str, cmd_args: Sequence[str] = (), name: str | None = None,
               config: dict[str, Any] | None = None) -> str:
        """Put a read-write layer on top of an image; run nothing (seed: `docker create`)."""
        return containers.create(self, image_ref, cmd_args, name, config)

    def rm(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """Delete the read-write layer and its files; -f kills a live container first;
        `volumes` (-v) removes its anonymous volumes too."""
        containers.rm(self, ref, force, volumes)

    def exec(self, ref: str, argv: Sequence[str], user: str = "",
             options: Mapping[str, Any] | None = None) -> int:
        """Run a new process in a running container's namespaces and cgroup."""
        return containers.exec_process(self, ref, argv, user, options)

    def attached(self, ref: str, stdin: bool, stdout: bool, stderr: bool) -> None:
        """Record a client's attach to a running container (docker's attach event)."""
        containers.attached(self, ref, stdin, stdout, stderr)

    def detached(self, ref: str) -> None:
        """Record that an attached client let go with the detach keys (docker's detach)."""
        containers.detached(self, ref)

    def commit(self, ref: str, tag: str | None = None, *, comment: str = "",
               author: str = "", config: dict[str, Any] | None = None,
               changes: Sequence[str] = ()) -> str:
        """The read-write layer as a new layer and image (see core/engine/commit.py)."""
        from core.engine.commit import commit

        return commit(self, ref, tag, comment=comment, author=author, config=config,
                      changes=changes)

    # --- a container's process ----------------------------------------------------------

    def start(self, ref: str) -> Container:
        return processes.start(self, ref)

    def restart(self, ref: str, timeout: float | None = None) -> Container:
        return processes.restart(self, ref, timeout)

    def stop(self, ref: str, timeout: float | None = None) -> Container:
        """The stop signal (SIGTERM by default), then SIGKILL after `timeout` seconds (the
        container's --stop-timeout, or 10, when None) (seed: `docker stop`)."""
        return processes.stop(self, ref, timeout)

    def kill(self, ref: str, sig: int | str = _signal.SIGKILL) -> Container:
        """Send a signal (docker's forms); the container stops if its process ends."""
        return processes.kill(self, ref, sig)

    def pause(self, ref: str) -> Container:
        """Freeze every process of the container through the cgroup freezer."""
        return processes.pause(self, ref)

    def unpause(self, ref: str) -> Container:
        return processes.unpause(self, ref)

    def exited(self, ref: str, exit_code: int, oom: bool = False, reason: str = "",
               pid: int | None = None, release: bool = True) -> Container | None:
        """Record the process's own end (the monitor's report); with `pid`, only that
        process's: None if the container was stopped or restarted meanwhile. Without
        `release`, the rm the caller runs next releases the run's cgroup and view."""
        return processes.exited(self, ref, exit_code, oom, reason, pid, release)

    # --- restart policies (core/engine/restarts.py) -------------------------------------

    def schedule_restart(self, ref: str, pid: int) -> Container | None:
        """After the end of run `pid` is recorded: the restart its policy wanted, which
        that record scheduled, while it is still pending (None: no restart)."""
        from core.engine import restarts

        return restarts.schedule(self, ref, pid)

    def restart_scheduled(self, ref: str, version: int) -> Container | None:
        """The back-off is over: start it again unless something happened since `version`."""
        from core.engine import restarts

        return restarts.restart_scheduled(self, ref, version)

    def bring_back(self, why: str, only: set[str] | None = None) -> list[str]:
        """The host started: the stopped containers their policy brings back, started."""
        from core.engine import restarts

        return restarts.bring_back(self, why, only)

    def health_changed(self, ref: str, pid: int, status: str, failing_streak: int = 0,
                       exit_code: int = 0, output: str = "") -> Container | None:
        """Record a change of health status (the health process's report) for the run of
        init `pid`; None when that run is over (see core/engine/health.py)."""
        from core.engine.health import health_changed

        return health_changed(self, ref, pid, status, failing_streak, exit_code, output)

    # --- archives: save, load, export ---------------------------------------------------

    def save(self, refs: Sequence[str], output: Any, file: str = "-") -> list[str]:
        """Images into one archive (docker-archive and OCI layout at once); their ids."""
        from core.engine.archives import save

        return save(self, refs, output, file)

    def export(self, ref: str, output: Any, file: str = "-") -> str:
        """A container's filesystem (its union view) as one flat tar; the state stays."""
        from core.engine.archives import export

        return export(self, ref, output, file)

    def load(self, source: Any, file: str = "-") -> list[tuple[str, list[str]]]:
        """Images from a docker or OCI archive: (image id, tags) per image."""
        from core.engine.loading import load

        return load(self, source, file)

    # --- the root and the host ----------------------------------------------------------

    def configure_root(self, userns_remap: str,
                       resolve: Callable[[str], rootconfig.RootConfig]
                       ) -> rootconfig.RootConfig:
        """Choose the root's --userns-remap (only while it has no container)."""
        return host.configure_root(self, userns_remap, resolve)

    def reconcile(self, repair: bool) -> list[str]:
        """`system check` (repair=False) or `system reconcile`: the log against the host."""
        return host.reconcile(self, repair)

    def recover(self) -> list[str]:
        """Record the end of live containers whose process and monitor are gone."""
        return host.recover(self)

    def shutdown(self) -> dict[str, str]:
        """The host's shutdown: every running and paused container stopped in parallel,
        each with its stop signal and timeout, recorded as the host's stop (no restart
        policy fires; the next host start brings back always/unless-stopped ones)."""
        from core.engine.shutdown import shutdown

        return shutdown(self)

    # --- volumes ------------------------------------------------------------------------

    def volume_create(self, name: str | None = None, driver: str = "local",
                      labels: Mapping[str, str] | None = None,
                      options: Mapping[str, str] | None = None) -> str:
        """A named volume (or, without a name, an anonymous one): its name. A name that
        exists is returned as it is, as docker does."""
        from core.engine import volumes

        return volumes.volume_create(self, name, driver, labels, options)

    def volume_rm(self, names: str | Sequence[str], force: bool = False) -> list[str]:
        """Remove volumes nothing uses, each its own command (a refusal of one leaves the
        others removed, then is raised); `force` skips missing ones. The names removed."""
        from core.engine import volumes

        removed, first = [], None
        for name in [names] if isinstance(names, str) else names:
            try:
                if volumes.volume_rm(self, name, force):
                    removed.append(name)
            except LaminaError as err:
                first = first or err
        if first is not None:
            raise first
        return removed

    def volume_prune(self, filters: Mapping[str, Sequence[str]] | None = None,
                     all: bool = False) -> Pruned:
        """Remove unused volumes (anonymous ones unless `all`) the label filters select."""
        from core.engine import volumes

        return volumes.volume_prune(self, filters, all)

    def volume(self, name: str) -> Volume:
        """A volume by name (a query: records nothing)."""
        from core.engine import volumes

        return volumes.find(self, name)

    def volume_list(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[Volume]:
        """The volumes docker's filters select (dangling, name, driver, label), by name."""
        from core.engine import volumes

        return volumes.listed(self, filters)

    # --- files --------------------------------------------------------------------------

    def path_stat(self, ref: str, path: str) -> dict[str, Any]:
        """docker's path stat of a container's file (a query: records nothing)."""
        from core.engine import files

        return files.path_stat(self, ref, path)

    def copy_from(self, ref: str, path: str, out: BinaryIO, follow_link: bool = False,
                  on_stat: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """`cp CONTAINER:PATH ...`: the container's files at `path` as a tar onto `out`;
        the path stat, handed to `on_stat` before the first byte too."""
        from core.engine import files

        return files.copy_from(self, ref, path, out, follow_link, on_stat)

    def copy_to(self, ref: str, path: str, tar: BinaryIO, no_overwrite_dir_non_dir: bool = False,
                copy_uid_gid: bool = False) -> None:
        """`cp ... CONTAINER:PATH`: a tar extracted into the container's directory `path`."""
        from core.engine import files

        files.copy_to(self, ref, path, tar, no_overwrite_dir_non_dir, copy_uid_gid)

    # --- networks -----------------------------------------------------------------------

    def network_create(self, name: str, subnet: str | None = None,
                       gateway: str | None = None, internal: bool = False,
                       labels: Mapping[str, str] | None = None,
                       options: Mapping[str, str] | None = None,
                       driver: str = "bridge", **ipam: Any) -> str:
        """A user-defined bridge network, its bridge made on the host: its id. `ipam`:
        ip_range, aux_addresses, attachable, ipv6, subnet6, gateway6, ip_range6."""
        from core.engine import networks

        return networks.network_create(self, name, subnet, gateway, internal, labels,
                                       options, driver, **ipam)

    def network_rm(self, refs: str | Sequence[str]) -> list[str]:
        """Remove user-defined networks, each its own command (a refusal of one leaves the
        others removed, then is raised). The ids removed."""
        from core.engine import networks

        removed, first = [], None
        for ref in [refs] if isinstance(refs, str) else refs:
            try:
                removed.append(networks.network_rm(self, ref))
            except LaminaError as err:
                first = first or err
        if first is not None:
            raise first
        return removed

    def network_prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        """Remove the user-defined networks the label filters select: their names."""
        from core.engine import networks

        return networks.network_prune(self, filters)

    def network_connect(self, net_ref: str, ref: str, aliases: Sequence[str] = (),
                        ip: str | None = None, **settings: Any) -> None:
        """Put a container on one more network (a running one joins at once). `settings`:
        the endpoint's ip6, mac, links, link_local_ips, driver_opts."""
        from core.engine import networks

        networks.network_connect(self, net_ref, ref, aliases, ip, **settings)

    def network_disconnect(self, net_ref: str, ref: str, force: bool = False) -> None:
        """Take a container off a network."""
        from core.engine import networks

        networks.network_disconnect(self, net_ref, ref, force)

    def unlink(self, ref: str) -> str:
        """docker's `rm --link PARENT/ALIAS`: a legacy link removed, its parent's id."""
        from core.engine import networks

        return networks.unlink(self, ref)

    def network(self, ref: str) -> Network:
        """A network (predefined or user-defined) by id, name or id prefix (a query)."""
        from core.engine import networks

        return networks.find(self, ref)

    def network_list(self, filters: Mapping[str, Sequence[str]] | None = None
                     ) -> list[Network]:
        """The networks docker's filters select, predefined ones included, by name."""
        from core.engine import networks

        return networks.listed(self, filters)

    # --- rename, update, prunes, disk usage (core/engine/admin.py, usage.py) ------------

    def rename(self, ref: str, new_name: str) -> Container:
        """Give a container another name (any state; the name must be free)."""
        from core.engine import admin

        return admin.rename(self, ref, new_name)

    def update(self, ref: str, options: Mapping[str, Any]) -> Container:
        """New limits (memory, cpus, pids): into a live container's cgroup now, recorded
        for a stopped one's next start; what lamina can't update refused by name."""
        from core.engine import admin

        return admin.update(self, ref, options)

    def container_prune(self, filters: Mapping[str, Sequence[str]] | None = None
                        ) -> PrunedContainers:
        """Remove the stopped containers the filters (until, label, label!) select."""
        from core.engine import admin

        return admin.container_prune(self, filters)

    def image_prune(self, filters: Mapping[str, Sequence[str]] | None = None,
                    all: bool = False) -> PrunedImages:
        """Remove dangling images (every unused one with `all`) the filters select."""
        from core.engine import admin

        return admin.image_prune(self, filters, all)

    def system_prune(self, filters: Mapping[str, Sequence[str]] | None = None,
                     all: bool = False, volumes: bool = False) -> PrunedSystem:
        """Stopped containers, unused networks, (anonymous) volumes, dangling images."""
        from core.engine import admin

        return admin.system_prune(self, filters, all, volumes)

    def disk_usage(self) -> DiskUsage:
        """`system df`: images, containers, volumes and their sizes (a query)."""
        from core.engine import usage

        return usage.disk_usage(self)
