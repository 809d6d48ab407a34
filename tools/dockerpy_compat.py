"""docker-py's own integration tests, run against `lamina serve` and a docker daemon here,
and their tally in docs/compatibility.md (`make compat`; minutes, so not part of `make test`).

Why docker-py's tests: they are the Docker API's behaviour as its most used client expects
it, written by others. Why next to a docker daemon on this machine: many of them can't pass
here at all (no registry on the internet, no swarm), and the measure that matters is "what
docker passes here, lamina passes".

Where the tests come from: PyPI's sdist of `docker` ships no tests and lamina doesn't copy
others' code into its tree, so the harness reads them from a git clone of docker-py
(`--docker-py PATH`, or DOCKERPY_REPO; `git clone https://github.com/docker/docker-py` on a
machine that reaches GitHub) at the tag of the version pinned below, and installs exactly
that version of docker-py, with the pytest and pytest-timeout docker-py's own CI uses, into a
venv of its own.

How each engine runs: in a network namespace and a private mount namespace of its own
(`unshare --net --mount`), on a temporary root, with stand-in images imported under the
names the tests use (busybox-static's rootfs; nothing is pulled). dockerd gets its own data
root, exec root and cgroup parent; everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# where a clone of docker-py is found when --docker-py and DOCKERPY_REPO name none
DOCKERPY_CLONES = (Path("/work/.mirror/docker+docker-py/repo"),)
UPSTREAM_FILES = ("pytest.ini", "tests/__init__.py", "tests/helpers.py", "tests/integration")
TALLY = REPO / "docs" / "dockerpy-tally.json"
DOCKERPY_VERSION = "7.2.0"  # the tag whose tests run, and the client version installed
# docker-py's own test requirements (its pyproject's `dev` extra) plus paramiko, which its
# tests/helpers.py imports (no test of these files connects over ssh), and websocket-client
# for the one attach test that asks for a websocket.
COMPAT_REQUIREMENTS = (f"docker[ssh,websockets]=={DOCKERPY_VERSION}", "pytest==7.4.2",
                       "pytest-timeout==2.1.0")
ENGINES = ("docker", "lamina")

# Issue 19's files (containers, exec, healthchecks, images, build), then the network
# issue's: tallied apart, their gaps belong to that issue.
FILES = ("api_container_test", "api_exec_test", "api_healthcheck_test", "api_image_test",
         "api_build_test", "models_containers_test", "models_images_test")
NETWORK_FILES = ("api_network_test", "models_networks_test")

# The stand-ins, each imported from busybox-static's rootfs under a name the tests use, with
# alpine's users, groups and top directories (tests exec as `postgres`, in /var/opt).
STAND_INS = ("alpine:3.10", "alpine:latest", "busybox:latest")
ALPINE_USERS = (  # name, uid, gid, home, shell: alpine-baselayout's /etc/passwd
    ("root", 0, 0, "/root", "/bin/ash"), ("bin", 1, 1, "/bin", "/sbin/nologin"),
    ("daemon", 2, 2, "/sbin", "/sbin/nologin"), ("adm", 3, 4, "/var/adm", "/sbin/nologin"),
    ("lp", 4, 7, "/var/spool/lpd", "/sbin/nologin"), ("sync", 5, 0, "/sbin", "/bin/sync"),
    ("mail", 8, 12, "/var/spool/mail", "/sbin/nologin"),
    ("operator", 11, 0, "/root", "/bin/sh"), ("ftp", 21, 21, "/var/lib/ftp", "/sbin/nologin"),
    ("sshd", 22, 22, "/dev/null", "/sbin/nologin"),
    ("postgres", 70, 70, "/var/lib/postgresql", "/bin/sh"),
    ("ntp", 123, 123, "/var/empty", "/sbin/nologin"),
    ("guest", 405, 100, "/dev/null", "/sbin/nologin"),
    ("nobody", 65534, 65534, "/", "/sbin/nologin"),
)
ALPINE_GROUPS = (("root", 0), ("bin", 1), ("daemon", 2), ("sys", 3), ("adm", 4), ("tty", 5),
                 ("disk", 6), ("lp", 7), ("mem", 8), ("kmem", 9), ("wheel", 10),
                 ("mail", 12), ("ftp", 21), ("sshd", 22), ("postgres", 70), ("ntp", 123),
                 ("users", 100), ("nogroup", 65533), ("nobody", 65534))
ALPINE_DIRS = ("lib", "media", "mnt", "opt", "run", "sbin", "srv", "usr/bin", "usr/sbin",
               "usr/local/bin", "var/cache", "var/empty", "var/lib", "var/local", "var/log",
               "var/opt", "var/spool", "var/tmp")

# Tests left out on both engines, with the reason (they can't pass on this machine).
INTERNET = "pulls from Docker Hub (no registry on the internet here)"
NOT_RUN: dict[str, str] = {
    "api_image_test.py::PullImageTest::test_pull": INTERNET,
    "api_image_test.py::PullImageTest::test_pull_streaming": INTERNET,
    "api_image_test.py::PullImageTest::test_pull_invalid_platform": INTERNET,
    "api_image_test.py::ImportImageTest::test_get_load_image": INTERNET,
    "api_image_test.py::PruneImagesTest::test_prune_images": INTERNET,
    "api_image_test.py::InspectDistributionTest::test_inspect_distribution": (
        "asks Docker Hub for busybox's manifest (no registry on the internet here)"),
    "models_images_test.py::ImageCollectionTest::test_list": INTERNET,
    "models_images_test.py::ImageCollectionTest::test_list_with_repository": INTERNET,
    "models_images_test.py::ImageCollectionTest::test_pull": INTERNET,
    "models_images_test.py::ImageCollectionTest::test_pull_with_tag": INTERNET,
    "models_images_test.py::ImageCollectionTest::test_pull_with_sha": INTERNET,
    "models_images_test.py::ImageCollectionTest::test_pull_multiple": INTERNET,
    "models_images_test.py::ImageTest::test_tag_and_remove": INTERNET,
    "models_containers_test.py::ContainerCollectionTest::test_run_with_image_that_does_not_exist":
        "expects Docker Hub's answer for an image no registry has (no registry on the "
        "internet here)",
}

# A gap's reason when the failure's own first line doesn't say it (test id -> why).
NETWORK_ISSUE = "the network issue's (another engineer's): "
EXPLAINED: dict[str, str] = {
    "api_container_test.py::CreateContainerTest::test_create_with_links": (
        NETWORK_ISSUE + "HostConfig.Links (--link) is refused by name"),
    "api_container_test.py::LinkTest::test_remove_link": (
        NETWORK_ISSUE + "HostConfig.Links (--link) is refused by name"),
    "api_container_test.py::CreateContainerTest::test_create_with_mac_address": (
        NETWORK_ISSUE + "MacAddress (--mac-address) is refused by name"),
    "models_containers_test.py::ContainerCollectionTest::test_run_with_networking_config": (
        NETWORK_ISSUE + "an endpoint's DriverOpts is refused by name"),
    **{f"api_network_test.py::TestNetworks::{name}": (
        "starts swarm mode (docker's orchestrator, a cluster of daemons), which lamina has "
        "not: /swarm/init is refused by name") for name in (
        "test_create_inspect_network_with_scope", "test_create_network_attachable",
        "test_create_network_ingress")},
}


# ---------------------------------------------------------------- reading the results


@dataclass
class Outcome:
    test: str  # "api_container_test.py::CreateContainerTest::test_create"
    result: str  # passed | failed | skipped
    message: str = ""


def node_id(classname: str, name: str) -> str:
    """pytest's node id, relative to tests/integration, of a junit testcase."""
    parts = classname.split(".")
    if "integration" in parts:
        parts = parts[parts.index("integration") + 1:]
    return "::".join([f"{parts[0]}.py", *parts[1:], name])


