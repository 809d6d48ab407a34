"""Pure queries on images, containers and their files: inspect, history, diff (`changes`,
in adapters/storage/union.py since the store's LayerStore.changes uses it too).

They read the log's read model and the layer store's directories, and append nothing.
Field names are docker's (`docker inspect`, `docker history`, `docker diff`), so that scripts
written against docker's JSON keep working; lamina's state words ("stopped"...) stay in
State.Status.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from adapters.storage.union import changes  # noqa: F401 - docker diff, as before: viz uses it
from core.model import Container, Image, Layer, Network

ZERO_TIME = "0001-01-01T00:00:00Z"
CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}  # docker's API numbers for diff kinds


# --- inspect -----------------------------------------------------------------------------------


def image_doc(image: Image, layers: dict[str, Layer], store: Any) -> dict[str, Any]:
    """`docker image inspect`'s fields for one image."""
    cfg = image.config
    history = [h for h in cfg.get("history") or [] if isinstance(h, dict)]
    last = history[-1] if history else {}
    diffs = [store.diff_dir(lid) for lid in image.layers]
    data: dict[str, str] = {}
    if diffs:
        top = store.layer_dir(image.layers[-1])
        if len(diffs) > 1:
            data["LowerDir"] = ":".join(reversed(diffs[:-1]))
        data.update({"MergedDir": os.path.join(top, "merged"), "UpperDir": diffs[-1],
                     "WorkDir": os.path.join(top, "work")})
    return {
        "Id": f"sha256:{image.id}",
        "RepoTags": list(image.tags),
        "RepoDigests": [],
        "Parent": f"sha256:{image.parent}" if image.parent else "",
        "Comment": last.get("comment", image.comment) or "",
        "Created": cfg.get("created") or image.created,
        "Container": "",
        "DockerVersion": "",
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Size": sum(layers[lid].size for lid in image.layers if lid in layers),
        "GraphDriver": {"Name": "overlay2", "Data": data},
        "RootFS": {"Type": "layers",
                   "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": ZERO_TIME},
        "Lamina": {"Layers": list(image.layers), "Source": image.source,
                   "Intermediate": image.removed},
    }


