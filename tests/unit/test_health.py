"""core/health.py: docker's healthcheck rules (moby daemon/health.go), without a kernel."""

from __future__ import annotations

import pytest

from core import health
from core.errors import BadInput
from core.health import SECOND, Health, judge, timing


def result(code: int, output: str = "") -> dict:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": output}


def run(codes: list[int], hc: dict, since: list[float] | None = None) -> list[str]:
    """The status after each probe's exit code."""
    t, h, out = timing(hc), Health(), []
    for i, code in enumerate(codes):
        h = judge(h, result(code), t, since[i] if since else 100.0)
        out.append(h.status)
    return out


def test_durations_are_gos() -> None:
    assert health.parse_duration("0.2s") == 200_000_000
    assert health.parse_duration("1m30s") == 90 * SECOND
    assert health.parse_duration("500ms") == 500_000_000
    assert health.parse_duration("0") == 0
    assert [health.format_duration(n) for n in (0, 200_000_000, 1_500_000_000, 90 * SECOND,
                                                3600 * SECOND)] == \
        ["0s", "200ms", "1.5s", "1m30s", "1h0m0s"]
    for bad, message in (("1", "missing unit"), ("abc", "invalid duration"), ("", "invalid")):
        with pytest.raises(ValueError, match=message):
            health.parse_duration(bad)


def test_defaults_are_dockers() -> None:
    t = timing({"Test": ["CMD-SHELL", "true"]})
    assert (t.interval, t.timeout, t.start_period, t.start_interval, t.retries) == \
        (30, 30, 0, 5, 3)


def test_starting_until_the_first_success_then_unhealthy_after_retries_failures() -> None:
    hc = {"Retries": 2}
    assert run([1, 1, 1, 0, 1, 1, 0], hc) == \
        ["starting", "unhealthy", "unhealthy", "healthy", "healthy", "unhealthy", "healthy"]
    assert run([1, 1, 1], {}) == ["starting", "starting", "unhealthy"]  # 3 by default


def test_a_success_resets_the_streak() -> None:
    t, h = timing({}), Health()
    for code in (1, 1, 0, 1):
        h = judge(h, result(code), t, 100)
    assert (h.status, h.failing_streak) == ("healthy", 1)


def test_failures_in_the_start_period_do_not_count_while_starting() -> None:
    hc = {"Retries": 1, "StartPeriod": 3 * SECOND}
    assert run([1, 1, 1], hc, since=[1, 2, 4]) == ["starting", "starting", "unhealthy"]
    t = timing(hc)
    h = judge(Health(), result(1), t, 1)
    assert h.failing_streak == 0
    # once healthy, a failure in the start period counts
    assert run([0, 1], hc, since=[1, 2]) == ["healthy", "unhealthy"]


def test_the_log_keeps_the_last_five() -> None:
    t, h = timing({}), Health()
    for code in range(7):
        h = judge(h, result(code, str(code)), t, 100)
    assert [r["Output"] for r in h.log] == ["2", "3", "4", "5", "6"]
    assert health.restarted(h) == Health("starting", 0, h.log)


def test_intervals() -> None:
    t = timing({"Interval": SECOND, "StartPeriod": 3 * SECOND})
    assert health.next_wait(t, "starting", 0) == 5  # the start interval, docker's default
    assert health.next_wait(t, "healthy", 0) == 1
    assert health.next_wait(t, "starting", 3) == 1
    t = timing({"Interval": 200_000_000})
    assert health.next_wait(t, "starting", 0) == 0.2  # no start period


def test_output_is_cut_at_4096_bytes() -> None:
    assert health.output_text(b"x" * 4096) == "x" * 4096
    assert health.output_text(b"x" * 5000) == "x" * 4096 + "..."
    t = timing({"Timeout": SECOND})
    assert health.timed_out(t) == "Health check exceeded timeout (1s)"
    assert health.timed_out(t, b"half") == "Health check exceeded timeout (1s): half"


