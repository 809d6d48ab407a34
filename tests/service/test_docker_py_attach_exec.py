"""docker-py's own logs, attach, exec and top cases (tests/integration/api_container_test.py:
LogsTest, AttachContainerTest, ContainerTopTest; api_exec_test.py: ExecTest's detach and
stdin cases, ExecDemuxTest), their steps as written there, against `lamina serve`
(busybox for TEST_IMG); then the real docker CLI's logs --since/--until/--tail/-t, attach,
exec -i/-d and top."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from datetime import datetime

import pytest

from tests.kernel.test_logs_attach import (
    ECHO_UNTIL_QUIT,
    STDIN_TWICE,
    go_by_view,
    stdin_once_holds,
    two_attaches_hold,
)
from tests.service.conftest import DOCKER, Service

pytestmark = pytest.mark.kernel

TEST_IMG = "busybox"


# docker-py's tests/helpers.py, as they are there (paramiko's branch left out)


def ctrl_with(char):
    if re.match("[a-z]", char):
        return chr(ord(char) - ord("a") + 1).encode("ascii")
    raise Exception("char must be [a-z]")


def assert_cat_socket_detached_with_keys(sock, inputs):
    if hasattr(sock, "_sock"):
        sock = sock._sock

    for i in inputs:
        sock.sendall(i)
        time.sleep(0.5)

    # If we're using a Unix socket, the sock.send call will fail with a
    # BrokenPipeError ; INET sockets will just stop receiving / sending data
    # but will not raise an error
    if getattr(sock, "family", -9) == getattr(socket, "AF_UNIX", -1):
        # We do not want to use pytest.raises here because future versions
        # of the daemon no longer cause this to raise an error.
        try:
            sock.sendall(b"make sure the socket is closed\n")
        except OSError:
            return

    sock.sendall(b"make sure the socket is closed\n")
    data = sock.recv(128)
    # New in 18.06: error message is broadcast over the socket when reading
    # after detach
    assert data == b"" or data.startswith(
        b"exec attach failed: error on attach stdin: read escape sequence"
    )


class Case:
    """docker-py's BaseAPIIntegrationTest, as much of it as these cases use."""

    def __init__(self, service: Service) -> None:
        self.client = service.client().api
        self.client._general_configs = {}
        self.tmp_containers: list = []
        self.cleanups: list = []

    def addCleanup(self, fn) -> None:  # noqa: N802 - unittest's name
        self.cleanups.append(fn)

    def close(self) -> None:
        for fn in self.cleanups:
            fn()
        for c in self.tmp_containers:
            with contextlib.suppress(Exception):  # as docker-py's tearDown
                self.client.remove_container(c, force=True)
        self.client.close()


@pytest.fixture
def case(service: Service):
    c = Case(service)
    yield c
    c.close()


def _busybox_has(service: Service, path: str) -> bool:
    return service.docker("run", "--rm", "--network", "none", TEST_IMG, "test", "-e",
                          path).returncode == 0


# --- LogsTest -------------------------------------------------------------------------------


def test_logs(case: Case) -> None:
    snippet = "Flowering Nights (Sakuya Iyazoi)"
    container = case.client.create_container(TEST_IMG, f"echo {snippet}")
    id = container["Id"]
    case.tmp_containers.append(id)
    case.client.start(id)
    exitcode = case.client.wait(id)["StatusCode"]
    assert exitcode == 0
    logs = case.client.logs(id)
    assert logs == f"{snippet}\n".encode(encoding="ascii")


def test_logs_tail_option(case: Case) -> None:
    snippet = """Line1
Line2"""
    container = case.client.create_container(TEST_IMG, f'echo "{snippet}"')
    id = container["Id"]
    case.tmp_containers.append(id)
    case.client.start(id)
    exitcode = case.client.wait(id)["StatusCode"]
    assert exitcode == 0
    logs = case.client.logs(id, tail=1)
    assert logs == "Line2\n".encode(encoding="ascii")