def container_doc(c: Container, image: Image | None, store: Any, root: str,
                  networks: Iterable[Network] = (), api_version: str | None = None
                  ) -> dict[str, Any]:
    """`docker container inspect`'s fields for one container; `networks`: every network
    (predefined and recorded), to name the ones it is on (adapters/storage/netsettings.py);
    `api_version`: the Docker API's, when asked through it."""
    from adapters.storage import netsettings
    from core.process import command_line, config_env

    opts = c.config
    cfg = (image.config.get("config") if image else None) or {}
    try:
        argv = list(command_line(cfg, c.cmd, opts.get("entrypoint")))
    except Exception:  # no command at all: docker shows an empty Path
        argv = []
    hostname = opts.get("hostname") or c.id[:12]
    env = config_env([*(cfg.get("Env") or []), f"HOSTNAME={hostname}"], opts.get("env") or [])
    layers = list(image.layers) if image else []
    running = c.state in ("running", "paused")
    lower = [*store.bases(c.rw_layer), store.init_dir(c.rw_layer),
             *(store.diff_dir(lid) for lid in reversed(layers))]
    entrypoint = opts.get("entrypoint")
    healthcheck, health = _health(c, cfg, root)
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": argv[0] if argv else "",
        "Args": argv[1:],
        "State": {
            "Status": c.state,
            "Running": running,
            "Paused": c.state == "paused",
            "Restarting": c.restarting,
            "OOMKilled": c.oom,
            "Dead": False,
            "Pid": c.pid if running else 0,
            "ExitCode": c.exit_code or 0,
            "Error": "",
            "StartedAt": c.started_at or ZERO_TIME,
            "FinishedAt": c.finished_at or ZERO_TIME,
            **({"Health": health} if health is not None else {}),
        },
        "Image": f"sha256:{c.image}",
        "Name": f"/{c.name}",
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "LogPath": os.path.join(root, "containers", c.id, f"{c.id}-json.log"),
        "HostConfig": {
            **netsettings.host_config(opts),
            "Links": netsettings.host_links(c),
            "Memory": opts.get("memory") or 0,
            "NanoCpus": int((opts.get("cpus") or 0) * 1e9),
            "PidsLimit": opts.get("pids") or None,
            "AutoRemove": bool(opts.get("auto_remove")),
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0,
                              **(opts.get("restart") or {})},
            "ExtraHosts": opts.get("extra_hosts") or None,
            **security_host_config(opts),
            **mount_host_config(opts),
            **process_host_config(opts),
            **resource_host_config(opts),
        },
        "Mounts": container_mounts(c, root),
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(lower),
            "UpperDir": store.diff_dir(c.rw_layer),
            "MergedDir": store.merged_dir(c.rw_layer),
            "WorkDir": store.work_dir(c.rw_layer),
        }},
        "Config": {
            "Hostname": hostname,
            "User": opts.get("user") or cfg.get("User") or "",
            "Env": env,
            "Cmd": list(c.cmd) or list(cfg.get("Cmd") or []),
            "Entrypoint": entrypoint if entrypoint is not None else cfg.get("Entrypoint"),
            "WorkingDir": opts.get("workdir") or cfg.get("WorkingDir") or "",
            "Image": c.config.get("image_ref") or (image.tags[0] if image and image.tags
                                                   else f"sha256:{c.image}"),
            "Tty": bool(opts.get("tty")),
            "OpenStdin": bool(opts.get("interactive")),
            "StdinOnce": bool(opts.get("stdin_once")),
            "Labels": opts.get("labels") or {},
            "Volumes": _volumes_of(opts),
            **process_config(opts, cfg),
            **({"Healthcheck": healthcheck} if healthcheck else {}),
            **({"ExposedPorts": ports} if (ports := netsettings.exposed_ports(c, image))
               else {}),
        },
        "NetworkSettings": netsettings.network_settings(
            c, image, netsettings.resolver(networks), api_version),
    }


