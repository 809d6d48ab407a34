"""nftables for bridge networks: masquerade, published ports and the forward filter.

Everything lives in one table of lamina's own, `inet lamina` (both families: a dual-stack
network's IPv6 subnet gets the same masquerade, isolation and published ports as its IPv4
one), so lamina never edits a rule it didn't write and removing the table removes all of
it. Talked
to through libnftables' JSON interface by ctypes (the library `nft` itself is a shell
around): a command is one JSON batch, applied by the kernel as one transaction (all of it
or none), and a listing comes back as JSON with each rule's handle; nothing parses `nft`'s
text. Why the library and not `nft -j -f -`: no process per call (an exec of nft costs
~3 ms, the library ~0.3 ms once loaded), which matters for `run --network bridge`'s budget.

The table (chains in brackets are per network, by bridge name, or per publication, by key):

    prerouting   nat, hook prerouting, dstnat  fib daddr type local jump ports
    output       nat, hook output, dstnat      fib daddr type local jump ports
    ports        jump [pub-KEY] ...            each: one dnat rule per published port
    postrouting  nat, hook postrouting, srcnat jump [nat-BR] ...
    guard        filter, hook prerouting, raw  iifname BR jump [guard-BR] ...
    forward      filter, hook forward          jump to-bridges; jump from-bridges
    to-bridges   oifname BR jump [in-BR] ...
    from-bridges iifname BR jump [out-BR] ...

    [in-BR]     established/related accept; from BR itself accept; ct status dnat accept
                (published ports; not on an internal network); everything else drop: a
                container is reached only by what it published, and networks are isolated
                from each other (docker's DOCKER-ISOLATION), as traffic between two bridges
                meets the receiving bridge's drop before the sender's accept
    [out-BR]    leaving for anything that is not a lamina bridge: accept, or drop on an
                internal network
    [nat-BR]    masquerade from the subnet to anything but BR (not internal); masquerade
                127.0.0.0/8 into BR (the host's loopback reaching a published port, below);
                masquerade dnat'ed traffic from the subnet back into BR (hairpin: a
                container reaching a published port of its own network through the host)
    [guard-BR]  drop anything from BR to 127.0.0.0/8 (route_localnet's hole, below); on an
                internal network, also to every address of the host but the gateway (the
                host's other addresses are outside too; the gateway serves its DNS)

Connections to a published port on 127.0.0.1 are served by the kernel, not a userland
proxy: the output chain's DNAT sends them into the bridge, the bridge has route_localnet=1
(bridge.py sets it on lamina's bridge only) so the kernel routes a 127.0.0.0/8 source there,
and nat-BR masquerades it to the gateway's address so the container can answer. Why not a
proxy: lamina has no daemon to keep one alive per port, and the kernel path costs nothing
per connection (docker does the same with --userland-proxy=false). route_localnet would
also let a container send to the host's 127.0.0.1 through the bridge; guard-BR drops that.

The base chains' policy is accept: lamina's table never drops what isn't its bridges'.
Its accepts don't override another table's drop (nftables runs every table's base chain),
so a host whose own firewall drops forwarded traffic must allow the bridges itself.

Removal is exact: a network's or a publication's rules are in chains of their own, and
removal deletes the jumps to them (by handle, read in the same call) and the chains, in one
transaction; when nothing is left, the table goes too. `owned` lists what the table holds,
for reconcile. Concurrent writers: each call is atomic, but a network's add reads the table
first, so the engine serializes the changes to one network (as it does to one container).
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.networks import ANY, PortBinding

FAMILY = "inet"
TABLE = "lamina"
LOOPBACK = "127.0.0.0/8"
PER_NETWORK = ("in-", "out-", "nat-", "guard-")
PUBLICATION = "pub-"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# libnftables' output flags (nftables/libnftables.h)
_OUTPUT_HANDLE = 1 << 3
_OUTPUT_JSON = 1 << 4

Json = dict[str, Any]


class NftablesError(Exception):
    """libnftables refused a batch (nothing of it was applied)."""


# --- libnftables ---------------------------------------------------------------------------

_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    """libnftables by its soname, loaded once; the argument types declared."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError as err:
            raise NftablesError(f"libnftables is missing (apt-get install nftables): {err}") \
                from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _lib = lib
    return _lib


