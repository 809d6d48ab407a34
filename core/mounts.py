"""A container's mounts: docker's ways of asking for them, judged into one list.

docker has five ways to ask (`-v`/Binds, `--mount`/Mounts, `--tmpfs`/Tmpfs, Config.Volumes
with an image's VOLUME, `--volumes-from`) and one result, the container's mount points. The
CLI and the Docker API record the request as given (the options `binds`, `mounts`, `tmpfs`,
`volumes`, `volumes_from`); `plan` turns it into `MountPoint`s at create, where anonymous
volumes get their names, and the engine records the result as the option `mount_points`:
what start mounts, inspect shows and `rm -v` removes is then read from the log, never
judged again.

Pure: the host paths are checked by the VolumeStore, and mounted by the runtime.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from core.errors import BadInput, NotFound

VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
LOCAL_DRIVER = "local"  # the only volume driver here: docker's own, no plugins
_NAME_RULE = '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
# docker's propagation modes of a bind: private ones are cut from the host's mount (the
# default, rprivate); shared ones keep its peer group both ways, slave ones receive from it
PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
SHARED, SLAVE = ("shared", "rshared"), ("slave", "rslave")
_BIND_MODES = ("ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated")
TMPFS_DEFAULT = "nosuid,nodev,noexec"  # docker's flags for every tmpfs, before its own
_TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime",
                "noatime", "diratime", "nodiratime", "relatime", "norelatime",
                "strictatime", "nostrictatime")
_TMPFS_DATA = ("size", "mode", "nr_inodes", "nr_blocks", "uid", "gid")


@dataclass(frozen=True)
class MountPoint:
    """One mount of a container, as recorded.

    `source`: the host path of a bind, the volume's name, "" for a tmpfs. `copy`: fill an
    empty volume from the image's files at `target` (docker's default; `nocopy` says no).
    `create_source`: a missing bind source is made (as `-v` does) instead of refused (as
    `--mount` does); it matters only at create. `options`: a tmpfs's mount data. `subpath`:
    a path inside the volume, resolved there (never out of it) when the container starts."""

    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""
    read_only: bool = False
    propagation: str = ""
    copy: bool = True
    create_source: bool = False
    anonymous: bool = False
    options: str = ""
    volume_labels: Mapping[str, str] = field(default_factory=dict)
    subpath: str = ""  # a volume's: only this directory (or file) of it is mounted
    driver: str = ""  # a volume's driver as asked (judged at create: only local is here)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", {}, False)
                or k in ("type", "target")} | {"copy": self.copy}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MountPoint:
        return cls(**{k: v for k, v in doc.items() if k in _FIELD_NAMES})


_FIELD_NAMES = frozenset(MountPoint.__dataclass_fields__)


def _target(path: str, what: str) -> str:
    if not path:
        raise BadInput(f"invalid mount config: {what} has no destination")
    if not path.startswith("/"):
        raise BadInput(f"invalid mount config: destination {path!r} is not an absolute path")
    clean = posixpath.normpath(path)
    clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise BadInput("invalid mount config: destination can't be '/'")
    return clean


def _volume_name(name: str, spec: str) -> str:
    if not VOLUME_NAME.fullmatch(name):
        raise BadInput(f'create {name}: "{name}" includes invalid characters for a local '
                       f"volume name, only {_NAME_RULE}. If you intended to pass a host "
                       "directory, use absolute path")
    return name


def parse_bind(spec: str) -> MountPoint:
    """`-v` / HostConfig.Binds: SOURCE:TARGET[:MODES] or an anonymous TARGET[:MODES]."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(p == "" for p in parts):
        raise BadInput(f"invalid volume specification: {spec!r}")
    if len(parts) == 2 and not parts[1].startswith("/") and parts[0].startswith("/"):
        source, target, modes = "", parts[0], parts[1]  # /ctr:ro, an anonymous volume
    else:
        source, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", parts[0])
        modes = parts[2] if len(parts) == 3 else ""
    target = _target(target, spec)
    flags = [m for m in modes.split(",") if m] if modes else []
    bad = [m for m in flags if m not in _BIND_MODES and m not in PROPAGATIONS]
    if bad or ("ro" in flags and "rw" in flags):
        raise BadInput(f"invalid mode: {modes}")
    read_only = "ro" in flags
    asked = next((m for m in flags if m in PROPAGATIONS), "")
    if asked and not source.startswith("/"):
        raise BadInput(f"invalid mode: {modes} (propagation applies to bind mounts)")
    if not source:
        return MountPoint("volume", target, read_only=read_only, anonymous=True,
                          copy="nocopy" not in flags)
    if source.startswith("/"):
        if "nocopy" in flags:
            raise BadInput(f"invalid mode: {modes} (nocopy applies to volumes)")
        return MountPoint("bind", target, posixpath.normpath(source), read_only,
                          _propagation(asked), create_source=True)
    return MountPoint("volume", target, _volume_name(source, spec), read_only,
                      copy="nocopy" not in flags)


