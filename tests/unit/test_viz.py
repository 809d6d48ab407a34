"""viz's pictures from a real SQLite log (in-memory layers and runtime): the right layers and
ids, time travel, the tree's shared layers, the history's moves, valid SVG and PNG files."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET

import pytest

from adapters.eventstore.sqlite_log import SqliteEventLog
from adapters.viz import dot, history, model, source
from core.engine import Engine
from core.errors import NotFound
from core.memory import (
    CountingIds,
    MemoryLayerStore,
    MemoryNetworkHost,
    MemoryRuntime,
    MemoryVolumeStore,
    TickingClock,
)
from tests.conftest import require_root


@pytest.fixture
def session(tmp_path):
    """busybox, an image committed on it, a paused container `web` and a stopped `idle`."""
    root = str(tmp_path)
    e = Engine(log=SqliteEventLog(root), layers=MemoryLayerStore(ids=CountingIds(n=10**6)),
               runtime=MemoryRuntime(), ids=CountingIds(), clock=TickingClock(),
               volumes=MemoryVolumeStore(), networks=MemoryNetworkHost(),
               meta=lambda: {"user": "t"})
    e.import_image({"bin/sh": "x"}, "busybox", created_by="lamina import busybox.tar")
    maker = e.create("busybox", ["sh"], name="maker")
    child = e.commit(maker, "app:1", comment="added app")
    web = e.create("app:1", ["sh"], name="web")
    e.start(web)
    seq_running = e.log.last_seq()
    e.pause(web)
    with pytest.raises(Exception, match="paused"):
        e.exec(web, ["true"])  # refused: recorded as CommandRejected
    e.create("busybox", ["sh"], name="idle")
    return {"root": root, "engine": e, "web": web, "child": child,
            "seq_running": seq_running}


def _svg_text(path) -> str:
    tree = ET.parse(path)  # valid XML, or this raises
    assert tree.getroot().tag.endswith("svg")
    return " ".join(t.text or "" for t in tree.getroot().iter() if t.tag.endswith("text"))


def test_an_image_stack_names_its_layers_bottom_first(session, tmp_path) -> None:
    e = session["engine"]
    src = source.open_source(session["root"])
    s = model.stack(src, "app:1")
    image = e.image("app:1")
    assert [b.id for b in s.layers] == list(image.layers)
    assert s.layers[0].created_by == "lamina import busybox.tar"
    assert s.kind == "image" and s.rw is None and s.process is None
    out = tmp_path / "app.svg"
    dot.render(dot.stack_graph(s), str(out))
    text = _svg_text(out)
    for b in s.layers:
        assert b.id[:12] in text
    assert "read-only layers" in text and "app:1" in text


def test_a_paused_container_has_its_rw_layer_and_a_frozen_process_space(session) -> None:
    src = source.open_source(session["root"])
    s = model.stack(src, "web")
    assert s.kind == "container" and s.state == "paused"
    assert s.rw is not None and s.rw.id.endswith(session["web"])
    assert [b.id for b in s.layers] == list(session["engine"].image("app:1").layers)
    assert s.process is not None and s.process.frozen
    assert s.image_label == "app:1"


def test_at_draws_the_past(session, tmp_path) -> None:
    at = source.open_source(session["root"], str(session["seq_running"]))
    s = model.stack(at, "web")
    assert not s.live and s.state == "running" and s.seq == session["seq_running"]
    assert s.process is not None and not s.process.frozen and not s.process.live
    assert s.changes is None  # files are not in the log
    with pytest.raises(NotFound, match="at seq 2"):
        model.stack(source.open_source(session["root"], "2"), "web")
    future = source.open_source(session["root"], "2999-01-01T00:00:00Z")
    assert model.stack(future, "web").state == "paused"
    out = tmp_path / "past.png"
    dot.render(dot.stack_graph(s), str(out))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 150


def test_the_tree_draws_a_shared_layer_once(session, tmp_path) -> None:
    e = session["engine"]
    t = model.tree(source.open_source(session["root"]))
    base = e.image("busybox").layers[0]
    assert t.parents[base] is None
    top = e.image("app:1").layers[-1]
    assert t.parents[top] == base and t.children(base) == [top]
    assert {n for n, _, _ in t.containers.values()} == {"maker", "web", "idle"}
    out = tmp_path / "tree.svg"
    dot.render(dot.tree_graph(t), str(out))
    text = _svg_text(out)
    assert text.count(base[:12]) == 1
    assert "busybox:latest" in text and "app:1" in text and "web" in text
    json.dumps(t.to_json())


def test_history_follows_the_lifecycle_and_shows_refusals(session, tmp_path) -> None:
    src = source.open_source(session["root"])
    h = history.history(src, "web")
    moves = [(s.before, s.after) for s in h.steps if not s.refused]
    assert moves == [("image", "stopped"), ("stopped", "running"), ("running", "paused")]
    refused = [s for s in h.steps if s.refused]
    assert len(refused) == 1 and "exec" in refused[0].detail
    until = history.history(src, "web", until=session["seq_running"])
    assert until.steps[-1].after == "running"
    out = tmp_path / "history.svg"
    dot.render(dot.history_graph(h), str(out))
    text = _svg_text(out)
    assert "Paused" in text and "running" in text and "refused" in text


def test_history_of_a_removed_container_comes_from_the_log(session) -> None:
    session["engine"].rm("idle")
    h = history.history(source.open_source(session["root"]), "idle")
    assert h.steps[-1].after == "image" and h.name == "idle"
    with pytest.raises(NotFound):
        history.history(source.open_source(session["root"]), "never")


def test_the_cli_prints_json_and_refuses_a_bad_format(session, tmp_path, capsys) -> None:
    require_root()  # the CLI runs as root only, and chowns to uid 0
    from adapters.cli import run

    assert run(["--root", session["root"], "viz", "--format", "json", "web"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "paused" and doc["rw"]["rw"] is True
    assert run(["--root", session["root"], "viz", "web", "-o", str(tmp_path / "x.gif")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lamina: error: unknown picture format") and err.count("\n") == 1
    assert run(["--root", session["root"], "viz", "--tree"]) == 0
    assert "busybox:latest" in capsys.readouterr().out


def test_a_long_history_draws_its_newest_events(session, tmp_path) -> None:
    e = session["engine"]
    for _ in range(25):
        e.unpause("web")
        e.pause("web")
    h = history.history(source.open_source(session["root"]), "web")
    assert len(h.steps) > dot.MAX_COLUMNS
    out = tmp_path / "long.svg"
    dot.render(dot.history_graph(h), str(out))
    text = _svg_text(out)
    assert f"the last {dot.MAX_COLUMNS} of {len(h.steps)} events" in text
    assert f"#{h.steps[-1].seq} " in text and f"#{h.steps[0].seq} " not in text


def test_a_containers_volumes_are_drawn_beside_its_layers(session, tmp_path) -> None:
    """The seed's picture plus the data that lives outside the union view; at a past seq,
    the mounts it had then."""
    e = session["engine"]
    e.volumes.host.add("/srv/www")
    db = e.create("busybox", ["sh"], name="db", config={
        "binds": ["data:/var/lib/db", "/srv/www:/www:ro"], "tmpfs": {"/run": ""}})
    s = model.stack(source.open_source(session["root"]), "db")
    assert [(m.label, m.target, m.read_only) for m in s.mounts] == [
        ("volume data", "/var/lib/db", False), ("bind /srv/www", "/www", True),
        ("tmpfs", "/run", False)]
    out = tmp_path / "db.svg"
    dot.render(dot.stack_graph(s), str(out))
    text = _svg_text(out)
    assert "volume data" in text and "at /var/lib/db" in text and "bind /srv/www" in text
    before_rm = e.log.last_seq()
    e.rm(db)
    gone = source.open_source(session["root"], str(before_rm))
    assert [m.target for m in model.stack(gone, "db").mounts] == ["/var/lib/db", "/www", "/run"]
