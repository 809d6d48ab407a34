"""The log's codec (events/codec.py): today's canonical JSON, read back exactly as json.loads
reads it, by the bulk decoder replay uses; a log written the way lamina wrote it before the
codec existed replays, lists and verifies the same."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.eventstore import replay
from adapters.eventstore.audit import verify
from adapters.eventstore.query import select
from adapters.eventstore.sqlite_log import MANY_ROWS, aggregates, utcnow
from core.model import KINDS, from_doc, to_doc
from events import types as ev
from events.codec import bulk_decoder, decode, encode, typed_decoder
from events.hashchain import row_hash
from tests.sessions import engine as _engine
from tests.sessions import session as _session

CID = "c" * 64

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats() | st.text())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


def _same(a: object, b: object) -> bool:
    """Equal, NaN included, and of the same types all the way down (1 is not 1.0)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))  # type: ignore
    return a == b


@given(values)
def test_the_stored_text_is_todays_canonical_json(value: object) -> None:
    assert encode(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False)


@given(values)
def test_the_bulk_decoder_reads_what_json_loads_reads(value: object) -> None:
    text = encode(value)
    assert _same(bulk_decoder()(text), json.loads(text))
    assert _same(bulk_decoder()(text.encode()), decode(text))


ints = st.integers(min_value=-(2**70), max_value=2**70)


