"""Randomised model checking: hypothesis drives long command sequences through the Engine.

`MemoryMachine` runs on the in-memory ports; `SqliteMachine` swaps in the real
SqliteEventLog (in a temp dir; the layer store and runtime stay in memory) and also checks
that a rebuild leaves the read-model tables exactly as the appends maintained them, that a
snapshot plus the tail replays to the same world as the whole log, that time travel agrees
with and without snapshots, and that reopening the log, or commands coming from a second
connection (another process), change nothing.

The rules are the exhaustive checker's commands (tests/model/harness.py), with unbounded
commits, more signals, `tag`, and any slot or image as target; images in transit too (save
and load of what the machine saved, push and pull through the machine's own registry:
tests/model/transfer.py); and the volume commands (create, rm, prune) with the containers'
side of volumes: creates that mount named volumes (`-v v0:/data`), anonymous ones (`-v
/anon`) and another container's (`--volumes-from`, of a container there is or isn't), and
rm with and without -v, so that a volume is removed only when no container mounts it and an
anonymous one goes with the last container that uses it (removed with -v); and the network
commands (create with and without a subnet, some overlapping, rm of a network, a predefined
one or a missing one, prune), so that names stay unique, no two live networks' subnets (nor
the default bridge's) overlap, a refusal appends one CommandRejected and leaves the host as
it was, and the host's bridges are exactly the live networks'. The per-move
rules are checked inside each rule, the state invariants (harness.check_world, the volume
users among them) as @invariant()s.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Network

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from adapters.eventstore import replay as rp
from adapters.eventstore.sqlite_log import SqliteEventLog
from core.errors import LaminaError
from core.memory import MemoryRegistry
from core.model import Image, World
from tests.model.harness import (
    SIGHUP,
    SIGKILL,
    SLOTS,
    SNAP,
    VOLUME_NAMES,
    Outcome,
    Step,
    check_world,
    image_ref,
    live_world,
    replay,
    run_step,
    seeded_engine,
)

# 0-2 name a slot; 3-7 name an existing container when there is one (most commands on an
# empty slot are refused with NotFound, which is checked but not worth half the steps)
slots = st.integers(min_value=0, max_value=7)
picks = st.integers(min_value=0, max_value=7)
signals = st.sampled_from([SIGKILL, SIGHUP, int(signal.SIGTERM), int(signal.SIGUSR1)])
# "cafe" looks like an id prefix: rmi of it must still only untag
tags = st.sampled_from([SNAP, "extra", "base", "cafe"])
# what push and pull name (docker.io/library/<name> in the machine's registry)
remotes = st.sampled_from([SNAP, "base", "extra"])
volume_names = st.sampled_from([*VOLUME_NAMES, None])  # None: an anonymous volume
# what a create mounts: named volumes at /data or /etc (filled from the image's /etc),
# anonymous ones, and (below) --volumes-from
binds = st.lists(st.sampled_from(["v0:/data", "v1:/data", "v0:/etc", "v1:/srv:ro"]),
                 max_size=2, unique_by=lambda b: b.split(":")[1]).map(tuple)
anonymous = st.lists(st.sampled_from(["/anon", "/data", "/anon2"]), max_size=2,
                     unique=True).map(tuple)
network_names = st.sampled_from(["n0", "n1", "n2"])
# none (docker's pools), and subnets that overlap each other, the default bridge's, or the
# first pool's
subnets = st.sampled_from([None, None, "10.1.0.0/16", "10.1.2.0/24", "172.17.9.0/24",
                           "172.18.0.0/16", "10.9.0.0/29"])
# IPAM beyond the subnet (only with 10.9.0.0/29, a network of 6 hosts, so that its range of
# 4 fills up): dynamic addresses from a range, an auxiliary address held inside it
ipams = st.sampled_from([{}, {"ip_range": "10.9.0.4/30", "aux_addresses": {"x": "10.9.0.5"}},
                         {"aux_addresses": {"y": "10.9.0.2", "z": "10.9.0.3"}}])
# what a container is created on (the default bridge, the machine's networks, a missing
# one), connected to and disconnected from
attach_to = st.sampled_from(["bridge", "bridge", "n0", "n0", "n1", "missing"])
# its -p's: a host port others ask for too (on every address, or on one: they clash with
# each other through ANY), an ephemeral one, a udp one beside a tcp one of the same number
publishes = st.sampled_from([(), ("8080:80",), ("8080:80",), ("80",), ("127.0.0.1:8080:80",),
                             ("8080:80/udp", "8081:81"), ("80", "8080:8080")])


class MemoryMachine(RuleBasedStateMachine):
    """The Engine on the in-memory ports."""

    def __init__(self) -> None:
        super().__init__()
        self.engine, self.names = seeded_engine(self.make_log())
        self.archives: list[tuple[str, bytes]] = []  # what save wrote, for load
        self.registry = MemoryRegistry()  # what push sent, for pull
        self.folded: tuple[int, World] = (0, World())  # the fold of the log's first records

    def make_log(self) -> object:
        return None  # the memory_engine's own MemoryEventLog

    def replayed(self) -> World:
        """The fold of the whole log: the records appended since the last one folded onto
        that fold (a World copied, never changed). Folding every record from the first
        again after each step was ~15% of the run; teardown does that once an example."""
        records = self.engine.log.records
        done, world = self.folded
        assert len(records) >= done, "the log lost records"
        self.folded = (len(records), replay(records[done:], world))
        return self.folded[1]

    def teardown(self) -> None:
        """The whole log, folded from its first record, is the fold the steps were checked
        against."""
        assert replay(self.engine.log.records) == self.replayed()

    def slot(self, pick: int, *, empty: bool = False) -> str:
        """SLOTS[pick] for 0-2; else an existing container's (or for create, an empty) slot."""
        taken = {c.name for c in live_world(self.engine.log).containers.values()}
        choice = sorted(set(SLOTS) - taken if empty else taken)
        if pick < len(SLOTS) or not choice:
            return SLOTS[pick % len(SLOTS)]
        return choice[pick % len(choice)]

    def image(self, pick: int) -> Image | None:
        """The pick-th image (in a stable order), or None when there is none."""
        images = sorted(live_world(self.engine.log).images.values(),
                        key=lambda i: (self.names.get(i.id, "~"), i.created, i.id))
        return images[pick % len(images)] if images else None

    def do(self, step: Step) -> Outcome:
        outcome = run_step(self.engine, step, self.registry)
        event(f"{step.op}: {type(outcome.error).__name__ if outcome.error else 'accepted'}")
        return outcome

    # --- rules: the commands ------------------------------------------------------------

    @rule(slot=slots, pick=picks, by_tag=st.booleans())
    def create(self, slot: int, pick: int, by_tag: bool) -> None:
        image = self.image(pick)
        if image is None:  # every image is gone: a create must be refused
            self.do(Step("create", self.slot(slot, empty=True), "base"))
        else:
            self.do(Step("create", self.slot(slot, empty=True), image_ref(image, by_tag), image.id))

    @rule(slot=slots)
    def start(self, slot: int) -> None:
        self.do(Step("start", self.slot(slot)))

    @rule(slot=slots)
    def stop(self, slot: int) -> None:
        self.do(Step("stop", self.slot(slot)))

    @rule(slot=slots, sig=signals)
    def kill(self, slot: int, sig: int) -> None:
        self.do(Step("kill", self.slot(slot), sig=sig))

    @rule(slot=slots)
    def pause(self, slot: int) -> None:
        self.do(Step("pause", self.slot(slot)))

    @rule(slot=slots)
    def unpause(self, slot: int) -> None:
        self.do(Step("unpause", self.slot(slot)))

    @rule(slot=slots)
    def exit(self, slot: int) -> None:
        self.do(Step("exit", self.slot(slot)))

    @rule(slot=slots)
    def restart(self, slot: int) -> None:
        self.do(Step("restart", self.slot(slot)))

    @rule(slot=slots, pick=picks, binds=binds, anonymous=anonymous,
          source=st.one_of(st.none(), slots), mode=st.sampled_from(["", ":ro", ":rw"]))
    def create_with_volumes(self, slot: int, pick: int, binds: tuple[str, ...],
                            anonymous: tuple[str, ...], source: int | None,
                            mode: str) -> None:
        """A create that mounts volumes; --volumes-from a slot (a container, or none:
        refused with NotFound)."""
        image = self.image(pick)
        ref, iid = (image_ref(image), image.id) if image is not None else ("base", None)
        sources = () if source is None else (self.slot(source) + mode,)
        self.do(Step("create", self.slot(slot, empty=True), ref, iid, binds=binds,
                     anonymous=anonymous, volumes_from=sources))

    @rule(slot=slots, network=attach_to, publish=publishes, start=st.booleans())
    def create_on_network(self, slot: int, network: str, publish: tuple[str, ...],
                          start: bool) -> None:
        """create (or run: create, then start) on a network with published ports."""
        name = self.slot(slot, empty=True)
        outcome = self.do(Step("create", name, "base", None, network=network,
                               publish=publish))
        if start and outcome.error is None:
            self.do(Step("start", name))

    @rule(slot=slots, network=attach_to, publish=publishes)
    def run(self, slot: int, network: str, publish: tuple[str, ...]) -> None:
        """run -d: create on a network with published ports, then start (twice as likely
        as create_on_network's: port clashes need two running)."""
        self.create_on_network(slot, network, publish, True)

    @rule(slot=slots, network=attach_to, connect=st.booleans())
    def network_connect(self, slot: int, network: str, connect: bool) -> None:
        name = self.slot(slot)
        self.do(Step("network connect" if connect else "network disconnect", name,
                     network=network))

    @rule(slot=slots, force=st.booleans(), volumes=st.booleans())
    def rm(self, slot: int, force: bool, volumes: bool) -> None:
        self.do(Step("rm", self.slot(slot), force=force, volumes=volumes))

    @rule(slot=slots, tag=st.one_of(st.none(), tags))
    def commit(self, slot: int, tag: str | None) -> None:
        self.do(Step("commit", self.slot(slot), tag=tag))

    @rule(slot=slots)
    def exec(self, slot: int) -> None:
        self.do(Step("exec", self.slot(slot)))

    @rule(pick=picks, force=st.booleans(), by_tag=st.booleans())
    def rmi(self, pick: int, force: bool, by_tag: bool) -> None:
        image = self.image(pick)
        if image is not None:
            self.do(Step("rmi", ref=image_ref(image, by_tag), image=image.id, force=force))

    @rule(pick=picks, tag=tags, by_tag=st.booleans())
    def tag(self, pick: int, tag: str, by_tag: bool) -> None:
        image = self.image(pick)
        if image is not None:
            self.do(Step("tag", ref=image_ref(image, by_tag), image=image.id, tag=tag))

    @rule(pick=picks, by_tag=st.booleans())
    def save(self, pick: int, by_tag: bool) -> None:
        image = self.image(pick)
        if image is not None:
            ref = image_ref(image, by_tag)
            outcome = self.do(Step("save", ref=ref, image=image.id))
            if outcome.error is None:
                self.archives.append((f"{ref[:12]}.tar", outcome.result))

    @rule(pick=picks)
    def load(self, pick: int) -> None:
        if self.archives:
            label, data = self.archives[pick % len(self.archives)]
            self.do(Step("load", ref=label, archive=data))

    @rule(ref=remotes)
    def push(self, ref: str) -> None:
        self.do(Step("push", ref=ref))

    @rule(ref=remotes)
    def pull(self, ref: str) -> None:
        self.do(Step("pull", ref=ref))

    @rule(name=volume_names)
    def volume_create(self, name: str | None) -> None:
        self.do(Step("volume create", volume=name))

    def volume(self, pick: int) -> str:
        """An existing volume (any, by pick), or one of the fixed names when there is none."""
        names = sorted(live_world(self.engine.log).volumes)
        if pick < len(VOLUME_NAMES) or not names:
            return VOLUME_NAMES[pick % len(VOLUME_NAMES)]
        return names[pick % len(names)]

    @rule(pick=picks, force=st.booleans())
    def volume_rm(self, pick: int, force: bool) -> None:
        self.do(Step("volume rm", volume=self.volume(pick), force=force))

    @rule(every=st.booleans())
    def volume_prune(self, every: bool) -> None:
        self.do(Step("volume prune", force=every))

    @rule(name=network_names, subnet=subnets, internal=st.booleans(), more=ipams)
    def network_create(self, name: str, subnet: str | None, internal: bool,
                       more: dict) -> None:
        extra = more if subnet == "10.9.0.0/29" else {}
        self.network_step("network create", lambda: self.engine.network_create(
            name, subnet=subnet, internal=internal, **extra))

    @rule(pick=picks)
    def network_rm(self, pick: int) -> None:
        names = sorted(n.name for n in self.engine.log.networks())
        ref = names[pick % len(names)] if names and pick >= 3 else \
            ["n0", "bridge", "missing"][pick % 3]
        self.network_step("network rm", lambda: self.engine.network_rm(ref))

    @rule()
    def network_prune(self) -> None:
        self.network_step("network prune", lambda: self.engine.network_prune())

    def network_step(self, op: str, fn: Callable[[], object]) -> None:
        """Run a network command: refused, it appended exactly one CommandRejected and the
        host's bridges are as they were; accepted, no CommandRejected."""
        log, host = self.engine.log, self.engine.networks
        seq = max((r.seq for r in log.read()), default=0)
        bridges = host.names()
        try:
            fn()
            error: LaminaError | None = None
        except LaminaError as err:
            error = err
        new = [r.type for r in log.read(after=seq)]
        event(f"{op}: {type(error).__name__ if error else 'accepted'}")
        if error is not None:
            assert new == ["CommandRejected"], f"refused {op} ({error!r}) appended {new}"
            assert host.names() == bridges, f"refused {op} ({error!r}) changed the host"
        else:
            assert "CommandRejected" not in new, f"{op} succeeded but appended {new}"

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def world_invariants(self) -> None:
        check_world(self.engine, self.replayed())

    @invariant()
    def networks_unique_apart_and_on_the_host(self) -> None:
        from core.engine.networks import DEFAULT_SUBNET, bridge_of

        live = self.engine.log.networks()
        names = [n.name for n in live]
        assert len(names) == len(set(names)), f"two live networks share a name: {names}"
        nets = [IPv4Network(DEFAULT_SUBNET), *(IPv4Network(n.subnet) for n in live)]
        for i, a in enumerate(nets):
            for b in nets[i + 1:]:
                assert not a.overlaps(b), f"live subnets {a} and {b} overlap"
        assert self.engine.networks.names() == sorted(bridge_of(n) for n in live)


