"""The pictures as graphviz graphs (Debian's `dot` through the `graphviz` package).

Layers are rows of an HTML-like table, so a stack reads bottom-up as the seed draws it; the
union view is a folder beside it; a running container's process space is a cluster drawn
around both, its networks and published ports beside it. The network picture draws each
network as a cluster around its bridge, an edge to each container on it labelled with the
container's address there, and the host's published ports as edges from a `host` node.
Colours: read-only layers blue-grey, the read-write layer yellow, running green, paused
(frozen) blue, stopped grey, networks lilac.
"""

from __future__ import annotations

import os
from html import escape
from typing import Any

from adapters.viz.history import History
from adapters.viz.model import LayerBox, NetMap, Stack, Tree, short_cgroup

FONT = "Helvetica"
RO, RW = "#dbe4ee", "#fff2a8"
VOLUME = "#f3dcc3"  # data outside the union view: volumes, binds, tmpfs
NETWORK, HOST = "#e3d7f2", "#f5f5f5"  # a network (its bridge) and the host's ports
STATE_COLOURS = {"image": "#eeeeee", "stopped": "#d9d9d9", "running": "#bfe8c0",
                 "paused": "#bcd7f5"}
MAX_TEXT = 48


def _size(n: int) -> str:
    from core.sizes import human_size

    return human_size(n) if n >= 0 else "?"


def _cut(text: str, n: int = MAX_TEXT) -> str:
    text = " ".join(text.split())
    return escape(text if len(text) <= n else text[: n - 1] + "…")


def _graph(name: str, **attrs: str) -> Any:
    import graphviz

    g = graphviz.Digraph(name, graph_attr={"fontname": FONT, "fontsize": "12", **attrs},
                         node_attr={"fontname": FONT, "fontsize": "11", "shape": "plaintext"},
                         edge_attr={"fontname": FONT, "fontsize": "10"})
    return g


def _layer_row(box: LayerBox) -> str:
    colour = RW if box.rw else RO
    return (f'<TR><TD BGCOLOR="{colour}" ALIGN="LEFT"><FONT FACE="Courier">{box.short}</FONT>'
            f'</TD><TD BGCOLOR="{colour}" ALIGN="LEFT">{_cut(box.created_by) or "&#160;"}</TD>'
            f'<TD BGCOLOR="{colour}" ALIGN="RIGHT">{_size(box.size)}</TD></TR>')


def _changes_row(changes: tuple[tuple[str, str], ...] | None) -> str:
    if changes is None:
        text = "<I>its files now are not what they were then: the log holds no file data</I>"
    elif not changes:
        text = "<I>no changes</I>"
    else:
        shown = [f"{k} {_cut(p, 40)}" for k, p in changes[:12]]
        if len(changes) > 12:
            shown.append(f"… {len(changes) - 12} more")
        text = '<BR ALIGN="LEFT"/>'.join(shown) + '<BR ALIGN="LEFT"/>'
    return f'<TR><TD COLSPAN="3" BGCOLOR="{RW}" ALIGN="LEFT">{text}</TD></TR>'


def stack_label(s: Stack) -> str:
    """The stack as one table: the rw layer (with its changes) on top, read-only below."""
    rows = ['<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">']
    if s.rw is not None:
        rows.append(f'<TR><TD COLSPAN="3" BGCOLOR="{RW}"><B>read-write layer</B> '
                    f'(container {escape(s.label)})</TD></TR>')
        rows.append(_layer_row(s.rw))
        rows.append(_changes_row(s.changes))
    top = escape(s.image_label if s.kind == "container" else s.label)
    rows.append(f'<TR><TD COLSPAN="3" BGCOLOR="{RO}"><B>read-only layers</B> (image {top})'
                '</TD></TR>')
    rows += [_layer_row(b) for b in reversed(s.layers)]
    rows.append("</TABLE>")
    return "<" + "".join(rows) + ">"


def _title(s: Stack) -> str:
    what = f"container {s.label} ({s.id[:12]}): {s.state}" if s.kind == "container" \
        else f"image {s.label} (sha256:{s.id[:12]})"
    when = "now" if s.live else "as it was"
    return f"{what}\n{when} at seq {s.seq}" + (f", {s.when}" if s.when else "")


def _union_label(s: Stack) -> str:
    head = "union view" + (" (mounted)" if s.process else "")
    names = list(s.union) or ["(files not on this host)"]
    return head + "\n\n" + "\\l".join(_cut(n, 30) for n in names) + "\\l"


