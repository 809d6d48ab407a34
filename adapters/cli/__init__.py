"""The `lamina` command line: a driving adapter over the core's engine and the event log.

- app.py: the parser (only the named command's, for a fast start) and the runner;
- common.py: what the verb groups share (the engine and log of --root, --format, for_each);
- one module per verb group, each declaring the command words it registers (COMMANDS):
  eventlog (version, events, audit, replay), listing (ps, images), storage (images, layers
  and containers' files), runtime (running containers, system), viz, registry, build, serve;
- served.py: `python -m adapters.cli.served`, the fork server (adapters/fastpath) alone,
  running this CLI (app.Served);
- render.py and progress.py: how commands print tables, lines and progress bars.

`from adapters.cli import main` is the entry point both clients fall back to when no fork
server runs the command (bin/lamina, adapters/fastpath/client.c).
"""

from adapters.cli.app import build_parser, main, prebuild, run

__all__ = ["build_parser", "main", "prebuild", "run"]
