"""Binds, volumes and tmpfs in real containers: what the container sees and may do, what
the host keeps, and that a hostile image can't aim a mount at the host.

(The order and flags are unit-tested through the syscall seam in
tests/unit/test_mount_points_seam.py; here are the effects.)"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina, busybox_tar

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("mounts"))


def sh(lamina: Lamina, *flags: str, script: str) -> str:
    return lamina.ok("run", "--rm", *flags, "busybox", "sh", "-c", script)


def volume_dir(lamina: Lamina, name: str) -> Path:
    return lamina.root / "volumes" / name / "_data"


def mount_line(lamina: Lamina, flags: list[str], target: str) -> list[str]:
    """The container's /proc/mounts line for target: [source, target, type, options]."""
    out = sh(lamina, *flags, script="cat /proc/mounts")
    lines = [line.split() for line in out.splitlines() if line.split()[1] == target]
    assert lines, f"{target} is not mounted in: {out}"
    return lines[-1][:4]


def test_a_bind_mount_reads_and_writes_the_host_directory(lamina: Lamina,
                                                          tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from the host\n")
    out = sh(lamina, "-v", f"{tmp_path}:/work", script="cat /work/in.txt; echo made > "
             "/work/out.txt; stat -c %u /work/out.txt")
    assert out.splitlines() == ["from the host", "0"]
    assert (tmp_path / "out.txt").read_text() == "made\n"


def test_read_only_binds_refuse_writes_and_the_container_cannot_undo_it(
        lamina: Lamina, tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("x")
    out = lamina("run", "--rm", "-v", f"{tmp_path}:/ro:ro", "busybox", "sh", "-c",
                 "echo y > /ro/keep; mount -o remount,rw /ro; echo z > /ro/new; "
                 "grep ' /ro ' /proc/mounts")
    assert "Read-only file system" in out.stderr
    assert out.stdout.split()[3].split(",")[0] == "ro"
    assert (tmp_path / "keep").read_text() == "x" and not (tmp_path / "new").exists()
    mount = lamina("run", "--rm", "--mount", f"type=bind,src={tmp_path},dst=/m,readonly",
                   "busybox", "sh", "-c", "touch /m/t")
    assert mount.returncode != 0 and not (tmp_path / "t").exists()


def test_a_named_volume_outlives_its_container(lamina: Lamina) -> None:
    cid = lamina.ok("create", "-v", "keep:/data", "busybox", "sh", "-c",
                    "echo persisted > /data/f; chown 1234 /data/f").strip()
    lamina.ok("start", "-a", cid)
    lamina.ok("rm", cid)
    assert (volume_dir(lamina, "keep") / "f").read_text() == "persisted\n"
    assert os.stat(volume_dir(lamina, "keep") / "f").st_uid == 1234
    assert sh(lamina, "-v", "keep:/again", script="cat /again/f") == "persisted\n"
    types = [e["type"] for e in lamina.events("volume=keep")]
    assert types[:2] == ["VolumeCreated", "VolumeMounted"] and "VolumeUnmounted" in types


def test_an_anonymous_volume_goes_with_rm_v(lamina: Lamina) -> None:
    cid = lamina.ok("create", "-v", "/scratch", "busybox", "true").strip()
    doc = json.loads(lamina.ok("inspect", cid))
    doc = doc[0] if isinstance(doc, list) else doc
    [mount] = doc["Mounts"]
    assert (mount["Type"], mount["Destination"], mount["RW"]) == ("volume", "/scratch", True)
    path = Path(mount["Source"])
    assert path.is_dir() and path == volume_dir(lamina, mount["Name"])
    lamina.ok("rm", "-v", cid)
    assert not path.exists()


def test_run_rm_takes_its_anonymous_volumes_along(lamina: Lamina) -> None:
    before = set(os.listdir(lamina.root / "volumes")) if (lamina.root / "volumes").exists() \
        else set()
    sh(lamina, "-v", "/tmp/anon", script="echo x > /tmp/anon/f")
    # served, the data goes just after the answer, with the run's
    # release (core/engine/containers.py _cleared); the log says it is gone at the answer
    assert not [v for v in lamina.ok("volume", "ls", "-q").split() if v not in before]
    deadline = time.monotonic() + 10
    while set(os.listdir(lamina.root / "volumes")) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(os.listdir(lamina.root / "volumes")) - before == set()


def test_tmpfs_mounts_have_dockers_flags_and_their_options(lamina: Lamina) -> None:
    source, _, kind, options = mount_line(lamina, ["--tmpfs", "/t:size=1m,mode=1770"], "/t")
    assert (source, kind) == ("tmpfs", "tmpfs")
    opts = options.split(",")
    assert {"rw", "nosuid", "nodev", "noexec", "size=1024k", "mode=1770"} <= set(opts)
    _, _, _, options = mount_line(lamina, ["--mount", "type=tmpfs,dst=/m,tmpfs-size=65536"],
                                  "/m")
    assert "size=64k" in options.split(",")
    full = lamina("run", "--rm", "--tmpfs", "/t:size=64k", "busybox", "sh", "-c",
                  "dd if=/dev/zero of=/t/big bs=1k count=100")
    assert full.returncode != 0 and "No space left on device" in full.stderr


def test_read_only_root_keeps_volumes_and_tmpfs_writable(lamina: Lamina) -> None:
    out = lamina("run", "--rm", "--read-only", "-v", "rw-vol:/data", "--tmpfs", "/tmp",
                 "busybox", "sh", "-c", "touch /nope; echo ok > /data/f && echo ok > /tmp/f "
                 "&& cat /data/f /tmp/f")
    assert "Read-only file system" in out.stderr
    assert out.stdout == "ok\nok\n"


def test_volumes_from_shares_another_containers_mounts(lamina: Lamina,
                                                       tmp_path: Path) -> None:
    first = lamina.ok("create", "-v", "shared:/shared", "-v", f"{tmp_path}:/host",
                      "busybox", "true").strip()
    out = lamina("run", "--rm", "--volumes-from", f"{first}:ro", "busybox", "sh", "-c",
                 "ls -d /shared /host; touch /shared/x")
    assert out.stdout.split() == ["/host", "/shared"]
    assert "Read-only file system" in out.stderr
    lamina.ok("rm", first)


def test_an_image_volume_is_filled_from_the_image(lamina: Lamina, tmp_path: Path) -> None:
    tar = busybox_tar(tmp_path)
    lamina.ok("import", "--change", "VOLUME /etc", str(tar), "withvol")
    cid = lamina.ok("create", "withvol", "cat", "/etc/passwd").strip()
    doc = json.loads(lamina.ok("inspect", cid))
    doc = doc[0] if isinstance(doc, list) else doc
    [mount] = doc["Mounts"]
    assert mount["Destination"] == "/etc" and mount["Type"] == "volume"
    assert (Path(mount["Source"]) / "passwd").exists()
    assert "root:" in lamina.ok("start", "-a", cid)
    lamina.ok("rm", "-v", cid)


def test_a_hostile_image_cannot_aim_a_mount_at_the_host(lamina: Lamina,
                                                        tmp_path: Path) -> None:
    """The image's /escape is a symlink to the host directory's absolute path (and /up one
    climbing out with ..): the mounts land inside the container's own view."""
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "marker").write_text("m")
    maker = lamina.ok("create", "busybox", "sh", "-c",
                      f"ln -s {host_dir} /escape && ln -s ../../../../../../{host_dir} /up"
                      ).strip()
    lamina.ok("start", "-a", maker)
    lamina.ok("commit", maker, "hostile")
    lamina.ok("rm", maker)
    out = sh_image(lamina, "hostile", "-v", f"{src}:/escape/in", "-v", "vol-h:/up/v",
                   script="ls /escape/in /up/v; readlink /escape")
    assert "marker" in out
    assert os.listdir(host_dir) == []  # nothing made on the host, nothing mounted there
    with open("/proc/self/mountinfo") as f:
        assert str(host_dir) not in f.read()


def sh_image(lamina: Lamina, image: str, *flags: str, script: str) -> str:
    return lamina.ok("run", "--rm", *flags, image, "sh", "-c", script)


def test_bind_sources_as_docker_treats_them(lamina: Lamina, tmp_path: Path) -> None:
    made = tmp_path / "made" / "by" / "v"
    sh(lamina, "-v", f"{made}:/m", script="true")
    assert made.is_dir()  # -v makes a missing source, as docker's
    missing = tmp_path / "missing"
    out = lamina("run", "--rm", "--mount", f"type=bind,src={missing},dst=/m", "busybox",
                 "true")
    assert out.returncode != 0 and not missing.exists()
    assert f"bind source path does not exist: {missing}" in out.stderr
    single = tmp_path / "one.conf"
    single.write_text("v=1\n")
    assert sh(lamina, "-v", f"{single}:/etc/app.conf:ro", script="cat /etc/app.conf") == \
        "v=1\n"


def test_a_volume_subpath_is_found_inside_the_volume(lamina: Lamina, tmp_path: Path) -> None:
    """--mount volume-subpath=: only that directory of the volume; a symlink in the volume
    (another container could plant one) is followed inside the volume, never to the host."""
    sh(lamina, "-v", "sub:/vol", script="mkdir -p /vol/dir && echo inside > /vol/dir/f && "
       f"ln -s {tmp_path} /vol/escape && ln -s / /vol/root")
    (tmp_path / "host-only").write_text("host")
    assert sh(lamina, "--mount", "source=sub,target=/m,volume-subpath=dir,readonly",
              script="cat /m/f; touch /m/x 2>/dev/null || echo ro") == "inside\nro\n"
    out = lamina("run", "--rm", "--mount", "source=sub,target=/m,volume-subpath=escape",
                 "busybox", "ls", "/m")
    assert "host-only" not in out.stdout and out.returncode != 0
    assert "subpath" in out.stderr
    root = sh(lamina, "--mount", "source=sub,target=/m,volume-subpath=root", script="ls /m")
    assert root.split() == sorted(["dir", "escape", "root"])  # the volume's own root
    bad = lamina("run", "--rm", "--mount", "source=sub,target=/m,volume-subpath=../x",
                 "busybox", "true")
    assert bad.returncode != 0 and "subpath must be a relative path" in bad.stderr


def test_replay_at_shows_which_volumes_existed_and_who_had_them(lamina: Lamina) -> None:
    cid = lamina.ok("create", "-v", "travel:/t", "busybox", "true").strip()
    seq = lamina.events()[-1]["seq"]
    lamina.ok("rm", cid)
    lamina.ok("volume", "rm", "travel")
    then = lamina.ok("replay", "--at", str(seq))
    row = next(line for line in then.splitlines() if line.startswith("travel"))
    assert f"{cid[:12]} at /t" in row
    doc = json.loads(lamina.ok("replay", "--at", str(seq), "--format", "json"))
    [volume] = [v for v in doc["volumes"] if v["id"] == "travel"]
    assert volume["users"] == {cid: ["/t"]}
    now = lamina.ok("replay", "--at", "2999-01-01T00:00:00Z")
    assert "travel" not in now
    assert " volumes" in lamina.ok("replay")
