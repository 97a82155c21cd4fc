from __future__ import annotations

from pathlib import Path

import pytest

from dgr.cli import main, parse_set_env
from dgr.errors import UsageError


def test_set_env_flag_wins_over_dgr_env() -> None:
    env = parse_set_env(["A=flag", "C=x=y"], {"DGR_ENV_A": "host", "DGR_ENV_B": "host", "OTHER": "1"})
    assert env == {"A": "flag", "B": "host", "C": "x=y"}


def test_set_env_needs_equal_sign() -> None:
    with pytest.raises(UsageError, match="name=value"):
        parse_set_env(["NOVALUE"], {})


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--help"])
    assert exit_.value.code == 0
    assert "build the image" in capsys.readouterr().out


def test_unknown_command_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2


def test_no_command_is_usage_error() -> None:
    assert main([]) == 2


def test_bad_set_env_exits_2(tmp_path: object) -> None:
    assert main(["--set-env", "X", "version"]) == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert "version" in capsys.readouterr().out


def test_clean_then_try(tmp_path: Path) -> None:
    from dgr.init import init_project

    project = tmp_path / "aci-x"
    init_project(project)
    (project / "target" / "stale").mkdir(parents=True)
    assert main(["-H", str(tmp_path / "home"), "-W", str(project), "clean", "try"]) == 0
    assert not (project / "target" / "stale").exists()
    assert (project / "target" / "try" / "etc" / "templated").exists()
