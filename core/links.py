"""docker's legacy links (`--link NAME:ALIAS` on the default bridge), judged purely.

A container linked to another on the default bridge gets, at each start, a line of its
/etc/hosts naming the other's address (ALIAS, the other's hostname and name) and docker's
link variables (ALIAS_PORT_80_TCP=tcp://IP:80 and the rest, ALIAS_NAME, ALIAS_ENV_...),
as moby's daemon/links makes them. The other must run, on the default bridge (docker's
`Cannot link to a non running container`); what the start decided is recorded with its
lease (core/engine/attaching.py), so the log says who was linked to what, at which address.

On a user-defined network a link is a name instead: its embedded DNS answers ALIAS with
NAME's addresses, to the linking container alone (core/networks.py link_records).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Linked:
    """What a link sees of the container it names: `name` and `hostname` its own,
    `address` on the default bridge, `ports` its exposed ports (`80/tcp`), `env` its
    configured variables (K=V)."""

    name: str
    hostname: str
    address: str
    ports: Sequence[str]
    env: Sequence[str]


def hosts_line(alias: str, other: Linked) -> tuple[str, str]:
    """(address, names) of the /etc/hosts line: the alias, the other's hostname, and its
    name unless the alias is it (moby's buildSandboxOptions)."""
    names = [alias, other.hostname]
    if alias != other.name:
        names.append(other.name)
    return other.address, " ".join(names)


def _sorted_ports(ports: Sequence[str]) -> list[tuple[int, str]]:
    parsed = [(int(p.partition("/")[0]), (p.partition("/")[2] or "tcp").lower())
              for p in ports]
    return sorted(parsed, key=lambda p: (p[0], p[1] != "tcp", p[1]))


def link_env(parent: str, alias: str, other: Linked) -> list[str]:
    """docker's variables of one link (moby's daemon/links Link.ToEnv), in its order."""
    prefix = alias.upper().replace("-", "_")
    ip = other.address
    ports = _sorted_ports(other.ports)
    env: list[str] = []
    if ports:
        number, proto = ports[0]
        env.append(f"{prefix}_PORT={proto}://{ip}:{number}")
    i = 0
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1][0] == ports[j][0] + 1:
            j += 1
        if j > i:
            (first, proto), (last, proto_last) = ports[i], ports[j]
            key = f"{prefix}_PORT_{first}_{proto.upper()}"
            env += [f"{key}_START={proto}://{ip}:{first}", f"{key}_ADDR={ip}",
                    f"{key}_PROTO={proto}", f"{key}_PORT_START={first}",
                    f"{prefix}_PORT_{first}_{proto_last.upper()}_END="
                    f"{proto_last}://{ip}:{last}",
                    f"{prefix}_PORT_{first}_{proto_last.upper()}_PORT_END={last}"]
            i = j + 1
        else:
            i += 1
    for number, proto in ports:
        key = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [f"{key}={proto}://{ip}:{number}", f"{key}_ADDR={ip}",
                f"{key}_PORT={number}", f"{key}_PROTO={proto}"]
    env.append(f"{prefix}_NAME=/{parent}/{alias}")
    for item in other.env:
        key, sep, value = item.partition("=")
        if sep and key not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{key}={value}")
    return env