def _health(c: Container, image_cfg: dict[str, Any], root: str
            ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Config.Healthcheck (the container's, merged with its image's) and State.Health: the
    status from the log, the failing streak and the last 5 probes from the file its health
    process keeps (adapters/runtime/health.py), as docker keeps them in memory."""
    from core import health

    hc = health.effective(image_cfg, c.config)
    status = health.status_of(c.state, c.ran, c.health, hc)
    if status == health.NONE:
        return hc, None
    import json

    try:
        with open(os.path.join(root, "containers", c.id, "health.json")) as f:
            runtime = json.load(f)
    except (OSError, ValueError):
        runtime = None
    running = c.state in ("running", "paused")
    return hc, health.state_doc(status, c.health, runtime, c.pid if running else 0)


def container_mounts(c: Container, root: str) -> list[dict[str, Any]]:
    """docker inspect's (and ps's) Mounts: the mount points create recorded."""
    if not c.config.get("mount_points"):
        return []
    from adapters.storage.volumes import LinuxVolumeStore
    from core.mounts import inspect_mounts, recorded

    return inspect_mounts(recorded(c.config), LinuxVolumeStore(root).path)


def mount_host_config(opts: dict[str, Any]) -> dict[str, Any]:
    """The mount requests as given (HostConfig.Binds, Mounts, Tmpfs, VolumesFrom)."""
    return {"Binds": opts.get("binds") or None, "Mounts": opts.get("mounts") or None,
            "Tmpfs": opts.get("tmpfs") or None, "VolumesFrom": opts.get("volumes_from") or None,
            "VolumeDriver": opts.get("volume_driver") or ""}


def resource_host_config(opts: dict[str, Any]) -> dict[str, Any]:
    """HostConfig's resources of core/resources.py (docker shows each, 0 or "" when unset;
    MemorySwappiness null), the cgroup namespace (always the container's own), the
    isolation and runtime as asked (core/runopts.py takes docker's defaults only)."""
    from core.process import DEFAULT_SHM_SIZE
    from core.resources import KEYS

    out: dict[str, Any] = {api: opts.get(key) or (None if key == "memory_swappiness" else
                                                  "" if key.startswith("cpuset_") else 0)
                           for key, api in KEYS.items()}
    if opts.get("memory_swappiness") == 0:
        out["MemorySwappiness"] = 0
    return {**out, "ShmSize": opts.get("shm_size") or DEFAULT_SHM_SIZE,
            "ConsoleSize": list(opts.get("console_size") or (0, 0)),
            "CgroupnsMode": "private", "CgroupParent": opts.get("cgroup_parent") or "",
            "Isolation": opts.get("isolation") or "",
            "Runtime": opts.get("runtime") or "runc"}


def process_host_config(opts: dict[str, Any]) -> dict[str, Any]:
    """HostConfig.Init (shown when asked, as docker's omitempty), Ulimits, LogConfig."""
    from core.runopts import log_config

    return {**({"Init": True} if opts.get("init") else {}),
            "Ulimits": opts.get("ulimits") or None, "LogConfig": log_config(opts)}


def process_config(opts: dict[str, Any], image_cfg: dict[str, Any]) -> dict[str, Any]:
    """Config.StopSignal (the container's, else its image's, as docker merges them at
    create) and StopTimeout, each shown only when set."""
    signal = opts.get("stop_signal") or image_cfg.get("StopSignal")
    return {**({"StopSignal": signal} if signal else {}),
            **({"StopTimeout": opts["stop_timeout"]} if opts.get("stop_timeout") is not None
               else {})}


def _volumes_of(opts: dict[str, Any]) -> dict[str, Any] | None:
    volumes = opts.get("volumes") or ()
    return {path: {} for path in volumes} or None


# --- history -----------------------------------------------------------------------------------


def history_rows(image: Image, images: dict[str, Image],
                 layers: dict[str, Layer]) -> list[dict[str, Any]]:
    """docker history: one row per history entry, newest first; the top row has the image's
    id, each row below it its parent's (while there is one), the rest `<missing>`."""
    entries = [h for h in image.config.get("history") or [] if isinstance(h, dict)]
    if not entries:  # an image without history: one row per layer
        entries = [{"created": image.config.get("created", ""), "created_by": ""}
                   for _ in image.layers]
    rows, n = [], 0
    for h in entries:
        size = 0
        if not h.get("empty_layer"):
            if n < len(image.layers) and image.layers[n] in layers:
                size = layers[image.layers[n]].size
            n += 1
        rows.append({"Id": "<missing>", "Created": h.get("created", ""),
                     "CreatedBy": h.get("created_by", ""), "Size": size,
                     "Comment": h.get("comment", ""), "Tags": []})
    rows.reverse()
    current: Image | None = image
    for row in rows:
        if current is None:
            break
        row["Id"] = f"sha256:{current.id}"
        row["Tags"] = list(current.tags)
        current = images.get(current.parent) if current.parent else None
    return rows


def security_host_config(opts: dict[str, Any]) -> dict[str, Any]:
    """HostConfig's security fields, from the recorded options, in docker's words."""
    from core.security import parse_device

    security_opt = [f"{k}={opts[k]}" for k in ("seccomp", "systempaths") if k in opts]
    if "no_new_privs" in opts:
        security_opt.append(f"no-new-privileges={str(opts['no_new_privs']).lower()}")
    devices = [parse_device(d) for d in opts.get("devices") or []]
    return {
        "Privileged": bool(opts.get("privileged")),
        "CapAdd": opts.get("cap_add") or None, "CapDrop": opts.get("cap_drop") or None,
        "ReadonlyRootfs": bool(opts.get("read_only")),
        "Devices": [{"PathOnHost": d.host, "PathInContainer": d.inside,
                     "CgroupPermissions": d.access} for d in devices],
        "DeviceCgroupRules": opts.get("device_cgroup_rules") or None,
        "GroupAdd": opts.get("group_add") or None, "PidMode": opts.get("pid") or "",
        "IpcMode": opts.get("ipc") or "private", "UTSMode": opts.get("uts") or "",
        "SecurityOpt": security_opt or None,
    }
