"""tools/dockerpy_compat.py's reading of pytest's junit reports and its tally: the counts per
file and engine, and the tests docker passes that lamina doesn't, with lamina's reason."""

from __future__ import annotations

import json
from pathlib import Path

from tools.dockerpy_compat import (
    FILES,
    NETWORK_FILES,
    NOT_RUN,
    TALLY,
    Outcome,
    defined,
    node_id,
    read_junit,
    tally,
    tally_json,
    tally_text,
)

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="docker-py" errors="1" failures="1" skipped="1" tests="4">
<testcase classname="tests.integration.api_exec_test.ExecTest" name="test_exec" time="0.1"/>
<testcase classname="tests.integration.api_exec_test.ExecTest" name="test_demux" time="0.1">
<failure message="AssertionError: assert b'x' == b'y'&#10;more">trace</failure></testcase>
<testcase classname="tests.integration.api_image_test.CommitTest" name="test_commit" time="0">
<error message="failed on teardown with &quot;APIError: 500&quot;">trace</error></testcase>
<testcase classname="tests.integration.api_build_test" name="test_module_level" time="0">
<skipped type="pytest.skip" message="Feature requires 1.99">skip</skipped></testcase>
</testsuite></testsuites>
"""


def test_junit_cases_become_node_ids_with_outcomes() -> None:
    assert read_junit(REPORT) == [
        Outcome("api_exec_test.py::ExecTest::test_exec", "passed"),
        Outcome("api_exec_test.py::ExecTest::test_demux", "failed",
                "AssertionError: assert b'x' == b'y'"),
        Outcome("api_image_test.py::CommitTest::test_commit", "failed",
                'failed on teardown with "APIError: 500"'),
        Outcome("api_build_test.py::test_module_level", "skipped", "Feature requires 1.99"),
    ]
    assert node_id("tests.integration.models_images_test.ImageTest", "test_x") == \
        "models_images_test.py::ImageTest::test_x"


def test_tally_counts_per_file_and_lists_what_only_docker_passes() -> None:
    docker = read_junit(REPORT)
    docker[1] = Outcome(docker[1].test, "passed")
    lamina = read_junit(REPORT)
    lamina.append(Outcome("api_exec_test.py::ExecTest::test_extra", "passed"))
    t = tally({"docker": docker, "lamina": lamina}, FILES)
    exec_file = t.files["api_exec_test"]
    assert (exec_file["docker"].passed, exec_file["docker"].failed) == (2, 0)
    assert (exec_file["lamina"].passed, exec_file["lamina"].failed) == (2, 1)
    assert t.files["api_build_test"]["lamina"].skipped == 1
    assert t.gaps == {"api_exec_test.py::ExecTest::test_demux":
                      "AssertionError: assert b'x' == b'y'"}
    assert t.extra == ["api_exec_test.py::ExecTest::test_extra"]


def test_the_document_names_each_gap_and_what_was_not_run() -> None:
    docker = [Outcome("api_exec_test.py::ExecTest::test_a", "passed"),
              Outcome("api_network_test.py::T::test_n", "passed")]
    lamina = [Outcome("api_exec_test.py::ExecTest::test_a", "failed", "a | b")]
    text = "\n".join(tally_text(tally_json(tally({"docker": docker, "lamina": lamina},
                                                 [*FILES, *NETWORK_FILES]), "now")))
    assert "| `api_exec_test` | 1 / 0 / 0 | 0 / 1 / 0 |" in text
    assert "- `api_exec_test.py::ExecTest::test_a`: a / b" in text
    assert "- `api_network_test.py::T::test_n`: not run" in text
    for test in NOT_RUN:
        assert f"- `{test}`: " in text


def test_every_test_named_is_in_a_tallied_file() -> None:
    """The lists name tests of the files tallied (the harness checks, on extracting
    docker-py's files, that each test it leaves out is still defined there)."""
    data = json.loads(TALLY.read_text())
    modules = {f"{f}.py" for f in (*FILES, *NETWORK_FILES)}
    for test in [*NOT_RUN, *data["gaps"]]:
        assert test.split("::")[0] in modules, test
    assert set(data["files"]) == {*FILES, *NETWORK_FILES}


def test_the_harness_refuses_a_clone_without_a_test_it_leaves_out(tmp_path: Path) -> None:
    """defined() reads docker-py's files: a test they don't define is found missing."""
    test = next(iter(NOT_RUN))
    module, *_, name = test.split("::")
    source = tmp_path / "tests" / "integration" / module
    source.parent.mkdir(parents=True)
    source.write_text(f"class T:\n    def {name}(self):\n        pass\n")
    assert defined(tmp_path, test)
    source.write_text("class T:\n    pass\n")
    assert not defined(tmp_path, test)
