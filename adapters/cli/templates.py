"""docker's `--format` templates, once for every command that takes one: Go's text/template
language with the docker CLI's functions, `table` heads and Go's tabwriter that aligns them.

What is implemented (the subset docker users write; see tests/unit/test_templates.py):
- text and actions `{{...}}`, trim markers `{{- ` and ` -}}`, comments `{{/* */}}`;
- fields `.A.B`, `.` and `$`, variables `$x := ...` / `$x = ...`, parenthesized pipelines
  with fields after them `(index .A "k").B`, pipes `{{.X | json}}`, string (interpreted and raw),
  number, character, `true`/`false`/`nil` literals;
- `if`/`else if`/`else`/`end`, `with`/`else with`/`else`, `range` (lists, maps in key order,
  integers; `$i, $v :=`; `else`; `break`, `continue`);
- Go's functions `and or not len index slice eq ne lt le gt ge print printf println html js
  urlquery`, docker's `json split join title lower upper pad truncate`;
- values print as Go's fmt does (`[a b]`, `map[k:v]`, `<no value>` for a missing key).
Not implemented: `define`, `template`, `block` and `call` (refused by name).

A row of a list command (ps, images...) is a `Row`: each field a method, so that only the
fields a template names are computed; `{{json .}}` gives them all, as docker's does.
Errors are TemplateError, one line in Go's words (`template: :1:2: executing "" at <.Foo>:
...`); commands prefix docker's `template parsing error: `.

Pure: no I/O, nothing of lamina's; imported only by commands given a template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any


class TemplateError(ValueError):
    """A template that does not parse, or fails on a value: one line, Go's wording."""


class Row:
    """A list command's row as docker's formatter sees it: FIELDS are its method names;
    HEADERS their column titles for `table`; TYPE is docker's Go type (for messages)."""

    FIELDS: tuple[str, ...] = ()
    HEADERS: Mapping[str, str] = {}
    TYPE = "*formatter.Context"
    METHODS: tuple[str, ...] = ()  # fields that take arguments (`.Label "k"`)

    def fields(self) -> dict[str, Any]:
        """{{json .}}: every field, as docker marshals a formatter context (sorted keys)."""
        return {name: getattr(self, name)() for name in sorted(self.FIELDS)}