def _stack_nodes(g: Any, s: Stack) -> None:
    g.node("stack", stack_label(s))
    g.node("union", _union_label(s), shape="folder", style="filled", fillcolor="white")
    g.edge("stack", "union", label="overlay", style="solid" if s.process else "dashed")
    for i, m in enumerate(s.mounts):  # the data that lives outside the union view
        g.node(f"mount{i}", f"{_cut(m.label, 40)}\n{'read-only' if m.read_only else 'rw'}",
               shape="cylinder" if m.type == "volume" else "box3d" if m.type == "bind"
               else "note", style="filled", fillcolor=VOLUME)
        g.edge(f"mount{i}", "union", label=f"at {_cut(m.target, 30)}",
               style="solid" if s.process else "dashed")


def _process_space(g: Any, s: Stack) -> None:
    """The cluster around the union view: the container's processes, its cgroup, frozen."""
    p = s.process
    assert p is not None
    frozen = "frozen (cgroup freezer)" if p.frozen else "not frozen"
    g.attr(label=f"process space (pid {p.pid}{'' if p.live else ', as recorded'})\n"
                 f"cgroup {short_cgroup(p.cgroup)}, {frozen}",
           style="rounded,filled", fillcolor=STATE_COLOURS[s.state], color="#555555")
    commands = p.commands or ("",) * len(p.pids)
    for pid, comm in zip(p.pids, commands, strict=True):
        g.node(f"pid{pid}", f"pid {pid}\n{_cut(comm, 30)}".strip(), shape="ellipse",
               style="filled", fillcolor="white")
        g.edge(f"pid{pid}", "union", style="dotted", arrowhead="none")


def _lease_label(cidr: str, aliases: tuple[str, ...]) -> str:
    text = cidr or "no lease (not running)"
    return text + (f"\naliases {_cut(', '.join(aliases), 30)}" if aliases else "")


def _stack_networks(g: Any, s: Stack) -> None:
    """The container's networks beside its process space: an edge from each with its
    address there; its published ports as an edge from the host."""
    for i, a in enumerate(s.networks):
        bridge = f"\nbridge {a.bridge}" if a.bridge else ""
        g.node(f"net{i}", f"network {_cut(a.network, 30)}{bridge}", shape="box",
               style="rounded,filled", fillcolor=NETWORK)
        g.edge(f"net{i}", "union", label=_lease_label(a.cidr, a.aliases),
               style="solid" if a.cidr else "dashed")
        if a.ports:
            g.node("host", "host", shape="box3d", style="filled", fillcolor=HOST)
            g.edge("host", "union", label="\n".join(a.ports), color="#8e44ad")


def stack_graph(s: Stack) -> Any:
    g = _graph("stack", rankdir="LR", label=_title(s), labelloc="t", fontsize="14")
    if s.process is None:
        _stack_nodes(g, s)
    else:
        with g.subgraph(name="cluster_process") as cluster:
            _process_space(cluster, s)
            _stack_nodes(cluster, s)
    _stack_networks(g, s)
    return g


def networks_graph(m: NetMap) -> Any:
    """Each network a cluster around its bridge; each container on one or more of them once,
    an edge from each network's bridge labelled with its address there (dashed: a member
    that holds no lease, stopped); published ports as edges from the host."""
    when = "now" if m.live else "as they were"
    g = _graph("networks", rankdir="LR", label=f"networks {when} at seq {m.seq}"
               + (f", {m.when}" if m.when else ""), labelloc="t", fontsize="14")
    containers: dict[str, tuple[str, str]] = {}
    for n in m.networks:
        with g.subgraph(name=f"cluster_n{n.id[:16]}") as cluster:
            kind = "predefined, " if n.predefined else ""
            cluster.attr(label=f"network {_cut(n.name, 30)}\n{kind}{n.subnet or '?'}"
                               + (", internal" if n.internal else ""),
                         style="rounded,filled", fillcolor=NETWORK, color="#555555")
            cluster.node(f"n{n.id[:16]}", f"bridge {n.bridge or '?'}\ngateway {n.gateway}",
                         shape="box", style="filled", fillcolor="white")
        for mb in n.members:
            containers.setdefault(mb.container, (mb.name, mb.state))
    for cid, (name, state) in containers.items():
        g.node(f"c{cid[:16]}", f"{_cut(name, 30)}\n{cid[:12]}: {state}", shape="box",
               style="rounded,filled", fillcolor=STATE_COLOURS.get(state, RW))
    ports = [(mb.container, mb.ports) for n in m.networks for mb in n.members if mb.ports]
    if ports:
        g.node("host", "host\n(published ports)", shape="box3d", style="filled",
               fillcolor=HOST)
    for n in m.networks:
        for mb in n.members:
            g.edge(f"n{n.id[:16]}", f"c{mb.container[:16]}",
                   label=_lease_label(mb.cidr, mb.aliases),
                   style="solid" if mb.address else "dashed")
    for cid, published in ports:
        g.edge("host", f"c{cid[:16]}", label="\n".join(published), color="#8e44ad",
               fontcolor="#8e44ad")
    if not m.networks:
        g.node("empty", "no networks with containers, no user-defined networks",
               shape="plaintext")
    return g


