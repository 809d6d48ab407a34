"""The composition root: which adapters the CLI and the service get, and the caller's meta."""

from __future__ import annotations

import os
import sys
from typing import Any

DEFAULT_ROOT = "/var/lib/lamina"


def root_dir(cli_root: str | None) -> str:
    """--root DIR, else $LAMINA_ROOT, else /var/lib/lamina."""
    return os.path.abspath(cli_root or os.environ.get("LAMINA_ROOT") or DEFAULT_ROOT)


def caller_meta(argv: list[str] | None = None) -> dict[str, Any]:
    """Who is asking: recorded in every event's meta for the audit."""
    import pwd

    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return {"uid": uid, "user": user, "pid": os.getpid(), "host": os.uname().nodename,
            "argv": list(sys.argv if argv is None else argv)}


def open_log(root: str, *, create: bool) -> Any:
    """The SQLite event log under root; None when reading a root that has no log yet."""
    from events.sqlite_log import DB_NAME, SqliteEventLog

    if not create and not os.path.exists(os.path.join(root, DB_NAME)):
        return None
    return SqliteEventLog(root, create=create)
