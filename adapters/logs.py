"""Logging through structlog, configured on first use.

structlog costs ~100 ms to import, so the hot commands never touch it unless they log:
`configure()` only records the choice, `get()` imports and sets up structlog lazily.
"""

from __future__ import annotations

import sys
from typing import Any

_settings = {"format": "console", "level": "warning"}
_logger: Any = None
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def configure(fmt: str = "console", level: str = "warning") -> None:
    global _logger
    _settings.update(format=fmt, level=level)
    _logger = None


def enabled(level: str) -> bool:
    return _LEVELS[level] >= _LEVELS[_settings["level"]]


def get() -> Any:
    """The process's structlog logger (stderr; JSON lines, or readable on a terminal)."""
    global _logger
    if _logger is None:
        import structlog

        renderer: Any
        if _settings["format"] == "json":
            renderer = structlog.processors.JSONRenderer(sort_keys=True)
        else:
            renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        structlog.configure(
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True), renderer],
            wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[_settings["level"]]),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=True,
        )
        _logger = structlog.get_logger("lamina")
    return _logger


def log(level: str, event: str, **fields: Any) -> None:
    """Log only if the level is on, so a quiet command never imports structlog."""
    if enabled(level):
        getattr(get(), level)(event, **fields)
