"""Names people type: image references (`repo[:tag]`), ids and unique id prefixes, as docker.

Resolution order for a container: full id, then name, then a unique id prefix. For an image:
full id (with or without `sha256:`), then tag, then a unique id prefix.
"""

from __future__ import annotations

import re

from core.errors import Ambiguous, BadInput

_REPO = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?"
REFERENCE = re.compile(rf"^{_HOST}{_REPO}(?:/{_REPO})*(?::[\w][\w.-]{{0,127}})?$")
NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
HEX = re.compile(r"^[0-9a-f]+$")


def normalize_tag(ref: str) -> str:
    """`busybox` -> `busybox:latest`; refuses what docker would refuse."""
    if not REFERENCE.match(ref):
        raise BadInput(f"invalid reference format: {ref!r}")
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadInput(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                       "are allowed")
    return name.lstrip("/")


def strip_digest_prefix(ref: str) -> str:
    return ref[7:] if ref.startswith("sha256:") else ref


def is_id_prefix(ref: str) -> bool:
    return bool(HEX.match(ref)) and 0 < len(ref) <= 64


def pick_unique(ref: str, matches: list[str], what: str) -> str | None:
    """The one id a prefix names; None for no match; Ambiguous for several."""
    if len(matches) > 1:
        raise Ambiguous(f"multiple {what}s found with provided prefix: {ref}")
    return matches[0] if matches else None


def short(ident: str) -> str:
    """docker's 12-character short id."""
    return strip_digest_prefix(ident)[:12]
