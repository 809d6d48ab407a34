"""The unmodified docker CLI against `lamina serve`: one scenario per command, checked the
way a docker user reads it (exit codes and output); then the log has every call, with the
caller's uid."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.service.conftest import DOCKER, Service

pytestmark = pytest.mark.kernel


def test_ping_version_info(service: Service) -> None:
    st = os.stat(service.socket)
    assert (st.st_mode & 0o777, st.st_uid) == (0o660, 0)  # root-owned, mode 0660
    head = service.raw(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"OK")
    assert b"Api-Version: 1.51" in head and b"Ostype: linux" in head
    assert b"Server: lamina/" in head
    out = service.ok("version")
    assert "Server: lamina" in out and "API version:      1.51 (minimum version 1.40)" in out
    assert "Images: 1" in service.ok("info")
    too_old = service.raw(b"GET /v1.39/version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"400" in too_old.split(b"\r\n")[0] and b"too old" in too_old


def test_images_inspect_history(service: Service) -> None:
    lines = service.ok("images").splitlines()
    assert lines[0].split()[:3] == ["REPOSITORY", "TAG", "IMAGE"]
    assert lines[1].split()[:2] == ["busybox", "latest"]
    iid = service.ok("image", "inspect", "-f", "{{.Id}}", "busybox").strip()
    assert iid.startswith("sha256:") and len(iid) == 71
    assert "docker import" in service.ok("history", "--no-trunc", "busybox")
    missing = service.docker("image", "inspect", "nosuch")
    assert missing.returncode == 1 and "No such image: nosuch" in missing.stderr


def test_lifecycle(service: Service) -> None:
    d = service.docker
    cid = service.ok("create", "--name", "life", "busybox", "sleep", "300").strip()
    assert len(cid) == 64
    assert "Created" in service.ok("ps", "-a", "--filter", "name=life")
    assert service.ok("start", "life").strip() == "life"
    again = d("start", "life")  # 304: docker prints the name and exits 0
    assert again.returncode == 0 and again.stdout.strip() == "life"
    assert service.ok("inspect", "-f", "{{.State.Status}}", "life").strip() == "running"
    service.ok("pause", "life")
    assert "(Paused)" in service.ok("ps", "--filter", "name=life")
    refused = d("pause", "life")
    assert refused.returncode == 1 and "already paused" in refused.stderr
    service.ok("unpause", "life")
    service.ok("restart", "-t", "1", "life")
    assert service.ok("stop", "-t", "1", "life").strip() == "life"
    status = service.ok("ps", "-a", "--filter", "name=life", "--format", "{{.Status}}")
    assert status.startswith("Exited (137)")  # sleep as PID 1 ignores SIGTERM
    assert service.ok("stop", "life").strip() == "life"  # 304 again
    service.ok("start", "life")
    service.ok("kill", "life")
    assert service.ok("wait", "life").strip() == "137"
    killed = d("kill", "life")
    assert killed.returncode == 1 and "is not running" in killed.stderr
    assert service.ok("rm", "life").strip() == "life"
    gone = d("rm", "life")
    assert gone.returncode == 1 and "No such container: life" in gone.stderr
    assert d("inspect", cid).returncode == 1


def test_rm_force_and_rmi(service: Service) -> None:
    service.ok("run", "-d", "--name", "forced", "busybox", "sleep", "300")
    busy = service.docker("rm", "forced")
    assert busy.returncode == 1 and "stop the container before removing" in busy.stderr
    service.ok("rm", "-f", "forced")
    service.ok("tag", "busybox", "extra:1")
    assert "Untagged: extra:1" in service.ok("rmi", "extra:1")
    assert service.docker("rmi", "nosuch:1").returncode == 1


def test_run_attached_exit_codes(service: Service) -> None:
    out = service.docker("run", "--name", "hello", "busybox", "sh", "-c",
                         "echo hello; echo oops >&2; exit 3")
    assert (out.returncode, out.stdout, out.stderr) == (3, "hello\n", "oops\n")
    assert "Exited (3)" in service.ok("ps", "-a", "--filter", "name=hello")
    service.ok("rm", "hello")
    rm = service.docker("run", "--rm", "--name", "gone", "busybox", "sh", "-c", "exit 7")
    assert rm.returncode == 7
    assert "gone" not in service.ok("ps", "-a")
    piped = service.docker("run", "-i", "--rm", "busybox", "tr", "a-z", "A-Z", input="abc\n")
    assert (piped.returncode, piped.stdout) == (0, "ABC\n")
    missing = service.docker("run", "--rm", "busybox", "nosuchcmd")
    assert missing.returncode == 127


def test_run_detached_logs_wait(service: Service) -> None:
    cid = service.ok("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
                     "echo one; echo two >&2; sleep 1; echo three").strip()
    assert len(cid) == 64
    follow = service.docker("logs", "-f", "chatty")
    assert follow.stdout == "one\nthree\n" and follow.stderr == "two\n"
    assert service.ok("wait", "chatty").strip() == "0"
    assert service.ok("logs", "--tail", "1", "chatty") == "three\n"
    service.ok("rm", "chatty")


def test_exec(service: Service) -> None:
    service.ok("run", "-d", "--name", "box", "busybox", "sleep", "300")
    assert service.ok("exec", "box", "echo", "hi") == "hi\n"
    code = service.docker("exec", "box", "sh", "-c", "echo err >&2; exit 4")
    assert (code.returncode, code.stderr) == (4, "err\n")
    assert service.ok("exec", "-i", "box", "cat", input="piped\n") == "piped\n"
    assert service.ok("exec", "-e", "X=1", "-w", "/tmp", "box", "sh", "-c",
                      "echo $X $(pwd)") == "1 /tmp\n"
    service.ok("stop", "-t", "0", "box")
    stopped = service.docker("exec", "box", "true")
    assert stopped.returncode == 1 and "is not running" in stopped.stderr
    service.ok("rm", "box")


def _pty_run(service: Service, argv: list[str], keys: bytes, timeout: float = 30
             ) -> tuple[int, bytes]:
    """A docker command on a pseudo-terminal, typing `keys` once it prints a prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([DOCKER, *argv], stdin=slave, stdout=slave, stderr=slave,
                            env=service.env, start_new_session=True)
    os.close(slave)
    out, typed = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not typed and b"# " in out:
            os.write(master, keys)
            typed = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(10), out


