"""The embedded DNS responder of a user-defined network: its containers' names, nothing else.

Where it listens: on the network's gateway address, port 53 (UDP), in the host's network
namespace; the engine writes `nameserver <gateway>` into the container's resolv.conf. Why
not docker's 127.0.0.11 inside each container: that takes a socket in every container's
namespace (made at each start and handed to a resolver process) plus DNAT rules in each
namespace, where one socket per network on an address every container of it already routes
to does the same, costs a start nothing, and is reachable from an internal network too (the
gateway is the one address such a network reaches; nat.py drops only what leaves it).

What it answers: A and AAAA queries (and ANY) for the names the engine supplies, a mapping of name
-> addresses (core.networks.dns_records: container names and aliases, lower case), kept
current by `update` or by a records file the engine rewrites (RecordsFile, re-read when it
changes, so a responder in another process follows containers coming and going; the
running service, adapters/network/resolver.py, reads the log's read model instead). A known
name asked for a type it has no address of gets an empty NOERROR (an NXDOMAIN there would
make a resolver asking A and AAAA at once give up on the name);
every unknown name gets NXDOMAIN, and a client outside the network REFUSED. No forwarding:
this machine has no route to any upstream resolver, so names outside the network are not
resolved (docker forwards them to the host's resolvers; a later slice can add that where
there is an upstream). No reverse (PTR) answers.

The wire format is RFC 1035's, in the few dozen lines it takes for one question per query:
no compression to parse in a query's name (a pointer there is a FORMERR), answers point at
the question's name, a reply over 512 bytes is truncated (TC) at whole records.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address

PORT = 53
TTL = 600  # docker's for container names
MAX_UDP = 512
_IP_FREEBIND = 15  # bind to the gateway's address even before the bridge has it

# header flags and codes (RFC 1035 4.1.1)
_QR = 0x8000
_AA = 0x0400
_TC = 0x0200
_RD = 0x0100
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5
TYPE_A, TYPE_AAAA, TYPE_ANY, CLASS_IN, CLASS_ANY = 1, 28, 255, 1, 255

Records = Mapping[str, Sequence[str]]
Source = Callable[[], Records]


class Malformed(ValueError):
    """A query this responder can't read (answered FORMERR when its header can be)."""


def parse_question(packet: bytes) -> tuple[str, int, int, int]:
    """The one question of a query: (name without the trailing dot, lower case; type;
    class; the offset just past the question)."""
    labels = []
    pos = 12
    while True:
        if pos >= len(packet):
            raise Malformed("name runs past the packet")
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        if length > 63:  # a compression pointer or a reserved label type
            raise Malformed("compressed or extended label in a question")
        label = packet[pos:pos + length]
        if len(label) != length:
            raise Malformed("label runs past the packet")
        labels.append(label)
        pos += length
    if pos + 4 > len(packet) or sum(len(label) + 1 for label in labels) > 255:
        raise Malformed("question too short or name too long")
    qtype, qclass = struct.unpack_from("!HH", packet, pos)
    name = b".".join(labels).decode("ascii", "replace").lower()
    return name, qtype, qclass, pos + 4


def answer(packet: bytes, lookup: Callable[[str], Sequence[str] | None], *,
           refuse: bool = False) -> bytes | None:
    """The reply to one query, or None for what gets none (a reply, a runt). `lookup` gives
    a name's addresses, or None for a name it doesn't know; `refuse`: REFUSED, whatever
    the name (a client not on the network)."""
    if len(packet) < 12:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", packet)
    if flags & _QR:
        return None
    base = _QR | _AA | (flags & _RD) | (flags & 0x7800)  # the query's opcode echoed

    def reply(rcode: int, question: bytes = b"", records: Sequence[bytes] = (),
              truncated: bool = False) -> bytes:
        header = struct.pack("!6H", qid, base | (_TC if truncated else 0) | rcode,
                             1 if question else 0, len(records), 0, 0)
        return header + question + b"".join(records)

    if (flags >> 11) & 0xF:  # not a standard query
        return reply(NOTIMP)
    if qdcount != 1:
        return reply(FORMERR)
    try:
        name, qtype, qclass, end = parse_question(packet)
    except Malformed:
        return reply(FORMERR)
    question = packet[12:end]
    if refuse or qclass not in (CLASS_IN, CLASS_ANY):
        return reply(REFUSED, question)
    addresses = lookup(name)
    if addresses is None:
        return reply(NXDOMAIN, question)
    records = []
    for a in map(ip_address, addresses):
        rtype = TYPE_A if a.version == 4 else TYPE_AAAA
        if qtype in (rtype, TYPE_ANY):
            records.append(struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, TTL,
                                       len(a.packed)) + a.packed)
    room = (MAX_UDP - 12 - len(question)) // 28
    return reply(NOERROR, question, records[:room], truncated=len(records) > room)


