"""docker's `filters`, as one pure rule: which containers `ps` lists (the CLI's `--filter K=V`
and the Docker API's `filters` parameter both come here).

docker's rules (moby daemon/list.go, daemon/internal/filters), kept exactly:
- keys AND together; the values of one key OR together, except `label`, whose values must
  all hold (`label=a --filter label=b` lists containers with both);
- `name`, `id` and `status` values match whole or as a regular expression searched in the
  field (`name=web` lists `web-1`); `id` takes a unique id prefix;
- `status=...` lists stopped containers too (as -a does); `exited=N` and `before`/`since` do
  not (`docker ps -a --filter exited=0`: without -a only running containers are judged);
- `before`/`since` take a container's full id or name (else "No such container");
- `ancestor` takes an image (tag, id or id prefix) and lists containers of that image or of
  any image built on it;
- a limit (-n) lists stopped containers too, newest first;
- an unknown key is refused ("invalid filter 'k'"), as is a value docker refuses.
`health` takes none, starting, healthy or unhealthy: docker's word for the container's health
(core/health.py's status_of: `none` without a healthcheck or before its first start).
`volume` matches a mount by volume name, bind source or destination; `network` a network the
container is a member of (name or id), or its mode (none, host, container:ID); `publish` its
-p container ports (and the exposed ones with -P), `expose` its exposed ports (--expose and
-p's); lamina has no swarm tasks: `is-task=false` matches everything, as docker answers for
such containers; `isolation` is a no-op on Linux in docker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from core.errors import BadInput, NotFound
from core.model import Container, Image
from core.references import normalize_tag, strip_digest_prefix

Filters = Mapping[str, Sequence[str]]

PS_KEYS = frozenset({"ancestor", "before", "exited", "id", "isolation", "label", "name",
                     "status", "health", "since", "volume", "network", "is-task", "publish",
                     "expose"})
STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTHS = ("none", "starting", "healthy", "unhealthy")
_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$")


def parse_flags(items: Iterable[str]) -> dict[str, list[str]]:
    """The CLI's repeated `--filter K=V` as docker's map (key lower-cased, both trimmed)."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"invalid argument {item!r} for --filter: bad format of filter "
                           "(expected name=value)")
        out.setdefault(key.strip().lower(), []).append(value.strip())
    return out


def passes(checks: Mapping[str, Callable[[str], bool]], filters: Filters) -> bool:
    """docker's generic rule: every key holds for at least one of its values; a key with no
    check is refused as docker refuses it."""
    for key, values in filters.items():
        check = checks.get(key)
        if check is None:
            raise BadInput(f"invalid filter '{key}'")
        if not any(check(v) for v in values):
            return False
    return True


def docker_state(c: Container) -> str:
    """lamina's four states in docker's words (created/exited/running/paused)."""
    if c.state == "stopped":
        if c.restarting:  # the restart policy's back-off (docker's "restarting")
            return "restarting"
        return "exited" if c.ran else "created"
    return c.state


def matches(field: str, values: Sequence[str]) -> bool:
    """docker's Args.Match: a value equal to the field, or a regular expression found in it
    (a value that is no valid expression only matches whole)."""
    for value in values:
        if value == field:
            return True
        try:
            if re.search(value, field):
                return True
        except re.error:
            continue
    return False


def select(containers: Sequence[Container], images: Mapping[str, Image], filters: Filters,
           everything: bool = False, limit: int = -1) -> list[Container]:
    """docker ps: the containers (given oldest first, as the log keeps them) that the
    filters, -a (`everything`) and -n (`limit`) let through, newest first as docker lists
    them. BadInput for a filter docker refuses; NotFound for an unknown before/since."""
    unknown = sorted(set(filters) - PS_KEYS)
    if unknown:
        raise BadInput(f"invalid filter '{unknown[0]}'")
    codes = _exit_codes(filters.get("exited", ()))
    _check_values(filters)
    everything = everything or "status" in filters
    newest = list(reversed(containers))
    before = _container_by(newest, filters.get("before", ()))
    since = _container_by(newest, filters.get("since", ()))
    ancestry = _ancestry(images, filters["ancestor"]) if "ancestor" in filters else None
    healths = _healths(images, filters.get("health", ()))
    out: list[Container] = []
    for c in newest:
        if before is not None:
            if c.id == before.id:
                before = None
            continue
        if since is not None and c.id == since.id:
            break
        live = c.state in ("running", "paused")
        if not live and not everything and limit <= 0:
            continue
        if 0 < limit == len(out):
            break
        if _holds(c, filters, codes, ancestry, newest) and healths(c):
            out.append(c)
    return out


