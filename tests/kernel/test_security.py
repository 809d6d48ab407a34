"""no_new_privs and capability dropping, checked against what the kernel reports.

Both are irreversible for the calling process, so every test applies them in a forked
child (or a subprocess's preexec_fn, which is exactly where the engine applies them).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.kernel import libc
from adapters.kernel.security import (
    DEFAULT_CAPS,
    caps_mask,
    drop_capabilities,
    set_no_new_privs,
)
from tests.conftest import require_root

DOCKER_DEFAULT_MASK = 0xA80425FB  # CapEff of `docker run --rm alpine grep Cap /proc/self/status`


def in_child(fn: Callable[[], str]) -> str:
    """Run fn in a forked child and return what it returned (or its exception, as text)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: whatever happens, never return into pytest
        code, result = 1, "child died before reporting"
        try:
            os.close(read_end)
            result, code = fn(), 0
        except BaseException as e:
            result = f"{type(e).__name__}: {e}"
        finally:
            os.write(write_end, result.encode())
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        output = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    return output


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def own_status() -> str:
    return Path("/proc/self/status").read_text()


def test_default_caps_are_dockers() -> None:
    """The exported set is bit-for-bit the one docker gives a container."""
    assert caps_mask(DEFAULT_CAPS) == DOCKER_DEFAULT_MASK
    assert caps_mask({"cap_chown", "Kill"}) == (1 << 0) | (1 << 5)
    with pytest.raises(ValueError, match="unknown capability 'CAP_FLY'"):
        caps_mask({"CAP_FLY"})


def test_no_new_privs_is_set_for_the_child_only() -> None:
    require_root()

    def child() -> str:
        set_no_new_privs()
        return own_status()

    assert status_fields(in_child(child))["NoNewPrivs"] == "1"
    assert status_fields(own_status())["NoNewPrivs"] == "0"


def test_drop_capabilities_in_process() -> None:
    """Effective, permitted and bounding become the kept set; inheritable and ambient empty."""
    require_root()

    def child() -> str:
        drop_capabilities(DEFAULT_CAPS)
        return own_status()

    fields = status_fields(in_child(child))
    expected = f"{DOCKER_DEFAULT_MASK:016x}"
    assert {k: fields[k] for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")} == {
        "CapEff": expected, "CapPrm": expected, "CapBnd": expected,
        "CapInh": "0" * 16, "CapAmb": "0" * 16,
    }


def test_dropped_caps_survive_exec() -> None:
    """Root regains its bounding set on exec: the cut must hold in the exec'd program."""
    require_root()

    def before_exec() -> None:
        set_no_new_privs()
        drop_capabilities(DEFAULT_CAPS)

    out = subprocess.run(["cat", "/proc/self/status"], preexec_fn=before_exec,
                         capture_output=True, text=True, check=True).stdout
    fields = status_fields(out)
    assert int(fields["CapEff"], 16) == DOCKER_DEFAULT_MASK
    assert int(fields["CapBnd"], 16) == DOCKER_DEFAULT_MASK
    assert fields["NoNewPrivs"] == "1"


def test_dropped_caps_cannot_mount(tmp_path: Path) -> None:
    """Same child, same mount: allowed before the drop, EPERM after (no CAP_SYS_ADMIN).

    The child first moves to a private mount namespace, so even a wrongly allowed mount
    could never show up on the host.
    """
    require_root()

    def child() -> str:
        libc.unshare(libc.CLONE_NEWNS)
        libc.make_mounts_private()
        libc.mount("tmpfs", str(tmp_path), "tmpfs")
        libc.umount(str(tmp_path))
        drop_capabilities(DEFAULT_CAPS)
        try:
            libc.mount("tmpfs", str(tmp_path), "tmpfs")
        except OSError as e:
            return errno.errorcode[e.errno]
        return "mounted"

    assert in_child(child) == "EPERM"


def test_drop_everything() -> None:
    require_root()

    def child() -> str:
        drop_capabilities(set())
        return own_status()

    fields = status_fields(in_child(child))
    assert fields["CapEff"] == fields["CapBnd"] == "0" * 16