def test_logs_streaming_and_follow(case: Case) -> None:
    snippet = "Flowering Nights (Sakuya Iyazoi)"
    container = case.client.create_container(TEST_IMG, f"echo {snippet}")
    id = container["Id"]
    case.tmp_containers.append(id)
    case.client.start(id)
    logs = b""
    for chunk in case.client.logs(id, stream=True, follow=True):
        logs += chunk

    exitcode = case.client.wait(id)["StatusCode"]
    assert exitcode == 0

    assert logs == f"{snippet}\n".encode(encoding="ascii")


def test_logs_streaming_and_follow_and_cancel(case: Case) -> None:
    snippet = "Flowering Nights (Sakuya Iyazoi)"
    container = case.client.create_container(
        TEST_IMG, f'sh -c "echo \\"{snippet}\\" && sleep 3"'
    )
    id = container["Id"]
    case.tmp_containers.append(id)
    case.client.start(id)
    logs = b""

    generator = case.client.logs(id, stream=True, follow=True)
    threading.Timer(1, generator.close).start()

    for chunk in generator:
        logs += chunk

    assert logs == f"{snippet}\n".encode(encoding="ascii")


def test_logs_with_tail_0(case: Case) -> None:
    snippet = "Flowering Nights (Sakuya Iyazoi)"
    container = case.client.create_container(TEST_IMG, f'echo "{snippet}"')
    id = container["Id"]
    case.tmp_containers.append(id)
    case.client.start(id)
    exitcode = case.client.wait(id)["StatusCode"]
    assert exitcode == 0
    logs = case.client.logs(id, tail=0)
    assert logs == "".encode(encoding="ascii")


def test_logs_with_until(case: Case) -> None:
    snippet = "Shanghai Teahouse (Hong Meiling)"
    container = case.client.create_container(TEST_IMG, f'echo "{snippet}"')

    case.tmp_containers.append(container)
    case.client.start(container)
    exitcode = case.client.wait(container)["StatusCode"]
    assert exitcode == 0
    logs_until_1 = case.client.logs(container, until=1)
    assert logs_until_1 == b""
    logs_until_now = case.client.logs(container, datetime.now())
    assert logs_until_now == f"{snippet}\n".encode(encoding="ascii")


def test_logs_since_and_timestamps(case: Case) -> None:
    """Not a docker-py case: since= and timestamps= through the SDK."""
    container = case.client.create_container(TEST_IMG, 'sh -c "echo one; sleep 2; echo two"')
    case.tmp_containers.append(container)
    case.client.start(container)
    case.client.wait(container)
    middle = int(time.time()) - 1  # after "one" (2 s before the end), before "two"
    assert case.client.logs(container, since=middle) == b"two\n"
    stamped = case.client.logs(container, timestamps=True, tail=1).decode()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z two\n", stamped), stamped


# --- AttachContainerTest --------------------------------------------------------------------


def test_run_container_streaming(case: Case) -> None:
    container = case.client.create_container(TEST_IMG, "/bin/sh", detach=True,
                                             stdin_open=True)
    id = container["Id"]
    case.tmp_containers.append(id)
    case.client.start(id)
    sock = case.client.attach_socket(container, ws=False)
    assert sock.fileno() > -1
    sock.close()


def test_run_container_reading_socket_http(case: Case) -> None:
    from docker.utils.socket import next_frame_header, read_exactly

    line = "hi there and stuff and things, words!"
    # `echo` appends CRLF, `printf` doesn't
    command = f"printf '{line}'"
    container = case.client.create_container(TEST_IMG, command, detach=True, tty=False)
    case.tmp_containers.append(container)

    opts = {"stdout": 1, "stream": 1, "logs": 1}
    pty_stdout = case.client.attach_socket(container, opts)
    case.addCleanup(pty_stdout.close)

    case.client.start(container)

    (stream, next_size) = next_frame_header(pty_stdout)
    assert stream == 1  # correspond to stdout
    assert next_size == len(line)
    data = read_exactly(pty_stdout, next_size)
    assert data.decode("utf-8") == line


