"""CLI commands that keep a host tidy and say how it is: rename, update, wait, stats,
`container prune`, `image prune`, `system prune|df|info` (and `system check|reconcile|
configure`, whose work is adapters/cli/runtime.py's), `info`; docker's words and outputs."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from adapters.cli import runtime
from adapters.cli.common import confirmed, for_each
from adapters.cli.resources import add_resource_flags, resource_options
from adapters.cli.runtime import CONDITIONS, wait_for
from core.errors import BadInput, LaminaError

COMMANDS = ("rename", "update", "wait", "stats", "container", "image", "system", "info")


# docker update's flags lamina can't apply yet: refused by name (core/compat.py's words)
_UNSUPPORTED_UPDATE = (
    ("--blkio-weight", None, "HostConfig.BlkioWeight"),
    ("--kernel-memory", None, "HostConfig.KernelMemory"),
)


def _engine(args: argparse.Namespace) -> Any:
    from adapters.cli.common import engine

    return engine(args)


# --- rename, update ------------------------------------------------------------------------


def cmd_rename(args: argparse.Namespace) -> int:
    _engine(args).rename(args.container, args.new_name)
    return 0


def update_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as the engine's update options (the API's body becomes the same)."""
    from adapters.kernel.units import parse_cpus, parse_size

    options: dict[str, Any] = {"unsupported": [api for flag, _short, api in _UNSUPPORTED_UPDATE
                                               if getattr(args, _dest(flag)) is not None]}
    try:
        if args.memory is not None:
            options["memory"] = -1 if args.memory.strip() == "-1" else parse_size(args.memory)
        if args.cpus is not None:
            options["cpus"] = parse_cpus(args.cpus)
    except ValueError as err:
        raise BadInput(str(err)) from None
    if args.pids_limit is not None:
        options["pids"] = args.pids_limit
    options.update(resource_options(args))
    if args.restart is not None:
        from core import restart

        options["restart"] = restart.parse_flag(args.restart) if hasattr(restart, "parse_flag") \
            else {"Name": args.restart}
    return options


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def cmd_update(args: argparse.Namespace) -> int:
    options = update_options(args)
    e = _engine(args)
    if len(options) == 1 and not options["unsupported"]:
        e.refuse("update", args.containers[0],
                 "you must provide one or more flags when using this command")
    return for_each(args.containers, lambda ref: e.update(ref, options))


# --- wait ----------------------------------------------------------------------------------


def cmd_wait(args: argparse.Namespace) -> int:
    e = _engine(args)
    code = 0
    for ref in args.containers:
        try:
            print(wait_for(e, ref, args.condition), flush=True)
        except LaminaError as err:
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
    return code


# --- stats ---------------------------------------------------------------------------------

STATS_HEADERS = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                 "BLOCK I/O", "PIDS"]


def cmd_stats(args: argparse.Namespace) -> int:
    """docker stats: a table refreshed about every second until interrupted; --no-stream
    one sample. Without names, every running container (those that start meanwhile too)."""
    from adapters.cli import render
    from adapters.runtime import sampling

    e = _engine(args)
    named = [e.container(r) for r in args.containers]

    def chosen() -> list[Any]:
        if named:
            return [e.log.container(c.id) or c for c in named]
        return [c for c in e.log.containers() if c.state in ("running", "paused")]

    before = {c.id: sampling.sample(c) for c in chosen()}
    try:
        while True:
            time.sleep(0.5 if args.no_stream else 1.0)
            containers = chosen()
            now = {c.id: sampling.sample(c) for c in containers}
            rows = [stats_row(c, now[c.id], before.get(c.id, now[c.id])) for c in containers]
            before = now
            if args.format == "json":
                for doc in rows:
                    render.json_line(doc)
            else:
                if not args.no_stream:
                    sys.stdout.write("\033[2J\033[H")  # docker's: clear, then the table
                render.table(STATS_HEADERS, [[r[h] for h in STATS_HEADERS] for r in rows])
            sys.stdout.flush()
            if args.no_stream:
                return 0
    except KeyboardInterrupt:
        return 0


