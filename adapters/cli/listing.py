"""`lamina ps`, `lamina images` and `lamina port`: the read model's containers, images and
published ports, as docker lists them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

from adapters.cli.common import event_log

COMMANDS = ("ps", "images", "port")


def cmd_ps(args: argparse.Namespace) -> int:
    log = event_log(args, create=False)
    limit = 1 if args.latest else args.last
    states = None if args.all or args.filter or limit > 0 else ("running", "paused")
    # filters, json, templates and --size read whole containers; the table and -q, briefs
    whole = bool(args.filter or limit > 0 or args.size) or args.format not in (None, "table")
    containers: list[Any] = [] if log is None else \
        log.containers(states) if whole else list(log.container_briefs(states))
    images: dict[str, Any] | None = None
    if args.filter or limit > 0:  # docker's rule, as the API's ps (core/filters.py)
        from core import filters

        images = {i.id: i for i in log.images()} if log is not None else {}
        chosen = filters.select(containers, images, filters.parse_flags(args.filter or []),
                                everything=args.all, limit=limit)
        containers = chosen[::-1]  # oldest first here
    from adapters.cli import formats, render

    if args.quiet:
        formats.quiet_warning(args.format)
        for c in containers:
            print(c.id if args.no_trunc else c.id[:12])
        return 0
    if args.format == "json":
        from core.model import to_doc

        for c in containers:
            render.json_line(to_doc(c))
        return 0
    if formats.is_template(args.format):
        formats.templated(args.format, _ps_rows(
            args, log, containers, _images_of(log, containers) if images is None else images),
            _headers("PsRow"))
        return 0
    if images is None:  # of each image, the table shows its brief; --size reads it whole
        images = _images_of(log, containers) if args.size else _briefs_of(log, containers)
    from datetime import UTC, datetime

    from adapters.dockerapi.shapes import health_word
    from adapters.storage.netsettings import ports_text, summary_ports
    from core.health import suffix

    now = datetime.now(UTC)  # one clock for every row's CREATED, as docker's
    rows = []
    for c in containers:  # a thousand of them: nothing here that a row does not need
        image = images.get(c.image)
        shown = image.tags[0] if image is not None and image.tags else render.short(c.image)
        command = " ".join(c.cmd)
        status = render.status(c)
        if c.state == "running":
            status += suffix(health_word(c, image))
        ports = summary_ports(c, image)
        row = [c.id if args.no_trunc else c.id[:12], shown,
               f'"{command}"' if args.no_trunc else f'"{command[:20]}"',
               render.ago(c.created, now), status, ports_text(ports) if ports else "", c.name]
        if args.size:
            row.append(next(iter(_ps_rows(args, log, [c], images))).Size())
        rows.append(row)
    render.table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES",
                  *(["SIZE"] if args.size else [])], rows)
    return 0


def _images_of(log: Any, containers: list[Any]) -> dict[str, Any]:
    """The images the listed containers run, by id, in one query (a root with a thousand
    images need not decode them all for a short list)."""
    if log is None:
        return {}
    return {i.id: i for i in log.images({c.image for c in containers})}


def _briefs_of(log: Any, containers: list[Any]) -> dict[str, Any]:
    """What the table shows of the images the containers run (core/model.py ImageBrief),
    by id, in one query: ~2 us an image where a whole one takes ~8."""
    if log is None:
        return {}
    return {b.id: b for b in log.image_briefs({c.image for c in containers})}


def _headers(name: str) -> Any:
    from adapters.cli import rows

    return getattr(rows, name).HEADERS


def _ps_rows(args: argparse.Namespace, log: Any, containers: list[Any],
             images: dict[str, Any]) -> Iterator[Any]:
    """ps's rows for a template (adapters/cli/rows.py), docker's fields computed lazily."""
    import functools
    from datetime import UTC, datetime

    from adapters.cli.rows import PsRow
    from adapters.cmdline import root_dir

    root = root_dir(args.root)

    @functools.cache
    def networks() -> Any:
        from adapters.storage.netsettings import resolver
        from core.engine.networks import PREDEFINED

        return resolver([*PREDEFINED.values(), *(log.networks() if log is not None else ())])

    @functools.cache
    def store() -> Any:
        from adapters.storage.store import LinuxLayerStore

        return LinuxLayerStore(root)

    @functools.cache
    def layers() -> dict[str, int]:
        return {la.id: la.size for la in log.layers()} if log is not None else {}

    now = datetime.now(UTC)
    for c in containers:
        yield PsRow(c, images.get(c.image), trunc=not args.no_trunc, now=now, root=root,
                    networks=networks, store=store, layers=layers)


def cmd_port(args: argparse.Namespace) -> int:
    """docker port: a container's published ports (`80/tcp -> 0.0.0.0:8080`), or one
    port's host addresses (`0.0.0.0:8080`)."""
    from adapters.bootstrap import query_engine
    from adapters.storage.netsettings import port_lines
    from core.errors import BadInput, NotFound

    log = event_log(args, create=False)
    if log is None:
        raise NotFound(f"No such container: {args.container}")
    c = query_engine(log).container(args.container)
    try:
        lines = port_lines(c, log.image(c.image), args.port)
    except ValueError as err:
        raise BadInput(str(err)) from None
    for line in lines:
        print(line)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    log = event_log(args, create=False)
    from adapters.cli import formats, render
    from core.images import children
    from core.sizes import human_size

    images = log.images() if log is not None else []
    layers = {la.id: la for la in log.layers()} if log is not None else {}
    wanted: Callable[[Any], bool] | None = None
    if args.filter:
        from core.filters import parse_flags
        from core.images import image_filter

        wanted = image_filter({i.id: i for i in images}, parse_flags(args.filter))
    template = formats.is_template(args.format) and not args.quiet
    if args.quiet:
        formats.quiet_warning(args.format)
    rows, docs, found = [], [], []
    for i in images:
        intermediate = i.removed or (not i.tags and children(i.id, images))
        if intermediate and not args.all:
            continue
        if wanted is not None and not wanted(i):
            continue
        size = sum(layers[lid].size for lid in i.layers if lid in layers)
        for tag in i.tags or ["<none>:<none>"]:
            repo, _, name = tag.rpartition(":")
            created = i.config.get("created") or i.created  # docker shows the config's
            ident = f"sha256:{i.id}" if args.no_trunc else render.short(i.id)
            rows.append([repo, name, ident, render.ago(created), human_size(size)])
            found.append((i, repo, name, size))
        docs.append({"id": i.id, "tags": list(i.tags), "parent": i.parent, "size": size,
                     "created": i.created, "layers": list(i.layers),
                     "intermediate": bool(intermediate)})
    if args.quiet:
        for row in rows:
            print(row[2])
        return 0
    if args.format == "json":
        for d in docs:
            render.json_line(d)
        return 0
    if template:
        from datetime import UTC, datetime

        from adapters.cli.rows import ImageRow
        from adapters.dockerapi.shapes import familiar

        now = datetime.now(UTC)
        formats.templated(args.format, (
            ImageRow(i, familiar(repo) if repo != "<none>" else repo, name, size,
                     trunc=not args.no_trunc, now=now) for i, repo, name, size in found),
            ImageRow.HEADERS)
        return 0
    render.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


