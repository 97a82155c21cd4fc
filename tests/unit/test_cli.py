from __future__ import annotations

import json
import os
import platform
import pty
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dgr
from dgr.cli import main
from dgr.errors import UsageError
from dgr.log import use_color
from dgr.parser import parse_set_env


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


# --- conventions (issue 11) ------------------------------------------------------------------


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["biuld"])
    assert exit_.value.code == 2
    assert "invalid choice: 'biuld'; did you mean 'build'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["store", "lst"])
    assert "did you mean 'list'?" in capsys.readouterr().err


def test_a_bad_flag_of_a_command_shows_that_command_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--frob"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dgr export ") and "--format" in err
    assert "dgr export: error: unrecognized arguments: --frob" in err
    with pytest.raises(SystemExit):
        main(["export", "--format", "tarball"])
    err = capsys.readouterr().err
    assert err.startswith("usage: dgr export ") and "invalid choice: 'tarball'" in err


def test_version_lists_the_tools_anywhere_on_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    from dgr.about import TOOLS, tool_version

    for argv in (["--version"], ["-V"], ["build", "--version"], ["-W", "/does/not/exist", "test", "-V"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("dgr\n\nversion    : ")
        for name in ("python", "jinja2", "pyyaml", *TOOLS):
            assert f"\n{name:<10} : " in out
    assert main(["--json", "version"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["dgr"] == dgr.__version__ and found["python"] == platform.python_version()
    for tool in TOOLS:
        assert found[tool] == tool_version(tool)
        if shutil.which(tool):
            assert found[tool] and found[tool][0].isdigit()


def test_json_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text("insecureOptions: [http:a, tls:b]\n")
    assert main(["-H", str(home), "config", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["targetWorkDir"] is None and document["insecureOptions"] == ["http:a", "tls:b"]
    assert main(["-H", str(home), "--json", "config", "insecureOptions"]) == 0
    assert json.loads(capsys.readouterr().out) == {"insecureOptions": ["http:a", "tls:b"]}
    assert main(["-H", str(home), "config", "insecureOptions"]) == 0
    assert capsys.readouterr().out == "http:a,tls:b\n"


def test_a_failure_under_json_is_a_document_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "-W", str(tmp_path / "nothing"), "build"]) == 1
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]
    assert "Cannot construct aci or pod" in error["message"] and error["message"] in err


def test_json_is_refused_where_stdout_is_not_a_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--json"]) == 2
    assert "dgr run has no --json" in capsys.readouterr().err


def test_try_json_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dgr.init import init_project

    project = tmp_path / "aci-x"
    init_project(project)
    base = ["-H", str(tmp_path / "home"), "-W", str(project)]
    assert main([*base, "try", "--json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"output": str(project / "target/try"), "files": ["etc/templated"]}
    assert err == ""  # -q: errors only
    assert main([*base, "try"]) == 0
    assert "Rendered templates into" in capsys.readouterr().err


def test_color_follows_no_color_and_the_flag() -> None:
    assert use_color("always", {"NO_COLOR": "1"}) is True
    assert use_color("never", {}) is False
    assert use_color("auto", {"NO_COLOR": "1"}) is False


def stderr_on_a_terminal(*argv: str, env: dict[str, str]) -> str:
    """dgr's stderr when it is a terminal (a pseudo-terminal)."""
    controller, terminal = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-m", "dgr.cli", *argv],
            stderr=terminal,
            stdout=subprocess.DEVNULL,
            env=env,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(controller)


def test_no_color_and_color_flag_on_a_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    argv = ("-W", str(tmp_path / "nothing"), "build")
    assert "\x1b[31m" in stderr_on_a_terminal(*argv, env=env)
    assert "\x1b[" not in stderr_on_a_terminal(*argv, env={**env, "NO_COLOR": "1"})
    assert "\x1b[" not in stderr_on_a_terminal(*argv, "--color=never", env=env)
    assert "\x1b[31m" in stderr_on_a_terminal(*argv, "--color=always", env={**env, "NO_COLOR": "1"})


def complete(script: Path, *words: str) -> list[str]:
    """What bash proposes for the last of `words` with the completion `script` loaded."""
    line = " ".join(shlex.quote(w) for w in words)
    code = (
        f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _dgr; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", code], capture_output=True, text=True, check=True).stdout
    return [word for word in out.splitlines() if word]


def test_bash_completion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "dgr.bash"
    script.write_text(capsys.readouterr().out)
    assert complete(script, "dgr", "bu") == ["build"]
    assert complete(script, "dgr", "-W", "/tmp", "build", "--k") == ["--keep-builder"]
    assert complete(script, "dgr", "-L", "d") == ["debug"]
    assert complete(script, "dgr", "export", "--format", "") == ["docker-archive", "oci-archive"]
    assert complete(script, "dgr", "store", "r") == ["rm"]
    assert complete(script, "dgr", "clean", "p") == ["push"]
    assert complete(script, "dgr", "install", "--to", "p") == ["podman"]
    assert complete(script, "dgr", "--json", "completion", "") == ["bash", "zsh"]
    assert "--volume" in complete(script, "dgr", "run", "--")
    folders = complete(script, "dgr", "-W", str(tmp_path) + "/")
    assert folders == []  # no folder under tmp_path (dgr.bash is a file)


def test_zsh_completion_goes_through_bashcompinit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef dgr\n") and "bashcompinit" in script
    if shutil.which("zsh"):
        (tmp_path / "dgr.zsh").write_text(script)
        subprocess.run(["zsh", "-c", f"source {tmp_path / 'dgr.zsh'}"], check=True, timeout=60)
