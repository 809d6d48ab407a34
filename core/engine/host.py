"""The root and the host: the root's setting (system configure), and the log compared with
the host (recover, the cheap check every state-changing command runs first; system check
and system reconcile, the whole comparison)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from core import rootconfig
from core.command import Command
from core.engine.base import EngineBase
from core.errors import Conflict, LaminaError
from core.model import Container
from core.references import short
from events import types as ev


def configure_root(e: EngineBase, userns_remap: str,
                   resolve: Callable[[str], rootconfig.RootConfig]) -> rootconfig.RootConfig:
    """Choose the root's --userns-remap; `resolve` turns the setting into maps (the
    adapters' work: users, /etc/subuid, what the kernel supports). Only while the root
    has no container, since its containers' processes and files were made under the old
    setting; the same setting again records nothing. Returns the setting in force."""
    with e.command("system configure", "root") as cmd:
        wanted = rootconfig.setting(userns_remap)
        now, version = rootconfig.read(e.log)
        if now.userns_remap == wanted:
            return now
        count = len(e.log.containers())
        if count:
            raise Conflict(f"this root has {count} container{'s' if count > 1 else ''}: "
                           "remove them before changing --userns-remap")
        config = resolve(wanted)
        cmd.append([ev.RootConfigured(id="root", **config.data())],
                   {rootconfig.ROOT_STREAM: version})
        return config


def reconcile(e: EngineBase, repair: bool) -> list[str]:
    """Compare the log with the host: containers recorded live whose process is gone (or
    is another process by now), and what the host holds that the log doesn't account
    for (runtime.orphans: cgroups, mounts, freezer states, layer directories, staging;
    volume directories no volume of the log owns; bridges and nftables chains no network of
    the log has). With `repair`, record the lost
    processes' ends (with the reason) and clean the leftovers. Audited either way
    (`system check` / `system reconcile`)."""
    name = "system reconcile" if repair else "system check"
    with e.command(name, "host") as cmd:
        findings = []
        for c in _lost(e, settle=2.0):
            findings.append(f"container {short(c.id)} ({c.name}) is {c.state} in the "
                            "log but its process is gone")
            if repair:
                cmd.retrying(partial(_record_lost, e, cmd, c))
        known = {c.id: c for c in e.log.containers()}
        findings += e.runtime.orphans(known)
        if repair:
            e.runtime.clean_orphans(known)
        findings += _volumes(e, repair)
        findings += _networks(e, repair)
        cmd.append([ev.HostChecked(id="host", findings=findings, repaired=repair)], {})
        return findings


def _volumes(e: EngineBase, repair: bool) -> list[str]:
    """Volume data the log doesn't account for: made by a create that died before its
    record, or left by an rm that died after its record (the log says the volume is gone,
    so its data goes; a volume still being made by a live process is not listed by the
    store). A volume of the log whose data is missing is reported: nothing brings it back."""
    findings = []
    recorded = {v.id for v in e.log.volumes()}
    for name in e.volumes.names():
        if name not in recorded:
            findings.append(f"volume directory {name} belongs to no volume in the log")
            if repair:
                e.volumes.remove(name)
    findings += [f"volume {name} is in the log but its data is missing"
                 for name in sorted(recorded) if not e.volumes.exists(name)]
    return findings


def _networks(e: EngineBase, repair: bool) -> list[str]:
    """Bridges (and their nftables chains) lamina owns on the host that no live network of
    the log has: made by a create that died before its record, or left by an rm that died
    after its record. The default bridge lamina0 belongs to the predefined `bridge` network
    and is left alone."""
    from core import networks as ipam
    from core.engine.networks import bridge_of

    live = {bridge_of(n) for n in e.log.networks()} | {ipam.DEFAULT_BRIDGE}
    findings = []
    for name in e.networks.names():
        if name not in live:
            findings.append(f"network bridge {name} belongs to no network in the log")
            if repair:
                e.networks.discard(name)
    return findings


RECOVER_EVERY = 1.0  # seconds between the recover() calls of a waiting command (`wait`)


def recover(e: EngineBase) -> list[str]:
    """The cheap check every state-changing process runs first: a running or paused
    container whose process is gone (pid and start time) and whose monitor is gone too
    gets its end recorded. Nothing else is looked at (a few /proc reads, well under a
    millisecond); appends only when it finds something (HostChecked, repaired)."""
    lost = _lost(e)
    if not lost:
        return []
    recorded = set()
    with e.command("system recover", "host") as cmd:
        findings = []
        for c in lost:
            try:  # an exec or export may record on the stream meanwhile: judge again
                done = cmd.retrying(partial(_record_lost, e, cmd, c))
            except LaminaError:  # still changing (a ConcurrencyError again), or the
                continue         # log is busy: the next command's check looks again
            if done:
                recorded.add(c.id)
                findings.append(f"container {short(c.id)} ({c.name}) was {c.state} in "
                                "the log but its process was gone")
        if findings:
            cmd.append([ev.HostChecked(id="host", findings=findings, repaired=True)], {})
    if any(c.config.get("restart") for c in lost if c.id in recorded):
        from core.engine import restarts  # a reboot (or a lost monitor): their policy

        restarts.bring_back(e, "its process was lost (host restarted or monitor gone)",
                            only=recorded)
    return findings


def _lost(e: EngineBase, settle: float = 0) -> list[Container]:
    """Live containers whose process is gone and whose monitor won't record it.

    `settle`: a monitor whose process is gone is about to record the exit, or to give up
    (its client died before recording the start): wait that long for it to finish."""
    lost = []
    for c in e.log.containers(("running", "paused")):
        if e.runtime.alive(c) or e.runtime.watched(c, settle):
            continue
        now = e.log.container(c.id) if settle else c  # the monitor may have recorded
        if now is not None and now.state in ("running", "paused") and now.pid == c.pid:
            lost.append(now)
    return lost


def _record_lost(e: EngineBase, cmd: Command, c: Container) -> bool:
    """Record that a live container's process is gone, unless someone did meanwhile.
    True if this recorded it."""
    with e.runtime.ending(c):
        now = e.log.container(c.id)
        if now is None or now.state not in ("running", "paused") or now.pid != c.pid \
                or e.runtime.alive(now) or e.runtime.watched(now):
            return False
        code = e.runtime.last_exit(now)
        reason = ("the process ended while no monitor watched (exit status unknown)"
                  if code is None else "the monitor saw the process end but did not record it")
        cmd.append_locked(now, ev.ContainerExited(
            id=c.id, exit_code=255 if code is None else code, reason=reason))
        e.runtime.release(c)
    return True
