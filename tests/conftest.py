"""Shared fixtures: skip integration tests on hosts that cannot run them; check for leaks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgr.config import load_config
from dgr.options import BuildOptions

REPO = Path(__file__).resolve().parent.parent


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _children() -> set[int]:
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.add(int(entry))
    return found


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dgr cache for the whole run, shared by xdist workers (builds are file-locked)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "dgr-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def dgr_home(cache_dir: Path, tmp_path: Path) -> Path:
    """A dgr configuration folder (`-H`): the shared cache, a store of this test's own."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text(f"cachePath: {cache_dir}\nstorePath: {tmp_path / 'store'}\n")
    return home


@pytest.fixture
def options(dgr_home: Path) -> BuildOptions:
    """Build options with the configuration of `dgr_home`."""
    return BuildOptions(config=load_config(dgr_home))


@pytest.fixture(autouse=True)
def _not_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner pytest sessions (pytester) print the same on CI as on a terminal.

    pytest shows whole failure messages in the short summary when CI or BUILD_NUMBER is
    set; tests that count a message in an inner session's output would see it twice there.
    """
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Integration tests must leave no mount and no child process behind.

    Only mounts under this worker's temporary folder count: other xdist workers mount
    things of their own meanwhile.
    """
    if request.node.get_closest_marker("integration") is None:
        yield
        return
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        pytest.skip("integration tests need root and bubblewrap (run scripts/bootstrap)")
    before = _mounts()
    yield
    mine = str(tmp_path_factory.getbasetemp())
    leaked = {m for m in _mounts() - before if m.startswith(mine)}
    assert not leaked, f"mounts left behind: {sorted(leaked)}"
    children = _children()
    assert not children, f"processes left behind: {sorted(children)}"
