"""systemd's two protocols a service speaks, without libsystemd: the sockets it passes
(LISTEN_FDS, sd_listen_fds(3)) and the readiness it is told (NOTIFY_SOCKET, sd_notify(3)).

Why: `lamina serve` under lamina.socket + lamina.service (dist/) is socket-activated: systemd
binds /run/lamina.sock (the Docker API, group lamina) and <root>/cli.sock (the fork server's)
and passes them as fds 3, 4, ...; a client that connects before the service runs waits in
their backlog while systemd starts it. Both protocols are a few lines of environment and a
datagram, less than a dependency.
"""

from __future__ import annotations

import os
import socket

FIRST_FD = 3  # SD_LISTEN_FDS_START


def listen_fds(unset: bool = True) -> list[socket.socket]:
    """The sockets systemd passed to this process (none unless LISTEN_PID is our pid), each
    made close-on-exec; the variables are removed (`unset`) so that no child takes them
    for its own."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    finally:
        if unset:
            for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                os.environ.pop(name, None)
    if pid != os.getpid() or count <= 0:
        return []
    sockets = []
    for fd in range(FIRST_FD, FIRST_FD + count):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def unix_path(sock: socket.socket) -> str | None:
    """The filesystem path a Unix socket is bound to; None for another kind."""
    if sock.family != socket.AF_UNIX:
        return None
    name = sock.getsockname()
    return name if isinstance(name, str) and name.startswith("/") else None


def notify(state: str) -> bool:
    """Tell systemd `state` (READY=1, STOPPING=1, STATUS=...) when it asked to be told
    (NOTIFY_SOCKET); False when it did not."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(state.encode(), address)
    return True
