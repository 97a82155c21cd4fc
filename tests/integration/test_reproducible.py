"""Reproducible images: the same inputs give the same bytes, in other folders, at other times.

Two copies of a small repository (an image on a local dependency) are built in different
folders, a second apart, with file times and the host umask changed, with separate dgr
caches (a fresh dgr internals tree and blob cache, as on another machine): image.aci, the
image IDs and the OCI manifest and config digests must be equal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from dgr.cli import main

pytestmark = pytest.mark.integration

SH = "#!/dgr/bin/busybox sh\n"
OLD = 946684800  # 2000-01-01T00:00:00Z
EPOCH = 1700000000  # 2023-11-14T22:13:20Z
PROJECTS = {
    "aci-base": {
        "aci-manifest.yml": "name: example.com/aci-base:1\n",
        "runlevels/build/10.files.sh": SH
        + "set -e\nmkdir -p /var/lib/base\necho base > /var/lib/base/data\n"
        + "ln /var/lib/base/data /var/lib/base/hardlink\nln -s data /var/lib/base/symlink\n"
        + "echo doomed > /etc/doomed\n",
        "files/etc/base.conf": "base\n",
        "attributes/base.yml": "default:\n  who: base\n",
    },
    "aci-app": {
        "aci-manifest.yml": (
            "name: example.com/aci-app:1.0\n"
            "aci:\n  dependencies: [example.com/aci-base:1]\n"
            "  app:\n    exec: [/dgr/bin/busybox, sleep, '1000']\n"
        ),
        "runlevels/build/10.files.sh": SH
        + "set -e\nmkdir -p /opt/app\necho secret > /opt/app/private\nchmod 600 /opt/app/private\n"
        + "touch -d '2000-01-01 00:00:00' /opt/app/old\nrm /etc/doomed\nmkfifo /opt/app/fifo\n"
        + "chown 33:44 /opt/app\n",
        "files/etc/app.conf": "app\n",
        "templates/etc/who.tmpl": "{{ who }}\n",
        "templates/etc/who.tmpl.cfg": 'mode: "0640"\n',
    },
}


def write_repo(root: Path) -> Path:
    for folder, files in PROJECTS.items():
        for rel, text in files.items():
            path = root / folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


def home(root: Path, cache: Path) -> Path:
    folder = root / ".home"
    folder.mkdir()
    (folder / "config.yml").write_text(f"cachePath: {cache}\nstorePath: {root / '.store'}\n")
    return folder


def digests(target: Path) -> dict[str, str]:
    """image ID, image.aci's sha256, and the OCI manifest and config digests of a target."""
    layout = target / "oci"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest.removeprefix("sha256:")).read_text())
    return {
        "image_id": (target / "image.id").read_text().strip(),
        "aci": subprocess.run(
            ["sha256sum", str(target / "image.aci")], capture_output=True, text=True, check=True
        ).stdout.split()[0],
        "manifest": manifest_digest,
        "config": manifest["config"]["digest"],
        "layers": ",".join(layer["digest"] for layer in manifest["layers"]),
    }


def oci_config(target: Path) -> dict[str, object]:
    layout = target / "oci"
    blob = layout / "blobs/sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blob / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    config: dict[str, object] = json.loads(
        (blob / manifest["config"]["digest"].removeprefix("sha256:")).read_text()
    )
    return config


def aci_mtimes(aci: Path) -> dict[str, int]:
    with tarfile.open(aci) as tar:
        return {member.name: int(member.mtime) for member in tar}


def build_copy(root: Path, cache: Path, environ: dict[str, str]) -> Path:
    """Build root/aci-app (and its dependency) with its own config home and cache."""
    cfg = home(root, cache)
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        assert main(["-H", str(cfg), "-W", str(root / "aci-app"), "build"]) == 0
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return root / "aci-app" / "target"


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, Path]:
    """The same repository built twice: other folder, other time, other umask, other cache."""
    first = write_repo(tmp_path_factory.mktemp("first"))
    a = build_copy(first, cache_dir, {"SOURCE_DATE_EPOCH": str(EPOCH)})
    time.sleep(1.1)
    second = tmp_path_factory.mktemp("second") / "elsewhere"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns("target", ".home", ".store"))
    for path in second.rglob("*"):
        os.utime(path, (OLD + 12345, OLD + 12345), follow_symlinks=False)
    umask = os.umask(0o077)
    try:
        b = build_copy(second, tmp_path_factory.mktemp("other-cache"), {"SOURCE_DATE_EPOCH": str(EPOCH)})
    finally:
        os.umask(umask)
    return a, b