@given(st.text(), ints, st.text(), ints, st.text(), ints, st.text(), st.text(), st.text())
def test_the_row_hash_covers_the_rows_canonical_json(prev: str, seq: int, stream: str,
                                                     version: int, type_: str, schema: int,
                                                     data: str, meta: str, at: str) -> None:
    """row_hash writes the body out piece by piece: the very text canonical() of the row's
    dict gives (quotes, control characters, non-ASCII, lone surrogates refused alike)."""
    body = json.dumps({"seq": seq, "stream": stream, "version": version, "type": type_,
                       "schema": schema, "data": data, "meta": meta, "at": at},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        want = hashlib.sha256((prev + body).encode()).hexdigest()
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            row_hash(prev, seq, stream, version, type_, schema, data, meta, at)
        return
    assert row_hash(prev, seq, stream, version, type_, schema, data, meta, at) == want
    assert row_hash(prev, seq, stream, True, type_, schema, data, meta, at) == hashlib.sha256(
        (prev + body.replace(f'"version":{version}}}', '"version":true}')).encode()
    ).hexdigest()


def test_what_the_fast_parser_refuses_still_reads() -> None:
    """json.dumps wrote NaN and Infinity, and integers beyond 64 bits stay integers."""
    for text in ('{"a":NaN}', "[Infinity,-Infinity]", str(2**100), f"[{-(2**70)}]",
                 '"\\ud800"'):
        assert _same(bulk_decoder()(text), json.loads(text)), text


def test_a_log_written_before_the_codec_replays_and_verifies_the_same(tmp_path) -> None:
    """Rows written as lamina wrote them before (json.dumps, hashes over its text) and an
    event with values at the decoders' edges: read, listed, replayed and verified alike."""
    e = _engine(str(tmp_path))
    e.import_image({"bin/sh": "x"}, "busybox")
    image = e.log.image_tagged("busybox:latest")
    con = e.log.con
    seq, prev = con.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    old = {"id": CID, "name": "olé", "image": image.id, "cmd": ["sh", "-c", "echo \"€\"\n"],
           "rw_layer": "", "config": {"memory": 2**70, "cpus": 0.1, "x": float("nan"),
                                      "labels": {"z": "1", "a": "\u2028\t"}}}
    data = json.dumps(old, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    meta = json.dumps({"user": "root", "argv": ["lamina", "create", "é"]}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    at = utcnow()
    h = row_hash(prev, seq + 1, f"container:{CID}", 1, "ContainerCreated", 2, data, meta, at)
    con.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                (seq + 1, f"container:{CID}", 1, "ContainerCreated", 2, data, meta, at, prev, h))
    one = next(e.log.read(stream=f"container:{CID}"))
    listed = [r for r in select(con) if r.stream == f"container:{CID}"]
    assert len(listed) == 1
    assert _same(one.data, json.loads(data)) and _same(listed[0].data, json.loads(data))
    assert _same(listed[0].meta, json.loads(meta))
    replay.rebuild(con, use_snapshots=False)
    c = e.log.container(CID)
    assert c.name == "olé" and c.config["memory"] == 2**70 and math.isnan(c.config["x"])
    replay.snapshot(con)
    assert replay.state_at(con).containers[CID].config["memory"] == 2**70
    assert verify(con).ok


def test_read_model_rows_decode_typed_as_from_doc_builds_them(tmp_path) -> None:
    """The typed decoder a long listing uses gives the aggregates from_doc gives, field by
    field and type by type, for every kind; a row it can't read typed is from_doc's."""
    e = _session(str(tmp_path))
    e.log.append([ev.VolumeCreated(id="data"), ev.NetworkCreated(
        id="n" * 64, name="front", subnet="172.18.0.0/16", gateway="172.18.0.1")],
        expected={"volume:data": 0, f"network:{'n' * 64}": 0}, meta={"user": "root"})
    for kind, cls in KINDS.items():
        docs = [doc for (doc,) in e.log.con.execute(f"SELECT doc FROM {kind}s")]
        assert docs, kind
        slow = [from_doc(kind, json.loads(doc)) for doc in docs]
        fast = [typed_decoder(cls, lambda _: None)(doc) for doc in docs]
        assert fast == slow
        for a, b in zip(fast, slow, strict=True):
            assert _same(to_doc(a), to_doc(b)), kind
        assert aggregates(kind, [(d,) for d in docs] * MANY_ROWS)[:len(docs)] == slow
    odd = json.loads(docs[0])
    odd["version"] = "one"  # not the field's type: read as from_doc reads it
    text = encode(odd)
    got = typed_decoder(KINDS[kind], lambda t: from_doc(kind, json.loads(t)))(text)
    assert got.version == "one"


def test_a_long_listing_decodes_with_the_collector_off_and_leaves_it_as_it_was(tmp_path,
                                                                               monkeypatch
                                                                               ) -> None:
    """The collector is off while the rows decode (their objects are in no cycle), and
    as it was after: on again, or still off for a caller that had turned it off."""
    import gc

    e = _session(str(tmp_path))
    doc = e.log.con.execute("SELECT doc FROM images").fetchone()[0]
    seen = []
    real = from_doc

    def watching(kind, d):
        seen.append(gc.isenabled())
        return real(kind, d)

    monkeypatch.setattr("adapters.eventstore.sqlite_log.from_doc", watching)
    odd = json.loads(doc)
    odd["version"] = "one"  # decoded by from_doc, the typed decoder's fallback
    rows = [(encode(odd),)] * MANY_ROWS
    assert gc.isenabled()
    assert len(aggregates("image", rows)) == MANY_ROWS
    assert seen and not any(seen)
    assert gc.isenabled()
    gc.disable()
    try:
        aggregates("image", rows)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_containers_network_order_survives_its_text() -> None:
    """Canonical JSON sorts keys, so the read model and snapshots can't keep the order of a
    container's networks or endpoints: both are read back in the order a start leases them
    (its --network first, eth0 first), by from_doc and by a long listing's typed decoder, so
    which network publishes its ports doesn't depend on where the container was read."""
    from core.model import Container, in_member_order

    c = Container(id="c" * 64, name="web", image="i" * 64, state="running", version=3,
                  created="2026-12-06T00:00:00Z", config={"network": "n0"},
                  networks=in_member_order({"network": "n0"}, {"n0": {}, "bridge": {}}),
                  endpoints={"n1": {"slot": 0}, "bridge": {"slot": 1}})
    assert list(c.networks) == ["n0", "bridge"]
    text = encode(to_doc(c))
    assert list(json.loads(text)["networks"]) == ["bridge", "n0"]  # what the text keeps
    for got in (from_doc("container", json.loads(text)),
                aggregates("container", [(text,)] * MANY_ROWS)[0]):
        assert list(got.networks) == ["n0", "bridge"]
        assert list(got.endpoints) == ["n1", "bridge"]
