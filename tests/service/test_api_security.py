"""The Docker API's security fields reach the container (or are refused by name, recorded),
and no request can make the service read a host file for it."""

from __future__ import annotations

import io
import tarfile

import docker.errors
import pytest

from tests.service.conftest import Service


def test_host_config_security_fields_are_applied(service: Service) -> None:
    client = service.client()
    out = client.containers.run("busybox", ["grep", "-E", "CapEff|NoNewPrivs",
                                            "/proc/self/status"],
                                cap_drop=["ALL"], cap_add=["NET_ADMIN"], remove=True)
    assert out.decode().split() == ["CapEff:", f"{1 << 12:016x}", "NoNewPrivs:", "1"]
    out = client.containers.run("busybox", ["sh", "-c", "touch /x 2>/dev/null; echo $?"],
                                read_only=True, remove=True)
    assert out.decode().strip() != "0"
    out = client.containers.run("busybox", ["id", "-G"], user="65534", group_add=["10"],
                                remove=True)
    assert set(out.decode().split()) == {"65534", "10"}
    c = client.containers.create("busybox", "true", privileged=True, cap_add=["SYS_TIME"],
                                 security_opt=["no-new-privileges=false"])
    try:
        host = client.api.inspect_container(c.id)["HostConfig"]
        assert host["Privileged"] is True and host["CapAdd"] == ["SYS_TIME"]
        assert host["SecurityOpt"] == ["no-new-privileges=false"]
    finally:
        c.remove()


def test_unsupported_security_requests_are_refused_and_recorded(service: Service) -> None:
    client = service.client()
    before = len(service.events())
    with pytest.raises(docker.errors.APIError) as err:
        client.containers.create("busybox", "true", security_opt=["apparmor=unconfined"])
    assert err.value.status_code == 400
    assert "apparmor=unconfined" in str(err.value.explanation)
    with pytest.raises(docker.errors.APIError) as err:
        client.containers.create("busybox", "true", pid_mode="container:other")
    assert err.value.status_code == 400
    rejected = [e for e in service.events()[before:] if e["type"] == "CommandRejected"]
    assert len(rejected) == 2


def _context(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize("dockerfile", ["/etc/shadow", "../../../../../../etc/shadow",
                                        "/proc/self/environ"])
def test_build_reads_the_dockerfile_only_from_its_context(service: Service,
                                                         dockerfile: str) -> None:
    """Today's docker: the `dockerfile` parameter is a path inside the uploaded context;
    an absolute or ../ path lands inside it too, and is not found there."""
    api = service.client().api
    lines = list(api.build(fileobj=_context({"Dockerfile": "FROM busybox\n"}),
                           custom_context=True, dockerfile=dockerfile, decode=True))
    errors = [line["error"] for line in lines if "error" in line]
    assert errors and "cannot find the Dockerfile" in errors[0], lines
    assert "root:" not in str(lines) and "PATH=" not in str(lines)


def test_build_refuses_a_dockerfile_symlinked_out_of_its_context(service: Service) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("Dockerfile")
        link.type, link.linkname = tarfile.SYMTYPE, "sub/../../../../../../etc/shadow"
        tar.addfile(link)
    buf.seek(0)
    lines = list(service.client().api.build(fileobj=buf, custom_context=True, decode=True))
    errors = [line["error"] for line in lines if "error" in line]
    assert errors, lines
    assert "root:" not in str(lines)


def test_fields_lamina_cant_honour_are_refused_by_name(service: Service) -> None:
    """The real docker CLI's own requests: the defaults it always sends pass, a flag whose
    field lamina doesn't build is a 400 naming it, recorded as CommandRejected."""
    before = len(service.events())
    cases = {("--blkio-weight", "300"): "BlkioWeight (--blkio-weight) is not supported",
             ("--oom-score-adj", "100"): "OomScoreAdj (--oom-score-adj) is not supported",
             ("--log-driver", "syslog"): "driver 'syslog' (--log-driver syslog) is not "
             "supported by lamina yet"}
    for flags, message in cases.items():
        out = service.docker("create", *flags, "busybox", "true")
        assert out.returncode != 0 and message in out.stderr, (flags, out.stderr)
    rejected = [e for e in service.events()[before:] if e["type"] == "CommandRejected"]
    assert [e["data"]["command"] for e in rejected] == ["create"] * len(cases)
    assert service.ok("run", "--rm", "busybox", "echo", "plain").strip() == "plain"


def test_a_bad_kill_signal_is_a_recorded_400(service: Service) -> None:
    c = service.client().containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        before = len(service.events())
        status, doc = _status(service.raw(
            f"POST /containers/{c.id}/kill?signal=BOGUS HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 0\r\n\r\n".encode()))
        assert status == 400 and doc["message"] == "Invalid signal: BOGUS"
        new = service.events()[before:]
        assert [(e["type"], e["data"]["command"]) for e in new] == [("CommandRejected", "kill")]
    finally:
        c.remove(force=True)


def _status(raw: bytes) -> tuple[int, dict]:
    import json

    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def test_commit_changes_through_the_docker_cli(service: Service) -> None:
    service.ok("create", "--name", "to-commit", "busybox", "true")
    try:
        service.ok("commit", "-c", 'CMD ["echo", "changed"]', "-c", "ENV X=1", "to-commit",
                   "committed:1")
        assert service.ok("run", "--rm", "committed:1") == "changed\n"
        assert "X=1" in service.ok("inspect", "-f", "{{.Config.Env}}", "committed:1")
        before = len(service.events())
        out = service.docker("commit", "-c", "RUN true", "to-commit", "bad:1")
        assert out.returncode != 0 and "RUN is not a valid change command" in out.stderr
        assert [e["type"] for e in service.events()[before:]] == ["CommandRejected"]
    finally:
        service.docker("rm", "-f", "to-commit")
        service.docker("rmi", "committed:1")


def test_exec_privileged_is_refused_and_recorded(service: Service) -> None:
    c = service.client().containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        before = len(service.events())
        out = service.docker("exec", "--privileged", c.id, "true")
        assert out.returncode != 0
        assert "Privileged (exec --privileged) is not supported by lamina yet" in out.stderr
        new = service.events()[before:]
        assert [(e["type"], e["data"]["command"]) for e in new] == [("CommandRejected", "exec")]
        assert service.ok("exec", c.id, "echo", "plain") == "plain\n"
    finally:
        c.remove(force=True)
