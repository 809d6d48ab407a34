"""Where a root's event log lives: its SQLite file (the default) or a PostgreSQL store.

One rule, asked by everything that opens a root's log: the composition root
(adapters/bootstrap.py), and the lean monitors that read the read model without the engine
(adapters/runtime/supervise.py, health.py), so that none of them reaches for the SQLite file
of a root whose log is elsewhere. Standard library only: the monitors run under `python -S`.

The store is the root's, decided once, when its log is made:
- a root with a SQLite log (`events.db`) keeps it: a URL set then (`--event-store`,
  $LAMINA_EVENT_STORE) names only the central store that `ship`, `serve` and `fleet` use;
- a root without a log yet, given a postgresql:// URL, makes its log there, as the chain of
  its own host (`host-id`, as for shipping) and is marked so (`event-store`);
- a root so marked needs the URL from then on (never written down: it may hold a
  password), and refuses to run without it rather than start an empty SQLite log.
"""

from __future__ import annotations

import os

from core.errors import StoreError

SQLITE_FILE = "events.db"
HOST_FILE = "host-id"  # the root's host id: its chain's name in a store (ship.host_id)
MARKER = "event-store"  # <root>/event-store: the root's log is in PostgreSQL
ENV = "LAMINA_EVENT_STORE"
SCHEMES = ("postgresql://", "postgres://")


def given_url(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    return (os.environ if env is None else env).get(ENV, "")


def in_postgres(root: str) -> bool:
    """Whether the root's log was made in PostgreSQL (its marker)."""
    return os.path.exists(os.path.join(root, MARKER))


def store_url(root: str, env: dict[str, str] | None = None) -> str | None:
    """The root's PostgreSQL store's URL; None when its log is (or will be) its SQLite
    file. A root marked as PostgreSQL's without a URL at hand is refused by name."""
    url = given_url(env)
    if in_postgres(root):
        if not url.startswith(SCHEMES):
            raise StoreError(f"root {root} keeps its event log in PostgreSQL: give "
                             f"--event-store postgresql://... or set {ENV}")
        return url
    if not url.startswith(SCHEMES) or os.path.exists(os.path.join(root, SQLITE_FILE)):
        return None
    return url


def mark(root: str, url: str) -> None:
    """Mark the root as keeping its log in PostgreSQL (written once, atomically). The file
    says so for people; the URL itself is not kept (it may hold a password)."""
    path = os.path.join(root, MARKER)
    if os.path.exists(path):
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write("postgresql: this root's event log is its host's chain in a PostgreSQL "
                f"store; lamina needs --event-store URL or {ENV}\n")
    os.rename(tmp, path)
