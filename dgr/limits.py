"""Limits on what extracting a downloaded image may write (docs/store.md, "Limits").

A small archive can expand enormously: a sparse tar entry or a gzip bomb of zeros. Before
any file of an archive is written, its size (as the tar header declares it) and count are
added up, and the extraction is refused with an error naming the entry once the archive
would expand beyond:

- `imageSize` bytes in all (default 32 GiB), or
- `expansion` times the archive's own size (default 100) — once it passes 64 MiB, so that
  small archives of text files are never refused; or would hold more than
- `files` entries (default 1,000,000).

Real images stay far below (a Debian base image: 120 MB from 50 MB, 9,000 entries). The
`limits` section of config.yml sets them; sizes are bytes or a number with KB, MB, GB, TB
(powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)::

    limits:
      imageSize: 64GiB
      expansion: 200
      files: 2000000
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dgr.config import Config
from dgr.errors import BuildError, DgrError

GIB = 1 << 30
EXPANSION_FLOOR = 64 << 20  # below this, the expansion ratio is not looked at
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """How far one archive may expand when extracted."""

    image_size: int = 32 * GIB
    expansion: float = 100.0
    files: int = 1_000_000

    def budget(self, archive_size: int | None, source: str) -> Budget:
        """A budget for extracting one archive of `archive_size` bytes (None: unknown)."""
        allowed = self.image_size
        if archive_size is not None:
            allowed = min(allowed, max(int(self.expansion * archive_size), EXPANSION_FLOOR))
        return Budget(self, allowed, archive_size, source)


DEFAULT = Limits()


class Budget:
    """What one extraction has used so far; :meth:`take` refuses an entry beyond it."""

    def __init__(self, limits: Limits, allowed: int, archive_size: int | None, source: str) -> None:
        self.limits = limits
        self.allowed = allowed
        self.archive_size = archive_size
        self.source = source
        self.size = 0
        self.files = 0

    def take(self, name: str, size: int) -> None:
        """Count entry `name` of `size` bytes; BuildError when the archive goes beyond a limit."""
        self.files += 1
        self.size += size
        if self.files > self.limits.files:
            raise self._refuse(name, f"the archive holds more than {self.limits.files:,} entries", "files")
        if self.size <= self.allowed:
            return
        if self.allowed == self.limits.image_size:
            why = f"the archive expands beyond {_human(self.allowed)}"
            key = "imageSize"
        else:
            why = (
                f"the archive ({_human(self.archive_size or 0)}) expands beyond {_human(self.allowed)}, "
                f"{self.limits.expansion:g} times its size (a compression bomb or a sparse file?)"
            )
            key = "expansion"
        raise self._refuse(name, why, key)

    def _refuse(self, name: str, why: str, key: str) -> BuildError:
        return BuildError(
            f"refusing tar entry {name!r}: {why}",
            path=self.source,
            key=f"limits.{key}",
            hint=f"if the image is genuine, raise limits.{key} in config.yml (docs/store.md)",
        )


def _human(size: int) -> str:
    for unit, factor in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


def parse_size(value: Any, key: str, where: str) -> int:
    """Bytes from a number or `10GiB`-like text; DgrError naming `key` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise DgrError(
            f"{key} must be a size in bytes, e.g. 20GiB or 500MB (not {value!r})", path=where, key=key
        )
    number, unit, binary = float(match.group(1)), match.group(2).lower(), match.group(3)
    factor = 1024 ** ("kmgt".index(unit) + 1) if binary and unit else _UNITS[unit]
    return int(number * factor)


def limits(config: Config) -> Limits:
    """The `limits` section of config.yml, checked (absent: the defaults)."""
    raw = config.section("limits")
    where = str(config.home / "config.yml")
    if raw is None:
        return DEFAULT
    if not isinstance(raw, dict):
        raise DgrError("limits must be a mapping (imageSize, expansion, files)", path=where, key="limits")
    unknown = sorted(set(raw) - {"imageSize", "expansion", "files"})
    if unknown:
        raise DgrError(
            f"unknown key {unknown[0]!r} in limits",
            path=where,
            key="limits",
            hint="known: expansion, files, imageSize",
        )
    size = (
        parse_size(raw["imageSize"], "limits.imageSize", where) if "imageSize" in raw else DEFAULT.image_size
    )
    expansion = raw.get("expansion", DEFAULT.expansion)
    if isinstance(expansion, bool) or not isinstance(expansion, int | float) or expansion < 1:
        raise DgrError("limits.expansion must be a number, 1 or more", path=where, key="limits.expansion")
    files = raw.get("files", DEFAULT.files)
    if isinstance(files, bool) or not isinstance(files, int) or files < 1:
        raise DgrError("limits.files must be a whole number, 1 or more", path=where, key="limits.files")
    return Limits(size, float(expansion), files)
