"""The Docker Engine API on a Unix socket (`lamina serve`): a driving adapter over the engine.

The unmodified docker CLI and docker-py talk to it. The server is one single-threaded asyncio
process (server.py): read-only requests are answered inline from the read model; every request
that changes state, or blocks, runs in a child forked from that single-threaded process
(worker.py), which calls the same Engine command the CLI does, reports its result through a
pipe and exits. Hijacked streams (attach, exec start) and tar downloads are written by the
child itself on the connection's socket, with docker's 8-byte stream header
(adapters/runtime/frames.py).
"""
