"""The session's build options: given whole by `dgr test`, or made from the --dgr-* options.

`dgr test` makes its BuildOptions from dgr's own flags (`-H`, `-p`, `-L`, `--set-env`, `-k`)
and hands them to pytest as a plugin object (:class:`GivenOptions`), not as a command line
for this plugin to parse again. A plain `pytest` run makes them from its --dgr-* options
with the same `BuildOptions.from_settings`. xdist workers get no plugin object of the
controller's: the controller puts the options' JSON form in each worker's `workerinput`
(`pytest_configure_node`, see plugin.py) and the worker reads them back when it configures.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from dgr.errors import DgrError
from dgr.log import parse_level
from dgr.options import BuildOptions
from dgr.parser import parse_set_env

GIVEN_OPTIONS = pytest.StashKey[BuildOptions]()
WORKERINPUT_KEY = "dgr_options"

# The --dgr-* options that make the build options, with their defaults (pytest's dest names).
BUILD_OPTION_DEFAULTS: dict[str, Any] = {
    "dgr_home": None,
    "dgr_target": None,
    "dgr_log_level": "info",
    "dgr_set_env": [],
    "dgr_keep": False,
}


def add_options(parser: pytest.Parser) -> None:
    """The --dgr-* options of a plain `pytest` run (`dgr test` gives the build ones itself)."""
    group = parser.getgroup("dgr", "dgr: build and test container images")
    group.addoption("--dgr-home", metavar="DIR", help="dgr configuration folder (default ~/.config/dgr)")
    group.addoption("--dgr-target", metavar="DIR", help="put image targets under DIR (dgr -p)")
    group.addoption(
        "--dgr-log-level",
        default=BUILD_OPTION_DEFAULTS["dgr_log_level"],
        metavar="LEVEL",
        help="error|warn|info|debug|trace (default: info)",
    )
    group.addoption("--dgr-keep", action="store_true", help="keep test containers and build work folders")
    group.addoption(
        "--dgr-set-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for build scripts (repeatable)",
    )
    group.addoption(
        "--dgr-wait-tries",
        type=int,
        default=60,
        metavar="N",
        help="run tests/wait.sh at most N times (default: 60)",
    )
    group.addoption(
        "--dgr-wait-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="pause between two wait.sh runs (default: 1)",
    )


class GivenOptions:
    """A pytest plugin object carrying the build options of `dgr test` into its session."""

    def __init__(self, options: BuildOptions) -> None:
        self.options = options

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        """Stash the options; --dgr-* build options after `dgr test --` would contradict them."""
        flags = [
            "--" + name.replace("_", "-")
            for name, default in BUILD_OPTION_DEFAULTS.items()
            if config.getoption(name, default) != default
        ]
        if flags:
            raise pytest.UsageError(
                f"dgr test: {', '.join(flags)} after -- (give dgr's own -H, -p, -L, --set-env, -k instead)"
            )
        config.stash[GIVEN_OPTIONS] = self.options


def build_options(config: pytest.Config) -> BuildOptions:
    """The session's build options: those `dgr test` gave (or the controller sent to this
    worker), else made from the --dgr-* options (a bad one is a pytest.UsageError)."""
    given = config.stash.get(GIVEN_OPTIONS, None)
    if given is not None:
        return given
    try:
        return BuildOptions.from_settings(
            home=config.getoption("dgr_home"),
            targets_root=config.getoption("dgr_target"),
            set_env=parse_set_env(config.getoption("dgr_set_env"), dict(os.environ)),
            log_level=parse_level(config.getoption("dgr_log_level")),
            keep=bool(config.getoption("dgr_keep")),
        )
    except (ValueError, DgrError) as exc:
        raise pytest.UsageError(f"dgr: {exc}") from None


def keeps_files(config: pytest.Config) -> bool:
    """Whether the session keeps its test containers' and builds' folders (-k, --dgr-keep)."""
    given = config.stash.get(GIVEN_OPTIONS, None)
    return given.keep if given is not None else bool(config.getoption("dgr_keep"))


def send_to_worker(config: pytest.Config, workerinput: dict[str, Any]) -> None:
    """On the xdist controller: the options `dgr test` gave, for a worker (a plain run's
    workers parse the same --dgr-* options as the controller)."""
    given = config.stash.get(GIVEN_OPTIONS, None)
    if given is not None:
        workerinput[WORKERINPUT_KEY] = given.to_json()


def receive_from_controller(config: pytest.Config, workerinput: dict[str, Any]) -> None:
    """On an xdist worker: the options the controller sent, if any."""
    if WORKERINPUT_KEY in workerinput:
        try:
            config.stash[GIVEN_OPTIONS] = BuildOptions.from_json(workerinput[WORKERINPUT_KEY])
        except (ValueError, DgrError) as exc:
            raise pytest.UsageError(f"dgr: {exc}") from None
