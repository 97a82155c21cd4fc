"""Logging for dgr: one readable line per step, the failing step's output shown.

`step()` is the progress protocol (after mkosi's `complete_step`): it logs the step, its
duration, and on failure lets the error carry the tail of the step's output.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

LOGGER_NAME = "dgr"
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

log = logging.getLogger(LOGGER_NAME)


def parse_level(name: str) -> int:
    """Map a dgr level name (case-insensitive) to a logging level; ValueError if unknown."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown log level: {name} (use one of error, warn, info, debug, trace)") from None


def level_name(level: int) -> str:
    """The dgr name of a logging level, upper case, as scripts see it in LOG_LEVEL."""
    for name, value in LEVELS.items():
        if value == level and name != "warning":
            return name.upper()
    return "INFO"


class _Formatter(logging.Formatter):
    COLORS = {
        logging.ERROR: "\033[31m",
        logging.WARNING: "\033[33m",
        logging.INFO: "\033[32m",
        logging.DEBUG: "\033[35m",
        TRACE: "\033[34m",
    }

    def __init__(self, color: bool) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = record.levelname.lower().replace("warning", "warn").ljust(5)
        if self.color:
            level = f"{self.COLORS.get(record.levelno, '')}{level}\033[0m"
        text = f"{stamp} {level} {record.getMessage()}"
        if record.exc_info and log.isEnabledFor(logging.DEBUG):
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (pytest swaps it between tests)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


COLOR_CHOICES = ("auto", "always", "never")


def use_color(choice: str = "auto", environ: Mapping[str, str] | None = None) -> bool:
    """Whether the log is coloured: `always`, `never`, or (`auto`) when stderr is a terminal
    and NO_COLOR is unset or empty (no-color.org: an explicit flag wins over NO_COLOR)."""
    if choice != "auto":
        return choice == "always"
    if (os.environ if environ is None else environ).get("NO_COLOR"):
        return False
    return sys.stderr.isatty()


def setup(level: int = logging.INFO, *, color: bool | None = None) -> None:
    """Send dgr's log to stderr at `level` (idempotent), coloured per `color` (default: auto)."""
    log.setLevel(level)
    for handler in list(log.handlers):
        if getattr(handler, "_dgr", False):
            log.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(color=use_color() if color is None else color))
    handler._dgr = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False


@contextmanager
def step(text: str) -> Iterator[None]:
    """Log `text`, run the block, then log how long it took (or that it failed)."""
    log.info("%s ...", text)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        log.debug("%s failed after %.2fs", text, time.monotonic() - start)
        raise
    log.debug("%s done in %.2fs", text, time.monotonic() - start)
