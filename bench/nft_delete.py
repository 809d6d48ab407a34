"""What taking a published port's DNAT away costs the kernel: a per-container chain (what
adapters/network/nat.py does) against an element of one DNAT map (the alternative issue 18
left open), both through libnftables, as nat.py calls it.

    python bench/nft_delete.py [--rounds N]

Each round adds, then deletes, one chain with a dnat rule, and one element of a map
`inet_proto . inet_service : ipv4_addr . inet_service` (the map made once, by libnftables'
text interface: its JSON parser in nftables 1.0.6 can't declare concatenated map data).
Everything is made in a network namespace of its own (the script re-executes itself under
`unshare --net`), never on the host.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

T = {"family": "inet", "table": "bench"}
RULE = [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                   "right": 8080}},
        {"dnat": {"family": "ip", "addr": "172.17.0.2", "port": 80}}]
ELEM = [[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "c0ffee"}},
         {"concat": ["172.17.0.2", 80]}]]


def measure(rounds: int) -> dict[str, list[float]]:
    from adapters.network import nat

    run = nat.run
    run([{"add": {"table": {"family": "inet", "name": "bench"}}}])
    lib = nat._library()
    ctx = lib.nft_ctx_new(0)
    text = b"add map inet bench dnat4 { type inet_proto . inet_service : " \
           b"ipv4_addr . inet_service; }"
    if lib.nft_run_cmd_from_buffer(ctx, text) != 0:
        raise SystemExit("nftables refused the map")
    lib.nft_ctx_free(ctx)
    steps = {
        "add chain + rule": [{"add": {"chain": {**T, "name": "pub-x"}}},
                             {"add": {"rule": {**T, "chain": "pub-x", "expr": RULE}}}],
        "delete chain": [{"flush": {"chain": {**T, "name": "pub-x"}}},
                         {"delete": {"chain": {**T, "name": "pub-x"}}}],
        "add map element": [{"add": {"element": {**T, "name": "dnat4", "elem": ELEM}}}],
        "delete map element": [{"delete": {"element": {
            **T, "name": "dnat4", "elem": [{"concat": ["tcp", 8080]}]}}}],
    }
    out: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, batch in steps.items():
            t0 = time.perf_counter()
            run(batch)
            out[name].append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.inner:
        if os.geteuid() != 0:
            raise SystemExit("needs root (a network namespace of its own)")
        return subprocess.call(["unshare", "--net", sys.executable, __file__, "--inner",
                                "--rounds", str(args.rounds)])
    print(f"{'ms':<20} {'median':>8} {'p90':>8}")
    for name, samples in measure(args.rounds).items():
        s = sorted(samples)
        print(f"{name:<20} {statistics.median(s):8.2f} {s[int(len(s) * 0.9)]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
