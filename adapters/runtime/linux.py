"""The Runtime port on Linux: overlay mount, cgroup, monitor, namespaces, signals, freezer.

Per container it keeps `<root>/containers/<id>/`: the json-file log, the monitor's exit
record, the files bound into the container (hostname, hosts, resolv.conf) and `lock`, the
flock that decides who records a process's end (see core.ports.Runtime).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import select
import signal
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, BinaryIO

from adapters.kernel.cgroups import (
    Cgroup,
    CgroupError,
    Limits,
    Warming,
    reap,
    warm_migration,
)
from core import cgroupparent
from core.errors import LaminaError
from core.model import Container, Image
from core.ports import Ended, LogEntry, Started
from core.process import (
    ProcessSpec,
    hosts_file,
    link_env,
    merge_env,
    process_spec,
    resolv_conf,
)

if TYPE_CHECKING:
    import socket

    from adapters.kernel.idmap import IdMap
    from adapters.runtime.init import InitPlan
    from adapters.runtime.monitor import MonitorJob
    from core.devices import Node
    from core.mounts import MountPoint


_TERM = signal.SIGTERM  # stop's default (the class's own `signal` hides the module there)


class RuntimeError_(LaminaError):
    """The container could not be started or signalled; the message says why.

    Exit codes as docker's: 125 for the engine's own failures, 126 when the command can't
    be run, 127 when it isn't found."""

    exit_code = 125


