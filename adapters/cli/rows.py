"""The rows list commands hand a `--format` template, with docker's field names, values and
column titles (the docker CLI's formatter contexts: cli/command/formatter/container.go,
image.go, network.go, volume.go): `ps`, `images`, `network ls`, `volume ls`.

Each field is a method (templates.Row), computed only when a template names it: `{{.Size}}`
measures the read-write layer, `{{.ID}}` costs nothing. Imported only for a template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from adapters.cli.templates import Row
from core.model import Container, Image, Network, Volume


def go_time(at: str | int | float) -> str:
    """Go's time.Time.String() of a creation time, in the local zone, as docker prints
    CreatedAt: `2024-01-02 15:04:05 +0000 UTC`."""
    if isinstance(at, (int, float)):
        when = datetime.fromtimestamp(at, UTC)
    else:
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            return at
    local = when.replace(microsecond=0).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %z ") + (local.tzname() or "")


def ago(at: str, now: datetime) -> str:
    """docker's `units.HumanDuration(now - t) + " ago"`."""
    from adapters.dockerapi.shapes import human_duration, parse_at

    when = parse_at(at)
    return human_duration((now - when).total_seconds()) + " ago" if when else ""


def ellipsis(text: str, width: int) -> str:
    """docker's formatter.Ellipsis: at most `width` characters, the last one `…`."""
    return text if len(text) <= width else text[:width - 1] + "…"


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class PsRow(Row):
    """One container as `docker ps --format` sees it."""

    FIELDS = ("ID", "Image", "Command", "CreatedAt", "RunningFor", "Ports", "State", "Status",
              "Size", "Names", "Labels", "Mounts", "LocalVolumes", "Networks")
    METHODS = ("Label",)
    TYPE = "*formatter.ContainerContext"
    HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
               "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
               "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS",
               "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS"}

    def __init__(self, c: Container, image: Image | None, *, trunc: bool, now: datetime,
                 root: str, networks: Callable[[], Any],
                 store: Callable[[], Any] | None = None,
                 layers: Callable[[], Mapping[str, int]] = dict) -> None:
        """`networks`: every network's resolver (netsettings.resolver); `store`: the layer
        store and `layers` every layer's size, for Size."""
        self.c, self.image, self.trunc, self.now, self.root = c, image, trunc, now, root
        self.networks, self.store, self.layers = networks, store, layers
        self._mounts: list[dict[str, Any]] | None = None

    def ID(self) -> str:
        return self.c.id[:12] if self.trunc else self.c.id

    def Image(self) -> str:
        from adapters.dockerapi.shapes import listed_image

        name = listed_image(self.c, self.image)
        return name[7:19] if self.trunc and name.startswith("sha256:") else name

    def Command(self) -> str:
        from adapters.cli.templates import go_quote
        from adapters.dockerapi.shapes import command_text

        command = command_text(self.c, self.image)
        return go_quote(ellipsis(command, 20) if self.trunc else command)

    def CreatedAt(self) -> str:
        return go_time(self.c.created)

    def RunningFor(self) -> str:
        return ago(self.c.created, self.now)

    def Ports(self) -> str:
        from adapters.storage.netsettings import ports_text, summary_ports

        return ports_text(summary_ports(self.c, self.image))

    def State(self) -> str:
        from adapters.dockerapi.shapes import state_word

        return state_word(self.c)

    def Status(self) -> str:
        from adapters.dockerapi.shapes import health_word, status_text

        return status_text(self.c, self.now, health_word(self.c, self.image))

    def Size(self) -> str:
        """The read-write layer's size, and with the image's layers `(virtual ...)`."""
        from core.sizes import human_size

        if self.store is None or not self.c.rw_layer:
            return "0B"
        rw = self.store().rw_size(self.c.rw_layer)
        layers = self.layers()
        virtual = rw + sum(layers.get(lid, 0) for lid in (self.image.layers
                                                           if self.image else ()))
        return f"{human_size(rw)} (virtual {human_size(virtual)})" if virtual else \
            human_size(rw)

    def Names(self) -> str:
        return self.c.name

    def Labels(self) -> str:
        return labels_text(self.c.config.get("labels") or {})

    def Label(self, name: str) -> str:
        from adapters.cli.templates import need_str

        return (self.c.config.get("labels") or {}).get(need_str(name), "")

    def mounts(self) -> list[dict[str, Any]]:
        if self._mounts is None:
            from adapters.storage.inspect import container_mounts

            self._mounts = container_mounts(self.c, self.root)
        return self._mounts

    def Mounts(self) -> str:
        names = [m.get("Name") or m.get("Source", "") for m in self.mounts()]
        return ",".join(ellipsis(n, 15) if self.trunc else n for n in names)

    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self.mounts() if m.get("Driver") == "local"))

    def Networks(self) -> str:
        from adapters.storage.netsettings import networks_of

        return ",".join(sorted(networks_of(self.c, self.networks())))