def _propagation(value: str) -> str:
    if value and value not in PROPAGATIONS:
        raise BadInput(f"invalid propagation mode: {value}")
    return value


def propagation_problem(m: MountPoint, mountinfo: str, resolved: str = "") -> str | None:
    """docker's check at start of a shared or slave bind (moby's ensureShared and
    ensureSharedOrSlave): the mount its source is on (the longest mount point above it in
    `mountinfo`, /proc/self/mountinfo's text; `resolved`: the source with its symlinks
    resolved) must be shared, or for a slave bind shared or a slave. None when it may be
    mounted so; else docker's words."""
    if m.type != "bind" or m.propagation not in SHARED + SLAVE:
        return None
    source = resolved or m.source
    point, tags = "/", ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields:
            continue
        where = fields[4].replace("\\040", " ")
        if (source == where or source.startswith(where.rstrip("/") + "/")) \
                and len(where) >= len(point):
            point, tags = where, " ".join(fields[6:fields.index("-")])
    if "shared:" in tags or (m.propagation in SLAVE and "master:" in tags):
        return None
    kind = "shared" if m.propagation in SHARED else "shared or slave"
    return f"path {m.source} is mounted on {point} but it is not a {kind} mount"


def root_propagation(points: Sequence[MountPoint]) -> str:
    """The container's root mount's propagation, as docker sets it: shared when a bind is
    shared, rslave when one is a slave, else private ("": nothing to change)."""
    modes = {m.propagation for m in points if m.type == "bind"}
    return "shared" if modes & set(SHARED) else "rslave" if modes & set(SLAVE) else ""