def test_run_it_tty(service: Service) -> None:
    code, out = _pty_run(service, ["run", "-it", "--rm", "busybox", "sh"],
                         b"tty; echo hi from $((40+2))\r\nexit 5\r\n")
    assert code == 5, out
    assert b"hi from 42" in out and b"/dev/pts/0" in out  # its own devpts', as runc's
    code, out = _pty_run(service, ["run", "-d", "-it", "--name", "shell", "busybox", "sh"], b"")
    assert code == 0
    code, out = _pty_run(service, ["exec", "-it", "shell", "sh"], b"echo in $((6*7))\r\nexit\r\n")
    assert code == 0 and b"in 42" in out, out
    service.ok("rm", "-f", "shell")


def test_commit_diff_export_save_load(service: Service, tmp_path: Path) -> None:
    service.ok("run", "--name", "changer", "busybox", "sh", "-c",
               "echo data > /tmp/f; rm /etc/group")
    diff = service.ok("diff", "changer").splitlines()
    assert "A /tmp/f" in diff and "D /etc/group" in diff
    iid = service.ok("commit", "-m", "a change", "changer", "changed:v1").strip()
    assert iid.startswith("sha256:")
    history = service.ok("history", "changed:v1")
    assert "a change" in history and "docker import" in history
    assert service.ok("run", "--rm", "changed:v1", "cat", "/tmp/f") == "data\n"
    export = service.docker("export", "changer", text=False)
    assert export.returncode == 0
    archive = tmp_path / "fs.tar"
    archive.write_bytes(export.stdout)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "tmp/f" in names and "etc/group" not in names and "bin/busybox" in names
    saved = tmp_path / "saved.tar"
    service.ok("save", "-o", str(saved), "changed:v1")
    service.ok("rm", "changer")
    assert "Untagged: changed:v1" in service.ok("rmi", "changed:v1")
    assert "Loaded image: changed:v1" in service.ok("load", "-i", str(saved))
    assert service.ok("images", "-q", "changed:v1").strip() == iid[7:19]
    imported = service.ok("import", "-m", "flat", str(archive), "flat:1").strip()
    assert imported.startswith("sha256:")
    assert service.ok("run", "--rm", "flat:1", "cat", "/tmp/f") == "data\n"
    service.ok("rmi", "changed:v1", "flat:1")


