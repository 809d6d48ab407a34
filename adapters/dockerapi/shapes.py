"""docker's JSON shapes and words for lamina's aggregates and events (pure functions)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from core import health
from core.model import Container, ContainerBrief, Image, ImageBrief, Layer, Network


def parse_at(at: str) -> datetime | None:
    if not at:
        return None
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return None


def unix(at: str) -> int:
    when = parse_at(at)
    return int(when.timestamp()) if when else 0


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: `Less than a second`, `5 minutes`, `About an hour`."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _since(at: str, now: datetime) -> str:
    when = parse_at(at)
    return human_duration((now - when).total_seconds()) if when else ""


def state_word(c: Container) -> str:
    """lamina's four states in docker's words (clarifications: created/exited/running/paused)."""
    if c.state == "stopped":
        if c.restarting:  # its restart policy's back-off: a flag, not a fifth state
            return "restarting"
        return "exited" if c.ran else "created"
    return c.state


def status_text(c: Container, now: datetime | None = None, health: str = "none") -> str:
    """ps's STATUS column: `Up 5 minutes (Paused)`, `Exited (0) 2 minutes ago`, `Created`;
    `Up 5 minutes (healthy)` with a healthcheck (`health`: core.health.status_of's word)."""
    now = now or datetime.now(UTC)
    word = state_word(c)
    if word == "created":
        return "Created"
    if word == "exited":
        return f"Exited ({c.exit_code or 0}) {_since(c.finished_at, now)} ago"
    if word == "restarting":
        return f"Restarting ({c.exit_code or 0}) {_since(c.finished_at, now)} ago"
    up = f"Up {_since(c.started_at, now)}"
    if word == "paused":
        return up + " (Paused)"
    from core.health import suffix

    return up + suffix(health)


def image_name(image: Image | None, iid: str) -> str:
    if image is not None and image.tags:
        return familiar(image.tags[0])
    return f"sha256:{iid}"


def given_image(c: Container, image: Image | None) -> str:
    """Config.Image as docker keeps it: the image as the client named it at create (older
    containers recorded none: their image's first tag)."""
    return c.config.get("image_ref") or image_name(image, c.image)


def listed_image(c: Container, image: Image | None) -> str:
    """docker ps's IMAGE: the name given at create while it still names the container's
    image, else the image's id (docker's list.go)."""
    from core.filters import image_named

    ref = c.config.get("image_ref")
    if ref and image is not None and image_named({image.id: image}, ref) == image.id:
        return str(ref)
    return image_name(image, c.image) if not ref else f"sha256:{c.image}"


def familiar(tag: str) -> str:
    """`docker.io/library/busybox:latest` -> `busybox:latest`, as docker shows tags."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return tag


def command_text(c: Container, image: Image | None) -> str:
    from core.process import command_line

    cfg = (image.config.get("config") if image else None) or {}
    try:
        return " ".join(command_line(cfg, c.cmd, c.config.get("entrypoint")))
    except Exception:
        return " ".join(c.cmd)


def health_word(c: Container | ContainerBrief, image: Image | ImageBrief | None) -> str:
    """docker's health status of a container: none, starting, healthy or unhealthy."""
    cfg = (image.config.get("config") if image else None) or {}
    return health.status_of(c.state, c.ran, c.health, health.effective(cfg, c.config))


def network_mode(c: Container) -> str:
    return c.config.get("network") or "none"


def container_summary(c: Container, image: Image | None, root: str,
                      networks: Iterable[Network] = (), api_version: str | None = None
                      ) -> dict[str, Any]:
    """One entry of GET /containers/json (docker ps); `networks`: every network, to name
    the ones it is on."""
    from adapters.storage import netsettings
    from adapters.storage.inspect import container_mounts

    return {
        "Id": c.id, "Names": [f"/{c.name}"], "Image": listed_image(c, image),
        "ImageID": f"sha256:{c.image}", "Command": command_text(c, image),
        "Created": unix(c.created), "Ports": netsettings.summary_ports(c, image),
        "Labels": c.config.get("labels") or {},
        "State": state_word(c), "Status": status_text(c, health=health_word(c, image)),
        "HostConfig": {"NetworkMode": network_mode(c)},
        "NetworkSettings": {"Networks": netsettings.networks_of(
            c, netsettings.resolver(networks), api_version)},
        "Mounts": container_mounts(c, root),
    }


def container_inspect(c: Container, image: Image | None, store: Any, root: str,
                      networks: Iterable[Network] = (), api_version: str | None = None
                      ) -> dict[str, Any]:
    """GET /containers/{id}/json: lamina's inspect document in docker's words."""
    from adapters.storage import inspect

    doc = inspect.container_doc(c, image, store, root, networks, api_version)
    doc["State"]["Status"] = state_word(c)
    doc["State"]["ExitCode"] = c.exit_code or 0
    doc["State"]["Error"] = c.exit_reason or ""
    doc["Platform"] = "linux"
    doc["ResolvConfPath"] = doc["HostnamePath"] = doc["HostsPath"] = ""
    host = doc["HostConfig"]
    host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    cfg = doc["Config"]
    cfg.update({"AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                "Labels": c.config.get("labels") or {},
                "Image": given_image(c, image)})
    return doc


def image_summary(i: Image, layers: dict[str, Layer], containers: int) -> dict[str, Any]:
    """One entry of GET /images/json (docker images)."""
    size = sum(layers[lid].size for lid in i.layers if lid in layers)
    cfg = i.config.get("config") or {}
    return {
        "Id": f"sha256:{i.id}", "ParentId": f"sha256:{i.parent}" if i.parent else "",
        "RepoTags": [familiar(t) for t in i.tags], "RepoDigests": [],
        "Created": unix(i.config.get("created") or i.created), "Size": size,
        "SharedSize": -1, "VirtualSize": size, "Labels": cfg.get("Labels") or {},
        "Containers": containers,
    }


def image_inspect(i: Image, layers: dict[str, Layer], store: Any) -> dict[str, Any]:
    from adapters.storage import inspect

    doc = inspect.image_doc(i, layers, store)
    doc["RepoTags"] = [familiar(t) for t in i.tags]
    doc["VirtualSize"] = doc["Size"]
    doc.setdefault("ContainerConfig", doc.get("Config") or {})
    return doc


def history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "Created": unix(r["Created"]) if isinstance(r["Created"], str)
             else r["Created"], "Tags": [familiar(t) for t in r.get("Tags") or []] or None}
            for r in rows]


