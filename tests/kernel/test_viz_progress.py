"""Progress bars on real long work: `import` of a big tar draws one on a terminal (stderr
a pty), `--quiet` draws none, and a pipe never gets one."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import tarfile
import termios
import threading

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA

SIZE = 64 * 1000 * 1000
FAST = {**os.environ, "LAMINA_PROGRESS_DELAY": "0.05"}  # the bar's threshold, not a second


@pytest.fixture(scope="module")
def big_tar(tmp_path_factory):
    require_root()
    base = tmp_path_factory.mktemp("progress")
    blob = base / "blob"
    with open(blob, "wb") as f:
        for _ in range(SIZE // (1 << 20)):
            f.write(os.urandom(1 << 20))
    tar = base / "big.tar"
    with tarfile.open(tar, "w") as t:
        t.add(blob, arcname="blob")
    blob.unlink()
    return base, tar


def _import_on_a_pty(root, tar, *options: str) -> tuple[int, str]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
    out: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            out.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run([LAMINA, "--root", str(root), *options, "import", str(tar), "big"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                          timeout=120, env=FAST)
    os.close(slave)
    reader.join(5)
    os.close(master)
    return proc.returncode, b"".join(out).decode(errors="replace")


def test_a_long_import_draws_a_bar_on_a_terminal(big_tar) -> None:
    base, tar = big_tar
    code, drawn = _import_on_a_pty(base / "root1", tar)
    assert code == 0
    assert "importing big.tar" in drawn and "MB" in drawn
    assert f"/{os.path.getsize(tar) / 1e6:.1f} MB" in drawn  # the total: the file's size


def test_quiet_and_pipes_draw_nothing(big_tar) -> None:
    base, tar = big_tar
    code, drawn = _import_on_a_pty(base / "root2", tar, "--quiet")
    assert code == 0 and drawn == ""
    piped = subprocess.run([LAMINA, "--root", str(base / "root3"), "import", str(tar), "big"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=120, env=FAST)
    assert piped.returncode == 0 and piped.stderr == ""
