"""The model checkers' shared harness: a bounded world, its commands, and the invariants.

Both the exhaustive breadth-first search (test_exhaustive.py) and the hypothesis state
machines (test_stateful.py) drive an Engine through `Step`s with `run_step`, which checks the
per-move rules (the lifecycle machine is the only judge; a refused command changes nothing
and leaves exactly one CommandRejected), and then `check_world`, the invariants that must hold
in every state (replay equals the live world, processes match states, nothing in use is gone).
Images in transit (save, load, push, pull) are steps too; what must hold after each of them
is in tests/model/transfer.py. So are the volume commands (volume create, rm, prune), judged
by _check_volume_move, and the container side of volumes: a create that asks for mounts
(`-v NAME:/t`, `-v /t`, `--volumes-from`) and `rm` with and without `-v`, judged by
_check_mounts_move. The volume invariants of every state (_check_volumes,
_check_volume_users): the volume store holds exactly the volumes of the log; every user of a
volume is a live container; every live container's recorded volume mount points name a live
volume that lists it, at that target, and nothing else lists it. Per move: no volume is
removed while a container has it mounted (a `volume rm` of a used volume is refused with
only a CommandRejected), and an anonymous volume goes exactly when the last container
using it is removed with `-v`.
"""

from __future__ import annotations

import copy
import itertools
import signal
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any

from core import lifecycle
from core import networks as ipam
from core.engine import Engine, networks
from core.errors import Ambiguous, BadInput, Conflict, IllegalMove, LaminaError, NotFound
from core.memory import (
    SURVIVABLE,
    CountingIds,
    FakeProcess,
    MemoryAttachment,
    MemoryEventLog,
    MemoryLayerStore,
    MemoryNetworkHost,
    MemoryRegistry,
    MemoryRuntime,
    MemoryVolumeStore,
    TickingClock,
    memory_engine,
)
from core.model import Container, Image, Layer, Network, Volume, World, in_member_order
from core.mounts import recorded
from core.references import is_id_prefix, normalize_tag
from events.envelope import Recorded
from tests.model import transfer

DEFAULT_NETWORK = ipam.DEFAULT_NETWORK  # `bridge`: lamina0
PREDEFINED = networks.PREDEFINED
SLOTS: tuple[str, ...] = ("c0", "c1", "c2")
SIGKILL = int(signal.SIGKILL)
SIGHUP = int(signal.SIGHUP)
MAX_IMAGES = 4  # commit only while fewer images than this exist: keeps the space finite
SNAP = "snap"  # the tag `commit --tag` moves from image to image
CMD = ("sh",)
LIVE = ("running", "paused")

# The lifecycle trigger each container command asks the machine about.
TRIGGERS = {"create": "create", "start": "start", "stop": "stop", "pause": "pause",
            "unpause": "unpause", "exit": "exit", "restart": "restart", "commit": "commit",
            "exec": "exec"}
CONTAINER_OPS = (*TRIGGERS, "kill", "rm")
VOLUME_OPS = ("volume create", "volume rm", "volume prune")  # commands, each recorded
VOLUME_NAMES = ("v0", "v1")  # named volumes (docker's rule: two characters at least)
NETWORK_OPS = ("network create", "network rm", "network connect", "network disconnect")
MAX_ANONYMOUS = 3  # make an anonymous volume only while fewer than this exist


# --- the bounded world -------------------------------------------------------------------


def seed(engine: Engine) -> dict[str, str]:
    """Two images: `base` (imported) and `derived` (a commit of a container on base, whose
    container is then removed). Returns {image id: fixed name} for the abstraction."""
    base = engine.import_image({"bin/sh": "ash", "etc/os-release": "lamina"}, "base")
    engine.create("base", CMD, "seed")
    derived = engine.commit("seed", "derived")
    engine.rm("seed")
    return {base: "base", derived: "derived"}


def seeded_engine(log: Any = None) -> tuple[Engine, dict[str, str]]:
    """An Engine on the in-memory ports (or on `log`), seeded with the two images."""
    engine = memory_engine(user="model")
    if log is not None:
        engine = replace(engine, log=log)
    return engine, seed(engine)


# --- steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One command. `image` is the target image's id (for the checks); `ref` is what is
    typed (a tag or the id)."""

    op: str
    slot: str | None = None
    ref: str | None = None
    image: str | None = None
    force: bool = False
    sig: int = SIGKILL
    tag: str | None = None
    archive: bytes | None = field(default=None, repr=False)  # what `load` reads
    volume: str | None = None  # volume commands' volume (None: an anonymous one)
    # create's mounts: `-v NAME:/t` (binds), `-v /t` (anonymous volumes), `--volumes-from`
    binds: tuple[str, ...] = ()
    anonymous: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    volumes: bool = False  # rm -v: the container's anonymous volumes nobody else uses too
    # create's `--network` (None: docker's default, the bridge) and `-p`s; the network of
    # network create, rm, connect and disconnect (create's `--internal`: internal)
    network: str | None = None
    publish: tuple[str, ...] = ()
    internal: bool = False

    @property
    def config(self) -> dict[str, Any] | None:
        """create's mount options, as the CLI and the API record them (None: no mounts)."""
        config: dict[str, Any] = {key: list(value) for key, value in (
            ("binds", self.binds), ("volumes", self.anonymous),
            ("volumes_from", self.volumes_from), ("port_bindings", self.publish)) if value}
        if self.network is not None:
            config["network"] = self.network
        return config or None

    @property
    def trigger(self) -> str:
        if self.op == "kill":
            return "signal" if self.sig in SURVIVABLE else "kill"
        if self.op == "rm":
            return "rm_force" if self.force else "rm"
        return TRIGGERS[self.op]

    def __str__(self) -> str:
        ref = self.ref if self.ref is None or len(self.ref) < 64 else self.ref[:12]
        match self.op:
            case "create":
                opts = "".join([*(f" -v {m}" for m in (*self.binds, *self.anonymous)),
                                *(f" --volumes-from {c}" for c in self.volumes_from),
                                f" --network {self.network}" if self.network else "",
                                *(f" -p {p}" for p in self.publish)])
                return f"create --name {self.slot}{opts} {ref}"
            case "kill":
                return f"kill -s {signal.Signals(self.sig).name} {self.slot}"
            case "rm":
                return f"rm{' -f' if self.force else ''}{' -v' if self.volumes else ''} " \
                    f"{self.slot}"
            case "commit":
                return f"commit {self.slot}{' ' + self.tag if self.tag else ''}"
            case "rmi":
                return f"rmi{' -f' if self.force else ''} {ref}"
            case "tag":
                return f"tag {ref} {self.tag}"
            case "save" | "load" | "push" | "pull":
                return f"{self.op} {ref}"
            case "volume create":
                return f"volume create {self.volume or '(anonymous)'}"
            case "volume rm":
                return f"volume rm{' -f' if self.force else ''} {_short(self.volume)}"
            case "volume prune":
                return f"volume prune{' -a' if self.force else ''}"
            case "network create":
                return f"network create{' --internal' if self.internal else ''} {self.network}"
            case "network rm":
                return f"network rm {self.network}"
            case "network connect" | "network disconnect":
                return f"{self.op} {self.network} {self.slot}"
            case _:
                return f"{self.op} {self.slot}"


def _short(name: str | None) -> str:
    return (name or "")[:12]


def image_ref(image: Image, by_tag: bool = True) -> str:
    """What a user types for `image`: its first tag (without :latest), else its id."""
    if by_tag and image.tags:
        return image.tags[0].removesuffix(":latest")
    return image.id


