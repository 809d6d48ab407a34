"""Exhaustive model checking: every command sequence up to DEPTH in a bounded world.

The world: the images `base` and `derived` (a commit of base), three container slots c0-c2,
at most MAX_IMAGES images (commit is tried only below that). Breadth-first, from the seeded
engine; after every command the move rules and every invariant are checked (harness.py).
States are deduplicated by an abstract key without ids (the image forest with containers as
leaves, slots unnamed), and a command is tried once per orbit of symmetric targets (one of
several interchangeable containers, images or empty slots). The slot names are hex, so a
command on an empty slot may reach a container by id prefix, as docker resolves names; the
harness models that.

Images in transit (save, load, push, pull: tests/model/transfer.py) are tried from every state
explored, and checked, but the states they lead to are not expanded further (that would
quadruple the run); `save`, which reads only the image and its tags, once per image, tags
and reference. The hypothesis machines (test_stateful.py) run them interleaved with
everything else.

The depth is 7 in `make test` (4,738 states, 78,652 transitions, ~26 s on 2 cores; 8 gave
twice the states in ~65 s, more than the suite's 15 minutes could spare); 10 under
LAMINA_SOAK=1, or LAMINA_MODEL_DEPTH=N (10: 26,252 states, 619,910 transitions).

A second search covers the volumes (harness.volume_world_steps), with its own exact
abstraction (harness.volume_abstract: states equal up to a renaming of slots and anonymous
volumes get one key; a command is tried once per orbit of symmetric containers and
volumes). The world (harness.VOLUME_WORLD): up to three containers on `base`, each created
with mounts (`-v v0:/data`; `-v v1:/data -v /anon`; `-v /anon`; `--volumes-from` another
container), started, stopped, paused, unpaused, removed with and without -v (and `rm -f -v`
when running or paused); every volume command between them (create of the two names and
of an anonymous volume, rm with and without -f of every volume, used or not, and of the
names there aren't, prune with and without -a); at most three anonymous volumes at a time.
It checks the same move rules and invariants, and for volumes: docker's answers, the mounts
each create records, the data made and deleted with the log, no volume removed while a
container has it mounted (a `volume rm` of one refused, only a CommandRejected left), every
user of a volume a live container and every live container's mounts listed by their
volumes, an anonymous volume gone exactly when the last container using it is removed with
-v, the volume store's names the log's volumes. LAMINA_MODEL_VOLUME_DEPTH (default 16)
reaches every state of that world: 1,677 states, 37,692 transitions, ~5 s.
Under LAMINA_SOAK=1 the world grows (harness.SOAK_VOLUME_WORLD: four slots, and creates
also with no mounts, two named volumes (one filled from the image's /etc), two anonymous
ones, a bind plus --volumes-from :ro) and the depth is 10 unless set: 108,051 states,
2,180,980 transitions, ~5.5 min.

A third search covers the networks (harness.network_world_steps, harness.network_abstract:
states equal up to a renaming of slots get one key; addresses and host ports are kept, as
values). The world (harness.NETWORK_WORLD): up to three containers on `base`, created on the
default bridge with `-p 8080:80`, on the user network `n1` with `-p 80` (an ephemeral port)
or with `-p 8080:80` (so a second start asking for 8080 is refused while the first runs),
started, stopped, removed with -f, connected to and disconnected from either network
(leaving the one its ports are published on releases them); `network create n1` and
`network rm n1` between them. Besides the move rules and
invariants above, for networks: docker's answers (a taken port `Conflict`, a member network
gone `NotFound`, rm of a network with active endpoints refused, connect twice `Conflict`,
disconnect of a non-member `BadInput`, connect or disconnect of a paused one refused), a
start's leases (an endpoint on each member network in order, at the lowest free address,
each -p as asked or in the ephemeral range), a connect's (at once when running, at the
next start when stopped); and in every state: no address or host port held twice (what
the read model refuses, core.networks.lease_clash), every lease a running (or paused)
container's on a member network that exists, none held by a stopped one, nothing published
from an internal network, the runtime's links exactly the running containers' endpoints,
the network host's bridges exactly the log's networks. LAMINA_MODEL_NETWORK_DEPTH (default
8): 3,291 states, 19,055 transitions, ~3 s (the world is not exhausted there: depth 9 gives
6,495 states in ~7 s). Under LAMINA_SOAK=1 (harness
.SOAK_NETWORK_WORLD: four slots, a create without ports, pause, unpause, restart, exit,
and an internal n1 too) the depth is 10 unless set: 229,274 states, 1,995,139
transitions, ~6 min (at least 100,000 states, the clarification's floor, on its own).

Run with `pytest -s tests/model/test_exhaustive.py` to see what was explored.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from core.engine import Engine
from core.memory import MemoryEventLog
from core.model import World
from tests.model import harness, transfer
from tests.model.harness import (
    SLOTS,
    SOAK_NETWORK_WORLD,
    SOAK_VOLUME_WORLD,
    Abstract,
    ModelViolation,
    Snapshot,
    Step,
    abstract,
    check_world,
    clone,
    network_abstract,
    network_world_steps,
    replay,
    run_step,
    seeded_engine,
    steps_for,
    volume_abstract,
    volume_world_steps,
)
from tests.model.transfer import copy_registry, fixtures

SOAK = os.environ.get("LAMINA_SOAK") == "1"
DEPTH = int(os.environ.get("LAMINA_MODEL_DEPTH", "10" if SOAK else "7"))
VOLUME_DEPTH = int(os.environ.get("LAMINA_MODEL_VOLUME_DEPTH", "10" if SOAK else "16"))
VOLUME_WORLD = SOAK_VOLUME_WORLD if SOAK else harness.VOLUME_WORLD
NETWORK_DEPTH = int(os.environ.get("LAMINA_MODEL_NETWORK_DEPTH", "10" if SOAK else "8"))
NETWORK_WORLD = SOAK_NETWORK_WORLD if SOAK else harness.NETWORK_WORLD


@dataclass
class Node:
    engine: Engine
    # the fold of the log, kept apart from the log's own World: each transition folds only
    # its new records onto its parent's (each new state also folds the whole log)
    replayed: World
    path: tuple[str, ...]
    shape: Abstract  # the state's abstraction (its key is what `seen` holds)
    snapshot: Snapshot  # what the move rules compare each child's state with


@dataclass
class Report:
    states: int
    transitions: int
    rejected: int
    per_depth: list[int]
    ops: Counter
    seconds: float


def explore(depth: int,
            expand: Callable[[World, Abstract], list[Step]] = steps_for,
            abstraction: Callable[[World, dict[str, str]], Abstract] = abstract) -> Report:
    t0 = time.perf_counter()
    engine, names = seeded_engine()
    fixed = fixtures()
    log = engine.log
    assert isinstance(log, MemoryEventLog)
    root = Node(engine, replay(log.records), (), abstraction(log.world, names),
                Snapshot.of(engine))
    check_world(engine, root.replayed)
    seen = {root.shape.key}
    frontier, per_depth = [root], [1]
    transitions = rejected = 0
    ops: Counter = Counter()
    saved: set[tuple[str | None, str, tuple[str, ...]]] = set()
    for _ in range(depth):
        following: list[Node] = []
        for node in frontier:
            parent_log = node.engine.log
            n, world = len(parent_log.records), parent_log.world
            tables = (dict(world.containers), dict(world.images), dict(world.layers),
                      dict(world.volumes))
            shape = node.shape
            for step in expand(world, shape):
                if step.op == "save":  # what it writes depends on the image and its tags
                    image = world.images[step.image or ""]  # alone: once per such pair
                    if (step.ref, image.id, image.tags) in saved:
                        continue
                    saved.add((step.ref, image.id, image.tags))
                child = clone(node.engine)
                registry = copy_registry(fixed.registry) if step.op == "push" else \
                    fixed.registry  # a pull only reads it; a push's changes are dropped
                try:
                    outcome = run_step(child, step, registry, node.snapshot)
                    replayed = replay(outcome.new, node.replayed)
                    check_world(child, replayed)
                except Exception as err:
                    raise ModelViolation(_trace(node.path, step, err)) from err
                transitions += 1
                ops[step.op] += 1
                if outcome.error is not None:
                    rejected += 1
                    continue
                if step.op in transfer.OPS:
                    continue  # checked from every state, not expanded: see the module doc
                child_shape = abstraction(child.log.world, names)
                if child_shape.key not in seen:
                    seen.add(child_shape.key)
                    path = (*node.path, str(step))
                    # once per state, the whole log from scratch, not just the new records
                    if replay(child.log.records) != child.log.world:
                        raise ModelViolation(_trace(node.path, step, "full replay differs"))
                    assert outcome.after is not None
                    following.append(Node(child, replayed, path, child_shape, outcome.after))
            # the clones shared the parent's records and World: they must be untouched
            world = parent_log.world
            assert len(parent_log.records) == n, _trace(node.path, None, "log grew")
            assert (world.containers, world.images, world.layers, world.volumes) == tables, \
                _trace(node.path, None, "expanding the state changed it")
        per_depth.append(len(following))
        frontier = following
        if not frontier:
            break
    return Report(len(seen), transitions, rejected, per_depth, ops, time.perf_counter() - t0)


def _trace(path: tuple[str, ...], step: Step | None, err: object) -> str:
    lines = ["seeded world (base, derived)", *path]
    if step is not None:
        lines.append(f"{step}   <-- here")
    return f"{err!r}\n  after: " + "\n         ".join(lines)


def test_clone_is_a_deep_copy() -> None:
    """The BFS keeps one engine per state: a clone must be as independent as a deepcopy."""
    engine, _ = seeded_engine()
    for step in (Step("network create", network="n1"),
                 Step("create", "c0", "base", network="n1", publish=("8080:80",)),
                 Step("start", "c0"), Step("network connect", "c0", network="bridge"),
                 Step("pause", "c0")):
        assert run_step(engine, step).error is None, step
    deep, fast = copy.deepcopy(engine), clone(engine)
    assert fast.log.world is engine.log.world, "the ports changed shape: clone fell back to " \
        "deepcopy (correct but slow); teach harness.clone the new fields"
    for other in (deep, fast):
        assert other.log.world == engine.log.world
        assert other.log.records == engine.log.records
        assert other.runtime == engine.runtime and other.layers == engine.layers
        assert other.ids == engine.ids and other.clock == engine.clock
        run_step(other, Step("unpause", "c0"))
        run_step(other, Step("rm", "c0", force=True))
        assert other.runtime.procs == {} and other.runtime.links == set()
        run_step(other, Step("network rm", network="n1"))
        assert other.networks.names() == []
    assert engine.log.world.containers[engine.log.container_named("c0").id].state == "paused"
    assert len(engine.runtime.links) == 2 and len(engine.networks.names()) == 1
    assert engine.runtime.procs[engine.log.container_named("c0").id].frozen
    assert len(engine.layers.rw) == 1


def test_every_sequence_keeps_the_invariants() -> None:
    report = explore(DEPTH)
    print(f"\nexhaustive model check: depth {DEPTH}, {len(SLOTS)} slots: {report.states} "
          f"distinct states, {report.transitions} transitions ({report.rejected} refused) "
          f"in {report.seconds:.1f}s; new states per depth {report.per_depth}; "
          f"commands {dict(report.ops)}")
    assert report.per_depth[0] == 1
    if DEPTH >= 8:
        assert report.states >= 5000, report  # 9472 at depth 8 when written
        assert report.transitions >= 100_000, report
    elif DEPTH == 7:
        assert report.states >= 4500, report  # 4738 when written
        assert report.transitions >= 70_000, report
    # every kind of command ran, and some moves were refused and some accepted
    assert set(report.ops) >= {"create", "start", "stop", "kill", "pause", "unpause", "exit",
                               "restart", "rm", "commit", "exec", "rmi", "save", "load",
                               "push", "pull"}
    assert 0 < report.rejected < report.transitions


def test_every_volume_sequence_keeps_the_invariants() -> None:
    report = explore(VOLUME_DEPTH, partial(volume_world_steps, bounds=VOLUME_WORLD),
                     volume_abstract)
    print(f"\nexhaustive model check of volumes{' (soak world)' if SOAK else ''}: depth "
          f"{VOLUME_DEPTH}: {report.states} distinct states, {report.transitions} "
          f"transitions ({report.rejected} refused) in {report.seconds:.1f}s; new states "
          f"per depth {report.per_depth}; commands {dict(report.ops)}")
    if SOAK and "LAMINA_MODEL_VOLUME_DEPTH" not in os.environ:
        assert report.states >= 100_000, report  # the clarification's floor
    elif not SOAK and VOLUME_DEPTH >= 16:  # every state of the world, none left unexpanded
        assert report.per_depth[-1] == 0 and report.states >= 1600, report  # 1677 written
    assert set(report.ops) == {"create", "start", "stop", "pause", "unpause", "rm",
                               "volume create", "volume rm", "volume prune"}
    assert 0 < report.rejected < report.transitions


def test_the_volume_world_reaches_every_use() -> None:
    """The depth `make test` runs reaches each way a volume is used and given back."""
    engine, _ = seeded_engine()
    steps = [Step("create", "c0", "base", binds=("v1:/data",), anonymous=("/anon",)),
             Step("create", "c1", "base", volumes_from=("c0",)),
             Step("rm", "c0", volumes=True),  # c1 still uses both: nothing removed
             Step("volume rm", volume="v1"),  # in use: refused
             Step("rm", "c1", volumes=True)]  # the anonymous volume goes, v1 stays
    for step in steps:
        outcome = run_step(engine, step)
        check_world(engine, replay(engine.log.records))
        assert (outcome.error is None) == (step.op != "volume rm"), (step, outcome.error)
    assert [v.anonymous for v in engine.log.world.volumes.values()] == [False]
    assert engine.volumes.names() == ["v1"]


def test_every_network_sequence_keeps_the_invariants() -> None:
    report = explore(NETWORK_DEPTH, partial(network_world_steps, bounds=NETWORK_WORLD),
                     network_abstract)
    print(f"\nexhaustive model check of networks{' (soak world)' if SOAK else ''}: depth "
          f"{NETWORK_DEPTH}: {report.states} distinct states, {report.transitions} "
          f"transitions ({report.rejected} refused) in {report.seconds:.1f}s; new states "
          f"per depth {report.per_depth}; commands {dict(report.ops)}")
    if SOAK and "LAMINA_MODEL_NETWORK_DEPTH" not in os.environ:
        assert report.states >= 100_000, report  # 229,274 when written
    elif not SOAK and NETWORK_DEPTH >= 8:
        assert report.states >= 3000, report  # 3,291 when written
    assert {"create", "start", "stop", "rm", "network create", "network rm",
            "network connect", "network disconnect"} <= set(report.ops)
    assert 0 < report.rejected < report.transitions