def run(commands: Sequence[Json]) -> list[Json]:
    """One JSON batch through libnftables, as one transaction; the objects it printed (a
    listing's). A fresh context each call: its netlink socket then belongs to the calling
    thread's network namespace now, not to whichever it was made in."""
    lib = _library()
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NftablesError("nft_ctx_new failed")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON | _OUTPUT_HANDLE)
        rc = lib.nft_run_cmd_from_buffer(ctx, json.dumps({"nftables": list(commands)}).encode())
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    finally:
        lib.nft_ctx_free(ctx)
    if rc != 0:
        raise NftablesError(" ".join(err.split()) or f"nftables refused the batch ({rc})")
    return list(json.loads(out)["nftables"]) if out.strip() else []


def _table() -> Json:
    return {"family": FAMILY, "name": TABLE}


def _in_table(**fields: Any) -> Json:
    return {"family": FAMILY, "table": TABLE, **fields}


def listing() -> list[Json] | None:
    """The table's objects (chains, rules with handles), or None when there is no table."""
    try:
        return run([{"list": {"table": _table()}}])
    except NftablesError as err:
        if "No such file or directory" in str(err):
            return None
        raise


# --- rule expressions --------------------------------------------------------------------


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _field(protocol: str, name: str) -> Json:
    return {"payload": {"protocol": protocol, "field": name}}


def _prefix(subnet: str) -> Json:
    net = ipaddress.ip_network(subnet)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _family(address: str) -> str:
    """nftables' protocol word of an address or subnet: ip or ip6."""
    return "ip6" if ":" in address else "ip"


def _jump(chain: str) -> Json:
    return {"jump": {"target": chain}}


_LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
_ACCEPT: Json = {"accept": None}
_DROP: Json = {"drop": None}
_MASQUERADE: Json = {"masquerade": None}
_ESTABLISHED = _match({"ct": {"key": "state"}}, ["established", "related"], "in")
_DNATED = _match({"ct": {"key": "status"}}, "dnat", "in")


def _rule(chain: str, *expr: Json) -> Json:
    return {"add": {"rule": _in_table(chain=chain, expr=list(expr))}}


def _chain(name: str, **hook: Any) -> Json:
    return {"add": {"chain": _in_table(name=name, **hook)}}


def _skeleton() -> list[Json]:
    """The table, its base chains and dispatch chains, and the fixed jumps."""
    return [
        {"create": {"table": _table()}},
        _chain("prerouting", type="nat", hook="prerouting", prio=-100, policy="accept"),
        _chain("output", type="nat", hook="output", prio=-100, policy="accept"),
        _chain("postrouting", type="nat", hook="postrouting", prio=100, policy="accept"),
        _chain("guard", type="filter", hook="prerouting", prio=-300, policy="accept"),
        _chain("forward", type="filter", hook="forward", prio=0, policy="accept"),
        _chain("ports"), _chain("to-bridges"), _chain("from-bridges"),
        _rule("prerouting", _LOCAL, _jump("ports")),
        _rule("output", _LOCAL, _jump("ports")),
        _rule("forward", _jump("to-bridges")),
        _rule("forward", _jump("from-bridges")),
    ]


def ensure_table() -> list[Json]:
    """lamina's table with its fixed chains, made in one transaction unless it exists (a
    racing maker's `create` then fails and nothing of its batch is applied): never half
    made, never doubled. Returns the table's listing."""
    objects = listing()
    if objects is None:
        try:
            run(_skeleton())
        except NftablesError as err:
            if "File exists" not in str(err):
                raise
        objects = listing() or []
    return objects


# --- what the table holds ------------------------------------------------------------------


@dataclass(frozen=True)
class Owned:
    """What lamina's table holds: the bridges it has rules for, the publications' keys."""

    networks: frozenset[str]
    publications: frozenset[str]


