"""Restart policies: docker's rules as plain functions (no I/O, no clock of their own).

`--restart no|always|unless-stopped|on-failure[:N]` (the API's HostConfig.RestartPolicy
{Name, MaximumRetryCount}) is recorded in ContainerCreated's config under `restart` in the
API's shape, whichever side made it. When a container's process ends by itself, the
record of its end asks `after_exit` whether and when to start it again (the end and the
restart it wants are one append: core/engine/processes.py exited), and its monitor waits
the back-off (adapters/record_exit.py, core/engine/restarts.py); `lamina serve` and the
first command after a reboot ask `at_host_start`.

The back-off is moby's restartmanager: the first restart waits 100 ms, each next one twice
the last, at most a minute; a run of 10 s or more starts the count from 100 ms again.
`on-failure` restarts non-zero exits only, at most N times (0: no limit) counted by
RestartCount; `unless-stopped` never after a user's stop; and a user's stop or kill cancels
every policy's restart until the container is started again or the host starts
(docker's "manually stopped"). The host's shutdown (`lamina system shutdown`) stops
containers without counting as the user's stop: no policy restarts them while the host goes
down, and the host's next start brings back `always` and `unless-stopped` ones (docker's
daemon shutdown: `IsShuttingDown()` in place of HasBeenManuallyStopped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import BadInput
from core.model import Container

NO, ALWAYS, UNLESS_STOPPED, ON_FAILURE = "no", "always", "unless-stopped", "on-failure"
NAMES = (NO, ALWAYS, ON_FAILURE, UNLESS_STOPPED)

FIRST_DELAY = 0.1  # seconds: moby's defaultTimeout
MAX_DELAY = 60.0  # maxRestartTimeout
MULTIPLIER = 2  # backoffMultiplier
RESET_AFTER = 10.0  # a run this long resets the back-off

SHUTTING_DOWN = "the host is shutting down"  # no restart then (docker's IsShuttingDown)


@dataclass(frozen=True)
class Policy:
    name: str = NO
    maximum: int = 0  # on-failure's MaximumRetryCount; 0: no limit

    def text(self) -> str:
        return f"{self.name}:{self.maximum}" if self.name == ON_FAILURE and self.maximum \
            else self.name

    def api(self) -> dict[str, Any]:
        return {"Name": self.name, "MaximumRetryCount": self.maximum}


@dataclass(frozen=True)
class Decision:
    """Start again after `delay` seconds; `count` is RestartCount once it has."""

    delay: float
    count: int
    reason: str


def parse_flag(text: str) -> dict[str, Any]:
    """`--restart` as docker's CLI reads it (opts.ParseRestartPolicy), in the API's shape;
    the names are judged by `policy` as the daemon judges them."""
    if not text:
        return {}
    name, colon, count = text.partition(":")
    if colon and not name:
        raise BadInput("invalid restart policy format: no policy provided before colon")
    out: dict[str, Any] = {"Name": name, "MaximumRetryCount": 0}
    if count:
        try:
            out["MaximumRetryCount"] = int(count)
        except ValueError:
            raise BadInput("invalid restart policy format: maximum retry count must be an "
                           "integer") from None
    return out


def policy(value: Any) -> Policy:
    """The recorded `restart` option (the API's {Name, MaximumRetryCount}, or the flag's
    text) judged as docker's daemon judges it (ValidateRestartPolicy)."""
    if not value:
        return Policy()
    if isinstance(value, str):
        value = parse_flag(value)
    if not isinstance(value, Mapping):
        raise BadInput("invalid restart policy: expected {Name, MaximumRetryCount}")
    name = value.get("Name") or NO
    try:
        maximum = int(value.get("MaximumRetryCount") or 0)
    except (TypeError, ValueError):
        raise BadInput("invalid restart policy format: maximum retry count must be an "
                       "integer") from None
    if name in (NO, ALWAYS, UNLESS_STOPPED):
        if maximum:
            raise BadInput("invalid restart policy: maximum retry count can only be used "
                           "with 'on-failure'" + (" and cannot be negative" if maximum < 0
                                                   else ""))
        return Policy(name)
    if name == ON_FAILURE:
        if maximum < 0:
            raise BadInput("invalid restart policy: maximum retry count cannot be negative")
        return Policy(name, maximum)
    raise BadInput(f"invalid restart policy: unknown policy '{name}'; use one of 'no', "
                   "'always', 'on-failure', or 'unless-stopped'")


