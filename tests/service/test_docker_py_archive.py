"""docker-py's own ArchiveTest (tests/integration/api_container_test.py), its steps as written
there, against `lamina serve` (busybox for its TEST_IMG); then the archive endpoints by hand
(HEAD's header, status codes, compressed uploads) and the real docker CLI's `docker cp` both
ways, on running and stopped containers."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import tempfile

import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel

TEST_IMG = "busybox"


# docker-py's tests/helpers.py, as they are there


def make_tree(dirs, files):
    base = tempfile.mkdtemp()
    for path in dirs:
        os.makedirs(os.path.join(base, path))
    for path in files:
        with open(os.path.join(base, path), "w") as f:
            f.write("content")
    return base


def simple_tar(path):
    f = tempfile.NamedTemporaryFile()  # noqa: SIM115 - the caller's, as in docker-py
    t = tarfile.open(mode="w", fileobj=f)  # noqa: SIM115
    abs_path = os.path.abspath(path)
    t.add(abs_path, arcname=os.path.basename(path), recursive=False)
    t.close()
    f.seek(0)
    return f


def untar_file(tardata, filename):
    with tarfile.open(mode="r", fileobj=tardata) as t:
        f = t.extractfile(filename)
        result = f.read()
        f.close()
    return result


class ArchiveTest:
    """BaseAPIIntegrationTest's part the cases use: a client, containers removed after."""

    def __init__(self, service: Service) -> None:
        import docker

        self.client = docker.APIClient(base_url=f"unix://{service.socket}", timeout=60)
        self.tmp_containers: list = []

    def close(self) -> None:
        for c in self.tmp_containers:
            self.client.remove_container(c, force=True, v=True)
        self.client.close()


@pytest.fixture
def case(service: Service):
    t = ArchiveTest(service)
    yield t
    t.close()


def test_get_file_archive_from_container(case: ArchiveTest) -> None:
    self = case
    data = "The Maid and the Pocket Watch of Blood"
    ctnr = self.client.create_container(
        TEST_IMG, f'sh -c "echo {data} > /vol1/data.txt"',
        volumes=["/vol1"]
    )
    self.tmp_containers.append(ctnr)
    self.client.start(ctnr)
    self.client.wait(ctnr)
    with tempfile.NamedTemporaryFile() as destination:
        strm, stat = self.client.get_archive(ctnr, "/vol1/data.txt")
        for d in strm:
            destination.write(d)
        destination.seek(0)
        retrieved_data = untar_file(destination, "data.txt")\
            .decode("utf-8")
        assert data == retrieved_data.strip()


def test_get_file_stat_from_container(case: ArchiveTest) -> None:
    self = case
    data = "The Maid and the Pocket Watch of Blood"
    ctnr = self.client.create_container(
        TEST_IMG, f'sh -c "echo -n {data} > /vol1/data.txt"',
        volumes=["/vol1"]
    )
    self.tmp_containers.append(ctnr)
    self.client.start(ctnr)
    self.client.wait(ctnr)
    strm, stat = self.client.get_archive(ctnr, "/vol1/data.txt")
    assert "name" in stat
    assert stat["name"] == "data.txt"
    assert "size" in stat
    assert stat["size"] == len(data)


def test_copy_file_to_container(case: ArchiveTest) -> None:
    self = case
    data = b"Deaf To All But The Song"
    with tempfile.NamedTemporaryFile(delete=False) as test_file:
        test_file.write(data)
        test_file.seek(0)
        ctnr = self.client.create_container(
            TEST_IMG,
            f"cat {os.path.join('/vol1/', os.path.basename(test_file.name))}",
            volumes=["/vol1"]
        )
        self.tmp_containers.append(ctnr)
        with simple_tar(test_file.name) as test_tar:
            self.client.put_archive(ctnr, "/vol1", test_tar)
    self.client.start(ctnr)
    self.client.wait(ctnr)
    logs = self.client.logs(ctnr)
    assert logs.strip() == data


def test_copy_directory_to_container(case: ArchiveTest) -> None:
    import docker

    self = case
    files = ["a.py", "b.py", "foo/b.py"]
    dirs = ["foo", "bar"]
    base = make_tree(dirs, files)
    ctnr = self.client.create_container(
        TEST_IMG, "ls -p /vol1", volumes=["/vol1"]
    )
    self.tmp_containers.append(ctnr)
    with docker.utils.tar(base) as test_tar:
        self.client.put_archive(ctnr, "/vol1", test_tar)
    self.client.start(ctnr)
    self.client.wait(ctnr)
    logs = self.client.logs(ctnr).decode("utf-8")
    results = logs.strip().split()
    assert "a.py" in results
    assert "b.py" in results
    assert "foo/" in results
    assert "bar/" in results


# --- the endpoints by hand ----------------------------------------------------------------------


def _head(service: Service, cid: str, path: str) -> tuple[int, dict[str, str]]:
    raw = service.raw(f"HEAD /v1.51/containers/{cid}/archive?path={path} HTTP/1.1\r\n"
                      "Host: x\r\nConnection: close\r\n\r\n".encode())
    head = raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {k.lower(): v for k, v in headers.items()}


