"""The run options of a container's process beyond its command: `--init`, `--ulimit`,
`--stop-signal`, `--stop-timeout`, `--log-driver`/`--log-opt`; judged at create in docker's
words, recorded as docker's API shapes (HostConfig.Ulimits' list, HostConfig.LogConfig's
{Type, Config}), and read back by the runtime (core/process.py) and by stop.

Pure: no I/O. Why here and not in the adapters: a bad option is a recorded refusal whichever
client sent it, the Docker API's create and the CLI alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from core.errors import BadInput
from core.signals import parse_signal

# docker's names (go-units ulimit.go), each with its Linux resource number (RLIMIT_*)
ULIMITS: dict[str, int] = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
    "nofile": 7, "memlock": 8, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13,
    "rtprio": 14, "rttime": 15,
}

DEFAULT_STOP_SIGNAL = "SIGTERM"
DEFAULT_STOP_TIMEOUT = 10  # seconds, docker's

JSON_FILE, NONE = "json-file", "none"
LOG_DRIVERS = (JSON_FILE, NONE)
# docker's other drivers: known names, refused by name rather than said not to exist
OTHER_DRIVERS = frozenset({"local", "syslog", "journald", "gelf", "fluentd", "awslogs",
                           "splunk", "etwlogs", "gcplogs", "logentries"})
# json-file's options as docker validates them; lamina honours the first two
JSON_FILE_OPTS = ("max-size", "max-file")
JSON_FILE_OTHER_OPTS = frozenset({"compress", "labels", "labels-regex", "env", "env-regex",
                                  "tag", "mode", "max-buffer-size"})


# --- ulimits -----------------------------------------------------------------------------


def parse_ulimit(text: str) -> dict[str, Any]:
    """`NAME=SOFT[:HARD]` (the CLI's --ulimit, go-units ParseUlimit) -> docker's API shape
    {"Name", "Soft", "Hard"}; HARD defaults to SOFT."""
    name, sep, values = text.partition("=")
    if not sep:
        raise BadInput(f"invalid ulimit argument: {text}")
    if name not in ULIMITS:
        raise BadInput(f"invalid ulimit type: {name}")
    parts = values.split(":")
    if len(parts) > 2:
        raise BadInput(f"too many limit value arguments - {values}, can only have up to "
                       "two, `soft[:hard]`")
    soft = _int64(parts[0])
    hard = _int64(parts[1]) if len(parts) == 2 else soft
    return checked_ulimit({"Name": name, "Soft": soft, "Hard": hard})


def _int64(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise BadInput(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    return int(text)


def checked_ulimit(item: Any) -> dict[str, Any]:
    """One of HostConfig.Ulimits, judged: a name of docker's, whole numbers, soft <= hard
    (-1 is unlimited)."""
    if not isinstance(item, Mapping):
        raise BadInput(f"invalid ulimit: {item!r}")
    name, soft, hard = item.get("Name"), item.get("Soft", 0), item.get("Hard", 0)
    if name not in ULIMITS:
        raise BadInput(f"invalid ulimit type: {name}")
    if not (isinstance(soft, int) and isinstance(hard, int)) \
            or isinstance(soft, bool) or isinstance(hard, bool):
        raise BadInput(f"invalid ulimit {name}: Soft and Hard must be integers")
    if hard != -1 and soft > hard:
        raise BadInput(f"ulimit soft limit must be less than or equal to hard limit: "
                       f"{soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}


def rlimits(options: Mapping[str, Any]) -> tuple[tuple[int, int, int], ...]:
    """(resource, soft, hard) for setrlimit, -1 meaning unlimited; the last of a name wins."""
    out = {u["Name"]: (ULIMITS[u["Name"]], u["Soft"], u["Hard"])
           for u in options.get("ulimits") or ()}
    return tuple(out.values())


# --- stop ----------------------------------------------------------------------------------


def checked_stop_signal(value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise BadInput(f"invalid signal: {value}")
    parse_signal(value)
    return str(value)


def stop_signal(options: Mapping[str, Any], image_config: Mapping[str, Any]) -> int:
    """The signal `stop` sends: --stop-signal, else the image's STOPSIGNAL, else SIGTERM
    (an image's bad STOPSIGNAL is ignored, as docker's daemon ignores it)."""
    for value in (options.get("stop_signal"), image_config.get("StopSignal")):
        if value:
            try:
                return parse_signal(value)
            except BadInput:
                continue
    return parse_signal(DEFAULT_STOP_SIGNAL)


def checked_stop_timeout(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"invalid stop timeout: {value!r}: a whole number of seconds")
    return value


def stop_timeout(options: Mapping[str, Any], given: float | None) -> float | None:
    """`stop -t`'s timeout, else --stop-timeout, else docker's 10 s; None: wait for ever
    (a negative timeout, as docker's)."""
    timeout = given if given is not None else options.get("stop_timeout")
    timeout = DEFAULT_STOP_TIMEOUT if timeout is None else timeout
    return None if timeout < 0 else float(timeout)


# --- logging -------------------------------------------------------------------------------


def checked_log_config(value: Any) -> dict[str, Any]:
    """HostConfig.LogConfig judged as docker's daemon does (logger.ValidateLogOpts and the
    json-file driver's own checks): {"Type", "Config"}, an empty Type meaning json-file."""
    if not isinstance(value, Mapping):
        raise BadInput(f"invalid LogConfig: {value!r}")
    driver = value.get("Type") or JSON_FILE
    config = value.get("Config") or {}
    if not isinstance(driver, str) or not isinstance(config, Mapping) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
        raise BadInput("invalid LogConfig: Type is a string, Config a map of strings")
    if driver == NONE:
        return {"Type": NONE, "Config": dict(config)}  # docker validates nothing for none
    if driver in OTHER_DRIVERS:
        raise BadInput(f"logging driver {driver!r} (--log-driver {driver}) is not supported "
                       f"by lamina yet (use {' or '.join(LOG_DRIVERS)})")
    if driver != JSON_FILE:
        raise BadInput(f"logger: no log driver named '{driver}' is registered")
    for key in config:
        if key in JSON_FILE_OTHER_OPTS:
            raise BadInput(f"log opt '{key}' (--log-opt {key}) is not supported by lamina "
                           f"yet (json-file's {' and '.join(JSON_FILE_OPTS)} are)")
        if key not in JSON_FILE_OPTS:
            raise BadInput(f"unknown log opt '{key}' for json-file log driver")
    log_limits(config)
    return {"Type": driver, "Config": dict(config)}


def log_limits(config: Mapping[str, str]) -> tuple[int, int]:
    """json-file's (max size in bytes or -1, max files): max-size in go-units' decimal
    human sizes (`10m` is 10,000,000 bytes, as docker's FromHumanSize), max-file >= 1."""
    size = -1
    if "max-size" in config:
        size = from_human_size(config["max-size"])
        if size <= 0:
            raise BadInput("max-size must be a positive number")
    files = 1
    if "max-file" in config:
        text = config["max-file"]
        if not re.fullmatch(r"[+-]?\d+", text):
            raise BadInput(f'strconv.Atoi: parsing "{text}": invalid syntax')
        files = int(text)
        if files < 1:
            raise BadInput("max-file cannot be less than 1")
    return size, files


_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_HUMAN = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def from_human_size(text: str) -> int:
    """go-units FromHumanSize: `10m` -> 10000000 (decimal units; `10mb`, `10MiB` alike)."""
    match = _HUMAN.match(text)
    try:
        if match is None:
            raise InvalidOperation
        number = Decimal(match.group(1))
    except InvalidOperation:
        raise BadInput(f"invalid size: '{text}'") from None
    return int(number * _DECIMAL[(match.group(2) or "").lower()])


def log_driver(options: Mapping[str, Any]) -> str:
    return (options.get("log_config") or {}).get("Type") or JSON_FILE


def log_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """What inspect shows as HostConfig.LogConfig: as recorded, json-file {} by default."""
    recorded = options.get("log_config") or {}
    return {"Type": recorded.get("Type") or JSON_FILE, "Config": dict(recorded.get("Config")
                                                                        or {})}


def readable(options: Mapping[str, Any]) -> None:
    """`logs` of a container whose driver keeps nothing: docker's refusal."""
    if log_driver(options) == NONE:
        raise LogsNotSupported("configured logging driver does not support reading")


class LogsNotSupported(BadInput):
    """docker's ErrReadLogsNotSupported (its API answers 501)."""


# --- the terminal's size ---------------------------------------------------------------------


def checked_console_size(value: Any) -> list[int] | None:
    """docker's ConsoleSize (a container's HostConfig, an exec's create or start):
    [height, width], each 0-65535 (a winsize's fields); None for [0, 0], which asks for
    nothing."""
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in value):
        raise BadInput(f"invalid ConsoleSize: {value!r}: [height, width] expected")
    return [int(value[0]), int(value[1])] if any(value) else None


def console_size(options: Mapping[str, Any]) -> tuple[int, int]:
    """The recorded (rows, columns) a terminal starts with; (0, 0) when none was given."""
    rows, cols = options.get("console_size") or (0, 0)
    return rows, cols


# --- all of them, at create ----------------------------------------------------------------


def normalized(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with these fields judged and put in their recorded shapes."""
    out = dict(options)
    if out.get("ulimits"):
        if not isinstance(out["ulimits"], list):
            raise BadInput(f"invalid Ulimits: {out['ulimits']!r}")
        out["ulimits"] = [checked_ulimit(u) for u in out["ulimits"]]
    if out.get("stop_signal"):
        out["stop_signal"] = checked_stop_signal(out["stop_signal"])
    if out.get("stop_timeout") is not None and "stop_timeout" in out:
        out["stop_timeout"] = checked_stop_timeout(out["stop_timeout"])
    if out.get("log_config"):
        out["log_config"] = checked_log_config(out["log_config"])
    for key, api, allowed in (("isolation", "HostConfig.Isolation", "default"),
                              ("runtime", "HostConfig.Runtime", "runc")):
        if out.get(key) not in (None, "", allowed):  # docker's default, by name: no more
            from core.compat import refusal

            raise BadInput(f"{refusal(api)} ({out[key]!r}; only {allowed!r})")
    if out.get("shm_size") is not None:
        try:
            out["shm_size"] = int(out["shm_size"])
        except (TypeError, ValueError):
            raise BadInput(f"invalid ShmSize: {out['shm_size']!r}") from None
        if out["shm_size"] < 0:
            raise BadInput("SHM size can not be less than 0")
        if not out["shm_size"]:
            del out["shm_size"]
    if "console_size" in out:
        out["console_size"] = checked_console_size(out["console_size"])
        if out["console_size"] is None:
            del out["console_size"]
    if "init" in out:
        if not isinstance(out["init"], bool):
            raise BadInput(f"invalid Init: {out['init']!r}")
        if not out["init"]:
            del out["init"]
    return out
