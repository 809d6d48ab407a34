"""core/filters.py: docker's `ps` filters as one pure rule (moby daemon/list.go), checked
on hand-made containers: which keys AND, which values OR, what implies -a, what is refused."""

from __future__ import annotations

import pytest

from core import filters
from core.errors import BadInput, NotFound
from core.model import Container, Image

BASE = Image(id="b" * 64, parent=None, layers=("l1",), version=1, created="t",
             tags=("busybox:latest",))
CHILD = Image(id="c" * 64, parent=BASE.id, layers=("l1", "l2"), version=1, created="t",
              tags=("app:1",))
OTHER = Image(id="d" * 64, parent=None, layers=("l3",), version=1, created="t",
              tags=("other:latest",))
IMAGES = {i.id: i for i in (BASE, CHILD, OTHER)}


def box(n: int, name: str, state: str = "running", image: Image = BASE, ran: bool = True,
        code: int | None = None, **config) -> Container:
    return Container(id=f"{n:x}" * 64, name=name, image=image.id, state=state, version=1,
                     created=f"2026-01-0{n}", config=config, ran=ran, exit_code=code)


# oldest first, as the log lists them
WEB = box(1, "web-1", labels={"app": "web", "tier": "front"})
DB = box(2, "db", labels={"app": "db"}, image=CHILD, network="host")
DONE = box(3, "done", state="stopped", code=0, labels={"app": "web"})
FAILED = box(4, "failed", state="stopped", code=3, image=OTHER)
FRESH = box(5, "fresh", state="stopped", ran=False, image=CHILD)
PAUSED = box(6, "paused", state="paused")
ALL = [WEB, DB, DONE, FAILED, FRESH, PAUSED]


def names(flags: list[str], everything: bool = False, limit: int = -1) -> list[str]:
    chosen = filters.select(ALL, IMAGES, filters.parse_flags(flags), everything, limit)
    return [c.name for c in chosen]


def test_no_filter_lists_live_containers_newest_first() -> None:
    assert names([]) == ["paused", "db", "web-1"]
    assert names([], everything=True) == ["paused", "fresh", "failed", "done", "db", "web-1"]


def test_label_keys_and_values_and_every_label_must_hold() -> None:
    assert names(["label=app=web"]) == ["web-1"]
    assert names(["label=app=web"], everything=True) == ["done", "web-1"]
    assert names(["label=app"], everything=True) == ["done", "db", "web-1"]
    assert names(["label=app=web", "label=tier=front"], everything=True) == ["web-1"]
    assert names(["label=app=web", "label=app=db"], everything=True) == []  # AND, not OR
    assert names(["label=nope"], everything=True) == []


def test_other_keys_or_their_values_and_and_each_other() -> None:
    assert names(["name=db", "name=web"]) == ["db", "web-1"]  # a value is a regex search
    assert names(["name=^web-1$", "label=app=web"], everything=True) == ["web-1"]
    assert names(["name=/db"]) == ["db"]
    assert names(["id=" + "2" * 5]) == ["db"]
    assert names(["id=" + "2" * 5, "name=web"]) == []


def test_status_implies_all_exited_does_not() -> None:
    assert names(["status=exited"]) == ["failed", "done"]
    assert names(["status=created"]) == ["fresh"]
    assert names(["status=paused", "status=running"]) == ["paused", "db", "web-1"]
    assert names(["exited=3"]) == []  # docker: "only useful with --all"
    assert names(["exited=3"], everything=True) == ["failed"]
    assert names(["exited=0", "exited=3"], everything=True) == ["failed", "done"]
    assert names(["exited=0"], everything=True) == ["done"]  # never-started `fresh` has none


def test_ancestor_takes_an_image_and_everything_built_on_it() -> None:
    assert names(["ancestor=busybox"], everything=True) == ["paused", "fresh", "done", "db",
                                                            "web-1"]
    assert names(["ancestor=app:1"], everything=True) == ["fresh", "db"]
    assert names(["ancestor=sha256:" + OTHER.id], everything=True) == ["failed"]
    assert names(["ancestor=" + OTHER.id[:8]], everything=True) == ["failed"]
    assert names(["ancestor=nosuch"], everything=True) == []