def _websocket(service: Service, path: str):
    """A real websocket client (websocket-client, what docker-py's attach_socket(ws=True)
    uses) on the service's Unix socket. docker-py's own test_run_container_reading_socket_ws
    can't reach one: its URL's scheme http+docker is invalid to the websocket client."""
    import websocket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(service.socket)
    return websocket.create_connection(f"ws://localhost/v1.51{path}", socket=sock,
                                       timeout=20)


def test_attach_websocket(case: Case, service: Service) -> None:
    """GET /containers/ID/attach/ws: output as binary messages, raw (no stream frames);
    attached before the start as docker-py's ws test does; to a running container, our
    binary and text messages are its stdin and come back echoed; with StdinOnce our close
    ends its stdin (without it, stdin stays open for the next attach)."""
    line = "hi there and stuff and things, words!"
    created = case.client.create_container(TEST_IMG, f"printf '{line}'", detach=True,
                                           tty=False)
    case.tmp_containers.append(created)
    ws = _websocket(service, f"/containers/{created['Id']}/attach/ws?stdout=1&stream=1&logs=1")
    case.client.start(created)
    assert ws.recv() == line.encode()
    ws.close()
    echo = ["sh", "-c", 'while read l; do echo "got $l"; echo "err $l" >&2; done; echo bye']
    for once in (False, True):
        cid = case.client.create_container(TEST_IMG, echo, stdin_open=True,
                                           detach=not once)["Id"]  # docker-py: StdinOnce
        assert case.client.inspect_container(cid)["Config"]["StdinOnce"] is once
        case.tmp_containers.append(cid)
        case.client.start(cid)
        ws = _websocket(service, f"/containers/{cid}/attach/ws?stdin=1&stdout=1&stream=1")
        ws.send_binary(b"hello\n")
        assert ws.recv() == b"got hello\n"  # stderr not asked for
        ws.send("text\n")
        assert ws.recv() == b"got text\n"
        ws.close()
        if once:
            assert case.client.wait(cid, timeout=20)["StatusCode"] == 0
        else:
            ws = _websocket(service, f"/containers/{cid}/attach/ws?stdin=1&stderr=1&stream=1")
            ws.send_binary(b"again\n")
            assert ws.recv() == b"err again\n"
            ws.close()
            case.client.kill(cid)
        logs = case.client.logs(cid, stderr=False)
        assert logs == b"got hello\ngot text\n" + (b"bye\n" if once else b"got again\n")
    audit = [(e["data"]["id"], e["data"]["stdin"], e["meta"]["via"], e["meta"]["argv"][-1])
             for e in service.events() if e["type"] == "ContainerAttached"]
    ws_path = "/containers/{}/attach/ws"
    assert audit[-4:] == [(created["Id"], False, "docker-api", ws_path.format(created["Id"]))] \
        + [(c, True, "docker-api", ws_path.format(c)) for c in [audit[-3][0]] * 2 + [cid]]
    bad = service.raw(b"GET /v1.51/containers/%s/attach/ws?stream=1 HTTP/1.1\r\n"
                      b"Host: x\r\n\r\n" % cid.encode())
    assert bad.startswith(b"HTTP/1.1 400") and b"not using the websocket protocol" in bad


def test_attach_no_stream(case: Case) -> None:
    container = case.client.create_container(TEST_IMG, "echo hello")
    case.tmp_containers.append(container)
    case.client.start(container)
    case.client.wait(container, condition="not-running")
    output = case.client.attach(container, stream=False, logs=True)
    assert output == "hello\n".encode(encoding="ascii")


def test_attach_stream_and_cancel(case: Case) -> None:
    container = case.client.create_container(
        TEST_IMG, 'sh -c "sleep 2 && echo hello && sleep 60"', tty=True
    )
    case.tmp_containers.append(container)
    case.client.start(container)
    output = case.client.attach(container, stream=True, logs=True)

    threading.Timer(3, output.close).start()

    lines = []
    for line in output:
        lines.append(line)

    assert len(lines) == 1
    assert lines[0] == "hello\r\n".encode(encoding="ascii")


