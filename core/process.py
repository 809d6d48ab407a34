"""What a container runs: the image config and the run options merged, as docker merges them.

Pure: the runtime adapter turns a ProcessSpec into namespaces, mounts and an exec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import runopts
from core.errors import BadInput
from core.mounts import MountPoint, recorded
from core.resources import KEYS as RESOURCES
from core.security import Security, security_of

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 << 20  # docker's /dev/shm


@dataclass(frozen=True)
class ProcessSpec:
    """Everything the container's first process needs, decided before anything is forked."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    network: str = "none"
    tty: bool = False
    interactive: bool = False
    stdin_once: bool = False  # stdin closes when the first attached client's input ends
    security: Security = field(default_factory=Security)
    limits: Mapping[str, Any] = field(default_factory=dict)
    extra_hosts: tuple[tuple[str, str], ...] = ()  # --add-host NAME:IP, as (name, ip)
    mounts: tuple[MountPoint, ...] = ()  # as create recorded them (core/mounts.py)
    dns: tuple[str, ...] = ()  # --dns: the nameservers, instead of the network's
    dns_search: tuple[str, ...] = ()  # --dns-search
    dns_options: tuple[str, ...] = ()  # --dns-option
    init: bool = False  # --init: docker's init (tini) as PID 1, running argv
    rlimits: tuple[tuple[int, int, int], ...] = ()  # --ulimit: (RLIMIT_*, soft, hard)
    log_driver: str = "json-file"  # --log-driver: json-file or none
    log_max_size: int = -1  # --log-opt max-size, in bytes; -1: no rotation
    log_max_file: int = 1  # --log-opt max-file
    shm_size: int = DEFAULT_SHM_SIZE  # --shm-size: /dev/shm's tmpfs, in bytes
    # with tty: the terminal's (rows, columns) as the container starts (HostConfig.
    # ConsoleSize; `run -t` sends its own terminal's); (0, 0): left to the first resize
    console_size: tuple[int, int] = (0, 0)


HOST_GATEWAY = "host-gateway"
INIT_PATH = "/sbin/docker-init"  # where docker puts its init in the container


def extra_host(entry: str) -> tuple[str, str]:
    """docker's --add-host: NAME:IP or NAME=IP (an IPv6 address keeps its colons), or
    NAME:host-gateway: the host as the container's first network reaches it (its gateway),
    filled in at start (hosts_file)."""
    import ipaddress

    name, sep, ip = entry.partition("=") if "=" in entry else entry.partition(":")
    ip = ip.strip("[]")
    if not sep or not name or not ip:
        raise BadInput(f"invalid --add-host {entry!r}: use NAME:IP")
    if ip == HOST_GATEWAY:
        return name, ip
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise BadInput(f"invalid IP address in --add-host {entry!r}: {ip}") from None
    return name, ip


def hosts_file(spec: ProcessSpec, endpoints: Mapping[str, Mapping[str, Any]] = {}) -> str:
    """The container's /etc/hosts: docker's lines, its hostname at its address on its first
    network (127.0.1.1 without one; its IPv6 one too on a dual-stack network), then its
    --add-host entries, then its legacy links' (core/links.py)."""
    first = min(endpoints.values(), key=lambda e: e["slot"], default=None)
    own = first["address"] if first else "127.0.1.1"
    gateway = first["gateway"] if first else ""
    own6 = [f"{first['address6']}\t{spec.hostname}"] if first and first.get("address6") \
        else []
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost",
             f"{own}\t{spec.hostname}", *own6,
             *(f"{gateway if ip == HOST_GATEWAY else ip}\t{name}"
               for name, ip in spec.extra_hosts if ip != HOST_GATEWAY or gateway),
             *(f"{address}\t{names}" for ep in endpoints.values()
               for address, names in ep.get("link_hosts") or ())]
    return "\n".join(lines) + "\n"