def test_two_builds_give_the_same_bytes_and_digests(two_builds: tuple[Path, Path]) -> None:
    a, b = two_builds
    assert digests(a) == digests(b)
    assert (a / "image.aci").read_bytes() == (b / "image.aci").read_bytes()
    base_a, base_b = (t.parent.parent / "aci-base" / "target" for t in two_builds)
    assert digests(base_a) == digests(base_b)


def test_times_come_from_source_date_epoch(two_builds: tuple[Path, Path]) -> None:
    target = two_builds[0]
    stamp = "2023-11-14T22:13:20Z"
    config = oci_config(target)
    assert config["created"] == stamp
    assert {entry["created"] for entry in config["history"]} == {stamp}  # type: ignore[attr-defined]
    assert config["config"]["Labels"]["org.opencontainers.image.created"] == stamp  # type: ignore[index]
    manifest = json.loads((target / "manifest.json").read_text())
    assert {"name": "build-date", "value": stamp} in manifest["annotations"]
    mtimes = aci_mtimes(target / "image.aci")
    assert max(mtimes.values()) == EPOCH  # clamped...
    assert mtimes["rootfs/opt/app/old"] == OLD  # ...not set: older files keep their time
    assert mtimes["rootfs/dgr/bin/busybox"] == 0  # dgr's internals have fixed times


def test_the_oci_layers_have_clamped_times_and_no_gzip_timestamp(two_builds: tuple[Path, Path]) -> None:
    target = two_builds[0]
    blobs = target / "oci" / "blobs" / "sha256"
    index = json.loads((target / "oci" / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].removeprefix("sha256:")).read_bytes())
    for layer in manifest["layers"]:
        data = (blobs / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert data[4:8] == b"\0\0\0\0"  # gzip MTIME
        with tarfile.open(blobs / layer["digest"].removeprefix("sha256:")) as tar:
            assert max((m.mtime for m in tar), default=0) <= EPOCH


def test_without_source_date_epoch_the_last_commit_time_is_used(
    tmp_path: Path, dgr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    repo = write_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("target/\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": "@1600000000 +0200",
        "GIT_COMMITTER_DATE": "@1600000000 +0200",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], env=env, check=True)
    assert main(["-H", str(dgr_home), "-W", str(repo / "aci-base"), "build"]) == 0
    target = repo / "aci-base" / "target"
    assert oci_config(target)["created"] == "2020-09-13T12:26:40Z"
    assert max(aci_mtimes(target / "image.aci").values()) == 1600000000


def test_outside_git_the_epoch_is_zero(
    tmp_path: Path, dgr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    repo = write_repo(tmp_path / "repo")
    assert main(["-H", str(dgr_home), "-W", str(repo / "aci-base"), "build"]) == 0
    target = repo / "aci-base" / "target"
    assert oci_config(target)["created"] == "1970-01-01T00:00:00Z"
    assert set(aci_mtimes(target / "image.aci").values()) == {0}


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5", "99999999999999"])
def test_an_invalid_source_date_epoch_is_one_clear_error(
    value: str,
    tmp_path: Path,
    dgr_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    repo = write_repo(tmp_path / "repo")
    assert main(["-H", str(dgr_home), "-W", str(repo / "aci-base"), "build"]) == 1
    err = capsys.readouterr().err
    assert f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds" in err
    assert "Traceback" not in err
    assert not (repo / "aci-base" / "target").exists()


def test_source_date_epoch_is_a_build_input_given_to_scripts(
    tmp_path: Path, dgr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "aci-sde"
    (project / "runlevels/build").mkdir(parents=True)
    (project / "aci-manifest.yml").write_text("name: example.com/aci-sde:1\n")
    (project / "runlevels/build/10.sde.sh").write_text(SH + 'echo "$SOURCE_DATE_EPOCH" > /sde\n')
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000")
    assert main(["-H", str(dgr_home), "-W", str(project), "build"]) == 0
    assert (project / "target/layer/sde").read_text() == "1000\n"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000")
    assert main(["-H", str(dgr_home), "-W", str(project), "build"]) == 0  # not "up to date"
    assert (project / "target/layer/sde").read_text() == "2000\n"
    assert oci_config(project / "target")["created"] == "1970-01-01T00:33:20Z"