def test_flags_as_dockers_cli() -> None:
    assert health.from_flags() is None
    assert health.from_flags(cmd="test -f /ok", interval="0.2s", retries=2) == \
        {"Test": ["CMD-SHELL", "test -f /ok"], "Interval": 200_000_000, "Retries": 2}
    assert health.from_flags(disabled=True) == {"Test": ["NONE"]}
    assert health.from_flags(timeout="5s") == {"Timeout": 5 * SECOND}  # the image's test
    with pytest.raises(BadInput, match="--no-healthcheck conflicts with --health-\\* options"):
        health.from_flags(cmd="true", disabled=True)
    with pytest.raises(BadInput, match="--health-interval cannot be negative"):
        health.from_flags(interval="-1s")
    with pytest.raises(BadInput, match="--health-retries cannot be negative"):
        health.from_flags(cmd="x", retries=-1)
    with pytest.raises(BadInput, match='invalid argument "soon" for "--health-timeout"'):
        health.from_flags(timeout="soon")


def test_the_api_field_is_checked_as_dockers_daemon_does() -> None:
    assert health.normalized({"Test": ["CMD", "true"], "Interval": 0, "Retries": 0}) == \
        {"Test": ["CMD", "true"]}
    assert health.normalized({"Test": "true"}) == {"Test": ["CMD-SHELL", "true"]}
    for body, message in (({"Interval": 10}, "Interval in Healthcheck cannot be less than 1ms"),
                          ({"Timeout": 999}, "Timeout in Healthcheck cannot be less than 1ms"),
                          ({"StartPeriod": 1}, "StartPeriod in Healthcheck cannot be less"),
                          ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
                          ({"Test": ["HTTP", "x"]}, "unknown healthcheck type 'HTTP'"),
                          ([], "must be a JSON object")):
        with pytest.raises(BadInput, match=message):
            health.normalized(body)


def test_the_containers_fields_win_over_the_images() -> None:
    image = {"Healthcheck": {"Test": ["CMD", "img"], "Interval": SECOND, "Retries": 5}}
    assert health.effective(image, {}) == image["Healthcheck"]
    assert health.effective(image, {"healthcheck": {"Timeout": 2 * SECOND}}) == \
        {"Test": ["CMD", "img"], "Interval": SECOND, "Retries": 5, "Timeout": 2 * SECOND}
    assert health.effective(image, {"healthcheck": {"Test": ["NONE"]}})["Test"] == ["NONE"]
    assert not health.probes(health.effective(image, {"healthcheck": {"Test": ["NONE"]}}))
    assert health.effective({}, {}) is None


def test_probe_argv() -> None:
    assert health.probe_argv({"Test": ["CMD-SHELL", "a && b"]}) == ["/bin/sh", "-c", "a && b"]
    assert health.probe_argv({"Test": ["CMD-SHELL", "x"]}, ["/bin/bash", "-c"]) == \
        ["/bin/bash", "-c", "x"]
    assert health.probe_argv({"Test": ["CMD", "test", "-f", "/ok"]}) == ["test", "-f", "/ok"]


def test_what_readers_show() -> None:
    hc = {"Test": ["CMD-SHELL", "true"]}
    assert health.status_of("running", True, {}, None) == "none"
    assert health.status_of("running", True, {}, {"Test": ["NONE"]}) == "none"
    assert health.status_of("stopped", False, {}, hc) == "none"  # never started
    assert health.status_of("running", True, {}, hc) == "starting"
    assert health.status_of("running", True, {"status": "healthy"}, hc) == "healthy"
    assert health.status_of("paused", True, {"status": "healthy"}, hc) == "unhealthy"
    assert health.status_of("stopped", True, {"status": "healthy"}, hc) == "unhealthy"
    assert [health.suffix(s) for s in ("none", "starting", "healthy", "unhealthy")] == \
        ["", " (health: starting)", " (healthy)", " (unhealthy)"]
    runtime = {"pid": 7, "failing_streak": 2, "log": [result(1)]}
    assert health.state_doc("unhealthy", {}, runtime, 7) == \
        {"Status": "unhealthy", "FailingStreak": 2, "Log": [result(1)]}
    # a new run whose health process has not written yet: the old log, no streak
    assert health.state_doc("starting", {}, runtime, 8)["FailingStreak"] == 0
    assert health.state_doc("none", {}, runtime, 7) is None


