"""The BuildHost contract (core/ports.py), run against the in-memory and the Linux build host.

The host is called as core/build.py calls it: the Dockerfile read from a context, the context
and an image's root as CopySources whose digest is the COPY step's cache key, and containers
made by Engine.create that the host fills (copy) or runs (run). What every host must do:
read the default and a named Dockerfile, refuse a missing one with one line of BadInput;
give a context digest that is stable and changes when a file (its bytes or its mode) does;
refuse a source outside the context; copy a file with --chmod and --chown into the
container's read-write layer (under dest when dest ends in '/'); run a container to its
recorded end, streaming its output, and return its exit code; and carry core.build.build()
end to end, its second run all from the cache.

The Linux subclass builds in a temporary root with busybox imported, and checks afterwards
that no container, mount, cgroup or process of it is left.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.storage.busybox import GROUP, PASSWD
from core.build import build
from core.errors import BadInput
from core.memory import MemoryBuildHost, memory_engine
from tests.conftest import require_root
from tests.contracts.stores import tree_files

# A file as the contract writes it: (bytes, mode).
File = tuple[bytes, int]
CONTEXT: dict[str, File] = {
    "Dockerfile": (b"FROM busybox\n", 0o644),
    "build/Other.df": (b"FROM scratch\n", 0o644),
    "app.txt": (b"data\n", 0o644),
    "conf/a.conf": (b"a=1\n", 0o644),
    "conf/b.conf": (b"b=2\n", 0o640),
}
NOBODY = 65534  # nobody and nogroup in busybox's etc/passwd and etc/group
RUN_OPTIONS = {"entrypoint": [], "network": "host"}  # what a build's RUN container gets


class BuildHostContract:
    """Subclasses provide `world` (an engine with busybox imported, and a place for contexts)
    and the hooks below."""

    def make_host(self, engine: Any) -> Any:
        raise NotImplementedError

    def make_context(self, host: Any, where: Path, files: dict[str, File]) -> str:
        """A context holding these files; its directory."""
        raise NotImplementedError

    def change(self, host: Any, context_dir: str, rel: str, data: bytes, mode: int) -> None:
        """Replace one file of a context."""
        raise NotImplementedError

    def in_container(self, engine: Any, host: Any, cid: str,
                     path: str) -> tuple[bytes, int, int, int] | None:
        """What COPY put at container path `path`: (bytes, mode, uid, gid); None if nothing."""
        raise NotImplementedError

    def layer_files(self, engine: Any, layer_id: str) -> dict[str, str]:
        """A read-only layer's regular files, {relative path: text}."""
        raise NotImplementedError

    @pytest.fixture
    def host(self, world: tuple[Any, Path]) -> Any:
        return self.make_host(world[0])

    @pytest.fixture
    def ctx(self, world: tuple[Any, Path], host: Any, tmp_path: Path) -> str:
        return self.make_context(host, tmp_path / "ctx", CONTEXT)

    @pytest.fixture
    def make(self, world: tuple[Any, Path]) -> Iterator[Callable[..., str]]:
        """Create busybox containers as a build step does; afterwards each is removed."""
        engine, _ = world
        made: list[str] = []

        def make(argv: list[str] | None = None, options: dict[str, Any] | None = None) -> str:
            cid = engine.create("busybox", argv or ["/bin/sh", "-c", "#(nop) COPY"],
                                config=dict(options or {}))
            made.append(cid)
            return cid

        yield make
        for cid in made:
            engine.rm(cid, force=True)

    # --- the Dockerfile ----------------------------------------------------------------

    def test_read_dockerfile_default_and_named(self, host, ctx) -> None:
        assert host.read_dockerfile(ctx, None) == ("Dockerfile", "FROM busybox\n")
        assert host.read_dockerfile(ctx, "build/Other.df") == ("build/Other.df",
                                                               "FROM scratch\n")
        absolute = os.path.join(ctx, "build", "Other.df")
        assert host.read_dockerfile(ctx, absolute) == (absolute, "FROM scratch\n")

    def test_a_missing_dockerfile_is_one_line_of_bad_input(self, host, ctx, tmp_path) -> None:
        bare = self.make_context(host, tmp_path / "bare", {"app.txt": CONTEXT["app.txt"]})
        for context_dir, name in [(bare, None), (ctx, "Nope.df"), (ctx, "../Dockerfile"),
                                  (str(tmp_path / "no-such-dir"), None)]:
            with pytest.raises(BadInput) as err:
                host.read_dockerfile(context_dir, name)
            text = str(err.value)
            assert text and "\n" not in text
            assert ("Dockerfile" in text or "Nope.df" in text or "context" in text), text

    # --- the context as a CopySource ---------------------------------------------------

    def test_the_context_digest_is_stable_and_changes_with_a_file(self, host, ctx) -> None:
        with host.context(ctx) as source:
            one = source.digest(["app.txt", "conf"], "", "", False)
            assert source.digest(["app.txt", "conf"], "", "", False) == one
            assert source.digest(["app.txt"], "", "", False).startswith("file:")
            assert source.digest(["conf"], "", "", False).startswith("dir:")
            assert source.digest(["conf/*.conf"], "", "", False).startswith("multi:")
            assert one.startswith("multi:")
            assert source.digest(["app.txt", "conf"], "", "0600", False) != one
            assert source.digest(["app.txt", "conf"], "nobody", "", False) != one
        with host.context(ctx) as again:
            assert again.digest(["app.txt", "conf"], "", "", False) == one
        self.change(host, ctx, "conf/a.conf", b"a=2\n", 0o644)
        with host.context(ctx) as source:
            changed = source.digest(["app.txt", "conf"], "", "", False)
        assert changed != one
        self.change(host, ctx, "conf/a.conf", b"a=2\n", 0o600)
        with host.context(ctx) as source:
            assert source.digest(["app.txt", "conf"], "", "", False) not in (one, changed)
            assert source.digest(["app.txt"], "", "", False) == \
                source.digest(["app.txt"], "", "", False)

    def test_a_source_outside_the_context_or_missing_is_refused(self, host, ctx, make,
                                                                 world, tmp_path) -> None:
        engine, _ = world
        self.make_context(host, tmp_path / "beside", {"secret": (b"no\n", 0o644)})
        cid = make()
        with host.context(ctx) as source:
            for src in ["../beside/secret", "conf/../../beside/secret", "/../beside/secret"]:
                with pytest.raises(BadInput, match="outside the build context"):
                    source.digest([src], "", "", False)
                with pytest.raises(BadInput, match="outside the build context"):
                    host.copy(source, cid, [src], "/stolen/", "", "", False)
            for src in ["missing.txt", "conf/*.nothing"]:
                with pytest.raises(BadInput):
                    source.digest([src], "", "", False)
                with pytest.raises(BadInput):
                    host.copy(source, cid, [src], "/stolen/", "", "", False)
        assert self.in_container(engine, host, cid, "/stolen/secret") is None

    def test_copy_refuses_a_source_it_did_not_give(self, host, make) -> None:
        class Foreign:
            def digest(self, sources, chown, chmod, add) -> str:
                return "file:0"

        with pytest.raises(TypeError):
            host.copy(Foreign(), make(), ["app.txt"], "/app/", "", "", False)

    # --- copy and run ------------------------------------------------------------------

    def test_copy_puts_the_file_with_its_mode_and_owner_into_the_container(
            self, host, ctx, make, world) -> None:
        engine, _ = world
        cid = make()
        with host.context(ctx) as source:
            host.copy(source, cid, ["app.txt"], "/app/", "", "0600", False)
            host.copy(source, cid, ["app.txt"], "/etc/app.conf", "", "", False)
            host.copy(source, cid, ["conf"], "/srv/", "nobody:nogroup", "", False)
        got = self.in_container
        assert got(engine, host, cid, "/app/app.txt") == (b"data\n", 0o600, 0, 0)
        assert got(engine, host, cid, "/etc/app.conf") == (b"data\n", 0o644, 0, 0)
        assert got(engine, host, cid, "/srv/a.conf") == (b"a=1\n", 0o644, NOBODY, NOBODY)
        assert got(engine, host, cid, "/srv/b.conf") == (b"b=2\n", 0o640, NOBODY, NOBODY)
        assert got(engine, host, cid, "/app/conf") is None

    def test_copy_from_an_image_root(self, host, make, world) -> None:
        engine, _ = world
        cid = make()
        with host.image_root(engine.image("busybox").id) as root:
            digest = root.digest(["/etc/passwd"], "", "", False)
            assert digest.startswith("file:")
            assert root.digest(["/etc/passwd"], "", "", False) == digest
            host.copy(root, cid, ["/etc/passwd"], "/copied/", "", "", False)
        data, _mode, uid, gid = self.in_container(engine, host, cid, "/copied/passwd") or \
            (b"", 0, -1, -1)
        assert (data, uid, gid) == (PASSWD.encode(), 0, 0)

    def test_run_returns_the_exit_code_and_streams_the_output(self, host, make,
                                                              world) -> None:
        engine, _ = world
        failing = make(["/bin/sh", "-c", "echo hello; echo world; exit 3"], RUN_OPTIONS)
        chunks: list[str] = []
        assert host.run(failing, chunks.append) == 3
        assert "".join(chunks) == "hello\nworld\n"
        recorded = engine.log.container(failing)
        assert (recorded.state, recorded.exit_code) == ("stopped", 3)
        quiet = make(["/bin/sh", "-c", "true"], RUN_OPTIONS)
        chunks = []
        assert host.run(quiet, chunks.append) == 0
        assert "".join(chunks) == ""
        assert engine.log.container(quiet).state == "stopped"

    # --- a whole build -----------------------------------------------------------------

    def test_a_build_runs_end_to_end_and_then_from_the_cache(self, host, world,
                                                             tmp_path) -> None:
        engine, _ = world
        ctx = self.make_context(host, tmp_path / "app", {
            "Dockerfile": (b"FROM busybox\nCOPY --chmod=0755 app.txt /app/\n"
                           b"RUN echo built\nCMD [\"/app/app.txt\"]\n", 0o644),
            "app.txt": (b"data\n", 0o644)})
        chunks: list[str] = []
        iid = build(engine, host, ctx, tags=["contract:built"], out=chunks.append)
        out = "".join(chunks)
        assert "Step 3/4 : RUN echo built\nbuilt\n" in out
        assert "Successfully tagged contract:built" in out
        image = engine.log.image(iid)
        base = engine.image("busybox")
        assert image.layers[:len(base.layers)] == base.layers
        copied, _ran = image.layers[len(base.layers):]
        assert self.layer_files(engine, copied) == {"app/app.txt": "data\n"}
        assert image.config["config"]["Cmd"] == ["/app/app.txt"]
        chunks = []
        assert build(engine, host, ctx, tags=["contract:built"], out=chunks.append) == iid
        assert "".join(chunks).count("CACHED") == 3
        assert engine.log.containers() == []  # the step containers are gone
        engine.rmi("contract:built")


