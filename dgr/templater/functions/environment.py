"""Template functions of the start rather than the attributes (environment, clock, chance), and fail.

Their names are in START_TIME_NAMES (dgr/templater/functions/__init__.py): a template that
uses one is rendered at every start, never prepared.
"""

from __future__ import annotations

import os
import re
from typing import Any, NoReturn

from dgr.templater.values import FunctionError, _text, format_value


def getenv(name: str, fallback: str = "") -> str:
    """``getenv(name[, default])``: the environment variable, or the default when it is unset
    or empty."""
    return os.environ.get(_text(name, "getenv")) or fallback


def env(name: str) -> str:
    """``env(name)`` (sprig): the environment variable, or "" when unset."""
    return os.environ.get(_text(name, "env"), "")


def expandenv(text: str) -> str:
    """``$VAR`` and ``${VAR}`` in text replaced by the environment's value ("" when unset)."""

    def value_of(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1) or match.group(2), "")

    return re.sub(r"\$(?:\{([^}]*)\}|(\w+))", value_of, _text(text, "expandenv"))


def now() -> Any:
    """The current local time, with its zone (a Python datetime: ``now().strftime("%Y")``)."""
    import datetime as _dt

    return _dt.datetime.now().astimezone()


def uuidv4() -> str:
    """A random (version 4) UUID, as text.

    Built from os.urandom as RFC 4122 §4.4 says, rather than with the uuid module, which
    would bring `platform` and friends into every image (see docs/internals.md).
    """
    import os

    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fail(message: Any) -> NoReturn:
    """``fail(msg)``: stop rendering with msg as the error."""
    raise FunctionError(format_value(message))
