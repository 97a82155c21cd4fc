"""Image or pod behind one protocol (dgr/project.py): which project a folder is, what each
kind does with a command, the errors of a command that does not apply to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dgr.config import load_config
from dgr.errors import DgrError, ManifestError, UsageError
from dgr.options import BuildOptions
from dgr.project import ImageProject, PodProject, open_project, project_kind


@pytest.fixture
def options(tmp_path: Path) -> BuildOptions:
    return BuildOptions(config=load_config(tmp_path / "home"))


def folder(root: Path, manifest: str) -> Path:
    root.mkdir()
    (root / manifest).write_text("name: example.com/x:1\n")
    return root


def test_a_folder_is_an_image_a_pod_or_no_project(tmp_path: Path, options: BuildOptions) -> None:
    image = folder(tmp_path / "aci-x", "aci-manifest.yml")
    pod = folder(tmp_path / "pod-x", "pod-manifest.yml")
    assert isinstance(open_project(image, options), ImageProject)
    assert isinstance(open_project(pod, options), PodProject)
    assert project_kind(image) is ImageProject and project_kind(pod) is PodProject
    assert project_kind(tmp_path) is None
    with pytest.raises(ManifestError, match="Cannot construct aci or pod"):
        open_project(tmp_path, options)


def test_what_one_kind_only_does_fails_on_the_other_before_any_build(
    tmp_path: Path, options: BuildOptions
) -> None:
    image = open_project(folder(tmp_path / "aci-x", "aci-manifest.yml"), options)
    pod = open_project(folder(tmp_path / "pod-x", "pod-manifest.yml"), options)
    with pytest.raises(DgrError, match="dgr kube works on a pod"):
        image.write_kube("localhost", None)
    with pytest.raises(DgrError, match="dgr cp does not work on a pod") as copied:
        pod.copy_out("/etc", tmp_path)
    assert copied.value.hint is not None and "kube" in copied.value.hint
    with pytest.raises(UsageError, match="one archive per app"):
        pod.check_archive_destination(tmp_path / "out.tar")
    run: dict[str, Any] = {"env": {}, "override": None, "host_network": False, "ports": ()}
    with pytest.raises(UsageError, match="no command and no -v"):
        pod.run(volumes=(), exec_=["sh"], **run)
    with pytest.raises(UsageError, match="no command and no -v"):
        pod.run(volumes=["data=/tmp"], exec_=None, **run)
    assert not (tmp_path / "aci-x" / "target").exists() and not (tmp_path / "pod-x" / "target").exists()


def test_pytest_cache_in_the_image_target(tmp_path: Path, options: BuildOptions) -> None:
    image = open_project(folder(tmp_path / "aci-x", "aci-manifest.yml"), options)
    assert image.pytest_cache_dir() == tmp_path / "aci-x" / "target" / "pytest-cache"
    (tmp_path / "aci-x" / "aci-manifest.yml").write_text("name: [\n")  # the build item reports it
    assert image.pytest_cache_dir() is None
    assert open_project(folder(tmp_path / "pod-x", "pod-manifest.yml"), options).pytest_cache_dir() is None