def test_head_gives_the_path_stat_and_records_nothing(service: Service,
                                                      case: ArchiveTest) -> None:
    ctnr = case.client.create_container(TEST_IMG, "sh -c 'ln -s /etc/passwd /p; sleep 60'")
    case.tmp_containers.append(ctnr)
    case.client.start(ctnr)
    cid = ctnr["Id"]
    before = len(service.events())
    status, headers = _head(service, cid, "/etc")
    assert status == 200
    stat = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert stat["name"] == "etc" and stat["mode"] & (1 << 31) and stat["linkTarget"] == ""
    status, headers = _head(service, cid, "/p")
    import time

    for _ in range(50):  # the shell made its link
        if status == 200:
            break
        time.sleep(0.1)
        status, headers = _head(service, cid, "/p")
    link = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert link["linkTarget"] == "/etc/passwd" and link["mode"] & (1 << 27)
    assert _head(service, cid, "/no/such")[0] == 404
    assert _head(service, "no-such-container", "/etc")[0] == 404
    assert _head(service, cid, "")[0] == 400
    assert len(service.events()) == before  # queries


def test_status_codes_and_messages(service: Service, case: ArchiveTest) -> None:
    import docker

    ctnr = case.client.create_container(TEST_IMG, "true")
    case.tmp_containers.append(ctnr)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as t:  # docker takes compressed uploads
        info = tarfile.TarInfo("zipped")
        info.size = 2
        t.addfile(info, io.BytesIO(b"z\n"))
    assert case.client.put_archive(ctnr, "/tmp", tar.getvalue()) is True
    strm, stat = case.client.get_archive(ctnr, "/tmp/zipped")
    assert untar_file(io.BytesIO(b"".join(strm)), "zipped") == b"z\n"
    with pytest.raises(docker.errors.NotFound) as missing:
        case.client.get_archive(ctnr, "/no/such")
    assert "Could not find the file /no/such in container" in str(missing.value)
    with pytest.raises(docker.errors.NotFound):
        case.client.put_archive(ctnr, "/no/such", tar.getvalue())
    with pytest.raises(docker.errors.APIError) as not_dir:
        case.client.put_archive(ctnr, "/etc/passwd", tar.getvalue())
    assert not_dir.value.status_code == 400 and "not a directory" in str(not_dir.value)
    with pytest.raises(docker.errors.NotFound) as gone:
        case.client.get_archive("no-such-container", "/etc")
    assert "No such container: no-such-container" in str(gone.value)
    kinds = [e["type"] for e in service.events() if e["data"].get("id") == ctnr["Id"]
             or e["data"].get("target") == ctnr["Id"]]
    assert kinds.count("ContainerCopiedTo") == 1 and kinds.count("ContainerCopiedFrom") == 1


# --- the docker CLI's docker cp ------------------------------------------------------------------


@pytest.mark.parametrize("running", [True, False])
def test_docker_cp_both_ways(service: Service, tmp_path, running: bool) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub/f").write_text("from the host\n")
    (src / "link").symlink_to("sub/f")
    os.utime(src / "sub/f", (1_500_000_000, 1_500_000_000))
    name = f"cp-{'running' if running else 'stopped'}"
    cid = service.ok("create", "--name", name, "-v", f"{name}-vol:/vol", "busybox",
                     "sleep", "600").strip()
    try:
        if running:
            service.ok("start", name)
        service.ok("cp", str(src), f"{name}:/vol/")
        service.ok("cp", str(src / "sub/f"), f"{name}:/renamed")
        out = tmp_path / "out"
        service.ok("cp", f"{name}:/vol/src", str(out))
        assert (out / "sub/f").read_text() == "from the host\n"
        assert os.readlink(out / "link") == "sub/f"
        assert int((out / "sub/f").stat().st_mtime) == 1_500_000_000
        service.ok("cp", f"{name}:/renamed", str(tmp_path / "back"))
        assert (tmp_path / "back").read_text() == "from the host\n"
        tar = service.docker("cp", f"{name}:/vol/src/sub", "-", text=False)
        assert tar.returncode == 0
        assert untar_file(io.BytesIO(tar.stdout), "sub/f") == b"from the host\n"
        missing = service.docker("cp", f"{name}:/no/such", str(tmp_path))
        assert missing.returncode == 1 and "Could not find the file /no/such" in missing.stderr
        vol = service.root / f"volumes/{name}-vol/_data/src/sub/f"
        assert vol.read_text() == "from the host\n"
    finally:
        service.ok("rm", "-f", "-v", cid)


def test_copies_show_in_dockers_event_stream(service: Service, tmp_path) -> None:
    """A copy out is docker's `archive-path`, a copy in its `extract-to-dir`."""
    import time

    client = service.client()
    box = client.containers.create("busybox", ["true"])
    (tmp_path / "f").write_text("x")
    service.ok("cp", str(tmp_path / "f"), f"{box.id}:/f")
    service.ok("cp", f"{box.id}:/f", str(tmp_path / "back"))
    seen = [e["Action"] for e in client.events(since=0, until=int(time.time()) + 1,
                                               decode=True)
            if e.get("Actor", {}).get("ID") == box.id]
    assert "extract-to-dir" in seen and "archive-path" in seen
    assert seen.index("extract-to-dir") < seen.index("archive-path")
    box.remove()
