"""core/build.py's Extras, what the Docker API's /build asks beyond the CLI's flags:
labels as docker's --label steps, cache_from, each stage's aux id before `Successfully
built`, kept step containers (rm=0), options of RUN steps, and refused fields."""

from __future__ import annotations

import pytest

from core.build import Extras, Unsupported
from tests.unit.test_build import FakeHost, base_engine, do_build, events

TWO_STAGES = "FROM busybox AS first\nRUN echo one\nFROM first\nLABEL own=1\nRUN echo two\n"


def test_labels_are_steps_at_the_end_of_the_built_stage_in_key_order() -> None:
    e = base_engine()
    host = FakeHost(e, TWO_STAGES)
    iid, out = do_build(e, host, extras=Extras(labels={"z": "last $HOME", "a": "1"}))
    assert "Step 6/7 : LABEL a=1\n" in out and "Step 7/7 : LABEL z=last $HOME\n" in out
    config = e.log.image(iid).config
    assert config["config"]["Labels"] == {"own": "1", "a": "1", "z": "last $HOME"}
    assert [h["created_by"] for h in config["history"][-2:]] == [
        "/bin/sh -c #(nop)  LABEL a=1", "/bin/sh -c #(nop)  LABEL z=last $HOME"]
    first, _ = do_build(e, host, target="first", extras=Extras(labels={"t": "x"}))
    assert e.log.image(first).config["config"]["Labels"] == {"t": "x"}  # the target stage


def test_aux_gives_each_stage_before_successfully_built() -> None:
    e = base_engine()
    said: list[str] = []
    extras = Extras(aux=lambda iid: said.append(f"aux {iid}"))
    from core.build import build

    iid = build(e, FakeHost(e, TWO_STAGES), "/ctx", tags=["x:1"], out=said.append,
                extras=extras)
    auxes = [i for i, s in enumerate(said) if s.startswith("aux ")]
    assert len(auxes) == 2 and said[auxes[-1]] == f"aux {iid}"
    assert said[auxes[0] - 1].startswith(" ---> ") and said[auxes[0] + 1].startswith("Step 3/")
    assert said[auxes[-1] + 1:] == [f"Successfully built {iid[:12]}\n",
                                    "Successfully tagged x:1\n"]


def test_cache_from_lets_only_those_images_serve_the_cache() -> None:
    e = base_engine()
    df = "FROM busybox\nENV FOO=bar\nRUN touch baz\nRUN touch bax\n"
    first, _ = do_build(e, FakeHost(e, df), tags=["build1"])
    again, out = do_build(e, FakeHost(e, df), extras=Extras(cache_from=["build1"]))
    assert again == first and out.count("CACHED") == 3
    _, out = do_build(e, FakeHost(e, df), extras=Extras(cache_from=["nosuchtag"]))
    assert out.count("CACHED") == 0
    _, out = do_build(e, FakeHost(e, "FROM busybox\nENV FOO=bar\nRUN other\n"),
                      extras=Extras(cache_from=["build1"]))
    assert out.count("CACHED") == 1  # ENV: build1's parent chain; RUN other: not in it


def test_step_containers_stay_when_asked_and_run_steps_get_the_options() -> None:
    e = base_engine()
    do_build(e, FakeHost(e, "FROM busybox\nRUN a\nCOPY f /f\n", {"f": "x"}),
             extras=Extras(keep_containers=True, run_options={"memory": 1 << 26,
                                                              "network": "none"}))
    kept = e.log.containers()
    assert kept[0].cmd[-1] == "a" and kept[1].cmd[-1].startswith("#(nop) COPY file:")
    assert kept[0].config["memory"] == 1 << 26 and kept[0].config["network"] == "none"
    do_build(e, FakeHost(e, "FROM busybox\nRUN b\n"), extras=Extras())
    assert len(e.log.containers()) == 2  # the default removes them


def test_a_refused_field_is_one_command_rejected_and_nothing_else() -> None:
    e = base_engine()
    before = len(e.log.records)
    with pytest.raises(Unsupported, match=r"^extrahosts \(--add-host\) is not supported by "
                                          "lamina yet$"):
        do_build(e, FakeHost(e, "FROM busybox\nRUN a\n"),
                 extras=Extras(refused=["extrahosts (--add-host)"]))
    assert [r.type for r in e.log.records[before:]] == ["CommandRejected"]
    assert events(e, "CommandRejected")[-1]["command"] == "build"


def test_squash_merges_the_built_stages_layers_into_one_over_its_base() -> None:
    """docker's --squash (its experimental builder, seen against dockerd 20.10 here): the
    base's layers, then one; every history entry of the build kept with empty_layer, and
    a last one carrying the merged layer, `merge sha256:BUILT to sha256:BASE`; the
    unsquashed image is its parent; tags and aux name the squashed one."""
    e = base_engine()
    host = FakeHost(e, "FROM first\nRUN echo two\nENV A=1\nCOPY f /f\n", {"f": "x"})
    do_build(e, FakeHost(e, TWO_STAGES), tags=["first"])
    base = e.image("first")
    said: list[str] = []
    iid, out = do_build(e, host, tags=["squashed"],
                        extras=Extras(squash=True, aux=said.append))
    image, built = e.log.image(iid), e.log.image(e.log.image(iid).parent)
    assert e.image("squashed").id == iid and said == [iid] and built.parent is not None
    assert image.layers[:-1] == base.layers and len(image.layers) == len(base.layers) + 1
    assert len(built.layers) == len(base.layers) + 2  # RUN and COPY, unsquashed
    history = image.config["history"]
    below = len(base.config["history"])
    assert history[:below] == base.config["history"]
    assert [h.get("empty_layer", False) for h in history[below:]] == [True] * 3 + [False]
    assert history[-1]["comment"] == f"merge sha256:{built.id} to sha256:{base.id}"
    assert image.config["rootfs"]["diff_ids"][:-1] == base.config["rootfs"]["diff_ids"]
    assert image.config["config"]["Env"][-1] == "A=1"
    assert f" ---> squashed {built.id[:12]} to {iid[:12]}\n" in out
    same, _ = do_build(e, FakeHost(e, "FROM first\nENV B=2\n"), extras=Extras(squash=True))
    assert e.log.image(same).layers == base.layers  # no new layer: nothing to squash
