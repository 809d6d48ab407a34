"""The Dockerfile language, parsed without touching anything: a pure function of the text.

Why a parser of our own: the whole file must be judged before any step runs (an unknown
instruction on line 30 must not cost the 29 steps before it), and every error must be one
line naming the file and the line, as docker's classic builder does.

What it knows: parser directives (`# escape=`), comments (also inside continuations), line
continuations, each instruction's flags and shell/exec (JSON) forms, and the shell-like word
processing docker applies to ENV, LABEL, ARG, COPY, ... (quotes, the escape character, `$A`,
`${A}`, `${A:-x}`, `${A:+x}`). Substitution itself happens while building (`expand`), since
its values come from the base image's environment; parsing only proves it can be done.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadInput

# Instructions lamina builds; the ones docker knows that lamina refuses say so plainly.
KNOWN = frozenset({"FROM", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "WORKDIR",
                   "LABEL", "USER", "EXPOSE", "VOLUME", "STOPSIGNAL", "SHELL", "MAINTAINER",
                   "HEALTHCHECK", "ONBUILD"})
UNSUPPORTED: frozenset[str] = frozenset()
_FLAGS = {"COPY": {"from", "chown", "chmod"}, "ADD": {"chown", "chmod"}, "FROM": {"platform"},
          "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_]*)\s*=\s*(.*?)\s*$")
_REMOTE = re.compile(r"^(https?://|git@|git://|ssh://)", re.IGNORECASE)
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*")


class DockerfileError(BadInput):
    """A Dockerfile that can't be built: `<file>:<line>: <reason>`."""


@dataclass(frozen=True)
class Instruction:
    """One instruction. `rest` is its text after the flags (continuations joined);
    `exec_form` holds the JSON array of RUN/CMD/ENTRYPOINT/SHELL/COPY/ADD/VOLUME when given so.
    """

    keyword: str
    rest: str
    line: int
    original: str
    flags: Mapping[str, str] = field(default_factory=dict)
    exec_form: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Stage:
    """A FROM and the instructions up to the next FROM."""

    index: int
    base: str  # unexpanded: global ARGs may still be in it
    name: str | None
    line: int
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    name: str
    escape: str
    global_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]

    def stage_index(self, ref: str) -> int | None:
        """A stage by name (case-insensitive, as docker) or by number."""
        for stage in self.stages:
            if stage.name is not None and stage.name == ref.lower():
                return stage.index
        if ref.isdigit() and int(ref) < len(self.stages):
            return int(ref)
        return None

    def steps(self, upto: int | None = None) -> int:
        """How many steps a build of stages 0..upto runs (docker counts FROM as a step)."""
        last = len(self.stages) - 1 if upto is None else upto
        return sum(1 + len(s.instructions) for s in self.stages[:last + 1])


# --- lines -----------------------------------------------------------------------------------


def _directives(lines: list[str]) -> tuple[str, int]:
    """Parser directives at the very top; return the escape character and the first line
    index after them. A directive stops being one after any other line, as in docker."""
    escape, seen = "\\", set()
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip()) if line.strip().startswith("#") else None
        if m is None:
            return escape, i
        key = m.group(1).lower()
        if key in seen:
            raise DockerfileError(f"only one {key} parser directive can be used")
        seen.add(key)
        if key == "escape":
            if m.group(2) not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token {m.group(2)!r} does not match "
                                      "` or \\")
            escape = m.group(2)
    return escape, len(lines)