def _chains(objects: Iterable[Json]) -> set[str]:
    return {o["chain"]["name"] for o in objects if "chain" in o}


def owned() -> Owned:
    objects = listing() or []
    chains = _chains(objects)
    return Owned(
        networks=frozenset(c[len("in-"):] for c in chains
                           if c.startswith("in-") and c != "in-"),
        publications=frozenset(c[len(PUBLICATION):] for c in chains
                               if c.startswith(PUBLICATION)))


def _jumps_to(objects: Iterable[Json], targets: set[str]) -> list[Json]:
    """Delete commands for every rule that jumps to one of `targets`, by handle."""
    out = []
    for o in objects:
        rule = o.get("rule")
        if rule and any(e.get("jump", {}).get("target") in targets for e in rule["expr"]):
            out.append({"delete": {"rule": _in_table(chain=rule["chain"],
                                                     handle=rule["handle"])}})
    return out


def _removal(objects: list[Json], chains: set[str]) -> tuple[list[Json], bool]:
    """The commands that delete `chains` (those that exist) and every jump to them, or the
    whole table when nothing of any network or publication would be left; and whether any
    of `chains` existed."""
    present = _chains(objects)
    gone = chains & present
    left = {c for c in present if c.startswith(PER_NETWORK + (PUBLICATION,))} - gone
    if not left:
        return [{"delete": {"table": _table()}}], bool(gone)
    cmds = _jumps_to(objects, gone)
    for c in sorted(gone):
        cmds.append({"flush": {"chain": _in_table(name=c)}})
        cmds.append({"delete": {"chain": _in_table(name=c)}})
    return cmds, bool(gone)


def _remove(chains: set[str]) -> bool:
    objects = listing()
    if objects is None:
        return False
    cmds, removed = _removal(objects, chains)
    if cmds:
        run(cmds)
    return removed


# --- networks ------------------------------------------------------------------------------


def _check_bridge(bridge: str) -> str:
    if not 0 < len(bridge) <= 15 or not _KEY.fullmatch(bridge):
        raise ValueError(f"not a bridge name lamina makes: {bridge!r}")
    return bridge


def add_network(bridge: str, subnet: str, gateway: str, *, internal: bool = False,
                masquerade: bool = True, subnet6: str = "", gateway6: str = "") -> None:
    """The rules of one network (idempotent: its chains are rewritten and its jumps made
    once, whatever was there), in one transaction. `masquerade` False: traffic leaving
    the subnet keeps its source (docker's enable_ip_masquerade=false); `subnet6`: a
    dual-stack network's IPv6 subnet, masqueraded and guarded as the IPv4 one."""
    _check_bridge(bridge)
    objects = ensure_table()
    is_br = _match(_meta("iifname"), bridge)
    to_br = _match(_meta("oifname"), bridge)
    not_to_br = _match(_meta("oifname"), bridge, "!=")
    subnets = [subnet, *([subnet6] if subnet6 else [])]
    chains = {p + bridge for p in PER_NETWORK}
    cmds: list[Json] = []
    for c in sorted(chains):
        cmds.append(_chain(c))
        cmds.append({"flush": {"chain": _in_table(name=c)}})
    cmds += _jumps_to(objects, chains)
    cmds.append(_rule(f"in-{bridge}", _ESTABLISHED, _ACCEPT))
    cmds.append(_rule(f"in-{bridge}", is_br, _ACCEPT))
    if not internal:
        cmds.append(_rule(f"in-{bridge}", _DNATED, _ACCEPT))
    cmds.append(_rule(f"in-{bridge}", _DROP))
    cmds.append(_rule(f"out-{bridge}", _DROP if internal else _ACCEPT))
    for net in subnets:
        from_subnet = _match(_field(_family(net), "saddr"), _prefix(net))
        if masquerade and not internal:
            cmds.append(_rule(f"nat-{bridge}", from_subnet, not_to_br, _MASQUERADE))
        cmds.append(_rule(f"nat-{bridge}", _DNATED, from_subnet, to_br, _MASQUERADE))
    cmds.append(_rule(f"nat-{bridge}", _match(_field("ip", "saddr"), _prefix(LOOPBACK)),
                      to_br, _MASQUERADE))
    cmds.append(_rule(f"guard-{bridge}", _match(_field("ip", "daddr"), _prefix(LOOPBACK)),
                      _DROP))
    if internal:
        for gw in (gateway, *([gateway6] if gateway6 else [])):
            cmds.append(_rule(f"guard-{bridge}",
                              _match(_field(_family(gw), "daddr"), gw, "!="), _LOCAL, _DROP))
    cmds.append(_rule("to-bridges", to_br, _jump(f"in-{bridge}")))
    cmds.append(_rule("from-bridges", is_br, _jump(f"out-{bridge}")))
    cmds.append(_rule("postrouting", _jump(f"nat-{bridge}")))
    cmds.append(_rule("guard", is_br, _jump(f"guard-{bridge}")))
    run(cmds)


