"""What a start may hand the fork server's spare monitor (adapters/runtime/sparemonitor.py),
and how the spare renumbers the descriptors its plan names: no kernel needed."""

from __future__ import annotations

import dataclasses
import pickle

from adapters.kernel.idmap import IdMap
from adapters.runtime import sparemonitor
from adapters.runtime.init import InitPlan
from adapters.runtime.monitor import MonitorJob
from core.mounts import MountPoint
from core.process import process_spec

IMAGE = {"config": {"Cmd": ["sh"]}}


def plan(**config: object) -> InitPlan:
    spec = process_spec(IMAGE, ["true"], dict(config), "c" * 64)
    return InitPlan(spec=spec, rootfs="/merged", cgroup_dirs=["/sys/fs/cgroup/x"],
                    files={"/etc/hosts": "/c/hosts", "/etc/tree": 7}, go_fd=5, netns_fd=6,
                    mounts=[(MountPoint("volume", "/data", "v"), 8),
                            (MountPoint("bind", "/src", "/host"), "/host")])


def test_a_plain_plan_with_all_its_descriptors_may_be_handed() -> None:
    assert sparemonitor._portable(plan(), (5, 6, 7, 8))


def test_a_descriptor_the_plan_names_but_does_not_bring_refuses_it() -> None:
    assert not sparemonitor._portable(plan(), (5, 6, 8))


def test_a_remapped_or_host_pid_monitor_forks_its_own() -> None:
    """The spare has made a plain PID namespace: a remapped init is cloned into a user
    namespace and the PID namespace it owns, a --pid host one needs none."""
    remapped = dataclasses.replace(plan(), idmap=IdMap.from_rows([[0, 100000, 65536]],
                                                                 [[0, 100000, 65536]]))
    assert not sparemonitor._portable(remapped, (5, 6, 7, 8))
    assert not sparemonitor._portable(plan(pid="host"), (5, 6, 7, 8))


def test_the_spare_renumbers_every_descriptor_and_nothing_else() -> None:
    moved = sparemonitor.renumbered(plan(), {5: 10, 6: 11, 7: 12, 8: 13})
    assert (moved.go_fd, moved.netns_fd) == (10, 11)
    assert moved.files == {"/etc/hosts": "/c/hosts", "/etc/tree": 12}
    assert [source for _, source in moved.mounts] == [13, "/host"]
    unset = sparemonitor.renumbered(dataclasses.replace(plan(), go_fd=-1, netns_fd=-1),
                                    {7: 12, 8: 13})
    assert (unset.go_fd, unset.netns_fd) == (-1, -1)


def test_a_job_survives_the_trip() -> None:
    """The job goes pickled: what arrives is what was sent."""
    handed = sparemonitor.Handed(MonitorJob("/root", "c" * 64, "/root/c", plan()), (5, 6),
                                 {"A": "b"}, 0o027)
    assert pickle.loads(pickle.dumps(handed)) == handed
