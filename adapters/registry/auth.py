"""Credentials and challenges.

Credentials live in docker's `config.json` format, `{"auths": {"HOST": {"auth":
base64("user:password")}}}`, mode 0600: `$DOCKER_CONFIG/config.json` when DOCKER_CONFIG is
set (so lamina and docker can share logins), else `<root>/config.json`. Other keys in the
file (credHelpers, proxies, ...) are kept as they are. The file is replaced by rename, so a
reader never sees half of it.

A registry answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
(a token server hands out short-lived tokens, anonymously or for credentials sent with basic
auth) or `Basic realm=...` (credentials on every request).
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from dataclasses import dataclass

from core.errors import BadInput

_PARAM = re.compile(r'([a-zA-Z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def config_path(root: str) -> str:
    """docker's config.json: under $DOCKER_CONFIG if set, else under lamina's root."""
    base = os.environ.get("DOCKER_CONFIG") or root
    return os.path.join(base, "config.json")


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a JSON object")
    return data


def _write(path: str, data: dict) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config.json.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _keys(host: str) -> list[str]:
    """The keys docker may have stored a host under (Docker Hub has a historic URL)."""
    if host == "docker.io":
        return ["https://index.docker.io/v1/", "docker.io", "index.docker.io",
                "registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}"]


def load(path: str, host: str) -> Credentials | None:
    """The stored credentials for a registry host, if any."""
    auths = _read(path).get("auths") or {}
    for key in _keys(host):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise BadInput(f"{path}: the credentials for {host} are not valid") from None
            return Credentials(user, password)
    return None


def store(path: str, host: str, creds: Credentials) -> None:
    data = _read(path)
    auths = data.setdefault("auths", {})
    key = _keys(host)[0]
    auths[key] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode())
                  .decode()}
    _write(path, data)


def erase(path: str, host: str) -> bool:
    """Forget a host's credentials; False if there were none."""
    data = _read(path)
    auths = data.get("auths") or {}
    found = [k for k in _keys(host) if k in auths]
    for key in found:
        del auths[key]
    if found:
        _write(path, data)
    return bool(found)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="https://auth",service="reg",scope="repository:x:pull"`."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)
