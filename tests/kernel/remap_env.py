"""A --userns-remap root for the real-kernel tests, without touching the host's users.

`subid_prefix` makes the directory $LAMINA_SUBID_PREFIX names (adapters/remap.py): etc/passwd,
group, shadow, gshadow (root only), the host's login.defs, and empty subuid/subgid. lamina's
`default` then runs `useradd --prefix` there, which makes `laminaremap` and its 65536 ids in
those files and nowhere else; `host_state` lets a test check the host's stayed as they were.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.kernel.runtime_env import LAMINA, Lamina

ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")
FIRST_ID = 100000  # where useradd hands out the first system user's subordinate ids


def subid_prefix(directory: Path) -> Path:
    """A prefix holding a root-only account database and login.defs; returns its path."""
    etc = directory / "etc"
    etc.mkdir(parents=True)
    files = {"passwd": "root:x:0:0:root:/root:/bin/sh\n", "group": "root:x:0:\n",
             "shadow": "root:*:19000:0:99999:7:::\n", "gshadow": "root:*::\n",
             "subuid": "", "subgid": ""}
    for name, text in files.items():
        (etc / name).write_text(text)
        (etc / name).chmod(0o600 if "shadow" in name else 0o644)
    shutil.copyfile("/etc/login.defs", etc / "login.defs")
    return directory


def configure(lamina: Lamina, prefix: Path, setting: str = "default",
              check: bool = True) -> subprocess.CompletedProcess:
    """`lamina system configure --userns-remap SETTING` with the test's prefix."""
    env = {**os.environ, "LAMINA_SUBID_PREFIX": str(prefix)}
    out = subprocess.run([LAMINA, "--root", str(lamina.root), "system", "configure",
                          "--userns-remap", setting], capture_output=True, text=True,
                         env=env, stdin=subprocess.DEVNULL, timeout=60)
    if check and out.returncode != 0:
        raise AssertionError(f"system configure --userns-remap {setting} exited "
                             f"{out.returncode}: {out.stderr}")
    return out


HOST_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
              "/dev/tty")


def host_state() -> dict[str, str]:
    """What a remapped root must never change on the host: a digest of each account file
    (absent ones as "-"), and the owner and mode of the device nodes its containers get
    bound (a chown through a bind, or of a stdin of /dev/null, would change the host's)."""
    out = {}
    for name in ACCOUNT_FILES:
        path = Path("/etc") / name
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"
    for node in HOST_NODES:
        st = os.stat(node)
        out[node] = f"{st.st_uid}:{st.st_gid} {st.st_mode:o}"
    return out


def status_ids(pid: int | str) -> tuple[int, int]:
    """The real uid and gid of a process as the host sees them (/proc/PID/status)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["Uid"][0]), int(fields["Gid"][0])
