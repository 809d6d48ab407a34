"""core.security: docker's rules for capabilities, --security-opt, --device and namespace
modes, judged before anything is recorded."""

from __future__ import annotations

import json

import pytest

from core.errors import BadInput
from core.security import (
    ALL_CAPS,
    DEFAULT_CAPS,
    SECCOMP_DEFAULT,
    SECCOMP_UNCONFINED,
    Device,
    capabilities,
    normalized,
    parse_device,
    security_of,
    security_opts,
)


def test_capabilities_follow_dockers_rule() -> None:
    assert capabilities() == DEFAULT_CAPS
    assert capabilities(add=["cap_sys_admin"]) == DEFAULT_CAPS | {"SYS_ADMIN"}
    assert capabilities(drop=["CHOWN", "Kill"]) == DEFAULT_CAPS - {"CHOWN", "KILL"}
    assert capabilities(drop=["ALL"], add=["NET_ADMIN"]) == {"NET_ADMIN"}
    assert capabilities(add=["ALL"], drop=["SYS_ADMIN"]) == ALL_CAPS - {"SYS_ADMIN"}
    assert capabilities(drop=["ALL"], privileged=True) == ALL_CAPS
    with pytest.raises(BadInput, match="unknown capability: 'CAP_FLY'"):
        capabilities(add=["CAP_FLY"])


def test_security_opts_take_dockers_forms_and_refuse_the_rest() -> None:
    assert security_opts(["no-new-privileges"]) == {"no_new_privs": True}
    assert security_opts(["no-new-privileges=false"]) == {"no_new_privs": False}
    assert security_opts(["no-new-privileges:true"]) == {"no_new_privs": True}
    assert security_opts(["seccomp=unconfined"]) == {"seccomp": SECCOMP_UNCONFINED}
    assert security_opts(["seccomp=builtin"]) == {}
    assert security_opts(["systempaths=unconfined"]) == {"systempaths": "unconfined"}
    for opt in ("apparmor=unconfined", "label=disable", "no-new-privileges=maybe", "bogus"):
        with pytest.raises(BadInput, match="security-opt"):
            security_opts([opt])


def test_device_syntax_is_dockers() -> None:
    assert parse_device("/dev/loop3") == Device("/dev/loop3", "/dev/loop3", "rwm")
    assert parse_device("/dev/loop3:r") == Device("/dev/loop3", "/dev/loop3", "r")
    assert parse_device("/dev/loop3:/dev/disk") == Device("/dev/loop3", "/dev/disk", "rwm")
    assert parse_device("/dev/loop3:/dev/disk:rw") == Device("/dev/loop3", "/dev/disk", "rw")
    for bad in ("", "loop3", "/dev/a:/b:rwx", "/dev/a:/b:rr", "/a:b:c:d", "/dev/a:disk"):
        with pytest.raises(BadInput):
            parse_device(bad)


def test_privileged_means_every_cap_no_seccomp_no_masks() -> None:
    sec = security_of({"privileged": True})
    assert sec.caps == ALL_CAPS and sec.seccomp == SECCOMP_UNCONFINED
    assert not sec.masked_paths
    assert security_of({}).seccomp == SECCOMP_DEFAULT and security_of({}).masked_paths
    assert security_of({}).no_new_privs  # lamina's default, unlike docker's


def test_normalized_records_parsed_keys_and_refuses_by_name() -> None:
    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW"})
    out = normalized({"env": ["A=1"], "security_opt": ["no-new-privileges=false",
                                                        f"seccomp={profile}"]})
    assert out == {"env": ["A=1"], "no_new_privs": False, "seccomp": profile}
    refusals = {
        "--pid 'container:web' is not supported": {"pid": "container:web"},
        "--ipc 'container:web' is not supported": {"ipc": "container:web"},
        "conflicting options: --hostname and --uts host": {"uts": "host", "hostname": "x"},
        "seccomp profile is not valid JSON": {"security_opt": ["seccomp={nope"]},
        "must be a JSON object with a defaultAction": {"security_opt": ["seccomp=[1]"]},
        "invalid device": {"devices": ["nope"]},
    }
    for message, options in refusals.items():
        with pytest.raises(BadInput, match=message):
            normalized(options)
