"""A scripted session on the real SQLite log with in-memory layers and runtime, for tests."""

from __future__ import annotations

from adapters.eventstore.sqlite_log import SqliteEventLog, utcnow
from core.engine import Engine
from core.errors import LaminaError
from core.memory import (
    CountingIds,
    MemoryLayerStore,
    MemoryNetworkHost,
    MemoryRuntime,
    MemoryVolumeStore,
)

META = {"uid": 0, "user": "root"}


def engine(root: str, ids_from: int = 0) -> Engine:
    return Engine(log=SqliteEventLog(root), layers=MemoryLayerStore(ids=CountingIds(n=10**6)),
                  runtime=MemoryRuntime(), ids=CountingIds(n=ids_from), clock=utcnow,
                  volumes=MemoryVolumeStore(), networks=MemoryNetworkHost(),
                  meta=lambda: dict(META))


def session(root: str) -> Engine:
    """import, create web, start, pause, a refused start, unpause, commit, stop, create db."""
    e = engine(root)
    e.import_image({"bin/sh": "x"}, "busybox")
    e.create("busybox", ["sh"], name="web")
    e.start("web")
    e.pause("web")
    try:
        e.start("web")
    except LaminaError:
        pass
    else:  # pragma: no cover - the machine must refuse
        raise AssertionError("start of a paused container was accepted")
    e.unpause("web")
    e.commit("web", "web:v1")
    e.stop("web")
    e.create("web:v1", ["true"], name="db")
    return e