PS_FIELDS = ("ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status, Size, Names, "
             "Labels, Label \"K\", Mounts, LocalVolumes, Networks")
IMAGE_FIELDS = "ID, Repository, Tag, Digest, CreatedSince, CreatedAt, Size"


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    from adapters.cli.common import add_template_format

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    p.add_argument("-q", "--quiet", action="store_true", help="only the containers' ids")
    p.add_argument("--no-trunc", action="store_true",
                   help="full ids and commands, not shortened")
    p.add_argument("-n", "--last", type=int, default=-1, metavar="N",
                   help="the N newest containers, stopped ones too")
    p.add_argument("-l", "--latest", action="store_true",
                   help="the newest container, stopped or not")
    p.add_argument("-s", "--size", action="store_true",
                   help="the read-write layer's size (and with the image's, virtual)")
    p.add_argument("-f", "--filter", action="append", metavar="K=V",
                   help="docker's: label=K[=V], name, id, status, exited, ancestor, "
                        "before, since, volume, network, publish, expose, health, is-task "
                        "(repeatable)")
    add_template_format(p, PS_FIELDS)
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("port", help="a container's published ports")
    p.add_argument("container", metavar="CONTAINER", help="its name or id")
    p.add_argument("port", metavar="PORT[/PROTO]", nargs="?", help="one port (tcp by default)")
    p.set_defaults(func=cmd_port)

    p = sub.add_parser("images", help="list top-level images")
    p.add_argument("-a", "--all", action="store_true", help="intermediate images too")
    p.add_argument("-q", "--quiet", action="store_true", help="only the images' ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids (sha256:...)")
    p.add_argument("-f", "--filter", action="append", metavar="K=V",
                   help="docker's: dangling=true|false, reference=GLOB, label=K[=V], "
                        "before=IMAGE, since=IMAGE (repeatable)")
    add_template_format(p, IMAGE_FIELDS)
    p.set_defaults(func=cmd_images)
