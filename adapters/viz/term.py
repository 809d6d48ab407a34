"""The same pictures in the terminal, with rich: a stack as a table (top layer first) inside
the panels of its process space, the tree as a rich Tree, a history as a table, the networks
as a rich Tree (each network, the containers on it with their addresses and ports)."""

from __future__ import annotations

from typing import Any

from adapters.viz.history import History
from adapters.viz.model import NetMap, Stack, Tree, short_cgroup

STYLES = {"image": "white", "stopped": "grey62", "running": "green", "paused": "cyan"}


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _size(n: int) -> str:
    from core.sizes import human_size

    return human_size(n) if n >= 0 else "?"


def _layers_table(s: Stack) -> Any:
    from rich.table import Table

    t = Table(title="read-only layers (top first)" if s.rw is None else
              "read-write layer over read-only layers (top first)", title_justify="left",
              expand=False)
    t.add_column("LAYER", style="bold")
    t.add_column("CREATED BY", overflow="fold", max_width=60)
    t.add_column("SIZE", justify="right")
    if s.rw is not None:
        t.add_row(s.rw.short, s.rw.created_by, _size(s.rw.size),
                  style="black on yellow", end_section=True)
    for b in reversed(s.layers):
        t.add_row(b.short, b.created_by, _size(b.size))
    return t


def _changes(s: Stack) -> str:
    if s.rw is None:
        return ""
    if s.changes is None:
        return "changes: not in the log (files are not events)"
    if not s.changes:
        return "changes: none"
    return "changes:\n" + "\n".join(f"  {k} {p}" for k, p in s.changes[:20]) + \
        (f"\n  … {len(s.changes) - 20} more" if len(s.changes) > 20 else "")


def stack_renderable(s: Stack) -> Any:
    from rich.console import Group
    from rich.panel import Panel

    union = "union view: " + (" ".join(s.union) if s.union else "(files not on this host)")
    mounts = "mounts (outside the union view):\n" + "\n".join(
        f"  {m.label} at {m.target}{' (read-only)' if m.read_only else ''}"
        for m in s.mounts) if s.mounts else ""
    nets = "networks:\n" + "\n".join(
        f"  {a.network}: {a.cidr or 'no lease (not running)'}"
        + (f" aliases {', '.join(a.aliases)}" if a.aliases else "")
        + (f" ports {', '.join(a.ports)}" if a.ports else "")
        for a in s.networks) if s.networks else ""
    parts = [_layers_table(s), _changes(s), union, mounts, nets]
    body: Group | Panel = Group(*[p for p in parts if p])
    if s.process is not None:
        p = s.process
        procs = ", ".join(f"{pid} ({c})" if c else str(pid)
                          for pid, c in zip(p.pids, p.commands or ("",) * len(p.pids),
                                            strict=True))
        head = (f"process space: pid {p.pid}, cgroup {short_cgroup(p.cgroup)}, "
                f"{'frozen' if p.frozen else 'not frozen'}"
                + ("" if p.live else " (as recorded)"))
        body = Panel(Group(f"processes: {procs or '-'}", body), title=head,
                     border_style=STYLES[s.state])
    what = (f"container {s.label} ({s.id[:12]}) [{STYLES[s.state]}]{s.state}[/]"
            if s.kind == "container" else f"image {s.label} (sha256:{s.id[:12]})")
    when = "now" if s.live else "as it was"
    return Panel(body, title=what, subtitle=f"{when} at seq {s.seq} {s.when}".rstrip(),
                 expand=False)


def tree_renderable(t: Tree) -> Any:
    from rich.tree import Tree as RichTree

    root = RichTree(f"layer tree at seq {t.seq} {t.when}".rstrip())
    on_top: dict[str, list[str]] = {}
    for iid, (_, top) in t.images.items():
        on_top.setdefault(top, []).append(iid)

    def add(node: Any, lid: str | None) -> None:
        for child in t.children(lid):
            box = t.layers[child]
            branch = node.add(f"[bold]{box.short}[/] {_size(box.size)} {box.created_by[:50]}")
            for iid in on_top.get(child, []):
                img = branch.add(f"[magenta]{t.images[iid][0]}[/] sha256:{iid[:12]}")
                for cid, (name, state, image) in t.containers.items():
                    if image == iid:
                        img.add(f"[{STYLES.get(state, 'white')}]{name}[/] {cid[:12]}: {state}")
            add(branch, child)

    add(root, None)
    return root


def history_renderable(h: History) -> Any:
    from rich.table import Table

    t = Table(title=f"container {h.name} ({h.id[:12]})", title_justify="left")
    for col in ("SEQ", "TIME", "EVENT", "MOVE"):
        t.add_column(col, no_wrap=True)
    t.add_column("DETAIL", overflow="fold")
    for s in h.steps:
        move = f"{s.before} → [{STYLES[s.after]}]{s.after}[/]" if not s.refused else "-"
        t.add_row(str(s.seq), s.at[:19].replace("T", " "), s.type.removeprefix("Container"),
                  move, s.detail, style="red" if s.refused else None)
    return t


def networks_renderable(m: NetMap) -> Any:
    from rich.markup import escape
    from rich.tree import Tree as RichTree

    when = "now" if m.live else "as they were"
    root = RichTree(f"networks {when} at seq {m.seq} {m.when}".rstrip())
    if not m.networks:
        root.add("no networks with containers, no user-defined networks")
    for n in m.networks:
        what = f"{n.subnet or '?'} gateway {n.gateway}, bridge {n.bridge or '?'}" \
            + (", internal" if n.internal else "") + (", predefined" if n.predefined else "")
        branch = root.add(f"[magenta]{escape(n.name)}[/] {what}")
        for mb in n.members:
            line = (f"[{STYLES.get(mb.state, 'white')}]{escape(mb.name)}[/] "
                    f"{mb.container[:12]}: {mb.cidr or 'no lease (' + mb.state + ')'}")
            if mb.aliases:
                line += f" aliases {escape(', '.join(mb.aliases))}"
            if mb.ports:
                line += f" ports {escape(', '.join(mb.ports))}"
            branch.add(line)
    return root