class LinuxRuntime:
    """The Runtime port (core/ports.py). Beyond it, adapters of this host use container_dir,
    log_path and idmap (the exit recorder, reconciliation, build)."""

    def __init__(self, root: str, layers: Any, log: Any) -> None:
        self.root = root
        self.layers = layers
        self.log = log  # suspended around fork()
        self.clients: dict[str, socket.socket] = {}
        self._warming: Warming | None = None  # ahead_of_exec's, waited for after J's fork

    # --- paths ---------------------------------------------------------------------------

    def container_dir(self, cid: str) -> str:
        return os.path.join(self.root, "containers", cid)

    def log_path(self, cid: str) -> str:
        return os.path.join(self.container_dir(cid), f"{cid}-json.log")

    # --- output --------------------------------------------------------------------------

    def logs(self, container_id: str, offset: int = 0) -> Iterator[tuple[int, LogEntry]]:
        """The json-file log's complete lines from byte `offset` on (adapters/runtime/
        logfile.py), which the monitor writes as the container prints."""
        from adapters.runtime import logfile

        return logfile.read(self.log_path(container_id), offset)  # type: ignore[return-value]

    def log_end(self, container_id: str) -> int:
        """Where the next line will start (past the files rotated away, if any)."""
        from adapters.runtime import logfile

        return logfile.end(self.log_path(container_id))

    # --- start ---------------------------------------------------------------------------

    def spec(self, container: Container, image: Image) -> ProcessSpec:
        spec = process_spec(image.config, container.cmd, container.config, container.id)
        linked = link_env(container.endpoints)  # before -e's, as docker's
        if linked:
            spec = dataclasses.replace(spec, env=merge_env(linked, spec.env))
        return spec

    def start(self, container: Container, image: Image) -> Started:
        from adapters.kernel import devices

        spec = self.spec(container, image)
        if spec.network not in ("none", "host") and not container.endpoints \
                and not spec.network.startswith("container:"):
            # fail closed: without its leases it would run in our network namespace
            raise RuntimeError_(f"cannot start container {container.id[:12]}: network "
                                f"{spec.network} has no endpoint for it (its leases are "
                                "decided by the engine's start)")
        cdir = self.container_dir(container.id)
        os.makedirs(cdir, exist_ok=True)
        nodes = devices.nodes_for(spec.security)  # a bad --device fails before anything
        idmap = self.idmap()
        if idmap is not None:  # its monitor starts init from inside the view: mounted now
            merged = self.layers.mount(container.rw_layer, image.layers, idmap=idmap)
        else:  # mounted once the monitor is forked (_launch), while it starts init
            merged = self.layers.merged_dir(container.rw_layer)
        try:  # a host without what lamina needs fails here: leave nothing mounted
            cgroup = self._cgroup(container.id, spec, nodes, cgroupparent.of(container.config))
        except BaseException:
            self.layers.unmount(container.rw_layer)
            raise
        helper = warm_migration()  # init's joins then wait less of a grace period
        try:
            return self._launch(container, image, spec, cdir, nodes, idmap, merged, cgroup)
        finally:
            reap(helper)

    def _launch(self, container: Container, image: Image, spec: ProcessSpec, cdir: str,
                nodes: list[Node], idmap: IdMap | None, merged: str,
                cgroup: Cgroup) -> Started:
        """The rest of a start, once its view is mounted and its cgroups are made."""

        from adapters.kernel import rootfs
        from adapters.runtime import frames, monitor, nativejoin
        from adapters.runtime.init import InitPlan

        try:
            plan = InitPlan(
                spec=spec, rootfs=merged, cgroup_dirs=[str(d) for d in cgroup.dirs()],
                files=self._files(cdir, spec, idmap, container), seccomp=self._seccomp(spec),
                cgroup_mounts=rootfs.cgroup_mounts(cgroup.dirs()), devices=nodes,
                idmap=idmap, dev_sources=rootfs.node_sources(nodes, spec.security)
                if idmap is not None else {}, mounts=self._mount_sources(spec))
            plan.native = nativejoin.built()  # the command's environment may turn it off
            held = _hold_host_inputs(plan) if idmap is not None else _hold_subpaths(plan)
            if container.endpoints or spec.network.startswith("container:"):
                try:
                    plan.netns_fd = _wire(container) if container.endpoints else \
                        self._joined_netns(spec.network.partition(":")[2])
                except BaseException:
                    for fd in held:
                        os.close(fd)
                    raise
                held.append(plan.netns_fd)
                if any(ep.get("dns") for ep in container.endpoints.values()):
                    from adapters.network import resolver  # serving before init: peers resolve

                    resolver.ensure(self.root)
        except BaseException:
            self._cleanup(container, cgroup)
            raise
        go = -1
        if idmap is None:
            plan.go_fd, go = os.pipe2(os.O_CLOEXEC)
            held.append(plan.go_fd)
        try:
            mine = self._monitor(monitor.MonitorJob(self.root, container.id, cdir, plan),
                                 tuple(held))
        except BaseException:
            if go >= 0:
                os.close(go)
            raise
        finally:
            for fd in held:
                os.close(fd)
        unmounted = self._mount_view(container, image, go) if go >= 0 else None
        report = frames.recv(mine)
        text = report[1].decode() if report else "failed the monitor died before reporting"
        if unmounted is not None or not text.startswith("started "):
            mine.close()
            self._cleanup(container, cgroup)
            if unmounted is not None:
                raise unmounted
            message = text.removeprefix("failed ")
            code, _, message = message.partition(" ")
            err = RuntimeError_(f"cannot start container {container.id[:12]}: {message}")
            err.exit_code = int(code) if code.isdigit() else 125
            raise err
        self.clients[container.id] = mine
        _, pid_text, started_at = text.split()
        pid, start_time = int(pid_text), int(started_at)
        self._probe_health(container, image, plan, pid, start_time)
        return Started(pid=pid, cgroup=cgroup.path, start_time=start_time)

    def _monitor(self, job: MonitorJob, held: tuple[int, ...]) -> socket.socket:
        """The start's monitor, given `job` and the descriptors `held`: the fork server's
        spare if it keeps one this start may take (adapters/runtime/sparemonitor.py: no
        fork on the start's path), else one forked now. Returns the control socket."""
        import socket

        from adapters.runtime import monitor, sparemonitor

        spare = sparemonitor.hand(job, held)
        if spare is not None:
            return spare
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log.suspend()  # no connection crosses a fork
        try:
            monitor.spawn(job, held, theirs)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        return mine

    def _mount_view(self, container: Container, image: Image, go: int) -> BaseException | None:
        """Mount the union view while the monitor starts init, which waits at `go` (a pipe)
        before its mount namespace is made: the fork of the monitor, its PID namespace, the
        fork of init and init's cgroup joins no longer wait for the mount (~1.5 ms of every
        start). A failure is returned, to be raised once the monitor has reported init's end
        (closing `go` unwritten ends it)."""
        try:
            self.layers.mount(container.rw_layer, image.layers)
        except BaseException as err:  # noqa: BLE001 - raised by the caller, after the report
            os.close(go)
            return err
        try:
            os.write(go, b"g")
        except BrokenPipeError:  # init ended before it read it (its join failed, say): the
            pass                 # report says why, which a "broken pipe" must not hide
        finally:
            os.close(go)
        return None

    def _probe_health(self, container: Container, image: Image, plan: InitPlan, pid: int,
                      start_time: int) -> None:
        """A container with a healthcheck gets its health process (adapters/runtime/
        health.py), which probes it through exec's path and ends with its init."""
        from core import health

        cfg = image.config.get("config") or {}
        hc = health.effective(cfg, container.config)
        if not health.probes(hc):
            return
        from adapters.runtime import health as probing
        from adapters.runtime.exec import ExecTarget

        assert hc is not None
        ids = (plan.idmap.host_uid(0), plan.idmap.host_gid(0)) if plan.idmap else None
        target = ExecTarget(container.id, pid, start_time, tuple(plan.cgroup_dirs), ids)
        with suppress(OSError):  # no fork left: the status stays `starting`
            probing.spawn(probing.HealthJob(
                self.root, self.container_dir(container.id), target, plan.spec, plan.seccomp,
                hc, health.probe_argv(hc, cfg.get("Shell")), time.time()))

    def _joined_netns(self, other_id: str) -> int:
        """`--network container:ID`: that container's network namespace, as an fd opened
        while its init is still its own (pid and start time checked after the open)."""
        other = self.log.container(other_id)
        if other is None or other.state not in ("running", "paused") or not other.pid:
            raise RuntimeError_(f"cannot join network of a non running container: {other_id}")
        try:
            fd = os.open(f"/proc/{other.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd < 0 or not self.alive(other):
            if fd >= 0:
                os.close(fd)
            raise RuntimeError_(f"cannot join network of a non running container: {other_id}")
        return fd

    def idmap(self) -> IdMap | None:
        """The maps of the root's --userns-remap (None: plain), read from the log on every
        start and exec: one indexed read, and a long-lived daemon never acts on a setting
        the log no longer holds."""
        from core.rootconfig import current

        config = current(self.log)
        if not config.remapped:
            return None
        from adapters.kernel.idmap import IdMap

        return IdMap.from_rows(config.uid_map, config.gid_map)

    def _seccomp(self, spec: ProcessSpec) -> bytes | None:
        """The container's compiled filter, from the cache under the root after the first."""
        from adapters.kernel import seccomp

        return seccomp.program(spec.security.seccomp, spec.security.caps,
                               os.path.join(self.root, "seccomp"))

    def _cgroup(self, cid: str, spec: ProcessSpec, nodes: Sequence[Node],
                parent: str) -> Cgroup:
        """The container's cgroup with its limits and its device allow-list, both in place
        before init joins it (the nodes made in its /dev and the rules are the same list)."""
        from adapters.kernel import readycgroup
        from core.devices import rules_for

        limits = Limits.of(spec.limits)
        rules = rules_for(spec.security, nodes)
        with suppress(CgroupError):
            Cgroup.open(cid, parent=parent).remove()
        return readycgroup.take(cid, limits, rules, parent) or \
            Cgroup.create(cid, limits, devices=rules, parent=parent)

    def _files(self, cdir: str, spec: ProcessSpec, idmap: IdMap | None,
               container: Container) -> dict[str, str | int]:
        """The files bound over /etc/hostname, hosts (and resolv.conf on a network that
        has one: the host's, or a bridge's, core/process.resolv_conf). A remapped
        container's root owns them (as it owns them in docker), else they would be the host
        root's: nobody's inside, and not writable."""
        files = {"/etc/hostname": f"{spec.hostname}\n",
                 "/etc/hosts": hosts_file(spec, container.endpoints)}
        host = ""
        if spec.network != "none" and os.path.exists("/etc/resolv.conf"):
            with open("/etc/resolv.conf") as f:
                host = f.read()
        if spec.network.startswith("container:"):  # its hosts and resolv.conf, as docker
            files.update(self._shared_files(spec.network.partition(":")[2]))
        elif spec.network == "host" and host:
            files["/etc/resolv.conf"] = host
        elif container.endpoints:
            files["/etc/resolv.conf"] = resolv_conf(host, spec, container.endpoints)
        out: dict[str, str | int] = {}
        for inside, text in files.items():
            path = os.path.join(cdir, os.path.basename(inside))
            with open(path, "w") as f:
                f.write(text)
                if idmap is not None:
                    os.fchown(f.fileno(), idmap.host_uid(0), idmap.host_gid(0))
            out[inside] = path
        return out

    def _shared_files(self, other_id: str) -> dict[str, str]:
        out = {}
        for inside in ("/etc/hosts", "/etc/resolv.conf"):
            path = os.path.join(self.container_dir(other_id), os.path.basename(inside))
            with suppress(OSError), open(path) as f:
                out[inside] = f.read()
        return out

    def _mount_sources(self, spec: ProcessSpec) -> list[tuple[MountPoint, str | int]]:
        """Each mount point with its host source: a bind's path, a volume's directory
        (adapters/storage/volumes.py), nothing for a tmpfs."""
        out: list[tuple[MountPoint, str | int]] = []
        if spec.init:
            out.append(_init_mount())
        if not spec.mounts:
            return out
        from adapters.storage.volumes import LinuxVolumeStore

        _check_propagation(spec.mounts)
        volumes = LinuxVolumeStore(self.root)
        return out + [(m, volumes.path(m.source) if m.type == "volume" else m.source)
                      for m in spec.mounts]

    def confirm_start(self, container: Container) -> None:
        from adapters.runtime import frames

        sock = self.clients.get(container.id)
        if sock is not None:
            frames.send(sock, frames.RECORDED, b"")

    def abort_start(self, container: Container) -> None:
        sock = self.clients.pop(container.id, None)
        if sock is not None:
            sock.close()  # the monitor kills init and exits
        self._wait_gone(container.pid, 5) if container.pid else None
        self.release(container)

    def attach(self, container_id: str) -> socket.socket | None:
        """The attach stream of a container this process started (for a foreground run)."""
        return self.clients.pop(container_id, None)

    def detach(self, container_id: str) -> None:
        """Let go of a started container: its monitor records its end (and removes it
        with --rm) instead of waiting for us to."""
        from adapters.runtime import frames

        sock = self.clients.pop(container_id, None)
        if sock is not None:
            with suppress(OSError):
                frames.send(sock, frames.DETACH, b"")
            sock.close()

    # --- ending --------------------------------------------------------------------------

    @contextmanager
    def ending(self, container: Container) -> Iterator[None]:
        cdir = self.container_dir(container.id)
        os.makedirs(cdir, exist_ok=True)
        fd = os.open(os.path.join(cdir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _exit_of(self, container: Container, timeout: float) -> dict[str, Any] | None:
        """Wait for the monitor's record of the container's exit."""
        from adapters.runtime import supervise

        deadline = time.monotonic() + timeout
        cdir = self.container_dir(container.id)
        self._wait_gone(container.pid, timeout)
        while True:
            record = supervise.read_exit(cdir, container.pid)
            if record is not None or time.monotonic() >= deadline:
                return record
            time.sleep(0.002)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        try:
            return bool(select.select([fd], [], [], timeout)[0])
        finally:
            os.close(fd)

    def _ended(self, container: Container, sig: int, timeout: float) -> Ended | None:
        record = self._exit_of(container, timeout)
        if record is None:
            return None
        return Ended(signal=sig, exit_code=int(record["code"]))

    def signal(self, container: Container, sig: int) -> Ended | None:
        cgroup = self._open_cgroup(container)
        paused = cgroup is not None and cgroup.is_frozen()
        if sig == signal.SIGKILL:
            self._kill_all(container, cgroup)
            return self._ended(container, sig, 10) or Ended(sig, 128 + sig)
        _send(container.pid, sig)
        if paused:
            return None  # delivered when thawed, as docker does
        return self._ended(container, sig, 0.05)

    def _kill_all(self, container: Container, cgroup: Cgroup | None) -> None:
        if cgroup is not None:
            cgroup.kill(signal.SIGKILL)
            if cgroup.is_frozen():
                cgroup.thaw()
        _send(container.pid, signal.SIGKILL)

    def stop(self, container: Container, timeout: float | None,
             sig: int = _TERM) -> Ended:
        cgroup = self._open_cgroup(container)
        _send(container.pid, sig)
        if cgroup is not None and cgroup.is_frozen():
            cgroup.thaw()  # the signal is delivered now
        ended = self._ended(container, sig, FOREVER if timeout is None else timeout)
        if ended is not None:
            return ended
        self._kill_all(container, self._open_cgroup(container))
        return self._ended(container, signal.SIGKILL, 10) or Ended(signal.SIGKILL, 137)

    # --- freezer, exec, release --------------------------------------------------------------

    def _open_cgroup(self, container: Container) -> Cgroup | None:
        try:
            return Cgroup.open(container.id, parent=cgroupparent.of(container.config))
        except CgroupError:
            return None

    def freeze(self, container: Container) -> None:
        cgroup = self._open_cgroup(container)
        if cgroup is None:
            raise RuntimeError_(f"container {container.id[:12]} has no cgroup to freeze")
        cgroup.freeze()

    def thaw(self, container: Container) -> None:
        cgroup = self._open_cgroup(container)
        if cgroup is None:
            raise RuntimeError_(f"container {container.id[:12]} has no cgroup to thaw")
        cgroup.thaw()

    def limit(self, container: Container, limits: Mapping[str, Any]) -> None:
        cgroup = self._open_cgroup(container)
        if cgroup is None:
            raise RuntimeError_(f"container {container.id[:12]} has no cgroup to update")
        cgroup.update(limits)

    @contextmanager
    def ahead_of_exec(self) -> Iterator[None]:
        """A no-op cgroup migration (cgroups.Warming) started as the exec's command begins:
        the joiner's first cgroup.procs write then waits none of the kernel's RCU grace
        period (5-20 ms when no migration came lately), which passes meanwhile, while the
        command reads the container and records ExecStarted. Nothing an exec does before
        its join needs the cgroup_mutex the waiting write holds."""
        self._warming = Warming()
        try:
            yield
        finally:
            self._warming.wait()
            self._warming = None

    def exec(self, container: Container, argv: Sequence[str], user: str,
             options: Mapping[str, Any]) -> int:
        from adapters.runtime.exec import ExecTarget, run_exec

        image = self.log.image(container.image)
        spec = self.spec(container, image)
        cgroup = self._open_cgroup(container)
        dirs = tuple(str(d) for d in cgroup.dirs()) if cgroup is not None else ()
        idmap = self.idmap()
        root_ids = (idmap.host_uid(0), idmap.host_gid(0)) if idmap is not None else None
        target = ExecTarget(container.id, container.pid, container.start_time, dirs, root_ids)
        # The log stays open across the joiner's fork, the one fork that may keep it: the
        # joiner and its child never return into lamina's code (one execs, both leave by
        # os._exit), so neither uses, closes nor finalizes the connection, and SQLite's
        # locks are this process's alone (fcntl locks are not inherited). Reopened, it cost
        # ExecExited a new connection's first commit (SQLite then syncs the directory of the
        # WAL it opened too) and its page cache. `before_fork` closes it for the fork that
        # runs on (a detached exec's watcher records the end).
        # The warming's write may still wait out its grace period: the joiner is forked
        # meanwhile and gets as far as its first cgroup.procs write, which then waits only
        # for the rest of it (the warming holds the cgroup_mutex). A fork with the thread
        # still in its write is safe for the joiner, which runs none of this process's
        # threads' code and leaves by exec or os._exit.
        warming = self._warming
        return run_exec(target, spec, argv, user, options, self._seccomp(spec),
                        before_fork=self.log.suspend, durable=self.log.flush,
                        forked=warming.wait if warming is not None else lambda: None)

    def release(self, container: Container) -> None:
        cgroup = self._open_cgroup(container)
        if cgroup is not None:
            self._cleanup(container, cgroup)
        else:
            self._unwire(container, emptied=True)
            self.layers.unmount(container.rw_layer)

    def connect(self, container: Container, endpoint: Mapping[str, Any]) -> None:
        """One more veth into the running container's network namespace (its init's)."""
        from adapters import faults
        from adapters.network import bridge, endpoints

        try:
            fd = os.open(f"/proc/{container.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise RuntimeError_(f"container {container.id[:12]}: {err.strerror}") from None
        try:
            if not self.alive(container):
                raise RuntimeError_(f"container {container.id[:12]} is not running")
            endpoints.ensure_network(endpoint)
            endpoints.attach(endpoint, fd, int(endpoint["slot"]), route=False)
            faults.point("runtime.connected")  # the veth in, the log not told yet
        except bridge.LinkError as err:
            raise RuntimeError_(f"cannot connect container {container.id[:12]}: {err}") \
                from None
        finally:
            os.close(fd)
        if endpoint.get("dns"):
            from adapters.network import resolver

            resolver.ensure(self.root)

    def disconnect(self, container: Container, endpoint: Mapping[str, Any]) -> None:
        """Its link off the network, and its published ports when they were on it (the
        log released them with the disconnect: core/model.py publishing_network)."""
        from adapters import faults
        from adapters.network import bridge, endpoints
        from core.model import publishing_network

        faults.point("runtime.disconnecting")  # recorded as left, the veth still there
        on_it = [name for name, ep in container.endpoints.items() if ep["id"] == endpoint["id"]]
        if publishing_network(container) in on_it:
            from adapters.network import nat

            nat.unpublish(endpoints.publication_key(container.id))
        bridge.detach(endpoint["veth"])

    def _cleanup(self, container: Container, cgroup: Cgroup) -> None:
        emptied = False
        try:
            if cgroup.pids():
                cgroup.kill(signal.SIGKILL)
            cgroup.remove()
            emptied = True
        except CgroupError:
            pass
        self._unwire(container, emptied)
        self.layers.unmount(container.rw_layer)

    def _unwire(self, container: Container, emptied: bool) -> None:
        """The run's published ports, and its veths unless the kernel takes them: once no
        process is left in its network namespace (its cgroup `emptied`, and no running
        container shares it with --network container:), the namespace goes and each veth
        pair with it. Deleting a live link costs 20-30 ms here (the kernel waits for its
        readers); a run's end need not pay that when the kernel does the work anyway."""
        if not (container.endpoints or container.ports):
            return
        from adapters.network import endpoints

        shared = emptied and any(
            c.config.get("network") == f"container:{container.id}"
            for c in self.log.containers(("running", "paused")))
        endpoints.unwire(container.id, container.endpoints, list(container.ports),
                         links=not emptied or shared)

    # --- reconciliation ------------------------------------------------------------------

    def alive(self, container: Container) -> bool:
        """The recorded process is still there and still the same one: same pid and start
        time (a pid reused by another process doesn't count). A start recorded before start
        times were: the pid must sit in this container's cgroup."""
        from adapters.kernel.proc import is_init_of

        return is_init_of(container.pid, container.start_time, container.id)

    def watched(self, container: Container, settle: float = 0) -> bool:
        from adapters.kernel.proc import wait_gone

        stamp = self.monitor_stamp(container.id)
        return stamp is not None and not wait_gone(stamp, settle)

    def monitor_stamp(self, cid: str) -> str | None:
        """`pid.starttime` of the container's monitor, as the start wrote it (monitor._note);
        None when there is none."""
        try:
            with open(os.path.join(self.container_dir(cid), "monitor")) as f:
                return f.read().strip()
        except OSError:
            return None

    def last_exit(self, container: Container) -> int | None:
        from adapters.runtime import supervise

        record = supervise.read_exit(self.container_dir(container.id), container.pid)
        return int(record["code"]) if record else None

    def oom_killed(self, container: Container) -> bool:
        try:
            return Cgroup.open(container.id,
                               parent=cgroupparent.of(container.config)).oom_killed()
        except Exception:  # noqa: BLE001 - the cgroup may be gone or half-removed by now
            return False

    def orphans(self, known: Mapping[str, Container]) -> list[str]:
        from adapters.runtime import hostcheck

        return [f.text for f in hostcheck.findings(self, known)]

    def clean_orphans(self, known: Mapping[str, Container]) -> None:
        from adapters.runtime import hostcheck

        for finding in hostcheck.findings(self, known):
            finding.repair()

    def remove(self, container: Container) -> None:
        """The container is gone: delete its logs and runtime files (renamed out of sight
        at once, deleted after the answer when the command defers: adapters/deferred.py)."""
        from adapters.storage.store import _remove_tree

        _remove_tree(self.container_dir(container.id), self.layers.tmp_dir)

    # --- files: cp and the archive endpoints (adapters/runtime/files.py) -----------------

    def path_stat(self, container: Container, path: str) -> dict[str, Any]:
        from adapters.runtime import files

        return files.path_stat(files.view_of(self, container), path)

    def archive_out(self, container: Container, path: str, out: BinaryIO,
                    follow_link: bool = False,
                    on_stat: Callable[[dict[str, Any]], None] | None = None
                    ) -> dict[str, Any]:
        from adapters.runtime import files

        return files.archive_out(files.view_of(self, container), path, out, follow_link,
                                 on_stat)

    def archive_in(self, container: Container, path: str, tar: BinaryIO,
                   no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        from adapters.runtime import files

        files.archive_in(files.view_of(self, container), path, tar, no_overwrite_dir_non_dir,
                         copy_uid_gid)


def _check_propagation(points: Sequence[MountPoint]) -> None:
    """docker's check at start: a shared bind's source must be on a shared mount, a slave
    bind's on a shared or slave one, in the namespace the runtime clones it from."""
    from core.mounts import propagation_problem

    if not any(_keeps_peers(m) for m in points):
        return
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    for m in points:
        problem = propagation_problem(m, mountinfo, os.path.realpath(m.source))
        if problem:
            raise RuntimeError_(problem)


def _keeps_peers(m: MountPoint) -> bool:
    """A shared or slave bind: cloned here, where its source's mount keeps its peer group
    (init makes every mount of its new namespace private before it mounts anything)."""
    from core.mounts import SHARED, SLAVE

    return m.type == "bind" and m.propagation in SHARED + SLAVE


def _held_mounts(plan: InitPlan, fds: list[int]) -> list[tuple[MountPoint, str | int]]:
    """Mounts as detached clones made here: a remapped init's binds and volumes (read-only
    if asked; volumes idmapped to its user namespace's maps, as its layers are; binds as
    the host owns them, as docker's), any container's volume subpath (found inside the
    volume with openat2, so a symlink another container plants there can't lead out), and
    a shared or slave bind (a clone keeps the peer group of the mount it was made from)."""
    from adapters.kernel.idmap import cloned_mount, userns_holding

    def held(m: MountPoint) -> bool:
        return m.type != "tmpfs" and (plan.idmap is not None or bool(m.subpath)
                                      or _keeps_peers(m))

    if not any(held(m) for m, _ in plan.mounts):
        return list(plan.mounts)
    out: list[tuple[MountPoint, str | int]] = []
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(userns_holding(plan.idmap)) if plan.idmap else None
        for m, source in plan.mounts:
            if held(m) and not isinstance(source, int):
                where: str | int = _subpath(source, m.subpath) if m.subpath else source
                try:
                    fds.append(cloned_mount(where, m.read_only,
                                            ns if m.type == "volume" else None))
                finally:
                    if isinstance(where, int):
                        os.close(where)
                source = fds[-1]
            out.append((m, source))
    return out


def _subpath(volume: str, subpath: str) -> int:
    """An O_PATH fd of `subpath` inside the volume's directory (it must exist: docker's)."""
    from adapters.kernel import inroot

    root = inroot.open_root(volume)
    try:
        return inroot.open_in_root(root, subpath, os.O_PATH)
    except OSError as err:
        raise RuntimeError_(f"cannot mount the volume's subpath: "
                            f"{inroot.describe(err, subpath)}") from None
    finally:
        os.close(root)


def _hold_subpaths(plan: InitPlan) -> list[int]:
    """A plain container's volume subpaths as clones (see _held_mounts); the fds are the
    caller's to close once init has them."""
    fds: list[int] = []
    try:
        plan.mounts = _held_mounts(plan, fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _hold_host_inputs(plan: InitPlan) -> list[int]:
    """What a remapped init binds from the host, as detached mounts made here (open_tree):
    it runs as a subordinate uid that may not walk this root's 0700 directories (nor a
    --device path's), and a bind needs its source in init's own mount namespace; a detached
    clone is attached there (move_mount) instead. The fds are inherited by the monitor and
    init, and closed by init's exec. Each device is checked to be the very node the
    container was given."""
    from adapters.kernel.idmap import cloned_tree

    fds: list[int] = []

    def held(path: str | int) -> int:
        if isinstance(path, int):
            return path  # held already
        fds.append(cloned_tree(path))
        return fds[-1]

    try:
        plan.files = {inside: held(path) for inside, path in plan.files.items()}
        sources: dict[str, str | int] = {}
        for node in plan.devices:
            host = str(plan.dev_sources[node.path])
            sources[node.path] = held(host)
            st = os.fstat(fds[-1])
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else "-"
            if (kind, os.major(st.st_rdev), os.minor(st.st_rdev)) != \
                    (node.type, node.major, node.minor):
                raise RuntimeError_(f"device {host} is not {node.type} {node.major}:"
                                    f"{node.minor}: it changed since the container was made")
        plan.dev_sources = sources
        plan.mounts = _held_mounts(plan, fds)
    except BaseException as err:
        for fd in fds:
            os.close(fd)
        if isinstance(err, OSError):
            raise RuntimeError_(f"cannot start the container: {err}") from None
        raise
    return fds


INIT_BINARY = "/usr/bin/tini-static"  # Debian's tini, static: it needs nothing inside
FOREVER = 10.0**9  # a stop timeout of -1: wait for the process, however long


def _init_mount() -> tuple[MountPoint, str]:
    """--init: the host's static tini bound read-only at /sbin/docker-init, as docker binds
    its docker-init, through the same mount machinery as -v binds."""
    from core.mounts import MountPoint
    from core.process import INIT_PATH

    if not os.path.isfile(INIT_BINARY):
        raise RuntimeError_(f"--init needs {INIT_BINARY} on this host (Debian's tini): "
                            "it is missing")
    return MountPoint(type="bind", target=INIT_PATH, source=INIT_BINARY,
                      read_only=True), INIT_BINARY


def _wire(container: Container) -> int:
    """The container's network namespace, wired (adapters/network/endpoints.py)."""
    from adapters.network import endpoints

    try:
        return endpoints.wire(container.id, container.endpoints, list(container.ports))
    except endpoints.WiringError as err:
        raise RuntimeError_(str(err)) from None


def _send(pid: int, sig: int) -> None:
    if pid <= 0:
        return
    with suppress(ProcessLookupError):
        os.kill(pid, sig)
