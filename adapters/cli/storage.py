"""CLI commands for images, layers and containers' files: import, create, rm, rmi, commit, tag,
save, load, export (which change state or record who took what) and the pure queries
inspect, history and diff (which append nothing)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from adapters.cli.resources import add_resource_flags, resource_options

COMMANDS = ("import", "create", "rm", "rmi", "commit", "tag", "save", "load", "export", "inspect",
            "history", "diff")


def _engine(args: argparse.Namespace) -> Any:
    from adapters.cli.common import engine

    return engine(args)


def _progress(args: argparse.Namespace, what: str, counter: str | None = None,
              path: Any = None) -> Any:
    """A progress bar for work over a second on a terminal (adapters/cli/progress.py); with a
    `path` read, the bar names it and expects its size in bytes when it is a file."""
    import os

    from adapters.cli.progress import progress

    total = os.path.getsize(path) if isinstance(path, str) and os.path.isfile(path) else None
    what = f"{what} {os.path.basename(path)}" if path else what
    quiet = getattr(args, "quiet", False) or getattr(args, "no_progress", False)
    return progress(what, counter=counter, total=total, quiet=quiet)


def cmd_import(args: argparse.Namespace) -> int:
    e = _engine(args)
    source = sys.stdin.buffer if args.file == "-" else args.file
    with _progress(args, "importing", "rchar", args.file):
        iid = e.import_image(source, args.reference, created_by=f"lamina import {args.file}",
                             comment=args.message or "", changes=args.change or [])
    print(f"sha256:{iid}")
    return 0


def create_options(args: argparse.Namespace) -> dict[str, Any]:
    """Run options as recorded in ContainerCreated's config (sizes parsed docker's way;
    --security-opt as given, but a seccomp profile FILE replaced by its text, as docker's
    CLI sends it). The engine checks them (core.security.normalized) before recording."""
    from adapters.kernel.units import parse_cpus, parse_size
    from core.errors import BadInput

    try:
        memory = parse_size(args.memory) if getattr(args, "memory", None) else None
        cpus = parse_cpus(args.cpus) if getattr(args, "cpus", None) else None
        shm = parse_size(args.shm_size) if getattr(args, "shm_size", None) else None
    except ValueError as err:
        raise BadInput(str(err)) from None
    options = {"env": [*_env_files(getattr(args, "env_file", None) or []),
                       *(from_caller(e) for e in args.env or [])], "workdir": args.workdir,
               "user": args.user,
               "hostname": args.hostname, "network": args.network, "memory": memory,
               "pids": args.pids_limit, "cpus": cpus, "shm_size": shm, "tty": args.tty,
               "console_size": _console_size() if args.tty else None,
               "interactive": args.interactive, "privileged": args.privileged,
               # docker's CLI: stdin attached (-i, not -d) closes when the client's ends
               "stdin_once": args.interactive and not getattr(args, "detach", False),
               "cap_add": args.cap_add, "cap_drop": args.cap_drop, "read_only": args.read_only,
               "devices": args.device, "group_add": args.group_add, "pid": args.pid,
               "device_cgroup_rules": getattr(args, "device_cgroup_rules", None),
               "cgroup_parent": getattr(args, "cgroup_parent", None),
               "ipc": args.ipc, "uts": args.uts, "extra_hosts": args.extra_hosts,
               "restart": getattr(args, "restart", None),
               "runtime": getattr(args, "runtime", None),
               "isolation": getattr(args, "isolation", None),
               "security_opt": [_profile_text(o) for o in args.security_opt or []]}
    if args.entrypoint is not None:
        options["entrypoint"] = [args.entrypoint] if args.entrypoint else []
    labels = labels_of(args.label_file or [], args.label or [])
    if labels:
        options["labels"] = labels
    options.update(_mount_options(args))
    options.update(_network_options(args))
    options.update(_process_options(args))
    options["healthcheck"] = _healthcheck(args)
    options.update(refused_options(args))
    options = {k: v for k, v in options.items() if v not in (None, [], False, "")}
    options.update(resource_options(args))  # 0 asks (--memory-swappiness 0): judged as given
    if getattr(args, "stop_timeout", None) is not None:
        options["stop_timeout"] = args.stop_timeout
    return options


def _console_size() -> list[int] | None:
    """Our terminal's size, for a container with one (docker's CLI sends it as
    HostConfig.ConsoleSize): its process starts with it, not with 0x0 until our first
    resize lands (`stty size` as the first command failed)."""
    from adapters.runtime.terminal import window_size

    size = window_size()
    return list(size) if size else None


def _healthcheck(args: argparse.Namespace) -> dict[str, Any] | None:
    """--health-* and --no-healthcheck as docker's CLI sends them (Config.Healthcheck)."""
    from core.health import from_flags

    return from_flags(getattr(args, "health_cmd", None), getattr(args, "health_interval", None),
                      getattr(args, "health_timeout", None),
                      getattr(args, "health_start_period", None),
                      getattr(args, "health_start_interval", None),
                      getattr(args, "health_retries", None),
                      bool(getattr(args, "no_healthcheck", False)))


