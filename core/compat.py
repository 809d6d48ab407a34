"""Every field of docker's create request, and what lamina does with it: one table.

Why a table: a request lamina can't honour must be refused by name, never accepted and
ignored (the honesty rule), and the list of what is honoured must not drift from what the
code does. The Docker API adapter turns a create body into lamina's recorded options (the
`key` of each field) and the CLI its flags; `check` refuses every refused field that carries
a request, before anything is recorded; docs/compatibility.md is generated from FIELDS.

A field at its zero value is no request: docker's clients send most of them every time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.errors import BadInput


class Status(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"
    CLIENT = "client"  # what docker's own daemon ignores too: the client acts on it


@dataclass(frozen=True)
class Field:
    """One field of docker's create body (`Config.X` fields sit at the body's top level)."""

    api: str  # "HostConfig.Binds"
    cli: str  # "-v, --volume" ("" when the CLI has no flag for it)
    status: Status
    key: str = ""  # lamina's recorded option; "" when the field never becomes one
    note: str = ""  # how it is applied, or which issue brings it
    allowed: tuple[str, ...] = ()  # an applied field's values lamina honours (empty: any)

    @property
    def name(self) -> str:
        return self.api.removeprefix("Config.")


A, R, C = Status.APPLIED, Status.REFUSED, Status.CLIENT
VOLUMES, NETWORKS, EVERYDAY = "volumes issue", "networks issue", "everyday-surface issue"
RESOURCES = "resource controls beyond memory, swap, cpus, cpu shares/period/quota, cpuset and " \
    "pids are not built"
V1_V2 = "cgroup v1 {v1}; v2 {v2} (core/resources.py judges it as docker does)"

FIELDS: tuple[Field, ...] = (
    # --- Config (the body's top level) ---
    Field("Config.Hostname", "--hostname", A, "hostname", "docker's -h is lamina's help"),
    Field("Config.Domainname", "--domainname", R, "domainname", "not built"),
    Field("Config.User", "-u, --user", A, "user"),
    Field("Config.AttachStdin", "-a, --attach", C, note="which streams the client attaches"),
    Field("Config.AttachStdout", "-a, --attach", C, note="which streams the client attaches"),
    Field("Config.AttachStderr", "-a, --attach", C, note="which streams the client attaches"),
    Field("Config.ExposedPorts", "--expose", A, "exposed_ports", "published by -P"),
    Field("Config.Tty", "-t, --tty", A, "tty"),
    Field("Config.OpenStdin", "-i, --interactive", A, "interactive"),
    Field("Config.StdinOnce", "-i, --interactive", A, "stdin_once",
          "the container's stdin closes when the first attached client's input ends (not "
          "with a terminal); the CLI asks it with -i unless -d, as docker's"),
    Field("Config.Env", "-e, --env", A, "env"),
    Field("Config.Cmd", "COMMAND", A, note="the container's command"),
    Field("Config.Healthcheck", "--health-cmd, --no-healthcheck", A, "healthcheck",
          "docker's rules, probes exec'd by a health process per running container; status "
          "changes recorded"),
    Field("Config.ArgsEscaped", "", C, note="Windows only: no effect on Linux, as docker's"),
    Field("Config.Image", "IMAGE", A, note="the image"),
    Field("Config.Runtime", "", C,
          note="docker-py's older place for HostConfig.Runtime: docker's daemon ignores it"),
    Field("Config.Volumes", "-v, --volume", A, "volumes",
          "an anonymous volume at each path (`-v /path`), as an image's VOLUME"),
    Field("Config.WorkingDir", "-w, --workdir", A, "workdir"),
    Field("Config.Entrypoint", "--entrypoint", A, "entrypoint"),
    Field("Config.NetworkDisabled", "", A, "network", "no network: --network none"),
    Field("Config.OnBuild", "", R, "onbuild", "image metadata only"),
    Field("Config.Labels", "-l, --label", A, "labels"),
    Field("Config.StopSignal", "--stop-signal", A, "stop_signal",
          "what stop sends (else the image's STOPSIGNAL, else SIGTERM)"),
    Field("Config.StopTimeout", "--stop-timeout", A, "stop_timeout",
          "stop's and restart's default -t; -1 waits for ever"),
    Field("Config.Shell", "", R, "shell", "image metadata only"),
    Field("Config.MacAddress", "--mac-address", A, "mac_address",
          "the MAC of its link on its network (before API 1.44; then the endpoint's)"),
    # --- HostConfig: resources ---
    Field("HostConfig.Memory", "-m, --memory", A, "memory"),
    Field("HostConfig.NanoCpus", "--cpus", A, "cpus"),
    Field("HostConfig.PidsLimit", "--pids-limit", A, "pids"),
    Field("HostConfig.CpuShares", "-c, --cpu-shares", A, "cpu_shares",
          V1_V2.format(v1="cpu.shares", v2="cpu.weight (runc's conversion)")),
    Field("HostConfig.CgroupParent", "--cgroup-parent", A, "cgroup_parent",
          "docker's cgroupfs layout: PARENT/<id> in every hierarchy, a relative parent "
          "taken from the root as an absolute one; `..` refused (core/cgroupparent.py)"),
    Field("HostConfig.BlkioWeight", "--blkio-weight", R, "blkio_weight", RESOURCES),
    Field("HostConfig.BlkioWeightDevice", "--blkio-weight-device", R, "blkio_weight_device",
          RESOURCES),
    Field("HostConfig.BlkioDeviceReadBps", "--device-read-bps", R, "device_read_bps",
          RESOURCES),
    Field("HostConfig.BlkioDeviceWriteBps", "--device-write-bps", R, "device_write_bps",
          RESOURCES),
    Field("HostConfig.BlkioDeviceReadIOps", "--device-read-iops", R, "device_read_iops",
          RESOURCES),
    Field("HostConfig.BlkioDeviceWriteIOps", "--device-write-iops", R, "device_write_iops",
          RESOURCES),
    Field("HostConfig.CpuPeriod", "--cpu-period", A, "cpu_period",
          V1_V2.format(v1="cpu.cfs_period_us", v2="cpu.max")),
    Field("HostConfig.CpuQuota", "--cpu-quota", A, "cpu_quota",
          V1_V2.format(v1="cpu.cfs_quota_us", v2="cpu.max")),
    Field("HostConfig.CpuRealtimePeriod", "--cpu-rt-period", A, "cpu_rt_period",
          V1_V2.format(v1="cpu.rt_period_us", v2="refused by name (no real-time groups)")),
    Field("HostConfig.CpuRealtimeRuntime", "--cpu-rt-runtime", A, "cpu_rt_runtime",
          V1_V2.format(v1="cpu.rt_runtime_us, lent through the cgroups above it while it "
                          "runs (core/rtbudget.py)",
                       v2="refused by name (no real-time groups)")),
    Field("HostConfig.CpusetCpus", "--cpuset-cpus", A, "cpuset_cpus",
          V1_V2.format(v1="cpuset.cpus", v2="cpuset.cpus")),
    Field("HostConfig.CpusetMems", "--cpuset-mems", A, "cpuset_mems",
          V1_V2.format(v1="cpuset.mems", v2="cpuset.mems")),
    Field("HostConfig.Devices", "--device", A, "devices"),
    Field("HostConfig.DeviceCgroupRules", "--device-cgroup-rule", A, "device_cgroup_rules",
          "docker's `TYPE MAJOR:MINOR ACCESS` rules, added to the devices cgroup's allow-list"),
    Field("HostConfig.DeviceRequests", "--gpus", R, "device_requests", "no GPU support"),
    Field("HostConfig.MemoryReservation", "--memory-reservation", A, "memory_reservation",
          V1_V2.format(v1="memory.soft_limit_in_bytes", v2="memory.low")),
    Field("HostConfig.MemorySwap", "--memory-swap", A, "memory_swap",
          V1_V2.format(v1="memory.memsw.limit_in_bytes (needs swap accounting)",
                       v2="memory.swap.max (less the memory limit)")),
    Field("HostConfig.MemorySwappiness", "--memory-swappiness", A, "memory_swappiness",
          V1_V2.format(v1="memory.swappiness", v2="refused by name (no such knob)")),
    Field("HostConfig.OomKillDisable", "--oom-kill-disable", R, "oom_kill_disable",
          RESOURCES),
    Field("HostConfig.Init", "--init", A, "init",
          "Debian's static tini bound read-only at /sbin/docker-init, as docker's"),
    Field("HostConfig.Ulimits", "--ulimit", A, "ulimits",
          "setrlimit before exec (exec's processes too); docker's names"),
    Field("HostConfig.CpuCount", "", R, "cpu_count", "Windows only"),
    Field("HostConfig.CpuPercent", "", R, "cpu_percent", "Windows only"),
    Field("HostConfig.IOMaximumIOps", "", R, "io_maximum_iops", "Windows only"),
    Field("HostConfig.IOMaximumBandwidth", "", R, "io_maximum_bandwidth", "Windows only"),
    # --- HostConfig: storage ---
    Field("HostConfig.Binds", "-v, --volume", A, "binds",
          "host paths and named volumes; every propagation mode (a shared or slave bind "
          "needs its source on a shared or slave mount, as docker checks at start), z/Z as "
          "on a host without SELinux"),
    Field("HostConfig.Mounts", "--mount", A, "mounts",
          "bind, volume (with a subpath) and tmpfs; a volume driver other than local fails as "
          "docker's does without its plugin; no non-recursive binds"),
    Field("HostConfig.Tmpfs", "--tmpfs", A, "tmpfs"),
    Field("HostConfig.VolumeDriver", "--volume-driver", A, "volume_driver",
          "recorded and shown by inspect; lamina has only the local driver, so a volume the "
          "container creates or mounts with another fails its create as docker's does when "
          "no plugin answers (`error looking up volume plugin NAME`)"),
    Field("HostConfig.VolumesFrom", "--volumes-from", A, "volumes_from"),
    Field("HostConfig.ReadonlyRootfs", "--read-only", A, "read_only"),
    Field("HostConfig.StorageOpt", "--storage-opt", R, "storage_opt", "no per-container quota"),
    Field("HostConfig.ShmSize", "--shm-size", A, "shm_size",
          "the size of /dev/shm's tmpfs (docker's 64 MiB when unset)"),
    # --- HostConfig: networks ---
    Field("HostConfig.NetworkMode", "--network", A, "network",
          "bridge (the default), a user-defined bridge network, none, host, "
          "container:NAME"),
    Field("HostConfig.PortBindings", "-p, --publish", A, "port_bindings",
          "DNAT by nftables, IPv4"),
    Field("HostConfig.PublishAllPorts", "-P, --publish-all", A, "publish_all"),
    Field("HostConfig.Dns", "--dns", A, "dns", "the nameservers of its resolv.conf"),
    Field("HostConfig.DnsOptions", "--dns-option", A, "dns_options"),
    Field("HostConfig.DnsSearch", "--dns-search", A, "dns_search"),
    Field("HostConfig.ExtraHosts", "--add-host", A, "extra_hosts",
          "NAME:IP lines in /etc/hosts; host-gateway: its first network's gateway"),
    Field("HostConfig.Links", "--link", A, "links",
          "NAME:ALIAS: on the default bridge docker's legacy links (/etc/hosts, the "
          "ALIAS_PORT_... variables), on a user-defined network a name its DNS answers "
          "for this container alone"),
    Field("NetworkingConfig.EndpointsConfig",
          "--ip, --ip6, --network-alias, --mac-address, --link-local-ip", A, "endpoints",
          "aliases, IPv4 and IPv6 addresses on a user-defined network, a MAC, link-local "
          "addresses, links, driver options (recorded; docker's own refused by name)"),
    # --- HostConfig: lifecycle and logs ---
    Field("HostConfig.RestartPolicy", "--restart", A, "restart",
          "no, always, unless-stopped, on-failure[:N], with docker's back-off (100 ms "
          "doubling to 1 min), applied by the container's monitor; not with --rm"),
    Field("HostConfig.AutoRemove", "--rm", A, "auto_remove"),
    Field("HostConfig.LogConfig", "--log-driver, --log-opt", A, "log_config",
          "json-file (max-size, max-file: docker's rotation) and none; other drivers and "
          "options refused by name"),
    Field("HostConfig.ContainerIDFile", "--cidfile", C,
          note="written by the client, as docker's daemon leaves it to its CLI"),
    Field("HostConfig.ConsoleSize", "-t, --tty", A, "console_size",
          "[height, width]: the terminal's size as the container starts (run and create -t "
          "send the client's terminal's); later resizes come from the attached client"),
    Field("HostConfig.Annotations", "--annotation", R, "annotations", "no OCI runtime below"),
    Field("HostConfig.Runtime", "--runtime", A, "runtime",
          "runc only, docker's default runtime's name: lamina is its own runtime; others "
          "refused by name"),
    Field("HostConfig.Isolation", "--isolation", A, "isolation",
          "default only (hyperv and process are Windows'); others refused by name"),
    # --- HostConfig: security and namespaces ---
    Field("HostConfig.CapAdd", "--cap-add", A, "cap_add"),
    Field("HostConfig.CapDrop", "--cap-drop", A, "cap_drop"),
    Field("HostConfig.Privileged", "--privileged", A, "privileged"),
    Field("HostConfig.SecurityOpt", "--security-opt", A, "security_opt",
          "no-new-privileges, seccomp, systempaths; others refused by name"),
    Field("HostConfig.GroupAdd", "--group-add", A, "group_add"),
    Field("HostConfig.PidMode", "--pid", A, "pid", "host; container:NAME refused"),
    Field("HostConfig.IpcMode", "--ipc", A, "ipc",
          "private, shareable, none, host; container:NAME refused"),
    Field("HostConfig.UTSMode", "--uts", A, "uts", "host"),
    Field("HostConfig.CgroupnsMode", "--cgroupns", R, "cgroupns",
          "always private: host refused"),
    Field("HostConfig.Cgroup", "", R, "cgroup", "another container's cgroup"),
    Field("HostConfig.UsernsMode", "--userns", R, "userns", "a per-root setting"),
    Field("HostConfig.OomScoreAdj", "--oom-score-adj", R, "oom_score_adj", RESOURCES),
    Field("HostConfig.Sysctls", "--sysctl", R, "sysctls", "namespaced sysctls not built"),
    Field("HostConfig.MaskedPaths", "", R, "masked_paths",
          "docker's list; [] (with ReadonlyPaths []) is --security-opt systempaths=unconfined"),
    Field("HostConfig.ReadonlyPaths", "", R, "readonly_paths",
          "docker's list; see MaskedPaths"),
)

BY_API = {f.api: f for f in FIELDS}
# Go's JSON decoding matches field names case-insensitively (docker-py sends
# CPURealtimeRuntime for CpuRealtimeRuntime): the Docker API adapter looks names up here too
BY_API_FOLDED = {f.api.lower(): f for f in FIELDS}
BY_KEY = {f.key: f for f in FIELDS if f.key}


def refusal(api: str) -> str:
    """The one line for a refused field (the API's 400 message, the CLI's error)."""
    field = BY_API.get(api)
    if field is not None and field.cli and field.cli not in ("COMMAND", "IMAGE"):
        return f"{field.name} ({field.cli}) is not supported by lamina yet"
    return f"{api.removeprefix('Config.')} is not supported by lamina yet"


def is_zero(value: Any) -> bool:
    """No request: unset, empty, zero or false."""
    return value is None or value is False or value in ("", 0) or value == [] or value == {}


def checked(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options, once `check` found nothing to refuse (`unsupported` is not recorded)."""
    check(options)
    out = {k: v for k, v in options.items() if k != "unsupported"}
    if out.get("restart"):  # the flag's text or the API's body: recorded in the API's shape
        from core import restart

        out["restart"] = restart.policy(out["restart"]).api()
    if out.get("healthcheck") is not None:  # docker's daemon's checks, zero fields left out
        from core import health

        out["healthcheck"] = health.normalized(out["healthcheck"])
    return out


def check(options: Mapping[str, Any]) -> None:
    """Refuse the first recorded option whose field lamina doesn't honour; `unsupported`
    names body fields outside docker's schema that carried a value."""
    if options.get("restart"):
        from core import restart

        restart.check(options)
    for key, value in options.items():
        if key == "unsupported":
            if value:
                raise BadInput(refusal(value[0]))
            continue
        field = BY_KEY.get(key)
        if field is None or is_zero(value):
            continue
        if field.status is Status.REFUSED:
            raise BadInput(refusal(field.api))
        if field.allowed and value not in field.allowed:
            raise BadInput(f"{field.name} {value!r} ({field.cli} {value}) is not supported "
                           f"by lamina yet (use {' or '.join(field.allowed)})")