# --- events ------------------------------------------------------------------------------------

_ACTIONS: dict[str, tuple[str, list[str]]] = {
    "ContainerCreated": ("container", ["create"]),
    "ContainerStarted": ("container", ["start"]),
    "ContainerRestarted": ("container", ["start", "restart"]),
    "ContainerPaused": ("container", ["pause"]),
    "ContainerUnpaused": ("container", ["unpause"]),
    "ContainerStopped": ("container", ["die", "stop"]),
    "ContainerKilled": ("container", ["kill", "die"]),
    "ContainerSignalled": ("container", ["kill"]),
    "ContainerExited": ("container", ["die"]),
    "ContainerRemoved": ("container", ["destroy"]),
    "ContainerCommitted": ("container", ["commit"]),
    "ContainerExported": ("container", ["export"]),
    "ContainerCopiedFrom": ("container", ["archive-path"]),
    "ContainerCopiedTo": ("container", ["extract-to-dir"]),
    "ContainerRenamed": ("container", ["rename"]),
    "ContainerUpdated": ("container", ["update"]),
    "ContainerHealthChanged": ("container", ["health_status"]),
    "ExecStarted": ("container", ["exec_start"]),
    "ExecDetached": ("container", ["exec_detach"]),
    "ContainerAttached": ("container", ["attach"]),
    "ContainerDetached": ("container", ["detach"]),
    "ExecExited": ("container", ["exec_die"]),
    "ImageCreated": ("image", ["create"]),
    "ImageTagged": ("image", ["tag"]),
    "ImageUntagged": ("image", ["untag"]),
    "ImageRemoved": ("image", ["delete"]),
    "ImageSaved": ("image", ["save"]),
    "ImageLoaded": ("image", ["load"]),
    "LayerRegistered": ("layer", ["create"]),
    "LayerRemoved": ("layer", ["delete"]),
    "VolumeCreated": ("volume", ["create"]),
    "VolumeMounted": ("volume", ["mount"]),
    "VolumeUnmounted": ("volume", ["unmount"]),
    "VolumeRemoved": ("volume", ["destroy"]),
    "NetworkCreated": ("network", ["create"]),
    "NetworkRemoved": ("network", ["destroy"]),
    "ContainerConnected": ("network", ["connect"]),
    "ContainerDisconnected": ("network", ["disconnect"]),
    "CommandRejected": ("lamina", ["rejected"]),
}