def perform(engine: Engine, step: Step, registry: MemoryRegistry | None = None) -> Any:
    """Run one step on the engine (the exit step first makes the process end by itself);
    push and pull talk to `registry`."""
    slot = step.slot or ""
    if step.op in transfer.OPS:
        return transfer.perform(engine, step.op, step.ref or "", step.archive, registry)
    match step.op:
        case "create":
            return engine.create(step.ref or "", CMD, slot, config=step.config)
        case "start":
            return engine.start(slot)
        case "stop":
            return engine.stop(slot, timeout=0)
        case "kill":
            return engine.kill(slot, step.sig)
        case "pause":
            return engine.pause(slot)
        case "unpause":
            return engine.unpause(slot)
        case "exit":
            try:
                c: Container | None = engine.container(slot)  # as exited() resolves it
            except LaminaError:
                c = None
            proc = engine.runtime.procs.get(c.id) if c is not None else None
            if proc is not None and proc.alive:
                engine.runtime.finish(c.id, 3)  # the process ends by itself (a frozen one:
                # as a reboot or a killed monitor would take it)...
            return engine.exited(slot, 3)  # ...and the monitor reports it
        case "restart":
            return engine.restart(slot, timeout=0)
        case "rm":
            return engine.rm(slot, force=step.force, volumes=step.volumes)
        case "commit":
            return engine.commit(slot, step.tag)
        case "exec":
            return engine.exec(slot, ["true"])
        case "rmi":
            return engine.rmi(step.ref or "", force=step.force)
        case "tag":
            return engine.tag(step.ref or "", step.tag or "")
        case "volume create":
            return engine.volume_create(step.volume)
        case "volume rm":
            return engine.volume_rm([step.volume or ""], force=step.force)
        case "volume prune":
            return engine.volume_prune(all=step.force)
        case "network create":
            return engine.network_create(step.network or "", internal=step.internal)
        case "network rm":
            return engine.network_rm(step.network or "")
        case "network connect":
            return engine.network_connect(step.network or "", slot)
        case "network disconnect":
            return engine.network_disconnect(step.network or "", slot)
    raise ValueError(f"unknown op {step.op!r}")


# --- observing a state -------------------------------------------------------------------


def last_seq(log: Any) -> int:
    if isinstance(log, MemoryEventLog):
        return len(log.records)
    return log.last_seq()


def live_world(log: Any) -> World:
    """The world as the log's read model has it (the memory log's own World, or the SQLite
    read-model tables)."""
    if isinstance(log, MemoryEventLog):
        return log.world
    return World(containers={c.id: c for c in log.containers()},
                 images={i.id: i for i in log.images()},
                 layers={la.id: la for la in log.layers()},
                 volumes={v.id: v for v in log.volumes()},
                 networks={n.id: n for n in log.networks()}, seq=log.last_seq())


def replay(records: Iterable[Recorded], world: World | None = None) -> World:
    """Fold records into a fresh World (or onto a copy of `world`)."""
    out = World() if world is None else copy_world(world)
    for rec in records:
        out.apply(rec)
    return out


def copy_world(world: World) -> World:
    return World(dict(world.containers), dict(world.images), dict(world.layers),
                 dict(world.volumes), dict(world.networks), seq=world.seq)


def proc_view(engine: Engine) -> dict[str, tuple]:
    return {cid: (p.pid, p.alive, p.frozen, tuple(p.pending), p.exit_code)
            for cid, p in engine.runtime.procs.items()}


def store_view(engine: Engine) -> tuple:
    store = engine.layers
    return ({k: dict(v) for k, v in store.layers.items()},
            {k: dict(v) for k, v in store.rw.items()})


def volume_view(engine: Engine) -> dict[str, dict[str, str]]:
    return {k: dict(v) for k, v in engine.volumes.data.items()}


@dataclass
class Snapshot:
    """What a step may change, observed before it runs."""

    seq: int
    containers: dict[str, Container]
    images: dict[str, Image]
    layers: dict[str, Layer]
    procs: dict[str, tuple]
    store: tuple
    volumes: dict[str, Volume]
    volume_data: dict[str, dict[str, str]]
    by_name: dict[str, Container] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    links: frozenset[tuple[str, str]] = frozenset()  # the runtime's (container, network)
    bridges: tuple[str, ...] = ()  # the network host's

    @classmethod
    def of(cls, engine: Engine) -> Snapshot:
        w = live_world(engine.log)
        return cls(last_seq(engine.log), dict(w.containers), dict(w.images), dict(w.layers),
                   proc_view(engine), store_view(engine), dict(w.volumes),
                   volume_view(engine), {c.name: c for c in w.containers.values()},
                   dict(w.networks), frozenset(getattr(engine.runtime, "links", ())),
                   tuple(engine.networks.names()))


@dataclass
class Outcome:
    step: Step
    error: LaminaError | None
    new: list[Recorded]
    result: Any = None
    after: Snapshot | None = None  # the state the step left, observed for its checks


class ModelViolation(AssertionError):
    """An invariant failed; the message says which, and where."""


def _fail(message: str) -> None:
    raise ModelViolation(message)


def run_step(engine: Engine, step: Step, registry: MemoryRegistry | None = None,
             before: Snapshot | None = None) -> Outcome:
    """Perform `step` and check the per-move rules (not the state invariants). `before`:
    the engine's Snapshot when the caller has it already (the BFS's clones of one state all
    start from that state's, its `after`: observing a state twice cost ~8% of the BFS)."""
    if before is None:
        before = Snapshot.of(engine)
    error: LaminaError | None = None
    result = None
    try:
        result = perform(engine, step, registry)
    except LaminaError as err:
        error = err
    after = Snapshot.of(engine)
    new = list(engine.log.read(after=before.seq))
    check_move(step, before, after, error, new)
    if step.op in transfer.OPS:
        problem = transfer.check(engine, step.op, step.ref or "", step.image, step.archive,
                                 registry, error, result)
        if problem:
            _fail(f"{step}: {problem}")
    return Outcome(step, error, new, result, after)


def check_move(step: Step, before: Snapshot, after: Snapshot, error: LaminaError | None,
               new: list[Recorded]) -> None:
    rejected = [r for r in new if r.type == "CommandRejected"]
    if error is not None:
        if [r.type for r in new] != transfer.rejected_leaves(step.op):
            _fail(f"refused {step} ({error!r}) appended {[r.type for r in new]}, "
                  "not exactly one CommandRejected")
        for what in ("containers", "images", "layers", "procs", "store", "volumes",
                     "volume_data", "networks", "links", "bridges"):
            if getattr(before, what) != getattr(after, what):
                _fail(f"refused {step} ({error!r}) changed the {what}")
    elif rejected:
        _fail(f"{step} succeeded but appended {len(rejected)} CommandRejected")
    # the invariant of every move: no volume removed while it is in use (followed through
    # the move's records: an rm unmounts its volumes before it removes them)
    users = {name: set(v.users) for name, v in before.volumes.items()}
    for rec in new:
        if rec.type == "VolumeMounted":
            users.setdefault(rec.target, set()).add(rec.data["container"])
        elif rec.type == "VolumeUnmounted":
            users.get(rec.target, set()).discard(rec.data["container"])
        elif rec.type == "VolumeRemoved" and users.get(rec.target):
            _fail(f"{step} removed volume {rec.target[:12]}, which containers "
                  f"{sorted(users[rec.target])} use")
    if step.op in VOLUME_OPS:
        _check_volume_move(step, before, after, error, new)
        if after.containers != before.containers:
            _fail(f"{step} changed a container")
        return
    if step.op in ("create", "rm"):
        if error is None:
            _check_mounts_move(step, before, after, new)
    elif (after.volumes, after.volume_data) != (before.volumes, before.volume_data):
        _fail(f"{step} changed the volumes")
    if step.op in NETWORK_OPS:
        _check_network_move(step, before, after, error, new)
        return
    if (after.networks, after.bridges) != (before.networks, before.bridges):
        _fail(f"{step} changed the networks")

    if step.op in CONTAINER_OPS:
        _check_container_move(step, before, after, error)
    else:
        if after.containers != before.containers:
            _fail(f"{step} changed a container")
        if step.op == "rmi":
            _check_rmi(step, before, after, error)


def resolve(snap: Snapshot, ref: str) -> tuple[Container | None, type[LaminaError]]:
    """The container `ref` names, as the engine resolves it: by name, then by unique id
    prefix (docker's order). The slot names c0-c2 are hex, so `start c2` with no container
    named c2 acts on a container whose id starts with c2. Else the error to expect."""
    found = snap.by_name.get(ref)
    if found is None and is_id_prefix(ref):
        matches = [c for c in snap.containers.values() if c.id.startswith(ref)]
        if len(matches) > 1:
            return None, Ambiguous
        found = matches[0] if matches else None
    return found, NotFound


def _missing_source(snap: Snapshot, step: Step) -> type[LaminaError] | None:
    """The error a create's --volumes-from of no (or no single) container gets, if any."""
    for spec in step.volumes_from:
        found, wanted = resolve(snap, spec.partition(":")[0])
        if found is None:
            return wanted
    return None


