"""lamina installed like a daemon: `make install` (staged under DESTDIR: nothing of the host
changes), its systemd units checked by systemd-analyze, logrotate on a live server's log,
and `lamina serve` socket-activated for real by systemd-socket-activate (systemd's own
LISTEN_FDS launcher) with a NOTIFY_SOCKET it answers READY=1 on.

systemd is not PID 1 on the machines this runs on: tests/kernel/test_systemd_units.py runs
the units under a systemd booted as PID 1 of a container (docs/operations.md).
"""

from __future__ import annotations

import grp
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from adapters.fastpath.forkserver import holder
from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers
from tests.servers import stop_servers_of

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: `make deb` installs it")
        pytest.skip(f"{name} is not installed (`make deb`)")
    return path


def test_make_install_stages_the_client_the_units_and_logrotate(tmp_path: Path) -> None:
    require_root()
    stage = tmp_path / "stage"
    root = tmp_path / "root"
    make = ["make", "-s", "-C", str(REPO), f"DESTDIR={stage}", "PREFIX=/usr",
            f"LAMINA_ROOT={root}"]
    done = subprocess.run([*make, "install"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    client = stage / "usr/bin/lamina"
    units = stage / "usr/lib/systemd/system"
    rotate = stage / "etc/logrotate.d/lamina"
    assert {p.name for p in units.iterdir()} == {"lamina.socket", "lamina.service",
                                                 "lamina-shutdown.service"}
    assert client.stat().st_mode & 0o777 == 0o755 and rotate.stat().st_mode & 0o777 == 0o644
    service = (units / "lamina.service").read_text()
    assert f"ExecStart=/usr/bin/lamina --root {root} serve --socket /run/lamina.sock" in service
    assert f"ListenStream={root}/cli.sock" in (units / "lamina.socket").read_text()
    halt = (units / "lamina-shutdown.service").read_text()
    assert f"ExecStop=/usr/bin/lamina --no-server --root {root} system shutdown" in halt
    assert f"ExecStart=/usr/bin/rm -f {root}/shutting-down" in halt
    assert "@" not in service + (units / "lamina.socket").read_text() + rotate.read_text() \
        + halt
    out = subprocess.run([str(client), "--no-server", "version"], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("lamina "), out.stderr
    # systemd's own reading of the units, against the host's unit files under the stage
    shutil.copytree("/lib/systemd/system", stage / "lib/systemd/system", symlinks=True)
    shutil.copy2("/usr/bin/rm", stage / "usr/bin/rm")  # lamina-shutdown's ExecStart
    verify = subprocess.run([tool("systemd-analyze"), "verify", f"--root={stage}",
                             *(str(units / u) for u in ("lamina.socket", "lamina.service",
                                                         "lamina-shutdown.service"))],
                            capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stderr) == (0, "")
    # logrotate on a live server's log: rotated by copy, and the server writes on in place
    lam = Lamina(root)
    lam.ok("import", str(busybox_tar(tmp_path)), "busybox")
    served = {k: v for k, v in os.environ.items() if k != "LAMINA_NO_SERVER"}
    assert subprocess.run([LAMINA, "--root", str(root), "ps"], env=served, timeout=60,
                          capture_output=True).returncode == 0
    rotated = subprocess.run([tool("logrotate"), "-f", "-s", str(tmp_path / "state"),
                              str(rotate)], capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    assert "serving" in (root / "serve.log.1").read_text()
    assert (root / "serve.log").read_text() == ""
    stop_servers_of(str(root))
    assert "stopped" in (root / "serve.log").read_text()
    done = subprocess.run([*make, "uninstall"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not client.exists() and not any(units.iterdir())
    assert leftovers(root, []) == []


def test_lamina_serve_socket_activated_by_systemd(tmp_path: Path) -> None:
    """systemd-socket-activate binds both sockets and execs `lamina serve` on the first
    connection, as lamina.socket does: the command that connected is served, the API
    answers on the passed socket, serve says READY=1, and at the end the socket files
    stay (they are systemd's)."""
    require_root()
    activate = tool("systemd-socket-activate")
    root, api = tmp_path / "root", tmp_path / "api.sock"
    lam = Lamina(root)
    lam.ok("import", str(busybox_tar(tmp_path)), "busybox")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    env.pop("LAMINA_NO_SERVER", None)
    launcher = subprocess.Popen([activate, "-E", "NOTIFY_SOCKET", "-l", str(api), "-l",
                                 str(root / "cli.sock"),
                                 LAMINA, "--root", str(root), "serve", "--socket", str(api)],
                                env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (root / "cli.sock").exists():
            assert time.monotonic() < deadline and launcher.poll() is None
            time.sleep(0.02)
        out = subprocess.run([LAMINA, "--root", str(root), "run", "--rm", "--network", "none",
                              "busybox", "echo", "activated"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert (out.returncode, out.stdout) == (0, "activated\n"), out.stderr
        assert notify.recv(64) == b"READY=1"
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(api))
            client.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            assert client.makefile("rb").read().endswith(b"\r\n\r\nOK")
        check = lam.ok("system", "check").splitlines()[-1]
        assert check.startswith("server: running, pid ")
    finally:
        launcher.terminate()
        code = launcher.wait(30)
        notify.close()
    assert code == 0, launcher.stderr.read() if launcher.stderr else ""
    assert api.exists() and (root / "cli.sock").exists()  # systemd's, left for its next start
    deadline = time.monotonic() + 30
    while holder(str(root)) is not None:  # serve's fork server follows it out
        assert time.monotonic() < deadline, "the fork server outlived lamina serve"
        time.sleep(0.02)
    # the next command finds nobody on the file left behind, and starts a server of its own
    assert subprocess.run([LAMINA, "--root", str(root), "ps"], env=env, timeout=60,
                          capture_output=True).returncode == 0
    stop_servers_of(str(root))
    assert leftovers(root, []) == []


def test_the_api_socket_belongs_to_the_group_asked_for(tmp_path: Path) -> None:
    """docker's -G: mode 0660, group lamina when it exists, another by name; a group that
    doesn't exist, asked for by name, is refused in one line before anything serves."""
    require_root()
    root, api = tmp_path / "root", tmp_path / "api.sock"
    bad = subprocess.run([LAMINA, "--root", str(root), "serve", "--socket", str(api),
                          "--group", "no-such-group-here"], capture_output=True, text=True,
                         timeout=60)
    assert (bad.returncode, bad.stderr) == (
        1, "lamina: error: --group no-such-group-here: no such group\n")
    group = grp.getgrnam("daemon")
    serve = subprocess.Popen([LAMINA, "--root", str(root), "serve", "--no-cli-server",
                              "--socket", str(api), "--group", "daemon"],
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not api.exists():
            assert time.monotonic() < deadline and serve.poll() is None
            time.sleep(0.02)
        st = api.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o660, 0, group.gr_gid)
    finally:
        serve.terminate()
        assert serve.wait(30) == 0