def test_build_classic(service: Service, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text('FROM busybox\nRUN echo built > /built\n'
                                         'COPY hello.txt /\nCMD ["cat", "/built", "/hello.txt"]\n')
    (tmp_path / "hello.txt").write_text("hello\n")
    out = service.ok("build", "-t", "made:1", str(tmp_path))
    assert "Step 4/4 : CMD" in out and "Successfully tagged made:1" in out
    assert service.ok("run", "--rm", "made:1") == "built\nhello\n"
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    failed = service.docker("build", str(tmp_path))
    assert failed.returncode == 3 and "returned a non-zero code: 3" in failed.stderr
    service.ok("rmi", "made:1")
    assert os.listdir(service.root / "tmp") == []


def test_stats(service: Service) -> None:
    service.ok("run", "-d", "--name", "measured", "busybox", "sleep", "300")
    out = service.ok("stats", "--no-stream", "measured").splitlines()
    assert out[0].startswith("CONTAINER ID") and "measured" in out[1]
    assert out[1].split()[-1] == "1"  # PIDS
    top = service.ok("top", "measured").splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert top[1].endswith("sleep 300")  # ps -ef, as docker's
    service.ok("rm", "-f", "measured")


def test_events_since_the_first(service: Service) -> None:
    service.ok("run", "--rm", "busybox", "true")
    until = str(int(time.time()) + 1)
    lines = service.ok("events", "--since", "0", "--until", until,
                       "--format", "{{json .}}").splitlines()
    first = json.loads(lines[0])
    assert (first["Type"], first["Action"]) == ("layer", "create")
    assert first["Actor"]["Attributes"]["seq"] == "1"
    assert {"Type", "Action", "Actor", "time", "timeNano"} <= set(first)
    starts = service.ok("events", "--since", "0", "--until", until, "--filter", "type=container",
                        "--filter", "event=start").splitlines()
    assert starts and all(" container start " in line for line in starts)
    watch = subprocess.Popen([DOCKER, "events", "--filter", "event=create"], env=service.env,
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        service.ok("create", "--name", "watched", "busybox", "true")
        line = watch.stdout.readline()  # only what happened since it started
        assert " container create " in line and "name=watched" in line
    finally:
        watch.kill()
        watch.wait()
    service.ok("rm", "watched")


# Requests that are engine commands (each one, refused or not, is in the log): path patterns.
COMMANDS = re.compile(r"^(POST /containers/create|POST /containers/[^/]+/(start|stop|kill|"
                      r"pause|unpause|restart)|DELETE /containers/[^/]+|DELETE /images/.+|"
                      r"POST /images/.+/tag|POST /commit|POST /images/load|POST /build|"
                      r"POST /images/create|POST /exec/[^/]+/start|GET /containers/[^/]+/export|"
                      r"GET /images/get|GET /images/.+/get)$")


def test_every_call_in_the_log_with_uid(service: Service) -> None:
    """Every command the tests above sent through the service is in lamina's log, once per
    call, with the caller's uid and pid (from SO_PEERCRED); refusals too."""
    access = [json.loads(line) for line in service.log_path.read_text().splitlines()
              if line.startswith("{")]
    calls: dict[tuple[str, str], int] = {}
    for a in access:
        key = (a.get("method", ""), a.get("path", ""))
        if a.get("event") == "request" and COMMANDS.match(" ".join(key)) and \
                a["status"] not in (400, 413) and "fromImage" not in key[1]:
            assert a["uid"] == os.getuid() and a["pid"] > 0
            calls[key] = calls.get(key, 0) + 1
    events = [e for e in service.events() if e["meta"].get("via") == "docker-api"]
    assert events and all(e["meta"]["uid"] == os.getuid() and e["meta"]["pid"] > 0
                          for e in events)
    recorded: dict[tuple[str, str], set[str]] = {}
    for e in events:
        _, method, path = e["meta"]["argv"]
        recorded.setdefault((method, path), set()).add(e["meta"]["command_id"])
    missing = {k: n for k, n in calls.items() if len(recorded.get(k, ())) < n}
    assert missing == {}, missing
    commands = {e["meta"]["command"] for e in events}
    assert {"create", "start", "stop", "kill", "pause", "unpause", "restart", "rm", "rmi",
            "commit", "exec", "export", "save", "load", "import", "tag", "build"} <= commands
    rejected = {e["data"]["command"] for e in events if e["type"] == "CommandRejected"}
    assert {"start", "stop", "pause", "kill", "rm", "exec", "rmi"} <= rejected