def _image_exists(snap: Snapshot, step: Step) -> bool:
    if step.image is not None:
        return step.image in snap.images
    ref = step.ref or ""
    try:
        tag = normalize_tag(ref)
    except LaminaError:
        tag = ""
    return any(i.id == ref or tag in i.tags for i in snap.images.values())


def _check_container_move(step: Step, before: Snapshot, after: Snapshot,
                          error: LaminaError | None) -> None:
    slot = step.slot or ""
    wanted: type[LaminaError] = IllegalMove
    if step.op == "create":
        target = None
        holder = before.by_name.get(slot)  # a new name: never a prefix
        was = holder.state if holder else "image"
        made = [c for cid, c in after.containers.items() if cid not in before.containers]
        now = made[0].state if made else was
        missing = _missing_source(before, step)
        if step.network is not None and _network(before, step.network) is None:
            expect, wanted = None, NotFound  # judged first: docker's `network X not found`
        elif not _image_exists(before, step):
            expect, wanted = None, NotFound
        else:
            expect, wanted = lifecycle.destination(was, "create"), Conflict
            if expect is not None and missing is not None:  # --volumes-from nothing
                expect, wanted = None, missing
        if error is None and not (len(made) == 1 and made[0].name == slot):
            _fail(f"{step} made {[c.name for c in made]}")
    else:
        target, wanted_missing = resolve(before, slot)
        if target is None:  # nothing to move, whatever the machine says (rm -f is legal)
            was = now = "image"
            expect, wanted = None, wanted_missing
        else:
            was = target.state
            moved = after.containers.get(target.id)
            now = moved.state if moved is not None else "image"
            expect = lifecycle.destination(was, step.trigger)
            if expect is not None and step.trigger in ("start", "restart"):
                refusal = _lease_refusal(before, target)
                if refusal is not None:  # a member network gone, a host port taken
                    expect, wanted = None, refusal
    if expect is None:
        if error is None:
            _fail(f"{step}: the machine forbids {step.trigger!r} from {was!r}, yet it "
                  f"succeeded ({was} -> {now})")
        if not isinstance(error, wanted):
            _fail(f"{step} from {was!r} was refused with {error!r}, expected a "
                  f"{wanted.__name__}")
    else:
        if error is not None:
            _fail(f"{step}: {step.trigger!r} from {was!r} is legal but was refused: {error!r}")
        if now != expect:
            _fail(f"{step}: {step.trigger!r} from {was!r} should lead to {expect!r}, "
                  f"led to {now!r}")
    for cid in set(before.containers) | set(after.containers):
        if target is not None and cid == target.id:
            continue
        if step.op == "create" and cid not in before.containers:
            continue
        if before.containers.get(cid) != after.containers.get(cid):
            _fail(f"{step} changed another container, {cid[:12]}")
    if target is not None and error is None and step.trigger in ("start", "restart"):
        _check_leased(step, before, after.containers[target.id])


def _check_rmi(step: Step, before: Snapshot, after: Snapshot,
               error: LaminaError | None) -> None:
    target = before.images[step.image or ""]
    kids = [i for i in before.images.values() if i.parent == target.id]
    users = [c for c in before.containers.values() if c.image == target.id]
    by_id = (step.ref or "") == target.id
    tag_only = not by_id and len(target.tags) > 1  # with or without -f: only that tag
    many_by_id = by_id and len(target.tags) > 1 and not step.force  # docker: must be forced
    if error is None:
        still = after.images.get(target.id)
        if many_by_id:
            _fail(f"{step} removed an image of several tags {target.tags} by id without -f")
        if tag_only:
            if still is None or len(still.tags) != len(target.tags) - 1:
                _fail(f"{step} should only have dropped one tag of {target.tags}")
        elif still is not None and not (still.removed and not still.tags):
            _fail(f"{step} succeeded but the image is still a tagged or top-level image")
        elif still is not None and not (kids or users):
            _fail(f"{step} kept an image nothing needs")
        elif not step.force and (kids or users):
            _fail(f"{step} removed an image in use (by {len(users)} containers, "
                  f"{len(kids)} child images) without -f")
    else:
        if step.force:
            _fail(f"{step} was refused: {error!r}")
        if tag_only:
            _fail(f"{step} names one of the tags {target.tags}: it should only have dropped "
                  f"that tag, but was refused: {error!r}")
        if not (kids or users or many_by_id):
            _fail(f"{step} of an image nothing uses was refused: {error!r}")
        if not isinstance(error, Conflict):
            _fail(f"{step} was refused with {error!r}, expected a Conflict")


def _check_volume_move(step: Step, before: Snapshot, after: Snapshot,
                       error: LaminaError | None, new: list[Recorded]) -> None:
    """docker's answers to volume create, rm and prune (the names here are all valid)."""
    name = step.volume
    gone = sorted(set(before.volumes) - set(after.volumes))
    made = sorted(set(after.volumes) - set(before.volumes))
    changed = [n for n in after.volumes if n in before.volumes
               and after.volumes[n] != before.volumes[n]]
    if changed:
        _fail(f"{step} changed the volumes {changed}")
    if step.op == "volume create":
        if error is not None:
            _fail(f"{step} was refused: {error!r}")
        if gone:
            _fail(f"{step} removed {gone}")
        if name in before.volumes:  # docker: the volume as it is, nothing recorded
            if new or made:
                _fail(f"{step} of an existing volume recorded {[r.type for r in new]}")
            return
        if len(made) != 1 or (name is not None and made != [name]):
            _fail(f"{step} made {made}")
        v = after.volumes[made[0]]
        if v.anonymous != (name is None) or v.users or v.driver != "local":
            _fail(f"{step} made {v}")
        if after.volume_data.get(v.id) != {} or [r.type for r in new] != ["VolumeCreated"]:
            _fail(f"{step}: data {after.volume_data.get(v.id)!r}, records "
                  f"{[r.type for r in new]}")
        return
    if made:
        _fail(f"{step} made {made}")
    if step.op == "volume rm":
        was = before.volumes.get(name or "")
        if was is None:
            wanted: type[LaminaError] | None = None if step.force else NotFound
        else:
            wanted = Conflict if was.users else None
        if wanted is None and error is not None:
            _fail(f"{step} was refused: {error!r}")
        if wanted is not None and not isinstance(error, wanted):
            _fail(f"{step} answered {error!r}, expected a {wanted.__name__}")
        expect = [name] if was is not None and not was.users else []
    else:  # prune: the unused ones, only anonymous ones unless -a
        if error is not None:
            _fail(f"{step} was refused: {error!r}")
        expect = sorted(n for n, v in before.volumes.items()
                        if not v.users and (step.force or v.anonymous))
    if gone != expect:
        _fail(f"{step} removed {gone}, expected {expect}")
    if [r.type for r in new] != (["VolumeRemoved"] * len(expect) if error is None else
                                 ["CommandRejected"]):
        _fail(f"{step} recorded {[r.type for r in new]}")
    if set(after.volume_data) != set(before.volume_data) - set(expect):
        _fail(f"{step} left the data of {sorted(set(after.volume_data) & set(expect))}")


