"""core/compat.py: every create field has one status, the CLI and the API refuse the same
fields by the same line, and docs/compatibility.md is what the table says."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.cli import build_parser
from adapters.cli.storage import create_options
from adapters.dockerapi.containers import create_options as api_options
from core import runopts
from core.compat import BY_KEY, FIELDS, Status, checked
from core.errors import BadInput
from tools.docs import DOCS, compatibility_text


def test_one_entry_per_field_and_key() -> None:
    assert len({f.api for f in FIELDS}) == len(FIELDS)
    keys = [f.key for f in FIELDS if f.key and f.api != "Config.NetworkDisabled"]
    assert len(set(keys)) == len(keys)
    assert all(f.key for f in FIELDS if f.status is Status.REFUSED)


def test_the_committed_table_is_the_generated_one() -> None:
    assert (Path(DOCS) / "compatibility.md").read_text() == compatibility_text(), \
        "docs/compatibility.md is stale: run make docs"


def cli(*argv: str) -> dict:
    return create_options(build_parser(["run"]).parse_args(["run", *argv, "busybox"]))


@pytest.mark.parametrize("field", [f for f in FIELDS if f.status is Status.REFUSED
                                   and f.cli.startswith("-")], ids=lambda f: f.api)
def test_every_refused_flag_is_refused_by_its_field(field) -> None:
    flag = field.cli.split(", ")[-1]
    switch = flag in ("--init", "--publish-all", "--oom-kill-disable")
    options = cli(flag) if switch else cli(flag, "x")
    with pytest.raises(BadInput, match=f"^{field.name} .*is not supported by lamina yet"):
        checked(options)


def test_api_defaults_are_no_request_and_requests_are_refused() -> None:
    body = {"Image": "busybox", "Cmd": ["true"], "Volumes": {}, "Labels": {},
            "HostConfig": {"NetworkMode": "default", "LogConfig": {"Type": "", "Config": {}},
                           "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                           "MemorySwappiness": -1, "PidsLimit": 0, "ConsoleSize": [0, 0],
                           "Binds": None, "CgroupnsMode": "", "KernelMemory": 0},
            "NetworkingConfig": {"EndpointsConfig": {"default": {"IPAMConfig": None}}}}
    _, options = api_options(body)
    assert checked(options) == {}
    refusals = {
        "logging driver 'syslog' (--log-driver syslog)": {"LogConfig": {"Type": "syslog"}},
        "HostConfig.KernelMemory is": {"KernelMemory": 4 << 20},
        "HostConfig.Sysctls (--sysctl)": {"Sysctls": {"net.core.somaxconn": "1024"}},
    }
    for message, host in refusals.items():
        _, options = api_options({"Image": "busybox", "HostConfig": host})
        with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            runopts.normalized(checked(options))  # a driver is judged by core/runopts.py
    _, options = api_options({"Image": "b", "NetworkingConfig": {"EndpointsConfig": {"net": {
        "Aliases": ["web"]}}}})
    assert checked(options) == {"endpoints": {"net": {"Aliases": ["web"]}}}, \
        "endpoint settings are applied (judged by core/engine/attaching.py)"


def test_applied_fields_become_their_options() -> None:
    _, options = api_options({"Image": "b", "Hostname": "h", "Env": ["A=1"], "Tty": True,
                              "HostConfig": {"Memory": 1 << 20, "NanoCpus": 500_000_000,
                                             "CapAdd": ["NET_ADMIN"], "AutoRemove": True,
                                             "MaskedPaths": [], "ReadonlyPaths": []}})
    assert checked(options) == {"hostname": "h", "env": ["A=1"], "tty": True,
                                "memory": 1 << 20, "cpus": 0.5, "cap_add": ["NET_ADMIN"],
                                "auto_remove": True,
                                "security_opt": ["systempaths=unconfined"]}
    assert set(options) - {"unsupported"} <= set(BY_KEY)