def stats_row(c: Any, now: Any, before: Any) -> dict[str, Any]:
    """One container's line, by docker's column names (and lamina's JSON keys)."""
    from adapters.runtime import sampling
    from core.sizes import human_size

    ncpu = _ncpu()
    running = c.state in ("running", "paused")
    cpu = sampling.cpu_percent(now, before, ncpu) if running else 0.0
    used = sampling.memory_used(now)
    limit = now.limit or _mem_total()
    rx = sum(n["rx_bytes"] for n in now.networks.values())
    tx = sum(n["tx_bytes"] for n in now.networks.values())
    if not running:
        return {"CONTAINER ID": c.id[:12], "NAME": c.name, "CPU %": "--",
                "MEM USAGE / LIMIT": "-- / --", "MEM %": "--", "NET I/O": "--",
                "BLOCK I/O": "--", "PIDS": "--", "id": c.id, "name": c.name,
                "state": c.state}
    return {"CONTAINER ID": c.id[:12], "NAME": c.name, "CPU %": f"{cpu:.2f}%",
            "MEM USAGE / LIMIT": f"{binary_size(used)} / {binary_size(limit)}",
            "MEM %": f"{used / limit * 100 if limit else 0:.2f}%",
            "NET I/O": f"{human_size(rx)} / {human_size(tx)}",
            "BLOCK I/O": f"{human_size(now.io_read)} / {human_size(now.io_write)}",
            "PIDS": now.pids, "id": c.id, "name": c.name, "state": c.state,
            "cpu_percent": round(cpu, 2), "cpu_ns": now.cpu_ns, "memory": now.memory,
            "memory_limit": now.limit or None, "pids": now.pids, "net_rx": rx, "net_tx": tx,
            "block_read": now.io_read, "block_write": now.io_write}


