"""`build --squash`'s one step beyond stacking layers: whiteouts that hide nothing go.

The layers a build made, stacked as overlay would merge them (adapters/storage/store.py
_link_tree), are the one layer they amount to, but for whiteouts of what was added and
deleted within them: docker's squash leaves no trace of such a file, not even its name, so
a whiteout is kept only where a base layer holds something to hide.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence


def drop_idle_whiteouts(layer: str, below: Sequence[str]) -> None:
    """Remove each whiteout (a 0/0 character device) of the layer directory `layer` whose
    path no directory of `below` (the base's layers) holds."""
    for dirpath, _dirs, names in os.walk(layer):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and \
                    not _exists_below(below, os.path.relpath(path, layer)):
                os.unlink(path)


def _exists_below(below: Sequence[str], rel: str) -> bool:
    """Whether some base layer holds `rel`, looked up without following any of its
    symlinks (an absolute link in a layer names the image's path, not this host's)."""
    parts = rel.split("/")
    for layer in below:
        path = layer
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except OSError:
                break
            if i == len(parts) - 1:
                return True
            if not stat.S_ISDIR(st.st_mode):
                break
    return False
