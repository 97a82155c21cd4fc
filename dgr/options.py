"""Build options: how to build, as the user said it on either face (the CLI's flags, the
pytest plugin's options) and in the configuration file."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgr.config import Config, load_config


@dataclass(frozen=True)
class BuildOptions:
    """How to build: what the command line and the configuration said."""

    config: Config
    set_env: Mapping[str, str] = field(default_factory=dict)
    log_level: int = 20
    keep: bool = False
    echo: bool = False
    targets_root: Path | None = None
    shell_on_failure: bool = False  # a debugging shell in the sandbox of a failing step
    shell_after: str = ""  # a debugging shell after this step (one of SHELL_STEPS)
    # Seconds all runlevels of a build may take, and each script (--timeout,
    # --script-timeout); None: the manifest's build.timeout / build.scriptTimeout, if any.
    timeout: float | None = None
    script_timeout: float | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        home: str | None,
        targets_root: str | None,
        set_env: Mapping[str, str],
        log_level: int,
        keep: bool = False,
        **more: Any,
    ) -> BuildOptions:
        """The options both faces make from what the user gave (the CLI's flags, the pytest
        plugin's --dgr-* options): the configuration of `home` (default ~/.config/dgr), the
        targets root made absolute, scripts' output echoed at debug level."""
        return cls(
            config=load_config(Path(home) if home else None),
            set_env=set_env,
            log_level=log_level,
            keep=keep,
            echo=log_level <= logging.DEBUG,
            targets_root=Path(targets_root).absolute() if targets_root else None,
            **more,
        )

    def to_json(self) -> dict[str, Any]:
        """The settings `from_settings` makes these options from, as JSON values (to hand
        them to another process: pytest-xdist's workers)."""
        return {
            "home": str(self.config.home),
            "targets_root": str(self.targets_root) if self.targets_root is not None else None,
            "set_env": dict(self.set_env),
            "log_level": self.log_level,
            "keep": self.keep,
            "shell_on_failure": self.shell_on_failure,
            "shell_after": self.shell_after,
            "timeout": self.timeout,
            "script_timeout": self.script_timeout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildOptions:
        """The options of `to_json`, made again in their one place (the configuration read
        again from the same home)."""
        return cls.from_settings(**data)
