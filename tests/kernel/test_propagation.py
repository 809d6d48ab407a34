"""Bind propagation in real containers (docker's `-v SRC:DST:rshared|rslave`, `--mount
...,bind-propagation=`): what a container mounts under an rshared bind is seen on the host
side, what the host side mounts under an rslave bind is seen inside and not back, and a
source not on a shared (or slave) mount fails the start in docker's words.

Each case runs lamina inside a private mount namespace of its own (`unshare --mount
--propagation private`) whose tmpfs it marks shared: no mount of the host's changes its
propagation, and everything mounted is unmounted by the script (the namespace ends with
it besides)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_lamina

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("propagation"))


def in_own_namespace(lamina: Lamina, where: Path, script: str) -> list[str]:
    """Run `script` (sh) in a new private mount namespace, $D a tmpfs of its own at
    `where` marked shared, $LAM the lamina CLI on the test's root; its output's lines. The
    script's own mounts are unmounted on the way out, whatever happened."""
    where.mkdir()
    head = f"""set -eu
LAM="{LAMINA} --root {lamina.root}"; D="{where}"
cleanup() {{ umount -R "$D" 2>/dev/null || true; }}
trap cleanup EXIT
mount -t tmpfs lamina-test "$D"
mount --make-shared "$D"
"""
    tail = f"""
cleanup
grep -c " {lamina.root}" /proc/self/mountinfo || true
"""
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          head + script + tail], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LAMINA_NO_SERVER": "1"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "0", f"mounts left under the root: {out.stdout}"
    return lines[:-1]


def test_what_a_container_mounts_under_an_rshared_bind_is_seen_on_the_host(
        lamina: Lamina, tmp_path: Path) -> None:
    out = in_own_namespace(lamina, tmp_path / "shared", """
$LAM run --rm --privileged --network none -v "$D:/b:rshared" busybox sh -c '
  mkdir /b/sub && mount -t tmpfs inner /b/sub && echo from-inside > /b/sub/f
  grep " / / " /proc/self/mountinfo | grep -c shared:'
cat "$D/sub/f"
grep " $D/sub " /proc/self/mountinfo | cut -d" " -f9
umount "$D/sub"
$LAM run --rm --privileged --network none \\
  --mount "type=bind,src=$D,dst=/b,bind-propagation=shared" \\
  busybox sh -c 'mount -t tmpfs again /b && echo on-top > /b/g'
cat "$D/g"
umount "$D"
""")
    assert out == ["1", "from-inside", "tmpfs", "on-top"]


def test_an_rslave_bind_receives_the_hosts_mounts_and_sends_none_back(
        lamina: Lamina, tmp_path: Path) -> None:
    out = in_own_namespace(lamina, tmp_path / "slave", """
CID=$($LAM run -d --privileged --network none -v "$D:/b:rslave" busybox sleep 60)
mkdir "$D/in" "$D/out"
mount -t tmpfs host-side "$D/in"
echo from-host > "$D/in/f"
$LAM exec "$CID" sh -c 'cat /b/in/f; mount -t tmpfs ctr /b/out; echo x > /b/out/g
  grep " /b " /proc/self/mountinfo | grep -o master:'
$LAM inspect -f '{{range .Mounts}}{{.Propagation}}{{end}}' "$CID"
$LAM rm -f "$CID" > /dev/null
test -e "$D/out/g" && echo came-back || echo stayed-inside
umount "$D/in"
""")
    assert out == ["from-host", "master:", "rslave", "stayed-inside"]


def test_a_source_not_on_a_shared_mount_fails_the_start_in_dockers_words(
        lamina: Lamina, tmp_path: Path) -> None:
    out = in_own_namespace(lamina, tmp_path / "private", """
mount --make-private "$D"
$LAM run --rm --network none -v "$D:/b:rshared" busybox true 2>&1 || echo failed
$LAM run --rm --network none -v "$D/x:/b:slave" busybox true 2>&1 || echo failed
mount --make-shared "$D"
mkdir "$D.slave"
mount --bind "$D" "$D.slave"
mount --make-slave "$D.slave"
$LAM run --rm --network none -v "$D.slave:/b:rslave" busybox echo a-slave-is-fine ||
  { umount "$D.slave"; exit 1; }
umount "$D.slave"
""")
    assert [line.partition("lamina: error: ")[2] or line for line in out] == [
        f"path {tmp_path}/private is mounted on {tmp_path}/private but it is not a shared "
        "mount", "failed",
        f"path {tmp_path}/private/x is mounted on {tmp_path}/private but it is not a shared "
        "or slave mount", "failed",
        "a-slave-is-fine"]
    refused = [e for e in lamina.events() if e["type"] == "CommandRejected"]
    assert [e["data"]["command"] for e in refused][-2:] == ["start", "start"], refused
