"""The thin client's request encoding and command-line scanning (adapters/client.py)."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from adapters.client import absolute, command_name, encode_request, root_option
from adapters.forkserver import decode_request

text = st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]))


@given(argv=st.lists(text), cwd=text, umask=st.integers(0, 0o777),
       env=st.dictionaries(text.filter(lambda k: "=" not in k and k != ""), text))
def test_requests_round_trip(argv: list[str], cwd: str, umask: int,
                             env: dict[str, str]) -> None:
    raw = encode_request(argv, cwd, umask, env)
    assert int.from_bytes(raw[:4], "big") == len(raw) - 4
    request = decode_request(raw[4:])
    assert (request.argv, request.cwd, request.umask, request.env) == (argv, cwd, umask, env)


def test_the_command_word_skips_global_options() -> None:
    assert command_name(["--root", "/r", "--log-level", "info", "ps", "-a"]) == "ps"
    assert command_name(["--root=/r", "serve"]) == "serve"
    assert command_name(["-h"]) is None
    assert command_name([]) is None


def test_root_is_read_only_before_the_command() -> None:
    assert root_option(["--root", "/r", "ps"]) == "/r"
    assert root_option(["--root=/x", "ps"]) == "/x"
    assert root_option(["ps", "--root", "/r"]) is None
    assert root_option(["--log-level", "info", "--root", "/r", "ps"]) == "/r"
    assert root_option(["--log-format", "--root", "ps"]) is None  # a value, not the option


@given(path=st.lists(st.sampled_from(["", ".", "..", "a", "b.c", "..."]), max_size=8)
       .map("/".join), lead=st.sampled_from(["", "/", "//", "///"]))
def test_absolute_is_abspath(path: str, lead: str) -> None:
    assert absolute(lead + path) == os.path.abspath(lead + path)
