"""dgr/data/functions.sh under busybox sh: execute_files, isLevelEnabled (SPEC §4, §6)."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import subprocess
from pathlib import Path

import pytest

FUNCTIONS = importlib.resources.files("dgr") / "data" / "functions.sh"
BUSYBOX = shutil.which("busybox")

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox missing (apt-get install busybox-static)")


def shell(
    script: str, *, log_level: str | None = None, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `script` in busybox sh after sourcing functions.sh, with a minimal environment."""
    assert BUSYBOX is not None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(extra or {})}
    if log_level is not None:
        env["LOG_LEVEL"] = log_level
    return subprocess.run(
        [BUSYBOX, "sh", "-c", f'. "$1"\n{script}', "sh", str(FUNCTIONS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def add_script(directory: Path, name: str, body: str, *, executable: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{BUSYBOX} sh\n{body}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def recorder(log: Path, word: str) -> str:
    return f'echo {word} >> "{log}"'


def test_execute_files_runs_scripts_in_lexicographic_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    scripts = tmp_path / "scripts"
    for name in ("b", "10-x", "2-y", "A", "a"):
        add_script(scripts, name, recorder(log, name))

    result = shell(f'execute_files "{scripts}"')

    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["10-x", "2-y", "A", "a", "b"]


def test_execute_files_skips_directories_and_dotfiles(tmp_path: Path) -> None:
    log = tmp_path / "log"
    scripts = tmp_path / "scripts"
    add_script(scripts, "10-run", recorder(log, "run"))
    add_script(scripts, ".hidden", recorder(log, "hidden"))
    add_script(scripts / "20-subdir", "inner", recorder(log, "inner"))

    result = shell(f'execute_files "{scripts}"')

    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["run"]


def test_execute_files_makes_scripts_executable(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = add_script(tmp_path / "scripts", "10-plain", recorder(log, "ran"), executable=False)

    result = shell(f'execute_files "{tmp_path / "scripts"}"')

    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["ran"]
    assert os.access(script, os.X_OK)


def test_execute_files_stops_at_first_failure_and_names_it(tmp_path: Path) -> None:
    log = tmp_path / "log"
    scripts = tmp_path / "scripts"
    add_script(scripts, "10-ok", recorder(log, "ok"))
    failing = add_script(scripts, "20-fail", "exit 3")
    add_script(scripts, "30-never", recorder(log, "never"))

    result = shell(f'execute_files "{scripts}"; echo "status=$?"')

    assert "status=1" in result.stdout
    assert log.read_text().split() == ["ok"]
    assert f"Script failed -> {failing} (exit 3)" in result.stderr


def test_execute_files_kills_a_script_that_outlives_its_timeout(tmp_path: Path) -> None:
    log = tmp_path / "log"
    scripts = tmp_path / "scripts"
    add_script(scripts, "10-quick", recorder(log, "quick"))
    add_script(scripts, "20-hang", f"exec {BUSYBOX} sleep 600")  # a child would hold the pipes open
    add_script(scripts, "30-never", recorder(log, "never"))

    result = shell(f'execute_files "{scripts}"', extra={"DGR_SCRIPT_TIMEOUT": "1"})

    assert result.returncode == 1
    assert f"Script timed out -> {scripts}/20-hang (after 1s)" in result.stderr
    assert log.read_text().split() == ["quick"]


@pytest.mark.parametrize("name", ["missing", "empty"])
def test_execute_files_accepts_a_missing_or_empty_directory(tmp_path: Path, name: str) -> None:
    (tmp_path / "empty").mkdir()

    result = shell(f'execute_files "{tmp_path / name}"; echo "status=$?"')

    assert result.stdout.strip() == "status=0"


def test_execute_files_announces_scripts_at_info(tmp_path: Path) -> None:
    script = add_script(tmp_path / "scripts", "10-x", "true")

    at_info = shell(f'execute_files "{tmp_path / "scripts"}"', log_level="info")
    at_warn = shell(f'execute_files "{tmp_path / "scripts"}"', log_level="warn")

    assert f"Running script -> {script}" in at_info.stdout
    assert "Running script" not in at_warn.stdout


@pytest.mark.parametrize(
    ("log_level", "enabled"),
    [
        (None, ["fatal", "panic", "error", "warn", "warning", "info"]),
        ("INFO", ["fatal", "panic", "error", "warn", "warning", "info"]),
        ("debug", ["fatal", "panic", "error", "warn", "warning", "info", "debug"]),
        ("TRACE", ["fatal", "panic", "error", "warn", "warning", "info", "debug", "trace"]),
        ("Warning", ["fatal", "panic", "error", "warn", "warning"]),
        ("error", ["fatal", "panic", "error"]),
        ("fatal", ["fatal"]),
        ("bogus", ["fatal", "panic", "error", "warn", "warning", "info"]),
    ],
)
def test_is_level_enabled(log_level: str | None, enabled: list[str]) -> None:
    levels = ["fatal", "panic", "error", "warn", "warning", "info", "debug", "trace"]
    script = "".join(f"isLevelEnabled {name} && echo {name}\n" for name in levels)

    result = shell(script + "true", log_level=log_level)

    assert result.stdout.split() == enabled


def test_is_level_enabled_ignores_case_of_its_argument() -> None:
    result = shell("isLevelEnabled DEBUG && echo yes; isLevelEnabled Trace || echo no", log_level="debug")

    assert result.stdout.split() == ["yes", "no"]


COLOURS = [("echo_green", "32"), ("echo_red", "31"), ("echo_purple", "35")]


@pytest.mark.parametrize(("helper", "colour"), COLOURS)
def test_colour_helpers_colour_a_terminal(helper: str, colour: str) -> None:
    import pty

    assert BUSYBOX is not None
    main, terminal = pty.openpty()
    try:
        subprocess.run(
            [BUSYBOX, "sh", "-c", f'. "$1"\n{helper} hello world', "sh", str(FUNCTIONS)],
            stdout=terminal,
            timeout=30,
            check=True,
        )
        output = os.read(main, 1024).decode()
    finally:
        os.close(main)
        os.close(terminal)
    assert output == f"\033[0;{colour}mhello world\033[0m\r\n"


@pytest.mark.parametrize(("helper", "colour"), COLOURS)
def test_colour_helpers_print_plain_text_elsewhere(helper: str, colour: str) -> None:
    result = shell(f"{helper} hello world")

    assert result.stdout == "hello world\n"