def link_env(endpoints: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The variables of a run's legacy links, as its start decided them (core/links.py)."""
    return tuple(v for ep in endpoints.values() for v in ep.get("link_env") or ())


def resolv_conf(host: str, spec: ProcessSpec, endpoints: Mapping[str, Mapping[str, Any]]) -> str:
    """A bridge container's /etc/resolv.conf, as docker writes it. On a user-defined network
    the nameserver is the network's DNS responder (its gateway: adapters/network/dns.py),
    which answers the containers' names, with docker's `ndots:0`; on the default bridge the
    host's nameservers, except those on loopback (unreachable from the container). The
    host's search domains and options are kept unless --dns-search/--dns-option replace
    them, and --dns replaces the nameservers."""
    servers, search, options = [], [], []
    for line in host.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "nameserver" and rest.strip():
            servers.append(rest.strip())
        elif word in ("search", "domain"):
            search = rest.split()
        elif word == "options":
            options += rest.split()
    servers = [s for s in servers if not s.startswith("127.") and s != "::1"]
    embedded = [e for e in sorted(endpoints.values(), key=lambda e: e["slot"]) if e.get("dns")]
    if embedded:
        servers = [embedded[0]["gateway"]]
        options = [*[o for o in options if not o.startswith("ndots:")], "ndots:0"]
    servers = list(spec.dns) or servers
    search = list(spec.dns_search) or search
    options = list(spec.dns_options) or options
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def merge_env(base: Sequence[str], extra: Sequence[str]) -> tuple[str, ...]:
    """Later values win, order of first appearance kept; PATH defaults like docker's. A
    bare `NAME` unsets NAME, as docker's daemon reads it (its CLI sends one for `-e NAME`
    when NAME is not set where the client runs)."""
    out: dict[str, str] = {}
    for item in [*base, *extra]:
        key, sep, value = item.partition("=")
        if not key:
            raise BadInput(f"invalid environment variable {item!r}")
        if sep:
            out[key] = value
        else:
            out.pop(key, None)
    out.setdefault("PATH", DEFAULT_PATH)
    return tuple(f"{k}={v}" for k, v in out.items())


def config_env(image_env: Sequence[str], env: Sequence[str]) -> list[str]:
    """docker's Config.Env: the request's entries as given (a bare NAME too, which unsets
    NAME in the process), then the image's whose names the request doesn't set (moby's
    runconfig.Merge); PATH as merge_env defaults it when neither sets one."""
    names = {item.partition("=")[0] for item in env}
    out = [*env, *(item for item in image_env if item.partition("=")[0] not in names)]
    if "PATH" not in {item.partition("=")[0] for item in out}:
        out.append(f"PATH={DEFAULT_PATH}")
    return out


def command_line(image_config: Mapping[str, Any], cmd: Sequence[str],
                 entrypoint: Sequence[str] | None = None) -> tuple[str, ...]:
    """Entrypoint + Cmd, where a given command replaces the image's Cmd (docker's rule)."""
    ep = list(entrypoint if entrypoint is not None else image_config.get("Entrypoint") or [])
    args = list(cmd) if cmd else list(image_config.get("Cmd") or [])
    argv = tuple(ep + args)
    if not argv:
        raise BadInput("no command specified")
    return argv


def process_spec(image_config: Mapping[str, Any], cmd: Sequence[str],
                 options: Mapping[str, Any], container_id: str) -> ProcessSpec:
    """The ProcessSpec for a container: image config `config` section plus run options."""
    cfg = image_config.get("config") or {}
    hostname = options.get("hostname") or container_id[:12]
    argv = command_line(cfg, cmd, options.get("entrypoint"))
    log = runopts.log_config(options)
    max_size, max_file = runopts.log_limits(log["Config"]) if log["Type"] == runopts.JSON_FILE \
        else (-1, 1)
    return ProcessSpec(
        argv=(INIT_PATH, "--", *argv) if options.get("init") else argv,
        env=merge_env([*(cfg.get("Env") or []), f"HOSTNAME={hostname}"],
                      options.get("env") or []),
        cwd=options.get("workdir") or cfg.get("WorkingDir") or "/",
        user=options.get("user") or cfg.get("User") or "",
        hostname=hostname,
        network=options.get("network") or "none",
        tty=bool(options.get("tty")),
        interactive=bool(options.get("interactive")),
        stdin_once=bool(options.get("interactive") and options.get("stdin_once")),
        security=security_of(options),
        extra_hosts=tuple(extra_host(h) for h in options.get("extra_hosts") or ()),
        limits={**{k: options[k] for k in ("memory", "pids", "cpus") if options.get(k)},
                **{k: options[k] for k in RESOURCES if options.get(k) is not None}},
        mounts=tuple(recorded(options)) if options.get("mount_points") else (),
        dns=tuple(options.get("dns") or ()),
        dns_search=tuple(options.get("dns_search") or ()),
        dns_options=tuple(options.get("dns_options") or ()),
        init=bool(options.get("init")),
        rlimits=runopts.rlimits(options),
        log_driver=log["Type"], log_max_size=max_size, log_max_file=max_file,
        shm_size=options.get("shm_size") or DEFAULT_SHM_SIZE,
        console_size=runopts.console_size(options),
    )
