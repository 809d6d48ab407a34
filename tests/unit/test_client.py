"""The thin client's request encoding (adapters/fastpath/client.py), the command-line scanning
it shares with the CLI (adapters/cmdline.py), and its promise to import only what is built
into the interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from adapters.cmdline import absolute, command_name, no_server, root_option
from adapters.fastpath.client import encode_request, request_for
from adapters.fastpath.forkserver import decode_request

text = st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]))


@given(argv=st.lists(text), cwd=text, umask=st.integers(0, 0o777),
       env=st.dictionaries(text.filter(lambda k: "=" not in k and k != ""), text))
def test_requests_round_trip(argv: list[str], cwd: str, umask: int,
                             env: dict[str, str]) -> None:
    raw = encode_request(argv, cwd, umask, env)
    assert int.from_bytes(raw[:4], "big") == len(raw) - 4
    request = decode_request(raw[4:])
    assert (request.argv, request.cwd, request.umask, request.env) == (argv, cwd, umask, env)


def test_a_request_carries_our_umask_and_leaves_it_as_it_was() -> None:
    old = os.umask(0o027)
    try:
        request = decode_request(request_for(["ps"], "/x", {"A": "b"})[4:])
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
    assert (request.argv, request.cwd, request.umask, request.env) == \
        (["ps"], "/x", 0o027, {"A": "b"})


def test_the_command_word_skips_global_options() -> None:
    assert command_name(["--root", "/r", "--log-level", "info", "ps", "-a"]) == "ps"
    assert command_name(["--root=/r", "serve"]) == "serve"
    assert command_name(["-h"]) is None
    assert command_name(["--quiet", "--no-server", "--root", "/r", "pull", "x"]) == "pull"
    assert command_name([]) is None


def test_root_is_read_only_before_the_command() -> None:
    assert root_option(["--root", "/r", "ps"]) == "/r"
    assert root_option(["--root=/x", "ps"]) == "/x"
    assert root_option(["ps", "--root", "/r"]) is None
    assert root_option(["--log-level", "info", "--root", "/r", "ps"]) == "/r"
    assert root_option(["--log-format", "--root", "ps"]) is None  # a value, not the option


def test_no_server_is_a_global_option() -> None:
    assert no_server(["--root", "/r", "--no-server", "ps"])
    assert not no_server(["--root", "--no-server", "ps"])  # a value, not the option
    assert not no_server(["ps", "--no-server"])
    assert not no_server([])


@given(path=st.lists(st.sampled_from(["", ".", "..", "a", "b.c", "..."]), max_size=8)
       .map("/".join), lead=st.sampled_from(["", "/", "//", "///"]))
def test_absolute_is_abspath(path: str, lead: str) -> None:
    assert absolute(lead + path) == os.path.abspath(lead + path)


def test_the_client_imports_only_what_the_interpreter_has_built_in() -> None:
    """bin/lamina runs the client under `python -S`, before the fork server takes over: a
    module read from disk on that path is paid by every served command."""
    probe = ("import sys; before = set(sys.modules); import adapters.fastpath.client; "
             "print(' '.join(sorted(set(sys.modules) - before)))")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                         check=True, cwd=repo).stdout.split()
    own = {"adapters", "adapters.cmdline", "adapters.fastpath", "adapters.fastpath.client"}
    assert "adapters.fastpath.client" in out
    assert [m for m in out if m not in own and m not in sys.builtin_module_names] == []


def test_the_socket_file_appears_only_once_it_listens(tmp_path, monkeypatch) -> None:
    """A client refused by a socket file that does not listen yet starts a server of its
    own, which stops the one binding (served.started): the file must appear listening."""
    import socket

    from adapters.fastpath import forkserver

    path = str(tmp_path / "cli.sock")
    seen: list[bool] = []

    class Watched(socket.socket):
        def listen(self, *args: int) -> None:
            seen.append(os.path.exists(path))
            super().listen(*args)

    monkeypatch.setattr(forkserver.socket, "socket", Watched)
    server = forkserver.ForkServer(str(tmp_path), {}, path)
    server.bind()
    try:
        assert seen == [False]
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(path)  # listening under its own name now
        probe.close()
        assert sorted(os.listdir(tmp_path)) == ["cli.sock"]
        assert server.bound == forkserver.file_id(path)
    finally:
        server.close()
    assert os.listdir(tmp_path) == []