class TestMemoryBuildHost(BuildHostContract):
    @pytest.fixture
    def world(self, tmp_path: Path) -> tuple[Any, Path]:
        engine = memory_engine(user="contract")
        engine.import_image({"bin/sh": "#!ash\n", "etc/passwd": PASSWD, "etc/group": GROUP},
                            "busybox")
        return engine, tmp_path

    def make_host(self, engine: Any) -> MemoryBuildHost:
        return MemoryBuildHost(engine)

    def make_context(self, host: MemoryBuildHost, where: Path, files: dict[str, File]) -> str:
        return host.add_files(str(where), files)

    def change(self, host: MemoryBuildHost, context_dir: str, rel: str, data: bytes,
               mode: int) -> None:
        host.add_files(context_dir, {rel: (data, mode)})

    def in_container(self, engine: Any, host: MemoryBuildHost, cid: str,
                     path: str) -> tuple[bytes, int, int, int] | None:
        f = host.copied.get(cid, {}).get(path)
        if f is None:
            return None
        rw = engine.layers.rw[engine.container(cid).rw_layer]
        assert rw[path.lstrip("/")] == f.data.decode()  # in the read-write layer itself
        return f.data, f.mode, f.uid, f.gid

    def layer_files(self, engine: Any, layer_id: str) -> dict[str, str]:
        return dict(engine.layers.layers[layer_id])