# the events that end a run (its leases released with it), and those that begin one
_ENDING = ("ContainerStopped", "ContainerKilled", "ContainerExited", "ContainerRemoved",
           "ContainerRestarted")
_BEGINNING = ("ContainerStarted", "ContainerRestarted")


def held_before(con: Any, stream: str, seq: int) -> list[tuple[str, str]]:
    """The (network id, name) of each endpoint a container held just before event `seq`
    of its stream, in slot order: its last run's leases as the log recorded them, with
    the connects and disconnects since (none when that run had ended)."""
    rows = con.execute(
        "SELECT type, data FROM events WHERE stream = ? AND seq < ? AND seq >= coalesce(("
        "SELECT max(seq) FROM events WHERE stream = ? AND seq < ? AND type IN "
        "('ContainerStarted', 'ContainerRestarted')), ?) ORDER BY seq",
        (stream, seq, stream, seq, seq))
    held: dict[str, dict[str, Any]] = {}
    for kind, data in rows:
        d = json.loads(data)
        if kind in _BEGINNING:
            held = dict(d.get("networks") or {})
        elif kind == "ContainerConnected" and d.get("endpoint"):
            held[d["network"]] = d["endpoint"]
        elif kind == "ContainerDisconnected":
            held.pop(d["network"], None)
        elif kind in _ENDING:
            held = {}
    ordered = sorted(held.items(), key=lambda kv: kv[1].get("slot", 0))
    return [(ep.get("id", ""), name) for name, ep in ordered]


