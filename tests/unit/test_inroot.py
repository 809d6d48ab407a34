"""openat2(RESOLVE_IN_ROOT): paths inside a root never resolve to the host.

Each root is a plain temporary directory beside a "host" directory holding a sentinel file
that a resolution leaking out of the root would reach. openat2 needs no privilege.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.kernel import inroot

SECRET = b"host secret, never to be read through a container path\n"


def assert_confined(tmp_path: Path) -> None:
    """Fail unless lookups stay inside their root, before a test writes anything.

    The tests here and in test_copyio.py create, link and remove files through hostile
    paths, and CI runs them as root: a regression that let `/`, `..` or an absolute symlink
    resolve on the host must stop here, not write to the host. (Their hostile paths also
    lead, if followed on the host, into the test's own temporary directory.)
    """
    box = tmp_path / "canary"
    box.mkdir()
    (box / "slash").symlink_to("/")
    (box / "up").symlink_to("../../../..")
    fd = inroot.open_root(str(box))
    try:
        want = os.fstat(fd)
        for path in ("/", "/..", "../../..", "slash", "up", "slash/..", "up/../.."):
            found = inroot.open_in_root(fd, path, os.O_PATH | os.O_DIRECTORY)
            st = os.fstat(found)
            os.close(found)
            if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
                pytest.fail(f"open_in_root({path!r}) left its root: refusing to run tests "
                            "that write through hostile paths")
        if inroot.scoped_path(fd, "/up/slash/..") != "/":
            pytest.fail("scoped_path left its root")
    finally:
        os.close(fd)


@pytest.fixture(autouse=True)
def _confined(tmp_path: Path) -> None:
    assert_confined(tmp_path)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """(root, host, root_fd): root/etc/passwd is the container's, host/secret the host's;
    both hold a `passwd` so a wrong resolution reads the wrong bytes, not nothing."""
    root, host = tmp_path / "root", tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_bytes(b"container passwd\n")
    host.mkdir()
    (host / "secret").write_bytes(SECRET)
    (host / "passwd").write_bytes(SECRET)
    fd = inroot.open_root(str(root))
    yield root, host, fd
    os.close(fd)


def _read(root_fd: int, path: str) -> bytes:
    fd = inroot.open_in_root(root_fd, path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def test_absolute_and_relative_paths_start_at_the_root(world: tuple[Path, Path, int]) -> None:
    _, _, fd = world
    assert _read(fd, "/etc/passwd") == b"container passwd\n"
    assert _read(fd, "etc/passwd") == b"container passwd\n"
    assert _read(fd, "/etc/../etc/./passwd") == b"container passwd\n"


def test_dotdot_chains_stop_at_the_root(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    depth = "../" * (len(root.parts) + 3)
    assert _read(fd, depth + "etc/passwd") == b"container passwd\n"
    assert _read(fd, "/etc/" + depth + "etc/passwd") == b"container passwd\n"
    with pytest.raises(FileNotFoundError):  # ../host/secret would be the host's
        _read(fd, "../host/secret")


def test_a_symlink_to_the_host_root_resolves_to_the_container_root(
        world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "slash").symlink_to("/")
    (root / "etc_link").symlink_to("/etc")
    assert _read(fd, "/slash/etc/passwd") == b"container passwd\n"
    assert _read(fd, "/etc_link/passwd") == b"container passwd\n"
    with pytest.raises(FileNotFoundError):
        _read(fd, "/slash" + str(host / "secret"))


def test_absolute_symlinks_resolve_inside_the_root(world: tuple[Path, Path, int]) -> None:
    """A symlink naming the host directory's real absolute path names that path *inside*
    the root: missing there, so ENOENT, and if the container makes it, the container's."""
    root, host, fd = world
    (root / "to_host").symlink_to(host)
    (root / "up").symlink_to("../" * 10 + "host")  # relative, climbing out: clamped
    (root / "chain").symlink_to("to_host")
    for path in ("/to_host/secret", "/up/secret", "/chain/secret", "/to_host/passwd"):
        with pytest.raises(FileNotFoundError):
            _read(fd, path)
    inside = root / str(host).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "secret").write_bytes(b"the container's own file\n")
    assert _read(fd, "/to_host/secret") == b"the container's own file\n"
    assert _read(fd, "/chain/secret") == b"the container's own file\n"


def test_magic_links_are_refused(tmp_path: Path) -> None:
    """/proc/self/root jumps to the process's root whatever the lookup's root is."""
    fd = inroot.open_root("/")
    try:
        with pytest.raises(OSError) as caught:
            inroot.open_in_root(fd, "/proc/self/root/etc/hostname", os.O_RDONLY)
        assert caught.value.errno == errno.ELOOP
        assert "magic link" in inroot.describe(caught.value, "/proc/self/root/etc/hostname")
    finally:
        os.close(fd)


def test_nofollow_opens_the_symlink_itself_with_o_path(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "to_host").symlink_to(host / "secret")
    link = inroot.open_in_root(fd, "/to_host", os.O_PATH | os.O_NOFOLLOW)
    try:
        assert os.readlink("", dir_fd=link) == str(host / "secret")
    finally:
        os.close(link)
    with pytest.raises(OSError) as caught:
        inroot.open_in_root(fd, "/to_host", os.O_RDONLY | os.O_NOFOLLOW)
    assert caught.value.errno == errno.ELOOP


