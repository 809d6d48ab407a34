"""POST /build as docker-py and the docker CLI read it: JSON messages in a chunked body, one
per chunk; each stage's aux ID before `Successfully built`; labels, target, .dockerignore,
cache_from and rm honoured; a field lamina can't honour (extrahosts) a 400 naming it,
recorded as one CommandRejected. The docker-py cases are those of docker-py's own
tests/integration/api_build_test.py, with lamina's step-reuse wording (CACHED)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
from pathlib import Path

import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel

TWO_STAGES = "FROM busybox AS first\nRUN echo one > /one\nFROM busybox\nCOPY --from=first " \
             "/one /one\nCMD cat /one\n"


def context(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def post_build(service: Service, query: str, body: bytes) -> tuple[str, list[bytes]]:
    """The raw answer: its head, and its body's chunks as sent (de-chunked by hand)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(service.socket)
        s.sendall(f"POST /v1.51/build?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  f"application/x-tar\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    chunks = []
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", rest
            break
        chunks.append(rest[:size])
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]
    else:
        raise AssertionError("the chunked body has no last chunk")
    return head.decode(), chunks


def test_the_answer_is_chunked_one_message_a_chunk_aux_before_successfully_built(
        service: Service) -> None:
    head, chunks = post_build(service, "t=chunked:1", context({"Dockerfile": TWO_STAGES}))
    assert head.startswith("HTTP/1.1 200") and "Transfer-Encoding: chunked" in head
    assert "Content-Length" not in head
    messages = [json.loads(c) for c in chunks]
    assert all(c.endswith(b"}\r\n") and c.count(b"\r\n") == 1 for c in chunks)
    auxes = [i for i, m in enumerate(messages) if "aux" in m]
    built = [i for i, m in enumerate(messages) if m.get("stream", "").startswith(
        "Successfully built ")]
    assert len(auxes) == 2 and built == [auxes[-1] + 1], messages  # one per stage
    iid = service.ok("image", "inspect", "-f", "{{.Id}}", "chunked:1").strip()
    assert messages[auxes[-1]] == {"aux": {"ID": iid}}
    assert messages[built[0]]["stream"] == f"Successfully built {iid[7:19]}\n"
    assert messages[-1] == {"stream": "Successfully tagged chunked:1\n"}
    _, quiet = post_build(service, "q=1", context({"Dockerfile": TWO_STAGES}))
    assert [json.loads(c) for c in quiet] == [{"stream": iid + "\n"}]  # the cache: same id
    service.ok("rmi", "chunked:1")


def test_docker_py_labels_target_and_its_stream(service: Service) -> None:
    client = service.client()
    image, logs = client.images.build(fileobj=io.BytesIO(b"FROM scratch\n"), tag="labels",
                                      labels={"test": "OK", "with space": "a $b"}, rm=True)
    assert image.labels == {"test": "OK", "with space": "a $b"}
    steps = [m["stream"] for m in logs if m.get("stream", "").startswith("Step ")]
    assert steps == ["Step 1/3 : FROM scratch\n", "Step 2/3 : LABEL test=OK\n",
                     "Step 3/3 : LABEL with space=a $b\n"]
    script = TWO_STAGES.replace("CMD cat /one", "RUN rm /one")
    first, _ = client.images.build(fileobj=io.BytesIO(script.encode()), target="first",
                                   tag="build1", rm=True)
    assert client.containers.run("build1", ["cat", "/one"], remove=True) == b"one\n"
    assert first.id != client.images.get("busybox").id
    client.images.remove("labels")
    client.images.remove("build1")


def test_docker_py_cache_from(service: Service) -> None:
    client = service.client()
    script = b"FROM busybox\nENV FOO=bar\nRUN touch baz\nRUN touch bax\n"
    client.images.build(fileobj=io.BytesIO(script), tag="cache1", rm=True)
    api = client.api

    def reused(cache_from: list[str]) -> int:
        stream = api.build(fileobj=io.BytesIO(script), tag="cache2", cache_from=cache_from,
                           rm=True, decode=True)
        return sum(" ---> CACHED " in m.get("stream", "") for m in stream)

    assert reused(["cache1"]) == 3
    client.images.remove("cache2")
    assert reused(["nosuchtag"]) == 0
    client.images.remove("cache2")
    client.images.remove("cache1")


