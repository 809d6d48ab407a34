"""`build --squash` on a real root: the layers a build makes become one over its base's,
what was added and deleted within them leaves no byte behind, a base file deleted stays
deleted, and the image saves to an archive skopeo reads."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina
from tests.kernel.test_storage_support import require_tool

pytestmark = pytest.mark.kernel

SECRET = b"squash-me\n" * 4  # what /secret holds: no byte of it may survive the squash
DOCKERFILE = """\
FROM busybox
RUN yes squash-me | head -c 65536 > /secret && mkdir -p /made/deep && echo kept > /made/deep/kept
RUN echo more > /made/more && rm /bin/true
RUN rm /secret && rm -r /made/deep
ENV STAGE=squashed
"""


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("squash"))


def _saved(archive: Path) -> tuple[dict, dict, list[bytes]]:
    """A docker-archive's manifest, config and layer tars (their bytes)."""
    with tarfile.open(archive) as outer:
        def read(name: str) -> bytes:
            f = outer.extractfile(name)
            assert f is not None, name
            return f.read()

        manifest = json.loads(read("manifest.json"))[0]
        return manifest, json.loads(read(manifest["Config"])), [
            read(name) for name in manifest["Layers"]]


def test_a_squashed_build_is_its_base_and_one_layer(lamina: Lamina, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    out = lamina.ok("build", "--squash", "-t", "squashed", str(tmp_path))
    assert " ---> squashed " in out
    base, image = (json.loads(lamina.ok("inspect", ref))[0] for ref in ("busybox", "squashed"))
    layers = image["RootFS"]["Layers"]
    assert layers[:-1] == base["RootFS"]["Layers"] and len(layers) == len(base["RootFS"][
        "Layers"]) + 1
    run = lamina.ok("run", "--rm", "squashed", "sh", "-c",
                    "cat /made/more; ls /made; test -e /secret || echo no-secret; "
                    "test -e /bin/true || echo no-true; echo $STAGE")
    assert run.splitlines() == ["more", "more", "no-secret", "no-true", "squashed"]

    archive = tmp_path / "squashed.tar"
    lamina.ok("save", "-o", str(archive), "squashed")
    manifest, config, blobs = _saved(archive)
    with tarfile.open(fileobj=io.BytesIO(blobs[-1])) as top:
        names = sorted(m.name for m in top.getmembers())
    assert "secret" not in names and ".wh.secret" not in names  # added and deleted within
    assert "bin/.wh.true" in names  # a base file deleted stays deleted
    assert "made/more" in names and not any(n.startswith("made/deep") for n in names)
    assert not any(SECRET in blob for blob in blobs)
    lamina.ok("build", "-t", "unsquashed", str(tmp_path))  # the same steps, from the cache
    lamina.ok("save", "-o", str(tmp_path / "unsquashed.tar"), "unsquashed")
    assert any(SECRET in blob for blob in _saved(tmp_path / "unsquashed.tar")[2])
    built = config["history"][-5:]  # the four steps', then the merged layer's
    assert [h.get("empty_layer", False) for h in built] == [True] * 4 + [False]
    assert built[3]["created_by"].endswith("ENV STAGE=squashed")
    assert built[-1]["comment"].startswith("merge sha256:")
    assert built[-1]["comment"].endswith(f" to {base['Id']}")

    skopeo = require_tool("skopeo")
    info = subprocess.run([skopeo, "--insecure-policy", "inspect",
                           f"docker-archive:{archive}"], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["Layers"] == layers
    copied = subprocess.run([skopeo, "--insecure-policy", "copy", f"docker-archive:{archive}",
                             f"oci:{tmp_path / 'oci'}:squashed"], capture_output=True,
                            text=True, timeout=120)
    assert copied.returncode == 0, copied.stderr
    assert os.path.exists(tmp_path / "oci" / "index.json")

