"""One worker of the concurrency test: random commands against a shared root, in-process.

Run as `python -m tests.reliability.workload ROOT SEED SECONDS OUT.json`: SECONDS of commands,
and on (up to twice as long again) while the log holds no container's exit yet, which the
test needs and a loaded machine may not have given by then (its containers stopped or
removed by other workers before they ended by themselves). Each command goes
through a real Engine (build_engine: SQLite log, overlayfs, cgroups, monitors), as the CLI
would run it, with the same start-up recovery. Outcomes are counted, not judged here:
- ok: the command did what it was asked;
- refused: the lifecycle or a lookup said no (a LaminaError other than the two below);
- conflict: a ConcurrencyError reached the caller (the engine retries once first);
- busy: the log stayed locked past its busy timeout (StoreError);
- crash: any other exception; the test fails on one, with its traceback.
`conflicts_seen` counts every ConcurrencyError raised by an append, retried or not.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import sys
import time
import traceback
from collections import Counter
from typing import Any

NAMES = ("c0", "c1", "c2")
IMAGES = ("img1", "img2")
CMDS = {"c0": ["sleep", "600"], "c1": ["sleep", "1"], "c2": ["sh", "-c", "sleep 0.3"]}


def _recreate(e: Any, name: str, rng: random.Random) -> None:
    """rm -f, then create under the same name (if another worker didn't first)."""
    from core.errors import NotFound

    with contextlib.suppress(NotFound):
        e.rm(name, force=True)
    e.create(rng.choice(IMAGES), CMDS[name], name=name)


def _start(e: Any, name: str) -> None:
    c = e.start(name)
    e.runtime.detach(c.id)


def _restart(e: Any, name: str) -> None:
    c = e.restart(name, 1)
    e.runtime.detach(c.id)


def _export(e: Any, name: str) -> None:
    with open("/dev/null", "wb") as out:
        e.export(name, out)


ACTIONS = {
    "start": lambda e, n, r: _start(e, n),
    "stop": lambda e, n, r: e.stop(n, 1),
    "kill": lambda e, n, r: e.kill(n),
    "pause": lambda e, n, r: e.pause(n),
    "unpause": lambda e, n, r: e.unpause(n),
    "restart": lambda e, n, r: _restart(e, n),
    "exec": lambda e, n, r: e.exec(n, ["true"], "", {"env": [], "workdir": None,
                                                    "tty": False, "interactive": False}),
    "rm+create": lambda e, n, r: _recreate(e, n, r),
    "commit": lambda e, n, r: e.commit(n, f"snap:{n}"),
    "export": lambda e, n, r: _export(e, n),
    "tag": lambda e, n, r: e.tag(r.choice(IMAGES), f"alias:{n}"),
}


def run(root: str, seed: int, seconds: float) -> dict[str, Any]:
    from adapters.bootstrap import build_engine
    from core.errors import ConcurrencyError, LaminaError, StoreError

    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    crashes: list[str] = []
    messages: set[str] = set()
    deadline = time.monotonic() + seconds
    last = deadline + 2 * seconds
    while time.monotonic() < deadline or (time.monotonic() < last and not _exited(root)):
        e = build_engine(root)  # a new process would: start-up recovery included
        append = e.log.append

        def counted(*args: Any, _append: Any = append, **kwargs: Any) -> Any:
            try:
                return _append(*args, **kwargs)
            except ConcurrencyError:
                counts["conflicts_seen"] += 1
                raise

        e.log.append = counted
        action = rng.choice(list(ACTIONS))
        counts["commands"] += 1
        try:
            ACTIONS[action](e, rng.choice(NAMES), rng)
            counts["ok"] += 1
        except ConcurrencyError as err:
            counts["conflict"] += 1
            messages.add(str(err).split(" (at version")[0][:120])
        except StoreError:
            counts["busy"] += 1
        except LaminaError:
            counts["refused"] += 1
        except Exception:  # noqa: BLE001 - counted and reported: the test fails on it
            counts["crash"] += 1
            crashes.append(f"{action}: {traceback.format_exc()}")
        finally:
            e.log.suspend()
    return {"counts": dict(counts), "crashes": crashes, "conflict_messages": sorted(messages)}


def _exited(root: str) -> bool:
    """Whether the log holds a container's exit (asked only once the time is up)."""
    con = sqlite3.connect(f"file:{root}/events.db?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT 1 FROM events WHERE type = 'ContainerExited' LIMIT 1"
                           ).fetchone() is not None
    finally:
        con.close()


if __name__ == "__main__":
    root, seed, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    result = run(root, seed, seconds)
    with open(out, "w") as f:
        json.dump(result, f)