def test_fds_are_close_on_exec(world: tuple[Path, Path, int]) -> None:
    _, _, fd = world
    opened = inroot.open_in_root(fd, "/etc/passwd", os.O_RDONLY)
    try:
        assert not os.get_inheritable(opened)
    finally:
        os.close(opened)


def test_create_in_root_never_creates_on_the_host(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "to_host").symlink_to(host)
    (root / str(host).lstrip("/")).mkdir(parents=True)
    new = inroot.open_in_root(fd, "/to_host/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(new)
    assert not (host / "new").exists()
    assert (root / str(host).lstrip("/") / "new").exists()


def test_scoped_path_follows_links_inside_the_root(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "a").mkdir()
    (root / "a/rel").symlink_to("../etc")
    (root / "abs").symlink_to("/a/rel")
    (root / "out").symlink_to("../../../..")
    (root / "dangling").symlink_to("/nowhere/deeper")
    (root / "loop").symlink_to("loop")
    assert inroot.scoped_path(fd, "/abs/passwd") == "/etc/passwd"
    assert inroot.scoped_path(fd, "/abs", follow_last=False) == "/abs"
    assert inroot.scoped_path(fd, "/out/etc") == "/etc"
    assert inroot.scoped_path(fd, "/dangling/x") == "/nowhere/deeper/x"
    assert inroot.scoped_path(fd, "/missing/../etc/./passwd") == "/etc/passwd"
    assert inroot.scoped_path(fd, "/" + str(host)) == str(host)  # a name inside root
    with pytest.raises(OSError) as caught:
        inroot.scoped_path(fd, "/loop")
    assert caught.value.errno == errno.ELOOP


def test_mkdirs_in_root_creates_component_by_component(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    made = inroot.mkdirs_in_root(fd, "/lamina-test/x/y/z", 0o755)
    os.close(made)
    assert (root / "lamina-test/x/y/z").is_dir()
    again = inroot.mkdirs_in_root(fd, "lamina-test/x/y/z")  # existing: just opened
    assert os.fstat(again).st_ino == (root / "lamina-test/x/y/z").stat().st_ino
    os.close(again)


def test_mkdirs_through_symlinks_stays_in_the_root(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "to_host").symlink_to(host)  # dangling inside the root
    (root / "slash").symlink_to("/")
    (root / "up").symlink_to("../../../../..")
    for path in ("/to_host/made1", f"/slash{host}/made2", f"/up{host}/made3"):
        os.close(inroot.mkdirs_in_root(fd, path))  # on the host, each would be host/made*
    assert sorted(p.name for p in host.iterdir()) == ["passwd", "secret"]
    inside = root / str(host).lstrip("/")
    assert sorted(p.name for p in inside.iterdir()) == ["made1", "made2", "made3"]


def test_mkdirs_refuses_a_file_in_the_way(world: tuple[Path, Path, int]) -> None:
    _, _, fd = world
    with pytest.raises(NotADirectoryError) as caught:
        inroot.mkdirs_in_root(fd, "/etc/passwd/sub")
    message = inroot.describe(caught.value, "/etc/passwd/sub")
    assert message == "/etc/passwd/sub: Not a directory"


def test_without_openat2_every_call_fails_closed(world: tuple[Path, Path, int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSYS (a kernel before 5.6) and an unknown architecture refuse; nothing falls back
    to a plain path join."""
    _, _, fd = world
    monkeypatch.setattr(inroot, "_NR_OPENAT2", 1_000_000)  # the kernel answers ENOSYS
    for call in (lambda: inroot.open_in_root(fd, "/etc/passwd", os.O_RDONLY),
                 lambda: inroot.mkdirs_in_root(fd, "/new"),
                 lambda: inroot.scoped_path(fd, "/etc/passwd")):
        with pytest.raises(inroot.InRootUnsupported) as caught:
            call()
        assert caught.value.errno == errno.ENOSYS
        assert "RESOLVE_IN_ROOT" in str(caught.value)
    monkeypatch.setattr(inroot, "_NR_OPENAT2", None)
    with pytest.raises(inroot.InRootUnsupported, match="no syscall number"):
        inroot.open_in_root(fd, "/etc/passwd", os.O_RDONLY)


def test_errors_are_one_line_and_name_the_path(world: tuple[Path, Path, int]) -> None:
    _, _, fd = world
    with pytest.raises(FileNotFoundError) as caught:
        inroot.open_in_root(fd, "/no/such", os.O_RDONLY)
    assert caught.value.filename == "/no/such"
    assert inroot.describe(caught.value, "/no/such") == "/no/such: No such file or directory"
    xdev = OSError(errno.EXDEV, "x")
    assert "leave the root" in inroot.describe(xdev, "/p")
    assert "\n" not in inroot.describe(OSError("two\nlines"), "/p")


def test_the_syscall_number_matches_the_machine() -> None:
    import platform

    machine = platform.machine()
    if machine in ("x86_64", "aarch64"):
        assert inroot._NR_OPENAT2 == 437
