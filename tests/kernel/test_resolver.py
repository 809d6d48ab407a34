"""Containers resolve each other by name and alias (issue 18): the real CLI starts the root's
DNS resolver with the first container of a user-defined network, and it answers on the
gateway. lamina runs inside a network namespace the test makes (`Box`, entered with
`nsenter --net` only), as in test_networks_cli.py; afterwards nothing is left: no resolver,
container, veth, mount or cgroup, and the host's network is unchanged."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.network import resolver
from tests.conftest import require_root
from tests.kernel.runtime_env import busybox_tar, leftovers
from tests.kernel.test_network_plumbing import Box, host_network
from tests.kernel.test_networks_cli import NetLamina

pytestmark = pytest.mark.kernel

FRONT_GW, BACK_GW = "172.18.0.1", "172.19.0.1"


@pytest.fixture
def lam(tmp_path: Path) -> Iterator[NetLamina]:
    """lamina in a box of its own with the busybox image; teardown removes every container
    and network, then checks that the resolver went and nothing else stayed."""
    require_root()
    before = host_network()
    box = Box()
    lam = NetLamina(tmp_path / "root", box)
    try:
        lam.ok("import", str(busybox_tar(tmp_path)), "busybox")
        yield lam
    finally:
        ids = _clean(lam)
        box.close()
    assert leftovers(lam.root, ids) == []
    assert host_network() == before, "a network test changed the host's network"


def _clean(lam: NetLamina) -> list[str]:
    ids = [json.loads(line)["id"] for line in lam.ok("ps", "-a", "--format", "json").splitlines()]
    for cid in ids:
        lam("rm", "-f", cid)
    names = [line.split()[1] for line in lam.ok("network", "ls").splitlines()[1:]]
    for name in names:
        if name not in ("bridge", "host", "none"):
            lam("network", "rm", name)
    _eventually(lambda: not resolver.running(str(lam.root)))
    assert not any(name.startswith(("lv", "lm-")) for name in lam.links())
    return ids


def _eventually(check, seconds: float = 3.0) -> None:  # noqa: ANN001 - any predicate
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def nslookup(lam: NetLamina, name: str, server: str = "") -> str:
    """busybox nslookup's output in the `client` container (on front): an answer's
    `Address:` lines, or `** server can't find NAME: RCODE`."""
    out = lam("exec", "client", "timeout", "3", "nslookup", name, *filter(None, [server]))
    return out.stdout + out.stderr


def listening(lam: NetLamina) -> set[str]:
    """The UDP addresses:ports listened on in the box."""
    return {line.split()[3] for line in lam.box.ok("ss", "-Huln").splitlines()}


def test_containers_resolve_each_other_by_name_and_alias(lam: NetLamina) -> None:
    lam.ok("network", "create", "front")
    lam.ok("network", "create", "back")
    assert not resolver.running(str(lam.root))  # a network alone starts nothing
    web = lam.ok("run", "-d", "--name", "web", "--network", "front", "--network-alias", "www",
                 "busybox", "httpd", "-f", "-p", "80", "-h", "/etc").strip()
    assert resolver.running(str(lam.root))
    assert listening(lam) >= {f"{FRONT_GW}:53", f"{BACK_GW}:53"}
    out = lam.ok("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                 "nslookup web && nslookup www && wget -q -O - http://www/hostname")
    assert out.count("Address: 172.18.0.2") == 2, out
    assert out.rstrip().endswith(web[:12]), out
    lam.ok("run", "-d", "--name", "client", "--network", "front", "busybox", "sleep", "300")
    assert "Address: 172.18.0.2" in nslookup(lam, web[:12])
    assert "Address: 172.18.0.3" in nslookup(lam, "client")
    # another network's resolver doesn't know it; this one refuses that network's clients
    out = lam("run", "--rm", "--network", "back", "busybox", "nslookup", "web").stdout
    assert "server can't find web: NXDOMAIN" in out, out
    out = lam("run", "--rm", "--network", "back", "busybox", "timeout", "3", "nslookup",
              "web", FRONT_GW).stdout
    assert "172.18.0.2" not in out and "REFUSED" in out, out
    lam.ok("rm", "-f", "web")
    # the very next queries, each in a container started after the rm: the answers follow
    # the log (no TTL to wait out); how fast is bench's, not a timed assertion here (two
    # container starts take over a second on a loaded machine)
    assert "server can't find web: NXDOMAIN" in nslookup(lam, "web")
    assert "server can't find www: NXDOMAIN" in nslookup(lam, "www")


def test_the_resolver_goes_with_the_last_network(lam: NetLamina) -> None:
    lam.ok("network", "create", "front")
    lam.ok("run", "--rm", "--network", "front", "busybox", "true")
    pid = _pid(lam)
    lam.ok("network", "create", "back")
    _eventually(lambda: f"{BACK_GW}:53" in listening(lam), seconds=1)
    lam.ok("network", "rm", "front")
    assert resolver.running(str(lam.root))  # back is still served (nothing on it yet)
    _eventually(lambda: f"{FRONT_GW}:53" not in listening(lam), seconds=1)
    # its names are served once its start is recorded, just after its init runs (its own
    # hostname is in its /etc/hosts from the first instant, as docker's)
    out = lam.ok("run", "--rm", "--network", "back", "busybox", "sh", "-c",
                 "for i in 1 2 3 4 5 6 7 8 9 10; do nslookup $(hostname) && exit; sleep 0.1; "
                 "done; exit 1")
    assert "Address: 172.19.0.2" in out, out
    lam.ok("network", "rm", "back")
    _eventually(lambda: not resolver.running(str(lam.root)), seconds=1)
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    assert not any(a.endswith(":53") for a in listening(lam))


def _pid(lam: NetLamina) -> int:
    return int((lam.root / resolver.PIDFILE).read_text().split()[0])


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