def _check_mounts_move(step: Step, before: Snapshot, after: Snapshot,
                       new: list[Recorded]) -> None:
    """The volumes a create or rm that succeeded changed, and the records it left."""
    made_volumes = sorted(set(after.volumes) - set(before.volumes))
    gone_volumes = sorted(set(before.volumes) - set(after.volumes))
    types = Counter(r.type for r in new if r.type.startswith("Volume"))  # (+: no zeros)
    if step.op == "create":
        made = [c for cid, c in after.containers.items() if cid not in before.containers]
        c = made[0]  # one, named as asked: _check_container_move
        points = [(m.source, m.target, m.read_only) for m in recorded(c.config)
                  if m.type == "volume"]
        named = {spec.split(":")[0] for spec in step.binds}
        anonymous = {source for source, _, _ in points if source not in before.volumes
                     and source not in named}
        expect = _expected_points(step, before)
        got = sorted(("(anonymous)" if s in anonymous else s, t, ro) for s, t, ro in points)
        if got != expect:
            _fail(f"{step} recorded the volume mounts {got}, expected {expect}")
        wanted_made = sorted({s for s, _, _ in points if s not in before.volumes})
        if made_volumes != wanted_made or gone_volumes:
            _fail(f"{step} made the volumes {made_volumes} (removed {gone_volumes}), "
                  f"expected {wanted_made}")
        for name in made_volumes:
            v = after.volumes[name]
            if v.anonymous != (name in anonymous) or v.driver != "local":
                _fail(f"{step} made {v}")
        for name, v in after.volumes.items():
            targets = sorted(t for s, t, _ in points if s == name)
            was = {k: sorted(t) for k, t in before.volumes[name].users.items()} \
                if name in before.volumes else {}
            if {k: sorted(t) for k, t in v.users.items()} != \
                    ({**was, c.id: targets} if targets else was):
                _fail(f"{step}: volume {name[:12]} has the users {v.users}, was {was}, "
                      f"the new container mounts it at {targets}")
        if types != +Counter({"VolumeCreated": len(made_volumes),
                              "VolumeMounted": len(points)}):
            _fail(f"{step} recorded {dict(types)} for {len(made_volumes)} new volumes and "
                  f"{len(points)} mounts")
    else:  # rm: the container's volumes lose it; -v removes the anonymous ones it alone used
        c = next(c for cid, c in before.containers.items() if cid not in after.containers)
        used = {name: v for name, v in before.volumes.items() if c.id in v.users}
        expect_gone = sorted(name for name, v in used.items() if step.volumes
                             and v.anonymous and set(v.users) == {c.id})
        if made_volumes or gone_volumes != expect_gone:
            _fail(f"{step} removed the volumes {gone_volumes} (made {made_volumes}), "
                  f"expected {expect_gone} (it used {sorted(used)})")
        for name, v in after.volumes.items():
            was = before.volumes[name]
            if v.users != {k: t for k, t in was.users.items() if k != c.id}:
                _fail(f"{step}: volume {name[:12]} has the users {v.users}, was {was.users}")
        if types != +Counter({"VolumeUnmounted": len(used),
                              "VolumeRemoved": len(expect_gone)}):
            _fail(f"{step} recorded {dict(types)} for {len(used)} volumes used, "
                  f"{len(expect_gone)} to remove")
    if set(after.volume_data) != (set(before.volume_data) | set(made_volumes)) \
            - set(gone_volumes):
        _fail(f"{step}: volume data {sorted(after.volume_data)} for the volumes "
              f"{sorted(after.volumes)}")


def _expected_points(step: Step, before: Snapshot) -> list[tuple[str, str, bool]]:
    """The volume mount points a create asks for, by docker's precedence: its own `-v`
    first, then what --volumes-from brings, then its anonymous volumes where nothing is
    mounted yet. Sorted; an anonymous volume's name is `(anonymous)`."""
    out = []
    for spec in step.binds:
        name, target = spec.split(":")[:2]
        out.append((name, target, spec.endswith(":ro")))
    taken = {t for _, t, _ in out}
    for spec in step.volumes_from:
        ref, _, mode = spec.partition(":")
        source, _ = resolve(before, ref)
        assert source is not None
        for m in recorded(source.config):
            if m.type == "volume" and m.target not in taken:
                taken.add(m.target)
                out.append((m.source, m.target, m.read_only if not mode else mode == "ro"))
    out += [("(anonymous)", t, False) for t in step.anonymous if t not in taken]
    return sorted(out)


# --- networks: membership, leases, the commands -------------------------------------------


def _network(snap: Snapshot | World, name: str) -> Network | None:
    """The network `name` names (the default bridge, or a user-defined one), as the log
    has it before a move; None for none (`host` and `none` hold no leases: not here)."""
    if name == DEFAULT_NETWORK:
        return PREDEFINED[DEFAULT_NETWORK]
    return next((n for n in snap.networks.values() if n.name == name), None)


def _holders(snap: Snapshot | World, but: str = "") -> list[Container]:
    return [c for c in snap.containers.values() if c.state in LIVE and c.id != but]


def _lease_refusal(before: Snapshot | World, c: Container) -> type[LaminaError] | None:
    """Why a start (or restart) of `c` must be refused, judged from the log alone: a
    member network that is gone (docker's `network X not found`), or a host port it asks
    for that another running container binds (`port is already allocated`)."""
    nets = [_network(before, name) for name in c.networks]
    if any(n is None for n in nets):
        return NotFound
    if not nets or nets[0] is None or nets[0].internal:
        return None  # nothing published from an internal first network
    bound = [ipam.PortBinding(**b) for x in _holders(before, c.id) for b in x.ports]
    for spec in c.config.get("port_bindings") or ():
        ip = spec["host_ip"] or ipam.ANY
        if spec["host_port"] and any(b.proto == spec["proto"] and b.host_port ==
                                     spec["host_port"] and ipam.clashes(b.host_ip, ip)
                                     for b in bound):
            return Conflict
    return None


def _check_leased(step: Step, before: Snapshot, c: Container) -> None:
    """A start's (restart's) leases: an endpoint on each member network, in order, at the
    lowest address no other running container holds there; each `-p` bound as asked (an
    ephemeral one in docker's range), nothing published from an internal network."""
    if c.state not in LIVE:
        return
    if list(c.endpoints) != list(c.networks):
        _fail(f"{step}: endpoints on {list(c.endpoints)}, member of {list(c.networks)}")
    others = _holders(before, c.id)
    for slot, (name, ep) in enumerate(c.endpoints.items()):
        n = _network(before, name)
        assert n is not None
        taken = [x.endpoints[k]["address"] for x in others for k in x.endpoints
                 if x.endpoints[k]["id"] == n.id]
        want = ipam.lease(networks.spec(n), taken)
        if (ep["id"], ep["address"], ep["slot"]) != (n.id, want, slot):
            _fail(f"{step}: leased {ep['address']} (slot {ep['slot']}) on {name}, "
                  f"expected {want} (slot {slot}): the lowest free, with {taken} taken")
    first = _network(before, next(iter(c.networks))) if c.networks else None
    specs = [] if first is None or first.internal else c.config.get("port_bindings") or []
    got = sorted((b["proto"], b["container_port"], b["host_ip"], b["host_port"])
                 for b in c.ports)
    if len(got) != len(specs):
        _fail(f"{step}: published {got} for {specs}")
    for spec, (proto, port, ip, host) in zip(sorted(
            specs, key=lambda s: (s["proto"], s["container_port"])), got, strict=True):
        low, high = ipam.EPHEMERAL_PORTS
        if (proto, port, ip) != (spec["proto"], spec["container_port"],
                                 spec["host_ip"] or ipam.ANY) or \
                not (host == spec["host_port"] if spec["host_port"] else low <= host <= high):
            _fail(f"{step}: bound {ip}:{host}->{port}/{proto} for {spec}")


def _expect(step: Step, error: LaminaError | None, wanted: type[LaminaError] | None) -> None:
    if wanted is None and error is not None:
        _fail(f"{step} was refused: {error!r}")
    if wanted is not None and not isinstance(error, wanted):
        _fail(f"{step} answered {error!r}, expected a {wanted.__name__}")


