"""Through the real docker CLI, docker-py and lamina's own CLI against `lamina serve`:
`rmi -f` of one tag leaves the others (DELETE /images/X?force=1 too), and `ps --filter`
finds containers by label (what docker-compose does to find what it started, and to take
it `down`), by exit code, name, id, status, ancestor, before and since."""

from __future__ import annotations

import json
import socket

import pytest

from tests.kernel.runtime_env import Lamina
from tests.service.conftest import Service

pytestmark = pytest.mark.kernel


def tags_of(service: Service, ref: str) -> list[str]:
    return sorted(json.loads(service.ok("image", "inspect", "-f", "{{json .RepoTags}}", ref)))


def http(service: Service, method: str, path: str) -> tuple[int, object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(service.socket)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_removing_one_tag_never_removes_the_others(service: Service) -> None:
    iid = service.ok("image", "inspect", "-f", "{{.Id}}", "busybox").strip()
    for tag in ("extra:tag", "extra:two", "keep:1", "keep:2", "mine:1"):
        service.ok("tag", "busybox", tag)
    assert service.ok("rmi", "-f", "extra:tag") == "Untagged: extra:tag\n"  # docker CLI
    assert http(service, "DELETE", "/v1.51/images/extra:two?force=1") == \
        (200, [{"Untagged": "extra:two"}])  # the API as the issue names it
    service.client().images.remove("keep:1", force=True)  # docker-py
    lamina = Lamina(service.root)
    assert lamina.ok("rmi", "-f", "keep:2") == "Untagged: keep:2\n"  # lamina's CLI
    assert tags_of(service, iid) == ["busybox:latest", "mine:1"]
    by_id = service.docker("rmi", iid[7:19])
    assert by_id.returncode == 1 and "image is referenced in multiple repositories" \
        in by_id.stderr
    assert service.ok("rmi", "mine:1") == "Untagged: mine:1\n"
    assert tags_of(service, iid) == ["busybox:latest"]
    assert service.ok("run", "--rm", "busybox", "echo", "still") == "still\n"


def names(text: str) -> list[str]:
    return sorted(text.split())


def test_ps_filters_by_label_as_docker_compose_asks(service: Service, tmp_path) -> None:
    project = "com.docker.compose.project"
    d = service.ok
    d("run", "-d", "--name", "c-web", "-l", f"{project}=demo", "-l",
      "com.docker.compose.service=web", "busybox", "sleep", "300")
    d("run", "-d", "--name", "c-db", "-l", f"{project}=demo", "-l",
      "com.docker.compose.service=db", "busybox", "sleep", "300")
    d("run", "--name", "c-once", "-l", f"{project}=demo", "busybox", "true")
    d("run", "-d", "--name", "c-other", "-l", f"{project}=other", "busybox", "sleep", "300")
    fmt = ("--format", "{{.Names}}")
    assert names(d("ps", "--filter", f"label={project}=demo", *fmt)) == ["c-db", "c-web"]
    assert names(d("ps", "-a", "--filter", f"label={project}=demo", *fmt)) == \
        ["c-db", "c-once", "c-web"]
    assert names(d("ps", "--filter", f"label={project}", *fmt)) == ["c-db", "c-other", "c-web"]
    assert names(d("ps", "--filter", f"label={project}=demo", "--filter",
                   "label=com.docker.compose.service=db", *fmt)) == ["c-db"]
    client = service.client()
    found = client.containers.list(all=True, filters={"label": [f"{project}=demo"]})
    assert sorted(c.name for c in found) == ["c-db", "c-once", "c-web"]
    for c in found:  # what `docker compose down` does with them
        c.remove(force=True)
    assert names(d("ps", "-a", "--filter", f"label={project}", *fmt)) == ["c-other"]
    assert client.containers.list(filters={"label": f"{project}=demo"}) == []
    d("rm", "-f", "c-other")


def test_lamina_labels_and_its_ps_filter(service: Service, tmp_path) -> None:
    lamina = Lamina(service.root)
    (tmp_path / "labels").write_text("# comment\n\nfrom.file=yes\nteam=ops\n")
    cid = lamina.ok("run", "-d", "--name", "l-one", "-l", "team=dev", "--label", "bare",
                    "--label-file", str(tmp_path / "labels"), "busybox", "sleep", "300").strip()
    lamina.ok("create", "--name", "l-two", "-l", "team=ops", "busybox", "true")
    labels = json.loads(service.ok("inspect", "-f", "{{json .Config.Labels}}", "l-one"))
    assert labels == {"from.file": "yes", "team": "dev", "bare": ""}  # a flag beats the file
    assert service.ok("ps", "--filter", "label=from.file=yes", "--format", "{{.ID}}") == \
        cid[:12] + "\n"

    def listed(*flags: str) -> list[str]:
        out = lamina.ok("ps", "--format", "json", *flags)
        return sorted(json.loads(line)["name"] for line in out.splitlines())

    assert listed("--filter", "label=team") == ["l-one"]
    assert listed("-a", "--filter", "label=team") == ["l-one", "l-two"]
    assert listed("-a", "--filter", "label=team=ops") == ["l-two"]
    assert listed("-a", "--filter", "label=bare", "--filter", "label=team=dev") == ["l-one"]
    assert listed("--filter", "status=created") == ["l-two"]  # status implies -a
    bad = lamina("ps", "--filter", "nope=1")
    assert (bad.returncode, bad.stderr) == (1, "lamina: error: invalid filter 'nope'\n")
    lamina.ok("rm", "-f", "l-one", "l-two")


def test_ps_filters_by_exit_name_id_status_ancestor_and_order(service: Service) -> None:
    d = service.ok
    service.ok("tag", "busybox", "anc:1")
    d("run", "--name", "f-zero", "busybox", "true")
    assert service.docker("run", "--name", "f-three", "anc:1", "sh", "-c",
                          "exit 3").returncode == 3
    up = d("run", "-d", "--name", "f-up", "busybox", "sleep", "300").strip()
    fmt = ("--format", "{{.Names}}")
    assert names(d("ps", "-a", "--filter", "exited=3", *fmt)) == ["f-three"]
    assert names(d("ps", "-a", "--filter", "exited=0", "--filter", "name=f-", *fmt)) == \
        ["f-zero"]
    assert names(d("ps", "--filter", "exited=3", *fmt)) == []  # docker: only with -a
    assert names(d("ps", "--filter", "status=exited", "--filter", "name=^f-", *fmt)) == \
        ["f-three", "f-zero"]
    assert names(d("ps", "--filter", f"id={up[:10]}", *fmt)) == ["f-up"]
    assert names(d("ps", "-a", "--filter", "since=f-zero", "--filter", "name=f-", *fmt)) == \
        ["f-three", "f-up"]
    assert names(d("ps", "-a", "--filter", "before=f-up", "--filter", "name=f-", *fmt)) == \
        ["f-three", "f-zero"]
    assert names(d("ps", "-a", "--filter", "ancestor=busybox", "--filter", "name=f-",
                   *fmt)) == ["f-three", "f-up", "f-zero"]  # the same image: anc:1 is it
    bad = service.docker("ps", "--filter", "bogus=1")
    assert bad.returncode == 1 and "invalid filter 'bogus'" in bad.stderr
    missing = service.docker("ps", "--filter", "since=nosuch")
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr
    d("rm", "-f", "f-zero", "f-three", "f-up")
    d("rmi", "anc:1")
