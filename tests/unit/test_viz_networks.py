"""`viz --networks` and a container's networks beside its stack, from a real SQLite log
written event by event (tests/unit/netlog.py): now and, with --at, as they were."""

from __future__ import annotations

import json
import struct

import pytest

from adapters.viz import dot, model, source, term
from tests.conftest import require_root
from tests.unit import netlog
from tests.unit.test_viz import _svg_text


@pytest.fixture
def log(tmp_path) -> netlog.NetLog:
    return netlog.write(str(tmp_path))


def _at(tmp_path, n: netlog.NetLog, what: str) -> source.Source:
    return source.open_source(str(tmp_path), n.ats[what])


def test_the_networks_then_with_who_had_which_address_and_port(log, tmp_path) -> None:
    m = model.networks(_at(tmp_path, log, "api started"))
    assert not m.live and m.seq == log.seqs["api started"]
    nets = {n.name: n for n in m.networks}
    assert list(nets) == ["bridge", "front"]  # the default bridge first, as it was used
    assert nets["bridge"].predefined and nets["bridge"].bridge == "lamina0"
    assert nets["front"].bridge == f"lm-{netlog.FRONT[:12]}"
    (web,) = nets["front"].members
    assert (web.name, web.cidr, web.aliases, web.ports) == (
        "web", "172.18.0.2/16", ("www",), ("0.0.0.0:8080->80/tcp",))
    (api,) = nets["bridge"].members
    assert (api.name, api.cidr, api.ports) == ("api", "172.17.0.2/16", ())
    json.dumps(m.to_json())


def test_the_dot_graph_has_the_network_and_the_edge_with_the_address(log, tmp_path) -> None:
    g = dot.networks_graph(model.networks(_at(tmp_path, log, "api started")))
    text = g.source
    front, web = f"n{netlog.FRONT[:16]}", f"c{netlog.WEB[:16]}"
    assert f"subgraph cluster_{front}" in text and "network front" in text
    assert f'{front} -> {web} [label="172.18.0.2/16' in text
    assert f'host -> {web} [label="0.0.0.0:8080->80/tcp"' in text
    assert f'n{netlog.BRIDGE[:16]} -> c{netlog.API[:16]} [label="172.17.0.2/16"' in text
    out = tmp_path / "networks.svg"
    dot.render(g, str(out))
    svg = _svg_text(out)
    for word in ("network front", "172.18.0.2/16", "0.0.0.0:8080-&gt;80/tcp", "lamina0",
                 "web", "api"):
        assert word.replace("&gt;", ">") in svg, word


def test_after_the_stop_the_picture_has_no_lease_and_now_neither(log, tmp_path) -> None:
    then = model.networks(_at(tmp_path, log, "web stopped"))
    front = next(n for n in then.networks if n.name == "front")
    assert [(mb.name, mb.address, mb.ports) for mb in front.members] == [("web", "", ())]
    text = dot.networks_graph(then).source
    assert "172.18.0.2" not in text and "no lease" in text and "style=dashed" in text
    assert "host" not in text  # nothing published then
    now = model.networks(source.open_source(str(tmp_path)))
    assert now.live and all(not mb.address for n in now.networks for mb in n.members)
    out = tmp_path / "now.png"
    dot.render(dot.networks_graph(now), str(out))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 100


def test_before_anything_the_picture_says_so(log, tmp_path) -> None:
    m = model.networks(source.open_source(str(tmp_path), "0"))
    assert m.networks == ()
    assert "no networks" in dot.networks_graph(m).source


def test_a_containers_networks_are_drawn_beside_its_stack(log, tmp_path) -> None:
    s = model.stack(_at(tmp_path, log, "web started"), "web")
    assert [(a.network, a.cidr, a.ports) for a in s.networks] == [
        ("front", "172.18.0.2/16", ("0.0.0.0:8080->80/tcp",))]
    text = dot.stack_graph(s).source
    assert 'net0 -> union [label="172.18.0.2/16' in text and "host -> union" in text
    out = tmp_path / "web.svg"
    dot.render(dot.stack_graph(s), str(out))
    assert "network front" in _svg_text(out)
    stopped = model.stack(source.open_source(str(tmp_path)), "web")
    assert [(a.network, a.cidr) for a in stopped.networks] == [("front", "")]


def test_the_terminal_draws_them_too(log, tmp_path) -> None:
    con = term.console()
    with con.capture() as cap:
        con.print(term.networks_renderable(model.networks(_at(tmp_path, log, "api started"))))
    text = cap.get()
    assert "front" in text and "172.18.0.2/16" in text and "0.0.0.0:8080->80/tcp" in text
    assert "bridge" in text and "172.17.0.2/16" in text


def test_the_cli_draws_networks_at_a_time(log, tmp_path, capsys) -> None:
    require_root()  # the CLI runs as root only
    from adapters.cli import run

    root = str(tmp_path)
    assert run(["--root", root, "viz", "--networks", "--at", log.ats["web started"],
                "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    front = next(n for n in doc["networks"] if n["name"] == "front")
    assert front["members"][0]["address"] == "172.18.0.2"
    out = tmp_path / "n.svg"
    assert run(["--root", root, "viz", "--networks", "-o", str(out)]) == 0
    assert "network front" in _svg_text(out)
    assert run(["--root", root, "viz", "--networks", "--tree"]) == 1
    assert "one picture" in capsys.readouterr().err
