"""Reruns with pytest-rerunfailures, for real: a rerun bats item runs its @test again."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.integration.test_plugin import run, write

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

# Fails on its first run in the container, passes on the second (the container is the same).
FLAKY = """
@test "steady" {
  true
}

@test "flaky (second try) *.+?|" {
  n=$(cat /tmp/flaky 2>/dev/null || echo 0)
  echo $((n + 1)) > /tmp/flaky
  echo "attempt $((n + 1))"
  [ "$n" -ge 1 ]
}

@test "always fails" {
  echo "never good"
  false
}
"""


@pytest.fixture(params=["no-xdist", "xdist"])
def xdist_args(request: pytest.FixtureRequest) -> list[str]:
    return ["-n", "2"] if request.param == "xdist" else ["-p", "no:xdist"]


def test_a_rerun_runs_the_bats_test_again(
    pytester: pytest.Pytester, dgr_home: Path, xdist_args: list[str]
) -> None:
    write(
        pytester.path / "aci-flaky",
        {"aci-manifest.yml": "name: example.com/aci-flaky:1\n", "tests/f.bats": FLAKY},
    )
    report = pytester.path / "junit.xml"
    result = run(pytester, dgr_home, "--reruns", "2", "-rAR", f"--junitxml={report}", *xdist_args)
    assert result.parseoutcomes() == {"passed": 4, "failed": 1, "rerun": 3}
    out = result.stdout.str()
    assert "PASSED aci-flaky/tests/f.bats::flaky (second try) *.+?|" in out
    assert "RERUN aci-flaky/tests/f.bats::flaky (second try) *.+?|" in out
    assert out.count("RERUN aci-flaky/tests/f.bats::always fails") == 2
    assert "RERUN aci-flaky/tests/f.bats::steady" not in out
    # junit: one <testcase> per item; failed attempts are <flakyFailure>s
    cases = {c.get("name"): c for c in ET.parse(report).iter("testcase")}
    assert len(list(ET.parse(report).iter("testcase"))) == len(cases) == 5
    flaky = cases["flaky (second try) *.+?|"]
    assert [e.tag for e in flaky if e.tag != "properties"] == ["flakyFailure"]
    assert "not ok 2 flaky (second try) *.+?|" in (flaky.find("flakyFailure").get("message") or "")  # type: ignore[union-attr]
    assert "attempt 1" in (flaky.findtext("flakyFailure/stackTrace") or "")
    never = cases["always fails"]
    assert [e.tag for e in never if e.tag != "properties"] == ["flakyFailure", "flakyFailure", "failure"]
    assert [e.tag for e in cases["steady"]] == []


def test_a_container_that_never_got_ready_is_not_started_again(
    pytester: pytest.Pytester, dgr_home: Path
) -> None:
    write(
        pytester.path / "aci-never",
        {
            "aci-manifest.yml": (
                "name: example.com/aci-never:1\n"
                "tester:\n  readiness:\n    command: echo not yet; exit 1\n    timeout: 0.3\n"
            ),
            "tests/x.bats": '@test "a" {\n  true\n}\n@test "b" {\n  true\n}\n',
        },
    )
    result = run(pytester, dgr_home, "--reruns", "2", "-p", "no:xdist", "--dgr-keep")
    assert result.parseoutcomes() == {"passed": 2, "failed": 2, "rerun": 4}
    assert result.stdout.str().count("never got ready: command check") == 2
    # --dgr-keep keeps each test container's folder: one start only
    assert len(list((pytester.path / "aci-never" / "target" / "tests").glob("run-*"))) == 1


CONFTEST = """
import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if item.name.startswith("flaky"):
            item.add_marker(pytest.mark.flaky(reruns=1))
"""


def test_the_flaky_marker_reruns_only_the_marked_bats_test(
    pytester: pytest.Pytester, dgr_home: Path
) -> None:
    files = {"aci-manifest.yml": "name: example.com/aci-marked:1\n", "tests/f.bats": FLAKY}
    write(pytester.path / "aci-marked", files)
    (pytester.path / "conftest.py").write_text(CONFTEST)
    result = run(pytester, dgr_home, "-p", "no:xdist")
    assert result.parseoutcomes() == {"passed": 4, "failed": 1, "rerun": 1}
