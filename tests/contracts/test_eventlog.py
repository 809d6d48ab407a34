"""The EventLog contract (core/ports.py), run against the in-memory, the SQLite and the
PostgreSQL log.

As in the eventsourcing library: an abstract test case, subclassed per implementation, so the
in-memory fake can't drift from the SQLite log the engine really uses, nor PostgreSQL from
either. The durable two also share the stored log's contract (DurableLogContract): the hash
chain, upcasting on read, snapshots and time travel. (None of them needs root; PostgreSQL is
a temporary cluster of the run's, tests/pgcluster.py.)
"""

from __future__ import annotations

import pytest

from adapters.eventstore import audit, replay
from adapters.eventstore.sqlite_log import EVENT_COLUMNS, SqliteEventLog
from core.errors import ConcurrencyError
from core.memory import MemoryEventLog
from core.model import ContainerBrief, ImageBrief, ProjectionError, brief_of, container_brief_of
from events import types as ev
from events.hashchain import GENESIS, canonical, row_hash

CID = "c" * 64
CID2 = "c" * 63 + "d"
IID = "a" * 64
LID = "b" * 64
META = {"uid": 0, "user": "root", "command_id": "x"}


def _image_events() -> list[ev.Event]:
    return [
        ev.LayerRegistered(id=LID, parent=None, diff_id="sha256:" + "1" * 64,
                           chain_id="sha256:" + "1" * 64, size=10),
        ev.ImageCreated(id=IID, parent=None, layers=[LID], config={}),
        ev.ImageTagged(id=IID, tag="busybox:latest"),
    ]


