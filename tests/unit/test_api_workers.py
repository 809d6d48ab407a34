"""The Docker API's workers (adapters/dockerapi/worker.py, spares.py, reporter.py): a job
that pickles runs in the workers' fork server's spare, not in a child of the serving
process; a closure, or a job handed a descriptor, is forked from it; either way its report
and its end come back, and its events carry the caller's meta. The spare runs the service's
own spares.Jobs, as `lamina serve` starts it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from adapters.dockerapi import spares
from adapters.dockerapi.worker import Workers
from tests.sessions import engine as _engine

META = {"uid": 0, "user": "root", "pid": 4242, "via": "docker-api"}


def _whereabouts(_tag: str, e: Any, _rep: Any) -> list[int]:
    """The worker's parent and whether the log's connection was open before the job."""
    return [os.getppid(), int(e.log._con is not None)]


def _import(e: Any, _rep: Any) -> str:
    e.import_image({"bin/sh": "x"}, "busybox")
    return str(e.image("busybox").id)


def _refused(e: Any, _rep: Any) -> None:
    e.start("nothing-by-this-name")


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[Any, Workers, int]]:
    e = _engine(str(tmp_path))
    e.log.con  # noqa: B018 - made, as the service makes it before it forks
    pid, address = spares.start(spares.Jobs(e), str(tmp_path))
    loop = asyncio.new_event_loop()
    try:
        yield e, Workers(e, loop, spares=address), pid
    finally:
        loop.close()
        spares.stop(pid)


def _run(workers: Workers, job: Any, keep: tuple[int, ...] = ()) -> Any:
    async def call_and_wait_for_the_end() -> Any:
        report = await workers.call(job, META, keep)
        while workers.children:
            await workers.settle(0.1)
        return report

    return workers.loop.run_until_complete(call_and_wait_for_the_end())


def test_a_job_that_pickles_runs_in_the_spare_with_the_log_opened_ahead(served) -> None:
    _, workers, server = served
    report = _run(workers, partial(_whereabouts, "x"))
    assert report.ok and report.value == [server, 1]


def test_a_closure_or_a_job_given_a_descriptor_is_forked_here(served) -> None:
    _, workers, _ = served
    report = _run(workers, lambda e, rep: _whereabouts("x", e, rep))
    assert report.ok and report.value[0] == os.getpid()
    r, w = os.pipe()
    try:
        report = _run(workers, partial(_whereabouts, "x"), keep=(r,))
    finally:
        os.close(r)
        os.close(w)
    assert report.ok and report.value[0] == os.getpid()


def test_the_spares_job_records_as_the_caller_and_its_refusal_comes_back(served) -> None:
    e, workers, _ = served
    report = _run(workers, _import)
    assert report.ok
    assert [r.meta["pid"] for r in e.log.read() if r.type == "ImageCreated"] == [4242]
    refused = _run(workers, _refused)
    assert refused.kind == "NotFound" and "nothing-by-this-name" in refused.error


def test_without_its_fork_server_a_job_is_forked_here(served) -> None:
    _, workers, server = served
    spares.stop(server)
    report = _run(workers, partial(_whereabouts, "x"))
    assert report.ok and report.value[0] == os.getpid()