def _process_options(args: argparse.Namespace) -> dict[str, Any]:
    """--init, --ulimit, --stop-signal, --log-driver/--log-opt as docker's CLI sends them
    (HostConfig.Init, Ulimits, LogConfig; Config.StopSignal), its flag errors in its words;
    judged again by the engine (core/runopts.py). --stop-timeout is added after the zero
    values are dropped: 0 is a request (kill at once)."""
    from core import runopts
    from core.errors import BadInput

    out: dict[str, Any] = {"init": getattr(args, "init", False),
                           "stop_signal": getattr(args, "stop_signal", None)}
    ulimits = []
    for flag in getattr(args, "ulimit", None) or []:
        try:
            ulimits.append(runopts.parse_ulimit(flag))
        except BadInput as err:
            raise BadInput(f'invalid argument "{flag}" for "--ulimit" flag: {err}') from None
    out["ulimits"] = ulimits
    driver, opts = getattr(args, "log_driver", None), getattr(args, "log_opt", None) or []
    if driver == runopts.NONE and opts:
        raise BadInput(f"invalid logging opts for driver {driver}")
    if driver or opts:
        out["log_config"] = {"Type": driver or "", "Config": dict(
            (o.partition("=")[0], o.partition("=")[2]) for o in opts)}
    return out


def _env_files(paths: list[str]) -> list[str]:
    """--env-file, as docker's CLI reads it: `K=V` lines as they are (the value untrimmed),
    `K` alone takes the caller's K (left out when unset there); then -e, which wins."""
    import os

    out: list[str] = []
    for path in paths:
        out += kv_file(path, os.environ.get)
    return out


def kv_file(path: str, lookup: Callable[[str], str | None] | None = None) -> list[str]:
    """A file of `K[=V]` lines as docker's CLI reads --env-file and --label-file (its
    pkg/kvfile): a leading BOM dropped, each line's leading whitespace (not its trailing),
    blank lines and `#` comments skipped, `K=V` kept as it is, `K` alone looked up (left
    out without a value); a K with whitespace, no K, or bytes that aren't UTF-8 refused
    in its words."""
    from core.errors import BadInput

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise BadInput(f"open {path}: {(err.strerror or '').lower()}") from None
    out: list[str] = []
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        try:
            line = raw.removesuffix(b"\r").decode("utf-8").lstrip()
        except UnicodeDecodeError:
            raise BadInput(f"invalid env file ({path}): invalid utf8 bytes at line {n}: "
                           f"{list(raw)}") from None
        if not line or line.startswith("#"):
            continue
        key, sep, _ = line.partition("=")
        if not key:
            raise BadInput(f"invalid env file ({path}): no variable name on line '{line}'")
        if " " in key or "\t" in key:
            raise BadInput(f"invalid env file ({path}): variable '{key}' contains "
                           "whitespaces")
        if sep:
            out.append(line)
        elif lookup is not None and (value := lookup(key)) is not None:
            out.append(f"{key}={value}")
    return out


def _mount_options(args: argparse.Namespace) -> dict[str, Any]:
    """-v, --mount, --tmpfs, --volumes-from as docker's CLI sends them (HostConfig.Binds,
    Mounts, Tmpfs, VolumesFrom; a bare `-v /path` is Config.Volumes), so that a create
    from either side records the same request. Judged by the engine (core/mounts.py)."""
    out: dict[str, Any] = {}
    specs = getattr(args, "volume_specs", None) or []
    out["binds"] = [s for s in specs if ":" in s]
    out["volumes"] = [s for s in specs if ":" not in s]
    if getattr(args, "mount_specs", None):
        from core.mounts import parse_mount_flag

        out["mounts"] = [parse_mount_flag(s) for s in args.mount_specs]
    if getattr(args, "tmpfs_specs", None):
        out["tmpfs"] = dict(s.partition(":")[::2] for s in args.tmpfs_specs)
    out["volumes_from"] = getattr(args, "volumes_from", None) or []
    out["volume_driver"] = getattr(args, "volume_driver", None)
    return out


