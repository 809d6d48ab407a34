"""`--cgroup-parent` (HostConfig.CgroupParent): where a container's cgroups sit, judged.

docker's cgroupfs driver puts a container at `<hierarchy root>/<parent>/<id>` in every
hierarchy, `/docker` when no parent is given; lamina's default is `lamina`. docker's runtime
takes a relative parent relative to its own cgroup (where containerd's shim runs); lamina
has no daemon whose cgroup is fixed (the CLI runs containers from any shell), so a relative
parent is taken from the hierarchy's root, as an absolute one: `a/b` and `/a/b` are the
same place, the one a docker daemon started at the root of its hierarchies gives.

Refused, one line each: `..` (it could climb out of the hierarchy), a parent inside
lamina's own `lamina/` (another container's cgroup, removed with it), and names the kernel
can't hold. Symlinks and other paths resolving outside the hierarchy are the adapter's to
check (adapters/kernel/cgroups.py): only the filesystem knows them. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import BadInput

DEFAULT = "lamina"  # lamina's own parent (docker's is /docker)
MAX_LENGTH = 4096


def relative(text: str | None) -> str:
    """The parent as a path relative to each hierarchy's root ("" for the root itself);
    DEFAULT when none is given. BadInput (one line) for a parent lamina refuses."""
    if not text:
        return DEFAULT
    if not isinstance(text, str) or "\0" in text or "\n" in text or len(text) > MAX_LENGTH:
        raise BadInput(f"invalid cgroup parent {text!r}: not a path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadInput(f"invalid cgroup parent {text!r}: '..' would leave the cgroup "
                       "hierarchy")
    if len(parts) > 1 and parts[0] == DEFAULT:
        raise BadInput(f"invalid cgroup parent {text!r}: {DEFAULT}/ holds lamina's own "
                       "containers' cgroups")
    if any(len(p.encode()) > 255 for p in parts):
        raise BadInput(f"invalid cgroup parent {text!r}: a name longer than 255 bytes")
    return "/".join(parts)


def of(config: Mapping[str, Any]) -> str:
    """A container's parent, relative to each hierarchy's root, from its recorded options
    (recorded as the client gave it, as docker's inspect shows it)."""
    return relative(config.get("cgroup_parent"))


def judged(options: Mapping[str, Any]) -> dict[str, Any]:
    """The create options with the parent checked (kept as given; dropped when empty)."""
    out = dict(options)
    if out.get("cgroup_parent"):
        relative(out["cgroup_parent"])
    else:
        out.pop("cgroup_parent", None)
    return out
