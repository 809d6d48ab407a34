"""adapters/network/ without a kernel: dns.py's wire format, nat.py's batches.

The plumbing itself (links, rules, a responder's socket) is proved in test-made network
namespaces (tests/kernel/test_network_plumbing.py); these are the RFC 1035 bytes, and the
nftables commands each change sends, read back from a recorded `run`.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.network import nat
from adapters.network.dns import (
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    RecordsFile,
    answer,
    parse_reply,
    query,
    write_records,
)

RECORDS = {"web": ("172.18.0.2",), "www": ("172.18.0.2", "172.18.0.3")}


def lookup(name: str) -> tuple[str, ...] | None:
    return RECORDS.get(name)


def ask(packet: bytes) -> tuple[int, int, list[str], int]:
    reply = answer(packet, lookup)
    assert reply is not None
    qid, rcode, addresses = parse_reply(reply)
    flags = struct.unpack_from("!H", reply, 2)[0]
    return qid, rcode, addresses, flags


def test_a_known_name_answers_its_addresses_authoritatively() -> None:
    qid, rcode, addresses, flags = ask(query("WWW.", qid=77))
    assert (qid, rcode, addresses) == (77, NOERROR, ["172.18.0.2", "172.18.0.3"])
    assert flags & 0x8000 and flags & 0x0400 and flags & 0x0100  # QR, AA, RD echoed
    assert not flags & 0x0080  # no recursion available: nothing is forwarded


def test_the_question_is_echoed_and_answers_point_at_it() -> None:
    packet = query("Web")
    reply = answer(packet, lookup)
    assert reply is not None
    assert reply[12:len(packet)] == packet[12:]  # the question as asked, case kept
    assert reply[len(packet):len(packet) + 2] == b"\xc0\x0c"
    ttl = struct.unpack_from("!I", reply, len(packet) + 6)[0]
    assert ttl == 600


def test_unknown_names_are_nxdomain_and_other_types_of_known_ones_empty() -> None:
    assert ask(query("nope"))[1:3] == (NXDOMAIN, [])
    assert ask(query("example.com"))[1:3] == (NXDOMAIN, [])  # no upstream forwarding
    assert ask(query("web", qtype=28))[1:3] == (NOERROR, [])  # AAAA: NODATA, not NXDOMAIN
    assert ask(query("web", qtype=255))[1:3] == (NOERROR, ["172.18.0.2"])  # ANY


def test_what_it_does_not_serve() -> None:
    replies_to_replies = bytearray(query("web"))
    replies_to_replies[2] |= 0x80
    assert answer(bytes(replies_to_replies), lookup) is None
    assert answer(b"\x00\x01", lookup) is None
    inverse = bytearray(query("web"))
    inverse[2] |= 0x08  # opcode 1 (IQUERY)
    assert ask(bytes(inverse))[1] == NOTIMP
    two = bytearray(query("web"))
    two[5] = 2
    assert ask(bytes(two))[1] == FORMERR
    compressed = query("web")[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert ask(compressed)[1] == FORMERR
    chaos = query("web")[:-2] + b"\x00\x03"
    assert ask(chaos)[1] == REFUSED
    refused = answer(query("web"), lookup, refuse=True)  # a client of another network
    assert refused is not None and parse_reply(refused)[1:] == (REFUSED, [])


def test_a_long_answer_is_truncated_at_whole_records() -> None:
    many = tuple(f"10.0.{i // 256}.{i % 256}" for i in range(100))
    reply = answer(query("big"), lambda name: many)
    assert reply is not None and len(reply) <= 512
    flags, _, ancount = struct.unpack_from("!3H", reply, 2)
    assert flags & 0x0200 and 0 < ancount < 100
    assert len(reply) == 12 + len(query("big")) - 12 + 16 * ancount


@given(st.binary(max_size=80))
def test_any_bytes_get_a_reply_or_none_never_an_exception(packet: bytes) -> None:
    reply = answer(packet, lookup)
    assert reply is None or len(reply) >= 12


def test_a_records_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = str(tmp_path / "records.json")
    source = RecordsFile(path)
    assert source() == {}
    write_records(path, {"web": ["172.18.0.2"]})
    assert source() == {"web": ("172.18.0.2",)}
    write_records(path, {"db": ["172.18.0.9"], "web": ["172.18.0.2"]})
    assert source()["db"] == ("172.18.0.9",)


# --- nat.py's batches ------------------------------------------------------------------------


def _jump_rule(chain: str, target: str, handle: int) -> dict[str, Any]:
    return {"rule": {"family": nat.FAMILY, "table": "lamina", "chain": chain, "handle": handle,
                     "expr": [{"jump": {"target": target}}]}}


def _chain(name: str) -> dict[str, Any]:
    return {"chain": {"family": nat.FAMILY, "table": "lamina", "name": name}}


LISTING = [
    {"table": {"family": nat.FAMILY, "name": "lamina"}},
    *[_chain(c) for c in ("prerouting", "ports", "to-bridges", "in-lm-a", "out-lm-a", "nat-lm-a",
                          "guard-lm-a", "in-lm-b", "out-lm-b", "nat-lm-b", "guard-lm-b",
                          "pub-c1")],
    _jump_rule("to-bridges", "in-lm-a", 10), _jump_rule("to-bridges", "in-lm-b", 11),
    _jump_rule("postrouting", "nat-lm-a", 12), _jump_rule("ports", "pub-c1", 13),
    _jump_rule("ports", "pub-c1", 14),  # a duplicate (a racing add): removed as well
]

Batches = list[list[dict[str, Any]]]


def recording(monkeypatch: pytest.MonkeyPatch, listing: list[dict[str, Any]]) -> Batches:
    sent: Batches = []

    def run(cmds: Any) -> list[dict[str, Any]]:
        sent.append(list(cmds))
        return []

    monkeypatch.setattr(nat, "listing", lambda: listing)
    monkeypatch.setattr(nat, "run", run)
    return sent


def deleted(cmds: list[dict[str, Any]], kind: str, key: str) -> list[Any]:
    return sorted(c["delete"][kind][key] for c in cmds if kind in c.get("delete", {}))


def test_removing_a_network_deletes_its_jumps_by_handle_and_its_chains(
        monkeypatch: pytest.MonkeyPatch) -> None:
    batches = recording(monkeypatch, LISTING)
    assert nat.remove_network("lm-a")
    (cmds,) = batches
    assert deleted(cmds, "rule", "handle") == [10, 12]
    assert deleted(cmds, "chain", "name") == ["guard-lm-a", "in-lm-a", "nat-lm-a", "out-lm-a"]
    assert deleted(cmds, "table", "name") == []


def test_a_publication_goes_with_every_jump_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = recording(monkeypatch, LISTING)
    assert nat.unpublish("c1")
    assert deleted(batches[0], "rule", "handle") == [13, 14]
    assert not nat.unpublish("c9")


def test_the_last_thing_removed_takes_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    rest = [c for c in LISTING if "lm-b" not in str(c) and "pub-c1" not in str(c)]
    batches = recording(monkeypatch, rest)
    assert nat.remove_network("lm-a")
    assert batches == [[{"delete": {"table": {"family": nat.FAMILY, "name": "lamina"}}}]]


def test_names_the_table_can_hold_are_checked() -> None:
    with pytest.raises(ValueError):
        nat.publish("bad key", "172.18.0.2", [])
    with pytest.raises(ValueError):
        nat.remove_network("x" * 16)
