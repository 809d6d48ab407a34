"""The root's own settings, as its log records them (RootConfigured, stream `root:root`).

Today one setting: user-namespace remapping (`--userns-remap`, docker's name). Off, a
container's root is the host's root. On, every container of the root gets a user namespace
whose root is an unprivileged host uid (a subordinate range from /etc/subuid): an escape
lands as nobody. The choice is made per root, before its first container (a root with
containers refuses a change: their processes and layers were made under the old one), and
the resolved maps are in the event, so every command reads the same maps from the log.

Pure: the adapters resolve a setting to maps (adapters/remap.py) and apply them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import BadInput

ROOT_STREAM = "root:root"
DEFAULT_USER = "laminaremap"  # what `default` means, as docker's `dockremap`
OFF = ("", "off", "false")
_NAME = re.compile(r"^[a-z_][a-z0-9_.-]*\$?$", re.IGNORECASE)  # shadow's useradd names

IdRows = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class RootConfig:
    """A root's settings; the default instance is a root that never configured anything."""

    userns_remap: str = ""  # "" (off), "default" or USER[:GROUP], as chosen
    user: str = ""
    uid_map: IdRows = ()  # (inside, outside, count) rows
    gid_map: IdRows = ()
    storage: str = ""
    source: str = ""

    @property
    def remapped(self) -> bool:
        return bool(self.userns_remap)

    def data(self) -> dict[str, Any]:
        """The RootConfigured fields."""
        return {"userns_remap": self.userns_remap, "user": self.user,
                "uid_map": [list(r) for r in self.uid_map],
                "gid_map": [list(r) for r in self.gid_map],
                "storage": self.storage, "source": self.source}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RootConfig:
        return cls(userns_remap=str(data.get("userns_remap") or ""),
                   user=str(data.get("user") or ""),
                   uid_map=_rows(data.get("uid_map")), gid_map=_rows(data.get("gid_map")),
                   storage=str(data.get("storage") or ""), source=str(data.get("source") or ""))

    def describe(self) -> str:
        """One line for people: `off`, or the setting and the host ids of container root."""
        if not self.remapped:
            return "userns-remap: off"
        uid = self.uid_map[0][1] if self.uid_map else "?"
        gid = self.gid_map[0][1] if self.gid_map else "?"
        count = sum(r[2] for r in self.uid_map)
        return (f"userns-remap: {self.userns_remap} (user {self.user}: container root is "
                f"host {uid}:{gid}, {count} ids, {self.storage} layers)")


def _rows(value: Any) -> IdRows:
    return tuple((int(a), int(b), int(c)) for a, b, c in value or ())


def read(log: Any) -> tuple[RootConfig, int]:
    """The root's settings (its last RootConfigured, or off for a root that has none, as
    every root made before the setting existed) and its stream's version, for the expected
    version of an append judged by them. One indexed read of a stream of a few events."""
    last, version = None, 0
    for rec in log.read(stream=ROOT_STREAM):
        version = rec.version
        if rec.type == "RootConfigured":
            last = rec
    return (RootConfig.from_data(last.data) if last is not None else RootConfig()), version


def current(log: Any) -> RootConfig:
    return read(log)[0]


def setting(text: str) -> str:
    """`--userns-remap`'s value as recorded: "" for off, "default", or USER[:GROUP] with
    names shadow's tools would accept (numeric ids are refused: the audit names users)."""
    value = (text or "").strip()
    if value.lower() in OFF:
        return ""
    if value == "default":
        return value
    user, sep, group = value.partition(":")
    for name in (user, group) if sep else (user,):
        if not _NAME.match(name) or name.isdigit():
            raise BadInput(f"invalid --userns-remap {text!r}: use default, off, or a user "
                           "name with subordinate ids (USER or USER:GROUP)")
    return value


# Run options a remapped container cannot have: they share namespaces the host's user
# namespace owns, over which the container's root has no privilege (it could mount neither
# their proc nor their sysfs, nor reach the host's devices), as docker refuses them with
# userns-remap. (Docker's per-container way out, --userns host, is not offered: the setting
# is the root's, core/compat.py.)
INCOMPATIBLE = (("privileged", "--privileged"), ("pid", "--pid host"),
                ("network", "--network host"))


def check_container(options: Mapping[str, Any], config: RootConfig) -> None:
    """Refuse, in one line, run options a container of this root cannot have."""
    if not config.remapped:
        return
    for key, flag in INCOMPATIBLE:
        value = options.get(key)
        if value is True or value == "host":
            raise BadInput(f"{flag} is incompatible with this root's --userns-remap "
                           f"({config.userns_remap}): its containers' root is not the "
                           "host's root")
