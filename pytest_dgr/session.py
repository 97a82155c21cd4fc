"""What a pytest session shares with every image folder it collects: the build options, the
tester's options and the session's builds (made once, on first use), and the folder shared
with xdist workers where the builds record their outcomes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from dgr.options import BuildOptions
from dgr.tester import TesterOptions
from pytest_dgr.builds import SessionBuilds
from pytest_dgr.options import build_options

SESSION_DIR = pytest.StashKey[Path]()


@dataclass(frozen=True)
class Settings:
    """What the command line said, for every image of the session."""

    options: BuildOptions
    tester: TesterOptions
    builds: SessionBuilds


SETTINGS = pytest.StashKey[Settings]()


def settings(config: pytest.Config) -> Settings:
    """The session's dgr settings, made on first use (a bad option is a usage error)."""
    found = config.stash.get(SETTINGS, None)
    if found is not None:
        return found
    options = build_options(config)
    logging.getLogger("dgr").setLevel(options.log_level)
    tester = TesterOptions(
        wait_tries=config.getoption("dgr_wait_tries"),
        wait_interval=config.getoption("dgr_wait_interval"),
        keep=options.keep,
    )
    found = Settings(options, tester, SessionBuilds(config.stash[SESSION_DIR], options))
    config.stash[SETTINGS] = found
    return found
