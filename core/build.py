"""`build`: an image from a Dockerfile, one step at a time, every step audited.

The seed: "the build command iteratively runs multiple commands at once". As docker's classic
builder, each step starts from the previous step's image: RUN makes a container, runs the
command in it and commits its read-write layer; COPY and ADD make a container, copy into its
read-write layer and commit; every other instruction only changes the config, and makes an
image whose history entry says `empty_layer: true`. `created_by` uses docker's wording, so
`history` reads as docker's does.

The cache is the read model itself: a step is reused when the current image already has a
child image, made by a build, with the same `created_by` and the same config (for COPY/ADD the
`created_by` holds the digest of the copied files and their metadata). Nothing else is stored.

Files and processes are the host's: the BuildHost port (core/ports.py), on this machine
adapters/build_host.py, in memory core/memory/build_host.py. The build is one command
(core/command.py: its meta, expected versions, its rejection) whose sub-steps go through the
Engine's own commands (create, start, rm: audited as those) and its parts (a step's commit is
commit's commit_layer, a tag moves as tag's events); the build itself is recorded as
BuildStarted, StepCompleted per step, and BuildFinished or BuildFailed. Metadata-only
instructions (ENV, CMD...) are core/instructions.py's, shared with commit's and import's
--change.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core.dockerfile import (
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
    arg_pairs,
    expand,
    expand_words,
    parse,
)
from core.engine.commit import commit_layer
from core.engine.images import tag_events
from core.errors import BadInput, LaminaError, NotFound
from core.images import chain_id, image_config, image_id
from core.instructions import DEFAULT_SHELL, StageState, metadata
from core.model import Image, Layer
from core.ports import BuildHost, CopySource
from core.references import normalize_tag, short
from events import types as ev

if TYPE_CHECKING:
    from core.command import Command
    from core.engine import Engine

USING_CACHE = " ---> Using cache"

# The config of `FROM scratch`: no layers, no history; one image with this id serves every build.
SCRATCH_CONFIG: dict[str, Any] = {"architecture": "amd64", "os": "linux", "config": {},
                                  "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
Out = Callable[[str], None]


class BuildFailedError(LaminaError):
    """A step failed while the build ran (its message is docker's where docker has one);
    `code` is the exit code of a failed RUN (docker's errorDetail.code)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unsupported(BadInput):
    """A field of the build request lamina can't honour: refused before anything runs."""


@dataclass(frozen=True)
class Extras:
    """What a build request (the Docker API's /build) asks beyond the CLI's flags.

    `labels` become LABEL steps at the end of the built stage, one per key in key order,
    never expanded (docker's --label); `cache_from`, when given, lets only those images and
    their ancestors serve the cache (a name that names no image serves nothing, as docker);
    `refused` names request fields lamina can't honour (the first is refused, recorded);
    `run_options` go to every RUN step's container (memory, network); `keep_containers`
    leaves the step containers (rm=0); `aux` gets each built stage's image id, docker's aux
    message, before the `Successfully built` line."""

    labels: Mapping[str, str] = field(default_factory=dict)
    cache_from: Sequence[str] | None = None
    refused: Sequence[str] = ()
    run_options: Mapping[str, Any] = field(default_factory=dict)
    keep_containers: bool = False
    aux: Callable[[str], None] | None = None
    squash: bool = False  # the built stage's new layers merged into one (docker's --squash)


@dataclass
class _Run:
    """One build: its command record, its request and its counters."""

    engine: Engine
    host: BuildHost
    cmd: Command
    df: Dockerfile
    context_dir: str
    build_args: dict[str, str]
    no_cache: bool
    out: Out
    build_id: str
    total: int
    step: int = 0
    cached_steps: int = 0
    consumed: set[str] = field(default_factory=set)
    stage_images: dict[int, str] = field(default_factory=dict)
    stage_bases: dict[int, str] = field(default_factory=dict)  # the image each FROM named
    source: CopySource | None = None
    extras: Extras = field(default_factory=Extras)
    cache_sources: set[str] | None = None  # the images that may serve the cache (cache_from)


def build(engine: Engine, host: BuildHost, context_dir: str, dockerfile: str | None = None,
          tags: Sequence[str] = (), build_args: Mapping[str, str] | None = None,
          no_cache: bool = False, target: str | None = None,
          out: Out = lambda _text: None, extras: Extras | None = None) -> str:
    """Build the Dockerfile (default `<context_dir>/Dockerfile`) and return the image id.

    `out` receives the progress text as docker's classic builder prints it (Step lines, RUN
    output as it comes, `Successfully built <id>`), chunk by chunk, newlines included. Errors
    in the Dockerfile or its base images are refused before anything runs (CommandRejected);
    a failing step raises BuildFailedError after recording BuildFailed.
    """
    args = dict(build_args or {})
    extras = extras or Extras()
    with engine.command("build", tags[0] if tags else context_dir) as cmd:
        if extras.refused:
            raise Unsupported(f"{extras.refused[0]} is not supported by lamina yet")
        name, text = host.read_dockerfile(context_dir, dockerfile)
        df = parse(text, name)
        tags = list(dict.fromkeys(normalize_tag(t) for t in tags))
        last = _target_index(df, target)
        df = _with_labels(df, last, extras.labels)
        _check_bases(engine, df, last, args)
    run = _Run(engine, host, cmd, df, context_dir, args, no_cache, out,
               engine.ids.new_id(), df.steps(last), extras=extras,
               cache_sources=_cache_sources(engine, extras.cache_from))
    t0 = time.monotonic()
    cmd.append([ev.BuildStarted(
        id=run.build_id, context=context_dir, dockerfile=name, tags=list(tags),
        build_args=args, target=target or "", no_cache=no_cache, steps=run.total)], {})
    try:
        with host.context(context_dir) as source:
            run.source = source
            for stage in df.stages[:last + 1]:
                _build_stage(run, stage)
                if extras.squash and stage.index == last:
                    run.stage_images[last] = _squash(run, last)
                if extras.aux is not None:
                    extras.aux(run.stage_images[stage.index])
    except BaseException as err:
        reason = str(err) or type(err).__name__
        cmd.append([ev.BuildFailed(id=run.build_id, step=run.step,
                                   instruction=_current(run), reason=reason)], {})
        raise
    return _finish(run, tags, last, time.monotonic() - t0)


def _finish(run: _Run, tags: Sequence[str], last: int, seconds: float) -> str:
    engine, iid = run.engine, run.stage_images[last]
    unused = sorted(set(run.build_args) - run.consumed)
    if unused:
        run.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")

    def record() -> None:  # read the tags' holders again if another command moved them
        expected: dict[str, int] = {}
        events: list[ev.Event] = []
        for tag in tags:
            events += tag_events(engine, iid, tag, expected)
        events.append(ev.BuildFinished(id=run.build_id, image=iid, tags=list(tags),
                                       cached_steps=run.cached_steps,
                                       seconds=round(seconds, 3)))
        run.cmd.append(events, expected)

    run.cmd.retrying(record)
    run.out(f"Successfully built {short(iid)}\n")
    for tag in tags:
        run.out(f"Successfully tagged {tag}\n")
    return iid


def _current(run: _Run) -> str:
    """The instruction of the step the build is at (for BuildFailed)."""
    n = 0
    for stage in run.df.stages:
        n += 1
        if n == run.step:
            return _from_text(stage)
        for ins in stage.instructions:
            n += 1
            if n == run.step:
                return ins.original
    return ""


def _from_text(stage: Stage) -> str:
    return f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else "")


def _recorded(engine: Engine, iid: str) -> Image:
    """An image the log holds: one this build resolved or has just appended."""
    image = engine.log.image(iid)
    if image is None:
        raise LaminaError(f"image {short(iid)} is not in the log")
    return image


def _recorded_layer(engine: Engine, lid: str) -> Layer:
    """A layer the log holds: one of an image the log holds."""
    layer = engine.log.layer(lid)
    if layer is None:
        raise LaminaError(f"layer {short(lid)} is not in the log")
    return layer


# --- before anything runs ----------------------------------------------------------------------


def _target_index(df: Dockerfile, target: str | None) -> int:
    if target is None:
        return len(df.stages) - 1
    index = df.stage_index(target)
    if index is None:
        raise BadInput(f"failed to reach build target {target} in Dockerfile")
    return index


def _with_labels(df: Dockerfile, last: int, labels: Mapping[str, str]) -> Dockerfile:
    """The Dockerfile with a `LABEL k=v` step per requested label at the end of the built
    stage, keys in order (docker's buildLabelOptions). Such a LABEL carries its one pair in
    `exec_form`, taken as it is: docker does not expand a --label's value."""
    if not labels:
        return df
    stage = df.stages[last]
    added = tuple(Instruction("LABEL", f"{k}={labels[k]}", 0, f"LABEL {k}={labels[k]}",
                              exec_form=(k, labels[k])) for k in sorted(labels))
    stages = list(df.stages)
    stages[last] = replace(stage, instructions=(*stage.instructions, *added))
    return replace(df, stages=tuple(stages))


def _cache_sources(engine: Engine, refs: Sequence[str] | None) -> set[str] | None:
    """cache_from: the named images and their ancestors, the only images the cache may
    reuse; a name that names no image adds nothing (docker skips it with a warning)."""
    if refs is None:
        return None
    sources: set[str] = set()
    for ref in refs:
        try:
            image: Image | None = engine.image(ref)
        except LaminaError:
            continue
        while image is not None and image.id not in sources:
            sources.add(image.id)
            image = engine.log.image(image.parent) if image.parent else None
    return sources


def _global_env(df: Dockerfile, build_args: Mapping[str, str]) -> dict[str, str]:
    """The ARGs declared before the first FROM, as FROM lines see them."""
    env: dict[str, str] = {}
    for ins in df.global_args:
        for key, default in arg_pairs(ins.rest, env, df.escape):
            value = build_args.get(key, default)
            if value is not None:
                env[key] = value
    return env


def _check_bases(engine: Engine, df: Dockerfile, last: int, build_args: Mapping[str, str]) -> None:
    """Every FROM and COPY --from names a stage before it, scratch, or an image lamina has."""
    env = _global_env(df, build_args)
    for stage in df.stages[:last + 1]:
        _base_ref(engine, df, stage, env)
        for ins in stage.instructions:
            ref = ins.flags.get("from")
            if ref is None:
                continue
            index = df.stage_index(ref)
            if index is None:
                _image_or_error(engine, df, ins.line, ref)
            elif index >= stage.index:
                raise DockerfileError(f"{df.name}:{ins.line}: COPY --from={ref}: stage {ref} "
                                      "is not an earlier stage")


def _base_ref(engine: Engine, df: Dockerfile, stage: Stage, env: Mapping[str, str]) -> str | int:
    """A stage's base: an earlier stage's index, "scratch", or an image id."""
    try:
        base = expand(stage.base, env, df.escape)
    except BadInput as err:
        raise DockerfileError(f"{df.name}:{stage.line}: {err}") from None
    if not base:
        raise DockerfileError(f"{df.name}:{stage.line}: FROM needs an image name")
    earlier = df.stage_index(base)
    if earlier is not None and earlier < stage.index and not base.isdigit():
        return earlier
    if base == "scratch":
        return "scratch"
    return _image_or_error(engine, df, stage.line, base).id


def _image_or_error(engine: Engine, df: Dockerfile, line: int, ref: str) -> Image:
    try:
        return engine.image(ref)
    except NotFound:
        raise DockerfileError(f"{df.name}:{line}: no such image: {ref} (lamina build does not "
                              "pull: load or import it first)") from None


# --- stages and steps --------------------------------------------------------------------------


def _build_stage(run: _Run, stage: Stage) -> None:
    env = _global_env(run.df, run.build_args)
    run.consumed |= {k for k in env if k in run.build_args}
    t0 = _begin(run, _from_text(stage))
    base = _base_ref(run.engine, run.df, stage, env)
    if isinstance(base, int):
        image = _recorded(run.engine, run.stage_images[base])
    elif base == "scratch":
        image = _scratch(run)
    else:
        image = _recorded(run.engine, base)
    run.stage_bases[stage.index] = image.id
    state = StageState(image=image, config=dict(image.config.get("config") or {}))
    _done(run, t0, image.id, cached=True, container="", is_from=True)
    _triggers(run, state, stage, env)
    for ins in stage.instructions:
        t0 = _begin(run, ins.original)
        try:
            new, cached, cid = _step(run, state, ins, env)
        except (BadInput, NotFound) as err:
            if isinstance(err, DockerfileError):
                raise
            raise BuildFailedError(f"{run.df.name}:{ins.line}: {err}") from None
        state.image = new
        state.config = dict(new.config.get("config") or {})
        _done(run, t0, new.id, cached, cid)
    run.stage_images[stage.index] = state.image.id


def _squash(run: _Run, index: int) -> str:
    """docker's --squash: the layers the stage made, merged into one on top of its base's
    (which stay as they are); the stage's history entries kept, each marked empty_layer,
    and one more that carries the merged layer, with docker's comment `merge sha256:BUILT
    to sha256:BASE`. The unsquashed image stays as its parent (the cache's). A stage that
    made no layer is its own squash."""
    engine = run.engine
    built = _recorded(engine, run.stage_images[index])
    base = _recorded(engine, run.stage_bases[index])
    kept = len(base.layers)
    if len(built.layers) == kept or built.layers[:kept] != base.layers:
        return built.id
    parent_layer = base.layers[-1] if base.layers else None
    info = engine.layers.squash_layers(built.layers[kept:], base.layers, parent_layer)
    created = engine.clock()
    comment = f"merge sha256:{built.id} to sha256:{base.id}"
    history = list(built.config.get("history") or [])
    below = len(base.config.get("history") or [])
    cfg = {**built.config, "created": created,
           "rootfs": {"type": "layers", "diff_ids": [*_diff_ids(base), info.diff_id]},
           "history": [*history[:below], *({**h, "empty_layer": True}
                                            for h in history[below:]),
                       {"created": created, "comment": comment}]}
    iid = image_id(cfg)
    parent = engine.log.layer(parent_layer) if parent_layer else None
    expected = {f"layer:{info.id}": 0, f"image:{iid}": run.cmd.stream_version(f"image:{iid}")}
    try:
        run.cmd.append([
            ev.LayerRegistered(id=info.id, parent=parent_layer, diff_id=info.diff_id,
                               chain_id=chain_id(parent.chain_id if parent else None,
                                                 info.diff_id),
                               size=info.size, created_by="", comment=comment),
            ev.ImageCreated(id=iid, parent=built.id, layers=[*base.layers, info.id],
                            config=cfg, created_by="", comment=comment, source="build")],
            expected)
    except BaseException:
        engine.layers.remove_layer(info.id)
        raise
    run.out(f" ---> squashed {short(built.id)} to {short(iid)}\n")
    return iid


def _triggers(run: _Run, state: StageState, stage: Stage, env: Mapping[str, str]) -> None:
    """The base image's ONBUILD triggers, in order, before the stage's own instructions
    (docker's classic builder: "# Executing N build triggers"); the images they make, and
    the stage's, keep no OnBuild (triggers run once, in the first child)."""
    from core.dockerfile import trigger

    triggers = state.config.pop("OnBuild", None) or []
    if not triggers:
        return
    run.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
    for text in triggers:
        try:
            ins = trigger(stage.line, text, run.df.escape)
            new, _cached, _cid = _step(run, state, ins, env)
        except (BadInput, NotFound) as err:
            if isinstance(err, DockerfileError):
                raise
            raise BuildFailedError(f"{run.df.name}:{stage.line}: ONBUILD {text}: {err}") \
                from None
        state.image = new
        state.config = dict(new.config.get("config") or {})
        run.out(f" ---> {short(new.id)}\n")


def _begin(run: _Run, text: str) -> float:
    run.step += 1
    run.out(f"Step {run.step}/{run.total} : {text}\n")
    return time.monotonic()


def _done(run: _Run, t0: float, iid: str, cached: bool, container: str,
          is_from: bool = False) -> None:
    """The step's progress line (with CACHED when reused) and its StepCompleted."""
    seconds = time.monotonic() - t0
    if cached and not is_from:
        run.cached_steps += 1
    mark = "CACHED " if cached and not is_from else ""
    if mark:  # docker's classic builder's words, which its clients look for
        run.out(f"{USING_CACHE}\n")
    run.out(f" ---> {mark}{short(iid)} {seconds:.2f}s\n")
    run.cmd.append([ev.StepCompleted(
        id=run.build_id, step=run.step, instruction=_current(run), cached=cached, image=iid,
        container=container, seconds=round(seconds, 3))], {})


def _scratch(run: _Run) -> Image:
    """The empty base image of `FROM scratch` (recorded once, then reused)."""
    engine = run.engine
    iid = image_id(SCRATCH_CONFIG)
    found = engine.log.image(iid)
    if found is not None:
        return found
    stream = f"image:{iid}"
    run.cmd.append([ev.ImageCreated(id=iid, parent=None, layers=[],
                                    config=json.loads(json.dumps(SCRATCH_CONFIG)),
                                    created_by="", source="build")],
                   {stream: run.cmd.stream_version(stream)})
    return _recorded(engine, iid)


def _step(run: _Run, state: StageState, ins: Instruction,
          stage_env: Mapping[str, str]) -> tuple[Image, bool, str]:
    """Do one instruction; (resulting image, reused from the cache?, container id or "")."""
    if ins.keyword == "RUN":
        return _run_step(run, state, ins)
    if ins.keyword in ("COPY", "ADD"):
        return _copy_step(run, state, ins)
    if ins.keyword == "ARG":
        return _arg_step(run, state, ins, stage_env)
    config, comment = metadata(run.df, state, ins)
    nop = " ".join([*DEFAULT_SHELL, "#(nop)"]) + (" " if ins.keyword == "WORKDIR" else "  ")
    return _metadata_image(run, state, nop + comment, config)


# --- metadata-only steps ----------------------------------------------------------------------


def _arg_step(run: _Run, state: StageState, ins: Instruction,
              stage_env: Mapping[str, str]) -> tuple[Image, bool, str]:
    """ARG declares (NAME, default); the value is --build-arg's, else the default, else the
    global ARG's. The history keeps the Dockerfile's text, as docker's does."""
    pairs = arg_pairs(ins.rest, state.env(), run.df.escape)
    for key, default in pairs:
        if key in run.build_args:
            state.args[key] = run.build_args[key]
            run.consumed.add(key)
        else:
            state.args[key] = default if default is not None else stage_env.get(key)
    text = " ".join(key if default is None else f"{key}={default}" for key, default in pairs)
    return _metadata_image(run, state, f"/bin/sh -c #(nop)  ARG {text}", dict(state.config))


def _metadata_image(run: _Run, state: StageState, created_by: str,
                    config: dict[str, Any]) -> tuple[Image, bool, str]:
    """A child image with one more history entry (empty_layer) and this config."""
    found = _cached(run, state.image, created_by, config)
    if found is not None:
        return found, True, ""
    engine, parent = run.engine, state.image
    cfg = image_config(base=parent.config, diff_ids=_diff_ids(parent),
                       created=engine.clock(), created_by=created_by, empty_layer=True,
                       config=config)
    cfg["config"] = config  # keys a step clears (Cmd after ENTRYPOINT) stay cleared
    iid = image_id(cfg)
    stream = f"image:{iid}"
    run.cmd.append([ev.ImageCreated(id=iid, parent=parent.id, layers=list(parent.layers),
                                    config=cfg, created_by=created_by, source="build")],
                   {stream: run.cmd.stream_version(stream)})
    return _recorded(engine, iid), False, ""


def _diff_ids(image: Image) -> list[str]:
    return list((image.config.get("rootfs") or {}).get("diff_ids") or [])


def _cached(run: _Run, parent: Image, created_by: str, config: dict[str, Any]) -> Image | None:
    """A child of `parent` that a build made with this created_by and config, newest first."""
    if run.no_cache:
        return None
    best: Image | None = None
    for image in run.engine.log.images():
        if image.parent != parent.id or image.source != "build":
            continue
        if run.cache_sources is not None and image.id not in run.cache_sources:
            continue
        history = image.config.get("history") or []
        if not history or history[-1].get("created_by") != created_by:
            continue
        if (image.config.get("config") or {}) != config:
            continue
        if best is None or image.created > best.created:
            best = image
    return best


# --- steps with a container: RUN, COPY, ADD ---------------------------------------------------


def _run_step(run: _Run, state: StageState, ins: Instruction) -> tuple[Image, bool, str]:
    argv = list(ins.exec_form) if ins.exec_form is not None else [*state.shell(), ins.rest]
    args = state.run_args()
    run.consumed |= {a.partition("=")[0] for a in args if a.partition("=")[0] in run.build_args}
    created_by = " ".join(([f"|{len(args)}", *args] if args else []) + argv)
    found = _cached(run, state.image, created_by, state.config)
    if found is not None:
        return found, True, ""
    engine = run.engine
    options = {"entrypoint": [], "env": args, "network": "host", **run.extras.run_options}
    tail = ["\n"]

    def out(text: str) -> None:
        tail[0] = text[-1:] or tail[0]
        run.out(text)

    with _container(engine, state.image, argv, options, run.extras.keep_containers) as cid:
        code = run.host.run(cid, out)
        if tail[0] != "\n":
            run.out("\n")  # the step's progress line starts a line of its own
        if code != 0:
            raise BuildFailedError(f"The command '{' '.join(argv)}' returned a non-zero code: "
                                   f"{code}", code)
        return _commit(run, cid, state.image, created_by, state.config), False, cid


def _copy_step(run: _Run, state: StageState, ins: Instruction) -> tuple[Image, bool, str]:
    words = list(ins.exec_form) if ins.exec_form is not None \
        else expand_words(ins.rest, state.env(), run.df.escape)
    sources, dest = words[:-1], words[-1]
    if len(sources) > 1 and not dest.endswith("/"):
        raise BadInput(f"When using {ins.keyword} with more than one source file, the "
                       "destination must be a directory and end with a /")
    workdir = state.config.get("WorkingDir") or "/"
    target = posixpath.join(workdir, dest)
    if dest.endswith("/") or dest in (".", "./") or dest.endswith("/."):
        target = posixpath.normpath(target) + "/"
        target = target.replace("//", "/")
    else:
        target = posixpath.normpath(target)
    env, esc = state.env(), run.df.escape
    chown = expand(ins.flags.get("chown", ""), env, esc)  # --chown=$UID:$GID works too
    chmod, add = expand(ins.flags.get("chmod", ""), env, esc), ins.keyword == "ADD"
    with _copy_source(run, ins) as source:
        digest = source.digest(sources, chown, chmod, add)
        comment = f"#(nop) {ins.keyword} {digest} in {dest} "
        created_by = " ".join([*DEFAULT_SHELL, comment])
        found = _cached(run, state.image, created_by, state.config)
        if found is not None:
            return found, True, ""
        with _container(run.engine, state.image, [*DEFAULT_SHELL, comment], {},
                        run.extras.keep_containers) as cid:
            run.host.copy(source, cid, sources, target, chown, chmod, add)
            return _commit(run, cid, state.image, created_by, state.config), False, cid


@contextmanager
def _copy_source(run: _Run, ins: Instruction) -> Iterator[CopySource]:
    ref = ins.flags.get("from")
    if ref is None:
        assert run.source is not None
        yield run.source
        return
    index = run.df.stage_index(ref)
    image = run.stage_images[index] if index is not None else run.engine.image(ref).id
    with run.host.image_root(image) as source:
        yield source


@contextmanager
def _container(engine: Engine, image: Image, argv: Sequence[str],
               options: Mapping[str, Any], keep: bool = False) -> Iterator[str]:
    """A build container for one step; removed afterwards whatever happens, unless the
    request keeps them (docker's rm=0)."""
    cid = engine.create(image.id, list(argv), config=dict(options))
    try:
        yield cid
    finally:
        if not keep:
            engine.rm(cid, force=True)


def _commit(run: _Run, cid: str, parent: Image, created_by: str,
            config: dict[str, Any]) -> Image:
    """The container's read-write layer as a new layer and a child image of `parent` with
    the stage's `config` (the parent's, less OnBuild once its triggers ran): Engine.commit's
    recording, with the build's created_by and source."""
    engine = run.engine
    c = engine.container(cid)
    info = commit_layer(engine, c, parent)
    parent_layer = parent.layers[-1] if parent.layers else None
    parent_chain = _recorded_layer(engine, parent_layer).chain_id if parent_layer else None
    cfg = image_config(base=parent.config, diff_ids=[*_diff_ids(parent), info.diff_id],
                       created=engine.clock(), created_by=created_by)
    cfg["config"] = dict(config)
    iid = image_id(cfg)
    stream = f"image:{iid}"
    events: list[ev.Event] = [
        ev.LayerRegistered(id=info.id, parent=parent_layer, diff_id=info.diff_id,
                           chain_id=chain_id(parent_chain, info.diff_id), size=info.size,
                           created_by=created_by),
        ev.ImageCreated(id=iid, parent=parent.id, layers=[*parent.layers, info.id], config=cfg,
                        created_by=created_by, source="build"),
        ev.ContainerCommitted(id=c.id, image=iid)]
    expected = {f"container:{c.id}": c.version, f"layer:{info.id}": 0,
                stream: run.cmd.stream_version(stream)}
    try:
        run.cmd.append(events, expected)
    except BaseException:
        engine.layers.remove_layer(info.id)
        raise
    return _recorded(engine, iid)
