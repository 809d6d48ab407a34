"""The CLI as a user meets it: real processes, exit codes, one-line errors, nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import served_now
from tests.sessions import session

pytestmark = pytest.mark.usefixtures("root_required")  # the CLI is root's only

LAMINA = str(Path(sys.executable).with_name("lamina"))


def lamina(root: Path | str, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([LAMINA, "--root", str(root), *argv], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    session(str(tmp_path))
    return tmp_path


def test_version_and_help() -> None:
    out = subprocess.run([LAMINA, "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("lamina 0.1.0")
    out = subprocess.run([LAMINA, "--help"], capture_output=True, text=True, check=True)
    for command in ("events", "audit", "replay", "version"):
        assert command in out.stdout


def test_queries_on_an_empty_root_create_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    for argv in (["events"], ["ps", "-a"], ["images"], ["replay", "--at", "0"]):
        assert lamina(empty, *argv).returncode == 0
    assert not empty.exists()


def test_events_json_is_one_object_per_line(root: Path) -> None:
    out = lamina(root, "events", "--format", "json")
    assert out.returncode == 0
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["seq"] for r in lines] == list(range(1, len(lines) + 1))
    types = [r["type"] for r in lines]
    assert types[:4] == ["LayerRegistered", "ImageCreated", "ImageTagged", "ContainerCreated"]
    rejected = [r for r in lines if r["type"] == "CommandRejected"]
    assert len(rejected) == 1
    assert rejected[0]["data"]["command"] == "start"
    assert "paused" in rejected[0]["data"]["reason"]
    assert all({"uid", "user", "command_id"} <= r["meta"].keys() for r in lines)


def _types(root: Path, *filters: str) -> list[str]:
    argv = ["events", "--format", "json"]
    for f in filters:
        argv += ["--filter", f]
    out = lamina(root, *argv)
    assert out.returncode == 0, out.stderr
    return [json.loads(line)["type"] for line in out.stdout.splitlines()]


def test_event_filters(root: Path) -> None:
    web = _types(root, "container=web")
    assert web == ["ContainerCreated", "ContainerStarted", "ContainerPaused", "CommandRejected",
                   "ContainerUnpaused", "ContainerCommitted", "ContainerStopped"]
    cid = json.loads(lamina(root, "ps", "-a", "--format", "json").stdout.splitlines()[0])["id"]
    assert _types(root, f"container={cid[:8]}")[0] == "ContainerCreated"
    assert _types(root, "type=ContainerStarted") == ["ContainerStarted"]
    assert set(_types(root, "type=image")) == {"ImageCreated", "ImageTagged"}
    assert _types(root, "image=web:v1") == ["ImageCreated", "ImageTagged"]
    assert len(_types(root, "user=root")) == len(_types(root))
    assert _types(root, "user=nobody") == []
    assert _types(root, "type=container", "container=db") == ["ContainerCreated"]


def test_since_and_until(root: Path) -> None:
    assert lamina(root, "events", "--since", "2999-01-01T00:00:00Z").stdout == ""
    assert lamina(root, "events", "--until", "2000-01-01").stdout == ""
    assert len(lamina(root, "events", "--since", "1h").stdout.splitlines()) == len(_types(root))


def test_audit_verify_passes_then_catches_tampering(root: Path) -> None:
    ok = lamina(root, "audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    con = sqlite3.connect(root / "events.db")
    con.executescript("DROP TRIGGER events_no_update;"
                      "UPDATE events SET meta = replace(meta, 'root', 'mallory') WHERE seq = 6;")
    con.close()
    bad = lamina(root, "audit", "verify")
    assert bad.returncode == 1
    assert "hash chain broken at seq 6" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_replay_rebuilds_and_time_travels(root: Path) -> None:
    out = lamina(root, "replay")
    assert out.returncode == 0
    assert "2 containers, 2 images, 2 layers" in out.stdout
    then = json.loads(lamina(root, "replay", "--at", "5", "--format", "json").stdout)
    assert [c["state"] for c in then["containers"]] == ["running"]
    assert len(then["images"]) == 1
    now = json.loads(lamina(root, "replay", "--at", "2999-01-01T00:00:00Z", "--format",
                            "json").stdout)
    assert sorted(c["name"] for c in now["containers"]) == ["db", "web"]
    assert lamina(root, "replay", "--snapshot").stdout.startswith("snapshot taken at seq")
    text = lamina(root, "replay", "--at", "5").stdout
    assert "running" in text and "busybox:latest" in text


def test_ps_and_images(root: Path) -> None:
    ps = lamina(root, "ps", "-a").stdout
    assert "web" in ps and "stopped (143)" in ps and "db" in ps
    assert "web" not in lamina(root, "ps").stdout
    images = lamina(root, "images").stdout
    assert "busybox" in images and "web" in images and "v1" in images


def _one_line_error(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("lamina: error: ")
    for needle in needles:
        assert needle in lines[0]


def test_bad_filters_and_times(root: Path) -> None:
    _one_line_error(lamina(root, "events", "--filter", "colour=red"), "invalid filter key")
    _one_line_error(lamina(root, "events", "--filter", "oops"), "invalid filter")
    _one_line_error(lamina(root, "events", "--since", "yesterday-ish"), "invalid time")


def _snapshot(root: Path) -> dict[str, bytes]:
    """The root's files, but a fork server's (a served pass starts one): its own,
    and SQLite's -wal and -shm, which come and go with the connection its spare opens
    ahead of the next command (bootstrap.prepare)."""
    from adapters.fastpath.client import CLI_LOCK, SERVER_LOG, START_LOCK

    server = {CLI_LOCK, SERVER_LOG, START_LOCK}
    if served_now():
        server |= {"events.db-wal", "events.db-shm"}
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and
            p.name not in server}


def test_newer_schema_corrupt_and_locked_logs(root: Path, tmp_path_factory) -> None:
    newer = tmp_path_factory.mktemp("newer")
    shutil.copy(root / "events.db", newer / "events.db")
    con = sqlite3.connect(newer / "events.db")
    con.execute("PRAGMA user_version = 7")
    con.close()
    before = _snapshot(newer)
    _one_line_error(lamina(newer, "replay"), "newer lamina")
    _one_line_error(lamina(newer, "events"), "newer lamina")
    assert _snapshot(newer) == before

    corrupt = tmp_path_factory.mktemp("corrupt")
    (corrupt / "events.db").write_bytes(b"\x00garbage" * 512)
    before = _snapshot(corrupt)
    _one_line_error(lamina(corrupt, "events"), "not a lamina event log")
    _one_line_error(lamina(corrupt, "replay"), "not a lamina event log")
    assert _snapshot(corrupt) == before

    blocker = sqlite3.connect(root / "events.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        out = lamina(root, "replay", env={"LAMINA_BUSY_TIMEOUT": "0.3"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    _one_line_error(out, "locked")
    assert lamina(root, "audit", "verify").returncode == 0


def test_a_root_that_is_not_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(lamina(blocker / "root", "replay"), "cannot create root directory")
    _one_line_error(lamina(blocker, "replay"), "not a directory")
    assert blocker.read_text() == "x"


def test_a_read_only_root(root: Path) -> None:
    """A root on a read-only mount, in a private mount namespace that dies with the command."""
    from tests.conftest import require_root

    require_root()
    before = _snapshot(root)
    script = (f"mount --make-rprivate / && mount --bind -o ro {root} {root} && "
              f"exec {LAMINA} --root {root} replay --snapshot")
    out = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                         text=True, timeout=60)
    _one_line_error(out, "not writable")
    assert _snapshot(root) == before


def test_structured_logs_as_json(root: Path) -> None:
    out = lamina(root, "--log-format", "json", "--log-level", "info", "replay", "--snapshot")
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert {"event": "snapshot", "level": "info"}.items() <= lines[0].items()
    assert lines[-1]["event"] == "command" and lines[-1]["exit_code"] == 0
    quiet = lamina(root, "replay", "--snapshot")
    assert quiet.stderr == ""


def test_an_image_filter_finds_its_pulls_and_pushes(tmp_path: Path) -> None:
    """ImagePulled and Pushed live in the `registry:<image id>` stream: `--filter image=`
    must show them with the image's own events."""
    from adapters.eventstore.sqlite_log import SqliteEventLog
    from events import types as ev

    iid = "ab" * 32
    log = SqliteEventLog(str(tmp_path), create=True)
    log.append([ev.ImagePulled(id=iid, reference="localhost:5000/x:1")], expected={},
               meta={})
    log.append([ev.ImagePulled(id="cd" * 32, reference="localhost:5000/y:1")], expected={},
               meta={})
    log.close()
    assert _types(tmp_path, f"image={iid[:12]}") == ["ImagePulled"]
    assert _types(tmp_path, f"image={iid}") == ["ImagePulled"]