@pytest.mark.kernel
class TestLinuxBuildHost(BuildHostContract):
    @pytest.fixture(scope="class")
    @classmethod
    def world(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
        require_root()
        from adapters.bootstrap import build_engine
        from tests.kernel.runtime_env import busybox_tar, leftovers

        base = tmp_path_factory.mktemp("build-host-contract")
        engine = build_engine(str(base / "root"))
        engine.import_image(str(busybox_tar(base)), "busybox")
        yield engine, base
        left = [c.id for c in engine.log.containers()]
        made = [r.data["id"] for r in engine.log.read() if r.type == "ContainerCreated"]
        engine.log.close()
        assert left == [], "a test left a container in the log"
        assert leftovers(base / "root", made) == []

    def make_host(self, engine: Any) -> Any:
        from adapters.build_host import LinuxBuildHost

        return LinuxBuildHost(engine)

    def make_context(self, host: Any, where: Path, files: dict[str, File]) -> str:
        for rel in files:
            self.change(host, str(where), rel, *files[rel])
        return str(where)

    def change(self, host: Any, context_dir: str, rel: str, data: bytes, mode: int) -> None:
        path = Path(context_dir, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)

    def in_container(self, engine: Any, host: Any, cid: str,
                     path: str) -> tuple[bytes, int, int, int] | None:
        upper = engine.layers.diff_dir(engine.container(cid).rw_layer)
        full = os.path.join(upper, path.lstrip("/"))
        if not os.path.isfile(full):
            return None
        st = os.lstat(full)
        return Path(full).read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

    def layer_files(self, engine: Any, layer_id: str) -> dict[str, str]:
        return tree_files(engine.layers.diff_dir(layer_id))