class EventLogContract:
    """Subclasses provide `make_log()`."""

    def make_log(self, tmp_path):  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture
    def log(self, tmp_path):
        log = self.make_log(tmp_path)
        log.append(_image_events(), expected={f"image:{IID}": 0, f"layer:{LID}": 0}, meta=META)
        return log

    def create(self, log, cid=CID, name="web"):
        return log.append([ev.ContainerCreated(id=cid, name=name, image=IID, cmd=["sh"])],
                          expected={f"container:{cid}": 0}, meta=META)

    def test_seq_is_global_and_version_per_stream(self, log) -> None:
        recs = self.create(log)
        recs += log.append([ev.ContainerStarted(id=CID, pid=42)],
                           expected={f"container:{CID}": 1}, meta=META)
        assert [r.seq for r in recs] == [4, 5]
        assert [r.version for r in recs] == [1, 2]
        assert [r.type for r in log.read(stream=f"container:{CID}")] == [
            "ContainerCreated", "ContainerStarted"]
        assert recs[0].meta["command_id"] == "x"

    def test_stale_expected_version_conflicts_and_appends_nothing(self, log) -> None:
        self.create(log)
        before = list(log.read())
        with pytest.raises(ConcurrencyError):
            log.append([ev.ContainerStarted(id=CID, pid=1)],
                       expected={f"container:{CID}": 0}, meta=META)
        assert list(log.read()) == before

    def test_a_batch_is_atomic_across_streams(self, log) -> None:
        before = list(log.read())
        with pytest.raises(ProjectionError):
            log.append([ev.ContainerCreated(id=CID, name="web", image=IID),
                        ev.ContainerStarted(id=CID2, pid=1)],  # CID2 was never created
                       expected={}, meta=META)
        assert list(log.read()) == before
        assert log.container(CID) is None

    def test_read_model_follows_the_events(self, log) -> None:
        self.create(log)
        log.append([ev.ContainerStarted(id=CID, pid=7), ev.ContainerPaused(id=CID)],
                   expected={f"container:{CID}": 1}, meta=META)
        c = log.container(CID)
        assert (c.state, c.pid, c.version, c.name) == ("paused", 7, 3, "web")
        assert log.container_named("web").id == CID
        assert log.image_tagged("busybox:latest").id == IID
        assert [la.id for la in log.layers()] == [LID]

    def test_prefix_lookup(self, log) -> None:
        self.create(log)
        self.create(log, CID2, "db")
        assert sorted(log.container_ids("ccc")) == sorted([CID, CID2])
        assert log.container_ids("c" * 63 + "d") == [CID2]
        assert log.container_ids("e") == []
        assert log.image_ids("a") == [IID]

    def test_images_of_some_ids_are_those_that_exist_in_the_order_made(self, log) -> None:
        other = "f" * 64
        log.append([ev.ImageCreated(id=other, parent=None, layers=[LID], config={})],
                   expected={f"image:{other}": 0}, meta=META)
        assert [i.id for i in log.images({other, IID, "e" * 64})] == [IID, other]
        assert [i.id for i in log.images([other])] == [other]
        assert log.images(set()) == []
        assert [i.id for i in log.images()] == [IID, other]

    def test_image_briefs_are_the_images_own_in_the_order_made(self, log) -> None:
        """A brief holds the tags and, of the config, only the health check and the
        exposed ports, as the store decodes them; the same as brief_of the whole image."""
        config = {"architecture": "amd64", "history": [{"created_by": "x"}],
                  "config": {"Cmd": ["sh"], "Healthcheck": {"Test": ["CMD", "true"]},
                             "ExposedPorts": {"80/tcp": {}}}}
        others = {"f" * 64: config, "e" * 64: {"config": None}, "d" * 64: {"os": "linux"}}
        for iid, cfg in others.items():
            log.append([ev.ImageCreated(id=iid, parent=None, layers=[LID], config=cfg)],
                       expected={f"image:{iid}": 0}, meta=META)
        briefs = log.image_briefs({*others, IID, "c" * 64})
        assert [b.id for b in briefs] == [IID, *others]
        assert briefs == [brief_of(i) for i in log.images({*others, IID})]
        assert briefs[0] == ImageBrief(id=IID, tags=("busybox:latest",), config={})
        assert briefs[1].config == {"config": {"Healthcheck": {"Test": ["CMD", "true"]},
                                               "ExposedPorts": {"80/tcp": {}}}}
        assert (briefs[2].config, briefs[3].config) == ({"config": None}, {})
        assert log.image_briefs(set()) == []

    def test_container_briefs_are_the_containers_own_in_the_order_made(self, log) -> None:
        """A brief holds what a listing's table shows (of the config: the network, health
        check, --expose and -p), as the store decodes it; the same as container_brief_of
        the whole container, or the container itself where the store kept it."""
        config = {"network": "bridge", "env": ["A=1"], "labels": {"x": "y"},
                  "healthcheck": {"Test": ["CMD", "true"]}, "exposed_ports": ["81/tcp"],
                  "port_bindings": [{"container_port": 80, "proto": "tcp", "host_ip": "",
                                     "host_port": 8080}]}
        log.append([ev.ContainerCreated(id=CID2, name="db", image=IID, cmd=["sh"],
                                        config=config)],
                   expected={f"container:{CID2}": 0}, meta=META)
        self.create(log)
        log.append([ev.ContainerStarted(id=CID, pid=42)], expected={f"container:{CID}": 1},
                   meta=META)
        fields = ContainerBrief.__dataclass_fields__
        for states, ids in ((None, [CID2, CID]), (("running", "paused"), [CID]),
                            (("running", "paused"), [CID])):  # the last, listed just before
            briefs = log.container_briefs(states)
            assert [b.id for b in briefs] == ids
            assert [{f: getattr(b, f) for f in fields} for b in briefs] == \
                [{f: getattr(b, f) for f in fields} for b in map(container_brief_of,
                                                                 log.containers(states))]
        brief = container_brief_of(log.container(CID2))
        assert brief.config == {key: config[key] for key in
                                ("network", "healthcheck", "exposed_ports", "port_bindings")}
        assert (brief.name, brief.cmd, brief.state) == ("db", ("sh",), "stopped")

    def test_removal_deletes_the_read_model_row_and_frees_the_name(self, log) -> None:
        self.create(log)
        log.append([ev.ContainerRemoved(id=CID)], expected={f"container:{CID}": 1}, meta=META)
        assert log.container(CID) is None
        assert log.container_named("web") is None
        self.create(log, CID2, "web")
        assert log.container_named("web").id == CID2

    def test_rejections_change_no_state(self, log) -> None:
        self.create(log)
        before = [log.container(CID)]
        log.append([ev.CommandRejected(id="r" * 64, command="start", target="web",
                                       reason="nope")], expected={}, meta=META)
        assert [log.container(CID)] == before
        assert list(log.read())[-1].type == "CommandRejected"

    def test_a_volume_counts_its_users_and_outlives_them(self, log) -> None:
        self.create(log)
        log.append([ev.VolumeCreated(id="data", labels={"a": "b"}),
                    ev.VolumeMounted(id="data", container=CID, target="/var/lib/db"),
                    ev.VolumeMounted(id="data", container=CID, target="/backup",
                                     read_only=True)],
                   expected={"volume:data": 0}, meta=META)
        v = log.volume("data")
        assert (v.version, v.labels, v.anonymous) == (3, {"a": "b"}, False)
        assert v.users == {CID: ["/var/lib/db", "/backup"]}
        log.append([ev.ContainerRemoved(id=CID), ev.VolumeUnmounted(id="data", container=CID)],
                   expected={f"container:{CID}": 1, "volume:data": 3}, meta=META)
        assert log.volume("data").users == {}
        assert [v.id for v in log.volumes()] == ["data"]

    def test_a_volume_in_use_cannot_be_removed_and_a_name_can_come_back(self, log) -> None:
        self.create(log)
        log.append([ev.VolumeCreated(id="data"),
                    ev.VolumeMounted(id="data", container=CID, target="/d")],
                   expected={"volume:data": 0}, meta=META)
        before = list(log.read())
        with pytest.raises(ProjectionError, match="while containers"):
            log.append([ev.VolumeRemoved(id="data")], expected={"volume:data": 2}, meta=META)
        assert list(log.read()) == before
        log.append([ev.VolumeUnmounted(id="data", container=CID), ev.VolumeRemoved(id="data")],
                   expected={"volume:data": 2}, meta=META)
        assert log.volume("data") is None and log.volumes() == []
        log.append([ev.VolumeCreated(id="data", anonymous=True)],
                   expected={"volume:data": 4}, meta=META)
        assert (log.volume("data").version, log.volume("data").anonymous) == (5, True)


    def start_on(self, log, cid: str, network: str, address: str, ports=(), address6=""):
        """A container created and started with a lease on `network` (an id)."""
        log.append([ev.ContainerCreated(id=cid, name=cid[:4], image=IID)],
                   expected={f"container:{cid}": 0}, meta=META)
        endpoint = {"id": network, "address": address, "slot": 0,
                    **({"address6": address6} if address6 else {})}
        log.append([ev.ContainerStarted(id=cid, pid=1, networks={"n": endpoint},
                                        ports=list(ports))],
                   expected={f"container:{cid}": 1}, meta=META)

    def test_an_address_or_a_clashing_port_has_one_holder(self, log) -> None:
        net = "e" * 64
        log.append([ev.NetworkCreated(id=net, name="front", subnet="172.18.0.0/16",
                                      gateway="172.18.0.1")], expected={}, meta=META)
        port = {"proto": "tcp", "container_port": 80, "host_ip": "0.0.0.0", "host_port": 8080}
        self.start_on(log, "1" * 64, net, "172.18.0.2", [port])
        with pytest.raises(ConcurrencyError):
            self.start_on(log, "2" * 64, net, "172.18.0.2")  # its address
        with pytest.raises(ConcurrencyError):  # 0.0.0.0 holds the port on every address
            self.start_on(log, "3" * 64, net, "172.18.0.3", [{**port, "host_ip": "127.0.0.1"}])
        self.start_on(log, "4" * 64, net, "172.18.0.4", address6="fd00::4")
        with pytest.raises(ConcurrencyError):  # a dual-stack one's IPv6 address too
            self.start_on(log, "5" * 64, net, "172.18.0.5", address6="fd00::4")
        assert log.container("2" * 64).state == log.container("5" * 64).state != "running"
        with pytest.raises(ConcurrencyError):  # a network with leases stays
            log.append([ev.NetworkRemoved(id=net)], expected={}, meta=META)
        assert log.network(net) is not None


