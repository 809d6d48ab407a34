"""`make demo`: the seed's walk-through on real containers, then the log, replay and audit.

Every step is the real `lamina` command in a temporary root: a busybox image built from
Debian's busybox-static, `run busybox touch happiness.txt`, the file found in the container's
read-write layer on the host, commit, history, a named volume, a web server on a published
port reached by name from another container, pause, the audit trail, time travel and a
tampering caught by `audit verify`. The root is removed at the end, and what it made on
the host's network (the default bridge lamina0, its nftables table, ip_forward) with it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

LAMINA = str(Path(sys.executable).with_name("lamina"))


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def lamina(root: str, *argv: str, show: bool = True) -> subprocess.CompletedProcess:
    if show:
        print(f"$ lamina {' '.join(argv)}", flush=True)
    out = subprocess.run([LAMINA, "--root", root, *argv], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if show:
        sys.stdout.write(out.stdout)
        sys.stdout.write("".join(f"  (stderr) {line}\n" for line in out.stderr.splitlines()))
        if out.returncode:
            print(f"  (exit code {out.returncode})")
        sys.stdout.flush()
    return out


def build_busybox(work: str) -> str:
    from adapters.storage.busybox import write_busybox_rootfs_tar

    path = os.path.join(work, "busybox.tar")
    with open(path, "wb") as f:
        write_busybox_rootfs_tar(f)
    return path


def walk_through(root: str, work: str) -> None:
    banner("an image: a busybox rootfs imported as one read-only layer")
    lamina(root, "import", build_busybox(work), "busybox")
    lamina(root, "images", "-a")

    banner("the seed's example: run busybox touch happiness.txt")
    lamina(root, "run", "--name", "happy", "busybox", "touch", "happiness.txt")
    lamina(root, "ps", "-a")
    cid = json.loads(lamina(root, "ps", "-a", "--format", "json", show=False)
                     .stdout.splitlines()[0])["id"]
    upper = Path(root) / "layers" / f"rw-{cid}" / "diff"
    print(f"$ ls -l {upper}   # the read-write layer on the host, nothing running")
    for p in sorted(upper.iterdir()):
        print(f"  {p.name}  ({p.stat().st_size} bytes)")

    banner("the seed's picture of that container: read-only layers, a read-write layer")
    lamina(root, "viz", "happy")

    banner("commit: the read-write layer burnt into a new read-only layer")
    lamina(root, "commit", "-m", "the seed's happiness", "happy", "happy:v1")
    lamina(root, "history", "happy:v1")
    lamina(root, "images", "-a")
    lamina(root, "viz", "--tree")

    banner("data that outlives a container: a named volume, mounted outside the union view")
    lamina(root, "run", "--rm", "-v", "notes:/notes", "busybox", "sh", "-c",
           "echo written by a container that is gone > /notes/today")
    lamina(root, "run", "--rm", "-v", "notes:/notes:ro", "busybox", "cat", "/notes/today")
    lamina(root, "volume", "ls")
    lamina(root, "events", "--filter", "volume=notes")

    banner("networks: a web server on a published port, a client that finds it by name")
    lamina(root, "network", "create", "demo-net")
    lamina(root, "run", "-d", "--name", "web", "--network", "demo-net", "-p", "18080:80",
           "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    lamina(root, "run", "--rm", "--network", "demo-net", "busybox", "wget", "-q", "-O", "-",
           "http://web/hostname")
    print("$ python3 -c 'urlopen(\"http://127.0.0.1:18080/hostname\")'   # from the host")
    print(f"  {fetch('http://127.0.0.1:18080/hostname')}")
    lamina(root, "port", "web")
    lamina(root, "rm", "-f", "web")
    lamina(root, "network", "rm", "demo-net")

    banner("a running container, paused by the cgroup freezer, then stopped")
    lamina(root, "run", "-d", "--name", "counter", "busybox", "sh", "-c",
           "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    lamina(root, "pause", "counter")
    lamina(root, "exec", "counter", "true")
    lamina(root, "unpause", "counter")
    lamina(root, "exec", "counter", "sh", "-c", "echo I am pid $$ in $(hostname)")
    lamina(root, "stop", "counter")
    lamina(root, "rmi", "busybox")
    lamina(root, "ps", "-a")


def fetch(url: str) -> str:
    import time
    import urllib.request

    for _ in range(50):
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode().strip()
        except OSError as err:
            last = err
            time.sleep(0.1)
    return f"(failed: {last})"


def host_network_before() -> tuple[bool, str]:
    """Whether the host had lamina's default bridge, and its ip_forward, before the demo:
    what the demo made on the host's network it takes away again at the end."""
    import socket

    try:
        socket.if_nametoindex("lamina0")
        had = True
    except OSError:
        had = False
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return had, f.read().strip()


def restore_host_network(had_bridge: bool, forward: str) -> None:
    if not had_bridge:
        from adapters.network.host import LinuxNetworkHost

        LinuxNetworkHost().discard("lamina0")
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(forward)


def audit(root: str) -> None:
    banner("the audit trail: every command, accepted or refused")
    lamina(root, "events")
    seq = next(e["seq"] for e in map(json.loads, lamina(
        root, "events", "--format", "json", show=False).stdout.splitlines())
        if e["type"] == "ContainerPaused")
    banner(f"time travel: the state right after seq {seq}")
    lamina(root, "replay", "--at", str(seq))
    banner("replay: the read model rebuilt from the log")
    lamina(root, "replay")
    banner("audit verify, then a row changed behind the triggers' back")
    lamina(root, "audit", "verify")
    con = sqlite3.connect(os.path.join(root, "events.db"))
    con.executescript("DROP TRIGGER events_no_update;"
                      "UPDATE events SET data = replace(data, 'happiness', 'sadness') "
                      "WHERE type = 'ContainerCreated';")
    con.close()
    lamina(root, "audit", "verify")


def main() -> None:
    work = tempfile.mkdtemp(prefix="lamina-demo-")
    root = os.path.join(work, "root")
    had_bridge, forward = host_network_before()
    try:
        walk_through(root, work)
        audit(root)
    finally:
        for line in lamina(root, "ps", "-a", "--format", "json", show=False).stdout.splitlines():
            lamina(root, "rm", "-f", json.loads(line)["id"], show=False)
        for name in lamina(root, "network", "ls", "-q", "--filter", "type=custom",
                           show=False).stdout.split():
            lamina(root, "network", "rm", name, show=False)
        restore_host_network(had_bridge, forward)
        from adapters.fastpath.forkserver import stop_server

        stop_server(root, gone=True)  # the one the first command after the import started
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
