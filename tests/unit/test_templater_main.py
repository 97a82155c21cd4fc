"""``python -m dgr.templater``: exit status, the one-line error, options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dgr.templater.__main__ import main


def project(root: Path, template: str) -> Path:
    (root / "attributes").mkdir(parents=True)
    (root / "attributes" / "a.yml").write_text("default: {name: web}\n")
    (root / "templates").mkdir()
    (root / "templates" / "t.tmpl").write_text(template)
    return root


def test_success_exits_0_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project(tmp_path / "p", "{{ name }}\n")
    assert main(["-t", str(tmp_path / "out"), str(tmp_path / "p")]) == 0
    assert (tmp_path / "out" / "t").read_text() == "web\n"
    assert capsys.readouterr().err == ""


def test_error_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p", "a\n{{ nope }}\n")
    assert main(["-t", str(tmp_path / "out"), str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"templater: {root / 'templates' / 't.tmpl'}:2: missing attribute 'nope'")


def test_override_variable_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path / "p", "{{ name }}")
    monkeypatch.setenv("MY_OVERRIDE", '{"name": "db"}')
    assert main(["-o", "MY_OVERRIDE", "-t", str(tmp_path / "out"), str(tmp_path / "p")]) == 0
    assert (tmp_path / "out" / "t").read_text() == "db"


def test_malformed_override_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path / "p", "{{ name }}")
    monkeypatch.setenv("TEMPLATER_OVERRIDE", "{oops")
    monkeypatch.delenv("TEMPLATER_OVERRIDE_BASE64", raising=False)
    assert main(["-t", str(tmp_path / "out"), str(tmp_path / "p")]) == 1
    assert capsys.readouterr().err.startswith("templater: $TEMPLATER_OVERRIDE is not valid JSON")


def test_trace_level_prints_rendered_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project(tmp_path / "p", "rendered {{ name }}")
    assert main(["-L", "trace", "-t", str(tmp_path / "out"), str(tmp_path / "p")]) == 0
    assert "rendered web" in capsys.readouterr().err


def test_log_level_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path / "p", "rendered {{ name }}")
    monkeypatch.setenv("LOG_LEVEL", "trace")
    assert main(["-t", str(tmp_path / "out"), str(tmp_path / "p")]) == 0
    assert "rendered web" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["a", "b"], ["-x", "a"], ["-L", "loud", "a"], ["-t"]])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_runs_as_a_module(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "{{ nope }}")
    result = subprocess.run(
        [sys.executable, "-m", "dgr.templater", "-t", str(tmp_path / "out"), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("templater: ") and result.stderr.count("\n") == 1
