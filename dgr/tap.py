"""bats files and their TAP output: the `@test`s of a file (to collect items without running
anything) and the results of a run (one per `@test`, with its diagnostics)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dgr.errors import DgrError


class BatsError(DgrError):
    """bats could not run a test file."""


# The same patterns bats-preprocess uses to find tests.
_TEST_LINE = re.compile(r"^[ \t]*@test[ \t]+(.*[^ \t])[ \t]+\{(.*)$")
_TEST_COMMENT = re.compile(r"^[ \t]*([^ \t()]+)[ \t]*\(?\)?[ \t]+\{[ \t]+#[ \t]*@test[ \t]*$")


def bats_tests(text: str) -> list[tuple[int, str]]:
    """The `@test`s of a bats file, in order: (line number, name as written, quotes removed)."""
    tests = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.replace("\r", "")
        match = _TEST_LINE.match(line) or _TEST_COMMENT.match(line)
        if match is None:
            continue
        name = match.group(1)
        if name[:1] in ("'", '"'):
            name = name[1:]
        if name[-1:] in ("'", '"'):
            name = name[:-1]
        tests.append((number, name))
    return tests


def bats_test_names(text: str) -> list[str]:
    """The `@test` names of a bats file, in order, as written (outer quotes removed)."""
    return [name for _, name in bats_tests(text)]


def list_bats_tests(path: Path) -> list[str]:
    """The `@test` names of the bats file at `path` (collection without running)."""
    try:
        return bats_test_names(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise BatsError(f"cannot read bats file: {exc.strerror}", path=path) from None


Status = Literal["ok", "not ok", "skip"]


@dataclass(frozen=True)
class BatsResult:
    """The result of one `@test`, from a TAP line and the diagnostics that follow it."""

    number: int
    name: str
    status: Status
    diagnostics: str = ""
    reason: str = ""  # why it was skipped

    @property
    def passed(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status == "not ok"

    @property
    def skipped(self) -> bool:
        return self.status == "skip"


@dataclass(frozen=True)
class TapReport:
    """A parsed TAP stream: the plan, the results and the lines that were neither."""

    planned: int | None
    results: tuple[BatsResult, ...]
    other: tuple[str, ...] = ()


_RESULT = re.compile(r"^(ok|not ok)[ \t]+(\d+)(?:[ \t]+(.*))?$")
_PLAN = re.compile(r"^1\.\.(\d+)")
_SKIP = re.compile(r"^(.*?)[ \t]+#[ \t]*skip\b[ \t]*(?:\((.*)\)|(.*))$", re.IGNORECASE)
_TIMING = re.compile(r"[ \t]+#[ \t]+(?:in \d+ ?ms|timeout after \d+ ?s)$")


def parse_tap(text: str) -> TapReport:
    """Parse bats' TAP output (`bats --tap`) into per-test results.

    `# ...` lines after a result are its diagnostics (the failure text for `not ok`).
    """
    planned: int | None = None
    results: list[BatsResult] = []
    other: list[str] = []
    current: tuple[int, str, Status, str] | None = None
    diagnostics: list[str] = []

    def flush() -> None:
        nonlocal current
        if current is not None:
            number, name, status, reason = current
            results.append(BatsResult(number, name, status, "\n".join(diagnostics).rstrip("\n"), reason))
        current = None
        diagnostics.clear()

    for line in text.splitlines():
        line = line.rstrip("\r")
        match = _RESULT.match(line)
        if match is not None:
            flush()
            status: Status = "ok" if match.group(1) == "ok" else "not ok"
            name, reason = match.group(3) or "", ""
            while _TIMING.search(name):
                name = _TIMING.sub("", name)
            skip = _SKIP.match(name) if status == "ok" else None
            if skip is not None:
                status, name = "skip", skip.group(1)
                reason = (skip.group(2) if skip.group(2) is not None else skip.group(3) or "").strip()
            current = (int(match.group(2)), name, status, reason)
            continue
        plan = _PLAN.match(line)
        if plan is not None and planned is None and not results and current is None:
            planned = int(plan.group(1))
            continue
        if line.startswith("#") and current is not None:
            diagnostics.append(line[2:] if line.startswith("# ") else line[1:])
            continue
        if line.strip():
            other.append(line)
    flush()
    return TapReport(planned, tuple(results), tuple(other))


@dataclass(frozen=True)
class BatsRun:
    """One bats file run in a container: its exit code, raw output and parsed results."""

    file: str
    returncode: int
    output: str
    report: TapReport
    names: tuple[str, ...] = ()  # the @test names of the file, as written

    @property
    def results(self) -> tuple[BatsResult, ...]:
        return self.report.results

    def result_for(self, index: int, name: str) -> BatsResult | None:
        """The result of the `index`-th `@test` (0-based) of the file, named `name`.

        bats numbers tests in file order, so the position is the reliable key (the name in
        TAP is the written one after shell expansion); names decide when counts differ.
        """
        results = self.report.results
        if len(results) == len(self.names) and index < len(results):
            return results[index]
        for result in results:
            if result.name == name:
                return result
        return None