def test_docker_py_dockerignore(service: Service, tmp_path: Path) -> None:
    """docker-py's test_build_with_dockerignore, as it is (docker-py also leaves out what
    .dockerignore lists before it sends the context)."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\nADD . /test\n")
    (tmp_path / ".dockerignore").write_text("\n".join([
        "ignored", "Dockerfile", ".dockerignore", " ignored-with-spaces ",
        "!ignored/subdir/excepted-file", "! ignored/subdir/excepted-with-spaces  ", "#*"]))
    for name in ("not-ignored", "#file.txt", "ignored-with-spaces", "ignored/subdir/file",
                 "ignored/subdir/excepted-file", "ignored/subdir/excepted-with-spaces"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    api = service.client().api
    for _ in api.build(path=str(tmp_path), tag="ignoring", rm=True):
        pass
    out = service.client().containers.run("ignoring", ["find", "/test", "-type", "f"],
                                          remove=True).decode()
    assert sorted(filter(None, out.split("\n"))) == sorted([
        "/test/#file.txt", "/test/ignored/subdir/excepted-with-spaces",
        "/test/ignored/subdir/excepted-file", "/test/not-ignored"])
    service.ok("rmi", "ignoring")


def test_dockerignore_of_a_whole_context_sent_as_is(service: Service) -> None:
    """A client that sends everything (the raw API): .dockerignore still hides what it
    lists from COPY, the Dockerfile and .dockerignore too when listed."""
    files = {"Dockerfile": "FROM busybox\nCOPY . /ctx\n", ".dockerignore": "secret*\n*.log\n"
             "Dockerfile\n", "app.txt": "app", "secret.key": "no", "debug.log": "no"}
    _, chunks = post_build(service, "t=whole:1&rm=1", context(files))
    assert b"Successfully tagged whole:1" in b"".join(chunks), chunks
    listed = service.ok("run", "--rm", "whole:1", "find", "/ctx", "-type", "f")
    assert sorted(listed.split()) == ["/ctx/.dockerignore", "/ctx/app.txt"]
    service.ok("rmi", "whole:1")


def test_docker_cli_label_target_quiet(service: Service, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(TWO_STAGES)
    iid = service.ok("build", "-q", "--label", "a=b", "--label", "c", "-t", "cli:1",
                     str(tmp_path)).strip()
    assert iid.startswith("sha256:") and len(iid) == 71
    assert json.loads(service.ok("image", "inspect", "-f", "{{json .Config.Labels}}",
                                 "cli:1")) == {"a": "b", "c": ""}
    assert service.ok("image", "inspect", "-f", "{{.Id}}", "cli:1").strip() == iid
    out = service.ok("build", "--target", "first", "-t", "cli:first", str(tmp_path))
    assert "Step 2/2 : RUN echo one > /one" in out and "Step 3/" not in out
    service.ok("rmi", "cli:1", "cli:first")


def test_rm_keeps_or_removes_the_step_containers(service: Service) -> None:
    client = service.client()
    before = {c.id for c in client.containers.list(all=True)}
    script = b"FROM busybox\nRUN echo kept\n"
    image, _ = client.images.build(fileobj=io.BytesIO(script), nocache=True)  # rm=False
    kept = [c for c in client.containers.list(all=True) if c.id not in before]
    assert [c.attrs["Config"]["Cmd"][-1] for c in kept] == ["echo kept"]
    for c in kept:
        c.remove(force=True)
    client.images.build(fileobj=io.BytesIO(script), nocache=True, rm=True)
    assert {c.id for c in client.containers.list(all=True)} == before


def test_a_field_lamina_cant_honour_is_a_recorded_400(service: Service,
                                                      tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    before = len(service.events())
    refused = service.docker("build", "--cgroup-parent", "elsewhere", str(tmp_path))
    assert refused.returncode == 1
    assert "cgroupparent (--cgroup-parent) is not supported by lamina yet" in refused.stderr
    refusal = "cgroupparent (--cgroup-parent) is not supported by lamina yet"
    new = service.events()[before:]
    assert [(e["type"], e["data"]["command"]) for e in new] == [("CommandRejected",
                                                                 "build")]
    assert new[0]["data"]["reason"] == refusal


def test_build_squash(service: Service, tmp_path: Path) -> None:
    """docker-py's api_build_test BuildTest.test_build_squash (it asks an experimental
    daemon), on busybox: squash=1 leaves the base's layer and one more."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo blah > /file_1\n"
                                         "RUN echo blahblah > /file_2\n"
                                         "RUN echo blahblahblah > /file_3\n")
    api = service.client().api

    def build_squashed(squash: bool) -> dict:
        tag = "squash" if squash else "nosquash"
        for _ in api.build(path=str(tmp_path), tag=tag, squash=squash):
            pass
        return api.inspect_image(tag)

    non_squashed = build_squashed(False)
    squashed = build_squashed(True)
    assert len(non_squashed["RootFS"]["Layers"]) == 4
    assert len(squashed["RootFS"]["Layers"]) == 2
    out = service.ok("run", "--rm", "squash", "cat", "/file_1", "/file_2", "/file_3")
    assert out.split() == ["blah", "blahblah", "blahblahblah"]


def test_extra_hosts_reach_the_run_steps(service: Service, tmp_path: Path) -> None:
    """--add-host of the docker CLI (comma-joined) and docker-py's extra_hosts (repeated)."""
    (tmp_path / "Dockerfile").write_text(  # anchored: the container's own line has its id
        "FROM busybox\nRUN grep -E '[[:space:]](db|cache)$' /etc/hosts > /h\n"
        'CMD ["cat", "/h"]\n')
    service.ok("build", "--no-cache", "--add-host", "db:10.0.0.1", "--add-host",
               "cache:10.0.0.2", "-t", "hosts:1", str(tmp_path))
    assert service.ok("run", "--rm", "hosts:1") == "10.0.0.1\tdb\n10.0.0.2\tcache\n"
    image, _ = service.client().images.build(path=str(tmp_path), nocache=True,
                                             extra_hosts={"db": "10.0.0.9"}, tag="hosts:2")
    assert service.ok("run", "--rm", "hosts:2") == "10.0.0.9\tdb\n"
    service.ok("rmi", "hosts:1", "hosts:2")