def _check_network_move(step: Step, before: Snapshot, after: Snapshot,
                        error: LaminaError | None, new: list[Recorded]) -> None:
    """docker's answers to network create, rm, connect and disconnect, and what each
    accepted one changed: the network and its bridge, or one container's membership, its
    endpoint (a running one's, leased at once at the lowest free address, on the runtime
    too) and nothing else."""
    name = step.network or ""
    types = [r.type for r in new]
    n = _network(before, name)
    if step.op in ("network create", "network rm"):
        if after.containers != before.containers or after.links != before.links:
            _fail(f"{step} changed a container")
        if step.op == "network create":
            _expect(step, error, BadInput if name in networks.PREDEFINED
                    else Conflict if n is not None else None)
            if error is None:
                made = [x for nid, x in after.networks.items() if nid not in before.networks]
                if len(made) != 1 or made[0].name != name or made[0].internal != \
                        step.internal or types != ["NetworkCreated"] or set(after.bridges) != \
                        set(before.bridges) | {networks.bridge_of(made[0])}:
                    _fail(f"{step} made {made}, recorded {types}, bridges {after.bridges}")
            return
        used = n is not None and any(ep["id"] == n.id for c in _holders(before)
                                     for ep in c.endpoints.values())
        _expect(step, error, BadInput if name in networks.PREDEFINED else
                NotFound if n is None else Conflict if used else None)
        if error is None:
            assert n is not None
            if set(after.networks) != set(before.networks) - {n.id} or \
                    types != ["NetworkRemoved"] or set(after.bridges) != \
                    set(before.bridges) - {networks.bridge_of(n)}:
                _fail(f"{step} left {sorted(after.networks)}, recorded {types}, bridges "
                      f"{after.bridges}")
        return
    if (after.networks, after.bridges) != (before.networks, before.bridges):
        _fail(f"{step} changed the networks")
    target, missing = resolve(before, step.slot or "")
    member = target is not None and name in target.networks
    wanted: type[LaminaError] | None = None
    if n is None:
        wanted = NotFound
    elif target is None:
        wanted = missing
    elif (target.config.get("network") or "none") in ("none", "host"):
        wanted = BadInput
    elif step.op == "network connect" and member:
        wanted = Conflict
    elif step.op == "network disconnect" and not member:
        wanted = BadInput
    elif not lifecycle.judge(target.state, step.op.split()[1]):
        wanted = IllegalMove
    _expect(step, error, wanted)
    for cid in set(before.containers) | set(after.containers):
        if (target is None or cid != target.id) and \
                before.containers.get(cid) != after.containers.get(cid):
            _fail(f"{step} changed another container, {cid[:12]}")
    if error is not None:
        return
    assert target is not None and n is not None
    c = after.containers[target.id]
    link = (c.id, n.id)
    if step.op == "network connect":
        joined = in_member_order(target.config, {**target.networks, name: {}})
        if list(c.networks) != list(joined) or types != ["ContainerConnected"]:
            _fail(f"{step}: member of {list(c.networks)}, recorded {types}")
        if target.state == "running":
            taken = [x.endpoints[k]["address"] for x in _holders(before, c.id)
                     for k in x.endpoints if x.endpoints[k]["id"] == n.id]
            ep = c.endpoints.get(name) or {}
            slot = max((e["slot"] for e in target.endpoints.values()), default=-1) + 1
            want = ipam.lease(networks.spec(n), taken)
            if (ep.get("id"), ep.get("address"), ep.get("slot")) != (n.id, want, slot) or \
                    after.links != before.links | {link}:
                _fail(f"{step}: endpoint {ep}, expected {want} at slot {slot}; links "
                      f"{sorted(after.links - before.links)}")
        elif c.endpoints != target.endpoints or after.links != before.links:
            _fail(f"{step} of a {target.state} container leased {c.endpoints}")
        return
    if list(c.networks) != [k for k in target.networks if k != name] or \
            name in c.endpoints or types != ["ContainerDisconnected"] or \
            after.links != before.links - {link}:
        _fail(f"{step}: member of {list(c.networks)}, endpoints {list(c.endpoints)}, "
              f"recorded {types}, links {sorted(after.links)}")


# --- the invariants of every state -------------------------------------------------------


def check_world(engine: Engine, replayed: World) -> None:
    """Every invariant of a state. `replayed` is the fold of the whole log so far."""
    live = live_world(engine.log)
    for what in ("containers", "images", "layers", "volumes", "networks"):
        if getattr(replayed, what) != getattr(live, what):
            _fail(f"replaying the log gives other {what} than the live world: "
                  f"{_diff(getattr(replayed, what), getattr(live, what))}")
    _check_processes(engine, live)
    _check_images(engine, live)
    _check_volumes(engine, live)
    _check_volume_users(live)
    _check_leases(engine, live)


@cache
def _assignable(address: str, subnet: str, gateway: str, aux: tuple[str, ...] = ()) -> bool:
    """An address a container may hold on a network: in its subnet, neither the subnet's
    network and broadcast addresses nor the gateway, nor an auxiliary address the network
    holds (cached: a handful of each)."""
    net, addr = ipam.IPv4Network(subnet), ipam.IPv4Address(address)
    return addr in net and addr not in (net.network_address, net.broadcast_address,
                                         ipam.IPv4Address(gateway)) and address not in aux


def _check_leases(engine: Engine, live: World) -> None:
    """The networks' invariants: the network host's bridges are the log's networks'; a
    container that doesn't run holds no lease; one that runs holds an endpoint on each of
    its member networks and on no other, each a network there is (its id, its subnet);
    no address is held twice on one network, no host port twice (core.networks
    .lease_clash, what the read model refuses); nothing published from an internal first
    network; and the runtime's links are exactly the running containers' endpoints."""
    bridges = sorted(networks.bridge_of(n) for n in live.networks.values())
    if engine.networks.names() != bridges:
        _fail(f"bridges {engine.networks.names()}, the log's networks {bridges}")
    by_name = {n.name: n for n in live.networks.values()}
    by_name[DEFAULT_NETWORK] = PREDEFINED[DEFAULT_NETWORK]
    held: set[tuple[str, str]] = set()
    running = []
    for c in live.containers.values():
        if c.state not in LIVE:
            if c.endpoints or c.ports:
                _fail(f"{c.name} is {c.state} but holds {c.endpoints} {c.ports}")
            continue
        running.append(c)
        # a start leases in member order; a connect while running adds the next slot
        if set(c.endpoints) != set(c.networks):
            _fail(f"{c.name} has endpoints on {list(c.endpoints)}, is a member of "
                  f"{list(c.networks)}")
        for name, ep in c.endpoints.items():
            n = by_name.get(name)
            if n is None or n.id != ep["id"]:
                _fail(f"{c.name} holds {ep['address']} on {name} ({ep['id'][:12]}), which "
                      "is gone")
            elif not _assignable(ep["address"], n.subnet, n.gateway,
                                 tuple(sorted(n.aux_addresses.values()))):
                _fail(f"{c.name} holds {ep['address']}, not an address of {n.subnet} "
                      f"(or an auxiliary one: {n.aux_addresses})")
            elif n.ip_range and not (c.networks.get(name) or {}).get("ip") and \
                    ipam.IPv4Address(ep["address"]) not in ipam.IPv4Network(n.ip_range):
                _fail(f"{c.name} was given {ep['address']}, outside {n.name}'s range "
                      f"{n.ip_range}")
            held.add((c.id, ep["id"]))
        first = next(iter(c.endpoints.values()), None)
        if c.ports and (first is None or first["internal"]):
            _fail(f"{c.name} publishes {c.ports} from {first}")
    clash = ipam.lease_clash(running, {n.id for n in by_name.values()})
    if clash is not None:
        _fail(f"a lease held twice: {clash}")
    links = set(getattr(engine.runtime, "links", held))
    if links != held:
        _fail(f"the runtime's links {sorted(links)} are not the running containers' "
              f"endpoints {sorted(held)}")


def _check_volumes(engine: Engine, live: World) -> None:
    """The volume store holds exactly the volumes of the log (made before the log says a
    volume exists, deleted once it says it is gone: never out of step after a command)."""
    if engine.volumes.names() != sorted(live.volumes):
        _fail(f"volume store {engine.volumes.names()} and log {sorted(live.volumes)} "
              "disagree")
    for v in live.volumes.values():
        if v.driver != "local" or v.options:
            _fail(f"volume {v.id[:12]} has driver {v.driver!r}, options {v.options}")


def _points(c: Container) -> list[dict[str, Any]]:
    """A container's recorded mount points as the log has them (core.mounts.recorded's
    documents, without making MountPoints: the invariants read them in every state)."""
    return c.config.get("mount_points") or []


def _check_volume_users(live: World) -> None:
    """Every user of a volume is a live container (a removed one gave its volumes back);
    every live container's recorded volume mount points name a live volume that lists it
    at that target, and no volume lists it elsewhere."""
    for v in live.volumes.values():
        for cid in v.users:
            if cid not in live.containers:
                _fail(f"volume {v.id[:12]} lists container {cid[:12]}, which is gone, as a "
                      "user")
    held: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for v in live.volumes.values():
        for cid, targets in v.users.items():
            held[cid] += [(v.id, t) for t in targets]
    for c in live.containers.values():
        points = sorted((m.get("source", ""), m.get("target", "")) for m in _points(c)
                        if m.get("type") == "volume")
        listed = sorted(held.pop(c.id, []))
        if listed == points:
            continue
        for name, target in points:
            v = live.volumes.get(name)
            if v is None:
                _fail(f"container {c.name} mounts volume {name[:12]} at {target}, which is "
                      "gone")
            elif target not in v.users.get(c.id, ()):
                _fail(f"container {c.name} mounts volume {name[:12]} at {target}, which "
                      f"doesn't list it there: {v.users}")
        _fail(f"the volumes list container {c.name} at {listed}, its mount points are "
              f"{points}")


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k[:12]}: replay {a.get(k)!r} live {b.get(k)!r}" for k in keys)