def _holds(c: Container, filters: Filters, codes: set[int], ancestry: set[str] | None,
           all_containers: Sequence[Container]) -> bool:
    """Every key but before/since (which bound the walk) for one container."""
    if "name" in filters and not (matches(c.name, filters["name"])
                                  or matches("/" + c.name, filters["name"])):
        return False
    if "id" in filters and not _id_holds(c, filters["id"], all_containers):
        return False
    if "label" in filters and not _labels_hold(c, filters["label"]):
        return False
    if codes and not (c.state == "stopped" and c.ran and (c.exit_code or 0) in codes):
        return False
    if "status" in filters and not matches(docker_state(c), filters["status"]):
        return False
    if ancestry is not None and c.image not in ancestry:
        return False
    if "network" in filters and not _on_network(c, filters["network"]):
        return False
    if "volume" in filters and not _mounts_any(c, filters["volume"]):
        return False
    for key, ports in (("publish", _published), ("expose", _exposed)):
        if key in filters and not ports(c) & _port_set(filters[key]):
            return False
    return not ("is-task" in filters and _truth(filters["is-task"]))  # never a swarm task


def _on_network(c: Container, values: Sequence[str]) -> bool:
    """`network=`: a network it is a member of, by name or id (its endpoints' ids while it
    runs), or its mode when that is none, host or container:ID."""
    mode = c.config.get("network") or "none"
    keys = {*c.networks, *(ep.get("id", "") for ep in c.endpoints.values())}
    if not c.networks:
        keys.add(mode)
    return any(v in keys or (len(v) >= 12 and any(k.startswith(v) for k in keys if len(k) == 64))
               for v in values)


def _mounts_any(c: Container, values: Sequence[str]) -> bool:
    """`volume=`: a mount of it by volume name, bind source or destination (docker's)."""
    from core.mounts import recorded

    points = recorded(c.config) if c.config.get("mount_points") else []
    return any(v in (m.source, m.target) for m in points for v in values)


def _port_set(values: Sequence[str]) -> set[str]:
    """`80`, `80/udp`, `8000-8002/tcp` as docker's port keys (`80/tcp`)."""
    out = set()
    for value in values:
        port, _, proto = value.partition("/")
        start, _, end = port.partition("-")
        out |= {f"{n}/{proto or 'tcp'}" for n in range(int(start), int(end or start) + 1)}
    return out


def _published(c: Container) -> set[str]:
    """Its -p ports (HostConfig.PortBindings' keys), and with -P its exposed ones."""
    ports = {f"{b['container_port']}/{b['proto']}" for b in c.config.get("port_bindings") or ()}
    return ports | _exposed(c) if c.config.get("publish_all") else ports


def _exposed(c: Container) -> set[str]:
    """Its Config.ExposedPorts as the create recorded them (--expose, and -p's)."""
    return set(c.config.get("exposed_ports") or ()) | {
        f"{b['container_port']}/{b['proto']}" for b in c.config.get("port_bindings") or ()}


def _healths(images: Mapping[str, Image], values: Sequence[str]
             ) -> Callable[[Container], bool]:
    """`health=`: docker's health word of the container is one of the values."""
    if not values:
        return lambda c: True
    from core import health

    def holds(c: Container) -> bool:
        image = images.get(c.image)
        cfg = (image.config.get("config") if image else None) or {}
        return health.status_of(c.state, c.ran, c.health,
                                health.effective(cfg, c.config)) in values

    return holds


def _id_holds(c: Container, values: Sequence[str], all_containers: Sequence[Container]) -> bool:
    """A value names this container when it is a prefix of its id and of no other's."""
    for value in values:
        if value and c.id.startswith(value) and \
                sum(1 for o in all_containers if o.id.startswith(value)) == 1:
            return True
    return False