def parse_mount_flag(spec: str) -> dict[str, Any]:
    """`--mount type=...,source=...,target=...` -> HostConfig.Mounts' shape, as docker's
    CLI sends it (so that the CLI and the API record the same request)."""
    out: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.lower()
        if key in ("readonly", "ro"):
            out["ReadOnly"] = _bool(value, item) if sep else True
        elif key == "volume-nocopy":
            volume["NoCopy"] = _bool(value, item) if sep else True
        elif key == "bind-nonrecursive":
            raise BadInput(f"--mount {item} is not supported by lamina yet")
        elif not sep:
            raise BadInput(f"invalid field '{item}' must be a key=value pair")
        elif key == "type":
            out["Type"] = value
        elif key in ("source", "src"):
            out["Source"] = value
        elif key in ("target", "destination", "dst"):
            out["Target"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-label":
            k, _, v = value.partition("=")
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "volume-subpath":
            volume["Subpath"] = value
        elif key == "tmpfs-size":
            tmpfs["SizeBytes"] = _size(value)
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise BadInput(f"invalid value for tmpfs-mode: {value}") from None
        elif key == "consistency":
            out["Consistency"] = value
        else:
            raise BadInput(f"unexpected key '{key}' in '{item}'")
    for key, section in (("BindOptions", bind), ("VolumeOptions", volume),
                         ("TmpfsOptions", tmpfs)):
        if section:
            out[key] = section
    return out


def _bool(value: str, item: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise BadInput(f"invalid value for {item.partition('=')[0]}: {value}")


def _size(value: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    m = re.fullmatch(r"(\d+)([bkmg]?)", value.strip().lower())
    if not m:
        raise BadInput(f"invalid size: {value!r}")
    return int(m.group(1)) * units[m.group(2)]


def from_api_mount(m: Any) -> MountPoint:
    """One entry of HostConfig.Mounts (docker's mount.Mount)."""
    if not isinstance(m, Mapping):
        raise BadInput(f"invalid mount config: {m!r}")
    kind = m.get("Type") or ""
    target = _target(m.get("Target") or "", f"mount of type {kind!r}")
    source = m.get("Source") or ""
    read_only = bool(m.get("ReadOnly"))
    if m.get("Consistency") not in (None, "", "default", "consistent", "cached", "delegated"):
        raise BadInput(f"invalid mount config: consistency {m.get('Consistency')!r}")
    if kind == "bind":
        if m.get("VolumeOptions") or m.get("TmpfsOptions"):
            raise BadInput('invalid mount config for type "bind": only BindOptions apply')
        if not source:
            raise BadInput('invalid mount config for type "bind": field Source must not be '
                           "empty")
        if not source.startswith("/"):
            raise BadInput(f'invalid mount config for type "bind": invalid mount path: '
                           f"'{source}' mount path must be absolute")
        opts = m.get("BindOptions") or {}
        for key in opts:
            if key != "Propagation" and opts[key]:
                raise BadInput(f"BindOptions.{key} is not supported by lamina yet")
        return MountPoint("bind", target, posixpath.normpath(source), read_only,
                          _propagation(opts.get("Propagation") or ""))
    if kind == "volume":
        if m.get("BindOptions") or m.get("TmpfsOptions"):
            raise BadInput('invalid mount config for type "volume": only VolumeOptions apply')
        opts = m.get("VolumeOptions") or {}
        driver = opts.get("DriverConfig") or {}
        if driver.get("Options") and driver.get("Name") in (None, "", "local"):
            raise BadInput("VolumeOptions.DriverConfig.Options (the local driver's options) "
                           "is not supported by lamina yet")
        subpath = _subpath(opts.get("Subpath") or "")
        if source:
            _volume_name(source, source)
        elif subpath:
            raise BadInput('invalid mount config for type "volume": a subpath needs a named '
                           "volume")
        return MountPoint("volume", target, source, read_only,
                          copy=not opts.get("NoCopy") and not subpath, anonymous=not source,
                          volume_labels=dict(opts.get("Labels") or {}), subpath=subpath,
                          driver=str(driver.get("Name") or ""))
    if kind == "tmpfs":
        if source:
            raise BadInput('invalid mount config for type "tmpfs": field Source must be empty')
        if m.get("BindOptions") or m.get("VolumeOptions"):
            raise BadInput('invalid mount config for type "tmpfs": only TmpfsOptions apply')
        opts = m.get("TmpfsOptions") or {}
        data = []
        if opts.get("SizeBytes"):
            data.append(f"size={int(opts['SizeBytes'])}")
        if opts.get("Mode"):
            data.append(f"mode={int(opts['Mode']):o}")
        if opts.get("Options"):
            raise BadInput("TmpfsOptions.Options is not supported by lamina yet")
        return MountPoint("tmpfs", target, read_only=read_only,
                          options=",".join(data))
    if kind in ("npipe", "cluster", "image"):
        raise BadInput(f"mount type {kind!r} is not supported by lamina yet")
    raise BadInput(f"invalid mount config: mount type unknown: {kind!r}")


def _subpath(path: str) -> str:
    """docker's rule: relative, and not climbing out of the volume (`..`) even on paper."""
    if not path:
        return ""
    clean = posixpath.normpath(path)
    if path.startswith("/") or clean == ".." or clean.startswith("../"):
        raise BadInput(f'invalid mount config for type "volume": subpath must be a relative '
                       f"path within the volume: {path!r}")
    return "" if clean == "." else clean


def parse_tmpfs(target: str, options: str) -> MountPoint:
    """`--tmpfs PATH[:OPTIONS]` / HostConfig.Tmpfs {PATH: OPTIONS}: mount(8)'s tmpfs
    options (size=64m, mode=1777, noexec, ...), docker's nosuid,nodev,noexec before them."""
    flags: list[str] = []
    data: list[str] = []
    read_only = False
    for opt in (o.strip() for o in (options or "").split(",")):
        if not opt:
            continue
        key, sep, _ = opt.partition("=")
        if opt in ("ro", "rw"):
            read_only = opt == "ro"
        elif not sep and opt in _TMPFS_FLAGS:
            flags.append(opt)
        elif sep and key in _TMPFS_DATA:
            data.append(opt)
        else:
            raise BadInput(f"invalid tmpfs option {opt!r} for {target}")
    return MountPoint("tmpfs", _target(target, "--tmpfs"), read_only=read_only,
                      options=",".join([*flags, *data]))


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """`--volumes-from CONTAINER[:ro|rw]` -> (container, mode)."""
    ref, _, mode = spec.partition(":")
    if not ref or mode not in ("", "ro", "rw"):
        raise BadInput(f"invalid volumes-from specification: {spec!r}")
    return ref, mode


def requested(options: Mapping[str, Any], image_volumes: Sequence[str],
              volumes_from: Callable[[str], Sequence[MountPoint]]) -> list[MountPoint]:
    """Every mount a create asks for, in docker's order of precedence: the request's own
    binds, mounts and tmpfs first (two of them at one target is an error), then what
    --volumes-from brings and the anonymous volumes of Config.Volumes and the image's
    VOLUMEs, each only where nothing is mounted yet. `volumes_from(ref)` gives another
    container's recorded mount points (NotFound when there is no such container)."""
    driver = str(options.get("volume_driver") or "")  # for -v's volumes and anonymous ones
    asked = [replace(m, driver=driver) if m.type == "volume" else m
             for m in map(parse_bind, _strings(options.get("binds"), "Binds"))]
    asked += [from_api_mount(m) for m in options.get("mounts") or ()]
    tmpfs = options.get("tmpfs") or {}
    if not isinstance(tmpfs, Mapping):
        raise BadInput("invalid Tmpfs: a map of path to options")
    asked += [parse_tmpfs(path, opts or "") for path, opts in tmpfs.items()]
    seen: set[str] = set()
    for m in asked:
        if m.target in seen:
            raise BadInput(f"Duplicate mount point: {m.target}")
        seen.add(m.target)
    out = list(asked)
    for spec in _strings(options.get("volumes_from"), "VolumesFrom"):
        ref, mode = parse_volumes_from(spec)
        for m in volumes_from(ref):
            if m.target in seen or m.type == "tmpfs":
                continue
            seen.add(m.target)
            ro = m.read_only if not mode else mode == "ro"
            # as docker copies the mount point: an anonymous one stays one (rm -v of the
            # last container that has it removes it)
            out.append(MountPoint(m.type, m.target, m.source, ro, m.propagation,
                                  copy=False, anonymous=m.anonymous, subpath=m.subpath))
    extra = list(options.get("volumes") or ())
    for target in [*extra, *image_volumes]:
        clean = _target(target, "a volume")
        if clean not in seen:
            seen.add(clean)
            out.append(MountPoint("volume", clean, anonymous=True, driver=driver))
    return out


def check_drivers(points: Sequence[MountPoint]) -> None:
    """docker's create looks up the driver of each volume it creates or mounts (-v's and
    the anonymous ones take HostConfig.VolumeDriver, --mount's its own): a driver no plugin
    answers for fails the create, named as docker names it. A VolumeDriver no volume
    uses is only recorded."""
    for m in points:
        if m.type == "volume" and m.driver not in ("", LOCAL_DRIVER):
            raise NotFound(plugin_not_found(m.source, m.driver))


def plugin_not_found(volume: str, driver: str) -> str:
    """docker's words when no volume plugin of that name answers (lamina has none)."""
    return f'create {volume}: error looking up volume plugin {driver}: plugin "{driver}" ' \
        "not found"


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"invalid {what}: a list of strings")
    return list(value)


def recorded(options: Mapping[str, Any]) -> list[MountPoint]:
    """A created container's mount points, as its ContainerCreated recorded them."""
    return [MountPoint.from_json(m) for m in options.get("mount_points") or ()]


def inspect_mounts(points: Sequence[MountPoint],
                   volume_path: Callable[[str], str]) -> list[dict[str, Any]]:
    """docker inspect's `Mounts`."""
    out = []
    for m in points:
        doc: dict[str, Any] = {"Type": m.type}
        if m.type == "volume":
            doc |= {"Name": m.source, "Source": volume_path(m.source), "Driver": "local"}
        else:
            doc["Source"] = m.source
        doc |= {"Destination": m.target, "Mode": _mode(m),
                "RW": not m.read_only,
                "Propagation": (m.propagation or "rprivate") if m.type == "bind" else ""}
        out.append(doc)
    return out


def _mode(m: MountPoint) -> str:
    """inspect's `Mode`: a volume's "z"; a bind's `ro`, then the propagation `-v` gave
    (docker shows -v's modes as given: "ro,rshared")."""
    if m.type == "volume":
        return "z"
    if m.type != "bind":
        return ""
    asked = m.propagation if m.create_source else ""
    return ",".join(x for x in ("ro" if m.read_only else "", asked) if x)
