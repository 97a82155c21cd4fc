"""TAP parsing of bats output and listing of bats @test names (dgr.tester)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgr.tap import BatsRun, bats_test_names, list_bats_tests, parse_tap
from dgr.testimage import app_test_environment

BATS_OUTPUT = """\
1..4
ok 1 env
not ok 2 fails here
# (in test file /dgr/tests/a.bats, line 10)
#   `[ 1 = 2 ]' failed
# some output
ok 3 skipped one # skip not now
ok 4 single
"""


def test_parse_tap_results_in_order() -> None:
    report = parse_tap(BATS_OUTPUT)
    assert report.planned == 4
    assert [(r.number, r.name, r.status) for r in report.results] == [
        (1, "env", "ok"),
        (2, "fails here", "not ok"),
        (3, "skipped one", "skip"),
        (4, "single", "ok"),
    ]


def test_parse_tap_diagnostics_belong_to_the_failed_test() -> None:
    failed = parse_tap(BATS_OUTPUT).results[1]
    assert failed.failed
    expected = "(in test file /dgr/tests/a.bats, line 10)\n  `[ 1 = 2 ]' failed\nsome output"
    assert failed.diagnostics == expected
    assert parse_tap(BATS_OUTPUT).results[0].diagnostics == ""


def test_parse_tap_skip_with_and_without_reason() -> None:
    report = parse_tap("1..2\nok 1 a # skip\nok 2 b # skip (later)\n")
    found = [(r.name, r.status, r.reason) for r in report.results]
    assert found == [("a", "skip", ""), ("b", "skip", "later")]


def test_parse_tap_timing_and_timeout_suffixes_are_not_names() -> None:
    report = parse_tap("1..2\nok 1 fast # in 12 ms\nnot ok 2 slow # in 5000 ms # timeout after 5 s\n")
    assert [r.name for r in report.results] == ["fast", "slow"]


def test_parse_tap_keeps_stray_lines_and_tolerates_crlf() -> None:
    report = parse_tap("bats warning: something\r\n1..1\r\nok 1 x\r\n")
    assert report.planned == 1
    assert report.results[0].name == "x"
    assert report.other == ("bats warning: something",)


def test_parse_tap_empty_output() -> None:
    report = parse_tap("")
    assert report.planned is None and report.results == ()


def test_names_as_written() -> None:
    text = """#!/usr/bin/env bats
@test "simple" {
  true
}
  @test 'single quoted $HOME' {
}
@test "with \\"inner\\" quotes and # hash" {
}
@test "unicode é and [brackets] :: colons" {
}
@test unquoted words here {
}
@test "one-liner" { true; }
helper() { # @test
}
# @test "commented out" {   -- a comment line, not a test
echo '@test "inside a string" {'
"""
    assert bats_test_names(text) == [
        "simple",
        "single quoted $HOME",
        'with \\"inner\\" quotes and # hash',
        "unicode é and [brackets] :: colons",
        "unquoted words here",
        "one-liner",
        "helper",
    ]


def test_list_bats_tests_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.bats"
    path.write_text('@test "a" {\n}\r\n@test "b" {\r\n}\r\n')
    assert list_bats_tests(path) == ["a", "b"]


def test_result_for_maps_by_position_when_counts_match() -> None:
    # bats expands the name ('$HOME' becomes empty): the position decides
    report = parse_tap("1..2\nok 1 single quoted \nnot ok 2 b\n")
    run = BatsRun("a.bats", 1, "", report, ("single quoted $HOME", "b"))
    first = run.result_for(0, "single quoted $HOME")
    assert first is not None and first.passed
    second = run.result_for(1, "b")
    assert second is not None and second.failed


def test_result_for_falls_back_to_names() -> None:
    report = parse_tap("1..1\nnot ok 1 setup_file failed\n")
    run = BatsRun("a.bats", 1, "", report, ("a", "b"))
    assert run.result_for(0, "a") is None
    assert run.result_for(1, "b") is None


@pytest.mark.parametrize(
    ("app", "tester", "expected"),
    [
        ([], [], {}),
        ([("A", "app")], [], {"A": "app"}),
        (
            [("A", "app"), ("B", "app")],
            [("B", "tester"), ("C", "tester")],
            {"A": "app", "B": "tester", "C": "tester"},
        ),
    ],
    ids=["no-env", "app-only", "tester-wins"],
)
def test_tester_environment(
    tmp_path: Path, app: list[tuple[str, str]], tester: list[tuple[str, str]], expected: dict[str, str]
) -> None:
    from dgr.manifest_load import load_manifest

    lines = ["name: example.com/env:1"]
    if app:
        lines += ["aci:", "  app:", "    environment:"]
        lines += [f"      - {{name: {n}, value: {v}}}" for n, v in app]
    if tester:
        lines += ["tester:", "  aci:", "    app:", "      environment:"]
        lines += [f"        - {{name: {n}, value: {v}}}" for n, v in tester]
    (tmp_path / "aci-manifest.yml").write_text("\n".join(lines) + "\n")
    assert app_test_environment(load_manifest(tmp_path)) == expected