class RecordsFile:
    """Records kept in a JSON file ({name: [address, ...]}) that the engine rewrites by
    rename (`write_records`); re-read when the file changes, {} while there is none."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._records: Records = {}

    def __call__(self) -> Records:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen, self._records = None, {}
            return self._records
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            with open(self.path) as f:
                self._records = {str(k): tuple(v) for k, v in json.load(f).items()}
            self._seen = seen
        return self._records


def write_records(path: str, records: Records) -> None:
    """Replace the records file in one rename: a reader sees the old file or the new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({k: list(v) for k, v in records.items()}, f, sort_keys=True)
    os.replace(tmp, path)


def bind(address: str, port: int = PORT) -> socket.socket:
    """A UDP socket on `address`:`port`, non-blocking, bound with IP_FREEBIND: the
    gateway's address may not be on its bridge yet (or any more) when the socket is made."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    try:
        sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def respond(sock: socket.socket, lookup: Callable[[str], Sequence[str] | None],
            clients: IPv4Network | None,
            for_client: Callable[[str, str], Sequence[str] | None] | None = None) -> bool:
    """Answer one waiting query on `sock` (REFUSED to a peer outside `clients`); False when
    none was waiting. `for_client`, when given, answers instead of `lookup` with the
    asking peer's address too (names only one container knows: its links). A failure to
    read, answer or send loses that query only."""
    try:
        packet, peer = sock.recvfrom(4096)
    except BlockingIOError:
        return False
    except OSError:
        return True
    refuse = clients is not None and IPv4Address(peer[0]) not in clients
    try:
        asked = lookup if for_client is None else (lambda name: for_client(name, peer[0]))
        reply = answer(packet, asked, refuse=refuse)
    except Exception:  # a records file mid-write, say: no answer, not no server
        return True
    if reply is not None:
        with contextlib.suppress(OSError):
            sock.sendto(reply, peer)
    return True


class Responder:
    """A UDP DNS responder bound to `address`:`port` (port 0: any free one, for tests) in
    the calling thread's network namespace, answering from `records` (a mapping, or a
    callable giving the current one, such as a RecordsFile). With `clients` (the network's
    subnet), a query from anywhere else is REFUSED: a container of another network that
    routes to this gateway (it is an address of the host) learns nothing of this one."""

    def __init__(self, address: str, records: Records | Source, port: int = PORT, *,
                 clients: str | None = None) -> None:
        self._source: Source = records if callable(records) else _fixed(records)
        self.clients = IPv4Network(clients) if clients is not None else None
        self.sock = bind(address, port)
        self.address, self.port = self.sock.getsockname()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    def update(self, records: Records | Source) -> None:
        """Answer from `records` from the next query on."""
        self._source = records if callable(records) else _fixed(records)

    def lookup(self, name: str) -> Sequence[str] | None:
        addresses = self._source().get(name)
        return tuple(addresses) if addresses is not None else None

    def serve_forever(self) -> None:
        """Answer queries until `close`."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in sel.select()}
                if self._wake_r in ready:
                    return
                respond(self.sock, self.lookup, self.clients)

    def start(self) -> threading.Thread:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="lamina-dns",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join()
        self.sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> Responder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fixed(records: Records) -> Source:
    frozen = {k.rstrip(".").lower(): tuple(v) for k, v in records.items()}
    return lambda: frozen


def query(name: str, qid: int = 0x1234, qtype: int = TYPE_A) -> bytes:
    """A standard query for `name` (recursion desired), as a stub resolver sends it."""
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.split(".") if p)
    return struct.pack("!6H", qid, _RD, 1, 0, 0, 0) + labels + b"\0" + \
        struct.pack("!HH", qtype, CLASS_IN)


def parse_reply(packet: bytes) -> tuple[int, int, list[str]]:
    """(id, rcode, the A records' addresses) of a reply to `query`."""
    qid, flags, qdcount, ancount = struct.unpack_from("!4H", packet)
    pos = 12
    if qdcount:
        _, _, _, pos = parse_question(packet)
    addresses = []
    for _ in range(ancount):
        if packet[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while packet[pos]:
                pos += packet[pos] + 1
            pos += 1
        rtype, _, _, rdlength = struct.unpack_from("!HHIH", packet, pos)
        pos += 10
        if rtype == TYPE_A and rdlength == 4:
            addresses.append(str(IPv4Address(packet[pos:pos + 4])))
        pos += rdlength
    return qid, flags & 0xF, addresses