class DurableLogContract(EventLogContract):
    """What a stored log adds to the port: the chain, upcasters, snapshots. Subclasses give
    the few operations the port doesn't name (`raw_insert`, `snapshot`, `state_at`,
    `verify`)."""

    def raw_insert(self, log, row):  # pragma: no cover - abstract
        raise NotImplementedError

    def test_the_hash_chain_links_every_event_and_verifies(self, log) -> None:
        self.create(log)
        recs = list(log.read())
        assert recs[0].prev_hash == GENESIS
        assert all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:], strict=False))
        for r in recs:
            assert r.hash == row_hash(r.prev_hash, r.seq, r.stream, r.version, r.type,
                                      r.schema, canonical(r.data), canonical(r.meta), r.at)
        verdict = self.verify(log)
        assert (verdict.ok, verdict.checked) == (True, 4)

    def test_the_chain_covers_any_text_exactly(self, log) -> None:
        """Quotes, backslashes, control characters, DEL, non-ASCII and astral characters:
        what the store checks on insert (PostgreSQL's own sha256 over its own JSON
        escaping) agrees with events/hashchain.py."""
        odd = 'a"b\\c\n\t\x01\x1f\x7f é 😀 \u2028 </script>'
        log.append([ev.VolumeCreated(id="odd", labels={odd: odd})], expected={},
                   meta={**META, "argv": ["lamina", odd]})
        assert log.volume("odd").labels == {odd: odd}
        assert self.verify(log).ok

    def test_an_old_schema_is_upcast_on_read(self, log) -> None:
        head = list(log.read())[-1]
        data = canonical({"id": CID, "name": "old", "image": IID, "command": "sh -c 'echo hi'"})
        at = "2020-01-01T00:00:00.000000Z"
        seq, meta = head.seq + 1, canonical(META)
        h = row_hash(head.hash, seq, f"container:{CID}", 1, "ContainerCreated", 1, data, meta,
                     at)
        self.raw_insert(log, (seq, f"container:{CID}", 1, "ContainerCreated", 1, data, meta, at,
                              head.hash, h))
        rec = list(log.read(stream=f"container:{CID}"))[0]
        assert (rec.schema, rec.data["cmd"]) == (1, ["sh", "-c", "echo hi"])
        assert "command" not in rec.data
        assert self.verify(log).ok

    def test_a_snapshot_and_its_tail_fold_to_the_same_world(self, log) -> None:
        self.create(log)
        created = log.container(CID).state
        seq = self.snapshot(log)
        assert seq == 4
        log.append([ev.ContainerStarted(id=CID, pid=9)], expected={f"container:{CID}": 1},
                   meta=META)
        self.create(log, CID2, "db")
        now = self.state_at(log, None)
        assert now.to_json() == self.state_at(log, None, use_snapshots=False).to_json()
        assert (now.seq, now.containers[CID].state, sorted(now.containers)) == (
            6, "running", sorted([CID, CID2]))
        then = self.state_at(log, 4)
        assert (then.seq, then.containers[CID].state, list(then.containers)) == (
            4, created, [CID])


