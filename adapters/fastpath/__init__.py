"""The `lamina` command's fast path: a client that hands a command line to a resident fork
server with lamina already imported, so a command skips the interpreter's imports.

- client.py: the Python client (bin/lamina runs it under `python -S`: built-in modules only,
  which is why this file imports nothing);
- client.c: the same client as a native program (`make client`);
- forkserver.py: the server `lamina serve` starts; it runs what the CLI hands it
  (adapters/cli/app.Served) and knows no command itself.
"""
