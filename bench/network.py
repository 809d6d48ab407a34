"""What a bridge network costs a container: `run --rm true` on none, bridge and a user
network, and connections through a published port; docker and podman beside it.

    python bench/network.py [--runs N] [--requests N] [--no-peers] [--json FILE]

1. `lamina run --rm busybox true` with `--network none`, `--network bridge` (lamina0) and
   `--network benchnet` (made by `network create`), interleaved on one root, through
   `lamina serve`'s fork server (the native client `make client` builds) and without a
   server (the same client with LAMINA_NO_SERVER=1: the command in a fresh interpreter).
   The difference of the medians is what joining a bridge costs; the issue's target is
   <= 10 ms over none. Also `--network host`, and the bridge with `-p 18085:80` (the
   published port's rules made at start and removed at the end).
2. Connection setup through a published port: a container `busybox httpd -f -p 80`
   published with `-p 18080:80`; TCP connects and HTTP GET round trips (connect, request,
   read to EOF) from this process to 127.0.0.1:18080 (the output chain's DNAT into the
   bridge), to the gateway's address on the same port (DNAT without the loopback
   masquerade), straight to the container's address, and to the same busybox httpd on
   loopback with no container (the floor). Interleaved per round; medians, p90 and
   requests/s of one sequential client.
3. The pieces of a bridge start, timed in-process (endpoints.wire's steps and unwire's).
4. Peers, as ../shared/peers.md runs them: dockerd on the host's network can only run
   with `--bridge=none --iptables=false` (`--network none` vs `host`); podman `--network
   none` vs `slirp4netns` on the host's network. A bridge for either would change the host's
   links and firewall, so their bridges run in a network namespace of their own, as
   lamina's: dockerd with its default bridge and iptables there (one per run of this
   script), podman's netavark there.

Nothing touches the host's network: the lamina part re-executes this script under
`unshare --net` (a network namespace only: lamina sees the host's mounts and cgroups),
and so do the peers' bridge parts. At the end the host's links, ruleset and mounts are
compared with what they were, and the script fails loudly if anything of lamina's is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
LAMINA = str(Path(sys.executable).with_name("lamina"))  # the native client, as make builds it
MODES = {"none": ["--network", "none"], "host": ["--network", "host"],
         "bridge": ["--network", "bridge"], "benchnet": ["--network", "benchnet"],
         "bridge -p": ["--network", "bridge", "-p", "18085:80"]}
PUBLISHED, FLOOR_PORT = 18080, 18081
PAGE = "hostname"  # a file of a few bytes under httpd's -h /etc


# --- measuring -----------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"median": round(statistics.median(s), 4),
            "p90": round(s[min(len(s) - 1, int(len(s) * 0.9))], 4),
            "min": round(s[0], 4), "mean": round(statistics.fmean(s), 4), "n": len(s)}


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, **kw)


def interleaved(variants: dict[str, Callable[[], float]], runs: int,
                warmup: int = 3) -> dict[str, dict[str, float]]:
    """Each variant once per round, in turn; the first `warmup` rounds are dropped."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(runs + warmup):
        for name, fn in variants.items():
            ms = fn()
            if i >= warmup:
                samples[name].append(ms)
    return {k: summary(v) for k, v in samples.items()}


def connect_ms(addr: tuple[str, int]) -> float:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        t0 = time.perf_counter()
        s.connect(addr)
        return (time.perf_counter() - t0) * 1000
    finally:
        s.close()


def request_ms(addr: tuple[str, int]) -> float:
    """Connect, GET, read to EOF (busybox httpd closes after one answer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        t0 = time.perf_counter()
        s.connect(addr)
        s.sendall(f"GET /{PAGE} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        ms = (time.perf_counter() - t0) * 1000
    finally:
        s.close()
    if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"{addr}: bad answer {data[:60]!r}")
    return ms


def connections(targets: dict[str, tuple[str, int]], rounds: int) -> dict[str, dict]:
    """Per round, a connect to each target in turn, then the same with requests (20 rounds
    of warm-up); requests/s is one sequential client's, 1000 / the mean request in ms."""
    out: dict[str, dict] = {}
    con = interleaved({k: (lambda a=a: connect_ms(a)) for k, a in targets.items()}, rounds,
                      warmup=20)
    req = interleaved({k: (lambda a=a: request_ms(a)) for k, a in targets.items()}, rounds,
                      warmup=20)
    for name, addr in targets.items():
        out[name] = {"address": f"{addr[0]}:{addr[1]}", "connect": con[name],
                     "request": req[name], "requests/s": round(1000 / req[name]["mean"])}
    return out