def _check_processes(engine: Engine, live: World) -> None:
    procs = engine.runtime.procs
    names: set[str] = set()
    for c in live.containers.values():
        if c.name in names:
            _fail(f"two containers named {c.name}")
        names.add(c.name)
        proc = procs.get(c.id)
        if c.state == "paused" and not (proc is not None and proc.alive and proc.frozen):
            _fail(f"{c.name} is paused but its process is {proc}")
        if c.state == "running" and not (proc is not None and proc.alive and not proc.frozen):
            _fail(f"{c.name} is running but its process is {proc}")
        if c.state == "stopped" and proc is not None and proc.alive:
            _fail(f"{c.name} is stopped but its process is alive: {proc}")
        if c.rw_layer not in engine.layers.rw:
            _fail(f"{c.name}'s read-write layer {c.rw_layer} is not in the store")
    for cid, proc in procs.items():
        c = live.containers.get(cid)
        if proc.alive and (c is None or c.state not in LIVE):
            _fail(f"a live process {proc} for {cid[:12]}, which is "
                  f"{c.state if c else 'gone'}")
        if not proc.alive:
            _fail(f"the dead process of {cid[:12]} was never released: {proc}")
    rws = {c.rw_layer for c in live.containers.values()}
    if set(engine.layers.rw) != rws:
        _fail(f"read-write layers without a container: {sorted(set(engine.layers.rw) - rws)}")


def _check_images(engine: Engine, live: World) -> None:
    images, store = live.images, engine.layers.layers
    kids: dict[str, list[Image]] = defaultdict(list)
    for c in live.containers.values():
        if c.image not in images:
            _fail(f"container {c.name} uses image {c.image[:12]}, which is gone")
    for i in images.values():
        if i.parent is not None:
            kids[i.parent].append(i)
            parent = images.get(i.parent)
            if parent is None:
                _fail(f"image {i.id[:12]} has lost its parent image {i.parent[:12]}")
            elif i.layers[:-1] != parent.layers:
                _fail(f"image {i.id[:12]}'s layers don't extend its parent's by one")
        for lid in i.layers:
            if lid not in store:
                _fail(f"layer {lid[:12]} of image {i.id[:12]} is not in the layer store")
            if lid not in live.layers:
                _fail(f"layer {lid[:12]} of image {i.id[:12]} is not in the log's layers")
    for i in images.values():
        if i.removed:
            users = [c for c in live.containers.values() if c.image == i.id]
            if i.tags:
                _fail(f"removed image {i.id[:12]} still has tags {i.tags}")
            if not users and not kids[i.id]:
                _fail(f"removed image {i.id[:12]} is kept though nothing needs it")
    tags = [t for i in images.values() for t in i.tags]
    if len(tags) != len(set(tags)):
        _fail(f"a tag is on two images: {sorted(tags)}")
    used = {lid for i in images.values() for lid in i.layers}
    if set(live.layers) != used:
        _fail(f"layers in the log no image uses: {sorted(set(live.layers) - used)}")
    if set(store) != set(live.layers):
        _fail(f"layer store and log disagree: only in store {sorted(set(store) - used)}, "
              f"only in log {sorted(set(live.layers) - set(store))}")


# --- the abstraction ---------------------------------------------------------------------


@dataclass
class Abstract:
    """A state without ids: the image forest with containers as leaves, slots unnamed.

    `key` is a canonical form of the labelled forest (node: fixed name or `commit`, tags,
    removed; leaves: container states), so states equal up to ids and slot names get one key.
    `image_class` / `slot_class` name the orbits, so commands on symmetric targets run once.
    (volume_abstract's: no images; `volume_class` names the volumes' orbits.)
    """

    key: str
    image_class: dict[str, str]
    slot_class: dict[str, str]
    volume_class: dict[str, str] = field(default_factory=dict)


def abstract(world: World, names: dict[str, str]) -> Abstract:
    images = world.images
    kids: dict[str | None, list[str]] = defaultdict(list)
    for i in images.values():
        kids[i.parent if i.parent in images else None].append(i.id)
    users: dict[str, list[str]] = defaultdict(list)
    for c in world.containers.values():
        users[c.image].append(c.state)
    canon: dict[str, str] = {}

    def subtree(iid: str) -> str:
        i = images[iid]
        label = names.get(iid, "commit") + "{" + ",".join(sorted(i.tags)) + "}"
        label += "!" if i.removed else ""
        parts = sorted([subtree(k) for k in kids[iid]] + users[iid])
        canon[iid] = f"{label}({' '.join(parts)})"
        return canon[iid]

    key = " ".join(sorted(subtree(r) for r in kids[None]))
    image_class: dict[str, str] = {}

    def place(iid: str, path: str) -> None:
        image_class[iid] = f"{path}/{canon[iid]}"
        for k in kids[iid]:
            place(k, image_class[iid])

    for r in kids[None]:
        place(r, "")
    slot_class = {c.name: f"{image_class.get(c.image, c.image)}:{c.state}"
                  for c in world.containers.values()}
    if world.volumes:  # each volume (a name, or `anon`) with the classes of its users
        by_id = {c.id: slot_class[c.name] for c in world.containers.values()}

        def label(v: Volume) -> str:
            users = ",".join(sorted(by_id.get(u, "gone") for u in v.users))
            return f"{'anon' if v.anonymous else v.id}[{users}]"

        key += " | " + " ".join(sorted(label(v) for v in world.volumes.values()))
    return Abstract(key, image_class, slot_class)


def container_steps(slot: str, commit: bool) -> list[Step]:
    steps = [Step("start", slot), Step("stop", slot), Step("kill", slot, sig=SIGKILL),
             Step("kill", slot, sig=SIGHUP), Step("pause", slot), Step("unpause", slot),
             Step("exit", slot), Step("restart", slot), Step("rm", slot),
             Step("rm", slot, force=True), Step("exec", slot)]
    if commit:
        steps += [Step("commit", slot), Step("commit", slot, tag=SNAP)]
    return steps


def steps_for(world: World, shape: Abstract, all_slots: bool = False) -> list[Step]:
    """The commands to try in a state, one per orbit of symmetric targets."""
    by_name = {c.name: c for c in world.containers.values()}
    commit = len(world.images) < MAX_IMAGES
    steps: list[Step] = []
    seen: set[str] = set()
    for slot in SLOTS:
        if slot in by_name:
            cls = shape.slot_class[slot]
            if cls not in seen or all_slots:
                seen.add(cls)
                steps += container_steps(slot, commit)
    images: dict[str, Image] = {}
    for iid in sorted(world.images, key=lambda i: shape.image_class[i]):
        images.setdefault(shape.image_class[iid], world.images[iid])
    empty = [s for s in SLOTS if s not in by_name]
    if empty:  # every empty slot is like every other: use the first
        slot = empty[0]
        steps += [Step("create", slot, image_ref(i), i.id) for i in images.values()]
        # no such container: refused with NotFound (rm -f is a legal move from `image`)
        steps += [Step("start", slot), Step("exit", slot), Step("rm", slot, force=True),
                  Step("commit", slot)]
    taken = [s for s in SLOTS if s in by_name]
    if taken and images:  # the name is in use: refused
        base = next(iter(images.values()))
        steps.append(Step("create", taken[0], image_ref(base), base.id))
    for i in images.values():
        steps += [Step("rmi", ref=image_ref(i), image=i.id),
                  Step("rmi", ref=image_ref(i), image=i.id, force=True),
                  Step("save", ref=image_ref(i), image=i.id)]
    return steps + transfer_steps(world)


def transfer_steps(world: World) -> list[Step]:
    """Load the seeded images' archives, pull `derived` (constants: transfer.fixtures), and
    push SNAP when an image has it (to a copy of the registry: see transfer.py). Pushing
    `base` or `derived` would always push the seeded image: no tag step moves those here."""
    fixed = transfer.fixtures()
    steps = [Step("load", ref=label, archive=data) for label, data in fixed.archives.items()]
    steps.append(Step("pull", ref="derived"))
    if any(f"{SNAP}:latest" in i.tags for i in world.images.values()):
        steps.append(Step("push", ref=SNAP))
    return steps


