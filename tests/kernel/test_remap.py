"""A --userns-remap root end to end: configured once (users and ids in a test prefix, never
the host's), its containers' processes a subordinate uid on the host, the image root-owned
inside, what they write unshifted on disk (so diff, commit, save and export work as on any
root), exec inside their user namespace (and nowhere else), the options it refuses.

The plain half of "both settings" is every other runtime test; tests/kernel/test_runtime.py
runs its tests on both kinds of root.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.conftest import MARKER, Loop
from tests.kernel.remap_env import configure, host_state, status_ids, subid_prefix
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers

pytestmark = pytest.mark.kernel

S = 100000  # the first subordinate id useradd gives laminaremap in an empty prefix
MAP = [[0, S, 65536]]


class Root(Lamina):
    prefix: Path
    base: Path

    def cid(self, name: str) -> str:
        for line in self.ok("ps", "-a", "--format", "json").splitlines():
            doc = json.loads(line)
            if doc["name"] == name:
                return str(doc["id"])
        raise AssertionError(f"no container {name}")

    def doc(self, name: str) -> dict:
        cid = self.cid(name)
        return next(json.loads(line) for line in self.ok("ps", "-a", "--format", "json")
                    .splitlines() if json.loads(line)["id"] == cid)

    def diff_dir(self, name: str) -> Path:
        return self.root / "layers" / f"rw-{self.cid(name)}" / "diff"


def _clean(root: Lamina) -> None:
    ids = [e["stream"].removeprefix("container:")
           for e in root.events("type=ContainerCreated")]
    for cid in root.container_ids():
        root("rm", "-f", cid)
    assert leftovers(root.root, ids) == []


@pytest.fixture(scope="module")
def remapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Root]:
    """One remapped root (`default`) with busybox; afterwards nothing of its containers is
    left, and the host's account files and device nodes are as they were."""
    require_root()
    accounts = host_state()
    base = tmp_path_factory.mktemp("remap")
    root = Root(base / "root")
    root.base, root.prefix = base, subid_prefix(base / "prefix")
    configure(root, root.prefix)
    root.ok("import", str(busybox_tar(base)), "busybox")
    yield root
    _clean(root)
    assert host_state() == accounts, "the host's users, ids or device nodes changed"


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Root]:
    require_root()
    root = Root(tmp_path / "plain")
    root.ok("import", str(busybox_tar(tmp_path)), "busybox")
    yield root
    _clean(root)


# --- the setting ---------------------------------------------------------------------------


def test_default_makes_laminaremap_in_the_prefix_and_records_the_maps(remapped: Root) -> None:
    etc = remapped.prefix / "etc"
    assert (etc / "subuid").read_text() == f"laminaremap:{S}:65536\n"
    assert (etc / "subgid").read_text() == f"laminaremap:{S}:65536\n"
    assert any(line.startswith("laminaremap:") for line in (etc / "passwd").read_text()
               .splitlines())
    [event] = remapped.events("type=RootConfigured")
    assert event["stream"] == "root:root"
    assert event["data"] == {"id": "root", "userns_remap": "default", "user": "laminaremap",
                             "uid_map": MAP, "gid_map": MAP, "storage": "idmapped",
                             "source": str(remapped.prefix)}
    assert remapped.ok("system", "configure").strip() == (
        f"userns-remap: default (user laminaremap: container root is host {S}:{S}, 65536 "
        "ids, idmapped layers)")
    configure(remapped, remapped.prefix)  # the same again: nothing recorded
    assert len(remapped.events("type=RootConfigured")) == 1
    assert not list((remapped.root / "tmp").iterdir())  # the probe's overlay is gone


def test_a_change_with_containers_is_refused_and_recorded(plain: Root, tmp_path: Path) -> None:
    prefix = subid_prefix(tmp_path / "prefix")
    plain.ok("create", "--name", "there", "busybox", "true")
    out = configure(plain, prefix, check=False)
    assert (out.returncode, out.stderr) == (1, "lamina: error: this root has 1 container: "
                                               "remove them before changing --userns-remap\n")
    [rejected] = plain.events("type=CommandRejected")
    assert rejected["data"]["command"] == "system configure"
    assert (prefix / "etc/subuid").read_text() == ""  # refused before any user was made
    plain.ok("rm", "there")
    configure(plain, prefix)
    plain.ok("run", "--rm", "busybox", "true")
    out = configure(plain, prefix, "off", check=False)  # only --rm containers: none left
    assert out.returncode == 0 and out.stdout.strip() == "userns-remap: off"
    assert [e["data"]["userns_remap"] for e in plain.events("type=RootConfigured")] == \
        ["default", ""]


