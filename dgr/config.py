"""The user's configuration: `<home>/config.yml` (home: `-H`, default `~/.config/dgr`).

Every key is optional. Unknown keys are an error naming the key (as for manifests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgr.errors import DgrError
from dgr.yamlload import parse_yaml

KNOWN_KEYS = {
    "targetWorkDir", "storePath", "cachePath", "insecureOptions", "push", "sign", "discovery", "limits",
}  # fmt: skip


def default_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dgr"


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")) / "dgr"


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "dgr"


@dataclass(frozen=True)
class Config:
    """Loaded configuration with defaults filled in."""

    home: Path
    target_work_dir: Path | None = None
    store_path: Path = field(default_factory=lambda: _data_home() / "store")
    cache_path: Path = field(default_factory=_cache_home)
    insecure_options: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, key: str) -> Any:
        """A raw section (push, sign, discovery) for the module that owns it."""
        return self.raw.get(key)


def load_config(home: Path | None = None) -> Config:
    """Read `<home>/config.yml`; a missing file gives the defaults."""
    home = home or default_home()
    path = home / "config.yml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config(home=home)
    except OSError as exc:
        raise DgrError(f"cannot read configuration: {exc.strerror}", path=path) from None
    data = parse_yaml(text, path) or {}
    if not isinstance(data, dict):
        raise DgrError("configuration must be a mapping", path=path)
    for key in data:
        if key not in KNOWN_KEYS:
            raise DgrError(
                f"unknown key {key!r} in configuration",
                path=path,
                key=str(key),
                hint=f"known keys: {', '.join(sorted(KNOWN_KEYS))}",
            )

    def _path(key: str) -> Path | None:
        value = data.get(key)
        return Path(os.path.expanduser(str(value))) if value else None

    defaults = Config(home=home)
    return Config(
        home=home,
        target_work_dir=_path("targetWorkDir"),
        store_path=_path("storePath") or defaults.store_path,
        cache_path=_path("cachePath") or defaults.cache_path,
        insecure_options=tuple(str(o).lower() for o in data.get("insecureOptions") or ()),
        raw=data,
    )
