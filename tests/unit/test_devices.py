"""The device allow-list, pure: rules, the v1 model, and the v2 BPF program decoded and run.

The BPF program is checked two ways: its structure (docker's prologue, forward jumps that
stay inside it, a verdict before every exit, default deny last) and its meaning, by running
it in a small interpreter over many requests and comparing each verdict with the v1 model
(`effective(...).permits`), which the kernel tests in turn check against the real kernel.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from adapters.kernel import devices as kdev
from core.devices import (
    ALLOW_ALL,
    DEFAULT_NODES,
    DEFAULT_RULES,
    Node,
    Policy,
    Rule,
    container_nodes,
    effective,
    inside_parts,
    parse_rule,
    policy_of_list,
    render,
    rules_for,
)
from core.errors import BadInput
from core.security import Security

# --- rules -------------------------------------------------------------------------------------


def test_default_rules_are_dockers_allow_list() -> None:
    assert [render(r) for r in DEFAULT_RULES] == [
        "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
        "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"]
    assert [(n.path, n.major, n.minor, n.mode) for n in DEFAULT_NODES] == [
        ("/dev/null", 1, 3, 0o666), ("/dev/zero", 1, 5, 0o666), ("/dev/full", 1, 7, 0o666),
        ("/dev/random", 1, 8, 0o666), ("/dev/urandom", 1, 9, 0o666), ("/dev/tty", 5, 0, 0o666)]


def test_rules_for_default_privileged_and_devices() -> None:
    assert rules_for(Security()) == list(DEFAULT_RULES)
    loop = Node("/dev/xvda", "b", 7, 3, 0o660, 0, 6, "r")
    assert rules_for(Security(privileged=True), [loop]) == [ALLOW_ALL]
    assert render(ALLOW_ALL) == "a *:* rwm"
    rules = rules_for(Security(), [loop, *DEFAULT_NODES, loop])
    assert rules == [*DEFAULT_RULES, Rule("b", 7, 3, "rm")], "one rule per new device, +m"


def test_rule_validation() -> None:
    assert Rule("c", 1, 3, "mwr").access == "rwm"
    for bad in (lambda: Rule("x", 1, 3), lambda: Rule("a", 1, None), lambda: Rule("c", 1, 3, ""),
                lambda: Rule("c", 1, 3, "rx"), lambda: Rule("c", 4096, 0),
                lambda: Rule("b", 0, 1 << 20), lambda: Node("/dev/p", "p", 1, 1),
                lambda: Node("/dev/n", "c", 1, 3, 0o10000)):
        with pytest.raises(BadInput):
            bad()


def test_render_and_parse_round_trip() -> None:
    for rule in (*DEFAULT_RULES, Rule("b", None, None, "m"), Rule("c", 10, 200, "rw")):
        assert parse_rule(render(rule)) == rule
    with pytest.raises(BadInput, match="invalid device rule"):
        parse_rule("c 1 rwm")


# --- the v1 model ------------------------------------------------------------------------------


def test_effective_folds_like_the_v1_kernel() -> None:
    assert effective([]) == Policy(False, ())
    merged = effective([Rule("c", 1, 3, "r"), Rule("c", 1, 3, "w")])
    assert merged.exceptions == (Rule("c", 1, 3, "rw"),)
    narrowed = effective([Rule("c", 1, 3, "rwm"), Rule("c", 1, 3, "w", allow=False),
                          Rule("c", 1, 5, "r"), Rule("c", 1, 5, "r", allow=False)])
    assert narrowed.exceptions == (Rule("c", 1, 3, "rm"),)
    reset = effective([Rule("c", 1, 3), ALLOW_ALL, Rule("b", 8, None, "w", allow=False)])
    assert reset == Policy(True, (Rule("b", 8, None, "w", allow=False),))


def test_permits() -> None:
    allow = effective([*DEFAULT_RULES, Rule("b", 7, 3, "r")])
    assert allow.permits("c", 1, 3, "rw") and allow.permits("c", 136, 42, "w")
    assert allow.permits("b", 7, 3, "r") and not allow.permits("b", 7, 3, "rw")
    assert not allow.permits("c", 1, 11, "r") and not allow.permits("b", 1, 3, "r")
    assert not allow.permits("c", 1, 11, "m")
    deny = effective([ALLOW_ALL, Rule("b", 8, None, "w", allow=False)])
    assert deny.permits("b", 7, 0, "rw") and deny.permits("b", 8, 1, "r")
    assert not deny.permits("b", 8, 1, "rw"), "an overlapping deny refuses"


def test_policy_of_list() -> None:
    assert policy_of_list("a *:* rwm\n") == Policy(True)
    assert policy_of_list("") == Policy(False)
    text = "\n".join(render(r) for r in DEFAULT_RULES) + "\n"
    assert policy_of_list(text) == effective(DEFAULT_RULES)


# --- nodes -------------------------------------------------------------------------------------


def test_inside_parts() -> None:
    assert inside_parts("/dev/snd/timer") == ["snd", "timer"]
    for bad in ("/dev", "/dev/", "/etc/passwd", "dev/null", "/dev/../etc/x", "/dev//null",
                "/dev/pts/0", "/dev/shm/x", "/dev/ptmx", "/dev/console", "/dev/fd"):
        with pytest.raises(BadInput):
            inside_parts(bad)


def test_container_nodes_later_wins() -> None:
    mine = Node("/dev/null", "c", 1, 3, 0o600, 1000, 1000)
    extra = Node("/dev/xvda", "b", 7, 0, 0o660, 0, 6, "r")
    nodes = container_nodes([extra, mine])
    assert [n.path for n in nodes] == [n.path for n in DEFAULT_NODES[1:]] + [
        "/dev/xvda", "/dev/null"]
    assert nodes[-1] == mine
    with pytest.raises(BadInput):
        container_nodes([Node("/dev/pts/9", "c", 136, 9)])


# --- the BPF program ---------------------------------------------------------------------------

Insn = tuple[int, int, int, int, int]


def decode(program: bytes) -> list[Insn]:
    assert len(program) % 8 == 0
    out = []
    for i in range(0, len(program), 8):
        code, regs, off, imm = struct.unpack_from("<BBhi", program, i)
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


def check_structure(insns: list[Insn]) -> None:
    """Forward jumps inside the program (so it terminates), r0 set just before each exit."""
    for pc, (code, _dst, _src, off, _imm) in enumerate(insns):
        if code in (kdev.JEQ_K, kdev.JNE_K, kdev.JNE_X):
            assert off >= 0 and pc + 1 + off < len(insns), f"bad jump at {pc}"
        if code == kdev.EXIT:
            assert insns[pc - 1][:2] == (kdev.MOV32_K, 0) and insns[pc - 1][4] in (0, 1)
    assert insns[-1][0] == kdev.EXIT


def run(insns: list[Insn], kind: str, major: int, minor: int, access: str) -> int:
    """Interpret the program on a struct bpf_cgroup_dev_ctx; only its opcodes exist."""
    ctx = struct.pack("<III", kdev._mask(access) << 16 | kdev.BPF_DEVCG_DEV[kind], major, minor)
    reg = [0] * 11
    pc = 0
    while True:
        code, dst, src, off, imm = insns[pc]
        pc += 1
        if code == kdev.LDX_W:
            assert src == 1
            reg[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == kdev.AND32_K:
            reg[dst] = reg[dst] & imm & 0xFFFFFFFF
        elif code == kdev.RSH32_K:
            reg[dst] = (reg[dst] & 0xFFFFFFFF) >> imm
        elif code == kdev.MOV32_K:
            reg[dst] = imm & 0xFFFFFFFF
        elif code == kdev.MOV32_X:
            reg[dst] = reg[src] & 0xFFFFFFFF
        elif code in (kdev.JEQ_K, kdev.JNE_K, kdev.JNE_X):
            other = reg[src] if code == kdev.JNE_X else imm
            if (reg[dst] == other) == (code == kdev.JEQ_K):
                pc += off
        elif code == kdev.EXIT:
            return reg[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def test_default_program_layout() -> None:
    insns = decode(kdev.program_v2(DEFAULT_RULES))
    check_structure(insns)
    assert insns[:6] == [(kdev.LDX_W, 2, 1, 0, 0), (kdev.AND32_K, 2, 0, 0, 0xFFFF),
                         (kdev.LDX_W, 3, 1, 0, 0), (kdev.RSH32_K, 3, 0, 0, 16),
                         (kdev.LDX_W, 4, 1, 4, 0), (kdev.LDX_W, 5, 1, 8, 0)]
    assert insns[-2:] == [(kdev.MOV32_K, 0, 0, 0, 0), (kdev.EXIT, 0, 0, 0, 0)], "default deny"
    # 8 exact rules of 5 instructions, pts/* of 4 (no minor test), the prologue and the end.
    assert len(insns) == 6 + 8 * 5 + 4 + 2
    allows = [pc for pc, i in enumerate(insns) if i[0] == kdev.MOV32_K and i[4] == 1]
    assert len(allows) == len(DEFAULT_RULES)


def test_privileged_program_allows_everything() -> None:
    insns = decode(kdev.program_v2([ALLOW_ALL]))
    check_structure(insns)
    assert insns[-2:] == [(kdev.MOV32_K, 0, 0, 0, 1), (kdev.EXIT, 0, 0, 0, 0)]
    assert len(insns) == 8


RULE_SETS = {
    "default": list(DEFAULT_RULES),
    "deny-all": [],
    "privileged": [ALLOW_ALL],
    "read-only loop": [*DEFAULT_RULES, Rule("b", 7, 3, "r")],
    "narrowed": [*DEFAULT_RULES, Rule("c", 1, 3, "w", allow=False), Rule("b", 7, None, "rm"),
                 Rule("c", None, None, "m")],
    "blacklist": [ALLOW_ALL, Rule("b", 7, None, "w", allow=False),
                  Rule("c", 1, 11, "rwm", allow=False), Rule("c", 136, 3, "m", allow=False)],
}
REQUESTS = list(itertools.product(
    "cb", (1, 5, 7, 136), (0, 3, 11), ("r", "w", "m", "rw", "rwm")))


@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_program_means_what_v1_means(name: str) -> None:
    rules = RULE_SETS[name]
    insns = decode(kdev.program_v2(rules))
    check_structure(insns)
    policy = effective(rules)
    verdicts = {req: run(insns, *req) for req in REQUESTS}
    assert verdicts == {req: int(policy.permits(*req)) for req in REQUESTS}
    assert len(set(verdicts.values())) == (1 if name in ("deny-all", "privileged") else 2)