def _endpoint_event(rec: Any, action: str, network_id: str, network: str,
                    uid_user: dict[str, str]) -> dict[str, Any]:
    """docker's `network connect|disconnect` message of one endpoint of a run (the
    network is the actor, the container an attribute)."""
    when = parse_at(rec.at)
    ns = int(when.timestamp() * 1e9) if when else 0
    attrs = {**uid_user, "container": rec.target, "name": network, "type": "bridge"}
    return {"Type": "network", "Action": action,
            "Actor": {"ID": network_id, "Attributes": attrs},
            "scope": "local", "time": ns // 10**9, "timeNano": ns}


def docker_events(rec: Any, names: Mapping[str, str], con: Any = None) -> list[dict[str, Any]]:
    """One lamina event as docker's event messages (Type, Action, Actor, time, timeNano).

    `names` maps container ids to names (from the log: a removed container keeps its name
    here). Every message carries who asked (`uid`, `user`) and the log's `seq`. With the
    log's connection `con`, a run's start and end carry docker's `network connect` (before
    `start`) and `network disconnect` (after `die`) for each endpoint it leased or
    released, as docker's daemon emits them."""
    if rec.type == "ContainerConnected" and not rec.data.get("endpoint"):
        return []  # a stopped container's: docker's connects a running one's endpoint only
    out = _messages(rec, names)
    if con is None or rec.type not in (*_ENDING, *_BEGINNING):
        return out
    who = {"uid": str(rec.meta.get("uid", "")), "user": str(rec.meta.get("user", "")),
           "seq": str(rec.seq)}
    if rec.type in _ENDING:
        gone = [_endpoint_event(rec, "disconnect", nid, name, who)
                for nid, name in held_before(con, rec.stream, rec.seq)]
        if gone:  # after die (docker's order: die, network disconnect, stop)
            at = next((i + 1 for i, m in enumerate(out) if m["Action"] == "die"), 0)
            out[at:at] = gone
    if rec.type in _BEGINNING:
        ordered = sorted((rec.data.get("networks") or {}).items(),
                         key=lambda kv: kv[1].get("slot", 0))
        joined = [_endpoint_event(rec, "connect", ep.get("id", ""), name, who)
                  for name, ep in ordered]
        at = next((i for i, m in enumerate(out) if m["Action"] in ("start", "restart")),
                  len(out))
        out[at:at] = joined
    return out


def _messages(rec: Any, names: Mapping[str, str]) -> list[dict[str, Any]]:
    kind, actions = _ACTIONS.get(rec.type, ("lamina", [rec.type]))
    d = rec.data
    if rec.type == "ContainerRestarted":  # docker's: a policy's restart is a start only
        actions = ["start"] if d.get("automatic") else ["start", "restart"]
    attrs: dict[str, str] = {"uid": str(rec.meta.get("uid", "")),
                             "user": str(rec.meta.get("user", "")), "seq": str(rec.seq)}
    if kind == "container":
        attrs["name"] = d.get("name") or names.get(rec.target, "")
        if d.get("image"):
            attrs["image"] = d["image"]
        for key, attr in (("exit_code", "exitCode"), ("signal", "signal")):
            if d.get(key) is not None and rec.type != "ContainerHealthChanged":
                attrs[attr] = str(d[key])
        if rec.type.startswith("Exec"):  # docker's exec_start, exec_detach, exec_die
            attrs["execID"] = d.get("exec_id", "")
        if rec.type == "ContainerRenamed":  # docker's: the new name, and the old one
            attrs["oldName"] = f"/{d.get('old_name', '')}"
    elif kind == "image":
        if d.get("tag"):
            attrs["name"] = familiar(d["tag"])
    elif kind == "volume":  # docker's attributes: the driver; a mount's container and where
        if rec.type == "VolumeCreated":
            attrs["driver"] = d.get("driver") or "local"
        if d.get("container"):
            attrs["container"] = d["container"]
        if d.get("target"):
            attrs["destination"] = d["target"]
            attrs["read/write"] = "false" if d.get("read_only") else "true"
    elif kind == "network" and rec.type == "NetworkCreated":  # docker's: name and type
        attrs.update(name=str(d.get("name", "")), type=str(d.get("driver") or "bridge"))
    elif kind == "network":  # a container joined or left: the network is the actor
        attrs.update(container=rec.target, name=str(d.get("network", "")), type="bridge")
    elif kind == "lamina":
        attrs.update(command=str(d.get("command", "")), reason=str(d.get("reason", "")))
    actor = rec.target if kind != "lamina" else str(d.get("target", ""))
    if rec.type in ("ContainerConnected", "ContainerDisconnected"):
        actor = str(d.get("network_id", ""))
    when = parse_at(rec.at)
    ns = int(when.timestamp() * 1e9) if when else 0
    out = []
    for action in actions:
        if rec.type == "ExecStarted":
            action = f"exec_start: {' '.join(d.get('argv') or [])}"
        if rec.type == "ContainerHealthChanged":  # docker's "health_status: healthy"
            action = f"health_status: {d.get('status', '')}"
        msg: dict[str, Any] = {"Type": kind, "Action": action,
                               "Actor": {"ID": actor, "Attributes": attrs},
                               "scope": "local", "time": ns // 10**9, "timeNano": ns}
        if kind == "container":
            msg.update(status=action, id=actor, **({"from": attrs["image"]}
                                                   if "image" in attrs else {}))
        out.append(msg)
    return out


def system_counts(containers: list[Container]) -> dict[str, int]:
    states = [state_word(c) for c in containers]
    return {"Containers": len(states), "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(states) - states.count("running") - states.count("paused")}


def mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def ncpu() -> int:
    return os.cpu_count() or 1