class _Missing:
    """Go's invalid value: a map's missing key or a null, printed `<no value>`."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()
_NONE: Any = object()  # no piped value


# --- lexer ---------------------------------------------------------------------------------

_SPACE = " \t\r\n"
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|"
                     r"(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
            "f": "\f", "r": "\r", "v": "\v"}
KEYWORDS = ("if", "else", "end", "range", "with", "break", "continue", "define", "template",
            "block")


class _Tok:
    __slots__ = ("kind", "value", "pos", "spaced", "end")

    def __init__(self, kind: str, value: Any, pos: int, spaced: bool) -> None:
        self.kind, self.value, self.pos, self.spaced = kind, value, pos, spaced
        self.end = pos

    def __repr__(self) -> str:
        if self.kind in ("field",):
            return f"<.{self.value}>"
        if self.kind in ("string", "raw"):
            return f"<{json.dumps(self.value)}>"
        return f"<{self.value}>"


def _unquote(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2:i + 2 + size]
            try:
                out.append(chr(int(digits, 16)) if len(digits) == size else "")
            except ValueError:
                raise TemplateError("invalid syntax in quoted string") from None
            i += 2 + size
        elif nxt.isdigit():
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise TemplateError("invalid syntax in quoted string")
    return "".join(out)


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    sign = -1 if clean.startswith("-") else 1
    body = clean.lstrip("+-")
    if body[:2].lower() in ("0x", "0b", "0o"):
        return sign * int(body, 0)
    if "." in body or "e" in body.lower():
        return sign * float(body)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body, 8)
    return sign * int(body)


class _Source:
    """The template text and where each offset lies (line, column), as Go reports them."""

    def __init__(self, text: str) -> None:
        self.text = text

    def line(self, pos: int) -> int:
        return 1 + self.text.count("\n", 0, pos)

    def where(self, pos: int) -> str:
        start = self.text.rfind("\n", 0, pos) + 1
        return f"{self.line(pos)}:{pos - start}"

    def error(self, pos: int, message: str) -> TemplateError:
        return TemplateError(f"template: :{self.line(pos)}: {message}")


def _lex(src: _Source) -> list[tuple[str, Any, int]]:
    """The template as ('text', str, pos) and ('action', [tokens], pos) items."""
    text = src.text
    items: list[tuple[str, Any, int]] = []
    i = 0
    trim_next = False
    while True:
        j = text.find("{{", i)
        chunk = text[i:] if j < 0 else text[i:j]
        if trim_next:
            chunk = chunk.lstrip(_SPACE)
        k = j + 2
        trim_left = j >= 0 and text[k:k + 1] == "-" and text[k + 1:k + 2] in tuple(_SPACE)
        if trim_left:
            chunk = chunk.rstrip(_SPACE)
            k += 2
        if chunk:
            items.append(("text", chunk, i))
        if j < 0:
            return items
        start = k
        while k < len(text) and text[k] in _SPACE:
            k += 1
        if text.startswith("/*", k):
            end = text.find("*/", k + 2)
            if end < 0:
                raise src.error(j, "unclosed comment")
            k = end + 2
            if text.startswith("}}", k):
                trim_next, i = False, k + 2
            elif text.startswith(" -}}", k):
                trim_next, i = True, k + 4
            else:
                raise src.error(j, "comment ends before closing delimiter")
            continue
        tokens, i, trim_next = _lex_action(src, start)
        items.append(("action", tokens, j))


def _lex_action(src: _Source, k: int) -> tuple[list[_Tok], int, bool]:
    text = src.text
    tokens: list[_Tok] = []
    spaced = True
    while True:
        if k >= len(text):
            raise src.error(k, "unclosed action")
        ch = text[k]
        if text.startswith("}}", k):
            return tokens, k + 2, False
        if ch in _SPACE:
            if text.startswith("-}}", k + 1):
                return tokens, k + 4, True
            k += 1
            spaced = True
            continue
        start = k
        if ch == '"':
            k += 1
            while k < len(text) and text[k] != '"':
                if text[k] == "\n":
                    raise src.error(start, "unterminated quoted string")
                k += 2 if text[k] == "\\" else 1
            if k >= len(text):
                raise src.error(start, "unterminated quoted string")
            try:
                value = _unquote(text[start + 1:k])
            except TemplateError as err:
                raise src.error(start, str(err)) from None
            tokens.append(_Tok("string", value, start, spaced))
            k += 1
        elif ch == "`":
            end = text.find("`", k + 1)
            if end < 0:
                raise src.error(start, "unterminated raw quoted string")
            tokens.append(_Tok("string", text[k + 1:end], start, spaced))
            k = end + 1
        elif ch == "'":
            end = text.find("'", k + 1)
            if end < 0:
                raise src.error(start, "unterminated character constant")
            body = _unquote(text[k + 1:end]) if end > k + 1 else ""
            if len(body) != 1:
                raise src.error(start, f"malformed character constant: {text[k:end + 1]}")
            tokens.append(_Tok("number", ord(body), start, spaced))
            k = end + 1
        elif ch in "()|,":
            kind = {"(": "lparen", ")": "rparen", "|": "pipe", ",": "comma"}[ch]
            tokens.append(_Tok(kind, ch, start, spaced))
            k += 1
        elif text.startswith(":=", k):
            tokens.append(_Tok("declare", ":=", start, spaced))
            k += 2
        elif ch == "=":
            tokens.append(_Tok("assign", "=", start, spaced))
            k += 1
        elif ch == "$":
            m = _WORD.match(text, k + 1)
            name = "$" + (m.group() if m else "")
            tokens.append(_Tok("var", name, start, spaced))
            k += len(name)
        elif ch == "." and not text[k + 1:k + 2].isdigit():
            m = _WORD.match(text, k + 1)
            if m:
                tokens.append(_Tok("field", m.group(), start, spaced))
                k = m.end()
            else:
                tokens.append(_Tok("dot", ".", start, spaced))
                k += 1
        elif ch.isdigit() or ch in "+-." and text[k + 1:k + 2].isdigit() or \
                ch in "+-" and text[k + 1:k + 3].startswith(".") and text[k + 2:k + 3].isdigit():
            m = _NUMBER.match(text, k)
            if not m:
                raise src.error(start, f"bad number syntax: {text[k:k + 10]!r}")
            try:
                tokens.append(_Tok("number", _number(m.group()), start, spaced))
            except ValueError:
                raise src.error(start, f'bad number syntax: "{m.group()}"') from None
            k = m.end()
        elif ch.isalpha() or ch == "_":
            m = _WORD.match(text, k)
            assert m is not None
            word = m.group()
            kind = "bool" if word in ("true", "false") else "nil" if word == "nil" else "ident"
            tokens.append(_Tok(kind, word == "true" if kind == "bool" else word, start,
                               spaced))
            k = m.end()
        else:
            raise src.error(start, f"bad character U+{ord(ch):04X} {ch!r}")
        tokens[-1].end = k
        spaced = False


# --- parser --------------------------------------------------------------------------------


class _Node:
    __slots__ = ("pos", "text")
    pos: int
    text: str


class _Operand(_Node):
    """One term of a command: kind is dot, field, var, ident, literal, paren or chain."""

    __slots__ = ("kind", "value", "names", "inner")

    def __init__(self, kind: str, value: Any, pos: int, text: str,
                 names: Sequence[str] = (), inner: Any = None) -> None:
        self.kind, self.value, self.pos, self.text = kind, value, pos, text
        self.names, self.inner = list(names), inner


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, args: list[_Operand], pos: int, text: str) -> None:
        self.args, self.pos, self.text = args, pos, text


class _Pipe(_Node):
    __slots__ = ("decl", "assign", "cmds")

    def __init__(self, decl: list[str], assign: bool, cmds: list[_Command], pos: int,
                 text: str) -> None:
        self.decl, self.assign, self.cmds, self.pos, self.text = decl, assign, cmds, pos, text


class _Control(_Node):
    """if, with, range: a pipe, a body and an else body."""

    __slots__ = ("kind", "pipe", "body", "other")

    def __init__(self, kind: str, pipe: _Pipe, pos: int) -> None:
        self.kind, self.pipe, self.pos, self.text = kind, pipe, pos, kind
        self.body: list[Any] = []
        self.other: list[Any] = []


class _Parser:
    def __init__(self, src: _Source, functions: Iterable[str]) -> None:
        self.src = src
        self.items = _lex(src)
        self.at = 0
        self.functions = set(functions)
        self.loops = 0

    def parse(self) -> list[Any]:
        nodes, stop = self.block()
        if stop is not None:
            raise self.src.error(stop[0].pos, f"unexpected {{{{{stop[0].value}}}}}")
        return nodes

    def block(self) -> tuple[list[Any], list[_Tok] | None]:
        """Nodes until {{end}} or {{else...}} (returned, its tokens) or the end (None)."""
        nodes: list[Any] = []
        while self.at < len(self.items):
            kind, value, pos = self.items[self.at]
            self.at += 1
            if kind == "text":
                nodes.append(value)
                continue
            tokens: list[_Tok] = value
            if not tokens:
                raise self.src.error(pos, "missing value for command")
            head = tokens[0]
            word = head.value if head.kind == "ident" else None
            if word in ("end", "else"):
                return nodes, tokens
            if word in ("if", "with", "range"):
                nodes.append(self.control(word, tokens[1:], head.pos))
            elif word in ("break", "continue"):
                if not self.loops:
                    raise self.src.error(head.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                if len(tokens) > 1:
                    raise self.src.error(head.pos, f"unexpected {tokens[1]!r} in {word}")
                nodes.append(word)
            elif word in ("define", "template", "block"):
                raise self.src.error(head.pos, f"{{{{{word}}}}} is not supported by lamina")
            else:
                nodes.append(self.pipe(tokens, "command", decl_ok=True))
        return nodes, None

    def control(self, kind: str, tokens: list[_Tok], pos: int) -> _Control:
        if not tokens:
            raise self.src.error(pos, f"missing value for {kind}")
        node = _Control(kind, self.pipe(tokens, kind, decl_ok=True, pairs=kind == "range"),
                        pos)
        self.loops += kind == "range"
        node.body, stop = self.block()
        self.loops -= kind == "range"
        if stop is None:
            raise self.src.error(len(self.src.text), "unexpected EOF")
        if stop[0].value == "else":
            rest = stop[1:]
            if rest and rest[0].kind == "ident" and rest[0].value in ("if", "with") \
                    and kind != "range":  # {{else if}}: an if in the else, sharing {{end}}
                node.other = [self.control(rest[0].value, rest[1:], rest[0].pos)]
                return node
            if rest:
                raise self.src.error(rest[0].pos, f"unexpected {rest[0]!r} in else")
            node.other, stop = self.block()
            if stop is None:
                raise self.src.error(len(self.src.text), "unexpected EOF")
            if stop[0].value != "end":
                raise self.src.error(stop[0].pos, "expected end; found {{else}}")
        if len(stop) > 1:
            raise self.src.error(stop[1].pos, f"unexpected {stop[1]!r} in end")
        return node

    def pipe(self, tokens: list[_Tok], context: str, decl_ok: bool = False,
             pairs: bool = False) -> _Pipe:
        pos = tokens[0].pos
        text = self.src.text[pos:tokens[-1].end]
        decl: list[str] = []
        assign = False
        i = 0
        if decl_ok and len(tokens) > 1 and tokens[0].kind == "var":
            if tokens[1].kind in ("declare", "assign"):
                decl, assign, i = [tokens[0].value], tokens[1].kind == "assign", 2
            elif pairs and tokens[1].kind == "comma" and len(tokens) > 3 and \
                    tokens[2].kind == "var" and tokens[3].kind in ("declare", "assign"):
                decl, assign, i = [tokens[0].value, tokens[2].value], \
                    tokens[3].kind == "assign", 4
        cmds: list[_Command] = []
        while True:
            cmd, i = self.command(tokens, i, context)
            cmds.append(cmd)
            if i >= len(tokens):
                break
            if tokens[i].kind != "pipe":
                raise self.src.error(tokens[i].pos, f"unexpected {tokens[i]!r} in {context}")
            i += 1
        for n, cmd in enumerate(cmds[1:], start=2):
            if cmd.args[0].kind in ("dot", "literal"):
                raise self.src.error(cmd.pos, f"non executable command in pipeline stage {n}")
        return _Pipe(decl, assign, cmds, pos, text)

    def command(self, tokens: list[_Tok], i: int, context: str) -> tuple[_Command, int]:
        args: list[_Operand] = []
        while i < len(tokens) and tokens[i].kind not in ("pipe", "rparen"):
            operand, i = self.operand(tokens, i, context)
            args.append(operand)
        if not args:
            where = tokens[i].pos if i < len(tokens) else (tokens[-1].pos if tokens else 0)
            raise self.src.error(where, "missing value for command")
        pos = args[0].pos
        return _Command(args, pos, self.src.text[pos:tokens[i - 1].end]), i

    def operand(self, tokens: list[_Tok], i: int, context: str) -> tuple[_Operand, int]:
        tok = tokens[i]
        i += 1
        start = tok.pos
        node: _Operand
        if tok.kind == "field":
            names = [tok.value]
            while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].spaced:
                names.append(tokens[i].value)
                i += 1
            node = _Operand("field", None, start, "", names)
        elif tok.kind == "dot":
            node = _Operand("dot", None, start, ".")
        elif tok.kind == "var":
            node = _Operand("var", tok.value, start, tok.value)
        elif tok.kind == "ident":
            if tok.value in KEYWORDS:
                raise self.src.error(start, f"unexpected <{tok.value}> in {context}")
            if tok.value not in self.functions:
                raise self.src.error(start, f'function "{tok.value}" not defined')
            node = _Operand("ident", tok.value, start, tok.value)
        elif tok.kind in ("string", "number", "bool", "nil"):
            value = None if tok.kind == "nil" else tok.value
            node = _Operand("literal", value, start, "")
        elif tok.kind == "lparen":
            depth, j = 1, i
            while j < len(tokens) and depth:
                depth += {"lparen": 1, "rparen": -1}.get(tokens[j].kind, 0)
                j += 1
            if depth:
                raise self.src.error(start, "unclosed left paren")
            inner = self.pipe(tokens[i:j - 1], "parenthesized pipeline") if j - 1 > i else None
            if inner is None:
                raise self.src.error(start, "missing value for parenthesized pipeline")
            node = _Operand("paren", None, start, "", inner=inner)
            i = j
        else:
            raise self.src.error(start, f"unexpected {tok!r} in operand")
        if node.kind != "field":  # fields right after a term: $x.A, (...).B
            names = []
            while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].spaced:
                names.append(tokens[i].value)
                i += 1
            if names:
                if node.kind in ("literal", "ident", "dot"):
                    raise self.src.error(start, f"unexpected . after term {node.text!r}")
                node = _Operand("chain", None, start, "", names, inner=node) \
                    if node.kind != "var" else _Operand("var", node.value, start, "", names)
        node.text = self.src.text[start:tokens[i - 1].end]
        return node, i


# --- values as Go prints them --------------------------------------------------------------


def go_type(v: Any) -> str:
    if isinstance(v, Row):
        return v.TYPE
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "<nil>" if v is None or v is MISSING else type(v).__name__


def go_float(f: float) -> str:
    """Go's %v of a float64: shortest digits, %e form outside [1e-4, 1e6)."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    from decimal import Decimal

    sign, digits_t, exponent = Decimal(repr(f)).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    dp = len("".join(map(str, digits_t))) + exponent  # decimal point after dp digits
    exp = dp - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:  # strconv's 'g', shortest: the exponent decides at 6
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return neg + digits + "0" * (dp - len(digits))
    return f"{neg}{digits[:dp]}.{digits[dp:]}"