def has_network(bridge: str) -> bool:
    """Whether the network's rules are there (its inbound chain, the one that isolates
    it): one chain listed, not the table (~0.2 ms; a start asks every time, since a
    firewall reload that flushed the ruleset must not leave a bridge without them)."""
    try:
        run([{"list": {"chain": _in_table(name=f"in-{_check_bridge(bridge)}")}}])
    except NftablesError as err:
        if "No such file or directory" in str(err):
            return False
        raise
    return True


def remove_network(bridge: str) -> bool:
    """Remove one network's rules (and the table, when it was the last thing in it); False
    when there were none."""
    return _remove({p + _check_bridge(bridge) for p in PER_NETWORK})


# --- published ports -----------------------------------------------------------------------


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"a publication's key is 1-64 of [A-Za-z0-9_.-]: {key!r}")
    return key


def publish(key: str, address: str, bindings: Sequence[PortBinding],
            address6: str = "") -> None:
    """DNAT `bindings` (host ip:port -> container port) to `address`, a container's address
    on a bridge, under `key` (the engine's: one per container and network): for traffic
    from outside (prerouting) and from the host itself (output, loopback included). With
    `address6` (a dual-stack network's), a binding on every address (ANY) is DNAT'ed for
    IPv6 too, to it (docker's [::]:PORT). Idempotent: the key's chain is rewritten."""
    _check_key(key)
    objects = ensure_table()
    chain = PUBLICATION + key
    cmds: list[Json] = [_chain(chain), {"flush": {"chain": _in_table(name=chain)}}]
    cmds += _jumps_to(objects, {chain})
    for b in bindings:
        targets = [("ip", address)] + ([("ip6", address6)] if address6 and b.host_ip == ANY
                                       else [])
        for family, to in targets:
            expr = [_match(_meta("nfproto"), "ipv4" if family == "ip" else "ipv6")]
            if b.host_ip != ANY:
                expr.append(_match(_field("ip", "daddr"), b.host_ip))
            expr.append(_match(_field(b.proto, "dport"), b.host_port))
            expr.append({"dnat": {"family": family, "addr": to, "port": b.container_port}})
            cmds.append(_rule(chain, *expr))
    cmds.append(_rule("ports", _jump(chain)))
    run(cmds)


def unpublish(key: str) -> bool:
    """Remove one publication's rules (and the table, when it was the last thing in it);
    False when there were none."""
    return _remove({PUBLICATION + _check_key(key)})


LEGACY = {"family": "ip", "name": TABLE}  # the IPv4-only table lamina wrote before IPv6


def legacy_table() -> bool:
    """Whether an earlier lamina's `ip lamina` table is there (reconcile removes it: its
    chains would DNAT for runs the log has ended)."""
    try:
        run([{"list": {"table": LEGACY}}])
    except NftablesError as err:
        if "No such file or directory" in str(err):
            return False
        raise
    return True


def remove_legacy() -> None:
    if legacy_table():
        run([{"delete": {"table": LEGACY}}])


def remove_all() -> bool:
    """Delete lamina's table and everything in it (reconcile, when the log holds no
    network); False when there was none."""
    if listing() is None:
        return False
    run([{"delete": {"table": _table()}}])
    return True
