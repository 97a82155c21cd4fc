from __future__ import annotations

from pathlib import Path

import pytest

from dgr.cli import main
from dgr.init import init_project


def test_try_renders_init_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "aci-try"
    init_project(project)
    assert main(["-H", str(tmp_path / "home"), "-W", str(project), "try"]) == 0
    assert (project / "target" / "try" / "etc" / "templated").read_text() == "Hello world\n"
    assert "Hello world" in capsys.readouterr().out


def test_try_honours_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "aci-try"
    init_project(project)
    monkeypatch.setenv("TEMPLATER_OVERRIDE", '{"dummy": "override"}')
    assert main(["-H", str(tmp_path / "home"), "-W", str(project), "try"]) == 0
    assert (project / "target" / "try" / "etc" / "templated").read_text() == "Hello override\n"


def test_try_missing_attribute_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "aci-try"
    init_project(project)
    (project / "templates" / "broken.tmpl").write_text("line1\n{{ nothere }}\n")
    assert main(["-H", str(tmp_path / "home"), "-W", str(project), "try"]) == 1
    err = capsys.readouterr().err
    assert "broken.tmpl" in err and "nothere" in err


def test_try_reports_every_failing_template_and_writes_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "aci-try"
    init_project(project)
    (project / "templates" / "a.tmpl").write_text("{{ first_missing }}\n")
    (project / "templates" / "b.tmpl").write_text("ok\n{{ second_missing }}\n")
    assert main(["-H", str(tmp_path / "home"), "-W", str(project), "try"]) == 1
    err = capsys.readouterr().err
    assert "2 templates failed" in err
    assert "first_missing" in err and "second_missing" in err and "b.tmpl:2" in err
    assert (project / "target" / "try" / "etc" / "templated").read_text() == "Hello world\n"