def _network_options(args: argparse.Namespace) -> dict[str, Any]:
    """-p, -P, --expose, --ip, --network-alias, --dns*: as docker's CLI sends them
    (PortBindings as `-p` text, EndpointsConfig for the --network); judged by the engine
    (core/engine/attaching.py)."""
    out: dict[str, Any] = {"port_bindings": getattr(args, "publish", None) or [],
                           "publish_all": getattr(args, "publish_all", False),
                           "exposed_ports": getattr(args, "expose", None) or [],
                           "dns": getattr(args, "dns", None) or [],
                           "dns_search": getattr(args, "dns_search", None) or [],
                           "dns_options": getattr(args, "dns_option", None) or []}
    endpoint: dict[str, Any] = {}
    ipam = {api: value for api, value in (
        ("IPv4Address", getattr(args, "ip", None)), ("IPv6Address", getattr(args, "ip6", None)),
        ("LinkLocalIPs", getattr(args, "link_local_ip", None))) if value}
    if ipam:
        endpoint["IPAMConfig"] = ipam
    if getattr(args, "network_alias", None):
        endpoint["Aliases"] = args.network_alias
    if getattr(args, "mac_address", None):
        endpoint["MacAddress"] = args.mac_address
    if getattr(args, "link", None):  # HostConfig.Links, as docker's CLI sends them
        out["links"] = args.link
    if endpoint:
        out["endpoints"] = {args.network or "default": endpoint}
    return out


def labels_of(files: list[str], given: list[str]) -> dict[str, str]:
    """`--label-file` lines (kv_file: a `K` alone there is left out, as docker 28's CLI
    does), then `-l K[=V]` (`K` alone is K=""; a later key wins): docker's CLI reads them so
    and sends the map the API records as Config.Labels."""
    from core.errors import BadInput

    items: list[str] = []
    for path in files:
        items += kv_file(path)
    out: dict[str, str] = {}
    for item in [*items, *given]:
        key, _, value = item.partition("=")
        if not key.strip():
            raise BadInput(f"invalid label '{item}': empty name")
        if " " in key.lstrip() or "\t" in key.lstrip():
            raise BadInput(f"label '{key.lstrip()}' contains whitespaces")
        out[key] = value
    return out


# docker run's flags whose fields lamina refuses (core/compat.py): parsed, so that using one
# is refused by name and recorded, as the Docker API refuses the same field; never an
# argparse "unrecognized arguments" that the log would not show.
_SWITCHES = frozenset({"--oom-kill-disable"})


def add_refused_flags(p: argparse.ArgumentParser) -> None:
    from core.compat import FIELDS, Status

    for field in FIELDS:
        if field.status is Status.REFUSED and field.cli.startswith("-"):
            flags = field.cli.split(", ")
            switch = bool(_SWITCHES & set(flags))
            p.add_argument(*flags, dest=f"refused_{field.key}",
                           help=f"refused: not supported by lamina yet ({field.note})"
                           if field.note else "refused: not supported by lamina yet",
                           action="store_true" if switch else "append")


def refused_options(args: argparse.Namespace) -> dict[str, Any]:
    """The refused flags that were given, as their recorded keys (the engine refuses)."""
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest.startswith("refused_") and value:
            out[dest.removeprefix("refused_")] = value
    return out


def from_caller(item: str) -> str:
    """`-e NAME` takes NAME's value where lamina runs (the client's environment, through
    the fork server too); unset there, it stays bare, and the container has no NAME."""
    import os

    if "=" in item or item not in os.environ:
        return item
    return f"{item}={os.environ[item]}"


def _profile_text(opt: str) -> str:
    """`seccomp=FILE` -> `seccomp=<the file's JSON>`; other options as they are."""
    from core.errors import BadInput

    key, sep, value = opt.partition("=")
    if key != "seccomp" or not sep or value in ("unconfined", "builtin") or value[:1] == "{":
        return opt
    try:
        with open(value) as f:
            return f"seccomp={f.read()}"
    except OSError as err:
        raise BadInput(f"opening seccomp profile ({value}) failed: {err.strerror}") from None