def _registered(module: object) -> set[str]:
    """The command words `module.register` adds to a parser of its own."""
    import argparse

    from adapters.cli.common import add_format

    sub = argparse.ArgumentParser().add_subparsers()
    module.register(sub, add_format)  # type: ignore[attr-defined]
    return set(sub.choices)


def test_the_command_table_is_what_each_verb_group_registers() -> None:
    """Each module's COMMANDS is the table (which words exist, who parses them), so it must
    be exactly what its register() adds, and no word may belong to two modules."""
    from adapters.cli import app

    for module in app.MODULES:
        assert _registered(module) == set(module.COMMANDS), module.__name__
    words = [w for module in app.MODULES for w in module.COMMANDS]
    assert len(words) == len(set(words)) == len(app.OWNER)


def test_a_command_builds_only_its_own_parser() -> None:
    """The fast start: `lamina pause` builds pause's parser and no other; no command word,
    or an unknown one, builds them all (argparse then names every choice)."""
    from adapters.cli import app

    def commands(argv: list[str]) -> set[str]:
        import argparse

        parser = app.build_parser(argv)
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return set(sub.choices)

    for word in app.OWNER:
        assert commands(["--root", "/r", word, "x"]) == {word}
    assert commands(["nonsense"]) == commands([]) == set(app.OWNER)