def logical_lines(text: str, escape: str = "\\", start: int = 0) -> list[tuple[int, str]]:
    """(first line number, text) per instruction: comments dropped, continuations joined."""
    out: list[tuple[int, str]] = []
    pending: str | None = None
    first = 0
    for number, raw in enumerate(text.splitlines()[start:], start + 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (pending is None and not stripped):
            continue
        if pending is not None and not stripped:
            continue  # docker: an empty continuation line is skipped
        body = raw.rstrip()
        continued = body.endswith(escape)
        if continued:
            body = body[:-1]
        if pending is None:
            pending, first = body.lstrip(), number
        else:
            pending += body
        if not continued:
            out.append((first, pending))
            pending = None
    if pending is not None and pending.strip():
        out.append((first, pending))
    return out


# --- words and substitution --------------------------------------------------------------------


class _Lexer:
    """docker's shell-word processing: quotes, the escape character and $-substitution."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text, self.env, self.escape, self.pos = text, env, escape, 0

    def words(self, split: bool) -> list[str]:
        words: list[str] = []
        word: list[str] = []
        has = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if split and ch.isspace():
                if has:
                    words.append("".join(word))
                    word, has = [], False
                continue
            has = True
            if ch == self.escape:
                if self.pos < len(self.text):
                    word.append(self.text[self.pos])
                    self.pos += 1
                else:
                    word.append(ch)
            elif ch == "'":
                word.append(self._until("'"))
            elif ch == '"':
                word.append(self._double())
            elif ch == "$":
                word.append(self._dollar())
            else:
                word.append(ch)
        if has:
            words.append("".join(word))
        return words

    def _until(self, quote: str) -> str:
        end = self.text.find(quote, self.pos)
        if end < 0:
            raise BadInput("unexpected end of statement while looking for matching single-quote")
        out, self.pos = self.text[self.pos:end], end + 1
        return out

    def _double(self) -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.pos < len(self.text) \
                    and self.text[self.pos] in ('"', "$", self.escape):
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)
        raise BadInput("unexpected end of statement while looking for matching double-quote")

    def _dollar(self) -> str:
        rest = self.text[self.pos:]
        if rest.startswith("{"):
            return self._braced()
        m = _NAME.match(rest)
        if m is None:
            return "$"
        self.pos += m.end()
        return self.env.get(m.group(0), "")

    def _braced(self) -> str:
        self.pos += 1
        m = _NAME.match(self.text[self.pos:])
        if m is None:
            raise BadInput("bad substitution: ${ needs a variable name")
        name = m.group(0)
        self.pos += m.end()
        if self.text[self.pos:self.pos + 1] == "}":
            self.pos += 1
            return self.env.get(name, "")
        op = self.text[self.pos:self.pos + 2]
        if op not in (":-", ":+"):
            raise BadInput(f"missing '}}' or unsupported modifier in ${{{name}...}}")
        self.pos += 2
        word = self._word_until_brace()
        value = self.env.get(name, "")
        if op == ":-":
            return value if value else word
        return word if value else ""

    def _word_until_brace(self) -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "}":
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == self.escape and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            else:
                out.append(ch)
        raise BadInput("syntax error: missing '}'")


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Words of `text` after quote removal and substitution (COPY sources, EXPOSE, ...)."""
    return _Lexer(text, env, escape).words(split=True)


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: `text` with substitution and quote removal, spaces kept (WORKDIR, USER)."""
    words = _Lexer(text, env, escape).words(split=False)
    return words[0] if words else ""


def key_values(keyword: str, text: str, env: Mapping[str, str],
               escape: str = "\\") -> list[tuple[str, str]]:
    """ENV and LABEL pairs: `k=v k2="v 2"`, or ENV's old one-pair form `ENV k v w`."""
    words = expand_words(text, env, escape)
    if not words:
        raise BadInput(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        if keyword != "ENV" or len(words) < 2:
            raise BadInput(f"{keyword} requires key=value arguments" if keyword != "ENV"
                           else "ENV must have two arguments")
        rest = text.strip()[len(text.strip().split(None, 1)[0]):].strip()
        return [(words[0], expand(rest, env, escape))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise BadInput(f"{keyword} names can not be blank" if not key
                           else f"syntax error - can't find = in {word!r}; must be of the "
                                "form: name=value")
        pairs.append((key, value))
    return pairs


def arg_pairs(text: str, env: Mapping[str, str],
              escape: str = "\\") -> list[tuple[str, str | None]]:
    """ARG's `NAME` or `NAME=default` words (a default may use earlier ARGs)."""
    out: list[tuple[str, str | None]] = []
    words = expand_words(text, env, escape)
    if not words:
        raise BadInput("ARG requires at least one argument")
    for word in words:
        key, sep, value = word.partition("=")
        if not _NAME.fullmatch(key):
            raise BadInput(f"invalid ARG name {key!r}")
        out.append((key, value if sep else None))
    return out


# --- instructions ------------------------------------------------------------------------------


def _split_flags(keyword: str, rest: str) -> tuple[dict[str, str], str]:
    """Leading `--name=value` flags; only those the instruction knows."""
    flags: dict[str, str] = {}
    allowed = _FLAGS.get(keyword, set())
    while rest.startswith("--"):
        word, *more = rest.split(None, 1)
        tail = more[0] if more else ""
        name, sep, value = word[2:].partition("=")
        if name not in allowed:
            raise BadInput(f"unknown flag: --{name}")
        if not sep or not value:
            raise BadInput(f"--{name} needs a value (--{name}=VALUE)")
        flags[name] = value
        rest = tail.lstrip()
    return flags, rest


def _json_array(rest: str) -> tuple[str, ...] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None  # docker: not valid JSON means shell form
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


def _check(ins: Instruction, escape: str) -> None:
    """Judge one instruction's arguments now, with empty values for every variable."""
    k, rest = ins.keyword, ins.rest
    empty: Mapping[str, str] = {}
    if not rest and k not in ("RUN", "CMD", "ENTRYPOINT"):
        raise BadInput(f"{k} requires at least one argument")
    if k in ("ENV", "LABEL"):
        key_values(k, rest, empty, escape)
    elif k == "ARG":
        arg_pairs(rest, empty, escape)
    elif k == "SHELL" and not ins.exec_form:
        raise BadInput("SHELL requires the arguments to be in JSON form")
    elif k in ("COPY", "ADD"):
        words = list(ins.exec_form) if ins.exec_form is not None \
            else expand_words(rest, empty, escape)
        if len(words) < 2:
            raise BadInput(f"{k} requires at least two arguments, but got {len(words)}")
        for src in words[:-1]:
            if _REMOTE.match(src):
                raise BadInput(f"{k} from a remote URL is not supported: {src}")
    elif k in ("WORKDIR", "USER", "STOPSIGNAL", "EXPOSE", "VOLUME", "MAINTAINER"):
        expand_words(rest, empty, escape)
    elif k == "HEALTHCHECK":
        healthcheck(ins)
    elif k == "ONBUILD":
        trigger(ins.line, rest, escape)


def healthcheck(ins: Instruction) -> dict[str, Any]:
    """HEALTHCHECK's Config.Healthcheck (core/health.py's rules): `NONE`, or `CMD` and a
    command in shell form (one string, run by the shell: CMD-SHELL) or exec form (JSON)."""
    from core.health import from_instruction

    kind, *tail = ins.rest.split(None, 1)
    command = tail[0].strip() if tail else ""
    argv = _json_array(command)
    words = [kind, *(argv if argv is not None else [command] if command else [])]
    return from_instruction(words, argv is not None, ins.flags)


def trigger(line: int, text: str, escape: str = "\\") -> Instruction:
    """ONBUILD's instruction (docker's rules: no ONBUILD, FROM or MAINTAINER in it), judged
    as the file's own are; recorded as written in the image's Config.OnBuild, it runs when a
    later build starts FROM that image."""
    keyword = text.split(None, 1)[0].upper()
    if keyword == "ONBUILD":
        raise BadInput("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if keyword in ("FROM", "MAINTAINER"):
        raise BadInput(f"{keyword} isn't allowed as an ONBUILD trigger")
    return _instruction(line, text, escape)


def _instruction(number: int, text: str, escape: str) -> Instruction:
    keyword, *tail = text.strip().split(None, 1)
    keyword, rest = keyword.upper(), (tail[0].strip() if tail else "")
    if keyword in UNSUPPORTED:
        raise BadInput(f"{keyword} is not supported by lamina build")
    if keyword not in KNOWN:
        raise BadInput(f"unknown instruction: {text.split()[0]}")
    flags, rest = _split_flags(keyword, rest) \
        if keyword in ("COPY", "ADD", "FROM", "RUN", "HEALTHCHECK") \
        else ({}, rest)
    exec_form = _json_array(rest) if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY",
                                                  "ADD", "VOLUME") else None
    ins = Instruction(keyword, rest, number, text.strip(), flags, exec_form)
    _check(ins, escape)
    return ins


def _from_parts(ins: Instruction, escape: str) -> tuple[str, str | None]:
    words = ins.rest.split()
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
            raise BadInput(f"invalid name for build stage: {words[2]!r}, name can't start "
                           "with a number or contain symbols")
        return words[0], name
    if len(words) != 1:
        raise BadInput("FROM requires either one or three arguments (IMAGE [AS NAME])")
    return words[0], None


def parse(text: str, name: str = "Dockerfile") -> Dockerfile:
    """The whole file, or a DockerfileError naming `name` and the line."""
    lines = text.splitlines()
    try:
        escape, start = _directives(lines)
    except BadInput as err:
        raise DockerfileError(f"{name}:1: {err}") from None
    global_args: list[Instruction] = []
    stages: list[tuple[Instruction, str, str | None, list[Instruction]]] = []
    for number, body in logical_lines(text, escape, start):
        try:
            ins = _instruction(number, body, escape)
            if ins.keyword == "FROM":
                base, stage_name = _from_parts(ins, escape)
                if stage_name and any(s[2] == stage_name for s in stages):
                    raise BadInput(f"duplicate name for build stage: {stage_name!r}")
                stages.append((ins, base, stage_name, []))
            elif not stages:
                if ins.keyword != "ARG":
                    raise BadInput(f"{ins.keyword} before the first FROM: only ARG may come "
                                   "before FROM")
                global_args.append(ins)
            else:
                _check_copy_from(ins, stages)
                stages[-1][3].append(ins)
        except DockerfileError:
            raise
        except BadInput as err:
            raise DockerfileError(f"{name}:{number}: {err}") from None
    if not stages:
        raise DockerfileError(f"{name}:{len(lines) or 1}: no FROM instruction: a Dockerfile "
                              "must start a build stage with FROM")
    return Dockerfile(name, escape, tuple(global_args), tuple(
        Stage(i, base, stage_name, ins.line, tuple(body))
        for i, (ins, base, stage_name, body) in enumerate(stages)))


def _check_copy_from(ins: Instruction, stages: list) -> None:
    """`COPY --from` names an earlier stage (or an image); never its own stage."""
    ref = ins.flags.get("from")
    if ref is None:
        return
    current = len(stages) - 1
    if ref.isdigit() and int(ref) >= current:
        raise BadInput(f"COPY --from={ref}: stage {ref} is not an earlier stage")
    if stages[-1][2] is not None and ref.lower() == stages[-1][2]:
        raise BadInput(f"COPY --from={ref}: a stage can't copy from itself")