def test_default_gives_an_existing_laminaremap_a_free_block(tmp_path: Path) -> None:
    """laminaremap already there without ids: usermod gives it the lowest free 65536-id
    block, clear of every other user's lines (another's at 100000 here)."""
    require_root()
    prefix = subid_prefix(tmp_path / "prefix")
    etc = prefix / "etc"
    with open(etc / "passwd", "a") as f:
        f.write("laminaremap:x:999:999::/nonexistent:/usr/sbin/nologin\n")
    (etc / "subuid").write_text("someone:100000:65536\n")
    root = Lamina(tmp_path / "root")
    configure(root, prefix)
    assert (etc / "subuid").read_text().splitlines() == ["someone:100000:65536",
                                                         "laminaremap:165536:65536"]
    assert (etc / "subgid").read_text().splitlines() == ["laminaremap:165536:65536"]
    [event] = root.events("type=RootConfigured")
    assert event["data"]["uid_map"] == event["data"]["gid_map"] == [[0, 165536, 65536]]


def test_serve_configures_the_root_first_or_exits(plain: Root, tmp_path: Path) -> None:
    prefix = subid_prefix(tmp_path / "prefix")
    env = {**os.environ, "LAMINA_SUBID_PREFIX": str(prefix)}
    argv = [LAMINA, "--root", str(plain.root), "serve", "--no-cli-server",
            "--socket", str(tmp_path / "api.sock")]
    plain.ok("create", "--name", "there", "busybox", "true")
    out = subprocess.run([*argv, "--userns-remap", "default"], env=env, capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 1
    assert out.stderr.strip().endswith("this root has 1 container: remove them before "
                                       "changing --userns-remap")
    assert not (tmp_path / "api.sock").exists()
    plain.ok("rm", "there")
    server = subprocess.Popen([*argv, "--userns-remap", "default"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "api.sock").exists() and time.monotonic() < deadline:
            assert server.poll() is None, "serve exited"
            time.sleep(0.05)
        assert (tmp_path / "api.sock").exists()
        assert [e["data"]["user"] for e in plain.events("type=RootConfigured")] == \
            ["laminaremap"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)


# --- nobody to the host ------------------------------------------------------------------


def test_its_processes_are_a_subordinate_uid_on_the_host(remapped: Root) -> None:
    remapped.ok("run", "-d", "--name", "sleeper", "busybox", "sleep", "60")
    init = remapped.doc("sleeper")["pid"]
    assert status_ids(init) == (S, S)
    user_ns = os.stat(f"/proc/{init}/ns/user").st_ino
    assert user_ns != os.stat("/proc/self/ns/user").st_ino
    procs = Path(f"/sys/fs/cgroup/pids/lamina/{remapped.cid('sleeper')}/cgroup.procs")
    execs = []
    try:
        # init, and per exec its joiner (which took the container root's ids after joining)
        # and the process it runs: no process in the container is host root's. One exec at
        # a time: two ExecStarted racing on the container's stream would refuse one.
        for count, user in ((2, []), (3, ["-u", "1000:1000"])):
            execs.append(subprocess.Popen([LAMINA, "--root", str(remapped.root), "exec",
                                           *user, "sleeper", "sleep", "30"],
                                          stdin=subprocess.DEVNULL))
            deadline = time.monotonic() + 10
            while len(_sleeps(procs)) < count and time.monotonic() < deadline:
                time.sleep(0.02)  # until the exec'd sleep runs (its user is taken by then)
        pids = [int(p) for p in procs.read_text().split() if int(p) != init]
        assert sorted(status_ids(p) for p in pids) == [(S, S)] * 3 + [(S + 1000, S + 1000)]
        assert {os.stat(f"/proc/{p}/ns/user").st_ino for p in pids} == {user_ns}
        inside = remapped.ok("exec", "sleeper", "sh", "-c",
                             "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user")
        assert inside.split()[:4] == ["0", "0", str(S), "65536"]
        assert inside.split()[4] == f"user:[{user_ns}]"
    finally:
        for p in execs:
            p.kill()
            p.wait()
    remapped.ok("rm", "-f", "sleeper")


def _sleeps(procs: Path) -> list[int]:
    """The processes of a cgroup running `sleep` (busybox's: its cmdline says so)."""
    out = []
    for pid in procs.read_text().split():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"):
                out.append(int(pid))
        except OSError:
            pass
    return out


def test_exec_fails_closed_on_an_init_that_shares_our_user_namespace(plain: Root) -> None:
    """exec of a remapped container requires its own user namespace: a (plain) init in
    ours is refused as not running, and nothing runs; the same exec without the remap
    does run (the control)."""
    plain.ok("run", "-d", "--name", "host-ns", "busybox", "sleep", "60")
    doc = plain.doc("host-ns")
    script = f"""
import sys
from adapters.kernel.cgroups import Cgroup
from adapters.runtime.exec import ExecTarget, run_exec
from core.process import ProcessSpec
dirs = tuple(str(d) for d in Cgroup.open({doc['id']!r}).dirs())
ids = (100000, 100000) if sys.argv[1] == "remapped" else None
target = ExecTarget({doc['id']!r}, {doc['pid']}, {doc['start_time']}, dirs, ids)
spec = ProcessSpec(argv=("true",), env=("PATH=/bin",))
sys.exit(run_exec(target, spec, ["touch", "/ran-" + sys.argv[1]], "", {{}}))
"""
    runs = {kind: subprocess.run([sys.executable, "-c", script, kind], capture_output=True,
                                 text=True, timeout=30, cwd=Path(__file__).parents[2])
            for kind in ("remapped", "plain")}
    assert runs["remapped"].returncode == 126
    assert runs["remapped"].stderr == (f"lamina: error: container {doc['id'][:12]} is not "
                                       "running\n")
    assert runs["plain"].returncode == 0, runs["plain"].stderr
    diff = plain.diff_dir("host-ns")
    assert sorted(p.name for p in diff.iterdir()) == ["ran-plain"]


# --- files: root inside, unshifted on disk ---------------------------------------------------


WRITE = ("ls -ln /etc/passwd | awk '{print $3\":\"$4}'; echo data > /root-file; "
         "mkdir -p /home/u; chown 1000:1000 /home/u; touch /home/u/f; chown 1000:1000 "
         "/home/u/f; rm /bin/true")


def _owners(tar_bytes: bytes) -> dict[str, tuple[int, int]]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        return {m.name.rstrip("/"): (m.uid, m.gid) for m in tf.getmembers()}


def test_the_image_is_root_owned_inside_and_writes_land_unshifted(remapped: Root,
                                                                  tmp_path: Path) -> None:
    out = remapped.ok("run", "--name", "writer", "busybox", "sh", "-c", WRITE)
    assert out.strip() == "0:0"  # the image's root-owned files, as root inside sees them
    diff = remapped.diff_dir("writer")
    owner = {p: (os.lstat(diff / p).st_uid, os.lstat(diff / p).st_gid)
             for p in ("root-file", "home", "home/u", "home/u/f", "bin/true")}
    assert owner == {"root-file": (0, 0), "home": (0, 0), "home/u": (1000, 1000),
                     "home/u/f": (1000, 1000), "bin/true": (0, 0)}
    whiteout = os.lstat(diff / "bin/true")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    changes = set(remapped.ok("diff", "writer").splitlines())
    assert {"A /root-file", "A /home/u", "A /home/u/f", "D /bin/true"} <= changes
    with open(tmp_path / "stopped.tar", "wb") as f:
        subprocess.run([LAMINA, "--root", str(remapped.root), "export", "writer"], stdout=f,
                       check=True)
    owners = _owners((tmp_path / "stopped.tar").read_bytes())
    assert (owners["root-file"], owners["home/u/f"], owners["etc/passwd"]) == \
        ((0, 0), (1000, 1000), (0, 0))
    assert "bin/true" not in owners
    remapped.ok("commit", "writer", "written")
    again = remapped.ok("run", "--rm", "written", "sh", "-c",
                        "stat -c '%u:%g %n' /root-file /home/u/f; ls /bin/true || echo gone")
    assert again.split("\n")[:3] == ["0:0 /root-file", "1000:1000 /home/u/f", "gone"]
    remapped.ok("save", "-o", str(tmp_path / "saved.tar"), "written")
    with tarfile.open(tmp_path / "saved.tar") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        top = tf.extractfile(manifest[0]["Layers"][-1]).read()
    assert _owners(top)["home/u/f"] == (1000, 1000)
    assert _owners(top)["root-file"] == (0, 0)
    remapped.ok("rm", "writer")


def test_export_of_a_running_container_shows_its_own_ids(remapped: Root,
                                                         tmp_path: Path) -> None:
    remapped.ok("run", "-d", "--name", "live", "busybox", "sh", "-c",
                "touch /mine; chown 1000:1000 /mine; touch /ready; sleep 60")
    merged = remapped.root / "layers" / f"rw-{remapped.cid('live')}" / "merged"
    deadline = time.monotonic() + 10
    while not (merged / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.lstat(merged / "mine").st_uid == S + 1000  # the host's view is shifted
    with open(tmp_path / "live.tar", "wb") as f:
        subprocess.run([LAMINA, "--root", str(remapped.root), "export", "live"], stdout=f,
                       check=True, timeout=60)
    owners = _owners((tmp_path / "live.tar").read_bytes())
    assert (owners["mine"], owners["etc/passwd"], owners["bin/busybox"]) == \
        ((1000, 1000), (0, 0), (0, 0))
    exported = remapped.events("container=live", "type=ContainerExported")
    assert exported[0]["data"]["digest"].startswith("sha256:")
    remapped.ok("rm", "-f", "live")


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "named"), [
    (["--privileged"], "--privileged"), (["--pid", "host"], "--pid host"),
    (["--network", "host"], "--network host")])
def test_options_it_refuses(remapped: Root, flags: list[str], named: str) -> None:
    before = len(remapped.events("type=CommandRejected"))
    out = remapped("run", "--rm", *flags, "busybox", "true")
    assert out.returncode == 1
    assert out.stderr == (f"lamina: error: {named} is incompatible with this root's "
                          "--userns-remap (default): its containers' root is not the host's "
                          "root\n")
    rejected = remapped.events("type=CommandRejected")
    assert len(rejected) == before + 1 and rejected[-1]["data"]["command"] == "create"


def test_ids_outside_the_map_are_refused_in_one_line(remapped: Root) -> None:
    out = remapped("run", "--rm", "-u", "70000", "busybox", "true")
    assert out.returncode == 127
    assert out.stderr.strip().endswith("user 70000 is outside the container's id map "
                                       "(0-65535)")
    remapped.ok("run", "-d", "--name", "mapped", "busybox", "sleep", "60")
    out = remapped("exec", "-u", "0:70000", "mapped", "true")
    assert out.returncode == 126
    assert out.stderr.strip().endswith("group 70000 is outside the container's id map "
                                       "(0-65535)")
    assert remapped.ok("exec", "-u", "65534", "mapped", "id", "-u").strip() == "65534"
    remapped.ok("rm", "-f", "mapped")


def test_read_only_ipc_and_uts_host_and_the_bound_files(remapped: Root) -> None:
    out = remapped("run", "--rm", "--read-only", "busybox", "sh", "-c",
                   "touch /x 2>&1; echo 1.2.3.4 extra >> /etc/hosts && tail -1 /etc/hosts")
    assert "Read-only file system" in out.stdout and "1.2.3.4 extra" in out.stdout
    out = remapped.ok("run", "--rm", "--ipc", "host", "--uts", "host", "busybox", "sh", "-c",
                      "hostname; ls -d /dev/shm /dev/mqueue")
    assert out.split() == [os.uname().nodename, "/dev/mqueue", "/dev/shm"]


def test_a_device_is_its_host_node_with_its_host_permissions(remapped: Root,
                                                             loop: Loop) -> None:
    """--device on a remapped root binds the host's node (a user namespace can't mknod), as
    docker's userns-remap does: the node's host owner and mode apply, so a node only host
    root may open stays closed to the container's root; given to the remapped root it
    opens, and the devices cgroup still refuses what --device did not allow (w). The node
    sits in a directory the remapped root can't walk: it is handed over as a mount."""
    script = (f"head -c {len(MARKER)} /dev/disk; echo; (: > /dev/disk) || echo refused; "
              "stat -c '%u %a' /dev/disk")
    argv = ("run", "--rm", "--device", f"{loop.node}:/dev/disk:r", "busybox", "sh", "-c",
            script)
    out = remapped(*argv)
    assert out.stdout.splitlines() == ["", "refused", "65534 600"]
    assert "head: /dev/disk: Permission denied" in out.stderr
    os.chown(loop.node, S, S)
    out = remapped(*argv)
    assert out.stdout.splitlines() == [MARKER.decode(), "refused", "0 600"], out.stderr
    assert "can't create /dev/disk: Operation not permitted" in out.stderr


def test_system_check_reports_a_range_handed_to_another_user(remapped: Root) -> None:
    subuid = remapped.prefix / "etc/subuid"
    original = subuid.read_text()
    assert findings(remapped.ok("system", "check")) == "the log and the host agree"
    try:
        subuid.write_text(original + f"intruder:{S + 500}:10\n")
        out = remapped("system", "check")
        assert out.returncode == 1
        assert findings(out.stdout) == (
            f"the root's --userns-remap (default) no longer holds: {subuid}: laminaremap's "
            f"range {S}:65536 is also given to intruder")
    finally:
        subuid.write_text(original)
    assert findings(remapped.ok("system", "check")) == "the log and the host agree"


def findings(check_output: str) -> str:
    """What `system check` found, without its last line (whether a server runs)."""
    lines = check_output.splitlines()
    assert lines[-1].startswith("server: ")
    return "\n".join(lines[:-1])


def test_build_runs_its_steps_remapped_without_the_hosts_network(remapped: Root,
                                                                  tmp_path: Path) -> None:
    """`lamina build` on a remapped root: RUN steps are remapped containers (network none
    by default: they can't share the host's), COPY writes through a plain view, and the
    layers hold container ids."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("copied\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN echo app:x:1000:1000::/home/app:/bin/sh >> /etc/passwd && mkdir -p /home/app"
        " && cat /proc/self/uid_map > /map && tail -n +3 /proc/net/dev | wc -l > /ifaces\n"
        "COPY f.txt /home/app/f.txt\n"
        "RUN chown 1000:1000 /home/app/f.txt\n"
        "USER app\n")
    remapped.ok("build", "-q", "-t", "built", str(ctx))
    out = remapped.ok("run", "--rm", "built", "sh", "-c",
                      "id -u; stat -c %u:%g /home/app/f.txt; cat /home/app/f.txt /map /ifaces")
    assert out.split() == ["1000", "1000:1000", "copied", "0", str(S), "65536", "1"]
    refused = remapped("build", "--no-cache", "--network", "host", "-t", "built2", str(ctx))
    assert refused.returncode == 1
    assert "--network host is incompatible with this root's --userns-remap" in refused.stderr


def test_volumes_binds_and_tmpfs_of_a_remapped_container(remapped: Root,
                                                         tmp_path: Path) -> None:
    """A volume is idmapped as the layers are: root inside owns it and its writes land on
    disk unshifted; a bind is the host's as it is (docker's), read-only on request; a tmpfs
    is its own."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("host file\n")
    out = remapped.ok("run", "--rm", "-v", "rvol:/data", "-v", f"{host}:/h:ro",
                      "--tmpfs", "/t", "busybox", "sh", "-c",
                      "echo w > /data/root-file && mkdir /data/u && chown 1000:1000 /data/u"
                      " && stat -c %u:%g /data; cat /h/f; touch /h/x 2>&1; "
                      "echo t > /t/f && cat /t/f")
    lines = out.splitlines()
    assert lines[0] == "0:0" and lines[1] == "host file"
    assert "Read-only file system" in lines[2] and lines[3] == "t"
    data = remapped.root / "volumes" / "rvol" / "_data"
    assert (os.lstat(data / "root-file").st_uid, os.lstat(data / "u").st_uid) == (0, 1000)
    assert not (host / "x").exists()


def test_run_t_and_exec_t_make_their_terminals_in_the_containers_devpts(
        remapped: Root) -> None:
    """A -t pty, the container's and an exec's, is made by the container's root in the
    container's own devpts (under the user namespace), sized, and its user's: the process
    sees itself on /dev/pts/N."""
    from tests.kernel.test_logs_attach import Terminal

    term = Terminal([LAMINA, "--root", str(remapped.root), "run", "-t", "--rm", "-u",
                     "nobody", "--network", "none", "busybox", "sh", "-c",
                     "tty; stty size; stat -c %U $(tty)"], size=(21, 71))
    assert term.wait() == 0, term.out
    assert term.out.split() == [b"/dev/pts/0", b"21", b"71", b"nobody"]
    remapped.ok("run", "-d", "--name", "ttyx", "--network", "none", "busybox", "sleep", "60")
    term = Terminal([LAMINA, "--root", str(remapped.root), "exec", "-t", "-u", "nobody",
                     "ttyx", "sh", "-c", "tty; stty size; stat -c %U $(tty)"], size=(20, 70))
    assert term.wait() == 0, term.out
    assert term.out.split() == [b"/dev/pts/0", b"20", b"70", b"nobody"]
    remapped.ok("rm", "-f", "ttyx")
