"""`lamina build` on real containers: every instruction, the cache, multi-stage, refusals,
history and the build's events. One temporary root for the module, busybox imported once."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from core.build import USING_CACHE
from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_tar, leftovers

EVERYTHING = """\
# every instruction lamina builds
ARG BASE=busybox
FROM ${BASE} AS base
ARG WHO=world
ENV GREETING=hello \\
    EMPTY=""
LABEL org.example.title="a demo" version=1
RUN echo "$GREETING $WHO" > /greeting
RUN ["/bin/sh", "-c", "echo exec-form > /exec"]
COPY --chown=nobody:nogroup app.txt /app/
ADD bundle.tar /opt/
WORKDIR /app
USER nobody
EXPOSE 8080 53/udp
VOLUME ["/data"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $GREETING from $(pwd) as $(id -u): $(cat /greeting)"]
"""

HISTORY = [
    "/bin/sh -c #(nop)  ARG WHO=world",
    '/bin/sh -c #(nop)  ENV GREETING=hello EMPTY=',
    "/bin/sh -c #(nop)  LABEL org.example.title=a demo version=1",
    '|1 WHO=world /bin/sh -c echo "$GREETING $WHO" > /greeting',
    "|1 WHO=world /bin/sh -c echo exec-form > /exec",
    "/bin/sh -c #(nop) COPY file:* in /app/ ",
    "/bin/sh -c #(nop) ADD file:* in /opt/ ",
    "/bin/sh -c #(nop) WORKDIR /app",
    "/bin/sh -c #(nop)  USER nobody",
    "/bin/sh -c #(nop)  EXPOSE 8080 53/udp",
    "/bin/sh -c #(nop)  VOLUME [/data]",
    '/bin/sh -c #(nop)  ENTRYPOINT ["/bin/sh" "-c"]',
    '/bin/sh -c #(nop)  CMD ["echo $GREETING from $(pwd) as $(id -u): $(cat /greeting)"]',
]


@pytest.fixture(scope="module")
def lamina(tmp_path_factory) -> Lamina:
    require_root()
    base = tmp_path_factory.mktemp("build")
    lam = Lamina(base / "root")
    lam.ok("import", str(busybox_tar(base)), "busybox")
    yield lam
    ids = lam.container_ids()
    for cid in ids:
        lam("rm", "-f", cid)
    assert ids == [], "a build left a container behind"
    assert leftovers(lam.root, ids) == []


def write_context(path: Path, dockerfile: str, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def bundle(path: Path) -> None:
    """A local tar ADD extracts: one file owned 7:8, one directory."""
    with tarfile.open(path, "w") as tar:
        data = b"from the tar\n"
        info = tarfile.TarInfo("bundle/inside.txt")
        info.size, info.uid, info.gid, info.mode = len(data), 7, 8, 0o604
        tar.addfile(info, io.BytesIO(data))


def steps(out: str) -> list[str]:
    return [line for line in out.splitlines()
            if line.startswith(" ---> ") and line != USING_CACHE]


def image_of(out: str) -> str:
    return [line for line in out.splitlines() if line.startswith("Successfully built ")][0] \
        .split()[-1]


@pytest.fixture(scope="module")
def everything(lamina: Lamina, tmp_path_factory) -> tuple[Path, str]:
    ctx = write_context(tmp_path_factory.mktemp("ctx"), EVERYTHING,
                        {"app.txt": "app data\n", "secret.key": "do not copy\n",
                         ".dockerignore": "secret.key\n*.log\n"})
    bundle(ctx / "bundle.tar")
    out = lamina.ok("build", "-t", "every:1", str(ctx))
    return ctx, out


def test_every_instruction_and_run_honours_the_config(lamina: Lamina, everything) -> None:
    _, out = everything
    assert "Step 1/14 : FROM ${BASE} AS base" in out
    assert len(steps(out)) == 14
    assert not any("CACHED" in s for s in steps(out)[1:])
    ran = lamina("run", "--rm", "every:1")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "hello from /app as 65534: hello world"
    assert lamina.ok("run", "--rm", "every:1", "cat /exec; cat /opt/bundle/inside.txt") == \
        "exec-form\nfrom the tar\n"
    owners = lamina.ok("run", "--rm", "every:1",
                       "stat -c '%u:%g %a %n' /app/app.txt /opt/bundle/inside.txt")
    assert owners.splitlines() == ["65534:65534 644 /app/app.txt",
                                   "7:8 604 /opt/bundle/inside.txt"]
    assert lamina("run", "--rm", "every:1", "test -e /app/secret.key").returncode == 1
    config = json.loads(lamina.ok("inspect", "every:1"))[0]["Config"]
    assert config["Labels"] == {"org.example.title": "a demo", "version": "1"}
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["User"] == "nobody" and config["WorkingDir"] == "/app"
    assert "GREETING=hello" in config["Env"]


def test_history_matches_the_dockerfile_step_by_step(lamina: Lamina, everything) -> None:
    import re

    rows = [json.loads(line) for line in
            lamina.ok("history", "--format", "json", "every:1").splitlines()]
    created_by = [r["CreatedBy"] for r in reversed(rows)][1:]  # below: busybox's import
    assert len(created_by) == len(HISTORY)
    for got, want in zip(created_by, HISTORY, strict=True):
        assert re.fullmatch(re.escape(want).replace(r"\*", "[0-9a-f]{64}"), got), (got, want)
    config = json.loads(lamina.ok("inspect", "every:1"))[0]
    sizes = {r["CreatedBy"]: r["Size"] for r in rows}
    assert sizes["/bin/sh -c #(nop) WORKDIR /app"] == 0
    intermediates = [json.loads(x) for x in
                     lamina.ok("images", "-a", "--format", "json").splitlines()]
    assert sum(1 for i in intermediates if i["intermediate"]) >= len(HISTORY) - 1
    assert config["Id"].startswith("sha256:")


def test_a_rebuild_hits_the_cache_for_every_step(lamina: Lamina, everything) -> None:
    ctx, first = everything
    created = len(lamina.events("type=ContainerCreated"))
    again = lamina.ok("build", "-t", "every:1", str(ctx))
    assert image_of(again) == image_of(first)
    assert all(" ---> CACHED " in s for s in steps(again)[1:]), again
    assert len(lamina.events("type=ContainerCreated")) == created  # nothing ran or copied


def test_changing_one_copied_file_invalidates_from_that_step_on(lamina: Lamina,
                                                                tmp_path) -> None:
    dockerfile = ("FROM busybox\nENV A=1\nCOPY one.txt /one\nRUN cat /one > /two\n"
                  "COPY two.txt /two.txt\n")
    ctx = write_context(tmp_path / "ctx", dockerfile, {"one.txt": "1\n", "two.txt": "2\n"})
    lamina.ok("build", "-t", "inval", str(ctx))
    (ctx / "two.txt").write_text("changed\n")
    out = lamina.ok("build", "-t", "inval", str(ctx))
    marks = ["CACHED" in s for s in steps(out)[1:]]
    assert marks == [True, True, True, False], out
    (ctx / "one.txt").write_text("changed too\n")
    os.utime(ctx / "two.txt", (0, 0))  # an mtime alone changes nothing
    out = lamina.ok("build", "-t", "inval", str(ctx))
    assert ["CACHED" in s for s in steps(out)[1:]] == [True, False, False, False], out
    assert lamina.ok("run", "--rm", "inval", "cat", "/two", "/two.txt") == \
        "changed too\nchanged\n"
    out = lamina.ok("build", "--no-cache", "-t", "inval", str(ctx))
    assert not any("CACHED" in s for s in steps(out))


def test_multi_stage_copies_from_an_earlier_stage_and_target_stops(lamina: Lamina,
                                                                   tmp_path) -> None:
    dockerfile = ("FROM busybox AS builder\nARG FLAVOUR=plain\n"
                  "RUN mkdir /out && echo \"made $FLAVOUR\" > /out/artifact\n"
                  "FROM scratch\nCOPY --from=builder /out/ /\n"
                  "COPY --from=busybox /bin/busybox /bin/busybox\n"
                  'CMD ["/bin/busybox", "cat", "/artifact"]\n')
    ctx = write_context(tmp_path / "ctx", dockerfile, {})
    out = lamina.ok("build", "-t", "multi", "--build-arg", "FLAVOUR=spicy", str(ctx))
    assert lamina.ok("run", "--rm", "multi").strip() == "made spicy"
    rows = lamina.ok("history", "--format", "json", "multi").splitlines()
    assert len(rows) == 3  # scratch adds nothing of its own
    out = lamina.ok("build", "--target", "builder", "-t", "stage1", str(ctx))
    assert "Step 3/3 :" in out and "Step 4" not in out


def test_a_failing_step_leaves_no_container_and_keeps_earlier_images(lamina: Lamina,
                                                                     tmp_path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nENV X=1\nRUN echo partial; exit 3\n",
                        {})
    before = lamina.container_ids()
    out = lamina("build", "-t", "broken", str(ctx))
    assert out.returncode == 1
    assert "partial" in out.stdout
    assert out.stderr.strip() == ("lamina: error: The command '/bin/sh -c echo partial; exit 3'"
                                  " returned a non-zero code: 3")
    assert lamina.container_ids() == before
    env_step = [line for line in out.stdout.splitlines() if line.startswith(" ---> ")][1]
    assert lamina("inspect", env_step.split()[1]).returncode == 0
    failed = lamina.events("type=BuildFailed")
    assert failed[-1]["data"]["step"] == 3
    assert failed[-1]["data"]["instruction"] == "RUN echo partial; exit 3"


BAD_BUILDS = [
    ("FROM busybox\nFROB x\n", {}, "lamina: error: Dockerfile:2: unknown instruction: FROB"),
    ("FROM nosuchimage\n", {}, "lamina: error: Dockerfile:1: no such image: nosuchimage"),
    ("FROM busybox\nCOPY ../outside /x\n", {},
     "lamina: error: Dockerfile:2: forbidden path outside the build context: ../outside"),
    ("FROM busybox\nCOPY link /x\n", {"symlink": "link"},
     "lamina: error: Dockerfile:2: forbidden path outside the build context: link"),
    ("FROM busybox\nCOPY missing /x\n", {},
     "lamina: error: Dockerfile:2: file not found in build context"),
    ("FROM busybox\nCOPY ignored.txt /x\n", {"ignored": "ignored.txt"},
     "lamina: error: Dockerfile:2: file not found in build context or excluded"),
    ("FROM busybox\nADD https://example.com/a.tgz /x\n", {},
     "lamina: error: Dockerfile:2: ADD from a remote URL is not supported"),
]


@pytest.mark.parametrize(("dockerfile", "extra", "message"), BAD_BUILDS)
def test_refusals_are_one_line_and_leave_nothing(lamina: Lamina, tmp_path, dockerfile,
                                                 extra, message) -> None:
    ctx = write_context(tmp_path / "ctx", dockerfile, {})
    if "symlink" in extra:
        os.symlink("/etc/hostname", ctx / extra["symlink"])
    if "ignored" in extra:
        (ctx / extra["ignored"]).write_text("x")
        (ctx / ".dockerignore").write_text("ignored.*\n")
    before = lamina.container_ids()
    out = lamina("build", "-t", "refused", str(ctx))
    assert out.returncode != 0
    assert out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert lamina.container_ids() == before


def test_the_log_has_the_build_events(lamina: Lamina, everything, tmp_path) -> None:
    refused = write_context(tmp_path / "refused", "FROM busybox\nNOPE\n", {})
    assert lamina("build", str(refused)).returncode == 1
    builds: dict[str, list[dict]] = {}
    every = lamina.events()
    for rec in every:
        if rec["stream"].startswith("build:"):
            builds.setdefault(rec["stream"], []).append(rec)
    first = next(recs for recs in builds.values()
                 if any(r["type"] == "BuildFinished" and r["data"]["tags"] == ["every:1"]
                        for r in recs))
    first.sort(key=lambda r: r["seq"])
    assert first[0]["type"] == "BuildStarted" and first[0]["data"]["steps"] == 14
    done = [r["data"] for r in first if r["type"] == "StepCompleted"]
    assert [d["step"] for d in done] == list(range(1, 15))
    assert done[4]["instruction"] == 'RUN echo "$GREETING $WHO" > /greeting'
    assert first[-1]["type"] == "BuildFinished"
    assert first[-1]["data"]["image"] == done[-1]["image"]
    rejected = [r for r in every
                if r["type"] == "CommandRejected" and r["data"]["command"] == "build"]
    assert rejected, "a refused build is recorded"