def volume_steps(world: World, max_anonymous: int = MAX_ANONYMOUS,
                 volume_class: dict[str, str] | None = None) -> list[Step]:
    """The volume commands to try in a state: create (each name, and an anonymous one while
    fewer than `max_anonymous` exist), rm with and without -f of each volume there is (used
    or not; once per orbit of `volume_class`) and of each name there isn't, prune with and
    without -a."""
    steps = [Step("volume create", volume=name) for name in VOLUME_NAMES]
    if sum(v.anonymous for v in world.volumes.values()) < max_anonymous:
        steps.append(Step("volume create"))
    for name in VOLUME_NAMES:
        if name not in world.volumes:  # no such volume: refused, and -f is no error
            steps += [Step("volume rm", volume=name), Step("volume rm", volume=name,
                                                            force=True)]
    classes: set[str] = set()
    for v in sorted(world.volumes.values(), key=lambda v: v.id):
        cls = (volume_class or {}).get(v.id, v.id)
        if cls not in classes:
            classes.add(cls)
            steps += [Step("volume rm", volume=v.id),
                      Step("volume rm", volume=v.id, force=True)]
    return steps + [Step("volume prune"), Step("volume prune", force=True)]


@dataclass(frozen=True)
class Mounts:
    """What a create of the volume world asks for: `-v NAME:/t` (binds), `-v /t`
    (anonymous), and `--volumes-from` each container there is (`source` "": as it has them,
    "ro": read-only) or none (None)."""

    binds: tuple[str, ...] = ()
    anonymous: tuple[str, ...] = ()
    source: str | None = None


@dataclass(frozen=True)
class VolumeWorld:
    """The bounds of test_exhaustive's volume search."""

    slots: tuple[str, ...]
    creates: tuple[Mounts, ...]
    max_anonymous: int = MAX_ANONYMOUS  # a step that makes one only while fewer exist
    force_rm: bool = False  # also `rm -f -v` of a running (or paused) container
    pause: bool = False  # also pause a running container, unpause a paused one


# `make test`'s: three slots, creates with a named volume, a named and an anonymous one, an
# anonymous one, and the volumes of another container; pause, unpause, rm -f -v
VOLUME_WORLD = VolumeWorld(SLOTS, (Mounts(("v0:/data",)), Mounts(("v1:/data",), ("/anon",)),
                                   Mounts((), ("/anon",)), Mounts(source="")),
                           force_rm=True, pause=True)
# LAMINA_SOAK=1's: four slots; creates also with no mounts, two named volumes (one filled
# from the image's /etc), two anonymous ones, a bind over one of the source's targets and
# the rest of its volumes read-only
SOAK_VOLUME_WORLD = replace(VOLUME_WORLD, slots=(*SLOTS, "c3"), creates=(
    *VOLUME_WORLD.creates, Mounts(), Mounts(("v0:/data", "v1:/etc")),
    Mounts((), ("/anon", "/anon2")), Mounts(("v1:/data",), ("/anon2",), source="ro")))


def volume_world_steps(world: World, shape: Abstract,
                       bounds: VolumeWorld = VOLUME_WORLD) -> list[Step]:
    """The volume world (test_exhaustive's second search): containers on `base`, each
    made with one of the `bounds`' mounts, started and stopped, removed with and without
    -v, and every volume command between them. A command is tried once per orbit of
    symmetric targets (containers, volumes: `shape` is volume_abstract's)."""
    steps = volume_steps(world, bounds.max_anonymous, shape.volume_class)
    taken = {c.name: c for c in world.containers.values()}
    orbits: dict[str, str] = {}  # one container of each orbit: its slot
    for slot in sorted(taken):
        orbits.setdefault(shape.slot_class.get(slot, slot), slot)
    representatives = sorted(orbits.values())
    empty = [s for s in bounds.slots if s not in taken]
    anonymous = sum(v.anonymous for v in world.volumes.values())
    if empty:
        base = next(i for i in world.images.values() if "base:latest" in i.tags)
        for m in bounds.creates:
            if anonymous + len(m.anonymous) > bounds.max_anonymous:
                continue
            sources = [()] if m.source is None else \
                [(f"{name}:{m.source}" if m.source else name,) for name in representatives]
            steps += [Step("create", empty[0], "base", base.id, binds=m.binds,
                           anonymous=m.anonymous, volumes_from=s) for s in sources]
    for slot in representatives:
        c = taken[slot]
        steps += [Step("stop" if c.state in LIVE else "start", slot), Step("rm", slot),
                  Step("rm", slot, volumes=True)]
        if bounds.pause and c.state in LIVE:
            steps.append(Step("pause" if c.state == "running" else "unpause", slot))
        if bounds.force_rm and c.state in LIVE:
            steps.append(Step("rm", slot, force=True, volumes=True))
    return steps


def volume_abstract(world: World, names: dict[str, str]) -> Abstract:
    """The volume world's states without ids: each container's image, state and volume
    mounts, each volume's users, with the anonymous volumes' random names and the slots'
    names replaced by their places in the least of the orders of the containers (exact: two
    states get one key only if a renaming of slots and anonymous volumes maps one onto the
    other). Only orders sorted by what no renaming changes are tried. The images are the
    seeded two, which no step of this world changes. The orbits: two containers (two
    anonymous volumes) are symmetric when some least order puts them at the same place
    (gives them the same name); the unused anonymous volumes are all alike."""
    volumes = world.volumes
    anonymous = {name for name, v in volumes.items() if v.anonymous and name not in VOLUME_NAMES}
    shapes = []
    for c in world.containers.values():
        mounts = sorted((m.get("target", ""), m.get("type", ""), m.get("source", ""),
                         bool(m.get("read_only"))) for m in _points(c))
        plain = f"{names.get(c.image, c.image)}:{c.state}(" + " ".join(
            f"{kind}:{'#' if source in anonymous else source}:{target}{':ro' if ro else ''}"
            for target, kind, source, ro in mounts) + ")"
        shapes.append((plain, c.id, [source for _, _, source, _ in mounts
                                     if source in anonymous]))
    shapes.sort()
    users = [(v.id, v.anonymous, [(cid, t) for cid, ts in v.users.items() for t in ts])
             for v in volumes.values()]
    groups = [list(g) for _, g in itertools.groupby(shapes, key=lambda x: x[0])]
    best: str | None = None
    orders: list[tuple[list[tuple[str, str, list[str]]], dict[str, str]]] = []  # the least
    for chosen in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = [x for group in chosen for x in group]
        place = {cid: str(n) for n, (_, cid, _) in enumerate(order)}
        anon: dict[str, str] = {}
        parts = []
        for plain, _, sources in order:
            refs = [anon.setdefault(source, f"#{len(anon)}") for source in sources]
            parts.append(f"{plain}{','.join(refs)}")
        listed = []
        for name, anonymous_flag, pairs in users:
            label = anon.get(name) or ("anon" if name in anonymous else name)
            who = sorted(place.get(cid, "gone") + t for cid, t in pairs)
            listed.append(f"{label}{'*' if anonymous_flag else ''}[{','.join(who)}]")
        key = f"{' '.join(parts)} | {' '.join(sorted(listed))}"
        if best is None or key < best:
            best, orders = key, [(order, anon)]
        elif key == best:
            orders.append((order, anon))
    slot_of = {c.id: c.name for c in world.containers.values()}
    places: dict[str, int] = {}
    labels: dict[str, int] = {}
    for order, anon in orders:
        for n, (_, cid, _) in enumerate(order):
            places[slot_of[cid]] = min(places.get(slot_of[cid], n), n)
        for name, label in anon.items():
            labels[name] = min(labels.get(name, int(label[1:])), int(label[1:]))
    volume_class = {name: f"#{labels[name]}" if name in labels
                    else ("anon" if name in anonymous else name) for name in volumes}
    images = " ".join(sorted(f"{names.get(i.id, 'commit')}{sorted(i.tags)}{i.removed}"
                             for i in world.images.values()))
    return Abstract(f"{images} || {best}", {}, {slot: f"@{n}" for slot, n in places.items()},
                    volume_class)