def test_before_and_since_by_name_or_id() -> None:
    assert names(["before=failed"], everything=True) == ["done", "db", "web-1"]
    assert names(["since=failed"], everything=True) == ["paused", "fresh"]
    assert names(["since=" + DB.id]) == ["paused"]  # stopped ones still need -a
    assert names(["before=fresh", "since=db"], everything=True) == ["failed", "done"]
    with pytest.raises(NotFound, match="No such container: nosuch"):
        names(["before=nosuch"])


def test_limit_lists_stopped_ones_too() -> None:
    assert names([], limit=2) == ["paused", "fresh"]


def test_keys_lamina_has_nothing_for_answer_as_docker_does() -> None:
    assert names(["network=host"]) == ["db"]
    assert names(["network=none"]) == ["paused", "web-1"]
    assert names(["volume=/data"]) == names(["publish=80"]) == names(["expose=80/tcp"]) == []
    assert names(["health=none"]) == names([]) and names(["health=healthy"]) == []
    assert names(["is-task=false"]) == names([]) and names(["is-task=true"]) == []
    assert names(["isolation=default"]) == names([])


def test_network_volume_publish_and_expose() -> None:
    """Members of a network by name or id (while running, its endpoint's id), a mount by
    volume name, source or destination, -p's container ports, exposed ports (--expose, -p's;
    -P publishes what is exposed)."""
    mount = {"type": "volume", "source": "data", "target": "/srv", "read_only": False}
    web = Container(id="7" * 64, name="web", image=BASE.id, state="running", version=1,
                    created="2026-01-07", config={
                        "network": "front", "mount_points": [mount],
                        "port_bindings": [{"proto": "tcp", "container_port": 80,
                                           "host_ip": "", "host_port": 8080,
                                           "host_port_end": 0}],
                        "exposed_ports": ["53/udp"]},
                    networks={"front": {}}, endpoints={"front": {"id": "f" * 64}})
    side = Container(id="8" * 64, name="side", image=BASE.id, state="running", version=1,
                     created="2026-01-08", config={"network": "front", "publish_all": True,
                                                   "exposed_ports": ["53/udp"]},
                     networks={"front": {}})

    def picked(flag: str) -> list[str]:
        chosen = filters.select([web, side], IMAGES, filters.parse_flags([flag]), False, -1)
        return sorted(c.name for c in chosen)

    assert picked("network=front") == ["side", "web"]
    assert picked("network=" + "f" * 12) == ["web"], "by id: the running one's endpoint"
    assert picked("network=bridge") == []
    assert picked("volume=data") == picked("volume=/srv") == ["web"]
    assert picked("publish=80") == picked("publish=79-81/tcp") == ["web"]
    assert picked("publish=53/udp") == ["side"], "-P publishes what it exposes"
    assert picked("expose=53/udp") == ["side", "web"] and picked("expose=80") == ["web"]


@pytest.mark.parametrize("flag, message", [
    ("bogus=1", "invalid filter 'bogus'"),
    ("status=gone", "invalid filter 'status=gone': invalid value for state (gone): must be "
                    "one of created, running, paused, restarting, removing, exited, dead"),
    ("exited=x", "invalid filter 'exited=x'"),
    ("health=ok", "invalid filter 'health=ok'"),
    ("publish=80:80", "filter for 'publish' should not contain ':'"),
    ("label", "bad format of filter (expected name=value)"),
])
def test_what_docker_refuses(flag: str, message: str) -> None:
    with pytest.raises(BadInput) as err:
        names([flag])
    assert message in str(err.value)


def test_the_generic_rule_for_other_lists() -> None:
    checks = {"a": lambda v: v == "1", "b": lambda v: v == "2"}
    assert filters.passes(checks, {"a": ["0", "1"], "b": ["2"]})
    assert not filters.passes(checks, {"a": ["1"], "b": ["3"]})
    with pytest.raises(BadInput, match="invalid filter 'c'"):
        filters.passes(checks, {"c": ["1"]})
