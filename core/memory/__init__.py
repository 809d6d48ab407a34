"""In-memory ports: the fakes behind model checking and fast unit tests.

They keep the same contracts as the real adapters (tests/contracts/ runs one suite per port
against both), but hold everything in dicts:

- log.py, MemoryEventLog: a list of Recorded events and the World folded from them.
- layers.py, MemoryLayerStore (LayerStore and Archive): a layer is a dict of files; its bytes
  (what its diff_id is the sha256 of, what push sends) are that dict as canonical JSON; an
  archive is a JSON document of images and layers, which open_archive reads back and checks.
- runtime.py, MemoryRuntime: a process is a record with `alive` and `frozen` flags; `ending`
  is a real lock; a process whose command is `echo WORDS` writes WORDS to its log when it
  starts.
- registry.py, MemoryRegistry: repositories of manifests, configs and layer blobs.
- build_host.py, MemoryBuildHost: a build's context as a dict of files, COPY into the
  read-write layer's dict, RUN as a script (what it prints, writes and exits with).
- volumes.py, MemoryVolumeStore: a volume's data is a dict of files.
- networks.py, MemoryNetworkHost: a bridge is a name with its subnet and gateway.
- ids.py: deterministic ids and a ticking clock.
"""

from __future__ import annotations

from typing import Any

from core.memory.build_host import MemoryBuildHost, MemoryFile, MemorySource, Scripted
from core.memory.ids import CountingIds, TickingClock
from core.memory.layers import (
    MemoryArchive,
    MemoryBlob,
    MemoryImage,
    MemoryLayerStore,
    MemoryStaged,
    layer_bytes,
    layer_files,
)
from core.memory.log import MemoryEventLog, WorldReader
from core.memory.networks import MemoryNetworkHost
from core.memory.registry import MemoryFetched, MemoryReference, MemoryRegistry, MemoryRemote
from core.memory.runtime import SURVIVABLE, FakeProcess, MemoryAttachment, MemoryRuntime
from core.memory.volumes import MemoryVolumeStore

__all__ = ["SURVIVABLE", "CountingIds", "FakeProcess", "MemoryArchive", "MemoryAttachment",
           "MemoryBlob", "MemoryBuildHost", "MemoryEventLog", "MemoryFetched", "MemoryFile",
           "MemoryImage", "MemoryLayerStore", "MemoryNetworkHost", "MemoryReference",
           "MemoryRegistry", "MemoryRemote", "MemoryRuntime", "MemorySource", "MemoryStaged",
           "MemoryVolumeStore", "Scripted", "TickingClock", "WorldReader", "layer_bytes",
           "layer_files", "memory_engine"]


def memory_engine(**meta: Any) -> Any:
    """An Engine on in-memory ports (for tests, model checking and the spine's demo)."""
    from core.engine import Engine

    ids = CountingIds()
    return Engine(log=MemoryEventLog(), layers=MemoryLayerStore(ids=CountingIds(n=10**6)),
                  runtime=MemoryRuntime(), ids=ids, clock=TickingClock(),
                  volumes=MemoryVolumeStore(), networks=MemoryNetworkHost(),
                  meta=lambda: dict(meta))
