"""Incremental builds across a chain of images: which set-env values count for which image,
and what a failed build leaves for the next one (issue 10, point 4)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dgr.cli import main
from dgr.errors import BuildError
from tests.support.files import write_tree

pytestmark = pytest.mark.integration

SH = "#!/dgr/bin/busybox sh\n"
PROJECTS = {
    "base": {
        "aci-manifest.yml": "name: example.com/base:1\n",
        # reads MIRROR, as a distribution base would
        "runlevels/build/10.mirror.sh": SH + 'echo "${MIRROR:-none}" > /etc/mirror\n',
    },
    "app": {
        "aci-manifest.yml": "name: example.com/app:1\naci:\n  dependencies: [example.com/base:1]\n",
        "runlevels/build/10.app.sh": SH + 'echo "app on $(cat /etc/mirror)" > /etc/app\n',
    },
}

Dgr = Callable[..., tuple[int, str]]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for folder, files in PROJECTS.items():
        write_tree(root / folder, files)
    return root


@pytest.fixture
def dgr(dgr_home: Path, capsys: pytest.CaptureFixture[str]) -> Dgr:
    """Run the CLI in-process; returns its exit code and its log (stderr)."""

    def run(*args: str) -> tuple[int, str]:
        code = main(["-H", str(dgr_home), *args])
        return code, capsys.readouterr().err

    return run


def image_ids(repo: Path) -> dict[str, str]:
    return {name: (repo / name / "target" / "image.id").read_text() for name in PROJECTS}


def test_set_env_counts_only_for_the_images_that_read_it(
    repo: Path, dgr: Dgr, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGR_ENV_MIRROR", "http://mirror-1")
    code, log = dgr("-W", str(repo / "app"), "build")
    assert code == 0 and log.count("Finished building") == 2
    assert (repo / "app" / "target" / "layer" / "etc" / "app").read_text() == "app on http://mirror-1\n"
    built = image_ids(repo)

    # Running the image without the variable rebuilds nothing: the app does not read it, and
    # the base, which does, was built with it.
    monkeypatch.delenv("DGR_ENV_MIRROR")
    code, log = dgr("-W", str(repo / "app"), "run", "--", "/dgr/bin/busybox", "cat", "/etc/mirror")
    assert code == 0 and "Finished building" not in log, log
    assert "was built with set-env MIRROR, not given now: reused" in log
    assert image_ids(repo) == built

    # A value that no script reads is no input at all.
    monkeypatch.setenv("DGR_ENV_UNUSED", "anything")
    code, log = dgr("-W", str(repo / "app"), "build")
    assert code == 0 and "Finished building" not in log

    # Another value of MIRROR rebuilds the base, and the app because its dependency changed.
    code, log = dgr("-W", str(repo / "app"), "--set-env", "MIRROR=http://mirror-2", "build")
    assert code == 0 and "Finished building example.com/base:1" in log
    assert "Finished building example.com/app:1" in log
    assert (repo / "app" / "target" / "layer" / "etc" / "app").read_text() == "app on http://mirror-2\n"

    # An empty value is a value: the base is rebuilt without a mirror.
    code, log = dgr("-W", str(repo / "base"), "--set-env", "MIRROR=", "build")
    assert code == 0 and "Finished building example.com/base:1" in log
    assert (repo / "base" / "target" / "layer" / "etc" / "mirror").read_text() == "none\n"


def test_a_failed_build_keeps_the_previous_key_and_outputs(repo: Path, dgr: Dgr) -> None:
    assert dgr("-W", str(repo / "app"), "build")[0] == 0
    built = image_ids(repo)
    keys = {name: (repo / name / "target" / "build.key").read_text() for name in PROJECTS}

    broken = repo / "base" / "runlevels" / "build" / "20.broken.sh"
    broken.write_text(SH + "exit 3\n")
    code, log = dgr("-W", str(repo / "app"), "build")
    assert code == 1 and "20.broken.sh" in log
    assert image_ids(repo) == built
    assert {name: (repo / name / "target" / "build.key").read_text() for name in PROJECTS} == keys

    # Undoing the change finds every previous build again: nothing is rebuilt.
    broken.unlink()
    code, log = dgr("-W", str(repo / "app"), "build")
    assert code == 0 and "Finished building" not in log, log
    assert image_ids(repo) == built

    # A failure of the top image; then a real fix rebuilds that image only.
    script = repo / "app" / "runlevels" / "build" / "10.app.sh"
    script.write_text(SH + "exit 4\n")
    assert dgr("-W", str(repo / "app"), "build")[0] == 1
    assert image_ids(repo) == built
    script.write_text(SH + 'echo "fixed on $(cat /etc/mirror)" > /etc/app\n')
    code, log = dgr("-W", str(repo / "app"), "build")
    assert code == 0 and log.count("Finished building") == 1 and "example.com/app:1" in log
    assert image_ids(repo)["base"] == built["base"]


def test_a_failure_while_packaging_drops_the_key(
    repo: Path, dgr: Dgr, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = repo / "base"
    assert dgr("-W", str(base), "build")[0] == 0
    (base / "files" / "etc").mkdir(parents=True)
    (base / "files" / "etc" / "new").write_text("new\n")

    def full_disk(*_args: object, **_kwargs: object) -> str:
        raise BuildError("No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("dgr.oci.export_image", full_disk)
        code, log = dgr("-W", str(base), "build")
    assert code == 1 and "No space left on device" in log
    # image.aci may already be the new one: the outputs no longer match any key
    assert not (base / "target" / "build.key").exists()
    (base / "files" / "etc" / "new").unlink()
    code, log = dgr("-W", str(base), "build")
    assert code == 0 and "Finished building" in log