def test_attach_detach_with_default(case: Case) -> None:
    container = case.client.create_container(TEST_IMG, "cat", detach=True, stdin_open=True,
                                             tty=True)
    case.tmp_containers.append(container)
    case.client.start(container)

    sock = case.client.attach_socket(container, {"stdin": True, "stream": True})

    assert_cat_socket_detached_with_keys(sock, [ctrl_with("p"), ctrl_with("q")])


def test_attach_before_start_detaches_with_the_keys(case: Case, service: Service) -> None:
    """Not a docker-py case: docker run -it's attach comes before the start; its detach
    keys let go of the container, which runs on; both are in the audit (ContainerAttached,
    ContainerDetached); its monitor records its end."""
    cid = case.client.create_container(TEST_IMG, "cat", detach=True, stdin_open=True,
                                       tty=True)["Id"]
    case.tmp_containers.append(cid)
    sock = case.client.attach_socket(cid, {"stdin": True, "stdout": True, "stream": True,
                                           "detachKeys": "ctrl-x"})
    case.addCleanup(sock.close)
    case.client.start(cid)
    assert_cat_socket_detached_with_keys(sock, [ctrl_with("x")])
    assert case.client.inspect_container(cid)["State"]["Running"]
    assert [e["type"] for e in service.events() if e["data"].get("id") == cid
            and "tached" in e["type"]] == ["ContainerAttached", "ContainerDetached"]
    case.client.kill(cid)
    assert case.client.wait(cid, timeout=20)["StatusCode"] == 137


def test_attach_detach_with_config_file(case: Case) -> None:
    case.client._general_configs["detachKeys"] = "ctrl-p"

    container = case.client.create_container(TEST_IMG, "cat", detach=True, stdin_open=True,
                                             tty=True)
    case.tmp_containers.append(container)
    case.client.start(container)

    sock = case.client.attach_socket(container, {"stdin": True, "stream": True})

    assert_cat_socket_detached_with_keys(sock, [ctrl_with("p")])


def test_attach_detach_with_arg(case: Case) -> None:
    case.client._general_configs["detachKeys"] = "ctrl-p"

    container = case.client.create_container(TEST_IMG, "cat", detach=True, stdin_open=True,
                                             tty=True)
    case.tmp_containers.append(container)
    case.client.start(container)

    sock = case.client.attach_socket(
        container, {"stdin": True, "stream": True, "detachKeys": "ctrl-x"}
    )

    assert_cat_socket_detached_with_keys(sock, [ctrl_with("x")])


def test_attach_after_detach_the_container_runs_on(case: Case) -> None:
    """Not a docker-py case: what was typed reached cat; after the detach it still runs,
    and a second attach writes to it and reads its echo."""
    container = case.client.create_container(TEST_IMG, "cat", detach=True, stdin_open=True,
                                             tty=True)
    case.tmp_containers.append(container)
    case.client.start(container)
    sock = case.client.attach_socket(container, {"stdin": True, "stream": True,
                                                 "stdout": True})._sock
    sock.sendall(b"first\n")
    sock.settimeout(10)
    got = b""
    while b"first\r\n" not in got:
        got += sock.recv(4096)
    sock.sendall(ctrl_with("p") + ctrl_with("q"))
    assert sock.recv(4096) in (b"", b"first\r\n")
    sock.close()
    assert case.client.inspect_container(container)["State"]["Running"]
    again = case.client.attach_socket(container, {"stdin": True, "stream": True,
                                                  "stdout": True})._sock
    again.settimeout(10)
    again.sendall(b"second\n")
    got = b""
    while b"second\r\n" not in got:
        got += again.recv(4096)
    again.close()


# --- ContainerTopTest (xfail in docker-py: ps output depends on the host) -------------------


