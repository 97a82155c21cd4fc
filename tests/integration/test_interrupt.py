"""A build that is killed or interrupted leaves no process, no mount and no finished image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.podman import mounts_under

pytestmark = pytest.mark.integration

# The sleep's argument identifies this test's processes (xdist runs tests side by side).
MARK = str(300_000 + os.getpid() % 100_000)


def sleepers() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"sleep" in argv and MARK.encode() in argv and b"python" not in argv[0]:
                found.append(int(entry))
    return found


def app_started() -> bool:
    """Whether the container's app (busybox sleep MARK, not a command line naming it) runs."""
    for pid in sleepers():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"busybox") and argv[1:3] == [b"sleep", MARK.encode()]:
            return True
    return False


def start_slow_build(tmp_path: Path, cache_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    project = tmp_path / "aci-slow"
    script = project / "runlevels" / "build" / "10.slow.sh"
    script.parent.mkdir(parents=True)
    # The project is read-only in the sandbox: the script signals through a mount point.
    (project / "aci-manifest.yml").write_text(
        "name: example.com/aci-slow:1\n"
        "build:\n  mountPoints: [{from: signal, to: /signal, optional: true}]\n"
    )
    script.write_text(f"#!/dgr/bin/busybox sh\ntouch /signal/started\n/dgr/bin/busybox sleep {MARK}\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text(f"cachePath: {cache_dir}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dgr.cli", "-H", str(home), "-W", str(project), "build"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (project / "signal" / "started").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the build script never started"
        time.sleep(0.05)
    while not sleepers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sleepers()
    return proc, project


def wait_gone(timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sleepers()


def test_killed_build_leaves_nothing_behind(tmp_path: Path, cache_dir: Path) -> None:
    proc, project = start_slow_build(tmp_path, cache_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wait_gone() == []
    assert mounts_under(tmp_path) == []
    assert not (project / "target" / "image.aci").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_build_stops_cleanly(tmp_path: Path, cache_dir: Path, sig: int, code: int) -> None:
    proc, project = start_slow_build(tmp_path, cache_dir)
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=30) == code
    assert wait_gone() == []
    assert mounts_under(tmp_path) == []
    assert not (project / "target" / "image.aci").exists()
    assert not (project / "target" / "work").exists()


def test_terminated_run_removes_its_container(tmp_path: Path, cache_dir: Path) -> None:
    project = tmp_path / "aci-run"
    (project).mkdir()
    (project / "aci-manifest.yml").write_text("name: example.com/aci-run:1\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text(f"cachePath: {cache_dir}\n")
    state = tmp_path / "tmp"
    state.mkdir()
    argv = [
        sys.executable,
        "-m",
        "dgr.cli",
        "-H",
        str(home),
        "-W",
        str(project),
        "run",
        "--",
        "/dgr/bin/busybox",
        "sleep",
        MARK,
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(state)},
    )
    deadline = time.monotonic() + 120
    while not app_started():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert wait_gone() == []
    assert list(state.iterdir()) == []