def wait_port(addr: tuple[str, int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            request_ms(addr)
            return
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def reexec_in_netns(part: str, work: Path, opts: argparse.Namespace) -> dict:
    """This script again, as `part`, in a new network namespace (and only that)."""
    out = work / f"{part}.json"
    argv = ["unshare", "--net", "--", sys.executable, str(Path(__file__).resolve()),
            "--part", part, "--work", str(work), "--runs", str(opts.runs),
            "--requests", str(opts.requests), "--json", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not out.exists():
        return {"error": f"the {part} part failed (exit {proc.returncode})"}
    return {**json.loads(out.read_text()), "took (s)": round(time.monotonic() - t0)}


def loopback_up() -> None:
    sh("ip", "link", "set", "lo", "up")


def floor_server(work: Path) -> subprocess.Popen:
    """The same busybox httpd, on this namespace's loopback, no container: the floor."""
    www = work / "www"
    www.mkdir(exist_ok=True)
    (www / PAGE).write_text("bench\n")
    busybox = shutil.which("busybox") or "/bin/busybox"
    proc = subprocess.Popen([busybox, "httpd", "-f", "-p", f"127.0.0.1:{FLOOR_PORT}", "-h",
                             str(www)], stdin=subprocess.DEVNULL)
    wait_port(("127.0.0.1", FLOOR_PORT))
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- lamina, in its own network namespace ---------------------------------------------------


def lamina_part(work: Path, opts: argparse.Namespace) -> dict:
    from adapters.storage.busybox import write_busybox_rootfs_tar

    loopback_up()
    root, sock = work / "lamina-root", str(work / "lamina.sock")
    base = [LAMINA, "--root", str(root)]
    local = {**os.environ, "LAMINA_NO_SERVER": "1"}
    with open(work / "busybox.tar", "wb") as f:
        write_busybox_rootfs_tar(f)
    sh(*base, "import", str(work / "busybox.tar"), "busybox")
    sh(*base, "network", "create", "benchnet")
    results: dict[str, object] = {}

    def runs(env: dict[str, str] | None) -> dict[str, Callable[[], float]]:
        return {m: (lambda a=a: timed([*base, "run", "--rm", *a, "busybox", "true"], env))
                for m, a in MODES.items()}

    results["no server"] = interleaved(runs(local), max(5, opts.runs // 2))
    serve = subprocess.Popen([*base, "serve", "--socket", sock], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    floor = None
    try:
        deadline = time.monotonic() + 30
        while not (root / "cli.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the spare's first collection
        results["fork server"] = interleaved(runs(None), opts.runs)
        sh(*base, "run", "-d", "--name", "web", "-p", f"{PUBLISHED}:80", "busybox", "httpd",
           "-f", "-p", "80", "-h", "/etc")
        try:
            address, gateway = container_address(base, "web")
            floor = floor_server(work)
            targets = {"published, 127.0.0.1 (DNAT + masquerade)": ("127.0.0.1", PUBLISHED),
                       "published, the gateway's address (DNAT)": (gateway, PUBLISHED),
                       "the container's address (no NAT)": (address, 80),
                       "floor: busybox httpd on loopback, no container":
                       ("127.0.0.1", FLOOR_PORT)}
            wait_port(targets["published, 127.0.0.1 (DNAT + masquerade)"])
            results["connections"] = connections(targets, opts.requests)
        finally:
            if floor is not None:
                stop(floor)
            sh(*base, "rm", "-f", "web", check=False)
        results["pieces"] = pieces(opts.runs)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        out = sh(*base, "network", "rm", "benchnet", check=False)
        if out.returncode:
            results["network rm benchnet"] = out.stderr.strip()
    results["left in the namespace"] = leftovers_in_netns(root)
    results["container ids"] = sorted(
        {json.loads(line)["stream"].removeprefix("container:") for line in
         sh(*base, "events", "--format", "json").stdout.splitlines()
         if json.loads(line)["stream"].startswith("container:")})
    return results


def container_address(base: list[str], name: str) -> tuple[str, str]:
    """The container's address and gateway: `inspect`'s NetworkSettings when it has them,
    else the endpoints `ps --format json` shows."""
    doc = json.loads(sh(*base, "inspect", name).stdout)[0]
    nets = (doc.get("NetworkSettings") or {}).get("Networks") or {}
    for ep in nets.values():
        if ep.get("IPAddress"):
            return ep["IPAddress"], ep["Gateway"]
    for line in sh(*base, "ps", "--format", "json").stdout.splitlines():
        c = json.loads(line)
        if c.get("name") == name:
            ep = next(iter(c["endpoints"].values()))
            return ep["address"], ep["gateway"]
    raise RuntimeError(f"no address for {name}")


def pieces(runs: int) -> dict[str, object]:
    """endpoints.wire and unwire, step by step, in this process (this namespace), on
    lamina0 (made by the runs above) with an address no run leases: what a start and an
    `rm` of a container with one published port do to the network, without the engine.
    The veth is deleted both ways: while its namespace lives (what unwire paid when the
    monitor sat in the namespace) and once it is closed (init alone holds it now)."""
    t0 = time.perf_counter()
    from adapters.network import bridge, endpoints, nat
    from core.networks import PortBinding, veth_name
    imports = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    nat.listing()
    first_nft = (time.perf_counter() - t0) * 1000
    ep = {"bridge": "lamina0", "gateway": "172.17.0.1", "prefixlen": 16,
          "address": "172.17.255.250", "internal": False}
    steps: dict[str, list[float]] = {}

    def step(name: str, fn: Callable[[], object]) -> object:
        t = time.perf_counter()
        out = fn()
        steps.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return out

    binding = [PortBinding("tcp", 80, "0.0.0.0", 18090)]
    for i in range(runs + 3):
        cid = f"{i:04d}" + "b" * 60
        key, veth = endpoints.publication_key(cid), veth_name(cid, "f" * 64)
        fd = step("new network namespace, lo up (new_netns)", endpoints.new_netns)
        step("bridge and chains there? (ensure_network: if_nametoindex + nft listing)",
             lambda: endpoints.ensure_network(ep))
        step("veth pair, address, up, route (bridge.attach, pyroute2)",
             lambda v=veth, f=fd: bridge.attach("lamina0", v, address=ep["address"],
                                                prefixlen=16, gateway=ep["gateway"],
                                                netns_fd=f))
        step("publish 1 port (nat.publish: 1 nft batch)",
             lambda k=key: nat.publish(k, ep["address"], binding))
        step("unpublish (nat.unpublish: listing + 1 batch)", lambda k=key: nat.unpublish(k))
        step("delete the veth pair while its namespace lives (bridge.detach)",
             lambda v=veth: bridge.detach(v))
        os.close(fd)
        # what `rm` meets since init alone holds the namespace: the last process gone, the
        # kernel deletes the veth with the namespace (asynchronously, off the command's
        # path), and unwire finds it gone
        fd = endpoints.new_netns()
        bridge.attach("lamina0", veth, address=ep["address"], prefixlen=16,
                      gateway=ep["gateway"], netns_fd=fd)
        os.close(fd)
        step("the kernel deletes the veth with its closed namespace (async, not waited for)",
             lambda v=veth: gone(v))
        step("bridge.detach of a veth gone with its namespace (what rm pays)",
             lambda v=veth: bridge.detach(v))
        time.sleep(0.05)  # let the kernel's namespace cleanup run before the next round
        if i < 3:
            for v in steps.values():
                v.pop()
    out: dict[str, object] = {k: summary(v) for k, v in steps.items()}
    out["import pyroute2 + bridge, nat, endpoints (once per process; the server has them)"] \
        = round(imports, 1)
    out["first libnftables call in a process (dlopen + listing)"] = round(first_nft, 2)
    out["import, fresh interpreter (ms)"] = import_cost()
    return out


def gone(link: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.if_nametoindex(link)
        except OSError:
            return
        time.sleep(0.0005)
    raise RuntimeError(f"{link} outlived its namespace by {timeout} s")


def import_cost() -> float:
    code = (f"import time,sys; sys.path.insert(0, {str(HERE)!r}); t=time.perf_counter(); "
            "import adapters.network.endpoints, adapters.network.bridge, "
            "adapters.network.nat; print((time.perf_counter()-t)*1000)")
    samples = [float(sh(sys.executable, "-c", code).stdout) for _ in range(5)]
    return round(statistics.median(samples), 1)


def leftovers_in_netns(root: Path) -> dict[str, object]:
    """What lamina left in this namespace once everything is removed (lamina0 and the
    empty table may stay: docker's docker0 stays too), and processes still in it."""
    links = [x["ifname"] for x in json.loads(sh("ip", "-j", "link").stdout)]
    t0 = time.monotonic()
    while (procs := processes_here()) and time.monotonic() - t0 < 10:
        time.sleep(0.05)  # the DNS resolver leaves on its own once no network is left
    rules = json.loads(sh("nft", "-j", "list", "ruleset").stdout)["nftables"]
    chains = sorted(o["chain"]["name"] for o in rules if "chain" in o)
    return {"links": links, "chains": chains, "processes": procs,
            "waited for the last process (s)": round(time.monotonic() - t0, 2)}


def processes_here() -> list[str]:
    """Processes in this network namespace but this one (and `unshare`, which exec'd it)."""
    mine = os.stat("/proc/self/ns/net").st_ino
    procs = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                if os.stat(f"/proc/{pid}/ns/net").st_ino == mine:
                    procs.append(f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes()
                                 .replace(b"\0", b" ").decode().strip()[:200])
            except OSError:
                pass
    return procs


# --- peers ----------------------------------------------------------------------------------


class Dockerd:
    """Debian's dockerd 20.10 on its own socket, data and exec roots (../shared/peers.md)."""

    def __init__(self, work: Path, tar: Path, flags: list[str], tag: str) -> None:
        self.sock = f"/run/lamina-bench-net-{tag}-{os.getpid()}.sock"
        d = self.dir = work / f"docker-{tag}"
        d.mkdir()
        self.log = open(d / "dockerd.log", "w")  # noqa: SIM115 - lives as long as dockerd
        self.proc = subprocess.Popen(
            ["dockerd", *flags, "--data-root", str(d / "data"), "--exec-root",
             str(d / "exec"), "--pidfile", str(d / "dockerd.pid"), "-H",
             f"unix://{self.sock}"], stdout=self.log, stderr=self.log,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while sh(*self.base, "version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("dockerd did not start")
            time.sleep(0.5)
        sh(*self.base, "import", "--change", "CMD [\"sh\"]", str(tar), "busybox:latest")

    @property
    def base(self) -> list[str]:
        return ["/usr/bin/docker", "-H", f"unix://{self.sock}"]

    def run_rm(self, network: str) -> float:
        return timed([*self.base, "run", "--rm", "--network", network, "busybox", "true"])

    def close(self) -> None:
        stop(self.proc)
        self.log.close()
        with_suppress_unlink(self.sock)
        unmount_under(self.dir)  # dockerd leaves exec-root/netns/default (host mode) mounted


class Podman:
    """podman 4.3 with runc and cgroupfs, its own storage (../shared/peers.md)."""

    RUN = ["--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit",
           "nproc=32768:32768"]

    def __init__(self, work: Path, tar: Path, tag: str) -> None:
        d = work / f"podman-{tag}"
        self.base = ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        sh(*self.base, "import", str(tar), "localhost/busybox:latest")

    def run_rm(self, network: str) -> float:
        return timed([*self.base, "run", "--rm", *self.RUN, "--network", network,
                      "localhost/busybox", "true"])

    def close(self) -> None:
        sh(*self.base, "rm", "-a", "-f", "-t", "0", check=False)
        sh(*self.base, "system", "reset", "-f", check=False)


def mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def unmount_under(path: Path) -> None:
    for point in reversed(mount_points()):
        if point == str(path) or point.startswith(f"{path}/"):
            sh("umount", "-l", point, check=False)


# Host paths the peers make for themselves and leave behind: netavark's /run/netns (made a
# shared bind mount of itself) and state directories; removed again when this run made them.
PEER_LEFTOVERS = ("/run/netns", "/run/containers", "/run/docker")


def peer_paths_before() -> dict[str, tuple[bool, bool]]:
    points = mount_points()
    return {p: (os.path.exists(p), p in points) for p in PEER_LEFTOVERS}


def remove_peer_leftovers(before: dict[str, tuple[bool, bool]]) -> None:
    for path, (existed, mounted) in before.items():
        if not mounted and path in mount_points() and not any(
                m.startswith(f"{path}/") for m in mount_points()):
            sh("umount", path, check=False)
        if not existed and os.path.isdir(path) and path not in mount_points():
            shutil.rmtree(path, ignore_errors=True)


def with_suppress_unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def try_modes(engine, modes: tuple[str, ...], runs: int) -> dict[str, object]:
    """The modes that run (one probe each) interleaved; the others with their error."""
    out: dict[str, object] = {}
    ok = []
    for mode in modes:
        try:
            engine.run_rm(mode)
            ok.append(mode)
        except subprocess.CalledProcessError as err:
            out[mode] = {"error": " ".join((err.stderr or b"").decode(errors="replace")
                                           .split())[:240]}
    out.update(interleaved({m: (lambda m=m: engine.run_rm(m)) for m in ok}, runs))
    return out


def peer_published(base: list[str], image: str, run_flags: list[str],
                   requests: int) -> dict[str, object]:
    """A `busybox httpd` published on PUBLISHED, reached like lamina's (in this namespace)."""
    cid = sh(*base, "run", "-d", *run_flags, "-p", f"{PUBLISHED}:80", image, "httpd", "-f",
             "-p", "80", "-h", "/etc").stdout.strip()
    try:
        doc = json.loads(sh(*base, "inspect", cid).stdout)[0]
        ep = next(iter(doc["NetworkSettings"]["Networks"].values()))
        targets = {"published, 127.0.0.1": ("127.0.0.1", PUBLISHED),
                   "published, the gateway's address": (ep["Gateway"], PUBLISHED),
                   "the container's address": (ep["IPAddress"], 80)}
        wait_port(targets["the container's address"])
        wait_port(targets["published, 127.0.0.1"])
        return connections(targets, requests)
    finally:
        sh(*base, "rm", "-f", cid, check=False)


def docker_bridge_part(work: Path, opts: argparse.Namespace) -> dict:
    """dockerd with its default bridge and iptables, in this (new) network namespace."""
    loopback_up()
    d = Dockerd(work, work / "busybox.tar", ["--userland-proxy=true"], "bridge")
    try:
        out = {"run --rm": try_modes(d, ("none", "bridge"), max(5, opts.runs // 2))}
        try:
            out["connections"] = peer_published(d.base, "busybox", [],
                                                max(100, opts.requests // 4))
        except (subprocess.CalledProcessError, RuntimeError, OSError) as err:
            out["connections"] = {"error": str(err)[:240]}
        return out
    finally:
        d.close()


def podman_bridge_part(work: Path, opts: argparse.Namespace) -> dict:
    """podman's netavark bridge (podman0, iptables) in this (new) network namespace."""
    loopback_up()
    p = Podman(work, work / "busybox.tar", "bridge")
    try:
        out = {"run --rm": try_modes(p, ("none", "bridge"), max(5, opts.runs // 3))}
        try:
            out["connections"] = peer_published(p.base, "localhost/busybox", p.RUN,
                                                max(100, opts.requests // 4))
        except (subprocess.CalledProcessError, RuntimeError, OSError) as err:
            out["connections"] = {"error": str(err)[:240]}
        return out
    finally:
        p.close()


def peers(work: Path, opts: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    tar = work / "busybox.tar"
    if shutil.which("dockerd"):
        try:
            d = Dockerd(work, tar, ["--iptables=false", "--bridge=none"], "host")
        except (RuntimeError, subprocess.CalledProcessError) as err:
            out["docker (host's network)"] = {"error": str(err)[:240]}
        else:
            try:
                out["docker (host's network)"] = try_modes(d, ("none", "host", "bridge"),
                                                           max(5, opts.runs // 2))
            finally:
                d.close()
        out["docker (own namespace)"] = reexec_in_netns("docker-bridge", work, opts)
    else:
        out["docker"] = {"error": "dockerd is not installed (apt-get install docker.io)"}
    if shutil.which("podman"):
        p = Podman(work, tar, "host")
        try:
            out["podman (host's network)"] = try_modes(p, ("none", "slirp4netns"),
                                                       max(5, opts.runs // 3))
        finally:
            p.close()
        out["podman (own namespace)"] = reexec_in_netns("podman-bridge", work, opts)
    else:
        out["podman"] = {"error": "podman is not installed"}
    return out


# --- the host, before and after -------------------------------------------------------------


def host_state(work: Path) -> dict[str, object]:
    links = sorted(x["ifname"] for x in json.loads(sh("ip", "-j", "link").stdout))
    ruleset = sh("nft", "list", "ruleset").stdout
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(work) in line or "/run/netns" in line]
    lamina_procs = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(work).encode() in cmd or b"lamina-bench-net" in cmd:
                lamina_procs.append(int(pid))
    return {"links": links, "ruleset": ruleset, "mounts": mounts, "processes": lamina_procs}


def cgroups_of(ids: list[str]) -> list[str]:
    """Cgroups left of this run's containers (lamina/<id> under each hierarchy)."""
    found = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for cid in ids:
            if (hierarchy / "lamina" / cid).exists():
                found.append(str(hierarchy / "lamina" / cid))
    return found


# --- the table ------------------------------------------------------------------------------


def micro(v: dict[str, float]) -> str:
    return f"{v['median'] * 1000:,.0f} (p90 {v['p90'] * 1000:,.0f})"


def cell(v: object) -> str:
    if isinstance(v, dict) and "median" in v:
        return f"{v['median']:.1f} (p90 {v['p90']:.1f})"
    if isinstance(v, dict) and "error" in v:
        return "fails: " + str(v["error"])[:120]
    return "—"


def run_row(label: str, r: dict, bridge: str | None, user: str | None,
            other: str | None = None, note: str = "") -> str:
    def diff(key: str | None) -> str:
        if key and "median" in r.get(key, {}) and "median" in r.get("none", {}):
            return f"{r[key]['median'] - r['none']['median']:+.1f}"
        return ""

    if "error" in r and len(r) == 1:
        return f"| {label} | {cell(r)} | | | | | | |"
    extra = note
    if other and other in r:
        extra = f"{other}: {cell(r[other])}" + (f", {diff(other)} over none"
                                                 if diff(other) else "") + extra
    return (f"| {label} | {cell(r.get('none'))} | {cell(r.get('host'))} | "
            f"{cell(r.get(bridge)) if bridge else '—'} | {cell(r.get(user)) if user else '—'} "
            f"| {diff(bridge)} | {diff(user)} | {extra} |")


def print_tables(results: dict) -> None:
    lam = results.get("lamina", {})
    print("\n`run --rm busybox true`, ms, median (p90):\n")
    print("| engine | --network none | host | bridge | user network | bridge - none | "
          "user - none | other |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for how in ("fork server", "no server"):
        if lam.get(how):
            print(run_row(f"lamina ({how})", lam[how], "bridge", "benchnet", "bridge -p",
                          " (`-p 18085:80` on the bridge)"))
    peer = results.get("peers", {})
    rows = [("docker, host's network (`--bridge=none --iptables=false`)",
             "docker (host's network)", None, None, "bridge",
             " (runs with only lo: without a bridge, docker gives `bridge` no network)"),
            ("docker, own network namespace (docker0, iptables)", "docker (own namespace)",
             "bridge", None, None, ""),
            ("podman, host's network", "podman (host's network)", None, None, "slirp4netns",
             ""),
            ("podman, own network namespace (netavark, podman0)", "podman (own namespace)",
             "bridge", None, None, "")]
    for label, key, bridge, user, other, note in rows:
        r = peer.get(key)
        if isinstance(r, dict):
            print(run_row(label, r.get("run --rm", r), bridge, user, other, note))
    print("\nConnections through a published port, one sequential client, µs median (p90):\n")
    print("| engine | target | connect | connect + GET + EOF | requests/s |")
    print("|---|---|---:|---:|---:|")
    groups = [("lamina", lam.get("connections"))]
    for key in ("docker (own namespace)", "podman (own namespace)"):
        r = results.get("peers", {}).get(key, {})
        if isinstance(r, dict) and r.get("connections"):
            groups.append((key.split()[0], r["connections"]))
    for engine, conns in groups:
        if not conns:
            continue
        if "error" in conns:
            print(f"| {engine} | fails: {conns['error'][:120]} | | | |")
            continue
        for name, c in conns.items():
            print(f"| {engine} | {name} ({c['address']}) | {micro(c['connect'])} | "
                  f"{micro(c['request'])} | {c['requests/s']:,} |")
    p = lam.get("pieces")
    if p:
        print("\nThe pieces of a bridge start and end (in-process, ms):\n")
        print("| step | median | p90 |")
        print("|---|---:|---:|")
        for name, v in p.items():
            if isinstance(v, dict):
                print(f"| {name} | {v['median']:.2f} | {v['p90']:.2f} |")
            else:
                print(f"| {name} | {v} | |")


def tree() -> str:
    """The commit measured, and whether the working tree had changes beside it."""
    head = sh("git", "-C", str(HERE), "rev-parse", "--short", "HEAD", check=False).stdout
    dirty = sh("git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no",
               check=False).stdout.splitlines()
    return head.strip() + (f" + {len(dirty)} modified files" if dirty else "")


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--part", choices=["lamina", "docker-bridge", "podman-bridge"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.part:  # in the network namespace the outer run made
        part = {"lamina": lamina_part, "docker-bridge": docker_bridge_part,
                "podman-bridge": podman_bridge_part}[opts.part]
        result = part(Path(opts.work), opts)
        Path(opts.json).write_text(json.dumps(result, indent=2))
        return 0
    if os.geteuid() != 0:
        print("bench/network.py needs root", file=sys.stderr)
        return 2
    from adapters.storage.busybox import write_busybox_rootfs_tar

    work = Path(tempfile.mkdtemp(prefix="lamina-bench-net-"))
    os.chmod(work, 0o755)
    before = host_state(work)
    results: dict[str, object] = {"load before": list(os.getloadavg()), "tree": tree()}
    try:
        results["lamina"] = reexec_in_netns("lamina", work, opts)
        if not opts.no_peers:
            with open(work / "busybox.tar", "wb") as f:
                write_busybox_rootfs_tar(f)
            made = peer_paths_before()
            try:
                results["peers"] = peers(work, opts)
            finally:
                unmount_under(work)
                remove_peer_leftovers(made)
        results["load after"] = list(os.getloadavg())
        after = host_state(work)
        left = {k: after[k] for k in ("links", "ruleset", "mounts") if after[k] != before[k]}
        if after["processes"]:
            left["processes"] = after["processes"]
        lamina = results["lamina"]
        cgroups = cgroups_of(lamina.get("container ids", []) if isinstance(lamina, dict)
                             else [])
        if cgroups:
            left["cgroups"] = cgroups
        results["left on the host"] = left
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    print_tables(results)
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))
    if results["left on the host"]:
        print("the host changed during the run (its links, ruleset, mounts, or processes of "
              "this run's; lamina ran in a namespace of its own, so a change of the host's "
              "network may be another process's):", json.dumps(results["left on the host"]),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
