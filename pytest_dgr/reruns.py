"""Reruns of dgr items (pytest-rerunfailures) in JUnit XML reports.

pytest's junitxml ignores the reports whose outcome is `rerun`, yet closes a `<testcase>` for
each attempt: a bats test that failed, then passed on its second try, shows as two passes
with no trace of the failure. For dgr items, this plugin writes one `<testcase>` per item
instead, holding the failed attempts as `<flakyFailure>` (`<flakyError>` for a failed set-up
or tear-down) elements, the convention of Maven Surefire that CI servers read: a test that
passed on a rerun is a pass with flaky failures, one that never passed a failure with them.

Active only on the process that writes the report (the controller under xdist), with
`--junitxml` and pytest-rerunfailures; the report file is rewritten once, at the end, and
only when a dgr item was rerun.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ATTEMPT = "dgr_rerun_attempt"  # the property marking a failed attempt's <testcase>
RERUN: str = "rerun"  # the outcome pytest-rerunfailures gives a failed attempt's reports


@dataclass(frozen=True)
class FailedAttempt:
    """A failed attempt of an item that was run again."""

    when: str  # setup, call or teardown
    message: str
    text: str

    def element(self) -> ET.Element:
        tag = "flakyFailure" if self.when == "call" else "flakyError"
        element = ET.Element(tag, message=self.message)
        ET.SubElement(element, "stackTrace").text = self.text
        return element


def pytest_configure(config: pytest.Config) -> None:
    xmlpath = getattr(config.option, "xmlpath", None)
    if xmlpath and not hasattr(config, "workerinput") and config.pluginmanager.hasplugin("rerunfailures"):
        config.pluginmanager.register(JunitReruns(Path(xmlpath)), "dgr-junit-reruns")


class JunitReruns:
    """Marks the `<testcase>` of each failed attempt, then folds it into the item's last one."""

    def __init__(self, xmlpath: Path) -> None:
        self.xmlpath = xmlpath
        self.attempts: list[list[FailedAttempt]] = []
        self.pending: dict[tuple[str, Any], list[FailedAttempt]] = {}

    @pytest.hookimpl(tryfirst=True)  # before junitxml closes the attempt's <testcase>
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = (report.nodeid, getattr(report, "worker_id", None))
        if report.outcome == RERUN and "dgr" in report.keywords:
            text = str(report.longrepr or "")  # without xdist's worker line
            message = text.strip().splitlines()[0] if text.strip() else f"failed at {report.when}"
            self.pending.setdefault(key, []).append(FailedAttempt(report.when, message, text))
        elif report.when == "teardown" and key in self.pending:
            self.attempts.append(self.pending.pop(key))
            report.user_properties.append((ATTEMPT, str(len(self.attempts) - 1)))

    @pytest.hookimpl(trylast=True)  # after junitxml wrote the file
    def pytest_sessionfinish(self) -> None:
        if self.attempts and self.xmlpath.is_file():
            fold_attempts(self.xmlpath, self.attempts)


def fold_attempts(xmlpath: Path, attempts: list[list[FailedAttempt]]) -> None:
    """Rewrite the report: each marked `<testcase>` becomes flaky elements of the next
    `<testcase>` of the same name (the item's next attempt, the last one in the end)."""
    tree = ET.parse(xmlpath)
    for suite in tree.getroot().iter("testsuite"):
        carried: dict[tuple[str | None, str | None], list[ET.Element]] = {}
        for case in list(suite.iter("testcase")):
            key = (case.get("classname"), case.get("name"))
            index = _attempt_index(case)
            if index is None:
                flaky = carried.pop(key, [])
                # after <properties>, before the outcome, as Surefire writes them
                position = 1 if len(case) and case[0].tag == "properties" else 0
                for element in reversed(flaky):
                    case.insert(position, element)
                continue
            carried.setdefault(key, []).extend(a.element() for a in attempts[index])
            suite.remove(case)
    tree.write(xmlpath, encoding="utf-8", xml_declaration=True)


def _attempt_index(case: ET.Element) -> int | None:
    for prop in case.iter("property"):
        if prop.get("name") == ATTEMPT:
            return int(prop.get("value") or 0)
    return None