def show(v: Any, top: bool = True) -> str:
    """fmt's %v: what `{{.X}}` prints."""
    if v is MISSING or v is None:
        return "<no value>" if top else "<nil>"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(show(x, False) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{show(v[k], False)}" for k in sorted(v)) + "]"
    if isinstance(v, Row):
        return "{" + " ".join(show(x, False) for x in v.fields().values()) + "}"
    return str(v)


def truth(v: Any) -> bool:
    """Go's isTrue: false, 0, "", nil, empty lists and maps are false."""
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _plain(v: Any) -> Any:
    """A value for json.dumps: rows as their fields, integral floats as Go writes them."""
    if isinstance(v, Row):
        return {k: _plain(x) for k, x in v.fields().items()}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    return None if v is MISSING else v


def to_json(v: Any) -> str:
    """docker's `json`: encoding/json without HTML escaping, no trailing newline."""
    text = json.dumps(_plain(v), ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out) + '"'


# --- functions -----------------------------------------------------------------------------


class _CallError(Exception):
    """A function refused its arguments: Go's `error calling NAME: ...`."""


class _ArgError(Exception):
    """Arguments of the wrong type for a function: Go's message alone."""


def need_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is MISSING or v is None:
        raise _ArgError("invalid value; expected string")
    raise _ArgError(f"wrong type for value; expected string; got {go_type(v)}")


