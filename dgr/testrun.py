"""`dgr test`: pytest on a project folder with dgr's plugin, its outcomes counted.

The project's BuildOptions reach the plugin whole, as a plugin object
(pytest_dgr/options.py), not as --dgr-* arguments for it to parse again; pytest's command
line holds the folder, pytest's cache folder and what the user gave after `--`. pytest's
report goes to stdout, or to stderr with `--json` (stdout then holds only the
command's document); SIGTERM stops the session as Ctrl-C does.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from typing import Any

import pytest

from dgr.project import Project
from pytest_dgr.options import GivenOptions


def run_tests(
    project: Project, *, extra: Sequence[str] = (), json_output: bool = False
) -> tuple[int, TestCounts]:
    """pytest's exit code and counts on `project` (with `json_output`, its report goes to
    stderr: stdout is for the command's document)."""
    sys.dont_write_bytecode = True  # no __pycache__ in the project's tests/ (a build input)
    argv = pytest_arguments(project, extra)
    counts = TestCounts()
    with _stdout_to_stderr(json_output), _terminate_as_interrupt():
        code = int(pytest.main(argv, plugins=[counts, GivenOptions(project.options)]))
    return code, counts


def pytest_arguments(project: Project, extra: Sequence[str] = ()) -> list[str]:
    """pytest's command line for `dgr test` on `project`: no dgr option is in it."""
    argv = [str(project.folder)]
    cache = project.pytest_cache_dir()
    if cache is not None:
        argv += ["-o", f"cache_dir={cache}"]
    return [*argv, *extra]


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While pytest runs, SIGTERM stops it as Ctrl-C does (its containers stopped, the session
    reported as interrupted), not as a failure of the test that was running; then it reaches
    dgr's own handler (exit code 143)."""
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:  # once: a second SIGTERM must not cut pytest's teardown short
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        signal.raise_signal(signal.SIGTERM)


class TestCounts:
    """A pytest plugin counting outcomes as pytest's summary line does, for `dgr test --json`."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("passed", "failed", "skipped", "errors", "xfailed", "xpassed"), 0)
        self.failures: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped:
            self.counts["xfailed" if hasattr(report, "wasxfail") else "skipped"] += 1
        elif report.when == "call":
            if hasattr(report, "wasxfail") and report.passed:
                self.counts["xpassed"] += 1
            else:
                self.counts["passed" if report.passed else "failed"] += 1
        elif report.failed:  # setup or teardown
            self.counts["errors"] += 1
        if report.failed:
            self.failures.append(report.nodeid)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.counts["errors"] += 1
            self.failures.append(report.nodeid)

    def document(self) -> dict[str, Any]:
        return {**self.counts, "failures": self.failures}


@contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """While active, whatever writes to stdout (pytest's report, tools it runs) goes to stderr,
    so that stdout holds only the JSON document."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
