"""The volume aggregate: `volume create`, `volume rm`, `volume prune`, and the queries
(a volume by name, the list with docker's filters).

A volume is a stream `volume:<name>`; its data is the VolumeStore's. Order of writes, as
everywhere: a volume's directory is made before the log says the volume exists (and removed
again if the append fails while the log still doesn't say so); VolumeRemoved is recorded
before the data is deleted. Each command is one unit of work with the versions it read as
expected versions, so a container that mounts a volume while `volume rm` or `prune` judges
it makes that append fail, and the command judges again (Command.retrying).

docker's rules (moby daemon/volume/service, daemon/volume/local), kept:
- a name matches `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; none given is a random 64-hex one, and such a
  volume is anonymous (docker 23+: `volume create` without a name makes an anonymous one);
- creating a name that exists returns it unchanged (no event, labels not merged);
- only the `local` driver; its options (type, device, o, size) are refused by name until
  lamina mounts them, any other option is docker's `invalid option`;
- a volume in use (a container, running or not, mounts it) can't be removed:
  `remove <name>: volume is in use - [<ids>]`; a missing one is `get <name>: no such volume`,
  which `rm -f` alone ignores;
- prune removes the unused volumes, only the anonymous ones unless `all` (the `all` filter
  or --all), with `label`/`label!` filters; it reports the names and the bytes reclaimed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.command import Command
from core.engine.base import EngineBase
from core.errors import BadInput, Conflict, NotFound
from core.filters import labels_hold, matches
from core.model import Volume
from core.mounts import LOCAL_DRIVER, plugin_not_found
from events import types as ev

Filters = Mapping[str, Sequence[str]]

DRIVER = LOCAL_DRIVER
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME = re.compile(NAME_CHARS + "+")
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # docker's mark of an anonymous volume
LOCAL_OPTIONS = ("type", "device", "o", "size")  # what docker's local driver takes
LIST_KEYS = frozenset({"dangling", "name", "driver", "label"})
PRUNE_KEYS = frozenset({"label", "label!", "all"})


@dataclass(frozen=True)
class Pruned:
    """What `volume prune` removed, and the bytes their data used."""

    names: list[str] = field(default_factory=list)
    reclaimed: int = 0


# --- commands ------------------------------------------------------------------------------


def volume_create(e: EngineBase, name: str | None = None, driver: str = DRIVER,
                  labels: Mapping[str, str] | None = None,
                  options: Mapping[str, str] | None = None) -> str:
    """A new volume (its name), or the one of that name there is, unchanged."""
    with e.command("volume create", name or "(anonymous)") as cmd:
        check_name(name, "create")
        chosen = name or e.ids.new_id()
        check_driver(driver, chosen)
        check_options(options or {})
        anonymous = name is None or ANONYMOUS_LABEL in (labels or {})
        return cmd.retrying(lambda: _create(e, cmd, chosen, dict(labels or {}), anonymous))


def _create(e: EngineBase, cmd: Command, name: str, labels: dict[str, str],
            anonymous: bool) -> str:
    if e.log.volume(name) is not None:
        return name  # docker: the existing volume, as it is
    stream = f"volume:{name}"
    version = cmd.stream_version(stream)
    if e.volumes.exists(name) and name in e.volumes.names():
        # data no volume of the log owns, and no live maker is about to record (the store
        # lists only those): left by a crash (a create before its record, an rm after its
        # record). It is not this volume's: it goes rather than come back as its data.
        e.volumes.remove(name)
    made = not e.volumes.exists(name)
    e.volumes.create(name)  # before the log says it exists
    try:
        cmd.append([ev.VolumeCreated(id=name, driver=DRIVER, labels=labels, options={},
                                     anonymous=anonymous)], {stream: version})
    except BaseException:
        if made and e.log.volume(name) is None:  # the log never said it existed
            e.volumes.remove(name)
        raise
    return name


def volume_rm(e: EngineBase, name: str, force: bool = False) -> bool:
    """Remove one volume (not in use); with `force` a missing one is no error. Whether a
    volume was removed."""
    with e.command("volume rm", name) as cmd:
        return cmd.retrying(lambda: _rm(e, cmd, name, force))


def _rm(e: EngineBase, cmd: Command, name: str, force: bool) -> bool:
    v = e.log.volume(name)
    if v is None:
        if force:
            return False
        raise NotFound(f"get {name}: no such volume")
    if v.users:
        raise Conflict(f"remove {name}: volume is in use - [{', '.join(v.users)}]")
    cmd.append([ev.VolumeRemoved(id=name)], {f"volume:{name}": v.version})
    e.volumes.remove(name)  # after the log says it is gone
    return True


def volume_prune(e: EngineBase, filters: Filters | None = None,
                 all: bool = False) -> Pruned:
    """Remove the unused volumes the filters select (anonymous ones only unless `all`), in
    one append; their names and the bytes their data used."""
    filters = dict(filters or {})
    with e.command("volume prune", "volumes") as cmd:
        _check_keys(filters, PRUNE_KEYS)
        every = all or _all_filter(filters)
        return cmd.retrying(lambda: _prune(e, cmd, filters, every))


def _prune(e: EngineBase, cmd: Command, filters: Filters, every: bool) -> Pruned:
    doomed = [v for v in e.log.volumes()
              if not v.users and v.driver == DRIVER and not v.options
              and (every or v.anonymous) and _labels_hold(v, filters)]
    doomed.sort(key=lambda v: v.id)
    if not doomed:
        return Pruned()
    sizes = {v.id: e.volumes.size(v.id) for v in doomed}  # before the data goes
    cmd.append([ev.VolumeRemoved(id=v.id) for v in doomed],
               {f"volume:{v.id}": v.version for v in doomed})
    for v in doomed:  # after the log says they are gone
        e.volumes.remove(v.id)
    return Pruned([v.id for v in doomed], sum(sizes.values()))


# --- queries ------------------------------------------------------------------------------


def find(e: EngineBase, name: str) -> Volume:
    """The volume of that name, or docker's `no such volume`."""
    v = e.log.volume(name)
    if v is None:
        raise NotFound(f"get {name}: no such volume")
    return v


