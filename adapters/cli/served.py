"""`python -m adapters.cli.served [--root DIR] [--socket PATH]`: the fork server of the
command's fast path alone, in the foreground, running this CLI (app.Served); `lamina serve`
starts the same server beside the Docker API.
"""

from __future__ import annotations

from adapters.cli.app import SERVED
from adapters.cmdline import root_dir
from adapters.fastpath.forkserver import ForkServer, run_server


def main(argv: list[str] | None = None) -> None:
    """The fork server in the foreground, until SIGTERM or SIGINT."""
    import argparse

    parser = argparse.ArgumentParser(prog="lamina-forkserver")
    parser.add_argument("--root")
    parser.add_argument("--socket")
    args = parser.parse_args(argv)
    server = ForkServer(root_dir(args.root), SERVED, args.socket)
    server.bind()
    run_server(server)


if __name__ == "__main__":
    main()