class TestMemoryEventLog(EventLogContract):
    def make_log(self, tmp_path):
        return MemoryEventLog()


class TestSqliteEventLog(DurableLogContract):
    def make_log(self, tmp_path):
        return SqliteEventLog(str(tmp_path / "root"))

    def raw_insert(self, log, row):
        log.con.execute(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        row)

    def snapshot(self, log):
        return replay.snapshot(log.con)

    def state_at(self, log, seq, use_snapshots=True):
        return replay.state_at(log.con, seq, use_snapshots)

    def verify(self, log):
        return audit.verify(log.con)


class TestPostgresEventLog(DurableLogContract):
    """One host's chain in a fresh database of the run's temporary cluster; a second host
    writes into the same database first, so that every query must keep to its host."""

    @pytest.fixture(autouse=True)
    def _database(self, pg_url):
        self.url = pg_url

    def make_log(self, tmp_path):
        from adapters.eventstore.postgres import PostgresEventLog

        other = PostgresEventLog(self.url, "other-host")
        other.append(_image_events(), expected={}, meta=META)
        other.append([ev.ContainerCreated(id=CID, name="web", image=IID)], expected={},
                     meta=META)
        other.close()
        return PostgresEventLog(self.url, "this-host")

    def raw_insert(self, log, row):
        log._insert([row])

    @pytest.mark.parametrize("mode", ["lock", "serializable"])
    def test_concurrent_appends_keep_one_chain_in_either_mode(self, mode) -> None:
        """Four writers on one host's chain at once: each append lands once, in one chain
        (serializable mode redoes what raced; lock mode queues)."""
        import threading

        from adapters.eventstore.postgres import PostgresEventLog

        logs = [PostgresEventLog(self.url, "busy", concurrency=mode) for _ in range(4)]
        errors: list[BaseException] = []

        def write(n: int) -> None:
            try:
                for i in range(15):
                    logs[n].append([ev.VolumeCreated(id=f"v{n}-{i}")], expected={}, meta=META)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert logs[0].verify().ok and logs[0].last_seq() == 60
        assert sorted(v.id for v in logs[0].volumes()) == sorted(
            f"v{n}-{i}" for n in range(4) for i in range(15))
        for log in logs:
            log.close()

    def snapshot(self, log):
        return log.snapshot()

    def state_at(self, log, seq, use_snapshots=True):
        return log.state_at(seq, use_snapshots)

    def verify(self, log):
        return log.verify()