def _layer_node(box: LayerBox) -> str:
    return (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
            f'<TR><TD BGCOLOR="{RO}"><FONT FACE="Courier">{box.short}</FONT> '
            f'{_size(box.size)}</TD></TR>'
            f'<TR><TD>{_cut(box.created_by, 36) or "&#160;"}</TD></TR></TABLE>>')


def tree_graph(t: Tree) -> Any:
    """Every layer once (base at the top), images as tags on their top layer, containers'
    read-write layers on their image."""
    g = _graph("tree", rankdir="TB", label=f"layer tree at seq {t.seq}"
               + (f", {t.when}" if t.when else ""), labelloc="t", fontsize="14")
    for lid, box in t.layers.items():
        g.node(f"l{lid[:16]}", _layer_node(box))
        parent = t.parents.get(lid)
        if parent:
            g.edge(f"l{parent[:16]}", f"l{lid[:16]}")
    for iid, (label, top) in t.images.items():
        g.node(f"i{iid[:16]}", f"{label}\nsha256:{iid[:12]}", shape="note", style="filled",
               fillcolor="#f5f5f5")
        if top:
            g.edge(f"l{top[:16]}", f"i{iid[:16]}", style="dashed", arrowhead="none")
    for cid, (name, state, image) in t.containers.items():
        g.node(f"c{cid[:16]}", f"{name}\n{cid[:12]}: {state}", shape="box",
               style="rounded,filled", fillcolor=STATE_COLOURS.get(state, RW))
        g.edge(f"i{image[:16]}", f"c{cid[:16]}", label="rw layer")
    return g


_ROWS = ("paused", "running", "stopped", "image")


def history_label(h: History) -> str:
    """A swimlane table: one row per state, one column per event; the container's state
    after each event is filled in its row."""
    head = ['<TD BORDER="0"></TD>', '<TD BORDER="0"><FONT POINT-SIZE="9">before</FONT></TD>']
    for s in h.steps:
        colour = "#c0392b" if s.refused else "#000000"
        what = s.type.removeprefix("Container") if not s.refused else "refused"
        move = f"<BR/><I>{s.trigger}</I>" if s.trigger and not s.refused else ""
        head.append(f'<TD BORDER="0"><FONT POINT-SIZE="9">#{s.seq} {s.at[11:19]}</FONT>'
                    f'<BR/><FONT COLOR="{colour}">{escape(what)}</FONT>{move}</TD>')
    rows = ['<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2" CELLPADDING="5">',
            "<TR>" + "".join(head) + "</TR>"]
    for state in _ROWS:
        first = h.steps[0].before == state
        cells = [f'<TD BORDER="0" ALIGN="RIGHT"><B>{state}</B></TD>',
                 f'<TD BGCOLOR="{STATE_COLOURS[state] if first else "white"}" '
                 'COLOR="#bbbbbb">&#160;</TD>']
        for s in h.steps:
            on = s.after == state
            text = "&#9679;" if on and s.refused else "&#160;"
            fill = STATE_COLOURS[state] if on else "white"
            cells.append(f'<TD BGCOLOR="{fill}" COLOR="#bbbbbb">{text}</TD>')
        rows.append("<TR>" + "".join(cells) + "</TR>")
    rows.append("</TABLE>")
    return "<" + "".join(rows) + ">"


MAX_COLUMNS = 40  # a longer history shows its newest events (the picture stays readable)


def history_graph(h: History) -> Any:
    from dataclasses import replace

    title = f"container {h.name} ({h.id[:12]}): its states over time"
    if len(h.steps) > MAX_COLUMNS:
        title += f"\n(the last {MAX_COLUMNS} of {len(h.steps)} events)"
        h = replace(h, steps=h.steps[-MAX_COLUMNS:])
    g = _graph("history", label=title, labelloc="t", fontsize="14")
    g.node("timeline", history_label(h))
    refused = [s for s in h.steps if s.refused]
    if refused:
        notes = "\\l".join(f"#{s.seq} {_cut(s.detail, 80)}" for s in refused) + "\\l"
        g.node("refused", notes, shape="note", fontcolor="#c0392b")
        g.edge("timeline", "refused", style="invis")
    return g


def render(graph: Any, path: str) -> None:
    """Write the graph as SVG or PNG (by the file's extension), atomically."""
    from core.errors import BadInput

    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise BadInput(f"unknown picture format {fmt or path!r}: use FILE.svg or FILE.png")
    if fmt == "png":
        graph.graph_attr["dpi"] = "110"
    data = graph.pipe(format=fmt)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
