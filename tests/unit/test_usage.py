"""`system df`'s figures (core/engine/usage.py) on in-memory ports: docker's counts of
images, containers and volumes, active and reclaimable."""

from __future__ import annotations

from core.engine import usage
from core.memory import memory_engine


def test_disk_usage_counts_as_docker() -> None:
    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x", "etc/a": "yy"}, "busybox")
    e.create("busybox", ["sh"], name="idle")
    e.start(e.create("busybox", ["sh"], name="live"))
    e.layers.rw[e.container("idle").rw_layer] = {"/f": "hello"}
    e.volume_create("data")
    du = usage.disk_usage(e)
    assert [c.container.name for c in du.containers] == ["live", "idle"]
    assert [(c.size_rw, c.size_root - c.size_rw) for c in du.containers] == [(0, 2), (5, 2)]
    assert du.container_line() == (2, 1, 5, 5)  # the idle one's bytes are reclaimable
    [image] = du.images
    assert (image.containers, image.shared, image.size) == (2, 0, du.layers_size)
    assert du.image_line() == (1, 1, du.layers_size, 0)
    assert du.volume_line() == (1, 0, 0, 0)
    assert [(v.volume.id, v.refs) for v in du.volumes] == [("data", 0)]
