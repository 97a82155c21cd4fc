"""`dgr build --shell-on-failure` and `--shell-after STEP`: a shell in the step's sandbox,
scripted on standard input and interactive on a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DGR = Path(sys.executable).with_name("dgr")
SH = "#!/dgr/bin/busybox sh\n"


def project(root: Path, script: str) -> Path:
    (root / "runlevels/build").mkdir(parents=True)
    (root / "aci-manifest.yml").write_text("name: example.com/aci-shell:1\n")
    (root / "runlevels/build/10.step.sh").write_text(SH + script)
    return root


def dgr(home: Path, folder: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DGR), "-H", str(home), "-W", str(folder), "build", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_failing_step_opens_a_shell_in_its_sandbox(tmp_path: Path, dgr_home: Path) -> None:
    folder = project(tmp_path / "aci-shell", 'echo "made by $ACI_NAME" > /etc/app.conf\nexit 3\n')
    done = dgr(
        dgr_home, folder, "--shell-on-failure", stdin='cat /etc/app.conf\necho "in $ACI_HOME as $(id -u)"\n'
    )
    assert done.returncode == 1  # leaving the shell fails the build
    assert done.stdout.splitlines() == ["made by aci-shell", "in /dgr/aci-home as 0"]
    assert "runlevel build failed: a shell opens in its sandbox" in done.stderr
    assert "10.step.sh (exit 3)" in done.stderr
    assert not (folder / "target/image.aci").exists()


def test_without_the_flag_no_shell_reads_stdin(tmp_path: Path, dgr_home: Path) -> None:
    folder = project(tmp_path / "aci-shell", "exit 3\n")
    done = dgr(dgr_home, folder, stdin="echo should-not-run\n")
    assert done.returncode == 1 and "should-not-run" not in done.stdout + done.stderr


def test_a_shell_after_a_step_and_the_build_goes_on(tmp_path: Path, dgr_home: Path) -> None:
    folder = project(tmp_path / "aci-shell", "echo made > /made\n")
    done = dgr(
        dgr_home, folder, "--shell-after", "build", stdin="cat /made\necho from-shell > /from-shell\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["made", "example.com/aci-shell:1"]
    assert (folder / "target/layer/from-shell").read_text() == "from-shell\n"  # in the image
    # asked again with nothing changed: it builds again, since a shell was asked for
    again = dgr(dgr_home, folder, "--shell-after", "build", stdin="echo again\n")
    assert again.returncode == 0 and again.stdout.startswith("again\n")
    none = dgr(dgr_home, folder, "--shell-after", "build-late", stdin="echo never\n")
    assert "no step build-late ran" in none.stderr and "never" not in none.stdout


def test_the_shell_is_interactive_on_a_terminal(tmp_path: Path, dgr_home: Path) -> None:
    folder = project(tmp_path / "aci-shell", "exit 3\n")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: dgr on the terminal
        os.execv(str(DGR), [str(DGR), "-H", str(dgr_home), "-W", str(folder), "build", "--shell-on-failure"])
    seen = b""

    def until(text: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    seen += os.read(terminal, 4096)
                except OSError:
                    break
        assert text in seen, seen.decode(errors="replace")

    try:
        until(b"dgr (runlevel build failed) # ")
        os.write(terminal, b"echo typed-$((6*7))\n")
        until(b"typed-42")
        os.write(terminal, b"half a line\x03")  # Ctrl-C clears the line, the shell stays
        os.write(terminal, b"echo still-$((40+2))\n")
        until(b"still-42")
        os.write(terminal, b"exit\n")
        until(b"runlevel build failed: script")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 1
