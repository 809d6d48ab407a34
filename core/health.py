"""Healthchecks, docker's rules as pure functions (moby daemon/health.go, daemon/commit.go,
daemon/container.go, docker's CLI cli/command/container/opts.go).

A container's healthcheck is docker's `Config.Healthcheck`: {Test, Interval, Timeout,
StartPeriod, StartInterval, Retries}, durations in nanoseconds, zero fields left out. `Test` is
["CMD", argv...], ["CMD-SHELL", "command"] (run by the image's shell, `/bin/sh -c`) or
["NONE"] (an image's HEALTHCHECK switched off: `--no-healthcheck`). The image's HEALTHCHECK
fills what the container's leaves zero (`effective`).

The rules, as docker's:
- no probe until one interval after the start (30 s by default; during the start period,
  while still `starting`, the start interval, 5 s by default); the next one an interval
  after the previous one ended;
- a probe is an exec of the test in the container; a probe still running after its timeout
  (30 s by default) is killed and is a failure (exit code -1, "Health check exceeded
  timeout (1s)");
- status `starting` until the first success; `healthy` after any success (the failing
  streak back to 0); `unhealthy` once `retries` (3 by default) failures follow each other;
  failures that started within the start period (0 by default), while still `starting`,
  don't count;
- each probe's {Start, End, ExitCode, Output} is kept, the last 5; Output is cut at 4096
  bytes, with "..." after what was cut;
- a container that is not running (stopped, or paused: its probes stop) shows `unhealthy`
  once it has run with a healthcheck, as docker's does when its health monitor stops.

Who applies them: adapters/runtime/health.py, a small process per running container with a
healthcheck; what the log records: each change of status (ContainerHealthChanged), see there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadInput

SECOND = 1_000_000_000
MILLISECOND = 1_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096
MINIMUM = MILLISECOND  # docker's containertypes.MinimumDuration

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
TYPES = ("CMD", "CMD-SHELL", "NONE")
DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")
KEYS = ("Test", *DURATIONS, "Retries")
DEFAULT_SHELL = ("/bin/sh", "-c")


# --- Go durations ------------------------------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": MILLISECOND, "s": SECOND,
          "m": 60 * SECOND, "h": 3600 * SECOND}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: "0.2s", "1m30s", "500ms", "0"."""
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    body = s.lstrip("+-")
    if body == "0":
        return 0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None:
            missing = re.fullmatch(r"\d+\.?\d*|\.\d+", body[pos:]) is not None
            raise ValueError(f'time: missing unit in duration "{text}"' if missing
                             else f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * round(total)


def format_duration(ns: int) -> str:
    """Go's Duration.String: "0s", "200ms", "1.5s", "1m30s", "1h0m0s"."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < SECOND:
        for unit, size in (("ms", MILLISECOND), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * SECOND)
    minutes, rest = divmod(rest, 60 * SECOND)
    out = sign
    if hours:
        out += f"{hours}h{minutes}m"
    elif minutes:
        out += f"{minutes}m"
    return out + _decimal(rest, SECOND) + "s"


def _decimal(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


# --- the configuration -------------------------------------------------------------------------


def from_flags(cmd: str | None = None, interval: str | None = None,
               timeout: str | None = None, start_period: str | None = None,
               start_interval: str | None = None, retries: int | None = None,
               disabled: bool = False) -> dict[str, Any] | None:
    """docker run's --health-* and --no-healthcheck as docker's CLI turns them into
    Config.Healthcheck (None: none of them given)."""
    durations = {}
    for flag, key, text in (("--health-interval", "Interval", interval),
                            ("--health-timeout", "Timeout", timeout),
                            ("--health-start-period", "StartPeriod", start_period),
                            ("--health-start-interval", "StartInterval", start_interval)):
        if text is None:
            continue
        try:
            durations[key] = parse_duration(text)
        except ValueError as err:
            raise BadInput(f'invalid argument "{text}" for "{flag}" flag: {err}') from None
    given = bool(cmd) or any(durations.values()) or bool(retries)
    if disabled:
        if given:
            raise BadInput("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    for flag, key in (("--health-interval", "Interval"), ("--health-timeout", "Timeout"),
                      ("--health-start-period", "StartPeriod"),
                      ("--health-start-interval", "StartInterval")):
        if durations.get(key, 0) < 0:
            raise BadInput(f"{flag} cannot be negative")
    if (retries or 0) < 0:
        raise BadInput("--health-retries cannot be negative")
    out: dict[str, Any] = {"Test": ["CMD-SHELL", cmd]} if cmd else {}
    out.update({k: v for k, v in durations.items() if v})
    if retries:
        out["Retries"] = retries
    return normalized(out)


def normalized(value: Any) -> dict[str, Any]:
    """Config.Healthcheck checked as docker's daemon checks it at create, zero fields left
    out (docker's omitempty). BadInput in docker's words."""
    if not isinstance(value, Mapping):
        raise BadInput("Config.Healthcheck must be a JSON object")
    test = value.get("Test")
    if isinstance(test, str):  # not docker's schema, but what one means by it
        test = ["CMD-SHELL", test]
    if test is not None and (not isinstance(test, list)
                             or not all(isinstance(t, str) for t in test)):
        raise BadInput("Healthcheck.Test must be a list of strings")
    if test and test[0] not in TYPES:
        raise BadInput(f"unknown healthcheck type {test[0]!r} (expected CMD, CMD-SHELL "
                       "or NONE)")
    out: dict[str, Any] = {"Test": list(test)} if test else {}
    for key in DURATIONS:
        raw = value.get(key) or 0
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            raise BadInput(f"{key} in Healthcheck must be a number of nanoseconds")
        if raw and raw < MINIMUM:
            raise BadInput(f"{key} in Healthcheck cannot be less than "
                           f"{format_duration(MINIMUM)}")
        if raw:
            out[key] = int(raw)
    retries = value.get("Retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise BadInput("Retries in Healthcheck must be an integer")
    if retries < 0:
        raise BadInput("Retries in Healthcheck cannot be negative")
    if retries:
        out["Retries"] = retries
    return out


def effective(image_config: Mapping[str, Any] | None,
              options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The container's healthcheck: its own, with what it leaves zero taken from the
    image's HEALTHCHECK (docker's merge at create); None when neither has one."""
    image_hc = (image_config or {}).get("Healthcheck") or None
    own = options.get("healthcheck")
    if own is None:
        return dict(image_hc) if image_hc else None
    out = dict(own)
    if image_hc:
        for key in KEYS:
            if not out.get(key) and image_hc.get(key):
                out[key] = image_hc[key]
    return out


def probes(hc: Mapping[str, Any] | None) -> bool:
    """Whether this healthcheck runs probes (docker's getProbe: CMD or CMD-SHELL)."""
    test = (hc or {}).get("Test") or []
    return bool(test) and test[0] in ("CMD", "CMD-SHELL")


def probe_argv(hc: Mapping[str, Any], shell: Sequence[str] | None = None) -> list[str]:
    """What a probe execs: CMD's argv, or the command under the image's SHELL (/bin/sh -c)."""
    test = list(hc.get("Test") or [])
    if test[:1] == ["CMD-SHELL"]:
        return [*(shell or DEFAULT_SHELL), *test[1:]]
    return test[1:]


@dataclass(frozen=True)
class Timing:
    interval: float
    timeout: float
    start_period: float
    start_interval: float
    retries: int


def timing(hc: Mapping[str, Any]) -> Timing:
    """The healthcheck's numbers in seconds, docker's defaults for the zero ones."""
    return Timing(interval=(hc.get("Interval") or DEFAULT_INTERVAL) / SECOND,
                  timeout=(hc.get("Timeout") or DEFAULT_TIMEOUT) / SECOND,
                  start_period=(hc.get("StartPeriod") or DEFAULT_START_PERIOD) / SECOND,
                  start_interval=(hc.get("StartInterval") or DEFAULT_START_INTERVAL) / SECOND,
                  retries=hc.get("Retries") or DEFAULT_RETRIES)


def next_wait(t: Timing, status: str, since_start: float) -> float:
    """Seconds until the next probe (docker's getInterval): the start interval while the
    container is still `starting` within its start period, else the interval."""
    if since_start < t.start_period and status == STARTING:
        return t.start_interval
    return t.interval


# --- one probe's result, and what it does to the status ------------------------------------------


@dataclass(frozen=True)
class Health:
    """What the health process holds: the status, the failing streak, the last 5 results
    (docker's {Start, End, ExitCode, Output} each)."""

    status: str = STARTING
    failing_streak: int = 0
    log: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def output_text(data: bytes) -> str:
    """A probe's output as docker keeps it: the first 4096 bytes, "..." if more came."""
    text = data[:MAX_OUTPUT].decode("utf-8", errors="replace")
    return text + "..." if len(data) > MAX_OUTPUT else text


def timed_out(t: Timing, output: bytes = b"") -> str:
    """docker's Output for a probe killed at its timeout."""
    text = f"Health check exceeded timeout ({format_duration(round(t.timeout * SECOND))})"
    return f"{text}: {output_text(output)}" if output else text


def judge(h: Health, result: Mapping[str, Any], t: Timing, since_start: float) -> Health:
    """docker's handleProbeResult: the health after one probe's result; `since_start`: the
    probe's start, in seconds after the container's."""
    log = (*h.log, dict(result))[-MAX_LOG:]
    if result["ExitCode"] == 0:
        return Health(HEALTHY, 0, log)
    if h.status == STARTING and since_start < t.start_period:
        return Health(h.status, h.failing_streak, log)
    streak = h.failing_streak + 1
    return Health(UNHEALTHY if streak >= t.retries else h.status, streak, log)


def restarted(h: Health) -> Health:
    """A new run: `starting`, no failing streak, the old results kept (docker's
    initHealthMonitor)."""
    return Health(STARTING, 0, h.log)


# --- what readers show -----------------------------------------------------------------------


def status_of(state: str, ran: bool, recorded: Mapping[str, Any],
              hc: Mapping[str, Any] | None) -> str:
    """docker's health status word of a container: `none` without a probing healthcheck or
    before its first start; `starting` until its first recorded change of this run; the
    recorded status while it runs; `unhealthy` once its probes stopped (stopped, paused)."""
    if not probes(hc) or not ran:
        return NONE
    if state == "running":
        return str(recorded.get("status") or STARTING)
    return UNHEALTHY


def state_doc(status: str, recorded: Mapping[str, Any], runtime: Mapping[str, Any] | None,
              pid: int) -> dict[str, Any] | None:
    """docker inspect's State.Health: {Status, FailingStreak, Log}. The status is the log's
    (`status_of`); the streak and the last 5 results come from the health process's file
    (`runtime`), the current run's when `pid` (the running init's) is its, else the last."""
    if status == NONE:
        return None
    runtime = runtime or {}
    mine = bool(runtime) and (pid == 0 or runtime.get("pid") == pid)
    streak = runtime.get("failing_streak", 0) if mine else recorded.get("failing_streak", 0)
    return {"Status": status, "FailingStreak": int(streak or 0),
            "Log": list(runtime.get("log") or [])}


def suffix(status: str) -> str:
    """What ps adds to `Up 5 seconds`: ` (healthy)`, ` (health: starting)`."""
    if status == NONE:
        return ""
    return f" (health: {status})" if status == STARTING else f" ({status})"


def history_text(hc: Mapping[str, Any]) -> str:
    """The build history's comment, as docker's classic builder writes it (`%q` of the
    struct): HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "5s" "3s" "0s" "0s" '\\x03'}."""
    import json

    test = " ".join(json.dumps(t, ensure_ascii=False) for t in hc.get("Test") or [])
    durations = " ".join(f'"{format_duration(hc.get(k) or 0)}"' for k in DURATIONS)
    return f"HEALTHCHECK &{{[{test}] {durations} {chr(hc.get('Retries') or 0)!r}}}"


def from_instruction(words: Sequence[str], json_form: bool,
                     flags: Mapping[str, str]) -> dict[str, Any]:
    """A Dockerfile's HEALTHCHECK (buildkit's parseHealthcheck): `NONE`, or `CMD` with
    --interval/--timeout/--start-period/--start-interval/--retries. `words`: the type, then
    the command (one shell string, or the JSON array's items)."""
    if not words:
        raise BadInput("HEALTHCHECK requires at least one argument")
    kind, args = words[0].upper(), list(words[1:])
    if kind == "NONE":
        if args or flags:
            raise BadInput("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise BadInput(f'Unknown type "{words[0]}" in HEALTHCHECK (try CMD)')
    if not args or args == [""]:
        raise BadInput("Missing command after HEALTHCHECK CMD")
    out: dict[str, Any] = {"Test": ["CMD", *args] if json_form else ["CMD-SHELL", *args]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag not in flags:
            continue
        try:
            value = parse_duration(flags[flag])
        except ValueError as err:
            raise BadInput(str(err)) from None
        if value and value < MINIMUM:
            raise BadInput(f'Interval "{flag}" cannot be less than '
                           f"{format_duration(MINIMUM)}")
        if value:
            out[key] = value
    if "retries" in flags:
        try:
            retries = int(flags["retries"])
        except ValueError:
            raise BadInput(f'strconv.ParseInt: parsing "{flags["retries"]}": invalid '
                           "syntax") from None
        if retries < 0:
            raise BadInput(f"--retries cannot be negative ({retries})")
        if retries:
            out["Retries"] = retries
    return out