class SqliteMachine(MemoryMachine):
    """The same, on the real SQLite event log (layer store and runtime stay in memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.other = SqliteEventLog(self.root)  # a second process on the same file

    def make_log(self) -> object:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # fsync is free there
        self.root = tempfile.mkdtemp(prefix="lamina-model-", dir=shm)
        return SqliteEventLog(self.root)

    def teardown(self) -> None:
        self.engine.log.close()
        self.other.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @rule()
    def switch_process(self) -> None:
        """The next commands come from the other process (its own connection)."""
        log, self.other = self.other, self.engine.log
        self.engine = replace(self.engine, log=log)

    @property
    def con(self) -> sqlite3.Connection:
        return self.engine.log.con

    def replayed(self) -> World:
        return rp.fold(self.con)  # the whole log, no snapshot

    @rule()
    def snapshot(self) -> None:
        seq = rp.snapshot(self.con)
        assert seq == self.engine.log.last_seq()

    @rule()
    def reopen(self) -> None:
        """A new process opens the same log: it must see the same world."""
        before = live_world(self.engine.log)
        self.engine.log.close()
        self.engine = replace(self.engine, log=SqliteEventLog(self.root, create=False))
        after = live_world(self.engine.log)
        assert (after.containers, after.images, after.layers, after.volumes, after.seq) == \
            (before.containers, before.images, before.layers, before.volumes, before.seq)

    @rule(at=st.integers(min_value=0, max_value=400))
    def time_travel(self, at: int) -> None:
        seq = at % (self.engine.log.last_seq() + 1)
        with_snapshots = rp.state_at(self.con, seq)
        full = rp.state_at(self.con, seq, use_snapshots=False)
        assert with_snapshots == full, f"state_at({seq}) depends on the snapshots"
        assert full == replay(r for r in self.engine.log.read() if r.seq <= seq)

    @invariant()
    def generic_read_replays_too(self) -> None:
        """The port's read() (upcast rows) folds to the same world as replay.fold."""
        assert replay(self.engine.log.read()) == self.replayed()

    @invariant()
    def snapshot_plus_tail_equals_full_replay(self) -> None:
        full = rp.state_at(self.con, use_snapshots=False)
        tail = rp.state_at(self.con)
        assert tail == full
        assert tail.to_json() == full.to_json()

    @invariant()
    def rebuild_leaves_the_read_model_as_it_was(self) -> None:
        rows = rp.read_model_rows(self.con)
        for use_snapshots in (False, True):
            rp.rebuild(self.con, use_snapshots=use_snapshots)
            assert rp.read_model_rows(self.con) == rows, \
                f"rebuild(use_snapshots={use_snapshots}) changed the read model"


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

MemoryMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=50,
                                           **SETTINGS)
SqliteMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=50,
                                           **SETTINGS)

TestMemoryMachine = MemoryMachine.TestCase
TestSqliteMachine = SqliteMachine.TestCase