def need_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise _ArgError(f"wrong type for value; expected int; got {go_type(v)}")


def _sprint(args: Sequence[Any]) -> str:
    """fmt.Sprint: spaces between operands when neither is a string."""
    out = []
    for n, a in enumerate(args):
        if n and not isinstance(a, str) and not isinstance(args[n - 1], str):
            out.append(" ")
        out.append(show(a, False))
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?([a-zA-Z%])")


def sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: v s q d x X o b c e E f F g G t T %."""
    out: list[str] = []
    n = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(need_int(args[n])) if n < len(args) else None
            n += 1
        if prec == "*":
            prec = str(need_int(args[n])) if n < len(args) else ""
            n += 1
        if n >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[n]
        n += 1
        out.append(_pad(_verb(verb, arg, flags, prec), flags, width,
                        isinstance(arg, (int, float)) and not isinstance(arg, bool)))
    out.append(fmt[pos:])
    if n < len(args):
        extra = ", ".join(f"{go_type(a)}={show(a, False)}" for a in args[n:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(text: str, flags: str, width: str | None, numeric: bool) -> str:
    if not width:
        return text
    size = int(width)
    if "-" in flags:
        return text.ljust(size)
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in "+-" else ""
        return sign + text[len(sign):].rjust(size - len(sign), "0")
    return text.rjust(size)


def _verb(verb: str, arg: Any, flags: str, prec: str | None) -> str:
    bad = f"%!{verb}({go_type(arg)}={show(arg, False)})"
    if arg is MISSING or arg is None:
        return "<nil>" if verb == "v" else f"%!{verb}(<nil>)"
    number = isinstance(arg, (int, float)) and not isinstance(arg, bool)
    if verb == "v":
        return show(arg, False)
    if verb == "T":
        return go_type(arg)
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else bad
    if verb in "sq":
        if isinstance(arg, str):
            text = arg[:int(prec)] if prec else arg
            return go_quote(text) if verb == "q" else text
        if isinstance(arg, (list, tuple)):
            return "[" + " ".join(_verb(verb, x, "", prec) for x in arg) + "]"
        if verb == "q" and isinstance(arg, int) and not isinstance(arg, bool):
            return "'" + chr(arg) + "'"
        return bad
    if verb in "dxXobc":
        if isinstance(arg, str) and verb in "xX":
            hexed = arg.encode().hex()
            return hexed.upper() if verb == "X" else hexed
        if not isinstance(arg, int) or isinstance(arg, bool):
            return bad
        if verb == "c":
            return chr(arg)
        spec = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb]
        text = format(arg, ("+" if "+" in flags else "") + spec)
        return text
    if verb in "eEfFgG":
        if not number or isinstance(arg, int):
            return bad
        if verb in "gG" and not prec:
            text = go_float(float(arg))
            return text.upper() if verb == "G" else text
        p = int(prec) if prec else 6
        return format(float(arg), ("+" if "+" in flags else "") + f".{p}{verb}")
    return f"%!{verb}({go_type(arg)}={show(arg, False)})"


def _index(item: Any, *keys: Any) -> Any:
    if item is MISSING or item is None:
        raise _CallError("index of untyped nil")
    for key in keys:
        if isinstance(item, dict):
            if not isinstance(key, str):
                raise _CallError(f"value has type {go_type(key)}; should be string")
            item = item.get(key, MISSING)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _CallError(f"cannot index slice/array with type {go_type(key)}")
            if not 0 <= key < len(item):
                raise _CallError(f"index out of range: {key}")
            item = item.encode()[key] if isinstance(item, str) else item[key]
        elif item is MISSING or item is None:
            raise _CallError("index of untyped nil")
        else:
            raise _CallError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *bounds: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise _CallError(f"can't slice item of type {go_type(item)}")
    if len(bounds) > 2:
        raise _CallError("too many slice indexes: " + str(len(bounds)))
    ints = [need_int(b) for b in bounds]
    lo = ints[0] if ints else 0
    hi = ints[1] if len(ints) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise _CallError(f"index out of range: {hi if hi > len(item) else lo}")
    return item[lo:hi]


def _length(item: Any) -> int:
    if item is MISSING or item is None:
        raise _CallError("len of nil pointer")
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, (list, tuple, dict)):
        return len(item)
    raise _CallError(f"len of type {go_type(item)}")


def _basic(v: Any) -> str:
    if v is MISSING or v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    raise _CallError(f"non-comparable type {show(v, False)}: {go_type(v)}")


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _CallError("missing argument for comparison")
    ka = _basic(a)
    for b in others:
        kb = _basic(b)
        if "nil" in (ka, kb):
            if ka == kb:
                return True
            continue
        if ka != kb:
            raise _CallError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    ka, kb = _basic(a), _basic(b)
    if ka not in ("number", "string") or kb not in ("number", "string"):
        raise _CallError("invalid type for comparison")
    if ka != kb:
        raise _CallError("incompatible types for comparison")
    return a, b


def _title(s: str) -> str:
    out, prev = [], " "
    for ch in s:
        out.append(ch.upper() if not (prev.isalnum() or prev == "_" or prev == "'") else ch)
        prev = ch
    return "".join(out)


def _html(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(args)
    table = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&#39;", '"': "&#34;",
             "\0": "\ufffd"}
    return "".join(table.get(ch, ch) for ch in text)


def _js(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(args)
    table = {"\\": "\\\\", "'": "\\'", '"': "\\\"", "<": "\\u003C", ">": "\\u003E",
             "&": "\\u0026", "=": "\\u003D", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "".join(table.get(ch, ch) for ch in text)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    text = args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(args)
    return quote_plus(text)


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise _ArgError(f"wrong type for value; expected []string; got {go_type(items)}")
    return need_str(sep).join(x if isinstance(x, str) else show(x, False) for x in items)


def _pad_func(s: Any, prefix: Any, suffix: Any) -> str:
    text = need_str(s)
    return text and " " * need_int(prefix) + text + " " * need_int(suffix)


def _truncate(s: Any, length: Any) -> str:
    text, n = need_str(s), need_int(length)
    return text if len(text) < n else text[:n]


# name: (function, least arguments, most arguments or -1)
FUNCS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "and": (lambda *a: a[-1], 1, -1),  # evaluated lazily by the evaluator
    "or": (lambda *a: a[-1], 1, -1),
    "not": (lambda a: not truth(a), 1, 1),
    "len": (_length, 1, 1),
    "index": (_index, 1, -1),
    "slice": (_slice, 1, -1),
    "eq": (_eq, 1, -1),
    "ne": (lambda a, b: not _eq(a, b), 2, 2),
    "lt": (lambda a, b: (lambda x, y: x < y)(*_ordered(a, b)), 2, 2),
    "le": (lambda a, b: (lambda x, y: x <= y)(*_ordered(a, b)), 2, 2),
    "gt": (lambda a, b: (lambda x, y: x > y)(*_ordered(a, b)), 2, 2),
    "ge": (lambda a, b: (lambda x, y: x >= y)(*_ordered(a, b)), 2, 2),
    "print": (lambda *a: _sprint(a), 0, -1),
    "printf": (lambda f, *a: sprintf(need_str(f), *a), 1, -1),
    "println": (lambda *a: " ".join(show(x, False) for x in a) + "\n", 0, -1),
    "html": (_html, 0, -1),
    "js": (_js, 0, -1),
    "urlquery": (_urlquery, 0, -1),
    # docker's (cli/templates): json split join title lower upper pad truncate
    "json": (to_json, 1, 1),
    "split": (lambda s, sep: need_str(s).split(need_str(sep)) if sep else list(s), 2, 2),
    "join": (_join, 2, 2),
    "title": (lambda s: _title(need_str(s)), 1, 1),
    "lower": (lambda s: need_str(s).lower(), 1, 1),
    "upper": (lambda s: need_str(s).upper(), 1, 1),
    "pad": (_pad_func, 3, 3),
    "truncate": (_truncate, 2, 2),
}

# docker's HeaderFunctions: in a table's heads a function gives back the head it is given
HEADER_FUNCS: dict[str, tuple[Callable[..., Any], int, int]] = {
    **FUNCS,
    **{name: (lambda v, *_: need_str(v), n, n)
       for name, n in (("json", 1), ("split", 2), ("join", 2), ("title", 1), ("lower", 1),
                       ("upper", 1), ("truncate", 2))},  # pad kept: it aligns
}


class Heads(dict[str, str]):
    """A table's column titles by field (docker's SubHeaderContext, a map with a method):
    `.Label "com.example.some-key"` heads its column `some key`."""

    def Label(self, name: Any) -> str:  # noqa: N802 - docker's name
        last = need_str(name).split(".")[-1]
        return last.replace("-", " ").replace("_", " ")


# --- evaluator -----------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Exec:
    def __init__(self, src: _Source, funcs: Mapping[str, tuple[Callable[..., Any], int, int]],
                 data: Any) -> None:
        self.src, self.funcs = src, funcs
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.out: list[str] = []

    def fail(self, node: _Node, message: str) -> TemplateError:
        context = node.text if len(node.text) <= 20 else node.text[:20] + "..."
        return TemplateError(f'template: :{self.src.where(node.pos)}: executing "" at '
                             f"<{context}>: {message}")

    def run(self, nodes: Sequence[Any], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, str):
                if node == "break":
                    raise _Break
                if node == "continue":
                    raise _Continue
                self.out.append(node)
            elif isinstance(node, _Pipe):
                value = self.pipe(node, dot)
                if not node.decl:
                    self.out.append(show(value))
            else:
                self.control(node, dot)

    def control(self, node: _Control, dot: Any) -> None:
        mark = len(self.vars)
        try:
            if node.kind == "range":
                self.range(node, dot)
                return
            value = self.pipe(node.pipe, dot)
            if truth(value):
                self.run(node.body, value if node.kind == "with" else dot)
            else:
                self.run(node.other, dot)
        finally:
            del self.vars[mark:]

    def range(self, node: _Control, dot: Any) -> None:
        pipe = node.pipe
        value = self.pipe(_Pipe([], False, pipe.cmds, pipe.pos, pipe.text), dot)
        if isinstance(value, dict):
            pairs: Iterable[tuple[Any, Any]] = ((k, value[k]) for k in sorted(value))
        elif isinstance(value, (list, tuple)):
            pairs = enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = ((i, i) for i in range(value))
        elif value is MISSING or value is None:
            pairs = ()
        else:
            raise self.fail(pipe, f"range can't iterate over {show(value)}")
        mark = len(self.vars)
        ran = False
        for key, elem in pairs:
            ran = True
            del self.vars[mark:]
            if len(pipe.decl) == 1:
                self.vars.append((pipe.decl[0], elem))
            elif len(pipe.decl) == 2:
                self.vars += [(pipe.decl[0], key), (pipe.decl[1], elem)]
            try:
                self.run(node.body, elem)
            except _Break:
                break
            except _Continue:
                continue
        del self.vars[mark:]
        if not ran:
            self.run(node.other, dot)

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value = _NONE
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        if pipe.decl:
            if pipe.assign:
                self.set_var(pipe, pipe.decl[0], value)
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def set_var(self, node: _Node, name: str, value: Any) -> None:
        for n in range(len(self.vars) - 1, -1, -1):
            if self.vars[n][0] == name:
                self.vars[n] = (name, value)
                return
        raise self.fail(node, f"undefined variable: {name}")

    def var(self, node: _Operand) -> Any:
        for name, value in reversed(self.vars):
            if name == node.value:
                return value
        raise self.fail(node, f"undefined variable: {node.value}")

    def command(self, cmd: _Command, dot: Any, final: Any) -> Any:
        first, args = cmd.args[0], cmd.args[1:]
        if first.kind == "ident":
            return self.call(first.value, cmd, args, dot, final)
        if first.kind == "field":
            return self.fields(first, dot, first.names, args, dot, final)
        if first.kind == "chain":
            return self.fields(first, self.arg(first.inner, dot), first.names, args, dot, final)
        if first.kind == "var" and first.names:
            return self.fields(first, self.var(first), first.names, args, dot, final)
        if args or final is not _NONE:
            raise self.fail(first, f"can't give argument to non-function {first.text}")
        return self.arg(first, dot)

    def arg(self, node: _Operand, dot: Any) -> Any:
        kind = node.kind
        if kind == "dot":
            return dot
        if kind == "literal":
            return node.value
        if kind == "var":
            value = self.var(node)
            return self.fields(node, value, node.names, [], dot, _NONE) if node.names \
                else value
        if kind == "field":
            return self.fields(node, dot, node.names, [], dot, _NONE)
        if kind == "chain":
            return self.fields(node, self.arg(node.inner, dot), node.names, [], dot, _NONE)
        if kind == "paren":
            return self.pipe(node.inner, dot)
        if kind == "ident":
            return self.call(node.value, _Command([node], node.pos, node.text), [], dot, _NONE)
        raise self.fail(node, f"can't handle {node.text}")

    def fields(self, node: _Operand, receiver: Any, names: Sequence[str],
               args: Sequence[_Operand], dot: Any, final: Any) -> Any:
        for n, name in enumerate(names):
            last = n == len(names) - 1
            given = list(args) if last else []
            tail = final if last else _NONE
            if isinstance(receiver, Row):
                method = getattr(receiver, name, None) \
                    if name in receiver.FIELDS or name in receiver.METHODS else None
                if method is None:
                    raise self.fail(node, f"can't evaluate field {name} in type "
                                          f"{receiver.TYPE}")
                values = [self.arg(a, dot) for a in given]
                if tail is not _NONE:
                    values.append(tail)
                want = 0 if name in receiver.FIELDS else 1
                if len(values) != want:
                    raise self.fail(node, f"wrong number of args for {name}: want {want} got "
                                          f"{len(values)}")
                try:
                    receiver = method(*values)
                except _ArgError as err:
                    raise self.fail(node, str(err)) from None
                continue
            if isinstance(receiver, Heads) and name == "Label":  # its method before its keys
                values = [self.arg(a, dot) for a in given] + ([] if tail is _NONE else [tail])
                if len(values) != 1:
                    raise self.fail(node, f"wrong number of args for Label: want 1 got "
                                          f"{len(values)}")
                try:
                    receiver = receiver.Label(values[0])
                except _ArgError as err:
                    raise self.fail(node, str(err)) from None
                continue
            if given or tail is not _NONE:
                if isinstance(receiver, dict) or receiver is MISSING or receiver is None:
                    raise self.fail(node, f"{name} is not a method but has arguments")
                raise self.fail(node, f"can't evaluate field {name} in type "
                                      f"{go_type(receiver)}")
            if isinstance(receiver, dict):
                receiver = receiver.get(name, MISSING)
                if receiver is None:
                    receiver = MISSING
            elif receiver is MISSING or receiver is None:
                receiver = MISSING
            else:
                raise self.fail(node, f"can't evaluate field {name} in type "
                                      f"{go_type(receiver)}")
        return receiver

    def call(self, name: str, cmd: _Command, args: Sequence[_Operand], dot: Any,
             final: Any) -> Any:
        fn, least, most = self.funcs[name]
        count = len(args) + (final is not _NONE)
        if count < least or 0 <= most < count:
            want = least if least == most else f"at least {least}"
            raise self.fail(cmd, f"wrong number of args for {name}: want {want} got {count}")
        if name in ("and", "or"):  # short-circuit, as Go 1.18
            value: Any = None
            for a in args:
                value = self.arg(a, dot)
                if truth(value) != (name == "and"):
                    return value
            return final if final is not _NONE else value
        values = [self.arg(a, dot) for a in args]
        if final is not _NONE:
            values.append(final)
        try:
            return fn(*values)
        except _ArgError as err:
            raise self.fail(cmd, str(err)) from None
        except _CallError as err:
            raise self.fail(cmd, f"error calling {name}: {err}") from None


# --- the public face -----------------------------------------------------------------------


class Template:
    """A parsed template: render(data) -> str; raises TemplateError."""

    def __init__(self, text: str) -> None:
        self.src = _Source(text)
        self.nodes = _Parser(self.src, FUNCS).parse()

    def render(self, data: Any, funcs: Mapping[str, tuple[Callable[..., Any], int, int]]
               = FUNCS) -> str:
        state = _Exec(self.src, funcs, data)
        state.run(self.nodes, data)
        return "".join(state.out)

    def heads(self, headers: Mapping[str, str]) -> str:
        """The table's head line: the template on the column titles with docker's header
        functions; what it printed before an error, as docker keeps it."""
        from contextlib import suppress

        heads = Heads(headers)
        state = _Exec(self.src, HEADER_FUNCS, heads)
        with suppress(TemplateError):
            state.run(self.nodes, heads)
        return "".join(state.out)


def parse(text: str) -> Template:
    return Template(text)


def prepare(fmt: str) -> tuple[str, bool]:
    """docker's formatter.Context.preFormat: (the template, whether it is a table):
    `table` stripped, spaces trimmed, the two characters `\\t` and `\\n` made a tab and a
    newline."""
    table = fmt.startswith("table")
    text = fmt[len("table"):] if table else fmt
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return text, table


def format_rows(fmt: str, rows: Iterable[Row], headers: Mapping[str, str]) -> str:
    """A list command's output for a template: one line per row (the template's output and
    a newline), headed and aligned as docker's tabwriter does when it starts with `table`.
    TemplateError (docker's `template parsing error: ...`) before anything is written."""
    text, table = prepare(fmt)
    try:
        tpl = parse(text)
        body = "".join(tpl.render(row) + "\n" for row in rows)
    except TemplateError as err:
        raise TemplateError(f"template parsing error: {err}") from None
    if not table:
        return body
    return tabwrite(tpl.heads(headers) + "\n" + body)


def format_each(fmt: str, docs: Iterable[Any]) -> str:
    """inspect -f: the template on each document, each followed by a newline (docker's
    TemplateInspector: no table, no `\\t` translation)."""
    try:
        tpl = parse(fmt)
        return "".join(tpl.render(doc) + "\n" for doc in docs)
    except TemplateError as err:
        raise TemplateError(f"template parsing error: {err}") from None


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as docker's formatter sets it up (minwidth 10, tabwidth 1,
    padding 3, spaces, no flags): tab-terminated cells aligned in column blocks, the last
    cell of each line left as it is."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[int] = []
    out: list[str] = []

    def write(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            for j, cell in enumerate(cells):
                out.append(cell)
                if j < len(widths):
                    out.append(" " * (widths[j] - len(cell)))
            if i + 1 < len(lines):
                out.append("\n")

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    fmt(0, len(lines))
    return "".join(out)