def clone(engine: Engine) -> Engine:
    """A deep copy of an engine on the in-memory ports, made field by field (copy.deepcopy
    took 45% of the BFS's time). The memory log's records are frozen, and its World and
    versions are replaced on append, never mutated: those are shared. The BFS checks that
    expanding a state leaves it as it was, so a change to that is caught. When a port has
    types or fields this doesn't know, it falls back to copy.deepcopy."""
    log, store, runtime, volumes = engine.log, engine.layers, engine.runtime, engine.volumes
    nets = engine.networks
    known = (type(log) is MemoryEventLog and type(store) is MemoryLayerStore
             and type(runtime) is MemoryRuntime and type(volumes) is MemoryVolumeStore
             and type(nets) is MemoryNetworkHost
             and type(engine.ids) is CountingIds
             and type(store.ids) is CountingIds and type(engine.clock) is TickingClock
             and type(engine) is Engine and _shapes_known()
             and vars(log).keys() == {"records", "world", "versions"})
    if not known:
        return copy.deepcopy(engine)
    new_log = MemoryEventLog.__new__(MemoryEventLog)
    new_log.records, new_log.world, new_log.versions = list(log.records), log.world, log.versions
    new_store = MemoryLayerStore(ids=CountingIds(store.ids.n),
                                 layers={k: dict(v) for k, v in store.layers.items()},
                                 rw={k: dict(v) for k, v in store.rw.items()},
                                 copied={k: dict(v) for k, v in store.copied.items()})
    procs = {cid: FakeProcess(p.pid, p.alive, p.frozen, list(p.pending), p.exit_code,
                              dict(p.limits))
             for cid, p in runtime.procs.items()}
    clients = {cid: MemoryAttachment(a.container_id, a.closed)
               for cid, a in runtime.clients.items()}
    output = {cid: list(lines) for cid, lines in runtime.output.items()}  # entries: never
    # changed once written
    files: dict[str, Any] = {}
    if _runtime_has_files():  # a container's files (cp): the clone's layer store's, or its own
        files["layers"] = new_store if runtime.layers is store else copy.deepcopy(runtime.layers)
        files["files"] = {k: dict(v) for k, v in runtime.files.items()}
    return Engine(log=new_log, layers=new_store,
                  runtime=MemoryRuntime(procs=procs, next_pid=runtime.next_pid,
                                        clients=clients, output=output,
                                        links=set(runtime.links), **files),
                  ids=CountingIds(engine.ids.n), clock=TickingClock(engine.clock.t),
                  volumes=MemoryVolumeStore(data={k: dict(v) for k, v in volumes.data.items()},
                                            host=set(volumes.host)),
                  networks=MemoryNetworkHost(bridges=dict(nets.bridges)),  # values: frozen
                  meta=engine.meta, later=engine.later, shutting_down=engine.shutting_down)


_RUNTIME = {"procs", "next_pid", "clients", "output", "links"}
_RUNTIME_FILES = {"layers", "files"}  # with a container's files, for cp


@cache
def _runtime_has_files() -> bool:
    return {f.name for f in fields(MemoryRuntime)} == _RUNTIME | _RUNTIME_FILES


@cache
def _shapes_known() -> bool:
    shapes = {Engine: {"log", "layers", "runtime", "ids", "clock", "volumes", "networks",
                       "meta", "later", "shutting_down"},
              MemoryVolumeStore: {"data", "host"},
              MemoryNetworkHost: {"bridges"},
              MemoryLayerStore: {"ids", "layers", "rw", "copied"},
              MemoryAttachment: {"container_id", "closed"},
              FakeProcess: {"pid", "alive", "frozen", "pending", "exit_code", "limits"},
              CountingIds: {"n"}, TickingClock: {"t"}}
    runtime = {f.name for f in fields(MemoryRuntime)}
    return runtime in (_RUNTIME, _RUNTIME | _RUNTIME_FILES) and \
        all({f.name for f in fields(cls)} == names for cls, names in shapes.items())


# --- the network world -------------------------------------------------------------------

USER_NETWORK = "n1"  # the user-defined network of test_exhaustive's network search
FIXED_PORT = "8080:80"  # a host port two containers ask for: the second start is refused
EPHEMERAL = "80"  # a host port chosen from docker's ephemeral range


@dataclass(frozen=True)
class Attach:
    """What a create of the network world asks for: `--network` and `-p`s."""

    network: str
    publish: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkWorld:
    """The bounds of test_exhaustive's network search."""

    slots: tuple[str, ...]
    creates: tuple[Attach, ...]
    pause: bool = False  # also pause a running container, unpause a paused one
    restart: bool = False  # also restart, and the process's own exit
    internal: bool = False  # also `network create --internal`


# `make test`'s: three slots; creates on the default bridge with the fixed port, on the
# user network with an ephemeral port and with the fixed one; start, stop, rm -f, connect
# and disconnect either network; network create and rm
NETWORK_WORLD = NetworkWorld(SLOTS, (Attach(DEFAULT_NETWORK, (FIXED_PORT,)),
                                     Attach(USER_NETWORK, (EPHEMERAL,)),
                                     Attach(USER_NETWORK, (FIXED_PORT,))))
# LAMINA_SOAK=1's: four slots, a create with no ports, pause/unpause, restart and exit, and
# the user network made internal too (nothing published from it, members reach nothing)
SOAK_NETWORK_WORLD = replace(NETWORK_WORLD, slots=(*SLOTS, "c3"), creates=(
    *NETWORK_WORLD.creates, Attach(DEFAULT_NETWORK)), pause=True, restart=True, internal=True)


def network_world_steps(world: World, shape: Abstract,
                        bounds: NetworkWorld = NETWORK_WORLD) -> list[Step]:
    """The network world (test_exhaustive's third search): containers on `base`, on the
    default bridge or the user network, publishing ports, started and stopped, connected
    to and disconnected from either network; the user network created and removed between
    them. A command is tried once per orbit of symmetric containers (`shape` is
    network_abstract's)."""
    steps = [Step("network create", network=USER_NETWORK), Step("network rm",
                                                                network=USER_NETWORK)]
    if bounds.internal:
        steps.append(Step("network create", network=USER_NETWORK, internal=True))
    taken = {c.name: c for c in world.containers.values()}
    orbits: dict[str, str] = {}
    for slot in sorted(taken):
        orbits.setdefault(shape.slot_class.get(slot, slot), slot)
    empty = [s for s in bounds.slots if s not in taken]
    if empty:
        base = next(i for i in world.images.values() if "base:latest" in i.tags)
        steps += [Step("create", empty[0], "base", base.id, network=a.network,
                       publish=a.publish) for a in bounds.creates]
    for slot in sorted(orbits.values()):
        c = taken[slot]
        live = c.state in LIVE
        steps += [Step("stop" if live else "start", slot), Step("rm", slot, force=True)]
        steps += [Step("network disconnect" if name in c.networks else "network connect",
                       slot, network=name) for name in (DEFAULT_NETWORK, USER_NETWORK)]
        if bounds.pause and live:
            steps.append(Step("pause" if c.state == "running" else "unpause", slot))
        if bounds.restart:
            steps.append(Step("restart", slot))
            if live:
                steps.append(Step("exit", slot))
    return steps


def network_abstract(world: World, names: dict[str, str]) -> Abstract:
    """The network world's states without ids: the user network (absent, or present and
    internal or not), and each container's create (its --network and -p), state,
    membership in order and leases (addresses and host ports are values, not ids: kept),
    sorted, so states equal up to a renaming of slots get one key. Two containers of one
    shape are symmetric (their orbit: `slot_class`). Container ids are not in the key, but
    they enter nothing the world's moves judge (a veth's name, a DNS name: not checked)."""
    user = next((n for n in world.networks.values() if n.name == USER_NETWORK), None)
    net = "-" if user is None else f"{user.subnet}{'!' if user.internal else ''}"
    shapes = {}
    for c in world.containers.values():
        asked = ",".join(f"{p['host_port']}:{p['container_port']}"
                         for p in c.config.get("port_bindings") or ())
        held = ",".join(f"{name}={ep['address']}@{ep['slot']}"
                        for name, ep in c.endpoints.items())
        bound = ",".join(sorted(f"{p['host_port']}" for p in c.ports))
        shapes[c.name] = (f"{c.config.get('network')}[{asked}]:{c.state}"
                          f"({','.join(c.networks)}|{held}|{bound})")
    images = " ".join(sorted(f"{names.get(i.id, 'commit')}{sorted(i.tags)}{i.removed}"
                             for i in world.images.values()))
    key = f"{images} || {net} || {' '.join(sorted(shapes.values()))}"
    return Abstract(key, {}, shapes)
