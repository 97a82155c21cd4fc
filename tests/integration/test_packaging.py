"""Packaged images against the real tools: actool for the ACI, skopeo + podman for OCI."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgr.aci import image_manifest, write_aci
from dgr.extract import extract_layer
from dgr.manifest import Manifest
from dgr.manifest_reader import parse_manifest
from dgr.oci import BlobCache, LayerBlob, write_oci_layout
from dgr.ociconfig import image_config
from dgr.process import run
from tests.support.podman import Podman, mounts_under

pytestmark = pytest.mark.integration

BUSYBOX = Path("/usr/bin/busybox")
CREATED = "2024-05-01T12:00:00+02:00"


def needs(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing or not BUSYBOX.exists():
        pytest.skip(f"needs {', '.join(missing) or str(BUSYBOX)}")


def manifest(exec_: str = "[/bin/sh, -c, echo ok]") -> Manifest:
    text = f"name: example.com/aci-busybox:1.0\naci:\n  app:\n    exec: {exec_}\n"
    return parse_manifest(text, Path("/project/aci-manifest.yml"))


def busybox_layer(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    (root / "bin/sh").symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc/gone").write_text("from the lower layer\n")
    (root / "etc/kept").write_text("kept\n")
    (root / "opq").mkdir()
    (root / "opq/old").write_text("hidden by the upper layer\n")
    return root


def deleting_layer(root: Path) -> Path:
    """An overlay upper dir: deletes /etc/gone, makes /opq opaque and adds /opq/new."""
    (root / "etc").mkdir(parents=True)
    os.mknod(root / "etc/gone", stat.S_IFCHR, 0)
    (root / "opq").mkdir()
    os.setxattr(root / "opq", "trusted.overlay.opaque", b"y")
    (root / "opq/new").write_text("new\n")
    return root


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    needs("podman", "skopeo", "runc")
    engine = Podman(tmp_path / "podman")
    try:
        yield engine
    finally:
        engine.cleanup()
        assert not mounts_under(tmp_path)


def layout(tmp_path: Path, layers: list[LayerBlob], m: Manifest) -> Path:
    dest = tmp_path / "target/oci"
    cfg = image_config(m, version="1.0", diff_ids=[b.diff_id for b in layers], created=CREATED)
    # /dgr/bin/start is not in these images: a plain entrypoint-less config runs Cmd as is.
    del cfg["config"]["Entrypoint"]
    write_oci_layout(dest, layers, cfg, "1.0")
    return dest


def test_actool_accepts_the_aci(tmp_path: Path) -> None:
    needs("actool")
    root = busybox_layer(tmp_path / "layer")
    os.link(root / "bin/busybox", root / "bin/ls")
    dest = tmp_path / "target/image.aci"
    data = image_manifest(
        manifest(), version="1.0", dependencies=[], dgr_version="0.1.0", build_date=CREATED
    )
    write_aci([root, deleting_layer(tmp_path / "upper")], data, dest)
    assert run(["actool", "validate", dest]).returncode == 0
    assert f"{dest}: valid app container image" in run(["actool", "--debug", "validate", dest]).output
    listing = run(["tar", "-tf", dest]).output.split()
    assert {name.split("/")[0] for name in listing} == {"manifest", "rootfs"}
    assert "rootfs/etc/gone" not in listing  # merged sources: the whiteout hides the lower file


def test_podman_runs_the_oci_layout(tmp_path: Path, podman: Podman) -> None:
    cache = BlobCache(tmp_path / "cache")
    blob = cache.layer_from_directory(busybox_layer(tmp_path / "layer"))
    dest = layout(tmp_path, [blob], manifest())
    run(["umoci", "stat", "--image", f"{dest}:1.0"])  # a second, independent reader of the layout
    image = podman.load_oci(dest, "1.0")
    assert podman.run(image).output == "ok\n"  # the config's Cmd


def test_a_whiteout_hides_the_lower_file_in_podman(tmp_path: Path, podman: Podman) -> None:
    cache = BlobCache(tmp_path / "cache")
    lower = cache.layer_from_directory(busybox_layer(tmp_path / "lower"))
    upper = cache.layer_from_directory(deleting_layer(tmp_path / "upper"))
    dest = layout(tmp_path, [lower, upper], manifest())
    image = podman.load_oci(dest, "1.0")
    script = "test -e /etc/gone && echo visible; cat /etc/kept; ls /opq"
    assert podman.run(image, "/bin/sh", "-c", script).output == "kept\nnew\n"
    # dgr's own extraction of the same layers agrees with podman
    rootfs = tmp_path / "rootfs"
    for blob in (lower, upper):
        extract_layer(blob.path, rootfs)
    assert sorted(os.listdir(rootfs / "etc")) == ["kept"]
    assert os.listdir(rootfs / "opq") == ["new"]
