"""--init, --ulimit, --stop-signal, --stop-timeout, --log-driver/--log-opt judged as docker's
(core/runopts.py), the ProcessSpec they make, and the json-file log's rotation
(adapters/runtime/logfile.py), all without root."""

from __future__ import annotations

import json
import os

import pytest

from adapters.dockerapi.containers import create_options as api_options
from adapters.runtime import logfile
from core import runopts
from core.errors import BadInput
from core.process import INIT_PATH, process_spec

IMAGE = {"config": {"Cmd": ["sh"], "StopSignal": "SIGQUIT"}}


# --- ulimits -------------------------------------------------------------------------------

def test_ulimit_flag_as_docker_parses_it():
    assert runopts.parse_ulimit("nofile=64:128") == {"Name": "nofile", "Soft": 64, "Hard": 128}
    assert runopts.parse_ulimit("core=0") == {"Name": "core", "Soft": 0, "Hard": 0}
    assert runopts.parse_ulimit("memlock=-1:-1") == {"Name": "memlock", "Soft": -1, "Hard": -1}


@pytest.mark.parametrize(("flag", "words"), [
    ("nofiles=1", "invalid ulimit type: nofiles"),
    ("nofile", "invalid ulimit argument: nofile"),
    ("nofile=1:2:3", "too many limit value arguments - 1:2:3"),
    ("nofile=x", 'strconv.ParseInt: parsing "x": invalid syntax'),
    ("nofile=10:5", "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
])
def test_bad_ulimits_in_docker_words(flag, words):
    with pytest.raises(BadInput, match=words.replace("(", r"\(")):
        runopts.parse_ulimit(flag)


def test_api_ulimits_judged_at_create():
    out = runopts.normalized({"ulimits": [{"Name": "nproc", "Soft": 5, "Hard": 10}]})
    assert out["ulimits"] == [{"Name": "nproc", "Soft": 5, "Hard": 10}]
    with pytest.raises(BadInput, match="invalid ulimit type: bogus"):
        runopts.normalized({"ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]})


def test_rlimits_in_the_spec_by_resource_number():
    spec = process_spec(IMAGE, [], {"ulimits": [{"Name": "nofile", "Soft": 64, "Hard": 128},
                                                {"Name": "core", "Soft": 0, "Hard": -1}]},
                        "c" * 64)
    assert spec.rlimits == ((7, 64, 128), (4, 0, -1))


# --- init ------------------------------------------------------------------------------------

def test_init_runs_the_command_under_docker_init():
    spec = process_spec(IMAGE, ["sleep", "5"], {"init": True}, "c" * 64)
    assert spec.init and spec.argv == (INIT_PATH, "--", "sleep", "5")
    assert process_spec(IMAGE, ["true"], {}, "c" * 64).argv == ("true",)
    assert runopts.normalized({"init": False}) == {}
    with pytest.raises(BadInput):
        runopts.normalized({"init": "yes"})


# --- stop --------------------------------------------------------------------------------------

def test_console_size_recorded_as_docker_sends_it_and_given_to_the_spec():
    _, options = api_options({"Image": "busybox", "Tty": True,
                              "HostConfig": {"ConsoleSize": [30, 100]}})
    recorded = runopts.normalized(options)
    assert recorded["console_size"] == [30, 100]
    assert process_spec({}, ["sh"], recorded, "c" * 64).console_size == (30, 100)
    assert "console_size" not in runopts.normalized({"console_size": [0, 0]})
    assert process_spec({}, ["sh"], {}, "c" * 64).console_size == (0, 0)
    for bad in ([30], [30, -1], ["30", "100"], [30, 1 << 16], 30, [True, 1]):
        with pytest.raises(BadInput, match="^invalid ConsoleSize: .*\\[height, width\\]"):
            runopts.normalized({"console_size": bad})


def test_stop_signal_the_flag_then_the_image_then_term():
    assert runopts.stop_signal({"stop_signal": "USR1"}, IMAGE["config"]) == 10
    assert runopts.stop_signal({}, IMAGE["config"]) == 3
    assert runopts.stop_signal({}, {}) == 15
    assert runopts.stop_signal({}, {"StopSignal": "NOPE"}) == 15  # ignored, as docker's
    with pytest.raises(BadInput, match="invalid signal: SIGNOPE"):
        runopts.normalized({"stop_signal": "SIGNOPE"})


def test_stop_timeout_given_then_recorded_then_ten():
    assert runopts.stop_timeout({"stop_timeout": 1}, None) == 1
    assert runopts.stop_timeout({"stop_timeout": 1}, 3) == 3
    assert runopts.stop_timeout({}, None) == 10
    assert runopts.stop_timeout({"stop_timeout": 0}, None) == 0
    assert runopts.stop_timeout({"stop_timeout": -1}, None) is None
    with pytest.raises(BadInput):
        runopts.normalized({"stop_timeout": "5"})


# --- logging -----------------------------------------------------------------------------------

def test_log_config_as_docker_judges_it():
    assert runopts.checked_log_config({"Type": "", "Config": {"max-file": "100"}}) == \
        {"Type": "json-file", "Config": {"max-file": "100"}}
    assert runopts.checked_log_config({"Type": "none"}) == {"Type": "none", "Config": {}}
    with pytest.raises(BadInput, match="^logger: no log driver named 'asdf' is registered$"):
        runopts.checked_log_config({"Type": "asdf", "Config": {}})
    with pytest.raises(BadInput, match="unknown log opt 'foo' for json-file log driver"):
        runopts.checked_log_config({"Type": "json-file", "Config": {"foo": "1"}})
    with pytest.raises(BadInput, match="'syslog'.*not supported by lamina yet"):
        runopts.checked_log_config({"Type": "syslog"})
    with pytest.raises(BadInput, match="'compress'.*not supported by lamina yet"):
        runopts.checked_log_config({"Type": "json-file", "Config": {"compress": "true"}})
    with pytest.raises(BadInput, match="max-file cannot be less than 1"):
        runopts.checked_log_config({"Config": {"max-file": "0"}})
    with pytest.raises(BadInput, match="invalid size: 'lots'"):
        runopts.checked_log_config({"Config": {"max-size": "lots"}})


def test_max_size_is_decimal_as_go_units_from_human_size():
    assert runopts.from_human_size("10m") == 10_000_000
    assert runopts.from_human_size("1k") == 1000
    assert runopts.from_human_size("1.5KiB") == 1500
    assert runopts.from_human_size("300") == 300
    spec = process_spec(IMAGE, [], {"log_config": {"Type": "json-file", "Config": {
        "max-size": "1k", "max-file": "2"}}}, "c" * 64)
    assert (spec.log_driver, spec.log_max_size, spec.log_max_file) == ("json-file", 1000, 2)
    none = process_spec(IMAGE, [], {"log_config": {"Type": "none", "Config": {}}}, "c" * 64)
    assert none.log_driver == "none"


def test_logs_of_a_none_container_refused_in_docker_words():
    with pytest.raises(runopts.LogsNotSupported,
                       match="^configured logging driver does not support reading$"):
        runopts.readable({"log_config": {"Type": "none", "Config": {}}})
    runopts.readable({})


# --- the json-file log's rotation ---------------------------------------------------------------

def _lines(path, offset=0):
    return [(end, e["log"]) for end, e in logfile.read(path, offset)]


def test_rotation_as_docker_rotates(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logfile.JsonLog(path, max_size=200, max_file=3)
    for i in range(12):
        log.write("stdout", f"line {i:02}\n".encode())
    log.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["c-json.log", "c-json.log.1", "c-json.log.2", "log.rotated"]
    for name in names[:-1]:
        # a file is rotated once it has reached max-size: never more than one line beyond
        assert os.path.getsize(tmp_path / name) < 200 + 80
    texts = [text for _, text in _lines(path)]
    assert texts == [f"line {i:02}\n" for i in range(12 - len(texts), 12)]  # in order
    assert len(texts) < 12  # the oldest file was dropped
    ends = [end for end, _ in _lines(path)]
    assert ends == sorted(ends) and ends[-1] == logfile.end(path)


def test_a_follower_keeps_its_place_across_a_rotation(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logfile.JsonLog(path, max_size=100, max_file=2)
    log.write("stdout", b"first\n")
    seen = _lines(path)
    offset = seen[-1][0]
    for i in range(3):
        log.write("stderr", f"more {i}\n".encode())
    after = _lines(path, offset)
    assert [text for _, text in after] == ["more 0\n", "more 1\n", "more 2\n"]
    assert after[0][0] > offset
    log.close()


def test_max_file_one_starts_the_file_again(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logfile.JsonLog(path, max_size=50, max_file=1)
    for i in range(5):
        log.write("stdout", f"number {i}\n".encode())
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "log.rotated"]
    assert [text for _, text in _lines(path)] == ["number 4\n"]
    with open(path) as f:
        entry = json.loads(f.readline())
    assert entry["stream"] == "stdout" and entry["time"].endswith("Z")


def test_no_rotation_no_side_file(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logfile.JsonLog(path)
    log.write("stdout", b"a\nb\n")
    log.close()
    assert os.listdir(tmp_path) == ["c-json.log"]
    assert [t for _, t in _lines(path)] == ["a\n", "b\n"]
    assert logfile.end(path) == os.path.getsize(path)
    assert logfile.end(str(tmp_path / "missing-json.log")) == 0


# --- the CLI's flags, as docker's CLI reads them -------------------------------------------------

def _cli(*argv: str) -> dict:
    from adapters.cli import build_parser
    from adapters.cli.storage import create_options

    return create_options(build_parser(["run"]).parse_args(["run", *argv, "busybox"]))


def test_cli_flags_become_docker_api_shapes():
    opts = _cli("--init", "--ulimit", "nofile=64:128", "--stop-signal", "USR1",
                "--stop-timeout", "0", "--log-opt", "max-size=1k", "--log-opt", "max-file=2")
    assert opts["init"] is True and opts["stop_signal"] == "USR1"
    assert opts["stop_timeout"] == 0, "0 is a request: kill at once"
    assert opts["ulimits"] == [{"Name": "nofile", "Soft": 64, "Hard": 128}]
    assert opts["log_config"] == {"Type": "", "Config": {"max-size": "1k", "max-file": "2"}}
    assert _cli("--log-driver", "none")["log_config"] == {"Type": "none", "Config": {}}
    with pytest.raises(BadInput, match="^invalid logging opts for driver none$"):
        _cli("--log-driver", "none", "--log-opt", "max-size=1k")
    with pytest.raises(BadInput, match='^invalid argument "x=1" for "--ulimit" flag: '
                                       "invalid ulimit type: x$"):
        _cli("--ulimit", "x=1")


def test_env_file_and_label_file_as_docker_kvfile(tmp_path, monkeypatch):
    env = tmp_path / "env"
    env.write_bytes(b"\xef\xbb\xbf# comment\nA=1\n  B=two words \nCALLER\nUNSET\n\nC=\r\n")
    monkeypatch.setenv("CALLER", "here")
    monkeypatch.delenv("UNSET", raising=False)
    assert _cli("--env-file", str(env), "-e", "A=2")["env"] == \
        ["A=1", "B=two words ", "CALLER=here", "C=", "A=2"]
    labels = tmp_path / "labels"
    labels.write_text("bare\n  spaced=v  \nk=v\n")
    assert _cli("--label-file", str(labels), "-l", "x")["labels"] == \
        {"spaced": "v  ", "k": "v", "x": ""}
    bad = tmp_path / "bad"
    bad.write_text("a b=1\n")
    with pytest.raises(BadInput, match=r"^invalid env file \(.*\): variable 'a b' contains "
                                       "whitespaces$"):
        _cli("--env-file", str(bad))
    with pytest.raises(BadInput, match="^label 'a b' contains whitespaces$"):
        _cli("-l", "a b=1")
    with pytest.raises(BadInput, match="^open .*nope: no such file or directory$"):
        _cli("--env-file", str(tmp_path / "nope"))