class ImageRow(Row):
    """One REPOSITORY:TAG of an image (or `<none>`) as `docker images --format` sees it."""

    FIELDS = ("ID", "Repository", "Tag", "Digest", "CreatedSince", "CreatedAt", "Size",
              "Containers", "VirtualSize", "SharedSize", "UniqueSize")
    TYPE = "*formatter.imageContext"
    HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
               "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
               "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE",
               "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}

    def __init__(self, image: Image, repo: str, tag: str, size: int, *, trunc: bool,
                 now: datetime) -> None:
        self.image, self.repo, self.tag, self.size = image, repo, tag, size
        self.trunc, self.now = trunc, now

    def created(self) -> str:
        return self.image.config.get("created") or self.image.created

    def ID(self) -> str:
        return self.image.id[:12] if self.trunc else f"sha256:{self.image.id}"

    def Repository(self) -> str:
        return self.repo

    def Tag(self) -> str:
        return self.tag

    def Digest(self) -> str:
        return "<none>"

    def CreatedSince(self) -> str:
        return ago(self.created(), self.now)

    def CreatedAt(self) -> str:
        return go_time(self.created())

    def Size(self) -> str:
        from core.sizes import human_size

        return human_size(self.size)

    def VirtualSize(self) -> str:
        return self.Size()

    def Containers(self) -> str:
        return "N/A"

    def SharedSize(self) -> str:
        return "N/A"

    def UniqueSize(self) -> str:
        return "N/A"


class NetworkRow(Row):
    """One network as `docker network ls --format` sees it."""

    FIELDS = ("ID", "Name", "Driver", "Scope", "IPv6", "Internal", "Labels", "CreatedAt")
    METHODS = ("Label",)
    TYPE = "*formatter.networkContext"
    HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
               "CreatedAt": "CREATED AT"}

    def __init__(self, n: Network, *, trunc: bool) -> None:
        self.n, self.trunc = n, trunc

    def ID(self) -> str:
        return self.n.id[:12] if self.trunc else self.n.id

    def Name(self) -> str:
        return self.n.name

    def Driver(self) -> str:
        return self.n.driver

    def Scope(self) -> str:
        return "local"

    def IPv6(self) -> str:
        return "false"

    def Internal(self) -> str:
        return "true" if self.n.internal else "false"

    def Labels(self) -> str:
        return labels_text(self.n.labels)

    def Label(self, name: str) -> str:
        from adapters.cli.templates import need_str

        return self.n.labels.get(need_str(name), "")

    def CreatedAt(self) -> str:
        return go_time(self.n.created)


class VolumeRow(Row):
    """One volume as `docker volume ls --format` sees it."""

    FIELDS = ("Name", "Driver", "Scope", "Mountpoint", "Labels", "Links", "Size", "Group",
              "Availability", "Status")
    METHODS = ("Label",)
    TYPE = "*formatter.volumeContext"
    HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS",
               "Size": "SIZE", "Group": "GROUP", "Availability": "AVAILABILITY",
               "Status": "STATUS"}

    def __init__(self, v: Volume, mountpoint: str) -> None:
        self.v, self.mountpoint = v, mountpoint

    def Name(self) -> str:
        return self.v.id

    def Driver(self) -> str:
        return self.v.driver

    def Scope(self) -> str:
        return "local"

    def Mountpoint(self) -> str:
        return self.mountpoint

    def labels(self) -> dict[str, str]:
        from adapters.storage.volumes import ANONYMOUS_LABEL

        labels = dict(self.v.labels)
        if self.v.anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        return labels

    def Labels(self) -> str:
        return labels_text(self.labels())

    def Label(self, name: str) -> str:
        from adapters.cli.templates import need_str

        return self.labels().get(need_str(name), "")

    def Links(self) -> str:
        return "N/A"

    def Size(self) -> str:
        return "N/A"

    def Group(self) -> str:
        return "N/A"

    def Availability(self) -> str:
        return "N/A"

    def Status(self) -> str:
        return "N/A"


class EventRow(Row):
    """One of docker's event messages (adapters/dockerapi/shapes.docker_events) as `docker
    events --format` sees it: Go's field names, `{{json .}}` its JSON names."""

    FIELDS = ("Type", "Action", "Actor", "Scope", "Time", "TimeNano", "Status", "ID", "From")
    TYPE = "events.Message"

    def __init__(self, message: Mapping[str, Any]) -> None:
        self.m = message

    def fields(self) -> dict[str, Any]:
        return dict(self.m)

    def Type(self) -> str:
        return str(self.m.get("Type", ""))

    def Action(self) -> str:
        return str(self.m.get("Action", ""))

    def Actor(self) -> dict[str, Any]:
        return dict(self.m.get("Actor") or {})

    def Scope(self) -> str:
        return str(self.m.get("scope", ""))

    def Time(self) -> int:
        return int(self.m.get("time", 0))

    def TimeNano(self) -> int:
        return int(self.m.get("timeNano", 0))

    def Status(self) -> str:
        return str(self.m.get("status", ""))

    def ID(self) -> str:
        return str(self.m.get("id", ""))

    def From(self) -> str:
        return str(self.m.get("from", ""))
