"""Image references as docker reads them.

`busybox` is `docker.io/library/busybox:latest`; `user/app` is `docker.io/user/app:latest`;
a first component with a `.` or a `:`, or `localhost`, names a registry
(`localhost:5000/x`, `127.0.0.1:5000/x`, `ghcr.io/o/x`); `NAME@sha256:...` pins a manifest.
The name and tag are checked with core/references.py's rules, as every other command does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import BadInput
from core.references import normalize_tag

DOCKER_HUB = "docker.io"
_HUB_API = "registry-1.docker.io"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference: registry host, repository path, and a tag or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Where the API answers (Docker Hub's name differs from its API's host)."""
        return _HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """The fully qualified repository: `docker.io/library/busybox`."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The name as docker prints it and lamina tags with it: `busybox`, `host:5000/x`."""
        if self.registry == DOCKER_HUB:
            repo = self.repository
            return repo[len("library/"):] if repo.startswith("library/") else repo
        return self.name

    @property
    def local_tag(self) -> str | None:
        """The tag a pull gives the image (none for a pull by digest)."""
        return f"{self.familiar_name}:{self.tag}" if self.tag else None

    @property
    def manifest_ref(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"


def split_domain(name: str) -> tuple[str, str]:
    """(registry, repository) of a name without tag or digest, by docker's rule."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository


def parse(text: str) -> Reference:
    """A reference as typed (NAME[:TAG] or NAME@DIGEST); refuses what docker refuses."""
    name, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        raise BadInput(f"invalid reference format: {text!r} (only sha256 digests)")
    tagged = normalize_tag(name)  # checks the name (and tag), adds :latest
    last = name.rsplit("/", 1)[-1]
    base, _, tag = tagged.rpartition(":")
    registry, repository = split_domain(base)
    if at:
        return Reference(registry, repository, tag if ":" in last else None, digest)
    return Reference(registry, repository, tag)


def registry_host(text: str) -> str:
    """What login/logout name: a registry host (`localhost:5000`), docker.io by default."""
    text = text.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    host = text.split("/", 1)[0] if text else DOCKER_HUB
    if host in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DOCKER_HUB
    if not re.match(r"^[a-zA-Z0-9.-]+(:[0-9]+)?$|^\[[0-9a-fA-F:]+\](:[0-9]+)?$", host):
        raise BadInput(f"invalid registry address {text!r}")
    return host


def is_local(host: str) -> bool:
    """A registry on this machine, which docker also talks to over plain HTTP."""
    bare = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return bare in ("localhost", "[::1]", "::1") or bare.startswith("127.")
