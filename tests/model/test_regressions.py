"""Core bugs the model checkers found, as minimal sequences.

A bug still open is a strict xfail: once the core is fixed it XPASSes, which fails the run,
so the marker (and any workaround in the model checkers) gets removed.
"""

from __future__ import annotations

from core.memory import memory_engine
from tests.model.harness import Step, check_world, replay, run_step


def test_tagging_a_removed_image_makes_it_top_level_again() -> None:
    """Found by test_stateful (rmi -f base; tag <base id> snap): the image stayed `removed`
    with a tag, and `rm` of its last container then deleted the tagged image. Fixed in
    core.model._image_tagged (removed=False)."""
    engine = memory_engine()
    base = engine.import_image({"bin/sh": "ash"}, "base")
    engine.create("base", ["sh"], "c0")
    engine.rmi("base", force=True)  # c0 uses it: kept, untagged, removed=True
    run_step(engine, Step("tag", ref=base, image=base, tag="snap"))
    image = engine.log.image(base)
    assert image.tags == ("snap:latest",) and not image.removed
    run_step(engine, Step("rm", "c0"))
    assert engine.log.image_tagged("snap:latest") is not None, "rm c0 deleted the image"
    check_world(engine, replay(engine.log.records))


def test_rmi_of_a_hex_looking_tag_only_untags() -> None:
    engine = memory_engine()
    iid = engine.import_image({"bin/sh": "ash"}, "cafe")
    engine.tag(iid, "other")
    run_step(engine, Step("rmi", ref="cafe", image=iid))  # as `rmi coffee` does: untag only
    assert engine.log.image_tagged("other:latest") is not None


def test_disconnecting_the_network_of_published_ports_leaves_none_bound() -> None:
    """Found by test_exhaustive's network world (create --network bridge -p 8080:80; start;
    network disconnect bridge): the container kept `ports` with no endpoint to publish
    them from, so its 8080 stayed bound in the read model while the DNAT rules pointed at
    an address the next start may lease to another container. Now the disconnect releases
    them, as docker releases an endpoint's port mappings with it."""
    engine = memory_engine()
    engine.import_image({"bin/sh": "ash"}, "base")
    engine.create("base", ["sh"], "c0", config={"network": "bridge",
                                               "port_bindings": ["8080:80"]})
    engine.start("c0")
    run_step(engine, Step("network disconnect", "c0", network="bridge"))
    check_world(engine, replay(engine.log.records))


def test_a_restart_refused_its_ports_keeps_the_process() -> None:
    """Found by test_exhaustive's soak network world: c1 asks for 8080, which c0 binds; c1
    left the bridge, started (on no network: nothing published), joined the bridge again
    while running; `restart c1` stops its process, then its start is refused the port
    (Conflict): the refusal was recorded, the log still said running, the process was gone.
    Now the leases are judged before the process is stopped: refused, it keeps running."""
    engine = memory_engine()
    engine.import_image({"bin/sh": "ash"}, "base")
    for name in ("c0", "c1"):
        engine.create("base", ["sh"], name, config={"network": "bridge",
                                                  "port_bindings": ["8080:80"]})
    engine.start("c0")
    engine.network_disconnect("bridge", "c1")
    engine.start("c1")
    engine.network_connect("bridge", "c1")
    run_step(engine, Step("restart", "c1"))
    check_world(engine, replay(engine.log.records))