def _first_line(text: str | None) -> str:
    """A failure's first line, shortened: an API error's status and explanation only."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = lines[0] if lines else ""
    error = re.match(r"docker\.errors\.\w+: (\d{3}) .*? \(\"(.*)\"\)$", line)
    if error:
        line = f"{error[1]}: {error[2]}"
    return line[:200]


def read_junit(text: str) -> list[Outcome]:
    """The outcome of every test case in a pytest junit-xml report (an error in set-up or
    tear-down counts as failed, as it does for pytest's exit code)."""
    outcomes = []
    for case in ET.fromstring(text).iter("testcase"):
        tid = node_id(case.get("classname", ""), case.get("name", ""))
        result, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                result = "failed"
                message = _first_line(child.get("message")) or _first_line(child.text)
                break
            if child.tag == "skipped":
                result, message = "skipped", _first_line(child.get("message"))
        outcomes.append(Outcome(tid, result, message))
    return outcomes


@dataclass
class FileTally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def add(self, result: str) -> None:
        setattr(self, result, getattr(self, result) + 1)


@dataclass
class Tally:
    files: dict[str, dict[str, FileTally]] = field(default_factory=dict)
    gaps: dict[str, str] = field(default_factory=dict)  # docker passes, lamina doesn't
    extra: list[str] = field(default_factory=list)  # lamina passes, docker doesn't
    docker_failed: dict[str, str] = field(default_factory=dict)  # with docker's reason


def tally(results: dict[str, list[Outcome]], files: Iterable[str]) -> Tally:
    """Per file and engine, the counts; and each test docker passes that lamina doesn't,
    with lamina's reason."""
    out = Tally(files={f: {e: FileTally() for e in results} for f in files})
    by_engine = {e: {o.test: o for o in outs} for e, outs in results.items()}
    for engine, outs in results.items():
        for o in outs:
            name = o.test.split(".py::")[0]
            if name in out.files:
                out.files[name][engine].add(o.result)
    docker, lamina = by_engine.get("docker", {}), by_engine.get("lamina", {})
    for tid, o in docker.items():
        mine = lamina.get(tid)
        if o.result == "passed" and (mine is None or mine.result != "passed"):
            out.gaps[tid] = EXPLAINED.get(tid) or (
                (mine.message or mine.result) if mine else "not run")
    out.docker_failed = {t: o.message for t, o in sorted(docker.items())
                         if o.result == "failed"}
    out.extra = sorted(t for t, o in lamina.items() if o.result == "passed"
                       and (t not in docker or docker[t].result != "passed"))
    return out


def tally_json(t: Tally, when: str) -> dict:
    return {
        "docker-py": DOCKERPY_VERSION,
        "when": when,
        "files": {f: {e: vars(c) for e, c in per.items()} for f, per in t.files.items()},
        "gaps": dict(sorted(t.gaps.items())),
        "lamina_only": t.extra,
        "docker_failed": t.docker_failed,
        "not_run": NOT_RUN,
    }


# ---------------------------------------------------------------- the document


def _row(name: str, per: dict[str, dict[str, int]]) -> str:
    """One file's cells; an engine not run (--engines) shows as `-`."""
    cells = [f"{per[e]['passed']} / {per[e]['failed']} / {per[e]['skipped']}" if e in per
             else "-" for e in ENGINES]
    return f"| `{name}` | {cells[0]} | {cells[1]} |"


def _table(data: dict, files: Iterable[str]) -> list[str]:
    lines = ["| file | docker here: passed / failed / skipped | lamina serve |",
             "| --- | ---: | ---: |"]
    total = {e: {"passed": 0, "failed": 0, "skipped": 0} for e in ENGINES}
    for name in files:
        per = data["files"].get(name)
        if per is None:
            continue
        lines.append(_row(name, per))
        for e in ENGINES:
            for k in total[e]:
                total[e][k] += per[e][k] if e in per else 0
    lines.append(_row("all", total).replace("`all`", "**all**"))
    return lines


def _gap_list(gaps: dict[str, str], files: Iterable[str]) -> list[str]:
    wanted = tuple(f"{f}.py::" for f in files)
    mine = {t: why for t, why in gaps.items() if t.startswith(wanted)}
    if not mine:
        return ["None: lamina passes every test docker passes here."]
    return [f"- `{t}`: {why.replace('|', '/')}" for t, why in mine.items()]


def tally_text(data: dict) -> list[str]:
    """docs/compatibility.md's section on docker-py's tests, from docs/dockerpy-tally.json."""
    lines = [
        "",
        f"## docker-py {data['docker-py']}'s integration tests, docker here and lamina",
        "",
        "Generated by `make compat` (tools/dockerpy_compat.py; last run "
        f"{data['when']}): docker-py's own",
        "test files (from a clone, at that tag) run against a docker daemon on this machine "
        "(Debian's dockerd)",
        "and against `lamina serve`, each in network and mount namespaces of its own, with "
        "stand-in images",
        f"({', '.join(STAND_INS)}: busybox-static with alpine's users) imported under the "
        "names the tests use.",
        "An xfail counts as skipped, an xpass as passed, an error in set-up or tear-down as "
        "failed. Both",
        "engines run at once, in about 6 minutes.",
        "",
        "### Containers, exec, healthchecks, images and build",
        "",
        *_table(data, FILES),
        "",
        "Tests docker passes here that lamina doesn't, with lamina's reason:",
        "",
        *_gap_list(data["gaps"], FILES),
        "",
        "### Networks (the network issue's files)",
        "",
        *_table(data, NETWORK_FILES),
        "",
        "Tests docker passes here that lamina doesn't:",
        "",
        *_gap_list(data["gaps"], NETWORK_FILES),
        "",
        "### What docker itself fails here (not counted against lamina)",
        "",
        *[f"- `{t}`: {why.replace('|', '/')}"
          for t, why in data.get("docker_failed", {}).items()],
        "",
        "### Not run on either engine",
        "",
        *[f"- `{t}`: {why}" for t, why in data["not_run"].items()],
    ]
    return lines


# ---------------------------------------------------------------- running one engine


def compat_python(venv: Path) -> Path:
    """The harness venv's python, made (once) with the pinned docker-py and pytest."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = "\n".join(COMPAT_REQUIREMENTS)
    if not (stamp.exists() and stamp.read_text() == want):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *COMPAT_REQUIREMENTS], check=True)
        stamp.write_text(want)
    return python


@contextlib.contextmanager
def daemon(engine: str, work: Path) -> Iterator[str]:
    """`lamina serve` or dockerd on a socket under work; stopped and cleaned up after."""
    sock = str(work / f"{engine}.sock")
    log = open(work / f"{engine}.log", "wb")  # noqa: SIM115 - closed below
    if engine == "lamina":
        lamina = str(Path(sys.executable).with_name("lamina"))
        argv = [lamina, "--root", str(work / "root"), "serve", "--socket", sock]
    else:
        argv = ["dockerd", "--data-root", str(work / "data"), "--exec-root",
                str(work / "exec"), "--pidfile", str(work / "docker.pid"), "-H",
                f"unix://{sock}", "--cgroup-parent", f"/{cgroup_parent(work)}"]
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{engine} did not come up: see {work / (engine + '.log')}")
            time.sleep(0.1)
        yield f"unix://{sock}"
        remove_everything(f"unix://{sock}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if engine == "docker":
            remove_cgroups(cgroup_parent(work))


def cgroup_parent(work: Path) -> str:
    return f"dockerpy-compat-{work.name}"


def remove_cgroups(name: str) -> None:
    """dockerd's cgroup parent, in every v1 hierarchy (its containers are gone by now)."""
    for path in Path("/sys/fs/cgroup").glob(f"*/{name}"):
        for sub in sorted(path.glob("**/"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()


def remove_everything(host: str) -> None:
    """Every container, every network but the defaults, every image: the tests' leftovers."""
    import docker

    client = docker.APIClient(base_url=host, timeout=120)
    for c in client.containers(all=True):
        with contextlib.suppress(docker.errors.APIError):
            client.remove_container(c["Id"], force=True, v=True)
    for n in client.networks():
        if n["Name"] not in ("bridge", "host", "none"):
            with contextlib.suppress(docker.errors.APIError):
                client.remove_network(n["Id"])
    with contextlib.suppress(docker.errors.APIError):
        client.prune_volumes()
    client.close()


def write_stand_in(out: Path) -> None:
    """busybox-static's rootfs with alpine's users, groups and directories, as a layer tar."""
    from adapters.storage.busybox import build_busybox_rootfs
    from adapters.storage.layertar import write_layer_tar

    with tempfile.TemporaryDirectory(prefix="dockerpy-stand-in-") as tmp:
        root = Path(build_busybox_rootfs(os.path.join(tmp, "rootfs")))
        (root / "etc" / "passwd").write_text("".join(
            f"{n}:x:{u}:{g}:{n}:{h}:{sh}\n" for n, u, g, h, sh in ALPINE_USERS))
        (root / "etc" / "group").write_text("".join(
            f"{n}:x:{g}:\n" for n, g in ALPINE_GROUPS))
        for d in ALPINE_DIRS:
            (root / d).mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as f:
            write_layer_tar(str(root), f)


def import_stand_ins(host: str, work: Path) -> None:
    import docker

    tar = work / "stand-in.tar"
    write_stand_in(tar)
    client = docker.APIClient(base_url=host, timeout=120)
    for name in STAND_INS:
        repo, tag = name.split(":")
        client.import_image_from_file(str(tar), repository=repo, tag=tag)
    client.close()


def docker_py_clone(given: Path | None) -> Path:
    """The git repository docker-py's tests are read from: the one named, or a known clone."""
    named = given or (Path(os.environ["DOCKERPY_REPO"]) if os.environ.get("DOCKERPY_REPO")
                      else None)
    for repo in [named] if named else DOCKERPY_CLONES:
        if repo.exists():
            return repo
    raise SystemExit("dockerpy_compat: no docker-py clone: `git clone "
                     "https://github.com/docker/docker-py` and pass --docker-py PATH "
                     "(PyPI's sdist ships no tests)")


def extract_tests(repo: Path, dest: Path) -> Path:
    """docker-py's test files at DOCKERPY_VERSION's tag, unchanged, into dest."""
    dest.mkdir()
    archive = subprocess.run(["git", f"--git-dir={git_dir(repo)}", "archive", DOCKERPY_VERSION,
                              *UPSTREAM_FILES], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    missing = [t for t in NOT_RUN if not defined(dest, t)]
    if missing:
        raise SystemExit(f"dockerpy_compat: not in docker-py {DOCKERPY_VERSION}: {missing[0]}")
    return dest


def defined(upstream: Path, test: str) -> bool:
    """Whether docker-py's files (extracted in upstream) define this test id."""
    module, *_, name = test.split("::")
    source = upstream / "tests" / "integration" / module
    return source.exists() and f"def {name}(" in source.read_text()


def git_dir(repo: Path) -> Path:
    """A clone's git directory: repo/.git for a working clone, repo itself for a bare one."""
    return repo / ".git" if (repo / ".git").exists() else repo


def run_engine(engine: str, work: Path, python: Path, files: list[str], timeout: int) -> int:
    """Inside this process's own namespaces: bring up the engine, run the files, write
    work/<engine>.xml."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # this namespace's mounts are private to it (unshare made them so): shared again among
    # themselves only, as on a host where docker's rshared bind propagation works
    subprocess.run(["mount", "--make-rshared", "/"], check=True)
    with daemon(engine, work) as host:
        import_stand_ins(host, work)
        env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(work / "docker-config"),
               "DOCKER_BUILDKIT": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("DOCKER_TLS_VERIFY", None)
        deselect = [a for t in NOT_RUN for a in ("--deselect", f"tests/integration/{t}")]
        argv = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q",
                f"--timeout={timeout}", f"--junitxml={work / (engine + '.xml')}", *deselect,
                *[f"tests/integration/{f}.py" for f in files]]
        with open(work / f"{engine}-pytest.log", "wb") as out:
            return subprocess.run(argv, cwd=work.parent / "upstream", env=env, stdout=out,
                                  stderr=subprocess.STDOUT).returncode


# ---------------------------------------------------------------- the whole measure


def spawn(engine: str, work: Path, python: Path, files: list[str],
          timeout: int) -> subprocess.Popen:
    """This script again, as `--inner`, in a new network and private mount namespace."""
    sub = work / engine
    sub.mkdir()
    argv = ["unshare", "--net", "--mount", "--propagation", "private", sys.executable, "-m",
            "tools.dockerpy_compat", "--inner", engine, "--work", str(sub), "--python",
            str(python), "--timeout", str(timeout), "--files", *files]
    print(f"running docker-py's tests against {engine} (log: {sub}/{engine}-pytest.log)",
          file=sys.stderr)
    return subprocess.Popen(argv, cwd=REPO)


def write_docs(data: dict) -> None:
    from tools.docs import DOCS, compatibility_text

    TALLY.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    (Path(DOCS) / "compatibility.md").write_text(compatibility_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", nargs="+", default=[*FILES, *NETWORK_FILES],
                   help="docker-py integration files to run (default: all tallied)")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES,
                   help="which engines to run (the tally needs both)")
    p.add_argument("--serial", action="store_true",
                   help="one engine after the other (default: both at once)")
    p.add_argument("--timeout", type=int, default=180, help="seconds per test")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-docs", action="store_true", help="print the tally, write no docs")
    p.add_argument("--docker-py", type=Path, help="a git clone of docker-py "
                   "(default: DOCKERPY_REPO, or a known mirror)")
    p.add_argument("--venv", type=Path, default=REPO / ".venv" / "compat",
                   help="the harness's own venv")
    p.add_argument("--inner", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--python", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inner:
        return run_engine(args.inner, args.work, args.python, args.files, args.timeout)
    if os.geteuid() != 0:
        print("dockerpy_compat: needs root (namespaces, dockerd, lamina serve)", file=sys.stderr)
        return 2
    repo = docker_py_clone(args.docker_py)
    python = compat_python(args.venv)
    work = Path(tempfile.mkdtemp(prefix="dockerpy-compat-"))
    try:
        extract_tests(repo, work / "upstream")
        procs = []
        for engine in args.engines:
            procs.append(spawn(engine, work, python, args.files, args.timeout))
            if args.serial:
                procs[-1].wait()
        for proc in procs:
            proc.wait()
        results = {}
        for engine in args.engines:
            report = work / engine / f"{engine}.xml"
            if not report.exists():
                print(f"no report from {engine}: see {work / engine}", file=sys.stderr)
                return 1
            results[engine] = read_junit(report.read_text())
        t = tally(results, [*FILES, *NETWORK_FILES])
        data = tally_json(t, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        print("\n".join(tally_text(data)))
        complete = set(args.engines) == set(ENGINES) and set(args.files) == {
            *FILES, *NETWORK_FILES}
        if not args.no_docs and complete:
            write_docs(data)
            print(f"wrote {TALLY} and docs/compatibility.md", file=sys.stderr)
        return 0
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
