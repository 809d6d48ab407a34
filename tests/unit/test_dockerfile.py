"""The Dockerfile parser: forms, continuations, directives, substitution, and one-line errors."""

from __future__ import annotations

import pytest

from core.dockerfile import (
    DockerfileError,
    arg_pairs,
    expand,
    expand_words,
    key_values,
    parse,
)


def only(text: str):
    return parse(text).stages[0].instructions


def test_every_instruction_parses_with_its_form_and_flags() -> None:
    df = parse(
        "ARG BASE=busybox\n"
        "FROM ${BASE} AS build\n"
        "RUN echo hi\n"
        'RUN ["echo", "exec"]\n'
        "COPY --chown=1:2 --chmod=640 a b /dst/\n"
        'ADD ["x.tar", "/opt/"]\n'
        "ENV A=1 B=\"two words\"\n"
        "WORKDIR /app\n"
        "LABEL k=v\n"
        "USER nobody\n"
        "EXPOSE 80 53/udp\n"
        'VOLUME ["/data"]\n'
        'ENTRYPOINT ["sh", "-c"]\n'
        "CMD echo done\n"
        "FROM build\n"
        "COPY --from=build /dst /copied\n")
    assert [a.rest for a in df.global_args] == ["BASE=busybox"]
    first, second = df.stages
    assert (first.base, first.name, first.line) == ("${BASE}", "build", 2)
    kinds = [(i.keyword, i.exec_form is not None) for i in first.instructions]
    assert kinds[:4] == [("RUN", False), ("RUN", True), ("COPY", False), ("ADD", True)]
    copy = first.instructions[2]
    assert copy.flags == {"chown": "1:2", "chmod": "640"} and copy.rest == "a b /dst/"
    assert first.instructions[1].exec_form == ("echo", "exec")
    assert second.instructions[0].flags == {"from": "build"}
    assert df.stage_index("BUILD") == 0 and df.stage_index("1") == 1
    assert df.steps() == 15 and df.steps(0) == 13


def test_continuations_comments_and_blank_lines_join_into_one_instruction() -> None:
    (run,) = only("FROM a\n"
                  "RUN echo one \\\n"
                  "    # a comment inside is dropped\n"
                  "\n"
                  "    two\n")
    assert run.rest == "echo one     two"
    assert run.line == 2


def test_the_escape_directive_changes_the_continuation_and_escape_character() -> None:
    df = parse("# escape=`\n"
               "FROM a\n"
               "RUN dir c:\\ `\n"
               "    && echo ok\n"
               "ENV P=c:\\windows\n")
    run, env = df.stages[0].instructions
    assert df.escape == "`"
    assert run.rest == "dir c:\\     && echo ok"
    assert key_values("ENV", env.rest, {}, df.escape) == [("P", "c:\\windows")]


def test_a_directive_after_a_comment_is_only_a_comment() -> None:
    df = parse("# hello\n# escape=`\nFROM a\n")
    assert df.escape == "\\"


def test_substitution_quotes_and_defaults() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert expand_words('x "$A b" \'$A\' ${A} ${NO:-d} ${A:+set} ${EMPTY:-e} \\$A', env) == \
        ["x", "1 b", "$A", "1", "d", "set", "e", "$A"]
    assert expand("/app/$A dir", env) == "/app/1 dir"
    assert key_values("ENV", "K=$A L=\"a b\"", env) == [("K", "1"), ("L", "a b")]
    assert key_values("ENV", "K value with spaces", env) == [("K", "value with spaces")]
    assert arg_pairs("X Y=2 Z=$A", env) == [("X", None), ("Y", "2"), ("Z", "1")]


BAD = [
    ("FROM a\nFROB x\n", "Dockerfile:2: unknown instruction: FROB"),
    ("RUN x\nFROM a\n", "Dockerfile:1: RUN before the first FROM"),
    ("FROM a\nADD https://example.com/x.tgz /x\n",
     "Dockerfile:2: ADD from a remote URL is not supported: https://example.com/x.tgz"),
    ("FROM a\nCOPY git@github.com:x/y.git /y\n", "Dockerfile:2: COPY from a remote URL"),
    ("FROM a\nENV ONLY\n", "Dockerfile:2: ENV must have two arguments"),
    ("FROM a\nLABEL novalue\n", "Dockerfile:2: LABEL requires key=value"),
    ("FROM a\nCOPY one\n", "Dockerfile:2: COPY requires at least two arguments"),
    ("FROM a\nWORKDIR ${X\n", "Dockerfile:2: missing '}'"),
    ("FROM a\nENV X=\"open\n", "Dockerfile:2: unexpected end of statement"),
    ("FROM a\nRUN --mount=type=cache,target=/x true\n", "Dockerfile:2: unknown flag: --mount"),
    ("FROM a\nCOPY --chown /x /y\n", "Dockerfile:2: --chown needs a value"),
    ("FROM a\nONBUILD ONBUILD RUN true\n",
     "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nHEALTHCHECK FOO true\n", 'Dockerfile:2: Unknown type "FOO" in HEALTHCHECK'),
    ("FROM a\nHEALTHCHECK CMD\n", "Dockerfile:2: Missing command after HEALTHCHECK CMD"),
    ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "Dockerfile:2: --retries cannot be negative"),
    ("FROM a AS x y\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", "Dockerfile:1: invalid name for build stage"),
    ("FROM a AS x\nFROM b AS x\n", "Dockerfile:2: duplicate name for build stage"),
    ("FROM a AS x\nCOPY --from=x /a /b\n", "Dockerfile:2: COPY --from=x: a stage can't copy"),
    ("FROM a\nCOPY --from=0 /a /b\n", "Dockerfile:2: COPY --from=0: stage 0 is not an"),
    ("FROM a\nSHELL /bin/bash -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON"),
    ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires at least one argument"),
    ("# only a comment\n", "Dockerfile:1: no FROM instruction"),
    ("", "Dockerfile:1: no FROM instruction"),
    ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token"),
    ("FROM a\nRUN a \\\n  b\n\nFROB\n", "Dockerfile:5: unknown instruction: FROB"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_each_bad_dockerfile_is_one_line_naming_the_file_and_line(text: str,
                                                                  message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_the_error_names_the_file_it_was_given() -> None:
    with pytest.raises(DockerfileError, match=r"^build/Dockerfile\.dev:3: unknown instruction"):
        parse("FROM a\n\nNOPE\n", "build/Dockerfile.dev")


def test_tabs_separate_words_too() -> None:
    (copy,) = only("FROM a\ncopy\t--chown=1\tx /y\n")
    assert (copy.keyword, copy.flags, copy.rest) == ("COPY", {"chown": "1"}, "x /y")


def test_json_that_is_not_a_string_array_is_shell_form() -> None:
    run, cmd = only('FROM a\nRUN [1, 2]\nCMD ["ok"]\n')
    assert run.exec_form is None and run.rest == "[1, 2]"
    assert cmd.exec_form == ("ok",)
