"""The isolation probe suite (tests/probes/probe.c) in real containers: every probe, in the
default, `--network host` and `--privileged` modes, as root and as `-u 65534`, plus the
`--device` run, against what tests/probes/expected.py says lamina must report.

The host holds what a hostile container would go after: a loop device holding a marker, a key
with the same marker in host root's user keyring, another running container. A failure prints
the table of every probe that differs (expected, measured), not just the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.remap_env import configure, subid_prefix
from tests.kernel.runtime_env import Lamina, leftovers
from tests.probes import (
    ProbeError,
    Suite,
    key_in_user_keyring,
    loop_attached,
    parse,
    remapped,
    suite,
)
from tests.probes.expected import ALL_CELLS, DEVICE_RUN, PROBES, Cell, mismatches
from tests.probes.table import BEGIN, END, splice

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """The suite's image, loop device, host key and other container, for the module; then
    everything removed and the host checked: loop detached, key gone, nothing left of the
    containers (mounts, cgroups, processes)."""
    require_root()
    workdir = tmp_path_factory.mktemp("probes")
    ids: list[str] = []
    with suite(workdir) as s:
        yield s
        ids = s.container_ids()
        backing, key = s.loop.backing, s.key.description
    assert ids, "no container was created"
    assert not loop_attached(backing), "the loop device is still attached"
    assert not key_in_user_keyring(key), "the host key is still in root's user keyring"
    assert leftovers(s.lamina.root, ids) == []


@pytest.fixture(scope="module")
def remapped_probes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """The same suite on a --userns-remap root (users and ids in a test prefix)."""
    require_root()
    workdir = tmp_path_factory.mktemp("probes-remapped")
    root = workdir / "root"
    configure(Lamina(root), subid_prefix(workdir / "prefix"))
    ids: list[str] = []
    with suite(workdir, root) as s:
        yield s
        ids = s.container_ids()
        backing, key = s.loop.backing, s.key.description
    assert not loop_attached(backing), "the loop device is still attached"
    assert not key_in_user_keyring(key), "the host key is still in root's user keyring"
    assert leftovers(root, ids) == []


def table(cell: Cell, rows: list[tuple[str, str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'probe'.ljust(width)}  {'expected':<28}  measured",
             *(f"{name.ljust(width)}  {want:<28}  {got}" for name, want, got in rows)]
    return f"{cell[0]} / {cell[1]}: {len(rows)} probe(s) differ\n" + "\n".join(lines)


@pytest.mark.parametrize("cell", ALL_CELLS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_probes(probes: Suite, cell: Cell) -> None:
    try:
        lines = probes.run(*cell)
    except ProbeError as err:
        pytest.fail(str(err))
    rows = mismatches(cell, lines)
    assert not rows, table(cell, rows)


def test_device_given_read_only(probes: Suite) -> None:
    """`--device /dev/loopN:/dev/probe-disk:r`: the marker is read, writing is refused."""
    try:
        lines = probes.run_device()
    except ProbeError as err:
        pytest.fail(str(err))
    rows = mismatches(DEVICE_RUN, lines)
    assert not rows, table(DEVICE_RUN, rows)
    assert str(lines["device_read"]) == "allowed marker"


@pytest.mark.parametrize("cell", remapped.CELLS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_probes_on_a_remapped_root(remapped_probes: Suite, cell: Cell) -> None:
    """Every probe in a container whose root is a subordinate uid: as on a plain root but
    for tests/probes/remapped.py's differences (never a weaker outcome)."""
    try:
        lines = remapped_probes.run(*cell)
    except ProbeError as err:
        pytest.fail(str(err))
    rows = remapped.mismatches(cell, lines)
    assert not rows, table(cell, rows)


def test_the_remapped_device_run_and_keyring(remapped_probes: Suite) -> None:
    """The --device run (the host node's own permissions apply), and the keyring probes
    without the seccomp filter: host root's key is not found, since the container's root
    is not uid 0 to the kernel."""
    try:
        device = remapped_probes.run_device()
        keys = remapped_probes.run("default", "root", remapped.UNCONFINED,
                                   tuple(remapped.KEYRING))
    except ProbeError as err:
        pytest.fail(str(err))
    rows = remapped.mismatches(DEVICE_RUN, device)
    assert not rows, table(DEVICE_RUN, rows)
    rows = remapped.keyring_mismatches(keys)
    assert not rows, table(("seccomp=unconfined", "root"), rows)


def test_every_probe_has_an_expectation(probes: Suite) -> None:
    """probe.c and expected.py name the same probes, in the same order."""
    import subprocess

    listed = subprocess.run([str(probes.workdir / "probe"), "--list"], check=True,
                            capture_output=True, text=True).stdout.split()
    assert listed == [p.name for p in PROBES]


def test_parse_refuses_what_is_not_the_format() -> None:
    assert str(parse("mount\tblocked\tEPERM\n")["mount"]) == "blocked EPERM"
    for bad in ("mount blocked EPERM", "mount\tmaybe\tEPERM", "a\tinfo\t1\na\tinfo\t2"):
        with pytest.raises(ProbeError):
            parse(bad)


def test_the_targets_are_really_there(probes: Suite) -> None:
    """The host holds what the probes must not reach (the marker on the loop device, the
    key, the other container's freezer.state): else a probe that finds nothing would prove
    nothing."""
    with open(probes.loop.path, "rb") as f:
        assert f.read(len(probes.marker)) == probes.marker.encode()
    assert key_in_user_keyring(probes.key.description)
    if Path("/sys/fs/cgroup/freezer").is_dir():
        other = Path(f"/sys/fs/cgroup/freezer/lamina/{probes.other}/freezer.state")
        assert other.read_text().strip() == "THAWED"


def test_the_doc_holds_the_generated_table() -> None:
    """docs/security.md carries the table between its markers, with every probe: a probe
    added without regenerating the doc (python -m tests.probes.table --update) fails here."""
    doc = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    assert doc.count(BEGIN) == 1 and doc.count(END) == 1
    once = splice(doc, "TABLE\n")
    assert splice(once, "TABLE\n") == once and "TABLE" in once
    assert [p.name for p in PROBES if f"`{p.name}`" not in doc] == []
