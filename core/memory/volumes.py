"""The VolumeStore port in memory: a volume is a dict of files {relative path: text}."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import BadInput

ROOT = "/memory/volumes"


@dataclass
class MemoryVolumeStore:
    """Volumes' data as dicts of files. `path` is a fake host path of the Linux store's
    form, `/memory/volumes/<name>/_data`: nothing is on disk there. `host` holds the host
    paths a bind mount may name (a test puts them there; `-v` makes them)."""

    data: dict[str, dict[str, str]] = field(default_factory=dict)
    host: set[str] = field(default_factory=set)

    def create(self, name: str) -> str:
        self.data.setdefault(name, {})
        return self.path(name)

    def path(self, name: str) -> str:
        return f"{ROOT}/{name}/_data"

    def exists(self, name: str) -> bool:
        return name in self.data

    def remove(self, name: str) -> None:
        self.data.pop(name, None)

    def size(self, name: str) -> int:
        return sum(len(text.encode()) for text in self.data.get(name, {}).values())

    def names(self) -> list[str]:
        return sorted(self.data)

    def empty(self, name: str) -> bool:
        return not self.data.get(name)

    def bind_source(self, path: str, *, create: bool) -> None:
        if path in self.host:
            return
        if not create:
            raise BadInput(f'invalid mount config for type "bind": bind source path does not '
                           f"exist: {path}")
        self.host.add(path)

    # --- beyond the port: what a container (the memory runtime, a test) writes -----------

    def write(self, name: str, files: dict[str, str]) -> None:
        """Files written into an existing volume (KeyError if it is not there)."""
        self.data[name].update(files)

    def files(self, name: str) -> dict[str, str]:
        return dict(self.data.get(name, {}))
