"""What docker-py's own integration tests (make compat, docs/compatibility.md's tally) found
lamina answering otherwise than docker, each as docker-py or the docker CLI asks it of
`lamina serve`, on no network (nothing in these containers needs one)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel


@pytest.fixture
def api(service: Service) -> Iterator:
    client = service.client()
    yield client.api
    for c in client.api.containers(all=True):
        client.api.remove_container(c["Id"], force=True)
    client.close()


def _wait(what: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _actions(api, cid: str, since: float) -> list[str]:
    events = api.events(since=since, until=time.time() + 0.5, decode=True,
                        filters={"container": cid, "type": "container"})
    return [e["Action"] for e in events]


def test_config_image_is_the_name_the_client_gave(service: Service, api) -> None:
    """models_containers_test's test_run_detach, test_get, test_list: Config.Image and ps's
    IMAGE are the image as named at create ("busybox", not "busybox:latest"); an image named
    by id prefix keeps that prefix."""
    client = service.client()
    container = client.containers.create("busybox", "true", network_mode="none")
    assert container.attrs["Config"]["Image"] == "busybox"
    assert client.containers.list(all=True, sparse=True)[0].attrs["Image"] == "busybox"
    assert service.ok("ps", "-a", "--format", "{{.Image}}") == "busybox\n"
    prefix = client.images.get("busybox").id.split(":")[1][:12]
    by_id = api.create_container(prefix, "true", host_config={"NetworkMode": "none"})
    assert api.inspect_container(by_id)["Config"]["Image"] == prefix
    client.close()


def test_a_policy_restart_is_a_start_event_and_a_users_restart_both(api) -> None:
    """docker's events: a restart policy's restart says `die` then `start` (no `restart`);
    `docker restart` says `start` then `restart`."""
    since = time.time() - 1
    cid = api.create_container("busybox", ["sh", "-c", "sleep 0.2; exit 3"],
                               host_config={"NetworkMode": "none",
                                            "RestartPolicy": {"Name": "always"}})["Id"]
    api.start(cid)
    _wait(lambda: api.inspect_container(cid)["RestartCount"] >= 1)
    automatic = _actions(api, cid, since)
    assert automatic[:4] == ["create", "start", "die", "start"]
    assert "restart" not in automatic
    api.update_container(cid, restart_policy={"Name": "no"})
    api.stop(cid, timeout=1)
    since = time.time()
    api.restart(cid, timeout=1)
    mine = _actions(api, cid, since)  # then its `die` 0.2 s later, maybe
    assert mine[mine.index("start"):][:2] == ["start", "restart"]


def _knobs(cid: str) -> dict[str, str]:
    """The container's cgroup v1 files that core/resources.py's options land in."""
    from pathlib import Path

    files = {"cpu": ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"),
             "cpuset": ("cpuset.cpus", "cpuset.mems"),
             "memory": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                        "memory.soft_limit_in_bytes", "memory.swappiness")}
    return {name: (Path("/sys/fs/cgroup") / ctl / "lamina" / cid / name).read_text().strip()
            for ctl, names in files.items() for name in names}


def test_cpu_and_memory_resources_reach_the_cgroup_and_update_changes_them(
        service: Service, api) -> None:
    """api_container_test's ContainerCPUTest and memory constraints, models' test_update:
    CpuShares, CpuPeriod/CpuQuota, CpusetCpus/Mems, MemorySwap, MemoryReservation and
    MemorySwappiness are in the cgroup (v1 here) and in inspect; update changes them live."""
    host = api.create_host_config(
        cpu_shares=512, cpu_period=50000, cpu_quota=25000, cpuset_cpus="0", cpuset_mems="0",
        mem_limit="64m", memswap_limit="96m", mem_reservation="32m", mem_swappiness=40,
        network_mode="none")
    cid = api.create_container("busybox", ["sleep", "60"], host_config=host)["Id"]
    api.start(cid)
    shown = api.inspect_container(cid)["HostConfig"]
    assert {k: shown[k] for k in ("CpuShares", "CpuPeriod", "CpuQuota", "CpusetCpus",
                                  "CpusetMems", "MemorySwap", "MemoryReservation",
                                  "MemorySwappiness", "CgroupnsMode", "Runtime")} == {
        "CpuShares": 512, "CpuPeriod": 50000, "CpuQuota": 25000, "CpusetCpus": "0",
        "CpusetMems": "0", "MemorySwap": 96 << 20, "MemoryReservation": 32 << 20,
        "MemorySwappiness": 40, "CgroupnsMode": "private", "Runtime": "runc"}
    assert _knobs(cid) == {
        "cpu.shares": "512", "cpu.cfs_period_us": "50000", "cpu.cfs_quota_us": "25000",
        "cpuset.cpus": "0", "cpuset.mems": "0", "memory.limit_in_bytes": str(64 << 20),
        "memory.memsw.limit_in_bytes": str(96 << 20),
        "memory.soft_limit_in_bytes": str(32 << 20), "memory.swappiness": "40"}
    api.update_container(cid, cpu_shares=1024, mem_limit="128m", memswap_limit="256m")
    knobs = _knobs(cid)
    assert (knobs["cpu.shares"], knobs["memory.limit_in_bytes"],
            knobs["memory.memsw.limit_in_bytes"]) == ("1024", str(128 << 20), str(256 << 20))
    assert api.inspect_container(cid)["HostConfig"]["CpuShares"] == 1024
    assert service.ok("update", "--cpu-shares", "256", "--cpuset-cpus", "0", cid) == f"{cid}\n"
    assert _knobs(cid)["cpu.shares"] == "256"


def test_resources_docker_refuses_are_refused_in_its_words(api) -> None:
    """moby's verifyPlatformContainerResources, and docker's defaults taken by name only."""
    import docker

    cases = [({"mem_limit": "64m", "memswap_limit": "32m"},
              "Minimum memoryswap limit should be larger than memory limit"),
             ({"memswap_limit": "64m"}, "You should always set the Memory limit"),
             ({"mem_swappiness": 101}, "valid memory swappiness range is 0-100"),
             ({"cpu_period": 500}, "CPU cfs period can not be less than 1ms"),
             ({"cpuset_cpus": "0-"}, "Invalid value 0- for cpuset cpus"),
             ({"isolation": "hyperv"}, "Isolation (--isolation) is not supported"),
             ({"runtime": "crun"}, "Runtime (--runtime) is not supported"),
             ({"cpu_rt_period": 1000, "cpu_rt_runtime": 1001},
              "real-time runtime cannot be higher than cpu real-time period")]
    for options, words in cases:
        with pytest.raises(docker.errors.APIError, match=re.escape(words)):
            api.create_container("busybox", "true",
                                 host_config=api.create_host_config(**options))
    cid = api.create_container("busybox", "true", runtime="runc", environment={
        "Foo": None, "Other": "one"}, host_config=api.create_host_config(isolation="default"))
    shown = api.inspect_container(cid)
    assert shown["HostConfig"]["Isolation"] == "default"
    assert shown["Config"]["Env"][:2] == ["Foo", "Other=one"]
    # api_container_test's test_create_with_cpu_rt_options (given at start: test_cpu_rt.py)
    cid = api.create_container("busybox", "true", host_config=api.create_host_config(
        cpu_rt_period=1000, cpu_rt_runtime=500))
    shown = api.inspect_container(cid)["HostConfig"]
    assert (shown["CpuRealtimePeriod"], shown["CpuRealtimeRuntime"]) == (1000, 500)


def test_a_bad_archive_to_load_is_an_image_load_error(service: Service) -> None:
    """models_images_test's test_load_error: docker's load streams, so a bad archive is an
    error message in a 200 answer (docker-py's ImageLoadError; the CLI exits 1)."""
    import docker

    client = service.client()
    with pytest.raises(docker.errors.ImageLoadError, match="corrupt tar header"):
        client.images.load(b"abc")
    client.close()
    out = service.docker("load", input=b"abc", text=False)
    assert out.returncode == 1 and b"corrupt tar header" in out.stderr


def test_shm_size_sizes_dev_shm_for_run_and_build(service: Service, api) -> None:
    """HostConfig.ShmSize and /build's shmsize (api_build_test's test_build_shmsize): the
    container's (and the RUN containers') /dev/shm tmpfs has that size."""
    import io

    cid = api.create_container("busybox", ["grep", "/dev/shm", "/proc/mounts"],
                               host_config=api.create_host_config(shm_size="128m",
                                                                  network_mode="none"))["Id"]
    assert api.inspect_container(cid)["HostConfig"]["ShmSize"] == 128 << 20
    api.start(cid)
    assert api.wait(cid)["StatusCode"] == 0
    assert b"size=131072k" in api.logs(cid)
    script = io.BytesIO(b"FROM busybox\nRUN grep /dev/shm /proc/mounts\n")
    out = "".join(c.get("stream", "") for c in api.build(fileobj=script, shmsize=96 << 20,
                                                          decode=True, rm=True))
    assert "size=98304k" in out


def test_build_extras_docker_clients_look_for(service: Service, api) -> None:
    """api_build_test's cases: a RUN's stderr comes red as docker's classic builder sends
    it; a step reused says `Using cache` (docker-py counts them with cache_from); ONBUILD is
    kept in the image and runs in the next build FROM it; --target builds the stages up to
    it only (an ONBUILD after it never mattered); a RUN joins the network asked for."""
    import io

    def build(text: str, **kw) -> list[dict]:
        return list(api.build(fileobj=io.BytesIO(text.encode()), decode=True, rm=True, **kw))

    chunks = build('FROM busybox\nRUN sh -c ">&2 echo oops"\n', nocache=True)
    assert "\x1b[91moops\n\x1b[0m" in [c.get("stream") for c in chunks]
    text = "FROM busybox\nENV FOO=bar\nRUN touch baz\n"
    build(text, tag="cached1")
    again = build(text, tag="cached2", cache_from=["cached1"])
    assert sum("Using cache" in c.get("stream", "") for c in again) == 2
    build("FROM busybox\nONBUILD RUN echo triggered > /t\n", tag="onbuild1")
    assert api.inspect_image("onbuild1")["Config"]["OnBuild"] == ["RUN echo triggered > /t"]
    build("FROM onbuild1\nRUN cat /t\n", tag="onbuild2")
    assert not api.inspect_image("onbuild2")["Config"].get("OnBuild")
    cid = api.create_container("onbuild2", ["cat", "/t"], host_config={"NetworkMode": "none"})
    api.start(cid)
    api.wait(cid)
    assert api.logs(cid) == b"triggered\n"
    build("FROM busybox AS first\nRUN touch /first\nFROM busybox\nONBUILD RUN false\n",
          tag="targeted", target="first")
    assert api.inspect_image("targeted")["Config"].get("OnBuild") is None
    network = api.create_network("buildnet")["Id"]
    chunks = build("FROM busybox\nRUN ip -o -4 addr show eth0\n", network_mode=network,
                   nocache=True)
    assert any("inet " in c.get("stream", "") for c in chunks), chunks
    for tag in ("cached1", "cached2", "onbuild2", "onbuild1", "targeted"):
        api.remove_image(tag, force=True)
    api.remove_network(network)


def test_a_dockerfile_outside_the_context(api, tmp_path) -> None:
    """api_build_test's test_build_out_of_context_dockerfile: docker-py sends it in the
    context under a made-up name, as dockerfile=NAME&dockerfile=TEXT; docker's daemon reads
    a parameter's first value (and .dockerignore keeps both out of COPY)."""
    context, elsewhere = tmp_path / "context", tmp_path / "elsewhere"
    context.mkdir()
    elsewhere.mkdir()
    (context / "file.txt").write_text("hello world")
    (context / ".dockerignore").write_text(".dockerignore\n")
    (elsewhere / "Dockerfile").write_text("FROM busybox\nCOPY . /src\nWORKDIR /src\n")
    chunks = list(api.build(path=str(context), dockerfile=str(elsewhere / "Dockerfile"),
                            tag="outside", decode=True))
    assert "Successfully tagged" in chunks[-1]["stream"]
    cid = api.create_container("outside", "ls -a", host_config={"NetworkMode": "none"})
    api.start(cid)
    api.wait(cid)
    assert sorted(api.logs(cid).split()) == [b".", b"..", b"file.txt"]
    api.remove_container(cid)
    api.remove_image("outside")


def test_device_cgroup_rules_allow_what_they_name(api) -> None:
    """api_container_test's test_create_with_device_cgroup_rules: the rules are kept as given
    and the devices cgroup allows what they name (mknod of a char device no driver has: the
    cgroup's EPERM without the rule, the kernel's ENXIO on open with it)."""
    import docker

    script = "mknod /tmp/x c 42 1 && echo made && cat /tmp/x"
    with_rule = api.create_container("busybox", ["sh", "-c", script], host_config=(
        api.create_host_config(device_cgroup_rules=["c 42:* rmw"], network_mode="none")))
    assert api.inspect_container(with_rule)["HostConfig"]["DeviceCgroupRules"] == [
        "c 42:* rmw"]
    without = api.create_container("busybox", ["sh", "-c", script],
                                   host_config={"NetworkMode": "none"})
    for cid in (with_rule, without):
        api.start(cid)
        api.wait(cid)
    assert api.logs(with_rule).startswith(b"made\n") \
        and b"No such device or address" in api.logs(with_rule)
    assert b"Operation not permitted" in api.logs(without)
    with pytest.raises(docker.errors.APIError, match="(?i)invalid device cgroup format 'c 42 rw'"):
        api.create_container("busybox", "true",
                             host_config=api.create_host_config(device_cgroup_rules=["c 42 rw"]))


def test_resize_reaches_a_running_containers_terminal(api) -> None:
    """docker attach to a running container with a terminal resizes it (the CLI's resize
    after attach): the container's pty takes the size, as its own `stty` sees it."""
    cid = api.create_container("busybox", ["sleep", "60"], tty=True,
                               host_config={"NetworkMode": "none"})["Id"]
    api.start(cid)
    api.resize(cid, height=31, width=97)

    def size() -> bytes:
        run = api.exec_create(cid, ["stty", "-F", "/proc/1/fd/0", "size"])
        return api.exec_start(run).strip()

    _wait(lambda: size() == b"31 97")


def test_a_builds_resource_limits_reach_its_run_steps(api) -> None:
    """docker-py's container_limits (and docker build's --cpu-shares, --cpuset-cpus,
    --memory-swap...): each RUN container's cgroup has them, as a run's would."""
    import io

    script = io.BytesIO(b"FROM busybox\nRUN cat /sys/fs/cgroup/cpu/cpu.shares\n"
                        b"RUN cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes\n")
    out = "".join(c.get("stream", "") for c in api.build(
        fileobj=script, nocache=True, rm=True, decode=True, container_limits={
            "cpushares": 512, "cpusetcpus": "0", "memory": 64 << 20, "memswap": 96 << 20}))
    lines = out.splitlines()
    assert "512" in lines and str(96 << 20) in lines, out