def _labels_hold(c: Container, values: Sequence[str]) -> bool:
    return labels_match(c.config.get("labels") or {}, values)


def labels_hold(labels: Mapping[str, str], filters: Filters) -> bool:
    """`label` and `label!` filters (volumes, networks): every `label` holds, and unless
    `label!` is absent, not every `label!` does."""
    if filters.get("label") and not labels_match(labels, filters["label"]):
        return False
    return not (filters.get("label!") and labels_match(labels, filters["label!"]))


def labels_match(labels: Mapping[str, str], values: Sequence[str]) -> bool:
    """docker's MatchKVList: every `K` must be a label, every `K=V` a label with that value."""
    for value in values:
        key, sep, wanted = value.partition("=")
        if key not in labels or (sep and labels[key] != wanted):
            return False
    return True


def _exit_codes(values: Sequence[str]) -> set[int]:
    codes = set()
    for value in values:
        try:
            codes.add(int(value))
        except ValueError:
            raise BadInput(f"invalid filter 'exited={value}': strconv.Atoi: parsing "
                           f'"{value}": invalid syntax') from None
    return codes


def _check_values(filters: Filters) -> None:
    """The values docker validates before it lists anything."""
    for value in filters.get("status", ()):
        if value not in STATES:
            raise BadInput(f"invalid filter 'status={value}': invalid value for state "
                           f"({value}): must be one of {', '.join(STATES)}")
    for value in filters.get("health", ()):
        if value not in HEALTHS:
            raise BadInput(f"invalid filter 'health={value}': invalid value for health "
                           f"({value}): must be one of {', '.join(HEALTHS)}")
    if "is-task" in filters:
        _truth(filters["is-task"])
    for key in ("publish", "expose"):
        for value in filters.get(key, ()):
            if ":" in value:
                raise BadInput(f"filter for '{key}' should not contain ':': {value}")
            if not _PORT.match(value):
                raise BadInput(f"error while looking up for {key} {value}: invalid port "
                               "range")


def _truth(values: Sequence[str]) -> bool:
    """docker's GetBoolOrDefault: 1/true or 0/false, not both."""
    yes = any(v in ("1", "true") for v in values)
    no = any(v in ("0", "false") for v in values)
    if yes == no:
        raise BadInput(f"invalid filter 'is-task={values}'")
    return yes


def _container_by(newest: Sequence[Container], values: Sequence[str]) -> Container | None:
    """before/since: the container with that full id, else that name (docker's last value
    wins when several are given)."""
    found = None
    for value in values:
        found = next((c for c in newest if c.id == value), None) or \
            next((c for c in newest if c.name == value.lstrip("/")), None)
        if found is None:
            raise NotFound(f"No such container: {value}")
    return found


def _ancestry(images: Mapping[str, Image], refs: Sequence[str]) -> set[str]:
    """The images named by `refs` and every image built on them (docker's ancestor set);
    a reference naming no image adds nothing."""
    wanted: set[str] = set()
    kids: dict[str, list[str]] = {}
    for image in images.values():
        if image.parent:
            kids.setdefault(image.parent, []).append(image.id)
    for ref in refs:
        found = image_named(images, ref)
        stack = [found] if found else []
        while stack:
            iid = stack.pop()
            if iid not in wanted:
                wanted.add(iid)
                stack += kids.get(iid, [])
    return wanted


def image_named(images: Mapping[str, Image], ref: str) -> str | None:
    """An image by full id, then tag, then unique id prefix (core.references' order)."""
    bare = strip_digest_prefix(ref)
    if bare in images:
        return bare
    for prefix in ("docker.io/library/", "docker.io/"):
        ref = ref.removeprefix(prefix)
    try:
        tag = normalize_tag(ref)
    except BadInput:
        tag = ""
    for image in images.values():
        if tag in image.tags:
            return image.id
    if re.fullmatch(r"[0-9a-f]+", bare):
        hits = [iid for iid in images if iid.startswith(bare)]
        if len(hits) == 1:
            return hits[0]
    return None
