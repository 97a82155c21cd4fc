"""`--dgr-push`: at the end of the session, push every image whose items all passed, once.

Every item of an image folder carries `("dgr_image", <folder>)` in its `user_properties`,
which pytest copies into its reports; under xdist the reports travel to the controller. The
controller (the only process without `config.workerinput`) marks an image as failed when any
report of its items failed (setup, call or teardown), as built when its `build` item passed,
and pushes at `pytest_sessionfinish` each built image that never failed. Skipped items do
not stop a push. Nothing is pushed when the run stopped early (`-x`, `--maxfail`, Ctrl-C).
A failed push makes the session fail (exit code 1) and is reported in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dgr.errors import DgrError
from dgr.plan import plan_build_image
from dgr.push import prepare_signature, push_image
from pytest_dgr.items import ImageDirectory, format_error
from pytest_dgr.session import settings

IMAGE_PROPERTY = "dgr_image"


@dataclass
class Outcomes:
    """What the controller learnt from the reports, per image folder."""

    built: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)  # the summary, shown at the end

    def passing(self) -> list[str]:
        return sorted(self.built - self.failed)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("dgr").addoption(
        "--dgr-push",
        action="store_true",
        help="at the end, push every image whose items all passed (push section of config.yml)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("dgr_push", False) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Pusher(config), "dgr-push-controller")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tag each image item with its folder (on workers too: the tag travels in the reports)."""
    if not config.getoption("dgr_push", False):
        return

    for item in items:
        directory = item.getparent(ImageDirectory)
        if directory is not None:
            item.user_properties.append((IMAGE_PROPERTY, str(directory.path)))


class Pusher:
    """Controller side: folds every report into :class:`Outcomes`, pushes at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes = Outcomes()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        folder = dict(report.user_properties).get(IMAGE_PROPERTY)
        if not isinstance(folder, str):
            return
        if report.failed:
            self.outcomes.failed.add(folder)
        elif report.when == "call" and report.passed and report.nodeid.endswith("::build"):
            self.outcomes.built.add(folder)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        outcomes = self.outcomes
        stopped = session.shouldstop or session.shouldfail or _maxfail_reached(session)
        if exitstatus == pytest.ExitCode.INTERRUPTED or stopped:
            outcomes.lines.append("nothing pushed: the run stopped early")
            return
        for folder in sorted(outcomes.failed & outcomes.built):
            outcomes.lines.append(f"not pushed (tests failed): {folder}")
        failed = False
        for folder in outcomes.passing():
            try:
                outcomes.lines.extend(push_folder(Path(folder), self.config))
            except Exception as exc:  # one image's failure does not stop the others
                failed = True
                outcomes.lines.append(f"push of {folder} FAILED: {_message(exc)}")
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.section("dgr push")
        for line in self.outcomes.lines or ["no image passed all its items: nothing pushed"]:
            terminalreporter.write_line(line)


def _maxfail_reached(session: pytest.Session) -> bool:
    maxfail = int(session.config.getoption("maxfail", 0) or 0)
    return bool(maxfail) and session.testsfailed >= maxfail


def _message(exc: Exception) -> str:

    return format_error(exc) if isinstance(exc, DgrError) else f"{type(exc).__name__}: {exc}"


def push_folder(folder: Path, config: pytest.Config) -> list[str]:
    """Build (up to date after the tests), sign when configured, push; one line per target."""

    options = settings(config).options
    result = plan_build_image(folder, options)
    signature = prepare_signature(result, options.config)
    return [
        f"pushed {result.name} to {p.location} {p.digest}".rstrip()
        for p in push_image(result, options.config, signature=signature)
    ]