def listed(e: EngineBase, filters: Filters | None = None) -> list[Volume]:
    """The volumes docker's filters select (dangling, name, driver, label), by name."""
    filters = dict(filters or {})
    dangling = check_list_filters(filters)
    out = []
    for v in e.log.volumes():
        if dangling is not None and (not v.users) != dangling:
            continue
        if "name" in filters and not matches(v.id, filters["name"]):
            continue
        if "driver" in filters and v.driver not in filters["driver"]:
            continue
        if not _labels_hold(v, filters):
            continue
        out.append(v)
    return sorted(out, key=lambda v: v.id)


def check_list_filters(filters: Filters) -> bool | None:
    """Refuse what docker's list refuses (an unknown key, a dangling that is no boolean);
    the dangling filter's value (None: not asked)."""
    _check_keys(filters, LIST_KEYS)
    return _bool_filter(filters, "dangling")


def shown_labels(v: Volume) -> dict[str, str]:
    """A volume's labels as docker shows them: an anonymous one carries docker's mark."""
    return {**v.labels, ANONYMOUS_LABEL: ""} if v.anonymous else dict(v.labels)


# --- judging a request --------------------------------------------------------------------


def check_name(name: str | None, op: str) -> None:
    """docker's rule for a local volume's name (it is a directory's name on the host)."""
    if name is None:
        return
    if len(name) == 1:
        raise BadInput(f"{op} {name}: volume name is too short, names should be at least two "
                       "alphanumeric characters")
    if not _NAME.fullmatch(name):
        raise BadInput(f'{op} {name}: "{name}" includes invalid characters for a local volume '
                       f'name, only "{NAME_CHARS}" are allowed. If you intended to pass a host '
                       "directory, use absolute path")


def check_driver(driver: str | None, name: str) -> None:
    """docker's answer when no plugin is that driver: lamina has no volume plugins."""
    if driver and driver != DRIVER:
        raise NotFound(plugin_not_found(name, driver))


def check_options(options: Mapping[str, str]) -> None:
    """The local driver's options are refused by name (lamina mounts none of them yet);
    another key is docker's `invalid option`."""
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise BadInput(f'invalid option: "{key}"')
    if options:
        key = next(iter(options))
        raise BadInput(f"volume option {key!r} (--opt {key}=...) is not supported by lamina "
                       "yet")


def _check_keys(filters: Filters, accepted: frozenset[str]) -> None:
    for key in filters:
        if key not in accepted:
            raise BadInput(f"invalid filter '{key}'")


def _bool_filter(filters: Filters, key: str) -> bool | None:
    """docker's GetBoolOrDefault: true/1 or false/0, not both, not anything else."""
    if key not in filters:
        return None
    values = set(filters[key])
    yes, no = bool(values & {"true", "1"}), bool(values & {"false", "0"})
    if yes == no or values - {"true", "1", "false", "0"}:
        raise BadInput(f"invalid filter '{key}={','.join(sorted(values))}'")
    return yes


def _all_filter(filters: Filters) -> bool:
    values = list(filters.get("all", ()))
    if len(values) > 1:
        raise BadInput(f"invalid filter 'all={','.join(values)}': only one value is expected")
    if not values:
        return False
    value = values[0].lower()
    if value not in ("1", "t", "true", "0", "f", "false"):
        raise BadInput(f"invalid filter 'all': strconv.ParseBool: parsing {values[0]!r}: "
                       "invalid syntax")
    return value in ("1", "t", "true")


def _labels_hold(v: Volume, filters: Filters) -> bool:
    return labels_hold(shown_labels(v), filters)