def binary_size(n: float) -> str:
    """docker's units.BytesSize: `1.5MiB`, `7.6GiB` (binary units, 4 significant digits)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n:.4g}TiB"


def _ncpu() -> int:
    import os

    return os.cpu_count() or 1


def _mem_total() -> int:
    from adapters.hostinfo import mem_total

    return mem_total()


# --- prunes --------------------------------------------------------------------------------


def _filters(args: argparse.Namespace) -> dict[str, list[str]]:
    from core import filters

    return filters.parse_flags(args.filter or [])


def _reclaimed(n: int) -> None:
    from core.sizes import human_size

    print(f"Total reclaimed space: {human_size(n)}")


def _section(title: str, lines: list[str]) -> None:
    if lines:
        print(title)
        for line in lines:
            print(line)
        print()


def _image_lines(deleted: list[dict[str, str]]) -> list[str]:
    return [f"untagged: {d['Untagged']}" if "Untagged" in d else f"deleted: {d['Deleted']}"
            for d in deleted]


def cmd_container_prune(args: argparse.Namespace) -> int:
    wanted = _filters(args)
    if not confirmed(args, "WARNING! This will remove all stopped containers.",
                      "container prune"):
        return 1
    pruned = _engine(args).container_prune(wanted)
    _section("Deleted Containers:", pruned.ids)
    _reclaimed(pruned.reclaimed)
    return 0


def cmd_image_prune(args: argparse.Namespace) -> int:
    wanted = _filters(args)
    what = "all images without at least one container associated to them" if args.all \
        else "all dangling images"
    if not confirmed(args, f"WARNING! This will remove {what}.", "image prune"):
        return 1
    pruned = _engine(args).image_prune(wanted, all=args.all)
    _section("Deleted Images:", _image_lines(pruned.deleted))
    _reclaimed(pruned.reclaimed)
    return 0


def cmd_system_prune(args: argparse.Namespace) -> int:
    wanted = _filters(args)
    items = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if args.all
                 else "all dangling images")
    items.append("unused build cache")
    warning = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
    if not confirmed(args, warning, "system prune"):
        return 1
    pruned = _engine(args).system_prune(wanted, all=args.all, volumes=args.volumes)
    _section("Deleted Containers:", pruned.containers.ids)
    _section("Deleted Networks:", pruned.networks)
    _section("Deleted Volumes:", pruned.volumes)
    _section("Deleted Images:", _image_lines(pruned.images.deleted))
    _reclaimed(pruned.reclaimed)
    return 0


# --- system df, system info ----------------------------------------------------------------


def cmd_system_df(args: argparse.Namespace) -> int:
    from adapters.cli import render
    from core.sizes import human_size

    usage = _engine(args).disk_usage()
    lines = (("Images", usage.image_line()), ("Containers", usage.container_line()),
             ("Local Volumes", usage.volume_line()), ("Build Cache", (0, 0, 0, 0)))
    if args.format == "json":
        for kind, (total, active, size, reclaim) in lines:
            render.json_line({"Type": kind, "TotalCount": total, "Active": active,
                              "Size": human_size(size), "Reclaimable": _percent(reclaim, size)})
        return 0
    if not args.verbose:
        render.table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                     [[kind, total, active, human_size(size), _percent(reclaim, size)]
                      for kind, (total, active, size, reclaim) in lines])
        return 0
    _df_verbose(usage)
    return 0


def _percent(reclaimable: int, total: int) -> str:
    from core.sizes import human_size

    if total <= 0:
        return human_size(reclaimable)
    return f"{human_size(reclaimable)} ({reclaimable * 100 // total}%)"


def _df_verbose(usage: Any) -> None:
    from adapters.cli import render
    from core.references import short
    from core.sizes import human_size

    print("Images space usage:\n")
    rows = []
    for i in usage.images:
        tags = [t.rpartition(":") for t in i.image.tags] or [("<none>", ":", "<none>")]
        for repo, _, tag in tags:
            rows.append([repo, tag, short(i.image.id), render.ago(i.image.created),
                         human_size(i.size), human_size(i.shared),
                         human_size(i.size - i.shared), i.containers])
    render.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE",
                  "UNIQUE SIZE", "CONTAINERS"], rows)
    print("\nContainers space usage:\n")
    render.table(["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED",
                  "STATUS", "NAMES"],
                 [[short(c.container.id), _image_name(usage, c.container.image),
                   '"' + " ".join(c.container.cmd)[:20] + '"',
                   len(c.container.config.get("mount_points") or ()),
                   human_size(c.size_rw), render.ago(c.container.created),
                   render.status(c.container), c.container.name] for c in usage.containers])
    print("\nLocal Volumes space usage:\n")
    render.table(["VOLUME NAME", "LINKS", "SIZE"],
                 [[v.volume.id, v.refs, human_size(v.size)] for v in usage.volumes])
    print("\nBuild cache usage: 0B\n")
    render.table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"],
                 [])


def _image_name(usage: Any, iid: str) -> str:
    for i in usage.images:
        if i.image.id == iid:
            return i.image.tags[0] if i.image.tags else iid[:12]
    return iid[:12]


def cmd_system_info(args: argparse.Namespace) -> int:
    from adapters.cli import render
    from adapters.cmdline import root_dir
    from adapters.hostinfo import info_doc

    doc = info_doc(_engine(args).log, root_dir(args.root))
    if args.format == "json":
        render.json_line(doc)
        return 0
    lines = [
        "Server:",
        f" Containers: {doc['Containers']}",
        f"  Running: {doc['ContainersRunning']}",
        f"  Paused: {doc['ContainersPaused']}",
        f"  Stopped: {doc['ContainersStopped']}",
        f" Images: {doc['Images']}",
        f" Server Version: {doc['ServerVersion']}",
        f" Storage Driver: {doc['Driver']}",
        *(f"  {k}: {v}" for k, v in doc["DriverStatus"]),
        f" Logging Driver: {doc['LoggingDriver']}",
        f" Cgroup Driver: {doc['CgroupDriver']}",
        f" Cgroup Version: {doc['CgroupVersion']}",
        " Plugins:",
        f"  Volume: {' '.join(doc['Plugins']['Volume'])}",
        f"  Network: {' '.join(doc['Plugins']['Network'])}",
        f"  Log: {' '.join(doc['Plugins']['Log'])}",
        f" Swarm: {doc['Swarm']['LocalNodeState']}",
        f" Runtimes: {' '.join(doc['Runtimes'])}",
        f" Default Runtime: {doc['DefaultRuntime']}",
        " Security Options:",
        *(f"  {opt.removeprefix('name=').split(',')[0]}" for opt in doc["SecurityOptions"]),
        f" Kernel Version: {doc['KernelVersion']}",
        f" Operating System: {doc['OperatingSystem']}",
        f" OSType: {doc['OSType']}",
        f" Architecture: {doc['Architecture']}",
        f" CPUs: {doc['NCPU']}",
        f" Total Memory: {binary_size(doc['MemTotal'])}",
        f" Name: {doc['Name']}",
        f" ID: {doc['ID']}",
        f" Docker Root Dir: {doc['DockerRootDir']}",
        f" Debug Mode: {str(doc['Debug']).lower()}",
        f" Live Restore Enabled: {str(doc['LiveRestoreEnabled']).lower()}",
    ]
    print("\n".join(lines))
    return 0


# --- the parsers ---------------------------------------------------------------------------


def cmd_system_shutdown(args: argparse.Namespace) -> int:
    """The host's shutdown (lamina-shutdown.service's ExecStop): every running and paused
    container stopped at once, each line saying how; exit 1 if one was refused. The root
    is marked first (adapters/shutdown_mark.py): no restart policy fires from then on, in
    this boot."""
    from adapters import shutdown_mark
    from adapters.cmdline import root_dir

    e = _engine(args)
    shutdown_mark.write(root_dir(args.root))
    outcomes = e.shutdown()
    for cid, outcome in outcomes.items():
        c = e.log.container(cid)
        print(f"{cid[:12]} {c.name if c else ''}: {outcome}")
    return 1 if any(o.startswith("refused") for o in outcomes.values()) else 0


def _add_prune_filters(p: argparse.ArgumentParser, keys: str) -> None:
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", metavar="FILTER",
                   help=f"provide filter values ({keys}), repeatable")


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("rename", help="rename a container")
    p.add_argument("container", help="the container (id, id prefix or name)")
    p.add_argument("new_name", metavar="NEW_NAME", help="its new name")
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("update", help="change the resource limits of containers (running or "
                                      "not)")
    p.add_argument("--memory", "-m", help="memory limit (e.g. 64m; -1: no limit)")
    p.add_argument("--cpus", help="number of CPUs (e.g. 0.5)")
    p.add_argument("--pids-limit", type=int, help="processes at most (-1 or 0: no limit)")
    add_resource_flags(p, update=True)
    p.add_argument("--restart", help="restart policy (no, always, unless-stopped, "
                                     "on-failure[:N])")
    for flag, short_flag, _api in _UNSUPPORTED_UPDATE:
        names = [flag, short_flag] if short_flag else [flag]
        p.add_argument(*names, help="docker's; refused by lamina (not built)")
    p.add_argument("containers", nargs="+", help="containers (ids, id prefixes or names)")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("wait", help="wait until containers stop; print their exit codes")
    p.add_argument("--condition", choices=CONDITIONS, default="not-running",
                   help="not-running (default), next-exit or removed")
    p.add_argument("containers", nargs="+", help="containers (ids, id prefixes or names)")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("stats", help="CPU, memory, network, block I/O and pids, refreshed "
                                     "until interrupted")
    p.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    p.add_argument("containers", nargs="*", help="containers (default: every running one)")
    fmt(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("container", help="manage containers (prune)")
    actions = p.add_subparsers(dest="container_command", metavar="ACTION", required=True)
    a = actions.add_parser("prune", help="remove all stopped containers")
    _add_prune_filters(a, "until=, label=, label!=")
    a.set_defaults(func=cmd_container_prune)

    p = sub.add_parser("image", help="manage images (prune)")
    actions = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    a = actions.add_parser("prune", help="remove dangling images (-a: every unused one)")
    a.add_argument("-a", "--all", action="store_true",
                   help="every image no container uses, not only dangling ones")
    _add_prune_filters(a, "until=, label=, label!=")
    a.set_defaults(func=cmd_image_prune)

    p = sub.add_parser("system", help="prune, disk usage, info; compare the log with the "
                                      "host, or repair; configure the root; stop every "
                                      "container as the host shuts down")
    actions = p.add_subparsers(dest="system_command", metavar="ACTION", required=True)
    for name, what in (("check", "print the differences (exit 1 if any); change nothing"),
                       ("reconcile", "record lost processes' ends and clean leftovers")):
        actions.add_parser(name, help=what).set_defaults(func=runtime.cmd_system)
    a = actions.add_parser("shutdown", help="the host is shutting down: stop every container "
                                             "(its stop signal, then SIGKILL after its stop "
                                             "timeout), all at once, not as a user's stop")
    a.set_defaults(func=cmd_system_shutdown)
    a = actions.add_parser("configure", help="the root's settings (before its first "
                                              "container); without options, show them")
    runtime.add_userns_remap(a)
    a.set_defaults(func=runtime.cmd_system_configure)
    a = actions.add_parser("prune", help="remove stopped containers, unused networks, "
                                          "dangling images (and with --volumes, volumes)")
    a.add_argument("-a", "--all", action="store_true",
                   help="every unused image, not only dangling ones")
    a.add_argument("--volumes", action="store_true", help="prune anonymous volumes too")
    _add_prune_filters(a, "until=, label=, label!=")
    a.set_defaults(func=cmd_system_prune)
    a = actions.add_parser("df", help="disk usage of images, containers and volumes")
    a.add_argument("-v", "--verbose", action="store_true", help="each image, container and "
                                                                "volume")
    fmt(a)
    a.set_defaults(func=cmd_system_df)
    a = actions.add_parser("info", help="the host and the engine, as docker info")
    fmt(a)
    a.set_defaults(func=cmd_system_info)

    p = sub.add_parser("info", help="the host and the engine (system info)")
    fmt(p)
    p.set_defaults(func=cmd_system_info)
