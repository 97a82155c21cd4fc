"""dgr export and dgr install --to podman, loaded and run by a real (private) podman."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgr.cli import main
from tests.support.podman import Podman, mounts_under

pytestmark = pytest.mark.integration

NAME = "example.com/aci-export"


@pytest.fixture
def podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Podman]:
    """A private podman; plain `podman` commands (as dgr runs them) use its store and config."""
    for tool in ("podman", "skopeo", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    engine = Podman(tmp_path / "podman")
    storage = engine.root / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{engine.storage}"\nrunroot = "{engine.runroot}"\n'
    )
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(storage))
    monkeypatch.setenv("CONTAINERS_CONF", str(engine.conf))
    try:
        yield engine
    finally:
        engine.cleanup()
        assert not mounts_under(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "aci-export"
    (root / "files/etc").mkdir(parents=True)
    (root / "aci-manifest.yml").write_text(
        f"name: {NAME}:1.0\naci:\n  app:\n    exec: [/dgr/bin/busybox, cat, /etc/greeting]\n"
    )
    (root / "files/etc/greeting").write_text("hello from dgr\n")
    return root


def dgr(home: Path, project: Path, *args: str) -> int:
    return main(["-H", str(home), "-W", str(project), *args])


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_the_archive_loads_and_runs_in_podman(
    fmt: str,
    podman: Podman,
    project: Path,
    dgr_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = tmp_path / "image.tar"
    assert dgr(dgr_home, project, "export", "--format", fmt, "-o", str(archive), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["images"][0]["archive"] == {
        "path": str(archive),
        "format": fmt,
        "reference": f"{NAME}:1.0",
    }
    assert not list(tmp_path.glob(".image.tar.*"))  # no temporary left
    loaded = podman.podman("load", "--input", str(archive)).output
    assert f"{NAME}:1.0" in loaded
    assert podman.run(f"{NAME}:1.0").output == "hello from dgr\n"


def test_the_default_archive_goes_to_the_target(
    project: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dgr(dgr_home, project, "export") == 0
    assert capsys.readouterr().out.strip() == str(project / "target/image.docker.tar")
    assert (project / "target/image.docker.tar").stat().st_size > 0


def test_install_to_podman_loads_the_image(
    podman: Podman, project: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dgr(dgr_home, project, "install", "--to", "podman", "--json") == 0
    installed = json.loads(capsys.readouterr().out)["images"][0]["installed"]
    assert installed == {"to": "podman", "reference": f"{NAME}:1.0"}
    assert podman.run(f"{NAME}:1.0").output == "hello from dgr\n"
    assert not list((project / "target").glob(".load-*"))


def test_an_unwritable_destination_is_one_clear_error_before_any_build(
    project: Path, dgr_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    for dest, message in (
        (tmp_path / "a-file" / "image.tar", "is not a folder"),
        (tmp_path, "it is a folder"),
        (Path("/proc/image.tar"), "cannot write the archive /proc/image.tar"),
    ):
        assert dgr(dgr_home, project, "export", "-o", str(dest)) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (project / "target").exists()