def cmd_create(args: argparse.Namespace) -> int:
    e = _engine(args)
    cid = e.create(args.image, args.cmd, name=args.name, config=create_options(args))
    print(cid)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from adapters.cli.common import for_each

    e = _engine(args)
    if args.link:  # docker's: PARENT/ALIAS, the link only
        return for_each(args.containers, e.unlink)
    return for_each(args.containers,
                    lambda ref: e.rm(ref, force=args.force, volumes=args.volumes))


def cmd_rmi(args: argparse.Namespace) -> int:
    from core.references import short

    e = _engine(args)
    code = 0
    for ref in args.images:
        try:
            plan = e.rmi(ref, force=args.force)
        except Exception as err:
            from core.errors import LaminaError

            if not isinstance(err, LaminaError):
                raise
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
            continue
        for _, tag in plan.untag:
            print(f"Untagged: {tag}")
        for iid, kept in plan.remove:
            if not kept:
                print(f"Deleted: sha256:{iid}")
            else:
                print(f"Kept (still needed): sha256:{short(iid)}")
    return code


def cmd_commit(args: argparse.Namespace) -> int:
    e = _engine(args)
    with _progress(args, f"committing {args.container}"):
        iid = e.commit(args.container, args.reference, comment=args.message or "",
                       author=args.author or "", changes=args.change or [])
    print(f"sha256:{iid}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    _engine(args).tag(args.image, args.reference)
    return 0


# --- archives -----------------------------------------------------------------------------------


def _output(path: str | None, what: str) -> tuple[Any, str]:
    """(where to write, what the audit records): a path, or stdout when it is not a tty."""
    import os

    from core.errors import BadInput

    if path and path != "-":
        return os.path.abspath(path), os.path.abspath(path)
    if sys.stdout.isatty():
        raise BadInput(f"cowardly refusing to write {what} to a terminal: use -o FILE or "
                       "redirect the output")
    sys.stdout.flush()
    return sys.stdout.buffer, "-"


def cmd_save(args: argparse.Namespace) -> int:
    e = _engine(args)
    output, file = _output(args.output, "an image archive")
    with _progress(args, f"saving {' '.join(args.images)}", "wchar"):
        e.save(args.images, output, file=file)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    e = _engine(args)
    output, file = _output(args.output, "a container's files")
    with _progress(args, f"exporting {args.container}", "wchar"):
        e.export(args.container, output, file=file)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    import os

    e = _engine(args)
    with _progress(args, "loading", "rchar", args.input or "-"):
        if args.input and args.input != "-":
            loaded = e.load(os.path.abspath(args.input), file=os.path.abspath(args.input))
        else:
            loaded = e.load(sys.stdin.buffer, file="-")
    if not args.quiet:
        for iid, tags in loaded:
            for tag in tags:
                print(f"Loaded image: {_familiar(tag)}")
            if not tags:
                print(f"Loaded image ID: sha256:{iid}")
    return 0


def _familiar(tag: str) -> str:
    from adapters.storage.archive import familiar

    return familiar(tag)


# --- pure queries --------------------------------------------------------------------------------


def _reader(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(engine for name resolution, layer store, root) without the runtime: queries append
    nothing and start nothing. The engine is None when the root has no log yet."""
    from adapters.bootstrap import open_log
    from adapters.cmdline import root_dir
    from adapters.storage.store import LinuxLayerStore

    root = root_dir(args.root)
    store = LinuxLayerStore(root)
    log = open_log(root, create=False)
    if log is None:
        return None, store, root
    from adapters.bootstrap import query_engine

    return query_engine(log, layers=store), store, root


def cmd_inspect(args: argparse.Namespace) -> int:
    from adapters.cli.formats import inspected
    from adapters.storage import inspect
    from core.errors import LaminaError

    e, store, root = _reader(args)
    docs, code = [], 0
    for ref in args.objects:
        try:
            docs.append(_inspect_one(e, store, root, ref, args.type, inspect))
        except LaminaError as err:
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
    inspected(docs, args.format)
    return code


def _inspect_one(e: Any, store: Any, root: str, ref: str, kind: str | None,
                 inspect: Any) -> dict[str, Any]:
    """Containers first, then images (docker's order); --type limits it to one."""
    from core.errors import NotFound

    if e is None:
        raise NotFound(f"no such object: {ref}")
    if kind in (None, "container"):
        try:
            c = e.container(ref)
        except NotFound:
            if kind == "container":
                raise NotFound(f"no such container: {ref}") from None
        else:
            from core.engine.networks import every

            return inspect.container_doc(c, e.log.image(c.image), store, root, every(e))
    try:
        image = e.image(ref)
    except NotFound:
        raise NotFound(f"no such {'image' if kind else 'object'}: {ref}") from None
    layers = {la.id: la for la in e.log.layers()}
    return inspect.image_doc(image, layers, store)


def cmd_history(args: argparse.Namespace) -> int:
    from adapters.cli import render
    from adapters.storage import inspect
    from core.errors import NotFound
    from core.sizes import human_size

    e, _, _ = _reader(args)
    if e is None:
        raise NotFound(f"no such image: {args.image}")
    image = e.image(args.image)
    images = {i.id: i for i in e.log.images()}
    rows = inspect.history_rows(image, images, {la.id: la for la in e.log.layers()})
    if args.format == "json":
        for row in rows:
            render.json_line(row)
        return 0
    if args.quiet:
        for row in rows:
            print(row["Id"] if args.no_trunc or row["Id"] == "<missing>"
                  else render.short(row["Id"]))
        return 0
    table = []
    for row in rows:
        ident = row["Id"] if args.no_trunc or row["Id"] == "<missing>" else \
            render.short(row["Id"])
        by = row["CreatedBy"]
        if not args.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        table.append([ident, render.ago(row["Created"]) if args.human else row["Created"], by,
                      human_size(row["Size"]) if args.human else row["Size"],
                      row["Comment"]])
    render.table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], table)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from adapters.cli import render
    from adapters.storage import inspect
    from core.errors import NotFound

    e, _, _ = _reader(args)
    if e is None:
        raise NotFound(f"no such container: {args.container}")
    c = e.container(args.container)
    image = e.log.image(c.image)
    for kind, path in e.layers.changes(c.rw_layer, image.layers if image else ()):
        if args.format == "json":
            render.json_line({"Kind": inspect.CHANGE_KINDS[kind], "Path": path})
        else:
            print(f"{kind} {path}")
    return 0



def add_create_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="the container's name (one is made up if not given)")
    p.add_argument("-e", "--env", action="append", help="K=V (repeatable)")
    p.add_argument("-w", "--workdir", help="the working directory inside (made if missing)")
    p.add_argument("-u", "--user", help="USER[:GROUP] or UID[:GID] the command runs as")
    p.add_argument("--hostname", help="its hostname (default: its short id)")
    p.add_argument("--entrypoint", help="replace the image's ENTRYPOINT ('' clears it)")
    p.add_argument("--memory", "-m", help="memory limit (e.g. 64m, 1g)")
    p.add_argument("--pids-limit", type=int, help="processes at most")
    p.add_argument("--cpus", help="CPUs it may use (e.g. 0.5)")
    add_resource_flags(p)
    p.add_argument("--shm-size", help="the size of /dev/shm (e.g. 128m; default 64m)")
    p.add_argument("--runtime", help="runc only: docker's default runtime's name (lamina is "
                                     "its own runtime)")
    p.add_argument("--isolation", help="default only (docker's other kinds are Windows')")
    p.add_argument("--network", "--net", dest="network",
                   help="bridge (the default), a network's name, none or host")
    p.add_argument("-p", "--publish", action="append", dest="publish",
                   metavar="[HOST_IP:][HOST_PORT:]PORT[/PROTO]",
                   help="publish a container's port on the host (repeatable)")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every exposed port on an ephemeral host port")
    p.add_argument("--expose", action="append", metavar="PORT[/PROTO]",
                   help="expose a port (for -P) (repeatable)")
    p.add_argument("--ip", help="the container's IPv4 address on its user-defined network")
    p.add_argument("--ip6", help="its IPv6 address on its user-defined IPv6 network")
    p.add_argument("--link-local-ip", action="append", dest="link_local_ip",
                   help="a link-local address (169.254.0.0/16, fe80::/64) (repeatable)")
    p.add_argument("--mac-address", dest="mac_address",
                   help="the MAC address of its link on its network (e.g. 02:42:ac:11:00:02)")
    p.add_argument("--link", action="append", metavar="NAME[:ALIAS]",
                   help="a link to another container, known as ALIAS here (repeatable)")
    p.add_argument("--network-alias", "--net-alias", action="append", dest="network_alias",
                   help="another name of the container on its network (repeatable)")
    p.add_argument("--dns", action="append", help="a nameserver (repeatable)")
    p.add_argument("--dns-search", action="append", help="a search domain (repeatable)")
    p.add_argument("--dns-option", action="append", help="a resolver option (repeatable)")
    p.add_argument("--security-opt", action="append",
                   help="no-new-privileges[=false], seccomp=FILE|unconfined, "
                        "systempaths=unconfined")
    p.add_argument("--privileged", action="store_true",
                   help="every capability and device, no seccomp, /sys writable")
    p.add_argument("--cap-add", action="append", help="add a capability (or ALL)")
    p.add_argument("--cap-drop", action="append", help="drop a capability (or ALL)")
    p.add_argument("--read-only", action="store_true", help="mount the root read-only")
    p.add_argument("-v", "--volume", action="append", dest="volume_specs",
                   metavar="[SOURCE:]TARGET[:OPTS]",
                   help="a bind mount (/host/path), a named volume, or an anonymous one "
                        "(TARGET alone); OPTS: ro, rw, nocopy (repeatable)")
    p.add_argument("--mount", action="append", dest="mount_specs",
                   metavar="type=bind|volume|tmpfs,...",
                   help="source=, target=, readonly, volume-nocopy, tmpfs-size=, ... "
                        "(repeatable)")
    p.add_argument("--tmpfs", action="append", dest="tmpfs_specs", metavar="PATH[:OPTS]",
                   help="a tmpfs at PATH (OPTS: size=, mode=, exec, ...) (repeatable)")
    p.add_argument("--volumes-from", action="append", metavar="CONTAINER[:ro|rw]",
                   help="the mounts of another container (repeatable)")
    p.add_argument("--volume-driver", metavar="DRIVER",
                   help="the driver of the volumes it creates (only local is here)")
    p.add_argument("--device", action="append", help="HOST[:INSIDE][:rwm] (repeatable)")
    p.add_argument("--device-cgroup-rule", action="append", dest="device_cgroup_rules",
                   help="allow a device in the devices cgroup: 'TYPE MAJOR:MINOR ACCESS' "
                        "(e.g. 'c 42:* rmw'; repeatable)")
    p.add_argument("--group-add", action="append", help="a supplementary group (repeatable)")
    p.add_argument("--cgroup-parent", metavar="PATH",
                   help="the cgroup its cgroups go under, from each hierarchy's root "
                        "(default: lamina)")
    p.add_argument("--add-host", action="append", dest="extra_hosts",
                   help="NAME:IP, a line of the container's /etc/hosts (repeatable)")
    p.add_argument("--pid", help="host: share the host's PID namespace")
    p.add_argument("--ipc", help="host, private, shareable or none")
    p.add_argument("--uts", help="host: share the host's UTS namespace (hostname)")
    p.add_argument("-i", "--interactive", action="store_true", help="keep its stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    p.add_argument("-l", "--label", action="append", metavar="K[=V]",
                   help="a label on the container (repeatable)")
    p.add_argument("--label-file", action="append", metavar="FILE",
                   help="labels from a file of K[=V] lines (repeatable)")
    p.add_argument("--env-file", action="append", metavar="FILE",
                   help="environment variables from a file of K=V lines (K alone: the "
                        "caller's value) (repeatable)")
    p.add_argument("--init", action="store_true",
                   help="run an init (tini) as PID 1 that forwards signals and reaps "
                        "processes")
    p.add_argument("--ulimit", action="append", metavar="NAME=SOFT[:HARD]",
                   help="a resource limit (nofile, nproc, core, ...) (repeatable)")
    p.add_argument("--stop-signal", metavar="SIGNAL",
                   help="the signal stop sends (default: the image's STOPSIGNAL, or SIGTERM)")
    p.add_argument("--stop-timeout", type=int, metavar="SECONDS",
                   help="seconds stop waits before SIGKILL (default 10; -1: for ever)")
    p.add_argument("--log-driver", metavar="DRIVER",
                   help="json-file (the default) or none: no log is kept")
    p.add_argument("--log-opt", action="append", metavar="K=V",
                   help="json-file's max-size=SIZE, max-file=N: rotate the log (repeatable)")
    p.add_argument("--restart", metavar="POLICY",
                   help="no, always, unless-stopped or on-failure[:N]: start the container "
                        "again when it exits (docker's back-off)")
    p.add_argument("--health-cmd", metavar="COMMAND",
                   help="a command run in the container (/bin/sh -c) to check its health")
    p.add_argument("--health-interval", metavar="DURATION",
                   help="time between checks (ms|s|m|h) (default 30s)")
    p.add_argument("--health-timeout", metavar="DURATION",
                   help="longest a check may run (ms|s|m|h) (default 30s)")
    p.add_argument("--health-retries", type=int, metavar="N",
                   help="consecutive failures that make it unhealthy (default 3)")
    p.add_argument("--health-start-period", metavar="DURATION",
                   help="time to initialize before failures count (ms|s|m|h) (default 0s)")
    p.add_argument("--health-start-interval", metavar="DURATION",
                   help="time between checks during the start period (default 5s)")
    p.add_argument("--no-healthcheck", action="store_true",
                   help="disable the image's HEALTHCHECK")
    add_refused_flags(p)
    p.add_argument("image", help="the image to run (a tag, id or id prefix)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the command and its arguments (default: the image's)")


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("import", help="a rootfs tar becomes a one-layer image")
    p.add_argument("file", help="tar file, or - for stdin")
    p.add_argument("reference", nargs="?", help="REPO[:TAG]")
    p.add_argument("-m", "--message", help="the history entry's comment")
    p.add_argument("-c", "--change", action="append",
                   help="a Dockerfile instruction for the image's config (as commit's)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("create", help="add a read-write layer on top of an image")
    add_create_options(p)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("rm", help="remove containers (their read-write layers)")
    p.add_argument("-f", "--force", action="store_true", help="kill running ones first")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="remove the containers' anonymous volumes too")
    p.add_argument("-l", "--link", action="store_true",
                   help="remove the link PARENT/ALIAS, not a container")
    p.add_argument("containers", nargs="+", help="containers (ids, id prefixes or names)")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("rmi", help="remove top-level images")
    p.add_argument("-f", "--force", action="store_true",
                   help="untag an image with several tags, or one children still need")
    p.add_argument("images", nargs="+", help="images (tags, ids or id prefixes)")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("commit", help="a container's read-write layer becomes an image")
    p.add_argument("-m", "--message", help="the new layer's comment")
    p.add_argument("-a", "--author", help="the image's author")
    p.add_argument("-c", "--change", action="append",
                   help="a Dockerfile instruction for the image's config: CMD, ENTRYPOINT, "
                        "ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL (repeatable)")
    p.add_argument("container", help="the container (id, id prefix or name)")
    p.add_argument("reference", nargs="?", help="REPO[:TAG] for the new image")
    p.set_defaults(func=cmd_commit)

    p = sub.add_parser("tag", help="give an image another name")
    p.add_argument("image", help="the image (tag, id or id prefix)")
    p.add_argument("reference", help="the new name, REPO[:TAG]")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("save", help="images into a docker-archive / OCI-layout tar")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.add_argument("images", nargs="+", help="images (tags, ids or id prefixes)")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("load", help="images from a docker or OCI archive")
    p.add_argument("-i", "--input", help="archive to read (default: stdin)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("export", help="a container's filesystem as a flat tar")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.add_argument("container", help="the container (id, id prefix or name)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="low-level JSON about containers and images")
    p.add_argument("--type", choices=["container", "image"],
                   help="only containers or only images (default: a container first)")
    from adapters.cli.common import add_inspect_format

    add_inspect_format(p)
    p.add_argument("objects", nargs="+", metavar="ID", help="names, tags or ids")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("history", help="the layers and history of an image")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.add_argument("-H", "--human", action=argparse.BooleanOptionalAction, default=True,
                   help="sizes and dates for people (default) or exact")
    p.add_argument("-q", "--quiet", action="store_true", help="only the ids")
    fmt(p)
    p.add_argument("image", help="the image (tag, id or id prefix)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("diff", help="files a container added (A), changed (C), deleted (D)")
    fmt(p)
    p.add_argument("container", help="the container (id, id prefix or name)")
    p.set_defaults(func=cmd_diff)
