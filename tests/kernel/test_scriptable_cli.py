"""The scriptable CLI on a real root: ps/images -q and --format, inspect -f, network/volume
ls --format, events --format (docker's Go templates, adapters/cli/templates.py), and the same
templates through `lamina serve`'s fork server giving the same output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def lam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    """A root with three containers on --network none: web (running, labelled, a named
    volume), idle (created), done (exited 3)."""
    require_root()
    for lamina in busybox_lamina(tmp_path_factory.mktemp("scriptable")):
        lamina.ok("volume", "create", "data")
        lamina.ok("run", "-d", "--network", "none", "--name", "web", "--label", "app=shop",
                  "--label", "com.example.app-name=front", "-v", "data:/data", "busybox",
                  "sleep", "300")
        lamina.ok("create", "--network", "none", "--name", "idle", "busybox", "true")
        lamina("run", "--network", "none", "--name", "done", "busybox", "sh", "-c", "exit 3")
        yield lamina


def ids(lam: Lamina) -> dict[str, str]:
    return {json.loads(line)["name"]: json.loads(line)["id"]
            for line in lam.ok("ps", "-a", "--format", "json").splitlines()}


def test_ps_quiet_lists_ids_short_or_whole(lam: Lamina) -> None:
    full = ids(lam)
    assert lam.ok("ps", "-q").split() == [full["web"][:12]]
    assert lam.ok("ps", "-aq").split() == [full[n][:12] for n in ("web", "idle", "done")]
    assert lam.ok("ps", "-aq", "--no-trunc").split() == [full[n] for n in
                                                          ("web", "idle", "done")]
    out = lam("ps", "-q", "--format", "{{.Names}}")
    assert out.stdout.split() == [full["web"][:12]]
    assert out.stderr == ("WARNING: Ignoring custom format, because both --format and "
                          "--quiet are set.\n")


def test_ps_format_fields_are_dockers(lam: Lamina) -> None:
    full = ids(lam)
    assert lam.ok("ps", "--format", "{{.Names}}") == "web\n"
    assert lam.ok("ps", "-a", "--format", "{{.Names}} {{.State}}") == \
        "web running\nidle created\ndone exited\n"
    status = lam.ok("ps", "-a", "--format", "{{.Status}}").splitlines()
    assert status[0].startswith("Up ") and status[1] == "Created"
    assert status[2].startswith("Exited (3) ") and status[2].endswith(" ago")
    line = lam.ok("ps", "--format", '{{.ID}}|{{.Image}}|{{.Command}}|{{.Label "app"}}|'
                                    "{{.Labels}}|{{.Mounts}}|{{.LocalVolumes}}|{{.Networks}}|"
                                    "{{.Ports}}")
    assert line == (f'{full["web"][:12]}|busybox|"sleep 300"|shop|'
                    "app=shop,com.example.app-name=front|data|1|none|\n")
    assert lam.ok("ps", "--no-trunc", "--format", "{{.ID}}") == full["web"] + "\n"
    created = lam.ok("ps", "--format", "{{.CreatedAt}}|{{.RunningFor}}").strip()
    at, ago = created.split("|")
    assert len(at.split()) == 4 and at.split()[1].count(":") == 2 and ago.endswith(" ago")
    size = lam.ok("ps", "--format", "{{.Size}}").strip()
    assert size.endswith("MB)") and "(virtual " in size


def test_ps_json_template_and_table_heads(lam: Lamina) -> None:
    row = json.loads(lam.ok("ps", "--format", "{{json .}}"))
    assert sorted(row) == ["Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes",
                           "Mounts", "Names", "Networks", "Ports", "RunningFor", "Size",
                           "State", "Status"]
    assert (row["Names"], row["State"], row["Image"]) == ("web", "running", "busybox")
    table = lam.ok("ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.State}}")
    lines = table.splitlines()
    assert lines[0] == "CONTAINER ID   NAMES     STATE"
    assert [line.split() [1:] for line in lines[1:]] == \
        [["web", "running"], ["idle", "created"], ["done", "exited"]]
    assert all(line[15:25].rstrip() in ("web", "idle", "done") for line in lines[1:])
    heads = lam.ok("ps", "--format", 'table {{.Names}}\t{{.Label "com.example.app-name"}}')
    assert heads.splitlines() == ["NAMES     app name", "web       front"]


def test_ps_filters_and_limits(lam: Lamina) -> None:
    full = ids(lam)
    assert lam.ok("ps", "-aq", "--filter", "status=exited") == full["done"][:12] + "\n"
    assert lam.ok("ps", "-q", "--filter", "label=app=shop") == full["web"][:12] + "\n"
    assert lam.ok("ps", "-a", "--filter", "name=^d", "--format", "{{.Names}}") == "done\n"
    assert lam.ok("ps", "-l", "--format", "{{.Names}}") == "done\n"
    assert lam.ok("ps", "-n", "2", "--format", "{{.Names}}") == "idle\ndone\n"
    bad = lam("ps", "--filter", "colour=red")
    assert (bad.returncode, bad.stderr) == (1, "lamina: error: invalid filter 'colour'\n")


def test_images_quiet_format_and_filters(lam: Lamina) -> None:
    image = lam.ok("inspect", "-f", "{{.Id}}", "busybox").strip()
    assert lam.ok("images", "-q") == image[7:19] + "\n"
    assert lam.ok("images", "-q", "--no-trunc") == image + "\n"
    assert lam.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Digest}}") == \
        f"busybox:latest {image[7:19]} <none>\n"
    row = json.loads(lam.ok("images", "--format", "{{json .}}"))
    assert row["Repository"] == "busybox" and row["Size"].endswith("MB")
    assert row["CreatedSince"].endswith(" ago")
    table = lam.ok("images", "--format", "table {{.Repository}}\\t{{.Tag}}\\t{{.Size}}")
    assert table.splitlines()[0] == "REPOSITORY   TAG       SIZE"
    assert lam.ok("images", "-q", "--filter", "reference=busy*") == image[7:19] + "\n"
    assert lam.ok("images", "-q", "--filter", "dangling=true") == ""
    assert lam("images", "--filter", "until=1h").stderr == \
        "lamina: error: invalid filter 'until'\n"


def test_inspect_format_on_containers_and_images(lam: Lamina) -> None:
    full = ids(lam)
    assert lam.ok("inspect", "-f", "{{.Name}} {{.State.Status}}", "web", "done") == \
        "/web running\n/done stopped\n"
    assert lam.ok("inspect", "--format", "{{.Id}}", "web") == full["web"] + "\n"
    assert lam.ok("inspect", "-f", '{{index .Config.Labels "app"}}', "web") == "shop\n"
    assert json.loads(lam.ok("inspect", "-f", "{{json .Config.Labels}}", "web")) == \
        {"app": "shop", "com.example.app-name": "front"}
    assert lam.ok("inspect", "-f", "{{range .Mounts}}{{.Name}}:{{.Destination}}{{end}}",
                  "web") == "data:/data\n"
    assert lam.ok("inspect", "-f", "{{if .State.Running}}up{{else}}down{{end}}", "web",
                  "idle") == "up\ndown\n"
    assert lam.ok("inspect", "-f", "{{.State.ExitCode}}", "done") == "3\n"
    assert lam.ok("inspect", "-f", "{{.Config.Cmd}} {{join .Config.Cmd \",\"}}", "done") == \
        "[sh -c exit 3] sh,-c,exit 3\n"
    assert lam.ok("inspect", "-f", "{{.Os}}/{{.Architecture}} {{len .RootFS.Layers}}",
                  "busybox") == "linux/amd64 1\n"
    doc = json.loads(lam.ok("inspect", "-f", "json", "web"))
    assert doc["Id"] == full["web"]
    assert lam.ok("inspect", "-f", "{{.Nope}}", "web") == "<no value>\n"


def test_template_errors_are_one_line_and_exit_1(lam: Lamina) -> None:
    for argv, message in [
        (("ps", "--format", "{{.Nope}}"),
         'template parsing error: template: :1:2: executing "" at <.Nope>: can\'t evaluate '
         "field Nope in type *formatter.ContainerContext"),
        (("images", "--format", "{{.ID"), "template parsing error: template: :1: unclosed "
                                          "action"),
        (("inspect", "-f", "{{nope .Id}}", "web"),
         'template parsing error: template: :1: function "nope" not defined'),
        (("volume", "ls", "--format", "{{if .Name}}"),
         "template parsing error: template: :1: unexpected EOF"),
    ]:
        out = lam(*argv)
        assert (out.returncode, out.stdout, out.stderr) == (1, "", f"lamina: error: {message}\n")


def test_network_volume_and_event_templates(lam: Lamina) -> None:
    assert lam.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}",
                  "--filter", "name=none") == "none null\n"
    table = lam.ok("network", "ls", "--format", "table {{.Name}}\\t{{.Scope}}")
    assert table.splitlines()[0] == "NAME      SCOPE"
    mountpoint = str(lam.root / "volumes" / "data" / "_data")
    assert lam.ok("volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Mountpoint}}") == \
        f"data local {mountpoint}\n"
    assert lam.ok("volume", "inspect", "-f", "{{.Mountpoint}}", "data") == mountpoint + "\n"
    assert lam.ok("network", "inspect", "-f", "{{.Name}} {{.Driver}}", "none") == \
        "none null\n"
    events = lam.ok("events", "--filter", "container=done", "--format",
                    "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}").splitlines()
    assert events[:2] == ["container create done", "container start done"]
    assert "container die done" in events


TEMPLATES = [
    ("ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.State}}\\t{{.Networks}}"),
    ("ps", "-aq"),
    ("ps", "--format", '{{.Names}} {{.Label "app"}} {{.Mounts}} {{.Command}}'),
    ("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}"),
    ("inspect", "-f", "{{.Name}} {{json .Config.Labels}} {{range .Mounts}}{{.Source}}{{end}}",
     "web"),
    ("volume", "ls", "--format", "{{json .}}"),
    ("network", "ls", "--format", "table {{.Name}}\\t{{.Driver}}"),
    ("ps", "--format", "{{.Nope}}"),
]


def test_the_fork_server_gives_the_same_output(lam: Lamina) -> None:
    direct = [lam("--no-server", *argv) for argv in TEMPLATES]  # in-process, even served
    with _served(lam):
        through = [lam(*argv) for argv in TEMPLATES]
    for argv, a, b in zip(TEMPLATES, direct, through, strict=True):
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), argv


class _served:
    """`lamina serve`'s fork server (python -m adapters.cli.served) up for the block, and
    the block's commands sent to it: without the in-process pass's LAMINA_NO_SERVER
    (tests/conftest.py), with which they would run in-process."""

    def __init__(self, lam: Lamina) -> None:
        self.lam = lam
        self.no_server: str | None = None

    def __enter__(self) -> None:
        from tests.servers import stop_servers_of

        stop_servers_of(str(self.lam.root))  # the one the commands started
        self.server = subprocess.Popen([sys.executable, "-m", "adapters.cli.served", "--root",
                                        str(self.lam.root)], stderr=subprocess.PIPE)
        sock = self.lam.root / "cli.sock"
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sock.exists(), "the fork server did not come up"
        self.no_server = os.environ.pop("LAMINA_NO_SERVER", None)

    def __exit__(self, *exc: object) -> None:
        if self.no_server is not None:
            os.environ["LAMINA_NO_SERVER"] = self.no_server
        self.server.send_signal(signal.SIGTERM)
        assert self.server.wait(10) == 0
