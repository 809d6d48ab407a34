"""core/build.py on the in-memory Engine: history wording, the cache, build args, failures and
events, with a host whose files are dicts and whose RUN writes one file (no kernel needed)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from core.build import USING_CACHE, BuildFailedError, build
from core.dockerfile import DockerfileError
from core.memory import memory_engine


class FakeSource:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def digest(self, sources: Sequence[str], chown: str, chmod: str, add: bool) -> str:
        body = "|".join(f"{s}={self.files[s]}" for s in sources) + f"|{chown}|{chmod}"
        kind = "file" if len(sources) == 1 else "multi"
        return f"{kind}:{hashlib.sha256(body.encode()).hexdigest()}"


class FakeHost:
    """Dockerfile and context from dicts; RUN records its argv as a file; `exit N` fails."""

    def __init__(self, engine, dockerfile: str, files: dict[str, str] | None = None) -> None:
        self.engine, self.dockerfile, self.files = engine, dockerfile, dict(files or {})
        self.ran: list[list[str]] = []

    def read_dockerfile(self, context_dir: str, dockerfile: str | None) -> tuple[str, str]:
        return dockerfile or "Dockerfile", self.dockerfile

    @contextmanager
    def context(self, context_dir: str) -> Iterator[FakeSource]:
        yield FakeSource(self.files)

    @contextmanager
    def image_root(self, image: str) -> Iterator[FakeSource]:
        files: dict[str, str] = {}
        for lid in self.engine.log.image(image).layers:
            files.update(self.engine.layers.layers[lid])
        yield FakeSource(files)

    def copy(self, source: FakeSource, container: str, sources: Sequence[str], dest: str,
             chown: str, chmod: str, add: bool) -> None:
        rw = self.engine.layers.rw[self.engine.container(container).rw_layer]
        for src in sources:
            rw[dest + src if dest.endswith("/") else dest] = source.files[src]

    def run(self, container: str, out) -> int:
        e = self.engine
        c = e.start(container)
        argv = list(c.cmd)
        self.ran.append(argv)
        out("ran " + argv[-1])  # no final newline: the builder adds one
        e.layers.rw[c.rw_layer]["/ran"] = " ".join(argv)
        code = int(argv[-1].split("exit ")[1]) if "exit " in argv[-1] else 0
        e.runtime.finish(container, code)
        e.exited(container, code)
        return code


def base_engine():
    e = memory_engine(user="test")
    e.import_image({"/bin/sh": "busybox"}, "busybox")
    return e


def do_build(e, host, **kw) -> tuple[str, str]:
    text: list[str] = []
    iid = build(e, host, "/ctx", out=text.append, **kw)
    return iid, "".join(text)


def history(e, iid: str) -> list[dict]:
    return e.log.image(iid).config["history"]


def events(e, type_: str) -> list[dict]:
    return [r.data for r in e.log.read() if r.type == type_]


DOCKERFILE = """\
FROM busybox
ARG WHO=world
ENV A=1 B="two words"
LABEL k=v
RUN echo $WHO
COPY app.txt /app/
WORKDIR app
USER nobody
EXPOSE 80
VOLUME /data
STOPSIGNAL SIGINT
SHELL ["/bin/ash", "-c"]
CMD echo hi
ENTRYPOINT ["/bin/sh"]
"""


def test_history_in_docker_wording_with_empty_layers_for_metadata() -> None:
    e = base_engine()
    host = FakeHost(e, DOCKERFILE, {"app.txt": "data"})
    iid, out = do_build(e, host, tags=["demo:1"])
    got = [(h["created_by"], bool(h.get("empty_layer"))) for h in history(e, iid)[1:]]
    digest = FakeSource({"app.txt": "data"}).digest(["app.txt"], "", "", False)
    assert got == [
        ("/bin/sh -c #(nop)  ARG WHO=world", True),
        ('/bin/sh -c #(nop)  ENV A=1 B=two words', True),
        ("/bin/sh -c #(nop)  LABEL k=v", True),
        ("|1 WHO=world /bin/sh -c echo $WHO", False),
        (f"/bin/sh -c #(nop) COPY {digest} in /app/ ", False),
        ("/bin/sh -c #(nop) WORKDIR /app", True),
        ("/bin/sh -c #(nop)  USER nobody", True),
        ("/bin/sh -c #(nop)  EXPOSE 80", True),
        ("/bin/sh -c #(nop)  VOLUME [/data]", True),
        ("/bin/sh -c #(nop)  STOPSIGNAL SIGINT", True),
        ("/bin/sh -c #(nop)  SHELL [/bin/ash -c]", True),
        ('/bin/sh -c #(nop)  CMD ["/bin/ash" "-c" "echo hi"]', True),
        ('/bin/sh -c #(nop)  ENTRYPOINT ["/bin/sh"]', True),
    ]
    config = e.log.image(iid).config["config"]
    assert config["Env"] == ["A=1", "B=two words"]
    assert config["WorkingDir"] == "/app" and config["User"] == "nobody"
    assert config["Cmd"] == ["/bin/ash", "-c", "echo hi"]  # set in this stage: kept
    assert config["Entrypoint"] == ["/bin/sh"]
    assert host.ran == [["/bin/sh", "-c", "echo $WHO"]]
    assert e.log.image_tagged("demo:1").id == iid
    assert "ran echo $WHO\n ---> " in out
    assert out.endswith(f"Successfully built {iid[:12]}\nSuccessfully tagged demo:1\n")
    assert e.log.containers() == []  # build containers are removed


def test_copy_flags_take_arg_and_env_values() -> None:
    e = base_engine()
    host = FakeHost(e, "FROM busybox\nARG UID=7\nCOPY --chown=$UID:8 app.txt /a\n",
                    {"app.txt": "x"})
    iid, _ = do_build(e, host)
    digest = FakeSource({"app.txt": "x"}).digest(["app.txt"], "7:8", "", False)
    assert history(e, iid)[-1]["created_by"] == f"/bin/sh -c #(nop) COPY {digest} in /a "


def test_an_entrypoint_clears_an_inherited_cmd() -> None:
    e = base_engine()
    first, _ = do_build(e, FakeHost(e, "FROM busybox\nCMD [\"x\"]\n"), tags=["withcmd"])
    iid, _ = do_build(e, FakeHost(e, "FROM withcmd\nENTRYPOINT [\"y\"]\n"))
    assert e.log.image(first).config["config"]["Cmd"] == ["x"]
    assert e.log.image(iid).config["config"]["Cmd"] is None


def test_a_rebuild_reuses_every_step_and_runs_nothing() -> None:
    e = base_engine()
    host = FakeHost(e, DOCKERFILE, {"app.txt": "data"})
    first, _ = do_build(e, host)
    created = len(events(e, "ContainerCreated"))
    again, out = do_build(e, host)
    assert again == first
    assert len(events(e, "ContainerCreated")) == created
    assert out.count("CACHED") == 13
    steps = [s for s in events(e, "StepCompleted")][-14:]
    assert all(s["cached"] for s in steps)
    assert events(e, "BuildFinished")[-1]["cached_steps"] == 13


def test_a_changed_file_or_build_arg_invalidates_from_its_step_on() -> None:
    e = base_engine()
    host = FakeHost(e, DOCKERFILE, {"app.txt": "data"})
    first, _ = do_build(e, host)
    host.files["app.txt"] = "new"
    second, out = do_build(e, host)
    assert second != first
    marks = [line.startswith(" ---> CACHED") for line in out.splitlines()
             if line.startswith(" ---> ") and line != USING_CACHE][1:]
    assert marks == [True] * 4 + [False] * 9
    _, out = do_build(e, host, build_args={"WHO": "you"})
    marks = [line.startswith(" ---> CACHED") for line in out.splitlines()
             if line.startswith(" ---> ") and line != USING_CACHE][1:]
    assert marks == [True] * 3 + [False] * 10  # ARG's own step keeps the Dockerfile's text
    assert host.ran[-1] == ["/bin/sh", "-c", "echo $WHO"]
    rebuilt = e.log.image(events(e, "BuildFinished")[-1]["image"])
    assert "|1 WHO=you /bin/sh -c echo $WHO" in [h["created_by"] for h in
                                                rebuilt.config["history"]]


def test_no_cache_makes_new_images_and_unused_build_args_are_warned_about() -> None:
    e = base_engine()
    host = FakeHost(e, "FROM busybox\nENV A=1\n")
    first, _ = do_build(e, host)
    second, out = do_build(e, host, no_cache=True, build_args={"NOPE": "1"})
    assert second != first and "CACHED" not in out
    assert "[Warning] One or more build-args [NOPE] were not consumed" in out


def test_a_failing_step_records_build_failed_and_keeps_earlier_images() -> None:
    e = base_engine()
    host = FakeHost(e, "FROM busybox\nENV A=1\nRUN exit 3\nENV B=2\n")
    with pytest.raises(BuildFailedError,
                       match=r"^The command '/bin/sh -c exit 3' returned a non-zero code: 3$"):
        do_build(e, host)
    assert e.log.containers() == []
    failed = events(e, "BuildFailed")[-1]
    assert (failed["step"], failed["instruction"]) == (3, "RUN exit 3")
    env_step = events(e, "StepCompleted")[-1]
    assert env_step["instruction"] == "ENV A=1" and e.log.image(env_step["image"]) is not None
    assert not events(e, "CommandRejected")


def test_a_bad_dockerfile_is_refused_before_anything_runs() -> None:
    e = base_engine()
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: unknown instruction: NOPE$"):
        do_build(e, FakeHost(e, "FROM busybox\nNOPE\nRUN true\n"))
    with pytest.raises(DockerfileError, match=r"^Dockerfile:1: no such image: ghost"):
        do_build(e, FakeHost(e, "FROM ghost\n"))
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: no such image: other"):
        do_build(e, FakeHost(e, "FROM busybox\nCOPY --from=other /a /b\n"))
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: COPY --from=later: stage later "
                                              "is not an earlier stage$"):
        do_build(e, FakeHost(e, "FROM busybox\nCOPY --from=later /a /b\nFROM busybox AS later\n"))
    assert [r["command"] for r in events(e, "CommandRejected")] == ["build"] * 4
    assert not events(e, "BuildStarted") and e.log.containers() == []


def test_scratch_multi_stage_and_target() -> None:
    e = base_engine()
    dockerfile = ("ARG V=1\nFROM busybox AS builder\nRUN make $V\n"
                  "FROM scratch\nCOPY --from=builder /ran /ran\nCMD [\"/ran\"]\n")
    host = FakeHost(e, dockerfile)
    iid, out = do_build(e, host)
    image = e.log.image(iid)
    assert len(image.layers) == 1  # scratch adds none; the COPY one
    assert e.layers.layers[image.layers[0]] == {"/ran": "/bin/sh -c make $V"}
    assert "Step 3/5 : FROM scratch" in out
    staged, out = do_build(e, host, target="builder")
    assert "Step 2/2" in out and "Step 3" not in out and staged != iid
    with pytest.raises(Exception, match="failed to reach build target nope"):
        do_build(e, host, target="nope")