def test_top(case: Case) -> None:
    container = case.client.create_container(TEST_IMG, ["sleep", "60"])

    case.tmp_containers.append(container)

    case.client.start(container)
    res = case.client.top(container)
    # docker-py's expected titles (['PID', 'USER', 'TIME', 'COMMAND']) are busybox's ps;
    # a Debian host's ps -ef has these, as docker's answer on this machine has
    assert res["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(res["Processes"]) == 1
    assert res["Processes"][0][-1] == "sleep 60"
    case.client.kill(container)


def test_top_with_psargs(case: Case) -> None:
    container = case.client.create_container(TEST_IMG, ["sleep", "60"])

    case.tmp_containers.append(container)

    case.client.start(container)
    res = case.client.top(container, "-eopid,user")
    assert res["Titles"] == ["PID", "USER"]
    assert len(res["Processes"]) == 1
    # docker-py reads Processes[0][10] (a row of busybox's ps aux); ours is PID, USER
    assert res["Processes"][0][1] == "root"
    with pytest.raises(Exception, match="not allowed"):
        case.client.top(container, "-o user=PID")


# --- ExecTest: stdin, detach, the detach keys -----------------------------------------------


def _cat_container(case: Case) -> str:
    container = case.client.create_container(TEST_IMG, "cat", detach=True, stdin_open=True)
    id = container["Id"]
    case.client.start(id)
    case.tmp_containers.append(id)
    return id


def test_exec_start_socket(case: Case) -> None:
    from docker.utils.socket import next_frame_header, read_exactly

    container_id = _cat_container(case)

    line = "yay, interactive exec!"
    # `echo` appends CRLF, `printf` doesn't
    exec_id = case.client.exec_create(container_id, ["printf", line], tty=True)
    assert "Id" in exec_id

    socket = case.client.exec_start(exec_id, socket=True)
    case.addCleanup(socket.close)

    (stream, next_size) = next_frame_header(socket)
    assert stream == 1  # stdout (0 = stdin, 1 = stdout, 2 = stderr)
    assert next_size == len(line)
    data = read_exactly(socket, next_size)
    assert data.decode("utf-8") == line


def test_exec_terminal_starts_at_its_console_size_and_follows_resizes(case: Case) -> None:
    """An exec's terminal starts at the ConsoleSize of its create (docker's CLI sends its
    own terminal's) and follows /exec/ID/resize, which lamina used to answer and drop."""
    api = case.client
    container_id = _cat_container(case)
    res = api._post_json(api._url("/containers/{0}/exec", container_id), data={
        "Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True, "ConsoleSize": [33, 99]})
    assert api.exec_start(api._result(res, True)["Id"], tty=True) == b"33 99\r\n"
    exec_id = api.exec_create(container_id, ["sh", "-c", "while read x; do stty size; done"],
                              stdin=True, tty=True)["Id"]
    sock = api.exec_start(exec_id, socket=True, tty=True)._sock
    case.addCleanup(sock.close)
    api.exec_resize(exec_id, height=40, width=120)
    out, deadline = b"", time.monotonic() + 10
    sock.settimeout(0.5)
    while b"40 120" not in out and time.monotonic() < deadline:
        sock.sendall(b"\n")  # each line asks the size again
        with contextlib.suppress(TimeoutError):
            out += sock.recv(4096)
    assert b"40 120" in out, out


def test_exec_start_detached(case: Case) -> None:
    container_id = _cat_container(case)

    exec_id = case.client.exec_create(container_id, ["printf", "asdqwe"])
    assert "Id" in exec_id

    response = case.client.exec_start(exec_id, detach=True)

    assert response == ""


def test_exec_detach_with_default(case: Case) -> None:
    id = _cat_container(case)

    exec_id = case.client.exec_create(id, "cat", stdin=True, tty=True, stdout=True)
    sock = case.client.exec_start(exec_id, tty=True, socket=True)
    case.addCleanup(sock.close)

    assert_cat_socket_detached_with_keys(sock, [ctrl_with("p"), ctrl_with("q")])


def test_exec_detached_with_the_keys_is_recorded_and_so_is_its_end(
        case: Case, service: Service) -> None:
    """Not a docker-py case: after the detach keys the exec runs on (inspect: Running);
    docker's exec_detach is recorded, then its real end: ExitCode 143 once killed."""
    id = _cat_container(case)
    script = "echo $$ > /tmp/pid; cat"
    exec_id = case.client.exec_create(id, ["sh", "-c", script], stdin=True, tty=True,
                                      stdout=True)["Id"]
    sock = case.client.exec_start(exec_id, tty=True, socket=True)
    case.addCleanup(sock.close)
    assert_cat_socket_detached_with_keys(sock, [ctrl_with("p"), ctrl_with("q")])
    assert case.client.exec_inspect(exec_id)["Running"]
    pid = case.client.exec_start(case.client.exec_create(id, ["cat", "/tmp/pid"]))
    case.client.exec_start(case.client.exec_create(id, ["kill", pid.decode().strip()]))
    deadline = time.monotonic() + 20
    while case.client.exec_inspect(exec_id)["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert case.client.exec_inspect(exec_id)["ExitCode"] == 143
    mine = [e for e in service.events() if e["data"].get("argv", [""])[-1] == script]
    recorded = [e["type"] for e in service.events()
                if e["data"].get("exec_id") == mine[0]["data"]["exec_id"]]
    assert recorded == ["ExecStarted", "ExecDetached", "ExecExited"]
    seen = case.client.events(since=0, until=int(time.time()) + 1, decode=True,
                              filters={"event": ["exec_detach", "exec_die"]})
    assert [(e["Action"], e["Actor"]["Attributes"].get("exitCode")) for e in seen
            if e["Actor"]["ID"] == id and e["Actor"]["Attributes"]["execID"]
            == mine[0]["data"]["exec_id"]] == [("exec_detach", None), ("exec_die", "143")]


def test_exec_detach_with_config_file(case: Case) -> None:
    case.client._general_configs["detachKeys"] = "ctrl-p"
    id = _cat_container(case)

    exec_id = case.client.exec_create(id, "cat", stdin=True, tty=True, stdout=True)
    sock = case.client.exec_start(exec_id, tty=True, socket=True)
    case.addCleanup(sock.close)

    assert_cat_socket_detached_with_keys(sock, [ctrl_with("p")])


def test_exec_stdin_until_the_client_closes_it(case: Case) -> None:
    """Not a docker-py case: exec with stdin, no terminal: what the client sends, cat
    echoes; its half-close is cat's EOF, and the exit code follows."""
    from docker.utils.socket import frames_iter

    id = _cat_container(case)
    exec_id = case.client.exec_create(id, "cat", stdin=True, stdout=True, stderr=True)
    sock = case.client.exec_start(exec_id, socket=True)
    raw = sock._sock
    raw.sendall(b"piped\nlines\n")
    raw.shutdown(socket.SHUT_WR)
    out = b"".join(data for _, data in frames_iter(sock, tty=False))
    assert out == b"piped\nlines\n"
    deadline = time.monotonic() + 10
    while case.client.exec_inspect(exec_id)["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert case.client.exec_inspect(exec_id)["ExitCode"] == 0


def test_exec_detach_keys_refused_when_invalid(case: Case) -> None:
    import docker

    id = _cat_container(case)
    case.client._general_configs["detachKeys"] = "ctrl-1"
    with pytest.raises(docker.errors.APIError, match="Invalid detach keys"):
        case.client.exec_create(id, "cat", stdin=True, tty=True)


# --- ExecDemuxTest ----------------------------------------------------------------------------

DEMUX_CMD = 'sh -c "{}"'.format(" ; ".join([
    # Write something on stdout
    "echo hello out",
    # Busybox's sleep does not handle sub-second times.
    # This loops takes ~0.3 second to execute on my machine.
    "sleep 0.5",
    # Write something on stderr
    "echo hello err >&2"])
)


@pytest.fixture
def demux(case: Case) -> Case:
    case.container = case.client.create_container(TEST_IMG, "cat", detach=True,
                                                  stdin_open=True)
    case.client.start(case.container)
    case.tmp_containers.append(case.container)
    return case


def test_exec_command_no_stream_no_demux(demux: Case) -> None:
    # tty=False, stream=False, demux=False
    res = demux.client.exec_create(demux.container, DEMUX_CMD)
    exec_log = demux.client.exec_start(res)
    assert b"hello out\n" in exec_log
    assert b"hello err\n" in exec_log


def test_exec_command_stream_no_demux(demux: Case) -> None:
    # tty=False, stream=True, demux=False
    res = demux.client.exec_create(demux.container, DEMUX_CMD)
    exec_log = list(demux.client.exec_start(res, stream=True))
    assert len(exec_log) == 2
    assert b"hello out\n" in exec_log
    assert b"hello err\n" in exec_log


def test_exec_command_no_stream_demux(demux: Case) -> None:
    # tty=False, stream=False, demux=True
    res = demux.client.exec_create(demux.container, DEMUX_CMD)
    exec_log = demux.client.exec_start(res, demux=True)
    assert exec_log == (b"hello out\n", b"hello err\n")


def test_exec_command_stream_demux(demux: Case) -> None:
    # tty=False, stream=True, demux=True
    res = demux.client.exec_create(demux.container, DEMUX_CMD)
    exec_log = list(demux.client.exec_start(res, demux=True, stream=True))
    assert len(exec_log) == 2
    assert (b"hello out\n", None) in exec_log
    assert (None, b"hello err\n") in exec_log


def test_exec_command_tty_no_stream_no_demux(demux: Case) -> None:
    # tty=True, stream=False, demux=False
    res = demux.client.exec_create(demux.container, DEMUX_CMD, tty=True)
    exec_log = demux.client.exec_start(res)
    assert exec_log == b"hello out\r\nhello err\r\n"


def test_exec_command_tty_stream_no_demux(demux: Case) -> None:
    # tty=True, stream=True, demux=False
    res = demux.client.exec_create(demux.container, DEMUX_CMD, tty=True)
    exec_log = list(demux.client.exec_start(res, stream=True))
    assert b"hello out\r\n" in exec_log
    if len(exec_log) == 2:
        assert b"hello err\r\n" in exec_log
    else:
        assert len(exec_log) == 3
        assert b"hello err" in exec_log
        assert b"\r\n" in exec_log


def test_exec_command_tty_no_stream_demux(demux: Case) -> None:
    # tty=True, stream=False, demux=True
    res = demux.client.exec_create(demux.container, DEMUX_CMD, tty=True)
    exec_log = demux.client.exec_start(res, demux=True)
    assert exec_log == (b"hello out\r\nhello err\r\n", None)


def test_exec_command_tty_stream_demux(demux: Case) -> None:
    # tty=True, stream=True, demux=True
    res = demux.client.exec_create(demux.container, DEMUX_CMD, tty=True)
    exec_log = list(demux.client.exec_start(res, demux=True, stream=True))
    assert (b"hello out\r\n", None) in exec_log
    if len(exec_log) == 2:
        assert (b"hello err\r\n", None) in exec_log
    else:
        assert len(exec_log) == 3
        assert (b"hello err", None) in exec_log
        assert (b"\r\n", None) in exec_log


# --- the real docker CLI ----------------------------------------------------------------------


def test_docker_cli_logs_window(service: Service) -> None:
    service.ok("run", "--name", "clilogs", "--network", "none", TEST_IMG, "sh", "-c",
               "echo one; echo two >&2; sleep 2; echo three")
    out = service.docker("logs", "clilogs")
    assert (out.stdout, out.stderr) == ("one\nthree\n", "two\n")
    assert service.ok("logs", "--tail", "1", "clilogs") == "three\n"
    assert service.ok("logs", "-n", "0", "clilogs") == ""
    assert service.ok("logs", "--until", "1", "clilogs") == ""
    time.sleep(2)  # docker turns a duration into whole seconds before now
    assert service.ok("logs", "--since", "1s", "clilogs") == ""
    assert service.ok("logs", "--since", "10m", "--tail", "all", "clilogs") == "one\nthree\n"
    stamped = service.ok("logs", "-t", "--tail", "1", "clilogs")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n", stamped)
    since = stamped.split()[0]
    assert service.ok("logs", "--since", since, "clilogs") == "three\n"
    assert service.ok("logs", "--details", "clilogs") == " one\n three\n"
    bad = service.docker("logs", "--since", "yesterday", "clilogs")
    assert bad.returncode != 0
    service.ok("rm", "clilogs")


def test_docker_cli_exec_stdin_detach_and_top(service: Service) -> None:
    service.ok("run", "-d", "--name", "cliexec", "--network", "none", TEST_IMG, "sleep", "300")
    out = service.docker("exec", "-i", "cliexec", "cat", input="piped\ninput\n")
    assert (out.returncode, out.stdout) == (0, "piped\ninput\n")
    out = service.docker("exec", "-i", "cliexec", "sh", "-c", "cat; echo done $?",
                         input="x\n")
    assert out.stdout == "x\ndone 0\n"
    started = time.monotonic()
    service.ok("exec", "-d", "cliexec", "sh", "-c", "sleep 1; echo later > /tmp/d")
    assert time.monotonic() - started < 1
    time.sleep(1.5)
    assert service.ok("exec", "cliexec", "cat", "/tmp/d") == "later\n"
    top = service.ok("top", "cliexec").splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [line.split(None, 7)[-1] for line in top[1:]] == ["sleep 300"]
    top = service.ok("top", "cliexec", "-o", "pid,args").splitlines()
    assert top[0].split() == ["PID", "COMMAND"] and top[1].split()[1:] == ["sleep", "300"]
    service.ok("rm", "-f", "cliexec")


def test_docker_cli_attach(service: Service) -> None:
    """`docker attach` to a container started -d -i: our stdin reaches it (and its EOF does
    not close the container's stdin), its output reaches us; a second attach sees what it
    prints next; its exit code is attach's."""
    service.ok("run", "-d", "-i", "--name", "cliattach", "--network", "none", TEST_IMG,
               "sh", "-c", ECHO_UNTIL_QUIT)
    two_attaches_hold([DOCKER, "attach", "cliattach"], service.env)
    assert service.ok("logs", "cliattach").endswith("got sync\ngot quit\n")
    bad = service.docker("attach", "cliattach")
    assert bad.returncode != 0 and "cannot attach to a stopped container" in bad.stderr
    service.ok("rm", "cliattach")


def test_docker_cli_stdin_once(service: Service) -> None:
    """docker's CLI asks StdinOnce with -i unless -d: `docker run -i` ends with its input;
    a `create -i` container's stdin is closed by the end of the first attach's input, and
    a second attach finds it closed (its own input goes nowhere)."""
    out = service.docker("run", "-i", "--rm", "--network", "none", TEST_IMG, "cat",
                         input="hi\n")
    assert (out.returncode, out.stdout) == (0, "hi\n")
    service.ok("create", "-i", "--name", "clionce", "--network", "none", TEST_IMG, "sh", "-c",
               STDIN_TWICE)
    assert service.ok("inspect", "-f", "{{.Config.StdinOnce}}", "clionce") == "true\n"
    service.ok("start", "clionce")
    cid = service.ok("inspect", "-f", "{{.Id}}", "clionce").strip()
    stdin_once_holds([DOCKER, "attach", "clionce"], service.env, go_by_view(service.root, cid))
    service.ok("rm", "clionce")


def test_clean_after_detaches(service: Service) -> None:
    """The detached execs and attaches left nothing behind in the server."""
    assert service.alive()
    assert not [name for name in os.listdir(service.root / "tmp")]