def of(config: Mapping[str, Any]) -> Policy:
    """A container's policy, from its recorded config (no policy recorded: `no`)."""
    return policy(config.get("restart"))


def check(options: Mapping[str, Any]) -> None:
    """Create's rules: a valid policy, and none with --rm (docker's daemon refuses it)."""
    p = policy(options.get("restart"))
    if p.name != NO and options.get("auto_remove"):
        raise BadInput("can't create 'AutoRemove' container with restart policy")


def backoff(previous: float, ran_for: float) -> float:
    """The wait before the next restart: the last one's doubled (the first 100 ms), at most
    a minute; back to 100 ms after a run of 10 s or more."""
    if ran_for >= RESET_AFTER or previous <= 0:
        return FIRST_DELAY
    return min(previous * MULTIPLIER, MAX_DELAY)


def decide(p: Policy, exit_code: int | None, manually_stopped: bool, restart_count: int,
           previous_delay: float, ran_for: float, shutdown: bool = False
           ) -> Decision | None:
    """After a run ended: start the container again (when and why), or not. `shutdown`:
    the host's shutdown ended it (no restart while the host goes down)."""
    if p.name == NO or manually_stopped or shutdown:
        return None
    code = 0 if exit_code is None else exit_code
    if p.name == ON_FAILURE:
        if code == 0 or (p.maximum and restart_count >= p.maximum):
            return None
        limit = f" (restart {restart_count + 1} of {p.maximum})" if p.maximum else ""
        reason = f"on-failure{limit}: exited with code {code}"
    else:
        reason = f"{p.name}: exited with code {code}"
    return Decision(backoff(previous_delay, ran_for), restart_count + 1, reason)


def at_host_start(p: Policy, exit_code: int | None, manually_stopped: bool,
                  restart_count: int, pending: bool) -> bool:
    """Whether `lamina serve` starting (docker's daemon start) brings a stopped container
    back: `always` even after a user's stop (docker's rule: "restarted only when the daemon
    restarts or the container is started"), `unless-stopped` unless the user stopped it,
    `on-failure` when a restart was due (pending when the monitor went away)."""
    if p.name == ALWAYS:
        return True
    if p.name == UNLESS_STOPPED:
        return not manually_stopped
    if p.name == ON_FAILURE and not manually_stopped:
        code = 0 if exit_code is None else exit_code
        return pending or (code != 0 and (not p.maximum or restart_count < p.maximum))
    return False


def delays(n: int) -> list[float]:
    """The first `n` back-offs of quick runs: 0.1, 0.2, 0.4, ... 60 (the table docs show)."""
    out, d = [], 0.0
    for _ in range(n):
        d = backoff(d, 0)
        out.append(d)
    return out


def for_update(value: Any) -> dict[str, Any]:
    """`update --restart` (the API's RestartPolicy): the policy as create records it. The
    running container's monitor reads its policy from the log when its process ends, so
    the change holds from that end on."""
    return policy(value).api()


def ran_for(started_at: str, finished_at: str) -> float:
    """How long a run lasted, in seconds, from its recorded start and end (0 if unknown)."""
    try:
        start = datetime.fromisoformat(started_at)
        end = datetime.fromisoformat(finished_at)
    except (TypeError, ValueError):
        return 0.0
    return max((end - start).total_seconds(), 0.0)


def decision(c: Container) -> Decision | None:
    """What the container's policy said of its last end (a stopped container): the
    scheduled restart's count and reason, as its end's record decided them."""
    return decide(of(c.config), c.exit_code, c.manually_stopped, c.restart_count,
                  c.restart_delay, ran_for(c.started_at, c.finished_at), c.shutdown_stopped)


def after_exit(c: Container, exit_code: int, finished_at: str) -> Decision | None:
    """What the policy of `c` (running or paused) says of its process's own end with
    `exit_code` at `finished_at`: decided before the end is recorded, so that the end and
    the restart it wants are one record (processes.exited). An unreadable policy restarts
    nothing: the end is recorded all the same."""
    try:
        p = of(c.config)
    except BadInput:
        return None
    return decide(p, exit_code, False, c.restart_count, c.restart_delay,
                  ran_for(c.started_at, finished_at))