def test_dockerfile_healthcheck() -> None:
    from core.dockerfile import parse
    from core.instructions import StageState, metadata

    df = parse("FROM a\nHEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD test -f /ok\n"
               'HEALTHCHECK CMD ["true", "x"]\nHEALTHCHECK NONE\n')
    state = StageState(image=None, config={})  # type: ignore[arg-type]
    made = [metadata(df, state, ins) for ins in df.stages[0].instructions]
    assert made[0] == ({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"],
                                        "Interval": 5 * SECOND, "Timeout": 3 * SECOND,
                                        "Retries": 2}},
                       'HEALTHCHECK &{["CMD-SHELL" "test -f /ok"] "5s" "3s" "0s" "0s" '
                       "'\\x02'}")
    assert made[1][0] == {"Healthcheck": {"Test": ["CMD", "true", "x"]}}
    assert made[2][0] == {"Healthcheck": {"Test": ["NONE"]}}


def test_filters_health() -> None:
    from core.filters import select
    from core.model import Container, Image

    image = Image(id="i", parent=None, layers=(), version=1, created="",
                  config={"config": {"Healthcheck": {"Test": ["CMD", "true"]}}})
    plain = Image(id="p", parent=None, layers=(), version=1, created="")

    def c(name: str, img: str, state: str = "running", h: dict | None = None,
          ran: bool = True) -> Container:
        return Container(id=name * 8, name=name, image=img, state=state, version=1,
                         created="", ran=ran, health=h or {})

    cs = [c("a", "i"), c("b", "i", h={"status": "healthy"}),
          c("u", "i", h={"status": "unhealthy"}), c("n", "p"), c("s", "i", "stopped"),
          c("x", "i", "stopped", ran=False)]
    images = {"i": image, "p": plain}

    def names(value: str) -> list[str]:
        return sorted(x.name for x in select(cs, images, {"health": [value]}, everything=True))

    assert names("starting") == ["a"]
    assert names("healthy") == ["b"]
    assert names("unhealthy") == ["s", "u"]
    assert names("none") == ["n", "x"]


def test_the_engine_records_changes_of_the_run_it_was_told() -> None:
    from core.memory import memory_engine
    from core.model import World

    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "busybox")
    cid = e.create("busybox", ["sh"], config={"healthcheck": {"Test": ["CMD", "true"]}})
    assert e.container(cid).config["healthcheck"] == {"Test": ["CMD", "true"]}
    pid = e.start(cid).pid
    assert e.health_changed(cid, pid + 1, "healthy") is None  # another run's: nothing
    c = e.health_changed(cid, pid, "unhealthy", 3, 1, "no")
    assert c is not None and c.state == "running"
    assert c.health == {"status": "unhealthy", "failing_streak": 3, "exit_code": 1,
                        "output": "no"}
    version = c.version
    assert e.health_changed(cid, pid, "unhealthy").version == version  # recorded once
    e.health_changed(cid, pid, "healthy")
    e.exec(cid, ["true"])  # an exec right after a change takes the moved version
    e.stop(cid)
    assert e.health_changed(cid, pid, "unhealthy") is None  # the run is over
    assert e.container(cid).health["status"] == "healthy"  # the last recorded, kept
    e.start(cid)
    assert e.container(cid).health == {}  # a new run starts over: `starting`
    world = World()
    for rec in e.log.records:
        world.apply(rec)
    assert world.containers[cid] == e.container(cid)
    assert [r.data["status"] for r in e.log.records if r.type == "ContainerHealthChanged"] \
        == ["unhealthy", "healthy"]
